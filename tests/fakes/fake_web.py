"""A loopback web server for fetch_url tests: pages, caps, redirects, hostile pages, and a record
of hits. `python -m tests.fakes.fake_web --port N` serves it on its own (the bench does)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.fake_anthropic import ServerThread

PAGE = """<!doctype html>
<html><head><title>Feature stores</title>
<style>body { color: red }</style>
<script>window.stealCookies()</script></head>
<body>
<h1>Feature stores in practice</h1>
<p>Keep <b>online</b> and offline features consistent. See
<a href="https://feast.dev/docs">the Feast docs</a>.</p>
<ul><li>Point-in-time joins</li><li>TTL per view</li></ul>
<img src="diagram.png" alt="diagram">
</body></html>
"""

# About 2 MB of an ordinary article: paragraphs with emphasis, links and lists.
PARAGRAPH = (
    "<p>Tick data lands in <b>partitioned</b> Parquet; see "
    '<a href="https://arrow.apache.org/docs/">the Arrow docs</a> for the layout.</p>\n'
    "<ul><li>replay by day</li><li>compact hourly</li></ul>\n"
)
PAGE_2MB = (
    "<!doctype html><html><head><title>Tick store</title></head><body><h1>Tick store</h1>\n"
    + PARAGRAPH * (2_000_000 // len(PARAGRAPH))
    + "</body></html>"
)
NESTINGS = {
    "ul": "<ul><li>",
    "table": "<table><tr><td>",
    "div": "<div>",
    "blockquote": "<blockquote>",
}


def nested_page(tag: str, size: int) -> str:
    """`size` bytes of one element opened inside itself again and again, never closed."""
    opener = NESTINGS[tag]
    return "<html><body>" + opener * (size // len(opener)) + "the bottom"


@dataclass
class FakeWeb:
    hits: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/page", self._page)
        app.router.add_get("/plain", self._plain)
        app.router.add_get("/big", self._big)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/image", self._image)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/secret", self._secret)
        app.router.add_get("/big2m", self._big2m)
        app.router.add_get("/nested/{tag}/{size:[0-9]+}", self._nested)
        app.router.add_get("/charset/{label}", self._charset)
        app.router.add_get("/location", self._location)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: object) -> web.StreamResponse:
        with self._lock:
            self.hits.append(request.path_qs)
        response: web.StreamResponse = await handler(request)  # type: ignore[operator]
        return response

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8")

    async def _plain(self, request: web.Request) -> web.Response:
        return web.Response(
            text=f"host header: {request.headers.get('Host')}\n", content_type="text/plain"
        )

    async def _big(self, request: web.Request) -> web.Response:
        return web.Response(text="<p>" + "tick data " * 300_000 + "</p>", content_type="text/html")

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        # Trickles bytes (so it never looks idle) and stops once the client hangs up.
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        for _ in range(200):
            try:
                await response.write(b".")
            except (ConnectionError, RuntimeError):
                break
            await asyncio.sleep(0.05)
        return response

    async def _image(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + bytes(32), content_type="image/png")

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def _big2m(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE_2MB, content_type="text/html", charset="utf-8")

    async def _nested(self, request: web.Request) -> web.Response:
        page = nested_page(request.match_info["tag"], int(request.match_info["size"]))
        return web.Response(text=page, content_type="text/html")

    async def _charset(self, request: web.Request) -> web.Response:
        # The label goes out verbatim, as a misconfigured or hostile server would send it.
        headers = {"Content-Type": f"text/html; charset={request.match_info['label']}"}
        return web.Response(body=b"<p>caf\xc3\xa9 \xff</p>", headers=headers)

    async def _location(self, request: web.Request) -> web.Response:
        # A 302 whose Location is exactly ?to=... (absent when there is no `to`), padded with
        # ?pad=N more "a"s (a Location longer than any URL that fits in a tool call).
        pad = "a" * int(request.query.get("pad", "0"))
        headers = {"Location": request.query["to"] + pad} if "to" in request.query else {}
        return web.Response(status=302, headers=headers)

    async def _secret(self, request: web.Request) -> web.Response:
        return web.Response(text="ami-id: i-0123456789 (metadata!)", content_type="text/plain")


class HostServerThread(ServerThread):
    """ServerThread on a chosen loopback host (e.g. ::1)."""

    def __init__(
        self, app: web.Application, host: str, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(app)
        self.host = host
        self.ssl_context = ssl_context

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{host}:{self.port}"


def main() -> None:
    """`python -m tests.fakes.fake_web --port 8767`: serve the fake pages on 127.0.0.1."""
    import argparse

    parser = argparse.ArgumentParser(description="fake web pages on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    web.run_app(FakeWeb().app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
