"""A loopback web server for fetch_url tests: pages, caps, redirects, and a record of hits."""

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
