"""`!summary` and `!adr`: the only commands that call the model (one call each).

Both read the thread's stored history the way compaction does (its summary,
then the transcript rendered by `bot.consultant.render_transcript`), and run
under the thread's order, so they see every earlier turn finished.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from bot.commands import CommandContext, command, echo
from bot.consultant import check_daily_budget, render_transcript
from bot.decisions.records import (
    RECORD_TOOL,
    DecisionFields,
    DecisionRecord,
    add_record,
    channel_records,
    get_record,
    workspace_key,
)
from bot.errors import CommandError, ModelUnavailable
from bot.events import ReplyFile
from bot.llm import ModelResult
from bot.signoff import scrub_sign_off
from bot.tools.todos import todo_page

log = logging.getLogger(__name__)

SUMMARY_MAX_TOKENS = 1_500
ADR_MAX_TOKENS = 3_000
SUMMARY_MAX_CHARS = 4_000  # the model's part of a summary, before the todo list
LIST_MAX_RECORDS = 50

SUMMARY_PROMPT = """\
You summarise a design discussion between an engineering team and their ML systems \
architect, for someone who was not there. Write Markdown with exactly two sections: \
"### Decisions" (what was decided, each with its main reason and who decided, when the \
transcript says) and "### Open questions" (what is still undecided or unknown, and what would \
settle it). Use short bullets, keep names, numbers, paths and links exactly, and write \
"- None yet." under a heading with nothing to list. Do not list todos or action items: the \
thread's todo list is added after your summary. Do not add anything that was not said, and \
do not sign off.
"""

ADR_PROMPT = """\
You write Architecture Decision Records (MADR / Nygard style) from design discussions \
between an engineering team and their ML systems architect. Read the transcript and call the \
record_decision tool exactly once. If the discussion has not settled on a choice, set \
has_decision to false and say what is still open: a record of a decision nobody made is \
worse than none. Otherwise fill every field from what was said: the context and its \
numbers, every option the thread weighed with its trade-offs, the decision and why, its \
consequences and the follow-up work. Keep names, numbers and paths exactly; add nothing \
that was not said.
"""

NO_HISTORY = "There is nothing in this thread to {what} yet: ask your question first."


def stored_transcript(ctx: CommandContext) -> str:
    """The thread's memory as compaction sees it: the summary so far, then the transcript."""
    thread = ctx.thread
    after = thread.summary_until if thread.summary is not None else -1
    messages = ctx.store.history_messages(thread.id, after_turn=after, upto_turn=2**62)
    transcript = render_transcript(messages)
    # About the history budget, in characters; the newest part is what matters most.
    limit = max(8_000, ctx.settings.llm.history_token_budget * 4)
    if len(transcript) > limit:
        transcript = "[... earlier part cut]\n" + transcript[-limit:]
    parts = []
    if thread.summary:
        parts.append(f"Summary of the earlier conversation:\n{thread.summary}")
    if transcript:
        parts.append(f"Transcript:\n{transcript}")
    return "\n\n".join(parts)


async def _ask(
    ctx: CommandContext, system: str, transcript: str, purpose: str, **extra: Any
) -> ModelResult:
    """One model call over the transcript, on the ledger under `purpose`."""
    model = ctx.services.model
    if model is None:
        raise ModelUnavailable("no_key", "no model is configured")
    check_daily_budget(ctx.store, ctx.settings, ctx.msg.user)
    return await model.complete(
        system=system,
        messages=[{"role": "user", "content": [{"type": "text", "text": transcript}]}],
        purpose=purpose,
        thread_id=ctx.thread.id,
        channel_key=ctx.thread.channel_key,
        user=ctx.msg.user,
        **extra,
    )


def _todo_section(ctx: CommandContext) -> str:
    todos = ctx.store.list_todos(ctx.thread.id)
    if not todos:
        return "### Todos\n- None in this thread (add one with `!todo add TEXT`)."
    return "### Todos\n" + todo_page(todos, 1)


