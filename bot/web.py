"""fetch_url: a public web page as readable text, behind an SSRF guard.

The guard resolves the host itself and refuses loopback, private,
link-local (cloud metadata at 169.254.169.254), multicast, reserved and
unspecified addresses, IPv4 and IPv6 (mapped, 6to4, Teredo and NAT64 forms
included), on the first request and after every redirect (redirects are
followed by hand). The connection goes to the very address that was checked,
with the original Host header and TLS server name, so a DNS answer that
changes between check and connect (rebinding) cannot slip through.
`[fetch] allow_private_addresses = true` turns the guard off.

Nothing derived from a page's body is computed on the event loop: decoding and
HTML-to-Markdown conversion run in a `bot.web_worker` child process started
per page (lazily, a few at a time, from a thread), with an address-space budget
it sets on itself and a wall-clock budget after which it is killed. A page that exceeds
either, or nests its elements deeper than any real page, is a tool error.
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from bot.errors import AccessDenied, ToolError
from bot.settings import FetchSettings
from bot.web_worker import EXIT_CHARSET, EXIT_DEPTH, EXIT_MEMORY, EXIT_OK
from bot.workers import WorkerJob

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MAX_BYTES = 2_000_000  # bytes read from the wire (after decompression)
MAX_CHARS = 40_000  # characters of text handed to the model
TOTAL_TIMEOUT = 20.0  # seconds for the whole fetch, redirects included
REQUEST_TIMEOUT = 10.0
USER_AGENT = "archbot-fetch/1.0 (+https://github.com/archbot)"
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")
HTML_TYPES = ("text/html", "application/xhtml+xml")
REDIRECT_CODES = (301, 302, 303, 307, 308)
CONVERT_TIMEOUT = 5.0  # wall-clock seconds for decoding + conversion in the worker
CONVERT_MEMORY = 512 * 1024 * 1024  # the worker's address space (RLIMIT_AS), in bytes
MAX_DEPTH = 512  # element nesting; Chromium's HTML parser stops nesting at 512 too
MAX_CONVERSIONS = 2  # workers at once: the machine's cores, not the loop, do this work
SHUTTING_DOWN = "fetch_url stopped: archbot is shutting down."
# The worker gets no secrets: only what a Python interpreter needs to find its packages.

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class FetchedPage:
    """A fetched page reduced to text."""

    url: str
    status: int
    content_type: str
    text: str
    truncated: bool


def blocked_reason(ip: IPAddress) -> str | None:
    """Why an address must not be fetched from (None when it is a public unicast address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = blocked_reason(embedded)
            if inner:
                return f"{inner} (embedded in {ip})"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata lives here)"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not globally routable"),
    )
    for hit, label in checks:
        if hit:
            return label
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver returns for host:port."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def text_encoding(label: str | None) -> str:
    """The codec name for a declared charset (UTF-8 when none); ToolError for unusable labels."""
    if not label:
        return "utf-8"
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        info = None
    # Binary codecs (base64, zlib, rot13) are not text encodings even though they look up.
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise ToolError(f"the page declares charset {label[:60]!r}, which is not a text encoding.")
    return info.name


