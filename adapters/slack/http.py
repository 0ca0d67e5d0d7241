"""What an Events API request must be before bolt sees it: signed, UTF-8, a JSON object.

Bolt assumes these: it parses the body before checking the signature and calls `int()`
on the timestamp header, so junk from anyone on the internet would end in a 500 and a
traceback. `request_problem` answers such a request with a 400 or 401 instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
# Fields bolt reads while building its context: an event payload's shape, not its values.
_OBJECT_FIELDS = ("team", "user", "channel", "enterprise", "view", "container", "message")


def request_problem(
    raw: bytes, headers: Mapping[str, str], verifier: SignatureVerifier | None
) -> tuple[int, str] | None:
    """Why Slack would not have sent this request, as (HTTP status, reason); None when it is fine.

    `verifier` is None in Socket Mode tests of the handler only; HTTP mode always checks the
    signature before the body is parsed.
    """
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    if verifier is not None and not _TIMESTAMP.fullmatch(timestamp):
        return 401, "missing or non-numeric X-Slack-Request-Timestamp"
    try:
        # Slack sends UTF-8, and the verifier signs text: anything else is refused first.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return 400, "body is not UTF-8"
    if verifier is not None and not verifier.is_valid(
        text, timestamp, headers.get("X-Slack-Signature", "")
    ):
        return 401, "bad or stale signature"
    if not text.strip():
        return 400, "empty body"
    content_type = headers.get("Content-Type", "").split(";")[0].strip() or None
    try:
        body: Any = parse_body(text, content_type)
    except (ValueError, RecursionError):
        return 400, "malformed JSON"
    if not isinstance(body, dict):
        return 400, f"body is a JSON {type(body).__name__}, not an object"
    return _shape_problem(body)


def _shape_problem(body: dict[str, Any]) -> tuple[int, str] | None:
    for name in _OBJECT_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, dict | str):
            return 400, f"field {name!r} is a {type(value).__name__}"
    event = body.get("event")
    if event is not None and not isinstance(event, dict):
        return 400, "field 'event' is not an object"
    authorizations = body.get("authorizations")
    if authorizations is not None and not (
        isinstance(authorizations, list) and all(isinstance(a, dict) for a in authorizations)
    ):
        return 400, "field 'authorizations' is not a list of objects"
    return None