@command(
    "summary",
    usage="!summary",
    summary="decisions, open questions and todos of this thread (one model call)",
)
async def summary_command(ctx: CommandContext, args: str) -> str:
    """Summarise the thread: the model writes decisions and open questions, the store adds todos."""
    if args:
        raise CommandError(f"`!summary` takes no arguments (got `{echo(args)}`).")
    todos = _todo_section(ctx)
    transcript = stored_transcript(ctx)
    if not transcript:
        return f"{NO_HISTORY.format(what='summarise')}\n\n{todos}"
    try:
        result = await _ask(
            ctx, SUMMARY_PROMPT, transcript, "summary", max_tokens=SUMMARY_MAX_TOKENS
        )
    except ModelUnavailable as exc:
        return f"{todos}\n\nThe summary of decisions and open questions needs the model: {exc}."
    text = scrub_sign_off(result.text).strip()
    if not text:
        return f"{todos}\n\n(The model returned an empty summary.)"
    if len(text) > SUMMARY_MAX_CHARS:
        text = text[: SUMMARY_MAX_CHARS - 1].rsplit("\n", 1)[0] + "\n…"
    return f"**Summary of this thread**\n\n{text}\n\n{todos}"


def _list_records(ctx: CommandContext) -> str:
    records = channel_records(ctx.store, ctx.thread.channel_key)
    if not records:
        return "No decision records in this channel yet: `!adr` in a thread writes one."
    rows = ["| # | title | status | date | thread |", "|---|---|---|---|---|"]
    for r in records[-LIST_MAX_RECORDS:]:
        title = r.title.replace("|", "\\|")
        rows.append(f"| {r.number:04d} | {title} | {r.status} | {r.date} | {r.link or '-'} |")
    more = len(records) - LIST_MAX_RECORDS
    note = f"\n\n(The {more:,} oldest are not shown.)" if more > 0 else ""
    return "**Decision records in this channel**\n\n" + "\n".join(rows) + note


def _show_record(ctx: CommandContext, word: str) -> str:
    number = int(word.lstrip("#"))
    record = get_record(ctx.store, workspace_key(ctx.thread), number)
    if record is None:
        raise CommandError(f"There is no decision record {number:04d} here (see `!adr list`).")
    _attach(ctx, record)
    return record.markdown


def _attach(ctx: CommandContext, record: DecisionRecord) -> None:
    ctx.files.append(ReplyFile(record.file_name, record.markdown.encode(), "text/markdown"))


def parse_fields(result: ModelResult) -> DecisionFields:
    """The model's `record_decision` input; ModelUnavailable when it gave none or a broken one."""
    for use in result.tool_uses:
        if use.get("name") == RECORD_TOOL["name"]:
            try:
                return DecisionFields.model_validate(use.get("input") or {})
            except ValidationError as exc:
                log.warning("record_decision input did not validate: %s", exc.errors()[:3])
                raise ModelUnavailable(
                    "error", "the model's record did not fit the ADR fields"
                ) from None
    raise ModelUnavailable("error", "the model did not fill in the record")


@command(
    "adr",
    usage="!adr | !adr list | !adr N",
    summary="write this thread's decision as an ADR, attached as .md (one model call); "
    "`list`: this channel's records; `N`: show one",
)
async def adr_command(ctx: CommandContext, args: str) -> str:
    """Write, list or show Architecture Decision Records."""
    word = args.split()[0].lower() if args else ""
    if word == "list":
        return _list_records(ctx)
    if word:
        if word.lstrip("#").isascii() and word.lstrip("#").isdigit():
            return _show_record(ctx, word)
        raise CommandError(f"`{echo(word)}` is neither `list` nor a record number.")
    transcript = stored_transcript(ctx)
    if not transcript:
        return NO_HISTORY.format(what="record")
    try:
        result = await _ask(
            ctx,
            ADR_PROMPT,
            transcript,
            "adr",
            tools=[RECORD_TOOL],
            tool_choice={"type": "tool", "name": RECORD_TOOL["name"]},
            max_tokens=ADR_MAX_TOKENS,
        )
        fields = parse_fields(result)
    except ModelUnavailable as exc:
        return f"Writing a decision record needs the model: {exc}. Nothing was recorded."
    if not fields.complete:
        why = f" {fields.reason}" if fields.reason else ""
        return (
            "This thread has not reached a decision yet, so I recorded none." + why + "\n"
            "Run `!adr` again once the team has settled on a choice."
        )
    record = add_record(ctx.store, ctx.thread, fields, created_by=ctx.msg.user)
    _attach(ctx, record)
    return f"Recorded as ADR {record.number:04d} (`{record.file_name}`).\n\n{record.markdown}"
