"""archbot benchmarks: the numbers of SPEC section 9, printed as a table and written as JSON.

    python bench/run.py            # every measure; writes bench/results.json
    python bench/run.py --quick    # the same keys in under 3 minutes on 2 cores
    python bench/run.py --only slack_ack,loop_lag   # some measures: their rows, no JSON

Every remote service is a fake on 127.0.0.1, each in its own process so it does not share
the GIL with the code being measured (`bench/fakes.py`). The seeded databases (up to
1,000,000 messages) are kept under bench/.cache/ and reused while the schema is the same.
A figure that misses its target is marked "missed"; the exit code is 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import gc
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anthropic  # noqa: E402

from adapters.runner import settle_heap  # noqa: E402
from bot.app import build_core  # noqa: E402
from bot.events import IncomingMessage  # noqa: E402
from bot.migrations import known_names  # noqa: E402
from bot.pricing import price_for  # noqa: E402
from bot.settings import Secrets, Settings  # noqa: E402
from bot.store import Store  # noqa: E402

KEY = "sk-ant-bench-not-real"
DEFAULT_OUT = ROOT / "bench" / "results.json"
CACHE_DIR = ROOT / "bench" / ".cache"
# Bump when seed_messages changes what it writes: a cached database of another version is rebuilt.
SEED_VERSION = 2
PY_SPY_OUT = ""  # --py-spy FILE: where py-spy writes archbot run's stacks during the Slack rounds
CURVE = (0, 10_000, 100_000, 1_000_000)  # stored messages for overhead_ms_p50_by_messages

# Every key SPEC section 9 lists, with its target ((op, bound), None: reported, no target).
TARGETS: dict[str, tuple[str, float] | None] = {
    "overhead_ms_p50": ("<=", 5.0),
    "overhead_ms_p99": ("<=", 20.0),
    "overhead_ms_p50_by_messages": ("<=", 5.0),  # each point of the curve
    "overhead_ratio_vs_sdk": ("<=", 1.2),
    "messages_in_db": None,
    "concurrent_200_wall_s": ("<=", 1.5),
    "slack_ack_p99_ms": ("<=", 15.0),
    "slack_ack_burst_p99_ms": ("<=", 50.0),
    "loop_lag_max_ms": ("<=", 50.0),
    "prefix_stability": (">=", 0.9),
    "billed_input_ratio_cached": ("<=", 0.35),
    "slack_calls_per_turn": ("<=", 4.0),
    "first_text_delay_ms_p50": ("<=", 300.0),
    "idle_rss_mb": ("<=", 150.0),
    "startup_s": ("<=", 2.0),
}
SPEC_KEYS = tuple(TARGETS)
# Beyond SPEC 9: Mermaid diagrams (README "Diagrams").
EXTRA_TARGETS: dict[str, tuple[str, float] | None] = {
    "diagram_render_s_max": ("<=", 10.0),
    "diagram_loop_lag_max_ms": ("<=", 50.0),
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: nothing of archbot's from the shell, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ARCHBOT_", "SLACK_", "ANTHROPIC_", "DISCORD_", "GITHUB_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def spawn(*args: str) -> subprocess.Popen[bytes]:
    """A child `python -m ...` in the repository, quiet."""
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=bench_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class FakeModelProcess:
    """The bench's fake Messages API (`bench.fakes model`) in a child process."""

    def __init__(
        self,
        latency: float = 0.0,
        answer_bytes: int = 400,
        delta_chars: int = 400,
        delta_seconds: float = 0.0,
    ) -> None:
        self.port = free_port()
        self.proc = spawn(
            "bench.fakes",
            "model",
            "--port",
            str(self.port),
            "--latency",
            str(latency),
            "--answer-bytes",
            str(answer_bytes),
            "--delta-chars",
            str(delta_chars),
            "--delta-seconds",
            str(delta_seconds),
        )
        wait_for_port(self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        """What the fake saw (`GET /bench/stats`)."""
        return get_json(f"{self.url}/bench/stats")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def get_json(url: str) -> Any:
    """GET a JSON document from a loopback fake."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# seeded databases ---------------------------------------------------------------------------


def seed_messages(path: Path, count: int) -> None:
    """Fill a database with `count` messages spread over many threads."""
    store = Store.open(path)
    threads = max(1, count // 100)
    conn = store.conn
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO threads (key, platform, workspace, channel, thread, channel_key, created_at)"
        " VALUES (?, 'slack', 'T', 'C', ?, 'slack/T/C', '2026-01-01')",
        [(f"slack/T/C/seed{i}", f"seed{i}") for i in range(threads)],
    )
    conn.executemany(
        "INSERT INTO turns (thread_id, user, text, status, created_at) VALUES (?, 'U', 'q', 'done', '2026-01-01')",
        [(1 + i % threads,) for i in range(count // 2)],
    )
    body = json.dumps([{"type": "text", "text": "A stored message about feature stores. " * 5}])
    conn.executemany(
        "INSERT INTO messages (thread_id, turn_id, role, content, status, tokens, created_at)"
        " VALUES (?, ?, ?, ?, 'complete', 50, '2026-01-01')",
        (
            (1 + (i // 2) % threads, 1 + i // 2, "user" if i % 2 == 0 else "assistant", body)
            for i in range(count)
        ),
    )
    conn.execute("CREATE TABLE bench_seed (fingerprint TEXT NOT NULL)")
    conn.execute("INSERT INTO bench_seed VALUES (?)", (seed_fingerprint(count),))
    conn.execute("COMMIT")
    store.close()


def seed_fingerprint(count: int) -> str:
    """What a cached seed must match: its size, the seeding code's version, the migrations."""
    names = "\n".join(known_names())
    return hashlib.sha256(f"{SEED_VERSION}\n{count}\n{names}".encode()).hexdigest()[:16]


def cached_fingerprint(path: Path) -> str | None:
    """The fingerprint a cached seed was written with (None: absent or unreadable)."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT fingerprint FROM bench_seed").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def seeded_copy(count: int, work: Path, log: Callable[[str], None]) -> tuple[Path, float]:
    """A fresh working copy of the cached `count`-message database; (path, seconds spent seeding,
    0 when the cache was reused). The bench writes turns into the copy, never into the cache."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached = CACHE_DIR / f"seed-{count}.db"
    seeded_s = 0.0
    if cached_fingerprint(cached) != seed_fingerprint(count):
        log(f"seeding a database with {count:,} messages (cached in {CACHE_DIR} for next time)")
        for stale in CACHE_DIR.glob(f"seed-{count}.db*"):
            stale.unlink()
        t0 = time.perf_counter()
        partial = cached.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        seed_messages(partial, count)
        # One self-contained file: the WAL is folded in before it is renamed into place.
        conn = sqlite3.connect(partial)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.close()
        partial.rename(cached)
        seeded_s = time.perf_counter() - t0
    copy = work / f"bench-{count}.db"
    shutil.copyfile(cached, copy)
    return copy, seeded_s


def settings_for(db: Path, **llm: Any) -> Settings:
    return Settings(storage={"path": str(db)}, llm=llm)  # type: ignore[arg-type]


def message(thread: str, text: str, n: int) -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="T",
        channel="C",
        thread=thread,
        user="U1",
        user_name="alice",
        text=text,
        event_id=f"bench-{thread}-{n}",
    )


