"""Marking text from repositories and web pages as data the model must not obey."""

from __future__ import annotations

import re


def untrusted(source: str, text: str) -> str:
    """Wrap repository or web text so the model treats it as data, never as instructions."""
    safe_source = source.replace('"', "'").replace("<", "(").replace(">", ")")
    body = re.sub(r"(?i)<(/?)untrusted_content", r"<\1untrusted-content", text)
    return f'<untrusted_content source="{safe_source}">\n{body}\n</untrusted_content>'
