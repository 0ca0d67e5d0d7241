"""Shutdown honours one deadline across all adapters: they stop together, so two adapters each
waiting out their in-flight replies take the longer of the two, not the sum."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import adapters.runner as runner
from bot.app import Core
from tests.conftest import make_secrets, make_settings


class SlowToStop:
    """An adapter whose stop waits (bounded) until every adapter is stopping at once."""

    outbox = None

    def __init__(self, platform: str, all_stopping: asyncio.Event, state: dict[str, int]) -> None:
        self.platform = platform
        self.all_stopping = all_stopping
        self.state = state

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.state["now"] += 1
        self.state["most"] = max(self.state["most"], self.state["now"])
        if self.state["now"] == 2:
            self.all_stopping.set()
        try:
            await asyncio.wait_for(self.all_stopping.wait(), 5)
        except TimeoutError:
            pass  # as a real adapter gives up on its replies at its own bound
        self.state["now"] -= 1

    async def check(self) -> str:
        return "ok"


async def test_adapters_stop_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    all_stopping = asyncio.Event()
    state = {"now": 0, "most": 0}

    def two_adapters(core: Core) -> list[SlowToStop]:
        return [SlowToStop(p, all_stopping, state) for p in ("slack", "discord")]

    monkeypatch.setattr(runner, "create_adapters", two_adapters)
    stop = asyncio.Event()
    stop.set()  # stop as soon as it is up
    code = await runner.run_forever(make_settings(tmp_path), make_secrets(None), stop)
    assert code == 0
    assert state["most"] == 2  # one after another, each would have been alone