async def bench_overhead(fake: FakeModelProcess, db: Path, turns: int) -> dict[str, Any]:
    """Per-turn time through the core vs a bare SDK call to the same fake.

    The bare call is the SDK as anyone would make it (its default httpx transport): the
    target's ratio. The same request over the aiohttp transport the core's client uses is
    timed too, so the core's own share shows apart from what the transport saves.
    """
    secrets = Secrets(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=fake.url)  # type: ignore[call-arg]
    core = build_core(settings_for(db), secrets)
    bare = anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.url, max_retries=0)
    same = anthropic.AsyncAnthropic(
        api_key=KEY,
        base_url=fake.url,
        max_retries=0,
        http_client=anthropic.DefaultAioHttpClient(),
    )
    # Record the exact request the core sends, to replay it bare.
    sent: list[dict[str, Any]] = []
    assert core.model.client is not None
    real_create = core.model.client.messages.create

    async def recording_create(**params: Any) -> Any:
        sent.append(params)
        return await real_create(**params)

    core.model.client.messages.create = recording_create  # type: ignore[method-assign]
    turn_ms: list[float] = []
    bare_ms: list[float] = []
    same_ms: list[float] = []
    try:
        # Warm the clients (connection, first-call imports): not what is measured.
        await core.consultant.handle(message("warm", "Warm-up question?", 0))
        await bare.messages.create(**sent[-1])
        await same.messages.create(**sent[-1])
        for i in range(turns):
            # 50 threads, so history stays realistic (a few turns each).
            t0 = time.perf_counter()
            await core.consultant.handle(
                message(f"bench{i % 50}", f"Question {i} about latency budgets?", i)
            )
            turn_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await bare.messages.create(**sent[-1])  # the same request, without the core
            bare_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await same.messages.create(**sent[-1])
            same_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        await bare.close()
        await same.close()
        await core.aclose()
    overhead = [max(0.0, t - b) for t, b in zip(turn_ms, bare_ms, strict=True)]
    return {
        "turns": turns,
        "turn_p50_ms": pct(turn_ms, 50),
        "turn_p99_ms": pct(turn_ms, 99),
        "bare_sdk_p50_ms": pct(bare_ms, 50),
        "bare_sdk_p99_ms": pct(bare_ms, 99),
        "overhead_p50_ms": pct(overhead, 50),
        "overhead_p99_ms": pct(overhead, 99),
        "ratio_p50": pct(turn_ms, 50) / pct(bare_ms, 50),
        "bare_sdk_aiohttp_p50_ms": pct(same_ms, 50),
        "ratio_p50_vs_aiohttp": pct(turn_ms, 50) / pct(same_ms, 50),
    }


