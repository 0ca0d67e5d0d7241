"""fetch_url: a public web page as readable text, behind an SSRF guard.

The guard resolves the host itself and refuses loopback, private,
link-local (cloud metadata at 169.254.169.254), multicast, reserved and
unspecified addresses, IPv4 and IPv6 (mapped, 6to4, Teredo and NAT64 forms
included), on the first request and after every redirect (redirects are
followed by hand). The connection goes to the very address that was checked,
with the original Host header and TLS server name, so a DNS answer that
changes between check and connect (rebinding) cannot slip through.
`[fetch] allow_private_addresses = true` turns the guard off.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import html2text
import httpx

from bot.errors import AccessDenied, ToolError
from bot.settings import FetchSettings

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MAX_BYTES = 2_000_000  # bytes read from the wire (after decompression)
MAX_CHARS = 40_000  # characters of text handed to the model
TOTAL_TIMEOUT = 20.0  # seconds for the whole fetch, redirects included
REQUEST_TIMEOUT = 10.0
USER_AGENT = "archbot-fetch/1.0 (+https://github.com/archbot)"
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")
HTML_TYPES = ("text/html", "application/xhtml+xml")

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


def html_to_text(html: str) -> str:
    """Readable Markdown-ish text from HTML (links kept, images dropped)."""
    converter = html2text.HTML2Text()
    converter.ignore_images = True
    converter.ignore_emphasis = False
    converter.body_width = 0
    converter.unicode_snob = True
    return converter.handle(html).strip()


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
    ) -> None:
        self.settings = settings
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
        """Close the connection pool."""
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
        finally:
            self._client.cookies.clear()

    async def _fetch(self, url: str) -> FetchedPage:
        current = self._parse(url)
        for _ in range(MAX_REDIRECTS + 1):
            request = await self._pinned_request(current)
            response = await self._client.send(request, stream=True)
            try:
                if response.is_redirect and "location" in response.headers:
                    target = current.join(response.headers["location"])
                    log.info("fetch_url: %s redirects to %s", current, target)
                    current = self._parse(str(target))
                    continue
                return await self._read(current, response)
            finally:
                await response.aclose()
        raise ToolError(f"{url} redirected more than {MAX_REDIRECTS} times.")

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
        raw = b"".join(chunks)[: self.max_bytes]
        encoding = response.charset_encoding or "utf-8"
        try:
            body = raw.decode(encoding, errors="replace")
        except LookupError:
            body = raw.decode("utf-8", errors="replace")
        text = html_to_text(body) if content_type in HTML_TYPES or not content_type else body
        if len(text) > self.max_chars:
            text = text[: self.max_chars]
            truncated = True
        return FetchedPage(
            str(url), response.status_code, content_type or "unknown", text, truncated
        )
