"""Mermaid blocks: the pure block finder, and the real renderer in its worker process."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.decisions.records import DecisionFields, render_markdown
from bot.diagrams import (
    DiagramRenderer,
    diagram_title,
    find_blocks,
    statement_count,
)
from bot.prompts import CONSULTANT_PROMPT
from bot.settings import DiagramSettings
from tests.test_decisions import STORAGE_DECISION

PNG = b"\x89PNG\r\n\x1a\n"
FLOW = """flowchart LR
  client[Trading client] --> gw[API gateway]
  gw --> orders[Order service]
  orders --> risk[Risk engine]
  orders --> book[(Order book)]"""
SEQUENCE = """sequenceDiagram
  participant C as Client
  participant G as Gateway
  C->>G: place order
  G-->>C: ack"""
BROKEN = "flowchart LR\n  A[x --> ((( }}}"
ANSWER = (
    f"Here is the layout.\n\n```mermaid\n{FLOW}\n```\n\nThe order path:\n\n"
    f"~~~mermaid\n{SEQUENCE}\n~~~\n\nAnd a draft:\n\n```mermaid\n{BROKEN}\n```\n— archbot"
)


def test_find_blocks_takes_only_mermaid_fences_in_order() -> None:
    text = f"```python\nprint(1)\n```\n{ANSWER}\n```\nflowchart LR\n  X --> Y\n```"
    assert find_blocks(text) == [FLOW, SEQUENCE, BROKEN]


def test_find_blocks_ignores_an_unclosed_fence_and_caps_the_count() -> None:
    assert find_blocks("```mermaid\nflowchart LR\n  A --> B\n") == []
    many = "\n".join(f"```mermaid\nflowchart LR\n  A{i} --> B\n```" for i in range(9))
    assert len(find_blocks(many, limit=4)) == 4


def test_statement_count_and_title() -> None:
    assert statement_count(FLOW) == 4
    assert statement_count("graph TD\n  A-->B; B-->C\n  %% a comment\n") == 2
    assert diagram_title(FLOW, "Q") == "Q"  # "flowchart LR" says nothing
    assert diagram_title("---\ntitle: Order `flow`\n---\nflowchart LR\n A-->B", "Q") == (
        "Order 'flow'"
    )


@pytest.fixture(scope="module")
def rendered() -> tuple[DiagramRenderer, list[bytes], int, float]:
    """One real render of ANSWER (two diagrams and a broken one), then the same again."""

    async def run() -> tuple[DiagramRenderer, list[bytes], int, float]:
        renderer = DiagramRenderer(DiagramSettings())
        files = await renderer.files_for(ANSWER)
        first = renderer.renders
        started = time.monotonic()
        again = await renderer.files_for(ANSWER)
        assert [f.content for f in again] == [f.content for f in files]
        await renderer.aclose()
        return renderer, [f.content for f in files], first, time.monotonic() - started

    return asyncio.run(run())


def test_two_diagrams_render_to_png_and_the_broken_one_is_left(
    rendered: tuple[DiagramRenderer, list[bytes], int, float],
) -> None:
    _, pngs, first, _ = rendered
    assert first == 3
    assert len(pngs) == 2
    for png in pngs:
        assert png.startswith(PNG)
        assert len(png) > 5_000


def test_the_cache_does_not_render_again(
    rendered: tuple[DiagramRenderer, list[bytes], int, float],
) -> None:
    renderer, _, first, seconds = rendered
    assert renderer.renders == first  # the broken one is remembered too
    assert seconds < 0.5


async def test_a_parse_error_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    renderer = DiagramRenderer(DiagramSettings())
    with caplog.at_level(logging.INFO, logger="bot.diagrams"):
        assert await renderer.render(BROKEN) is None
    await renderer.aclose()
    (record,) = [r for r in caplog.records if r.name == "bot.diagrams"]
    assert "could not parse" in record.getMessage()
    assert "\n" not in record.getMessage()
    assert record.exc_info is None


async def test_a_render_past_the_deadline_is_killed(caplog: pytest.LogCaptureFixture) -> None:
    renderer = DiagramRenderer(DiagramSettings(timeout_seconds=0.05))
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="bot.diagrams"):
        assert await renderer.render(FLOW) is None
    assert time.monotonic() - started < 5
    assert "longer than 0.05 s" in caplog.text
    await renderer.aclose()


async def test_too_many_nodes_or_off_renders_nothing() -> None:
    small = DiagramRenderer(DiagramSettings(max_nodes=2))
    assert await small.files_for(ANSWER[: ANSWER.index("The order path")]) == ()
    off = DiagramRenderer(DiagramSettings(enabled=False))
    assert await off.files_for(ANSWER) == ()
    assert small.renders == off.renders == 0


async def test_the_event_loop_stays_free_while_rendering() -> None:
    renderer = DiagramRenderer(DiagramSettings())
    render = asyncio.ensure_future(renderer.render(FLOW + "\n  risk --> audit[Audit log]"))
    gaps: list[float] = []
    while not render.done():
        before = time.monotonic()
        await asyncio.sleep(0.01)
        gaps.append(time.monotonic() - before)
    assert (await render) is not None
    assert len(gaps) > 10
    assert max(gaps) < 0.25
    await renderer.aclose()


def test_the_model_is_told_to_draw_small_mermaid_diagrams() -> None:
    assert "marked `mermaid`" in CONSULTANT_PROMPT
    assert "at most about 40 nodes" in CONSULTANT_PROMPT
    assert "textual diagrams" not in CONSULTANT_PROMPT


def test_a_decision_record_keeps_its_mermaid_block() -> None:
    context = f"Where ticks go today:\n\n```mermaid\n{FLOW}\n```"
    fields = DecisionFields.model_validate({**STORAGE_DECISION, "context": context})
    markdown = render_markdown(1, "2026-12-01", fields, None)
    assert find_blocks(markdown) == [FLOW]
