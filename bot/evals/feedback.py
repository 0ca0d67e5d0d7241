"""`archbot eval --from-feedback DIR`: the week's 👎 answers become draft scenarios.

Each draft holds the question, the thread's earlier turns as context, and (in its
notes) the answer people disliked, so a human can write the checks it should have
passed. Drafts validate as scenarios as they are; an existing file is never replaced.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.errors import ArchbotError
from bot.evals.scenarios import Scenario
from bot.feedback import down_votes_since
from bot.signoff import SIGN_OFF
from bot.store import Store

log = logging.getLogger(__name__)

WINDOW = timedelta(days=7)
CONTEXT_TURNS = 10  # earlier turns of the thread carried into a draft
TEXT_LIMIT = 4000  # characters of one context message or of the disliked answer
QUESTION_LIMIT = 8000


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 12].rstrip() + " [...cut]"


def draft_for(store: Store, turn_id: int, voters: list[str]) -> dict[str, Any] | None:
    """The draft scenario for one disliked answer, or None when the turn has no question."""
    turn = store.get_turn(turn_id)
    if not turn.text.strip():
        return None
    thread = store.get_thread_by_id(turn.thread_id)
    earlier = store.conn.execute(
        "SELECT user, user_name, text, reply FROM turns WHERE thread_id = ? AND id < ?"
        " ORDER BY id DESC LIMIT ?",
        (turn.thread_id, turn_id, CONTEXT_TURNS),
    ).fetchall()
    context: list[dict[str, Any]] = []
    for user, user_name, text, reply in reversed(earlier):
        if str(text).strip():
            context.append(
                {"user": str(user_name or user)[:80], "text": _cut(str(text), TEXT_LIMIT)}
            )
        answer = str(reply or "").replace(SIGN_OFF, "").strip()
        if answer:
            context.append({"user": "archbot", "text": _cut(answer, TEXT_LIMIT), "is_bot": True})
    disliked = (turn.reply or "").replace(SIGN_OFF, "").strip()
    draft: dict[str, Any] = {
        "id": f"feedback-{turn_id}",
        "title": _cut(f"Thumbs down: {' '.join(turn.text.split())}", 200),
        "draft": True,
        "turns": [_cut(turn.text, QUESTION_LIMIT)],
        "context": context[-50:],
        "checks": {"pitfalls": []},
        "notes": _cut(
            f"From thread {thread.key}, voted down by {', '.join(voters)}. Write the pitfalls "
            "this answer missed into checks.pitfalls, then drop the draft flag.\n\n"
            f"The answer that was voted down:\n{disliked}",
            20_000,
        ),
    }
    Scenario.model_validate(draft)  # a draft must load as it is
    return draft


def export_drafts(
    store: Store, folder: Path, *, now: datetime | None = None
) -> tuple[list[Path], list[Path]]:
    """Write a draft per 👎 answer of the last 7 days; (written, already there)."""
    since = (now or datetime.now(UTC)) - WINDOW
    voters: dict[int, list[str]] = {}
    for vote in down_votes_since(store, since):
        voters.setdefault(vote.turn_id, []).append(vote.user)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchbotError(f"cannot create {folder}: {exc.strerror or exc}") from None
    written: list[Path] = []
    skipped: list[Path] = []
    for turn_id, users in voters.items():
        draft = draft_for(store, turn_id, users)
        if draft is None:
            continue
        target = folder / f"{draft['id']}.json"
        try:
            with target.open("x", encoding="utf-8") as out:  # never replace an edited draft
                json.dump(draft, out, indent=2, ensure_ascii=False)
                out.write("\n")
        except FileExistsError:
            skipped.append(target)
            continue
        except OSError as exc:
            raise ArchbotError(f"cannot write {target}: {exc.strerror or exc}") from None
        written.append(target)
    log.info("feedback export: %d draft(s) written, %d kept", len(written), len(skipped))
    return written, skipped