async def bench_parallel(fake: FakeModelProcess, db: Path, threads: int) -> dict[str, Any]:
    """`threads` threads at once against a model with 1 s latency."""
    secrets = Secrets(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=fake.url)  # type: ignore[call-arg]
    core = build_core(settings_for(db, max_concurrency=threads), secrets)
    thresholds = settle_heap()  # as `archbot run` does once it is ready
    try:
        t0 = time.perf_counter()
        replies = await asyncio.gather(
            *(
                core.consultant.handle(message(f"par{i}", "How do we shard the tick store?", i))
                for i in range(threads)
            )
        )
        wall = time.perf_counter() - t0
    finally:
        await core.aclose()
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    answered = sum(1 for r in replies if r is not None and r.kind == "answer")
    return {"threads": threads, "answered": answered, "wall_s": wall, "max_concurrency": threads}


async def bench_billed(fake: FakeModelProcess, db: Path, turns: int = 10) -> dict[str, Any]:
    """Input billed over one `turns`-turn thread with prompt caching, against the same tokens
    billed without it, from the usage ledger (the fake model bills the cache like the API)."""
    secrets = Secrets(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=fake.url)  # type: ignore[call-arg]
    core = build_core(settings_for(db), secrets)
    try:
        for i in range(turns):
            reply = await core.consultant.handle(
                message("billed", f"Turn {i}: how should the feature store handle backfills?", i)
            )
            assert reply is not None and reply.kind == "answer", reply
        thread = core.store.get_thread("slack/T/C/billed")
        assert thread is not None
        rows = core.store.conn.execute(
            "SELECT model, input_tokens, cache_read_tokens, cache_write_tokens FROM usage"
            " WHERE thread_id = ? ORDER BY id",
            (thread.id,),
        ).fetchall()
    finally:
        await core.aclose()
    cached = uncached = 0.0
    for model, plain, read, write in rows:
        price = price_for(model)
        cached += plain * price.input + read * price.cache_read + write * price.cache_write
        uncached += (plain + read + write) * price.input
    return {
        "turns": turns,
        "calls": len(rows),
        "input_tokens": sum(r[1] for r in rows),
        "cache_read_tokens": sum(r[2] for r in rows),
        "cache_write_tokens": sum(r[3] for r in rows),
        "ratio": cached / uncached if uncached else 1.0,
    }


async def bench_prefix(fake: FakeModelProcess, db: Path, turns: int) -> dict[str, Any]:
    """How much of each request, as sent, is a byte-identical prefix of the previous one.

    The requests are taken off the wire (the SDK's HTTP client), in the order the
    prompt cache reads them: tools, system, messages. The cache breakpoint moves to
    the newest block each turn and the cache matches content, not markers, so the
    main figure compares messages with cache_control taken off their blocks; the
    figure with the markers as sent is kept beside it.
    """
    sent: list[dict[str, Any]] = []

    async def record(request: Any) -> None:
        if request.url.path.endswith("/v1/messages"):
            sent.append(json.loads(request.content))

    client = anthropic.AsyncAnthropic(
        api_key=KEY,
        base_url=fake.url,
        http_client=anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [record]}),
    )
    secrets = Secrets(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=fake.url)  # type: ignore[call-arg]
    core = build_core(settings_for(db), secrets, client=client)
    try:
        rng = random.Random(7)
        for i in range(turns):
            reply = await core.consultant.handle(
                message("prefix", f"Follow-up {i}: " + "context " * rng.randint(10, 60), i)
            )
            assert reply is not None and reply.kind == "answer", reply
    finally:
        await core.aclose()
    assert len(sent) == turns, f"{len(sent)} requests for {turns} turns"

    def canonical(body: dict[str, Any], *, markers: bool) -> str:
        messages = body["messages"]
        if not markers:
            messages = [
                {
                    **m,
                    "content": [
                        {k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]
                    ],
                }
                for m in messages
            ]
        return json.dumps([body.get("tools"), body["system"], messages])

    def ratios(markers: bool) -> list[float]:
        out = []
        for previous, current in itertools.pairwise(sent):
            prev, cur = canonical(previous, markers=markers), canonical(current, markers=markers)
            common = len(os.path.commonprefix([prev, cur]))  # noqa: RUF071 (char-wise is the point)
            out.append(common / len(cur))
        return out

    stripped, raw = ratios(markers=False), ratios(markers=True)
    return {
        "turns": turns,
        "min_prefix_ratio": min(stripped),
        "mean_prefix_ratio": statistics.mean(stripped),
        "min_prefix_ratio_with_markers": min(raw),
    }


SIGNING_SECRET = "bench-signing-secret-not-real"
PEOPLE = ("U0ALICE01", "U0BOB0002", "W0CAROL03")  # known to the fake's users.info
QUESTION = re.compile(r"bench question (\d+)")


def twin_deliveries(i: int, ts: str) -> list[tuple[bytes, dict[str, str]]]:
    """One channel mention as Slack delivers it: an `app_mention` and a `message` envelope for
    the same ts, with different event ids, each a signed request (raw body, headers)."""
    from tests.fakes.fake_slack import event_body, event_request

    fields = {
        "ts": ts,
        "user": PEOPLE[i % len(PEOPLE)],
        "text": f"<@U0BOT0001> bench question {i}: how do we shard the tick store?",
    }
    mention = event_body("app_mention", event_id=f"EvBenchA{ts.replace('.', '')}", **fields)
    twin = event_body(
        "message_channel_with_mention", event_id=f"EvBenchM{ts.replace('.', '')}", **fields
    )
    mention["event"].pop("blocks", None)  # the twin carries none either: the same words
    return [event_request(body, SIGNING_SECRET) for body in (mention, twin)]


