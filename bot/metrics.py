"""Prometheus metrics, served when `[metrics] port` > 0."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

TURNS = Counter("archbot_turns_total", "Turns answered, by outcome", ["outcome"])
MODEL_TOKENS = Counter("archbot_model_tokens_total", "Model tokens, by kind", ["kind"])
TURN_SECONDS = Histogram("archbot_turn_seconds", "Wall time of a turn")


def start_metrics_server(port: int) -> None:
    """Serve /metrics on 0.0.0.0:port in a background thread."""
    start_http_server(port)
    log.info("metrics on http://0.0.0.0:%d/metrics", port)
