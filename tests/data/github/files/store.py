"""Feature store facade: online reads from Redis, offline reads from Parquet."""

from __future__ import annotations

from trading.features.schema import FeatureView


class FeatureStore:
    """Online/offline feature access with a latency budget."""

    def __init__(self, redis_url: str, offline_root: str) -> None:
        self.redis_url = redis_url
        self.offline_root = offline_root

    def get_online(self, view: FeatureView, keys: list[str]) -> dict[str, float]:
        """Latest feature values for `keys`; raises when the 5 ms budget is blown."""
        raise NotImplementedError