class SlackRunProcess:
    """`archbot run` in Slack HTTP mode against the bench's fake Slack and a fake model that
    streams `answer_bytes` after `latency` seconds."""

    def __init__(self, tmp: Path, *, latency: float = 1.0, answer_bytes: int = 1200) -> None:
        # About 1.2 kB in six 200-character deltas 20 ms apart: streamed, but not the token-by-
        # token pace of a real model (that would only delay the first text the holdback allows).
        self.model = FakeModelProcess(
            latency=latency, answer_bytes=answer_bytes, delta_chars=200, delta_seconds=0.02
        )
        self.slack_port, self.port = free_port(), free_port()
        self.slack = spawn("bench.fakes", "slack", "--port", str(self.slack_port))
        self.log_path = tmp / "slack-run.log"
        self.bot: subprocess.Popen[bytes] | None = None
        wait_for_port(self.slack_port)
        env = bench_env(
            ARCHBOT_SLACK__ENABLED="true",
            ARCHBOT_SLACK__MODE="http",
            ARCHBOT_SLACK__PORT=str(self.port),
            ARCHBOT_SLACK__API_URL=f"http://127.0.0.1:{self.slack_port}/api/",
            ARCHBOT_LLM__MAX_CONCURRENCY="400",
            ARCHBOT_STORAGE__PATH=str(tmp / "slack.db"),
            SLACK_BOT_TOKEN="xoxb-bench-not-real",
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            ANTHROPIC_API_KEY=KEY,
            ANTHROPIC_BASE_URL=self.model.url,
        )
        with self.log_path.open("w") as log:
            command = [sys.executable, "-m", "bot", "run"]
            self.bot = subprocess.Popen(command, cwd=tmp, env=env, stdout=log, stderr=log)
        wait_for_port(self.port, proc=self.bot)

    def cpu_seconds(self) -> float:
        """CPU time `archbot run` has used so far (user + system)."""
        assert self.bot is not None
        fields = Path(f"/proc/{self.bot.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def slack_stats(self) -> dict[str, Any]:
        """The fake Slack's calls and messages."""
        return get_json(f"http://127.0.0.1:{self.slack_port}/bench/stats")

    def answered(self, threads: set[str]) -> set[str]:
        """Which of `threads` (thread ts) have a finished answer."""
        done = set()
        for m in self.slack_stats()["messages"]:
            if m["thread_ts"] in threads and not m["streaming"]:
                done.add(m["thread_ts"])
        return done

    def stop(self) -> None:
        if self.bot is not None:
            self.bot.terminate()
            self.bot.wait(30)
        self.slack.terminate()
        self.slack.wait(10)
        self.model.stop()


def send_deliveries(port: int, schedule: list[tuple[float, bytes, dict[str, str]]]) -> list[float]:
    """POST each (delay, body, headers) at its delay from now; each acknowledgement's time (ms)
    as the sender sees it, from its request written to its whole response read.

    A load generator, not an HTTP client library: one connection per request, opened before
    the clock starts, and requests written as prepared bytes from one selector loop, so 200
    deliveries at once leave within a millisecond or two. (An aiohttp client sending the same
    burst to a server that does nothing measures over 100 ms p99 by itself.)
    """
    import selectors

    wire = []
    for _, body, headers in schedule:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        wire.append(
            (
                f"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body
        )
    selector = selectors.DefaultSelector()
    sockets = [socket.create_connection(("127.0.0.1", port), 10) for _ in wire]
    received = [b""] * len(wire)
    sent_at = [0.0] * len(wire)
    acks: list[float | None] = [None] * len(wire)
    try:
        for n, sock in enumerate(sockets):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, n)
        order = sorted(range(len(wire)), key=lambda n: schedule[n][0])
        start = time.perf_counter() + 0.05
        deadline = start + max(d for d, _, _ in schedule) + 30
        waiting, next_up = len(wire), 0
        while waiting:
            now = time.perf_counter()
            if now > deadline:
                raise RuntimeError(f"{waiting} deliveries never acknowledged")
            while next_up < len(order) and now >= start + schedule[order[next_up]][0]:
                n = order[next_up]
                sent_at[n] = time.perf_counter()
                sockets[n].sendall(wire[n])  # a few kB: the socket buffer takes it at once
                next_up += 1
            wait = start + schedule[order[next_up]][0] - now if next_up < len(order) else 1.0
            for key, _ in selector.select(max(0.0, wait)):
                n = key.data
                chunk = sockets[n].recv(65536)
                received[n] += chunk
                if chunk and not _complete(received[n]):
                    continue
                acks[n] = (time.perf_counter() - sent_at[n]) * 1000
                selector.unregister(sockets[n])
                waiting -= 1
                if not received[n].startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"acknowledged with {received[n][:20]!r}")
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
    return [a for a in acks if a is not None]


