"""Secrets: stripped when loaded, and redacted from logs in every form a library prints them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from bot.errors import ConfigError
from bot.logs import RedactSecrets, configure_logging
from bot.redact import REDACTED, Redactor
from bot.settings import LogSettings, Secrets, load_secrets
from bot.store import Store
from bot.tools import ToolContext, ToolRegistry
from tests.conftest import make_settings

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # the shape of a classic GitHub token
ODD = "s3cr3t/Valu+e=\u00e9'\"x9Zq"  # characters that every escaping scheme changes
SECRET_VARS = (
    "ANTHROPIC_API_KEY",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "DISCORD_TOKEN",
    "GITHUB_TOKEN",
)


def leaks(text: str, secret: str) -> bool:
    """True when any 12-character stretch of the secret's random part is in `text`."""
    body = secret[4:]
    return any(body[i : i + 12] in text for i in range(len(body) - 11))


# -- loading ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SECRET_VARS)
@pytest.mark.parametrize("junk", ["\r", "\r\n", "\n", " ", "\t", " \r\n "])
def test_every_secret_is_stripped_when_loaded(
    monkeypatch: pytest.MonkeyPatch, name: str, junk: str
) -> None:
    monkeypatch.setenv(name, f"{junk}{TOKEN}{junk}")
    secrets = load_secrets()
    value = getattr(secrets, name.lower())
    assert value is not None and value.get_secret_value() == TOKEN


@pytest.mark.parametrize("name", SECRET_VARS)
def test_an_all_whitespace_secret_is_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, " \r\n\t ")
    assert getattr(load_secrets(), name.lower()) is None


def test_an_all_whitespace_key_means_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "\r\n")
    assert load_secrets().model_configured is False


def test_a_line_break_inside_a_secret_is_a_config_error_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN[:20] + "\r\n" + TOKEN[20:])
    with pytest.raises(ConfigError) as err:
        load_secrets()
    message = str(err.value)
    assert "GITHUB_TOKEN" in message and "line break" in message
    assert not leaks(message, TOKEN) and "\n" not in message


def test_the_base_url_is_stripped_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:8080\r\n")
    assert load_secrets().anthropic_base_url == "http://127.0.0.1:8080"


def test_secrets_given_in_code_are_stripped() -> None:
    secrets = Secrets(GITHUB_TOKEN=f"{TOKEN}\r")  # type: ignore[call-arg]
    assert secrets.github_token is not None
    assert secrets.github_token.get_secret_value() == TOKEN


# -- the redactor, one escaped form at a time ------------------------------------------

