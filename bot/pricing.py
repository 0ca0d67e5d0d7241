"""Price table per model, USD per million tokens: the one place costs come from.

Unknown models are priced like the Sonnet tier so the ledger never shows zero
for money that was spent; `!usage` marks such costs as estimates anyway.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    output: float
    cache_write: float
    cache_read: float


# Prefix match, longest first wins. Cache writes cost 1.25x input, reads 0.1x.
PRICES: dict[str, Price] = {
    "claude-opus": Price(15.0, 75.0, 18.75, 1.50),
    "claude-sonnet": Price(3.0, 15.0, 3.75, 0.30),
    "claude-haiku": Price(1.0, 5.0, 1.25, 0.10),
}
DEFAULT_PRICE = PRICES["claude-sonnet"]


def price_for(model: str) -> Price:
    """The price entry whose prefix matches `model`."""
    for prefix in sorted(PRICES, key=len, reverse=True):
        if model.startswith(prefix):
            return PRICES[prefix]
    return DEFAULT_PRICE


def estimate_cost(
    model: str, *, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int
) -> float:
    """Estimated cost in USD of one model call."""
    p = price_for(model)
    return (
        input_tokens * p.input
        + output_tokens * p.output
        + cache_write * p.cache_write
        + cache_read * p.cache_read
    ) / 1_000_000
