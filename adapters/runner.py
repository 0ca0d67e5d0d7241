"""`archbot run`: the composition root for a long-running bot.

Settings -> Core (store, model, consultant) -> enabled platform adapters ->
recovery of interrupted turns -> metrics, all on one asyncio loop. Stops on
SIGTERM/SIGINT, drains in-flight turns for up to 10 s, exits 0.

Each adapter module exposes `create_adapter(core) -> PlatformAdapter` and
`async doctor_check(settings, secrets) -> str | None`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from bot.app import Core, build_core
from bot.checkins.engine import CheckinPoster, CheckinService
from bot.checkins.scheduler import build_scheduler, describe_jobs
from bot.ports import PLATFORM_ADAPTERS, PlatformAdapter
from bot.settings import Secrets, Settings

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0
# Gen-1 collections per full one (CPython's default is 10). After gc.freeze the
# collector sees an almost empty oldest generation, so its "25 % new" rule lets
# every 10th gen-1 pass become a full one; each scans everything made since
# ready (cached histories, parsed messages) with the interpreter held: 30-70 ms
# in which not even the Slack events thread can acknowledge a request.
GC_GEN1_PER_FULL = 100


def settle_heap() -> tuple[int, int, int]:
    """Freeze what start-up built and space out full collections; returns the old thresholds.

    Everything imported and built so far lives as long as the process; frozen, full GC
    passes stop rescanning it (they otherwise stall the loop for ~100 ms at a time under
    load, delaying Slack acks).
    """
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], GC_GEN1_PER_FULL)
    return before


def checkin_service(core: Core) -> CheckinService:
    """The check-in engine for this core, posting through each platform's REST poster."""

    async def posters(platform: str) -> CheckinPoster:
        module = importlib.import_module(f"adapters.{platform}.checkin")
        poster: CheckinPoster = await module.create_poster(core.settings, core.secrets)
        return poster

    return CheckinService(
        core.settings, core.secrets, core.store, core.consultant, core.services, posters
    )


def create_adapters(core: Core) -> list[PlatformAdapter]:
    """Build every enabled adapter (imports only the enabled platforms' libraries)."""
    adapters: list[PlatformAdapter] = []
    for name, (module_name, enabled) in PLATFORM_ADAPTERS.items():
        if enabled(core.settings):
            module = importlib.import_module(module_name)
            adapters.append(module.create_adapter(core))
            log.info("%s adapter enabled", name)
    return adapters


async def run_forever(
    settings: Settings, secrets: Secrets, stop: asyncio.Event | None = None
) -> int:
    """Run until `stop` is set or a SIGTERM/SIGINT arrives; return the exit code."""
    started = time.perf_counter()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    core = build_core(settings, secrets)
    adapters = create_adapters(core)
    started_adapters: list[PlatformAdapter] = []
    stop_metrics: Callable[[], None] | None = None
    try:
        # Platforms connect in parallel: start-up takes the slowest, not the sum.
        outcomes = await asyncio.gather(*(a.start() for a in adapters), return_exceptions=True)
        started_adapters.extend(a for a, o in zip(adapters, outcomes, strict=True) if o is None)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        if settings.metrics.port:
            from bot.metrics import start_metrics_server

            stop_metrics = start_metrics_server(settings.metrics.port)
        outboxes = {a.platform: a.outbox for a in adapters}
        recovery = asyncio.create_task(core.consultant.recover_pending(outboxes))
        checkins = core.services.checkins = checkin_service(core)
        scheduler = build_scheduler(checkins)
        scheduler.start()
        for line in describe_jobs(scheduler):
            log.info("check-in scheduled: %s", line)
        # Made-up runs post in the background: start-up does not wait for the model.
        catch_up = asyncio.create_task(checkins.catch_up())
        log.info(
            "archbot ready in %.2fs (%s)",
            time.perf_counter() - started,
            ", ".join(a.platform for a in adapters),
        )
        # `archbot run` starts with the collector off (bot.cli): it goes on here.
        settle_heap()
        gc.enable()
        exit_code = await _wait_for_stop_or_failure(stop, started_adapters)
        log.info("stopping: draining in-flight turns (up to %.0fs)", DRAIN_SECONDS)
        deadline = time.monotonic() + DRAIN_SECONDS
        # Together, not one after another: each waits up to the deadline for its replies.
        stopped = await asyncio.gather(
            *(a.stop() for a in started_adapters), return_exceptions=True
        )
        for outcome in stopped:
            if isinstance(outcome, BaseException):
                raise outcome
        # One deadline for the whole shutdown, however long the adapters took.
        if not await core.consultant.drain(max(0.0, deadline - time.monotonic())):
            log.warning("some turns were still running at shutdown; they resume at next start")
        scheduler.shutdown(wait=False)
        for task in (recovery, catch_up):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await checkins.aclose()
        return exit_code
    finally:
        for adapter in started_adapters:
            with contextlib.suppress(Exception):
                await adapter.stop()
        await core.aclose()
        if stop_metrics is not None:
            stop_metrics()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _wait_for_stop_or_failure(stop: asyncio.Event, adapters: list[PlatformAdapter]) -> int:
    """Wait for a stop signal (exit 0) or an adapter whose connection ended for good (exit 1).

    An adapter may offer `async wait_closed() -> str` (the reason); one that has
    lost its platform for good should not leave a bot running deaf.
    """
    waiters: dict[asyncio.Task[Any], PlatformAdapter | None] = {
        asyncio.create_task(stop.wait()): None
    }
    for adapter in adapters:
        wait_closed = getattr(adapter, "wait_closed", None)
        if wait_closed is not None:
            waiters[asyncio.create_task(wait_closed())] = adapter
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    for task in done:
        failed = waiters[task]
        if failed is not None and not stop.is_set():
            reason = task.result() if not task.cancelled() and task.exception() is None else "?"
            log.error("%s connection lost for good: %s; shutting down", failed.platform, reason)
            print(f"archbot: {failed.platform}: {reason}", file=sys.stderr)
            return 1
    return 0
