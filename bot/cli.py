"""The `archbot` command line (also `python -m bot`).

Errors print one readable line to stderr and exit non-zero; no tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import shutil
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from bot import __version__
from bot.errors import ArchbotError, ConfigError
from bot.settings import (
    EXAMPLE_CONFIG,
    Secrets,
    Settings,
    load_secrets,
    load_settings,
    resolve_config_path,
)

log = logging.getLogger(__name__)

EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="archbot",
        description="A senior ML systems architect for your team, in Slack, Discord and the terminal.",
    )
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: $ARCHBOT_CONFIG or ./archbot.toml)"
    )
    parser.add_argument("--version", action="version", version=f"archbot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = sub.add_parser("chat", help="talk to the architect in this terminal")
    chat.add_argument("--thread", default="default", help="conversation name (default: default)")

    sub.add_parser("run", help="run the enabled Slack/Discord adapters and check-ins until stopped")
    checkin = sub.add_parser("checkin", help="list the check-ins, or post one now")
    checkin_sub = checkin.add_subparsers(dest="checkin_command", metavar="ACTION", required=True)
    checkin_sub.add_parser("list", help="each check-in's next fire time and last run")
    checkin_run = checkin_sub.add_parser("run", help="post a check-in now (once per period)")
    checkin_run.add_argument("name", help="the check-in's name in [[checkins]]")
    checkin_run.add_argument(
        "--force", action="store_true", help="post even if this period already has a check-in"
    )
    sub.add_parser("doctor", help="check the config and reach every configured service")
    sub.add_parser("init", help="write archbot.toml from the example (never overwrites)")
    adr = sub.add_parser("adr", help="decision records written by !adr")
    adr_sub = adr.add_subparsers(dest="adr_command", metavar="ACTION", required=True)
    export = adr_sub.add_parser(
        "export", help="write every record as DIR/NNNN-title-slug.md (never over an edited file)"
    )
    export.add_argument("dir", metavar="DIR", type=Path, help="e.g. docs/adr")
    backup = sub.add_parser(
        "backup", help="write a consistent copy of the live database to PATH (safe while running)"
    )
    backup.add_argument("path", metavar="PATH", type=Path, help="the copy, e.g. backups/archbot.db")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    add_eval_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "init":
        return cmd_init(Path(args.config) if args.config else Path("archbot.toml"))
    # Until the secrets are loaded there is nothing to redact; after, every error line is.
    redact: Callable[[str], str] = str
    if args.command == "run":
        # Start-up imports and builds about a million objects that live as long as the
        # process; collecting as they are made costs ~0.3 s. The runner collects once,
        # and freezes what is left, when it is ready (adapters.runner.run_forever).
        gc.disable()
    try:
        settings = load_settings(resolve_config_path(args.config))
        secrets = load_secrets()
        from bot.logs import configure_logging

        redact = configure_logging(settings.log, secrets)
        handler = COMMANDS[args.command]
        return asyncio.run(handler(args, settings, secrets))
    except ConfigError as exc:
        print(f"archbot: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except ArchbotError as exc:
        print(f"archbot: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still one line for the user, details in the debug log
        log.debug("unexpected error", exc_info=True)
        print(
            redact(
                f"archbot: unexpected error ({type(exc).__name__}: {exc}); "
                "run with ARCHBOT_LOG__LEVEL=debug for the traceback"
            ),
            file=sys.stderr,
        )
        return EXIT_FAILURE


def cmd_init(target: Path) -> int:
    """Write the example config to `target` unless it exists."""
    if target.exists():
        print(f"archbot: {target} already exists; not overwriting it", file=sys.stderr)
        return EXIT_FAILURE
    shutil.copyfile(EXAMPLE_CONFIG, target)
    print(f"wrote {target}: edit it, put secrets in the environment, then `archbot doctor`")
    return 0


async def cmd_chat(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Console adapter: REPL on a TTY, one message from a pipe."""
    from adapters.console_adapter import answer_once, repl
    from bot.app import build_core

    core = build_core(settings, secrets)
    service = None
    if settings.checkins:  # `!checkin NAME` in the console posts through the platform's REST API
        from adapters.runner import checkin_service

        service = core.services.checkins = checkin_service(core)
    try:
        if sys.stdin.isatty():
            return await repl(core.consultant, args.thread, sys.stdout, core.diagrams)
        text = sys.stdin.read()
        return await answer_once(core.consultant, text, args.thread, sys.stdout)
    finally:
        if service is not None:
            await service.aclose()
        await core.aclose()