class TextConverter:
    """Turns fetched bodies into text in `bot.web_worker` processes with time and memory budgets.

    Each worker is started, fed and reaped from a thread of a small pool: fork/exec holds the
    calling thread until the child has exec'd, which on a busy machine is tens of ms that the
    event loop must not wait. The loop only awaits the result, and kills workers on shutdown.
    """

    def __init__(
        self,
        *,
        timeout: float = CONVERT_TIMEOUT,
        memory: int = CONVERT_MEMORY,
        max_depth: int = MAX_DEPTH,
        concurrency: int = MAX_CONVERSIONS,
    ) -> None:
        self.timeout = timeout
        self.memory = memory
        self.max_depth = max_depth
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._threads: ThreadPoolExecutor | None = None  # started with the first conversion
        self._jobs: set[WorkerJob] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    async def convert(
        self, raw: bytes, *, html: bool, encoding: str, max_chars: int, source: str
    ) -> str:
        """The text of `raw` (Markdown for HTML), at most max_chars + 1 characters; ToolError else."""
        # -P: the current directory is not put on sys.path, so nothing there shadows a module.
        command = [sys.executable, "-P", "-m", "bot.web_worker"]
        command += [str(self.memory), str(max(1, round(self.timeout + 1)))]
        command += ["html" if html else "text", encoding, str(max_chars), str(self.max_depth)]
        job = WorkerJob(command, raw)
        async with self._slots:
            if self._closed:
                raise ToolError(SHUTTING_DOWN)
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.concurrency, "fetch-convert")
            self._jobs.add(job)
            self._idle.clear()
            work = asyncio.get_running_loop().run_in_executor(self._threads, job.run, self.timeout)
            try:
                code, out, err = await asyncio.shield(work)
            except OSError as exc:
                raise ToolError(f"the page converter could not start: {exc}") from None
            finally:
                if not work.done():  # cancelled: kill the worker, and still see it reaped
                    job.stop()
                    await asyncio.wait([work])
                self._jobs.discard(job)
                if not self._jobs:
                    self._idle.set()
        if self._closed:
            raise ToolError(SHUTTING_DOWN)
        if job.timed_out:
            raise ToolError(
                f"converting {source} to text took longer than {self.timeout:g} s; "
                "the page was not read."
            )
        return self._verdict(code, out, err, encoding, source)

    def _verdict(self, code: int, out: bytes, err: bytes, encoding: str, source: str) -> str:
        if code == EXIT_OK:
            return out.decode("utf-8", errors="replace")
        if code == EXIT_CHARSET:
            raise ToolError(f"{source} cannot be decoded as its declared charset {encoding!r}.")
        if code == EXIT_DEPTH:
            raise ToolError(
                f"{source} nests its HTML elements more than {self.max_depth} levels deep; "
                "a page like that is not read."
            )
        if code == -signal.SIGXCPU:
            raise ToolError(
                f"converting {source} to text used more than {self.timeout:g} s of CPU; "
                "the page was not read."
            )
        # A Python MemoryError exits EXIT_MEMORY; the Rust converter aborts when an allocation fails.
        if code in (EXIT_MEMORY, -signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS):
            raise ToolError(
                f"converting {source} to text needed more than {self.memory // 2**20} MB; "
                "the page was not read."
            )
        last = err.decode("utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        log.warning("fetch_url: the converter exited with %s: %s", code, last[0][:200])
        raise ToolError(f"converting {source} to text failed (the converter exited with {code}).")

    async def aclose(self) -> None:
        """Kill every conversion still running and wait until each worker is reaped."""
        self._closed = True
        for job in list(self._jobs):
            job.stop()
        await self._idle.wait()  # each worker, killed, is reaped by its thread at once
        if self._threads is not None:
            self._threads.shutdown(wait=False)


class WebFetcher:
    """Fetches public pages for the fetch_url tool."""

    def __init__(
        self,
        settings: FetchSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
        total_timeout: float = TOTAL_TIMEOUT,
        max_bytes: int = MAX_BYTES,
        max_chars: int = MAX_CHARS,
        converter: TextConverter | None = None,
    ) -> None:
        self.settings = settings
        self.converter = converter or TextConverter()
        self.resolver = resolver or system_resolver
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        if transport is None:
            # No keep-alive: a pooled TLS connection is keyed by IP, and reusing one
            # verified for another host name on the same CDN address would skip the
            # certificate check for this one.
            transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=REQUEST_TIMEOUT,
            follow_redirects=False,  # every hop is checked by hand
            trust_env=False,  # a proxy from the environment would bypass the address check
            headers={"User-Agent": USER_AGENT, "Accept": "text/html,text/plain;q=0.9,*/*;q=0.5"},
        )

    async def aclose(self) -> None:
        """Close the connection pool and stop any conversion still running."""
        await self.converter.aclose()
        await self._client.aclose()

    async def fetch(self, url: str) -> FetchedPage:
        """Fetch `url` as text; AccessDenied for guarded addresses, ToolError for other failures."""
        try:
            async with asyncio.timeout(self.total_timeout):
                return await self._fetch(url)
        except TimeoutError:
            raise ToolError(f"{url} did not answer within {self.total_timeout:.0f} s.") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
        except httpx.InvalidURL as exc:
            # httpx builds the next request of every redirect, even unfollowed, from Location.
            raise ToolError(
                f"fetching {url} failed: it redirects to an invalid URL ({exc})."
            ) from None
        finally:
            self._client.cookies.clear()

    async def _fetch(self, url: str) -> FetchedPage:
        current = self._parse(url)
        for _ in range(MAX_REDIRECTS + 1):
            request = await self._pinned_request(current)
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code in REDIRECT_CODES:
                    target = self._redirect_target(current, response)
                    log.info("fetch_url: %s redirects to %s", current, target)
                    current = self._parse(target)
                    continue
                return await self._read(current, response)
            finally:
                await response.aclose()
        raise ToolError(f"{url} redirected more than {MAX_REDIRECTS} times.")

    def _redirect_target(self, current: httpx.URL, response: httpx.Response) -> str:
        """The absolute URL a redirect points to; ToolError when Location is missing or garbage."""
        location = response.headers.get("location", "").strip()
        if not location:
            raise ToolError(
                f"{current} answered HTTP {response.status_code} without a Location to follow."
            )
        try:
            return str(current.join(location))
        except (httpx.InvalidURL, ValueError) as exc:
            raise ToolError(
                f"{current} redirects to {location[:200]!r}, which is not a valid URL ({exc})."
            ) from None

    def _parse(self, url: str) -> httpx.URL:
        try:
            parsed = httpx.URL(url.strip())
        except (httpx.InvalidURL, ValueError) as exc:
            raise ToolError(f"{url!r} is not a valid URL ({exc}).") from None
        if parsed.scheme not in ("http", "https"):
            raise AccessDenied(
                f"Only http and https URLs can be fetched, not {parsed.scheme or 'this'!r}."
            )
        if not parsed.host:
            raise ToolError(f"{url!r} has no host.")
        if parsed.userinfo:
            raise AccessDenied("URLs with credentials in them are not fetched.")
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise ToolError(f"{url[:200]!r} has no valid port ({parsed.port}).")
        return parsed

    async def _pinned_request(self, url: httpx.URL) -> httpx.Request:
        """A request that connects to a checked address of url's host."""
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                resolved = await self.resolver(host, port)
            except OSError as exc:
                raise ToolError(f"cannot resolve {host}: {exc}") from None
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
        if not addresses:
            raise ToolError(f"{host} has no address.")
        if not self.settings.allow_private_addresses:
            for ip in addresses:
                reason = blocked_reason(ip)
                if reason:
                    raise AccessDenied(
                        f"Refused to fetch {url}: {host} resolves to {ip}, a {reason} address "
                        "(SSRF guard; nothing was sent). Only public addresses can be fetched."
                    )
        ip = addresses[0]
        request = self._client.build_request("GET", url.copy_with(host=str(ip)))
        default_port = (url.scheme == "https" and port == 443) or (
            url.scheme == "http" and port == 80
        )
        shown_host = f"[{host}]" if ":" in host else host
        request.headers["Host"] = shown_host if default_port else f"{shown_host}:{port}"
        if url.scheme == "https":
            request.extensions["sni_hostname"] = host
        # Never reuse the connection: pools are keyed by IP, and a TLS session verified
        # for another name on the same address must not carry this host's request.
        request.headers["Connection"] = "close"
        return request

    async def _read(self, url: httpx.URL, response: httpx.Response) -> FetchedPage:
        if response.status_code >= 400:
            raise ToolError(f"{url} answered HTTP {response.status_code}.")
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and not (
            content_type.startswith(TEXT_TYPES) or content_type.endswith(("+json", "+xml"))
        ):
            raise ToolError(
                f"{url} is {content_type}, not a text page; only text and HTML are read."
            )
        chunks: list[bytes] = []
        size = 0
        truncated = False
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= self.max_bytes:
                truncated = True
                break
            # Buffered chunks come without a pause; 2 MB of them would hold the loop for ms.
            await asyncio.sleep(0)
        raw = b"".join(chunks)[: self.max_bytes]
        try:
            encoding = text_encoding(response.charset_encoding)
        except ToolError as exc:
            raise ToolError(f"{url}: {exc}") from None
        text = await self.converter.convert(
            raw,
            html=content_type in HTML_TYPES or not content_type,
            encoding=encoding,
            max_chars=self.max_chars,
            source=str(url),
        )
        if len(text) > self.max_chars:
            text = text[: self.max_chars]
            truncated = True
        return FetchedPage(
            str(url), response.status_code, content_type or "unknown", text, truncated
        )
