"""Real-time inference endpoint."""

from trading.features.store import FeatureStore

STORE = FeatureStore("redis://features:6379/0", "s3://acme-features/offline")


def predict(symbol: str) -> float:
    features = STORE.get_online(view=None, keys=[symbol])  # type: ignore[arg-type]
    return sum(features.values())
