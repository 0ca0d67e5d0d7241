"""Redacting secrets from any text: log lines, error lines, tool results.

A secret is found in every form a library may print it: plain, repr()'d,
escaped, JSON-encoded, percent-encoded, escaped twice, and as a long enough
piece of itself (a library cut it short, or shows its ends).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from bot.settings import Secrets

REDACTED = "[redacted]"
# Shorter values would blank ordinary words (a local gateway's key may be "ollama").
MIN_SECRET_LENGTH = 6
# A piece of a secret (a library cut it short, or shows its ends) is redacted once it
# carries this many characters beyond the secret's public kind prefix (`ghp_`,
# `sk-ant-api03-`, `xoxb-`): fewer reveal too little to matter, and "show the last
# four" masks stay readable.
MIN_PIECE_ENTROPY = 8
_KIND_PREFIX = re.compile(r"(?:[A-Za-z][A-Za-z0-9]{0,7}[-_]){1,3}")


def _escapes() -> list[Callable[[str], str]]:
    """How a library may print a string: repr, bytes literal, JSON, percent-encoding."""
    return [
        lambda s: repr(s)[1:-1],
        lambda s: s.encode("unicode_escape").decode("ascii"),
        lambda s: repr(s.encode("utf-8", "backslashreplace"))[2:-1],
        lambda s: json.dumps(s)[1:-1],
        lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
        lambda s: quote(s, safe=""),
        lambda s: quote(s),
        lambda s: quote_plus(s, safe=""),
    ]


def escaped_forms(secret: str) -> set[str]:
    """The secret as printed plainly, escaped once, and escaped twice (a repr inside a repr)."""
    once = {secret} | {escape(secret) for escape in _escapes()}
    twice = {escape(form) for form in once for escape in _escapes()}
    return once | twice


class Redactor:
    """Replaces every secret, in any escaped form and any long enough piece, with [redacted]."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # (form, length of the head that starts a prefix piece, length of the tail that ends a suffix piece)
        self._forms: list[tuple[str, int, int]] = []
        seen: set[str] = set()
        for raw in secrets:
            # Settings strip secrets already; a value built some other way is matched the same.
            secret = raw.strip()
            if len(secret) < MIN_SECRET_LENGTH:
                continue
            kind = _KIND_PREFIX.match(secret)
            head = (kind.end() if kind else 0) + MIN_PIECE_ENTROPY
            for form in escaped_forms(secret):
                if form in seen:
                    continue
                seen.add(form)
                if len(form) <= head:
                    self._forms.append((form, len(form), 0))
                else:
                    self._forms.append((form, head, MIN_PIECE_ENTROPY))

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        """`text` with every occurrence of a secret (or a long piece of one) redacted."""
        if not self._forms or not text:
            return text
        spans: list[tuple[int, int]] = []
        for form, head, tail in self._forms:
            spans += _prefix_spans(text, form, head)
            if tail:
                spans += _suffix_spans(text, form, tail)
        if not spans:
            return text
        out, last = [], 0
        for start, end in _merged(spans):
            out.append(text[last:start])
            out.append(REDACTED)
            last = end
        out.append(text[last:])
        return "".join(out)


def _prefix_spans(text: str, form: str, head: int) -> list[tuple[int, int]]:
    """Where `text` holds the first `head` or more characters of `form`."""
    spans = []
    start = text.find(form[:head])
    while start != -1:
        end = start + head
        while end - start < len(form) and end < len(text) and text[end] == form[end - start]:
            end += 1
        spans.append((start, end))
        start = text.find(form[:head], start + 1)
    return spans


def _suffix_spans(text: str, form: str, tail: int) -> list[tuple[int, int]]:
    """Where `text` holds the last `tail` or more characters of `form`."""
    spans = []
    end = text.find(form[-tail:])
    while end != -1:
        start, stop = end, end + tail
        offset = len(form) - tail
        while offset > 0 and start > 0 and text[start - 1] == form[offset - 1]:
            start -= 1
            offset -= 1
        spans.append((start, stop))
        end = text.find(form[-tail:], end + 1)
    return spans


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def secret_values(secrets: Secrets) -> list[str]:
    """The plain values of every configured secret (for redaction only)."""
    values = []
    for name in type(secrets).model_fields:
        value = getattr(secrets, name)
        if value is not None and hasattr(value, "get_secret_value"):
            values.append(value.get_secret_value())
    return values