def _complete(response: bytes) -> bool:
    """True when `response` holds a whole HTTP response (headers and Content-Length bytes)."""
    head, found, body = response.partition(b"\r\n\r\n")
    if not found:
        return False
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    return length is None or len(body) >= int(length.group(1))


def slack_round(
    run: SlackRunProcess, mentions: int, spacing_s: float, first: int
) -> dict[str, Any]:
    """`mentions` channel mentions `spacing_s` apart (0: all at once), each delivered twice;
    waits for every answer, then reads what Slack and the model saw."""
    base = int(time.time())
    threads = {i: f"{base}.{100000 + i:06d}" for i in range(first, first + mentions)}
    schedule = [
        (n * spacing_s, body, headers)
        for n, (i, ts) in enumerate(threads.items())
        for body, headers in twin_deliveries(i, ts)
    ]
    before = len(run.slack_stats()["calls"])
    cpu_before = run.cpu_seconds()
    started = time.perf_counter()
    acks = send_deliveries(run.port, schedule)
    wanted = set(threads.values())
    deadline = time.monotonic() + 120
    while (done := run.answered(wanted)) != wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(wanted - done)} of {mentions} mentions never answered")
        time.sleep(0.1)
    wall = time.perf_counter() - started
    cpu = run.cpu_seconds() - cpu_before
    stats = run.slack_stats()
    calls = [c for c in stats["calls"][before:] if c["method"] != "auth.test"]
    by_method: dict[str, int] = {}
    for c in calls:
        by_method[c["method"]] = by_method.get(c["method"], 0) + 1
    thread_of = {m["ts"]: m["thread_ts"] for m in stats["messages"]}
    first_visible: dict[str, float] = {}
    for c in calls:
        thread = ""
        if c["method"] in ("chat.startStream", "chat.postMessage") and c["text"]:
            thread = c["thread_ts"]
        elif c["method"] in ("chat.appendStream", "chat.stopStream") and c["text"]:
            thread = thread_of.get(c["ts"], "")
        if thread in wanted and c["ok"]:
            first_visible[thread] = min(first_visible.get(thread, c["at"]), c["at"])
    delays: list[float] = []
    for token in run.model.stats()["first_tokens"]:
        found = QUESTION.search(token["said"])
        ts = threads.get(int(found.group(1))) if found else None
        if ts in first_visible:
            delays.append((first_visible[ts] - token["at"]) * 1000)
    duplicates = len([m for m in stats["messages"] if m["thread_ts"] in wanted]) - mentions
    return {
        "mentions": mentions,
        "deliveries": len(schedule),
        "spacing_ms": spacing_s * 1000,
        "ack_p50_ms": pct(acks, 50),
        "ack_p99_ms": pct(acks, 99),
        "ack_max_ms": max(acks),
        "answered_wall_s": wall,
        "bot_cpu_ms_per_turn": cpu * 1000 / mentions,
        "extra_answers": duplicates,
        "slack_calls": len(calls),
        "slack_calls_per_turn": len(calls) / mentions,
        "slack_calls_by_method": by_method,
        "first_text_delay_ms_p50": pct(delays, 50) if delays else None,
        "first_text_delay_ms_p99": pct(delays, 99) if delays else None,
    }


