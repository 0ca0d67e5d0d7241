"""A small MCP server made with the `mcp` SDK, for the extension tests.

    python tests/fakes/mcp_server.py                 # stdio
    python tests/fakes/mcp_server.py --http PORT     # streamable HTTP on 127.0.0.1:PORT/mcp

With `--require-header NAME`, every HTTP request must carry header NAME with
the value of this process's $EXPECTED_HEADER_VALUE (401 otherwise), as a
server behind a token would. `--exit-at-once` exits before speaking MCP (a
server that cannot start). `--calls-log PATH` appends each tool call's name,
so a test can see what reached the server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from mcp.server.mcpserver import MCPServer

app = MCPServer("archbot-test")
CALLS_LOG: str | None = None


def _log(name: str) -> None:
    if CALLS_LOG:
        with open(CALLS_LOG, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")


@app.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    _log("echo")
    return f"echo: {text}"


@app.tool()
def env_names() -> str:
    """The names of every environment variable this server process has."""
    _log("env_names")
    return ",".join(sorted(os.environ)) or "(none)"


@app.tool()
def env_value(name: str) -> str:
    """The value of one environment variable of this server process."""
    _log("env_value")
    return os.environ.get(name, "(unset)")


@app.tool()
def pid() -> str:
    """This server's process id."""
    _log("pid")
    return str(os.getpid())


@app.tool()
def crash() -> str:
    """Exit the server process at once, mid-call."""
    _log("crash")
    os._exit(3)


@app.tool()
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    _log("slow")
    time.sleep(seconds)
    return "slept"


@app.tool()
def fail() -> str:
    """Always fails."""
    _log("fail")
    raise RuntimeError("the widget is broken")


@app.tool()
def big(chars: int) -> str:
    """A long answer."""
    _log("big")
    return "x" * chars


@app.tool()
def stats() -> dict[str, Any]:
    """Structured numbers about the order router."""
    _log("stats")
    return {"p99_ms": 84, "slo_ms": 100}


@app.tool()
def delete_everything() -> str:
    """A tool no archbot config should allow."""
    _log("delete_everything")
    return "deleted"


@contextlib.contextmanager
def http_server_process(token: str) -> Iterator[str]:
    """Run this server over streamable HTTP on 127.0.0.1 behind `Authorization: <token>`."""
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    proc = subprocess.Popen(
        [sys.executable, __file__, "--http", str(port), "--require-header", "Authorization"],
        env={**os.environ, "EXPECTED_HEADER_VALUE": token},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not listening():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the HTTP MCP test server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    global CALLS_LOG
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=0)
    parser.add_argument("--require-header", default="")
    parser.add_argument("--exit-at-once", action="store_true")
    parser.add_argument("--calls-log", default="")
    args = parser.parse_args()
    if args.exit_at_once:
        print("cannot start: no licence", file=sys.stderr)
        sys.exit(1)
    CALLS_LOG = args.calls_log or None
    if not args.http:
        app.run()
        return
    import uvicorn
    from starlette.responses import PlainTextResponse

    http_app = app.streamable_http_app(host="127.0.0.1")
    header = args.require_header.lower()
    expected = os.environ.get("EXPECTED_HEADER_VALUE", "")

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and header:
            got = dict(scope["headers"]).get(header.encode(), b"").decode()
            if got != expected:
                await PlainTextResponse("unauthorized", status_code=401)(scope, receive, send)
                return
        await http_app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=args.http, log_level="warning")


if __name__ == "__main__":
    main()
