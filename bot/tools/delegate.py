"""delegate_to_software_architect: a second model call with the implementation persona.

The consultant stays at the architecture level and hands implementation
planning to this colleague. The call has its own system prompt and token
budget, no tools (so it cannot recurse), and is recorded in the usage ledger
as purpose "delegation".
"""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import Field

from bot.consultant import check_daily_budget
from bot.errors import ModelUnavailable, ToolError
from bot.prompts import SOFTWARE_ARCHITECT_PROMPT
from bot.tools import ToolContext, tool

log = logging.getLogger(__name__)


def delegation_message(task: str, context: str | None) -> str:
    """The single user message the Software Architect receives."""
    text = f"## Task\n{task.strip()}"
    if context and context.strip():
        text += f"\n\n## Context from the design discussion\n{context.strip()}"
    return text


@tool
async def delegate_to_software_architect(
    ctx: ToolContext,
    task: Annotated[
        str,
        Field(
            min_length=1,
            max_length=8000,
            description="What to plan, e.g. 'Implement the feature-store read path we chose: "
            "Feast online store on Redis, offline on Parquet'.",
        ),
    ],
    context: Annotated[
        str | None,
        Field(
            max_length=30000,
            description="Decisions, constraints, numbers and relevant file paths from this "
            "discussion; the Software Architect sees nothing else.",
        ),
    ] = None,
) -> str:
    """Hand an implementation task to the Software Architect and get back a concrete plan: modules, interfaces, ordered steps and tests.

    Use it once the architecture decision is made and the team needs an
    implementation plan, instead of writing the code yourself. The Software
    Architect sees only what you pass in task and context, so include the
    decisions, constraints and file paths that matter. Summarise the plan for
    the team and add its steps as todos when useful.
    """
    model = ctx.services.model
    if model is None:
        raise ToolError("No model is available for delegation.")
    try:
        check_daily_budget(ctx.store, ctx.settings, ctx.user)
        result = await model.complete(
            system=SOFTWARE_ARCHITECT_PROMPT,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": delegation_message(task, context)}],
                }
            ],
            purpose="delegation",
            thread_id=ctx.thread.id,
            channel_key=ctx.thread.channel_key,
            user=ctx.user,
            max_tokens=ctx.settings.llm.delegate_max_tokens,
        )
    except ModelUnavailable as exc:
        raise ToolError(f"The Software Architect could not be reached: {exc}.") from None
    plan = result.text
    if not plan:
        raise ToolError("The Software Architect returned an empty plan.")
    cut = ""
    if result.stop_reason == "max_tokens":
        cut = "\n\n[The plan was cut at the delegation token budget ([llm] delegate_max_tokens).]"
    log.info("delegation returned %d characters", len(plan))
    return f"Plan from the Software Architect:\n\n{plan}{cut}"
