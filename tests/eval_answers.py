"""Scripted answers for the eval tests: a strong architect's answer and a parrot."""

from __future__ import annotations

PARROT = "Noted."

# Written to meet the rubric the way a good answer would: options with trade-offs,
# a question back, the usual pitfalls named, the fixture's files cited.
STRONG = """\
Before picking anything: how much data per day, and how fresh must it be (real time or a
nightly batch)? What p99 latency do you need, and who runs it at 3 a.m.?

**Option A: keep it simple (a monolith plus cron).** One service, Postgres/TimescaleDB,
idempotent jobs that upsert on a natural key and checkpoint per day partition so a
re-run resumes. Pros: boring, cheap, one thing to operate. Cons: one box, vertical scaling.

**Option B: Kafka with a stream processor.** Retention and replay for 7 days of backfills,
but the operational burden is real (KRaft, partitions, consumer lag), whereas Redis Streams
keeps everything in memory, so long retention costs RAM. The trade-off is throughput and
replay at the cost of more complexity; for three engineers Kubernetes, Istio and Flink are
overkill today (YAGNI: measure first).

**Option C: a managed service**, rather than running it yourselves, in exchange for cost
and lock-in.

Pitfalls to settle in any option:
- Look-ahead bias: entering at the same close the signal used is future information; z-score
  with a rolling or expanding window (walk forward), not the whole dataset, and charge fees
  and slippage.
- Training/serving skew: `src/quant/features/pipeline.py` computes `close_ma` over the last 20
  closes including the current bar, while `src/quant/serving/predict.py` uses the previous 20
  (`closes[-21:-1]`) and normalises volume differently: the two implementations differ.
  Compare online and offline values with a point-in-time (as-of) join.
- Tail latency: budget each stage against p99, not p50, with a timeout and a fallback
  (a default prediction) when the model is slow; `configs/serving.yaml` has `fallback: none`.
- Releases: shadow then canary the new model against the current one, keep the previous
  version pinned in a registry so rollback is one step.
- Drift: watch data drift per feature (PSI or a KS test) and concept drift once delayed
  labels arrive, not only PnL.
- Secrets: rotate and revoke the keys now (they are in git history), then move them to a
  secrets manager such as Vault or SOPS.
- Kill switch: an independent process outside the strategy that cancels open orders and
  flattens positions on a max loss or drawdown limit, with a manual switch; drill it monthly.
- Polars: use the lazy API (scan_parquet, streaming) and check the closed/label bar
  boundaries match Pandas before switching.

Which of these constraints is firm for you?
"""