def bench_slack(paced: int, burst: int, rounds: int = 1) -> dict[str, Any]:
    """Slack HTTP mode under load: `paced` mentions 4 ms apart, then `burst` mentions at once
    (each delivered twice, answers of about 1.2 kB streamed after 1 s); `rounds` of each."""
    with tempfile.TemporaryDirectory() as tmp:
        run = SlackRunProcess(Path(tmp))
        try:
            # One mention per person first: the process's first turn pays one-off imports and
            # connections, and people's names are looked up once a day, not once a turn.
            for n in range(len(PEOPLE)):
                slack_round(run, 1, 0.0, first=10_000 + n)
            results: dict[str, Any] = {"paced": [], "burst": []}
            first = 0
            spy = None
            if PY_SPY_OUT:
                # Sampled while the rounds run, not during start-up (py-spy must be on PATH).
                assert run.bot is not None
                spy = subprocess.Popen(
                    [
                        shutil.which("py-spy") or "py-spy",
                        *("record", "--nonblocking", "-r", "200", "-f", "raw"),
                        *("-o", PY_SPY_OUT, "--pid", str(run.bot.pid)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            for _ in range(rounds):
                results["paced"].append(slack_round(run, paced, 0.004, first))
                first += paced
                results["burst"].append(slack_round(run, burst, 0.0, first))
                first += burst
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
                spy.wait(30)
        except Exception:
            print(run.log_path.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            run.stop()
    return results


def wait_for_port(
    port: int, seconds: float = 15, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something listens on 127.0.0.1:port (fails early if `proc` exits)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process for port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def bench_run_both(seconds_idle: float = 2.0) -> dict[str, Any]:
    """`archbot run` with Slack (HTTP) and Discord against fakes: start to ready, idle RSS."""
    # A deployed archbot runs from bytecode (the image's `pip install` compiles it, and a
    # checkout writes it on its first run), but not when PYTHONDONTWRITEBYTECODE is set, as
    # on some CI machines: compile it first so every machine measures the deployed start.
    for package in ("bot", "adapters"):
        compileall.compile_dir(ROOT / package, quiet=2)
    model = FakeModelProcess()
    slack_port, discord_port, bot_port = free_port(), free_port(), free_port()
    fakes = [
        subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for module, port in (
            ("tests.fakes.fake_slack", slack_port),
            ("tests.fakes.fake_discord", discord_port),
        )
    ]
    tmp = Path(tempfile.mkdtemp())
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ARCHBOT_", "SLACK_", "ANTHROPIC_", "DISCORD_"))
        },
        "PYTHONPATH": str(ROOT),
        "ARCHBOT_SLACK__ENABLED": "true",
        "ARCHBOT_SLACK__MODE": "http",
        "ARCHBOT_SLACK__PORT": str(bot_port),
        "ARCHBOT_SLACK__API_URL": f"http://127.0.0.1:{slack_port}/api/",
        "ARCHBOT_DISCORD__ENABLED": "true",
        "ARCHBOT_DISCORD__API_URL": f"http://127.0.0.1:{discord_port}/api/v10",
        "ARCHBOT_STORAGE__PATH": str(tmp / "both.db"),
        "SLACK_BOT_TOKEN": "xoxb-bench-not-real",
        "SLACK_SIGNING_SECRET": "bench-secret-not-real",
        "DISCORD_TOKEN": "test-not-real",
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": model.url,
    }
    log_path = tmp / "run.log"
    bot = None
    try:
        wait_for_port(slack_port)
        wait_for_port(discord_port)
        with log_path.open("w") as log:
            started = time.perf_counter()
            bot = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"], cwd=tmp, env=env, stdout=log, stderr=log
            )
            deadline = time.monotonic() + 30
            while "archbot ready" not in log_path.read_text():
                if bot.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"archbot run did not get ready:\n{log_path.read_text()}")
                time.sleep(0.01)
            ready_s = time.perf_counter() - started
            time.sleep(seconds_idle)
            status = Path(f"/proc/{bot.pid}/status").read_text()
            rss_kb = int(
                next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]
            )
    finally:
        for proc in (bot, *fakes):
            if proc is not None:
                proc.terminate()
                proc.wait(20)
        model.stop()
    return {"ready_s": ready_s, "idle_rss_mb": rss_kb / 1024}


def bench_loop_lag(fetches: int = 5) -> dict[str, Any]:
    """Event-loop stall while fetch_url reads and converts a 2 MB page (served by another process)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.fake_web", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        return asyncio.run(_loop_lag(f"http://127.0.0.1:{port}/big2m", fetches))
    finally:
        server.terminate()
        server.wait(10)


@contextlib.asynccontextmanager
async def loop_lag() -> AsyncIterator[list[float]]:
    """The running loop's stalls (ms) while the block runs, one sample per 1 ms tick."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        # A 1 ms sleep that wakes late by X ms means the loop was held for X ms.
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(max(0.0, (time.perf_counter() - t0 - 0.001) * 1000))

    ticking = asyncio.create_task(ticker())
    try:
        yield lags
    finally:
        done.set()
        await ticking


async def _loop_lag(url: str, fetches: int) -> dict[str, Any]:
    from bot.settings import FetchSettings
    from bot.web import WebFetcher

    # Built before the clock starts, as `archbot run` builds it at start-up.
    fetcher = WebFetcher(FetchSettings(allow_private_addresses=True))  # the page is on loopback
    fetch_s: list[float] = []
    # One small page first: a running bot has imported httpx's async backend (anyio) on its
    # first model call already, and that one-off import is not what is measured here.
    await fetcher.fetch(url.rsplit("/", 1)[0] + "/plain")
    try:
        async with loop_lag() as lags:
            await asyncio.sleep(0.05)
            for _ in range(fetches):
                t0 = time.perf_counter()
                page = await fetcher.fetch(url)
                fetch_s.append(time.perf_counter() - t0)
                assert page.truncated and len(page.text) == 40_000, (
                    page.truncated,
                    len(page.text),
                )
    finally:
        await fetcher.aclose()
    return {
        "fetches": fetches,
        "loop_lag_max_ms": max(lags),
        "loop_lag_p99_ms": pct(lags, 99),
        "fetch_s_p50": statistics.median(fetch_s),
        "fetch_s_max": max(fetch_s),
    }


def bench_diagrams(renders: int = 4) -> dict[str, Any]:
    """Mermaid render time in the worker, and the event-loop stall while renders run."""
    return asyncio.run(_diagrams(renders))


async def _diagrams(renders: int) -> dict[str, Any]:
    from bot.diagrams import DiagramRenderer
    from bot.settings import DiagramSettings

    renderer = DiagramRenderer(DiagramSettings())
    render_s: list[float] = []

    async def one(n: int) -> None:
        # Distinct sources: the cache would otherwise answer all but the first.
        source = "flowchart LR\n" + "\n".join(
            f"  s{i}[Service {i}] --> s{i + 1}" for i in range(n, n + 11)
        )
        t0 = time.perf_counter()
        assert await renderer.render(source) is not None
        render_s.append(time.perf_counter() - t0)

    try:
        async with loop_lag() as lags:
            t0 = time.perf_counter()
            await asyncio.gather(*(one(n * 100) for n in range(renders)))
            wall = time.perf_counter() - t0
    finally:
        await renderer.aclose()
    return {
        "renders": renders,
        "render_s_p50": statistics.median(render_s),
        "render_s_max": max(render_s),
        "wall_s": wall,
        "loop_lag_max_ms": max(lags),
    }


