"""The score table, the JSON written to `--out`, and the change against a `--baseline` JSON."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot import __version__
from bot.errors import ArchbotError
from bot.evals.runner import SuiteResult

log = logging.getLogger(__name__)

ID_WIDTH = 34


def to_json(suite: SuiteResult, baseline: dict[str, float] | None = None) -> dict[str, Any]:
    """The report as JSON: per scenario id, score, each check, tokens, cost, latency."""
    rows: list[dict[str, Any]] = []
    for s in suite.scenarios:
        row: dict[str, Any] = {
            "id": s.id,
            "title": s.title,
            "score": round(s.score, 4),
            "checks": [c.to_json() for c in s.checks],
            "tokens": {
                "input": s.input_tokens,
                "output": s.output_tokens,
                "cache_read": s.cache_read_tokens,
                "cache_write": s.cache_write_tokens,
                "total": s.tokens,
                "judge": s.judge_tokens,
            },
            "cost_usd": round(s.cost_usd, 6),
            "judge_cost_usd": round(s.judge_cost_usd, 6),
            "latency_ms": s.latency_ms,
            "error": s.error,
            "draft": s.draft,
            "answers": s.answers,
        }
        if baseline is not None:
            before = baseline.get(s.id)
            row["baseline_score"] = before
            row["change"] = None if before is None else round(s.score - before, 4)
        rows.append(row)
    return {
        "archbot_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": suite.model,
        "judge_model": suite.judge_model,
        "mean_score": round(suite.mean_score, 4),
        "wall_s": round(suite.wall_s, 3),
        "scenarios": rows,
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write the report (creating the folder), one readable error line if it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ArchbotError(f"cannot write {path}: {exc.strerror or exc}") from None


def load_baseline(path: Path) -> dict[str, float]:
    """Scenario id -> score from an earlier `--out` file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ArchbotError(f"cannot read baseline {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise ArchbotError(f"baseline {path} is not JSON written by `archbot eval --out`") from None
    rows = data.get("scenarios") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ArchbotError(
            f"baseline {path} has no scenarios list (not an `archbot eval --out` file)"
        )
    scores: dict[str, float] = {}
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("id"), str):
            score = row.get("score")
            if isinstance(score, int | float) and not isinstance(score, bool):
                scores[row["id"]] = float(score)
    return scores


def _change(now: float, before: float | None) -> str:
    if before is None:
        return "new"
    delta = now - before
    return "=" if abs(delta) < 0.005 else f"{delta:+.2f}"


def render_table(suite: SuiteResult, baseline: dict[str, float] | None = None) -> str:
    """A plain-text table: one line per scenario, then the mean (and its change)."""
    head = f"{'scenario':<{ID_WIDTH}} {'score':>5} {'checks':>7} {'tokens':>8} {'cost $':>8} {'secs':>6}"
    if baseline is not None:
        head += f" {'change':>7}"
    lines = [head + "  failed", "-" * (len(head) + 8)]
    for s in suite.scenarios:
        passed = sum(c.passed for c in s.checks)
        line = (
            f"{s.id[:ID_WIDTH]:<{ID_WIDTH}} {s.score:>5.2f} {passed:>3}/{len(s.checks):<3} "
            f"{s.tokens:>8} {s.cost_usd + s.judge_cost_usd:>8.4f} {s.latency_ms / 1000:>6.1f}"
        )
        if baseline is not None:
            line += f" {_change(s.score, baseline.get(s.id)):>7}"
        failed = ", ".join(c.name for c in s.checks if not c.passed)
        note = f"error: {s.error}" if s.error else failed
        lines.append(f"{line}  {note[:120]}".rstrip())
    mean = f"mean score {suite.mean_score:.2f} over {len(suite.scenarios)} scenario(s)"
    if baseline is not None:
        shared = [s for s in suite.scenarios if s.id in baseline]
        if shared:
            before = sum(baseline[s.id] for s in shared) / len(shared)
            now = sum(s.score for s in shared) / len(shared)
            mean += f"; {now - before:+.2f} against the baseline on {len(shared)} shared"
        gone = sorted(set(baseline) - {s.id for s in suite.scenarios})
        if gone:
            mean += f"; not run now: {', '.join(gone[:5])}"
    cost = sum(s.cost_usd + s.judge_cost_usd for s in suite.scenarios)
    lines.append(f"{mean}; model {suite.model}; ${cost:.4f}; {suite.wall_s:.1f} s")
    return "\n".join(lines)