FORMS = {
    "plain": lambda s: s,
    "repr": repr,
    "repr of repr": lambda s: repr(repr(s)),
    "bytes literal": lambda s: repr(s.encode()),
    "header error": lambda s: repr(ValueError(f"Illegal header value {f'token {s}'.encode()!r}")),
    "json": json.dumps,
    "json, non-ascii kept": lambda s: json.dumps(s, ensure_ascii=False),
    "json of repr": lambda s: json.dumps(repr(s)),
    "percent-encoded": lambda s: quote(s, safe=""),
    "form-encoded": lambda s: quote_plus(s),
    "url path": lambda s: "https://example.com/x?token=" + quote(s),
    "unicode escape": lambda s: s.encode("unicode_escape").decode(),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("secret", [TOKEN, ODD, TOKEN + "\r"])
def test_each_escaped_form_is_redacted(form: str, secret: str) -> None:
    redact = Redactor([secret.strip()])
    printed = FORMS[form](secret)
    text = f"before {printed} after"
    out = redact(text)
    assert REDACTED in out
    assert out.startswith("before ") and out.endswith(" after")
    body = secret.strip()[4:]
    assert body[:8] not in out and body[-8:] not in out


def test_an_unstripped_value_given_to_the_redactor_still_matches_its_escaped_forms() -> None:
    redact = Redactor([TOKEN + "\r\n"])
    expected = r"""ValueError("Illegal header value b'token [redacted]\\r'")"""
    assert redact(FORMS["header error"](TOKEN + "\r")) == expected


def test_pieces_a_library_cut_short_are_redacted() -> None:
    redact = Redactor([TOKEN])
    cut = TOKEN[:20]
    assert redact(f"Authorization: token {cut}...") == f"Authorization: token {REDACTED}..."
    # pydantic shows long inputs as their head and tail around "..."
    middle = f"input_value='{TOKEN[:16]}...{TOKEN[-12:]}'"
    assert redact(middle) == f"input_value='{REDACTED}...{REDACTED}'"


def test_unrelated_text_is_left_alone() -> None:
    redact = Redactor([TOKEN, "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"])
    text = (
        "GET /repos/acme/trading 200 with a ghp_ token, xoxb-1234 and the last four: …Q7r8; "
        "ghp_A1b2C3 is too short a piece to tell anything"
    )
    assert redact(text) == text


def test_short_values_are_not_redacted_everywhere() -> None:
    redact = Redactor(["x", "abc"])
    assert not redact
    assert redact("a box of abc") == "a box of abc"


def test_several_secrets_and_overlaps_become_one_marker_each() -> None:
    other = "xapp-1-A0B1C2D3E4-123456789-abcdef0123456789"
    redact = Redactor([TOKEN, other])
    out = redact(f"{TOKEN}{TOKEN} and {other}")
    assert out == f"{REDACTED} and {REDACTED}"


# -- the log handler ------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _header_error() -> Exception:
    return ValueError(f"Illegal header value {f'token {TOKEN}'.encode()!r}")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_messages_arguments_tracebacks_and_stacks_are_redacted(
    restore_logging: None, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    configure_logging(LogSettings(format=fmt, level="debug"), Secrets(GITHUB_TOKEN=TOKEN))  # type: ignore[call-arg, arg-type]
    log = logging.getLogger("bot.test")
    log.info("header %r", f"token {TOKEN}\r".encode())
    log.info("args %s and %d", {"auth": TOKEN}, 3)
    try:
        raise RuntimeError("wrapped") from _header_error()
    except RuntimeError:
        log.warning("request failed", exc_info=True)
    log.error("with a stack %s", TOKEN[:24], stack_info=True)
    log.info("bad arguments %d", TOKEN)
    err = capsys.readouterr().err
    assert not leaks(err, TOKEN), err
    assert err.count(REDACTED) >= 5
    assert "ValueError: Illegal header value" in err and "Traceback" in err
    assert "bad arguments" in err


def test_every_handler_on_the_root_logger_redacts(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LogSettings(level="info"), Secrets(DISCORD_TOKEN=TOKEN))  # type: ignore[call-arg]
    root = logging.getLogger()
    assert root.handlers
    assert all(any(isinstance(f, RedactSecrets) for f in h.filters) for h in root.handlers)
    # A record from a third-party child logger reaches the handler through propagation.
    logging.getLogger("httpcore.http11").warning("send failed: %s", repr(TOKEN))
    err = capsys.readouterr().err
    assert "send failed" in err and not leaks(err, TOKEN)


async def test_a_tool_failure_carrying_a_secret_reaches_the_model_redacted(tmp_path: Path) -> None:
    token = "ghp_" + "q" * 36
    registry = ToolRegistry()

    @registry.tool
    async def leaky(ctx: ToolContext) -> str:
        """A tool whose library puts the token in its error text."""
        raise ValueError(f"Illegal header value b'token {token}\\r'")

    store = Store.open(tmp_path / "t.db")
    try:
        thread = store.ensure_thread(
            "slack/T1/C1/1.0",
            platform="slack",
            workspace="T1",
            channel="C1",
            thread="1.0",
            channel_key="slack/T1/C1",
        )
        secrets = Secrets(GITHUB_TOKEN=token)  # type: ignore[call-arg]
        ctx = ToolContext(
            store=store, settings=make_settings(tmp_path), secrets=secrets, thread=thread, user="U1"
        )
        text, is_error = await registry.call("leaky", {}, ctx)
    finally:
        store.close()
    assert is_error and "leaky failed: ValueError" in text
    assert "q" * 12 not in text and REDACTED in text