def bench_footprint() -> dict[str, Any]:
    """Idle RSS and time to a built core with both adapter modules imported, in a fresh process."""
    code = (
        "import time, importlib, asyncio\n"
        "t0 = time.perf_counter()\n"
        "loaded = []\n"
        "for name in ('adapters.slack', 'adapters.discord.adapter', 'slack_bolt.async_app', 'discord'):\n"
        "    try:\n"
        "        importlib.import_module(name); loaded.append(name)\n"
        "    except ModuleNotFoundError:\n"
        "        pass\n"
        "from bot.app import build_core\n"
        "from bot.settings import Settings, Secrets\n"
        "import tempfile, os\n"
        "d = tempfile.mkdtemp()\n"
        "async def main():\n"
        "    core = build_core(Settings(storage={'path': os.path.join(d, 'a.db')}), Secrets())\n"
        "    ready = time.perf_counter() - t0\n"
        "    rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n"
        "    print(ready, int(rss) / 1024, ','.join(loaded))\n"
        "    await core.aclose()\n"
        "asyncio.run(main())\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    process_s = time.perf_counter() - t0
    ready, rss, loaded = out.stdout.split()
    return {
        "ready_s": float(ready),
        "process_total_s": process_s,
        "rss_mb": float(rss),
        "loaded": loaded,
    }


def judge(value: Any, target: tuple[str, float] | None) -> bool | None:
    """True when `value` meets its target (every value of a dict must), None without a target."""
    if target is None or value is None:
        return None if target is None else False
    op, bound = target
    values = list(value.values()) if isinstance(value, dict) else [value]
    return all(v <= bound if op == "<=" else v >= bound for v in values)


def figures(details: dict[str, Any]) -> dict[str, Any]:
    """The flat keys of SPEC 9 (and the extra rows) from the measures' details."""
    out: dict[str, Any] = {}
    curve = details.get("overhead_curve")
    if curve:
        top = curve[str(max(int(k) for k in curve))]
        out["overhead_ms_p50"] = top["overhead_p50_ms"]
        out["overhead_ms_p99"] = top["overhead_p99_ms"]
        out["overhead_ms_p50_by_messages"] = {k: v["overhead_p50_ms"] for k, v in curve.items()}
        out["overhead_ratio_vs_sdk"] = top["ratio_p50"]
        out["messages_in_db"] = max(int(k) for k in curve)
    if "parallel" in details:
        out["concurrent_200_wall_s"] = details["parallel"]["wall_s"]
    if "slack" in details:
        paced, burst = details["slack"]["paced"], details["slack"]["burst"]
        out["slack_ack_p99_ms"] = max(r["ack_p99_ms"] for r in paced)
        out["slack_ack_burst_p99_ms"] = max(r["ack_p99_ms"] for r in burst)
        out["slack_calls_per_turn"] = statistics.mean(r["slack_calls_per_turn"] for r in paced)
        delays = [r["first_text_delay_ms_p50"] for r in paced if r["first_text_delay_ms_p50"]]
        out["first_text_delay_ms_p50"] = statistics.median(delays) if delays else None
    if "loop_lag" in details:
        out["loop_lag_max_ms"] = details["loop_lag"]["loop_lag_max_ms"]
    if "prefix" in details:
        out["prefix_stability"] = details["prefix"]["min_prefix_ratio"]
    if "billed" in details:
        out["billed_input_ratio_cached"] = details["billed"]["ratio"]
    if "run_both" in details:
        out["idle_rss_mb"] = details["run_both"]["idle_rss_mb"]
        out["startup_s"] = details["run_both"]["ready_s"]
    if "diagrams" in details:
        out["diagram_render_s_max"] = details["diagrams"]["render_s_max"]
        out["diagram_loop_lag_max_ms"] = details["diagrams"]["loop_lag_max_ms"]
    return out


LABELS = {
    "overhead_ms_p50": "core overhead per turn, p50 (ms)",
    "overhead_ms_p99": "core overhead per turn, p99 (ms)",
    "overhead_ms_p50_by_messages": "  p50 at 0 / 10k / 100k / 1M stored messages",
    "overhead_ratio_vs_sdk": "turn / bare SDK call (p50)",
    "messages_in_db": "stored messages",
    "concurrent_200_wall_s": "200 threads at once, 1 s model: wall (s)",
    "slack_ack_p99_ms": "Slack ack p99, 200 mentions 4 ms apart x2 (ms)",
    "slack_ack_burst_p99_ms": "Slack ack p99, 100 mentions at once x2 (ms)",
    "loop_lag_max_ms": "event-loop stall, fetch_url on a 2 MB page (ms)",
    "prefix_stability": "prompt prefix reuse (min, turn >= 2)",
    "billed_input_ratio_cached": "input billed, 10 turns, cached / uncached",
    "slack_calls_per_turn": "Slack Web API calls per answered turn",
    "first_text_delay_ms_p50": "first model token -> first text in Slack, p50 (ms)",
    "idle_rss_mb": "idle RSS, both adapters connected (MB)",
    "startup_s": "start to ready, both adapters (s)",
    "diagram_render_s_max": "Mermaid render, 12 nodes, 4 at once, max (s)",
    "diagram_loop_lag_max_ms": "event-loop stall while rendering (ms)",
}


def show(value: Any) -> str:
    """A figure for the table."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " / ".join(show(v) for v in value.values())
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def table(flat: dict[str, Any], targets: dict[str, tuple[str, float] | None]) -> str:
    """The printed table: each figure, its target, met or missed."""
    rows = [("measure", "result", "target", "")]
    for key, target in targets.items():
        if key not in flat:
            continue
        verdict = judge(flat[key], target)
        rows.append(
            (
                LABELS.get(key, key),
                show(flat[key]),
                f"{target[0]} {target[1]:g}" if target else "",
                "" if verdict is None else ("met" if verdict else "MISSED"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip()
        for r in rows
    )


MEASURES = ("overhead", "prefix", "billed", "parallel", "run_both", "slack", "loop_lag", "diagrams")


def run(measures: set[str], quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the chosen measures; their details by name."""
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        instant = FakeModelProcess(latency=0.0, answer_bytes=340)
        try:
            if "overhead" in measures:
                details["overhead_curve"] = {}
                details["seeding_s"] = {}
                for count in CURVE:
                    db, seeded_s = seeded_copy(count, work, log)
                    if seeded_s:
                        details["seeding_s"][str(count)] = seeded_s
                    turns = (300 if count == CURVE[-1] else 150) if quick else 600
                    log(f"overhead: {turns} turns with {count:,} stored messages")
                    details["overhead_curve"][str(count)] = asyncio.run(
                        bench_overhead(instant, db, turns)
                    )
                    db.unlink()
            if "prefix" in measures:
                log("prefix stability: 12 turns in one thread")
                details["prefix"] = asyncio.run(bench_prefix(instant, work / "prefix.db", 12))
            if "billed" in measures:
                log("billed input: 10 turns with prompt caching")
                details["billed"] = asyncio.run(bench_billed(instant, work / "billed.db", 10))
        finally:
            instant.stop()
        if "parallel" in measures:
            log("200 threads at once against a 1 s model")
            slow = FakeModelProcess(latency=1.0)
            try:
                details["parallel"] = asyncio.run(bench_parallel(slow, work / "par.db", 200))
            finally:
                slow.stop()
    if "run_both" in measures:
        log("archbot run with both adapters: start-up and idle memory")
        details["footprint"] = bench_footprint()
        details["run_both"] = bench_run_both()
    if "slack" in measures:
        log("Slack HTTP mode: acknowledgements under load (archbot run)")
        details["slack"] = bench_slack(200, 100, rounds=1 if quick else 3)
    if "loop_lag" in measures:
        log("event-loop stall while fetch_url converts a 2 MB page")
        details["loop_lag"] = bench_loop_lag(3 if quick else 5)
    if "diagrams" in measures:
        log("Mermaid renders")
        details["diagrams"] = bench_diagrams()
    return details


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: under 3 minutes")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where the JSON goes")
    parser.add_argument(
        "--only",
        help=f"comma-separated measures to run ({', '.join(MEASURES)}); prints, writes no JSON",
    )
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="profile archbot run during the Slack rounds with py-spy (on PATH): raw stacks",
    )
    args = parser.parse_args()
    global PY_SPY_OUT
    PY_SPY_OUT = args.py_spy or ""
    chosen = set(MEASURES)
    if args.only:
        chosen = {m.strip() for m in args.only.split(",")}
        unknown = chosen - set(MEASURES)
        if unknown:
            parser.error(f"unknown measures: {', '.join(sorted(unknown))}")

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {line}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    details = run(chosen, args.quick, log)
    wall = time.perf_counter() - started
    flat = figures(details)
    targets = {**TARGETS, **EXTRA_TARGETS}
    print(table(flat, targets))
    print(
        f"({'quick' if args.quick else 'full'} run, {wall:.0f} s, {os.cpu_count()} cores,"
        f" load average {os.getloadavg()[0]:.1f})"
    )
    if args.only:
        print(json.dumps(details, indent=2), file=sys.stderr)
        return 0
    results = {
        **{key: flat.get(key) for key in SPEC_KEYS},
        **{key: flat.get(key) for key in EXTRA_TARGETS},
        "targets": {k: f"{t[0]} {t[1]:g}" if t else None for k, t in targets.items()},
        "met": {k: judge(flat.get(k), t) for k, t in targets.items() if t is not None},
        "run": {
            "quick": args.quick,
            "wall_s": wall,
            "cores": os.cpu_count(),
            # Other work on the machine shows in every latency: the load while this ran.
            "load_average_1m_at_end": os.getloadavg()[0],
        },
        "details": details,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
