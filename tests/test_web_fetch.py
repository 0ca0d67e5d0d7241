"""fetch_url: HTML to text, caps, and the SSRF guard (nothing reaches a guarded address)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.errors import AccessDenied, ToolError
from bot.settings import FetchSettings, Secrets, Settings, StorageSettings
from bot.store import Store
from bot.tools import Services, ToolContext
from bot.toolset import tools
from bot.web import MAX_CHARS, TOTAL_TIMEOUT, TextConverter, WebFetcher
from tests.chat_helpers import chat, tool_result
from tests.conftest import eventually
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.fake_web import FakeWeb, HostServerThread

GUARDED = FetchSettings(allow_private_addresses=False)
OPEN = FetchSettings(allow_private_addresses=True)
PUBLIC_IP = "93.184.216.34"


class CountingTransport(httpx.AsyncBaseTransport):
    """The real network transport, counting what is actually sent (host, Host header)."""

    def __init__(self, redirect_public_to: str | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str]] = []
        self.redirect_public_to = redirect_public_to

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.url.host, request.headers.get("Host", "")))
        if request.url.host == PUBLIC_IP:  # stands in for a public site (no internet in tests)
            if self.redirect_public_to:
                return httpx.Response(
                    302, headers={"Location": self.redirect_public_to}, request=request
                )
            return httpx.Response(
                200, text="public page", headers={"Content-Type": "text/plain"}, request=request
            )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def site() -> Iterator[tuple[FakeWeb, str, str]]:
    fake = FakeWeb()
    v4 = ServerThread(fake.app()).start()
    v6 = HostServerThread(fake.app(), "::1").start()
    try:
        yield fake, v4.url, v6.url
    finally:
        v4.stop()
        v6.stop()


async def resolve_public(host: str, port: int) -> list[str]:
    return {"docs.example": [PUBLIC_IP], "mixed.example": [PUBLIC_IP, "10.0.0.1"]}.get(
        host, ["127.0.0.1"]
    )


async def test_html_becomes_readable_text(site: tuple[FakeWeb, str, str]) -> None:
    _, url, _ = site
    fetcher = WebFetcher(OPEN)
    try:
        page = await fetcher.fetch(f"{url}/page")
    finally:
        await fetcher.aclose()
    assert page.status == 200 and page.content_type == "text/html" and not page.truncated
    assert "# Feature stores in practice" in page.text
    assert "**online**" in page.text
    assert "[the Feast docs](https://feast.dev/docs)" in page.text
    assert "Point-in-time joins" in page.text
    assert "stealCookies" not in page.text and "color: red" not in page.text


async def test_size_and_time_caps(site: tuple[FakeWeb, str, str]) -> None:
    _, url, _ = site
    # The size cap on its own fetcher: 3 MB arriving on a busy machine can take over 0.5 s.
    sized = WebFetcher(OPEN, max_bytes=100_000, max_chars=5_000)
    fetcher = WebFetcher(OPEN, total_timeout=0.5, max_bytes=100_000, max_chars=5_000)
    try:
        page = await sized.fetch(f"{url}/big")
        assert page.truncated and len(page.text) == 5_000
        with pytest.raises(ToolError, match="did not answer within"):
            await fetcher.fetch(f"{url}/slow")
        with pytest.raises(ToolError, match="image/png, not a text page"):
            await fetcher.fetch(f"{url}/image")
    finally:
        await sized.aclose()
        await fetcher.aclose()


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/secret",
        "http://10.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port6}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://0.0.0.0:{port}/secret",
        "http://localhost:{port}/secret",
        "http://mixed.example/",
    ],
)
async def test_guard_refuses_private_addresses_without_sending(
    site: tuple[FakeWeb, str, str], target: str
) -> None:
    fake, url, url6 = site
    port, port6 = url.rsplit(":", 1)[1], url6.rsplit(":", 1)[1]
    transport = CountingTransport()
    resolver = resolve_public if "example" in target else None
    fetcher = WebFetcher(GUARDED, transport=transport, resolver=resolver)
    try:
        with pytest.raises(AccessDenied, match="SSRF guard"):
            await fetcher.fetch(target.format(port=port, port6=port6))
    finally:
        await fetcher.aclose()
    assert transport.sent == []
    assert fake.hits == []


async def test_redirect_to_loopback_is_refused(site: tuple[FakeWeb, str, str]) -> None:
    fake, url, _ = site
    transport = CountingTransport(redirect_public_to=f"{url}/secret")
    fetcher = WebFetcher(GUARDED, transport=transport, resolver=resolve_public)
    try:
        with pytest.raises(AccessDenied, match=r"resolves to 127\.0\.0\.1, a loopback address"):
            await fetcher.fetch("https://docs.example/moved")
    finally:
        await fetcher.aclose()
    assert transport.sent == [(PUBLIC_IP, "docs.example")]  # pinned to the checked IP
    assert fake.hits == []


async def test_public_host_is_fetched_through_its_checked_address() -> None:
    transport = CountingTransport()
    fetcher = WebFetcher(GUARDED, transport=transport, resolver=resolve_public)
    try:
        page = await fetcher.fetch("http://docs.example:8080/guide")
    finally:
        await fetcher.aclose()
    assert page.text == "public page" and page.url == "http://docs.example:8080/guide"
    assert transport.sent == [(PUBLIC_IP, "docs.example:8080")]


async def test_redirects_are_followed_when_allowed(site: tuple[FakeWeb, str, str]) -> None:
    fake, url, _ = site
    fetcher = WebFetcher(OPEN)
    try:
        page = await fetcher.fetch(f"{url}/redirect?to=/plain")
    finally:
        await fetcher.aclose()
    assert page.url == f"{url}/plain"
    assert page.text == f"host header: {url.removeprefix('http://')}\n"
    assert fake.hits == ["/redirect?to=/plain", "/plain"]


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://example.com/x", "http://user:pw@example.com/"]
)
async def test_only_plain_http_urls(target: str) -> None:
    fetcher = WebFetcher(OPEN)
    try:
        with pytest.raises(AccessDenied):
            await fetcher.fetch(target)
    finally:
        await fetcher.aclose()


async def test_fetch_url_tool_wraps_the_page_as_untrusted(
    tmp_path: Path, site: tuple[FakeWeb, str, str]
) -> None:
    _, url, _ = site
    store = Store.open(tmp_path / "a.db")
    fetcher = WebFetcher(OPEN)
    thread = store.ensure_thread(
        "console/t",
        platform="console",
        workspace="local",
        channel="console",
        thread="t",
        channel_key="console/local/console",
    )
    settings = Settings(storage=StorageSettings(path=str(tmp_path / "a.db")), fetch=OPEN)
    ctx = ToolContext(
        store=store,
        settings=settings,
        secrets=Secrets(),
        thread=thread,
        user="me",
        services=Services(web=fetcher),
    )
    try:
        text, is_error = await tools.call("fetch_url", {"url": f"{url}/page"}, ctx)
    finally:
        await fetcher.aclose()
        store.close()
    assert not is_error
    assert text.startswith(f"{url}/page (HTTP 200, text/html)")
    assert f'<untrusted_content source="{url}/page">' in text
    assert "# Feature stores in practice" in text


def test_fetch_url_through_archbot_chat_refuses_guarded_addresses(
    tmp_path: Path, site: tuple[FakeWeb, str, str]
) -> None:
    fake, url, url6 = site
    model = FakeAnthropic()
    server = ServerThread(model.app()).start()
    targets = [
        f"{url}/secret",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        f"{url6}/secret",
    ]
    try:
        for target in targets:
            model.reply_tool_use("fetch_url", {"url": target})
        model.reply_text("I cannot read internal addresses.")
        done = chat("Read our metadata", cwd=tmp_path, anthropic_url=server.url)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "I cannot read internal addresses." in done.stdout
    requests = model.message_requests
    assert len(requests) == len(targets) + 1
    for request, target in zip(requests[1:], targets, strict=True):
        text, is_error = tool_result(request)
        assert is_error, text
        assert "SSRF guard" in text and "nothing was sent" in text
        assert httpx.URL(target).host in text
    assert fake.hits == []


@pytest.fixture
def tls_site(tmp_path: Path) -> Iterator[tuple[FakeWeb, int, ssl.SSLContext]]:
    """An HTTPS server on 127.0.0.1 whose self-signed certificate names docs.example."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=docs.example",
            "-addext",
            "subjectAltName=DNS:docs.example",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    fake = FakeWeb()
    server = HostServerThread(fake.app(), "127.0.0.1", ssl_context=server_ctx).start()
    try:
        yield fake, server.port, client_ctx
    finally:
        server.stop()