async def cmd_run(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Run every enabled platform adapter plus the scheduler until SIGTERM/SIGINT."""
    if not (settings.slack.enabled or settings.discord.enabled):
        print(
            "archbot: no platform adapter is enabled: set [slack] enabled = true or "
            "[discord] enabled = true (check-ins post through their platform's adapter)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from adapters.runner import run_forever

    return await run_forever(settings, secrets)


async def cmd_doctor(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Validate config, open the database, reach each configured service."""
    from bot.doctor import run_checks

    results = await run_checks(settings, secrets)
    failed = False
    for name, status, detail in results:
        failed |= status == "FAIL"
        print(f"{status:<4} {name}: {detail}")
    return EXIT_FAILURE if failed else 0


# -- archbot eval ------------------------------------------------------------------------


def add_eval_parser(sub: Any) -> None:
    """`archbot eval`: the consultant's scenario suite (SPEC section 11)."""
    ev = sub.add_parser("eval", help="score the architect on its scenario suite")
    ev.add_argument("--model", help="model to evaluate (default: [llm] model)")
    ev.add_argument("--scenarios", metavar="PATH", help="add the scenario file or folder PATH")
    ev.add_argument("--out", metavar="PATH", help="write the JSON report to PATH")
    ev.add_argument("--baseline", metavar="PATH", help="an earlier --out file: show the change")
    ev.add_argument("--min-score", type=float, metavar="X", help="exit 1 when the mean is below X")
    ev.add_argument("--judge-model", metavar="M", help="add model-graded criteria, judged by M")
    ev.add_argument(
        "--from-feedback",
        metavar="PATH",
        help="write the last 7 days' thumbs-down answers as draft scenarios into folder PATH",
    )


async def cmd_eval(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Run the scenario suite, print the table, write the JSON; or export feedback drafts."""
    from bot.evals import report
    from bot.evals.runner import run_suite
    from bot.evals.scenarios import builtin_scenarios, load_path, select

    if args.from_feedback:
        from bot.evals.feedback import export_drafts
        from bot.store import Store

        store = Store.open(settings.storage.path)
        try:
            written, skipped = export_drafts(store, Path(args.from_feedback))
        finally:
            store.close()
        print(
            f"wrote {len(written)} draft scenario(s) to {args.from_feedback}"
            + (f" ({len(skipped)} already there, left as they are)" if skipped else "")
            + "; add their checks, then `archbot eval --scenarios "
            + f"{args.from_feedback}`"
        )
        return 0
    if args.min_score is not None and not 0 <= args.min_score <= 1:
        raise ConfigError("--min-score must be between 0 and 1")
    baseline = report.load_baseline(Path(args.baseline)) if args.baseline else None
    extra = load_path(Path(args.scenarios)) if args.scenarios else []
    scenarios = select(builtin_scenarios(), extra)
    progress = sys.stderr if sys.stderr.isatty() else None
    suite = await run_suite(
        scenarios,
        settings,
        secrets,
        model=args.model,
        judge_model=args.judge_model,
        progress=progress,
    )
    print(report.render_table(suite, baseline))
    if args.out:
        report.write_json(Path(args.out), report.to_json(suite, baseline))
        print(f"wrote {args.out}")
    errors = [s.error for s in suite.scenarios if s.error]
    if errors and len(errors) == len(suite.scenarios):  # e.g. the model is unreachable
        raise ArchbotError(f"no scenario could be run: {errors[0]}")
    if args.min_score is not None and suite.mean_score < args.min_score:
        print(
            f"archbot: mean score {suite.mean_score:.2f} is below --min-score {args.min_score:g}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return 0


async def cmd_checkin(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """`checkin list` (schedule and last runs) and `checkin run NAME [--force]` (post now)."""
    if args.checkin_command == "list":
        from bot.checkins.commands import status_lines
        from bot.store import Store

        if not settings.checkins:
            print("no check-ins configured (add a [[checkins]] table to the config)")
            return 0
        store = Store.open(settings.storage.path)
        try:
            for entry in settings.checkins:
                print("\n".join(status_lines(entry, store)))
        finally:
            store.close()
        return 0
    from adapters.runner import checkin_service
    from bot.app import build_core

    core = build_core(settings, secrets)
    service = checkin_service(core)
    try:
        outcome = await service.run(args.name, force=args.force)
    finally:
        await service.aclose()
        await core.aclose()
    if outcome.status == "failed":
        print(f"archbot: checkin {outcome.line()}", file=sys.stderr)
        return EXIT_FAILURE
    print(outcome.line())
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings, Secrets], Coroutine[Any, Any, int]]] = {
    "chat": cmd_chat,
    "run": cmd_run,
    "checkin": cmd_checkin,
    "doctor": cmd_doctor,
    "eval": cmd_eval,
}


async def cmd_adr(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """`archbot adr export DIR`: the stored decision records as Markdown files."""
    from bot.decisions.records import export_records
    from bot.store import Store

    store = Store.open(settings.storage.path)
    try:
        report = export_records(store, args.dir)
    finally:
        store.close()
    for path in report.written:
        print(f"wrote {path}")
    for path in report.unchanged:
        print(f"unchanged {path}")
    for path in report.skipped:
        print(f"skipped {path}: edited since the last export, so not overwritten")
    if not (report.written or report.unchanged or report.skipped):
        print("no decision records stored yet: `!adr` in a thread writes one")
    return 0


COMMANDS["adr"] = cmd_adr


async def cmd_backup(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """`archbot backup PATH [--force]`: copy the database through SQLite's online backup API."""
    from bot.backup import backup_database

    report = await asyncio.to_thread(
        backup_database, Path(settings.storage.path), args.path, overwrite=args.force
    )
    print("\n".join(report.lines()))
    return 0


COMMANDS["backup"] = cmd_backup
