"""Prometheus metrics, served when `[metrics] port` > 0."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter, start_http_server

log = logging.getLogger(__name__)

TURNS = Counter("archbot_turns_total", "Turns answered, by outcome", ["outcome"])
MODEL_TOKENS = Counter("archbot_model_tokens_total", "Model tokens, by kind", ["kind"])
CHECKINS = Counter("archbot_checkins_total", "Check-in runs, by outcome", ["outcome"])


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> Callable[[], None]:
    """Serve /metrics on addr:port in a background thread; returns a function that stops it."""
    server, thread = start_http_server(port, addr=addr)
    log.info("metrics on http://%s:%d/metrics", addr, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