async def test_https_to_a_pinned_address_still_verifies_the_host_name(
    tls_site: tuple[FakeWeb, int, ssl.SSLContext],
) -> None:
    fake, port, client_ctx = tls_site

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    fetcher = WebFetcher(
        OPEN, transport=httpx.AsyncHTTPTransport(verify=client_ctx), resolver=loopback
    )
    try:
        page = await fetcher.fetch(f"https://docs.example:{port}/plain")
        assert page.text == f"host header: docs.example:{port}\n"
        with pytest.raises(
            ToolError, match=r"fetching https://wrong\.example.*CERTIFICATE_VERIFY_FAILED"
        ):
            await fetcher.fetch(
                f"https://wrong.example:{port}/plain"
            )  # certificate names docs.example
    finally:
        await fetcher.aclose()
    assert fake.hits == ["/plain"]


# --- hostile pages: budgets, depth, charsets, Location (issue 8, item 2) ---


def child_processes() -> list[str]:
    """This process's converter workers and zombie children, as 'pid state'."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited while we looked
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        # A zombie has no command line left, so any zombie child counts.
        if int(ppid) == me and (state == "Z" or b"bot.web_worker" in cmdline):
            found.append(f"{entry.name} {state}")
    return found


def tool_context(tmp_path: Path, fetcher: WebFetcher) -> tuple[ToolContext, Store]:
    store = Store.open(tmp_path / "a.db")
    thread = store.ensure_thread(
        "console/t",
        platform="console",
        workspace="local",
        channel="console",
        thread="t",
        channel_key="console/local/console",
    )
    settings = Settings(storage=StorageSettings(path=str(tmp_path / "a.db")), fetch=OPEN)
    ctx = ToolContext(
        store=store,
        settings=settings,
        secrets=Secrets(),
        thread=thread,
        user="me",
        services=Services(web=fetcher),
    )
    return ctx, store


async def call_fetch_url(tmp_path: Path, url: str) -> tuple[str, bool]:
    fetcher = WebFetcher(OPEN)
    ctx, store = tool_context(tmp_path, fetcher)
    try:
        return await tools.call("fetch_url", {"url": url}, ctx)
    finally:
        await fetcher.aclose()
        store.close()


def no_traceback_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return all(r.exc_info is None and "Traceback" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("tag", "size"),
    [
        ("ul", 96_000),
        ("ul", 128_000),
        ("table", 128_000),
        ("div", 128_000),
        ("blockquote", 128_000),
    ],
)
async def test_a_deeply_nested_page_is_a_tool_error_within_the_fetch_budget(
    site: tuple[FakeWeb, str, str], tag: str, size: int
) -> None:
    _, url, _ = site
    fetcher = WebFetcher(OPEN)
    started = time.monotonic()
    try:
        with pytest.raises(ToolError, match="nests its HTML elements more than 512 levels deep"):
            await fetcher.fetch(f"{url}/nested/{tag}/{size}")
    finally:
        await fetcher.aclose()
    assert time.monotonic() - started < TOTAL_TIMEOUT / 2
    assert child_processes() == []


async def test_a_2mb_page_converts_and_is_capped(site: tuple[FakeWeb, str, str]) -> None:
    _, url, _ = site
    fetcher = WebFetcher(OPEN)
    try:
        page = await fetcher.fetch(f"{url}/big2m")
    finally:
        await fetcher.aclose()
    assert page.truncated and len(page.text) == MAX_CHARS
    assert page.text.startswith("# Tick store")
    assert "**partitioned**" in page.text
    assert "[the Arrow docs](https://arrow.apache.org/docs/)" in page.text
    assert "- replay by day" in page.text
    assert child_processes() == []


async def test_two_concurrent_fetches_both_convert(site: tuple[FakeWeb, str, str]) -> None:
    _, url, _ = site
    fetcher = WebFetcher(OPEN)
    try:
        big, small = await asyncio.gather(
            fetcher.fetch(f"{url}/big2m"), fetcher.fetch(f"{url}/page")
        )
    finally:
        await fetcher.aclose()
    assert big.truncated and "**partitioned**" in big.text
    assert "# Feature stores in practice" in small.text and not small.truncated
    assert child_processes() == []


async def test_a_page_over_the_memory_budget_is_a_tool_error(
    site: tuple[FakeWeb, str, str],
) -> None:
    _, url, _ = site
    # 64 MB of address space starts the converter but cannot hold a 2 MB page's tree.
    fetcher = WebFetcher(OPEN, converter=TextConverter(memory=64 * 2**20))
    try:
        with pytest.raises(ToolError, match=r"needed more than 64 MB; the page was not read"):
            await fetcher.fetch(f"{url}/big2m")
        page = await fetcher.fetch(f"{url}/plain")  # the next page gets a fresh worker
    finally:
        await fetcher.aclose()
    assert page.text.startswith("host header:")
    assert child_processes() == []


async def test_a_converter_that_hangs_is_killed_at_its_deadline(
    site: tuple[FakeWeb, str, str],
) -> None:
    _, url, _ = site
    fetcher = WebFetcher(OPEN, converter=TextConverter(timeout=1.0))
    try:
        task = asyncio.create_task(fetcher.fetch(f"{url}/big2m"))
        [worker] = await eventually(child_processes, "the converter to start")
        os.kill(int(worker.split()[0]), signal.SIGSTOP)  # frozen: it will never answer
        started = time.monotonic()
        with pytest.raises(ToolError, match=r"took longer than 1 s; the page was not read"):
            await task
        assert time.monotonic() - started < 3
    finally:
        await fetcher.aclose()
    assert child_processes() == []


async def test_no_worker_before_the_first_fetch_and_none_after_aclose(
    site: tuple[FakeWeb, str, str],
) -> None:
    _, url, _ = site
    fetcher = WebFetcher(OPEN)
    assert child_processes() == []  # started lazily: `archbot run` pays nothing at start
    task = asyncio.create_task(fetcher.fetch(f"{url}/big2m"))
    [worker] = await eventually(child_processes, "the converter to start")
    os.kill(int(worker.split()[0]), signal.SIGSTOP)
    await fetcher.aclose()  # shutdown kills and reaps a conversion still running
    assert child_processes() == []
    with pytest.raises(ToolError, match="shutting down"):
        await task


@pytest.mark.parametrize("label", ["klingon", "base64", "rot13", "undefined", "idna"])
async def test_an_unusable_charset_is_a_plain_tool_error(
    tmp_path: Path,
    site: tuple[FakeWeb, str, str],
    caplog: pytest.LogCaptureFixture,
    label: str,
) -> None:
    _, url, _ = site
    caplog.set_level(logging.DEBUG)
    text, is_error = await call_fetch_url(tmp_path, f"{url}/charset/{label}")
    assert is_error, text
    assert "charset" in text and label in text
    assert no_traceback_logged(caplog)


async def test_a_known_charset_is_decoded_in_the_worker(
    tmp_path: Path, site: tuple[FakeWeb, str, str]
) -> None:
    _, url, _ = site
    text, is_error = await call_fetch_url(tmp_path, f"{url}/charset/latin-1")
    assert not is_error, text
    assert "cafÃ© ÿ" in text  # the UTF-8 bytes read as Latin-1, as the header says


@pytest.mark.parametrize(
    ("location", "error"),
    [
        (None, "answered HTTP 302 without a Location to follow"),
        ("", "answered HTTP 302 without a Location to follow"),
        ("http://[::1", "Invalid URL in location header"),
        ("http://[::1]:99999/", "has no valid port (99999)"),
        ("http://example.com/?pad=70000", "Invalid URL in location header: URL too long"),
        ("javascript:alert(1)", "redirects to an invalid URL"),
        ("file:///etc/passwd", "Only http and https URLs"),
        ("gopher://127.0.0.1:70/x", "Only http and https URLs"),
        ("http://%zz/", "cannot resolve"),
        ("http://user:pw@127.0.0.1/", "credentials"),
        ("/does-not-exist", "answered HTTP 404"),
    ],
)
async def test_a_bad_location_is_a_plain_tool_error(
    tmp_path: Path,
    site: tuple[FakeWeb, str, str],
    caplog: pytest.LogCaptureFixture,
    location: str | None,
    error: str,
) -> None:
    _, url, _ = site
    caplog.set_level(logging.DEBUG)
    to, _, pad = (location or "").partition("?pad=")
    query = "" if location is None else "?" + urllib.parse.urlencode({"to": to, "pad": pad or 0})
    text, is_error = await call_fetch_url(tmp_path, f"{url}/location{query}")
    assert is_error, text
    assert error in text
    assert len(text) < 1_000  # a hostile Location is quoted short, not echoed whole
    assert no_traceback_logged(caplog)
