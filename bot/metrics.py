"""Prometheus metrics, served when `[metrics] port` > 0."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

TURNS = Counter("archbot_turns_total", "Turns answered, by outcome", ["outcome"])
MODEL_TOKENS = Counter("archbot_model_tokens_total", "Model tokens, by kind", ["kind"])
# Bound once: `labels()` takes a lock and builds its key on every call, and every call counts.
TOKENS_INPUT = MODEL_TOKENS.labels(kind="input")
TOKENS_OUTPUT = MODEL_TOKENS.labels(kind="output")
TOKENS_CACHE_READ = MODEL_TOKENS.labels(kind="cache_read")
TOKENS_CACHE_WRITE = MODEL_TOKENS.labels(kind="cache_write")
CHECKINS = Counter("archbot_checkins_total", "Check-in runs, by outcome", ["outcome"])
# From the turn's arrival at its thread's queue to its finished reply (queue wait included).
TURN_LATENCY = Histogram(
    "archbot_turn_latency_seconds",
    "Seconds from a turn's arrival in its thread's queue to its reply",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
MODEL_ERRORS = Counter(
    "archbot_model_errors_total", "Turns the model could not answer, by cause", ["cause"]
)
# Tool names the model made up are counted as "unknown": labels stay bounded.
TOOL_CALLS = Counter(
    "archbot_tool_calls_total", "Tool calls, by tool and outcome (ok/error)", ["tool", "outcome"]
)
TURNS_ANSWERED = TURNS.labels(outcome="answered")
QUEUE_DEPTH = Gauge(
    "archbot_queue_depth", "Turns and commands waiting behind earlier ones in their thread"
)
INFLIGHT = Gauge("archbot_turns_in_flight", "Messages being handled right now")


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> Callable[[], None]:
    """Serve /metrics on addr:port in a background thread; returns a function that stops it."""
    server, thread = start_http_server(port, addr=addr)
    log.info("metrics on http://%s:%d/metrics", addr, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
