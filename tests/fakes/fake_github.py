"""A fake GitHub REST API on 127.0.0.1 that githubkit talks to unmodified.

Payloads are built from recorded responses in tests/data/github (real
schemas: githubkit validates them), filled with the fake's repositories,
files, pull requests and commits. Contents answer with the file's git blob
SHA as ETag and 304 to a matching If-None-Match; every request is recorded.
Set `rate_limited` to "primary" or "secondary" to get GitHub's rate-limit
responses, `redirects` to answer a path with a 301 (a renamed repository).
`requests_outside(prefix)` lists every request that got anywhere else, judged
on the raw request target decoded up to three times. Runs in a `ServerThread`, so subprocesses can use it too.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

DATA = Path(__file__).resolve().parent.parent / "data" / "github"
WEB = "https://github.com"


def load(name: str) -> Any:
    """A recorded payload from tests/data/github."""
    return json.loads((DATA / f"{name}.json").read_text())


def blob_sha(data: bytes) -> str:
    """Git's blob id of some content (what GitHub uses as a file's sha and ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakePull:
    number: int
    title: str
    author: str
    merged_at: datetime
    files: list[str]


@dataclass
class FakeCommit:
    sha: str
    message: str
    author: str
    date: datetime
    files: list[str]


@dataclass
class FakeRequest:
    method: str
    path: str  # decoded, as aiohttp routes it
    query: dict[str, str]
    headers: dict[str, str]
    raw_path: str = ""  # the request target exactly as it arrived (percent-escapes kept)

    def decoded_paths(self) -> list[str]:
        """The raw path decoded zero, one, two and three times (a server may decode any of them)."""
        forms = [self.raw_path.split("?", 1)[0]]
        for _ in range(3):
            forms.append(unquote(forms[-1]))
        return forms

    def inside(self, prefix: str) -> bool:
        """True when every decoding of the path stays under `prefix`, with no dot segments."""
        for form in [*self.decoded_paths(), self.path]:
            segments = form.replace("\\", "/").split("/")
            if not form.startswith(prefix) or "." in segments or ".." in segments:
                return False
        return True


@dataclass
class FakeGitHub:
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo -> path -> content
    pulls: dict[str, list[FakePull]] = field(default_factory=dict)
    commits: dict[str, list[FakeCommit]] = field(default_factory=dict)
    rate_limited: str | None = None  # "primary" | "secondary"
    require_auth_for_search: bool = True
    latency: float = 0.0  # seconds before each answer (to observe concurrency)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location of a 301
    too_large_as_403: bool = False  # older GitHub: a file over 1 MB is a 403 too_large
    requests: list[FakeRequest] = field(default_factory=list)
    not_modified: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # scripting -------------------------------------------------------------------

    def add_file(self, repo: str, path: str, content: str | bytes) -> None:
        """Put a file into a repository's default branch."""
        data = content.encode() if isinstance(content, str) else content
        self.files.setdefault(repo, {})[path] = data

    def add_pull(self, repo: str, pull: FakePull) -> None:
        """A merged pull request."""
        self.pulls.setdefault(repo, []).append(pull)

    def add_commit(self, repo: str, commit: FakeCommit) -> None:
        """A commit on the default branch."""
        self.commits.setdefault(repo, []).append(commit)

    def requests_outside(self, prefix: str) -> list[FakeRequest]:
        """Recorded requests that reached anything but `prefix` (under any decoding)."""
        with self._lock:
            return [r for r in self.requests if not r.inside(prefix)]

    def requests_to(self, prefix: str) -> list[FakeRequest]:
        """Recorded requests whose path starts with `prefix`."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    # server ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/rate_limit", self._rate_limit)
        app.router.add_get("/search/code", self._search_code)
        app.router.add_get("/search/issues", self._search_issues)
        app.router.add_get("/repos/{owner}/{repo}", self._repository)
        app.router.add_get("/repos/{owner}/{repo}/contents/{path:.*}", self._contents)
        app.router.add_get("/repos/{owner}/{repo}/commits", self._list_commits)
        app.router.add_get("/repos/{owner}/{repo}/commits/{sha}", self._get_commit)
        app.router.add_get("/repos/{owner}/{repo}/pulls/{number}/files", self._pull_files)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self.requests.append(
                FakeRequest(
                    request.method,
                    request.path,
                    dict(request.query),
                    dict(request.headers),
                    request.raw_path,
                )
            )
        if request.path in self.redirects:
            # What GitHub answers for a renamed or transferred repository.
            location = self.redirects[request.path]
            return web.json_response(
                {"message": "Moved Permanently", "url": location, "documentation_url": ""},
                status=301,
                headers={"Location": location},
            )
        if self.rate_limited == "primary":
            reset = int(time.time()) + 3600
            return web.json_response(
                load("rate_limited"),
                status=403,
                headers={
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-used": "5000",
                    "x-ratelimit-reset": str(reset),
                    "x-ratelimit-resource": "core",
                },
            )
        if self.rate_limited == "secondary":
            return web.json_response(
                load("secondary_rate_limited"), status=429, headers={"retry-after": "60"}
            )
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            response: web.StreamResponse = await handler(request)
        finally:
            with self._lock:
                self.in_flight -= 1
        return response

    def _json(self, request: web.Request, payload: Any, etag: str | None = None) -> web.Response:
        body = json.dumps(payload).encode()
        tag = etag or f'W/"{hashlib.md5(body).hexdigest()}"'
        headers = {
            "ETag": tag,
            "Cache-Control": "private, max-age=60, s-maxage=60",
            "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4990",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-github-api-version-selected": request.headers.get("X-GitHub-Api-Version", ""),
        }
        if request.headers.get("If-None-Match") == tag:
            with self._lock:
                self.not_modified += 1
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers, content_type="application/json")

    def _not_found(self) -> web.Response:
        return web.json_response(load("not_found"), status=404)

    def _repo_name(self, request: web.Request) -> str:
        return f"{request.match_info['owner']}/{request.match_info['repo']}"

    # payload builders ---------------------------------------------------------------------

    @staticmethod
    def _retarget(payload: Any, repo: str) -> Any:
        return json.loads(json.dumps(payload).replace("acme/trading", repo))

    def _content_payload(self, repo: str, path: str, data: bytes) -> dict[str, Any]:
        payload: dict[str, Any] = self._retarget(load("content_file"), repo)
        sha = blob_sha(data)
        api = payload["url"].split("/repos/")[0]
        name = path.rsplit("/", 1)[-1]
        payload.update(
            name=name,
            path=path,
            sha=sha,
            size=len(data),
            content=base64.encodebytes(data).decode() if len(data) <= 1_000_000 else "",
            encoding="base64" if len(data) <= 1_000_000 else "none",
            url=f"{api}/repos/{repo}/contents/{path}?ref=main",
            git_url=f"{api}/repos/{repo}/git/blobs/{sha}",
            html_url=f"{WEB}/{repo}/blob/main/{path}",
            download_url=f"https://raw.githubusercontent.com/{repo}/main/{path}",
        )
        payload["_links"] = {
            "self": payload["url"],
            "git": payload["git_url"],
            "html": payload["html_url"],
        }
        return payload

    def _user(self, login: str) -> dict[str, Any]:
        user: dict[str, Any] = json.loads(
            json.dumps(load("search_issues")["items"][0]["user"]).replace("dana", login)
        )
        return user

    # handlers -----------------------------------------------------------------------------

    async def _rate_limit(self, request: web.Request) -> web.Response:
        return self._json(request, load("rate_limit"))

    async def _repository(self, request: web.Request) -> web.Response:
        repo = self._repo_name(request)
        if repo not in self.files:
            return self._not_found()
        payload = self._retarget(load("repository"), repo)
        return self._json(request, payload)

    async def _contents(self, request: web.Request) -> web.Response:
        repo = self._repo_name(request)
        path = request.match_info["path"].strip("/")
        files = self.files.get(repo)
        if files is None:
            return self._not_found()
        if path in files:
            data = files[path]
            if self.too_large_as_403 and len(data) > 1_000_000:
                return web.json_response(
                    {
                        "message": "This API returns blobs up to 1 MB in size. The requested "
                        "blob is too large to fetch via the API, but you can use the Git Data "
                        "API to request blobs up to 100 MB in size.",
                        "errors": [{"resource": "Blob", "field": "data", "code": "too_large"}],
                        "documentation_url": "https://docs.github.com/rest/repos/contents#get-repository-content",
                        "status": "403",
                    },
                    status=403,
                )
            return self._json(
                request, self._content_payload(repo, path, data), etag=f'"{blob_sha(data)}"'
            )
        base = f"{path}/" if path else ""  # '' is the repository root
        children = sorted(p for p in files if p.startswith(base))
        if not children:
            return self._not_found()
        entries: dict[str, dict[str, Any]] = {}
        for child in children:
            rest = child[len(base) :]
            name = rest.split("/", 1)[0]
            full = f"{base}{name}"
            if name in entries:
                continue
            item = self._content_payload(repo, full, files.get(full, b""))
            item.pop("content")
            item.pop("encoding")
            if full not in files:
                item.update(type="dir", size=0, download_url=None)
            entries[name] = item
        return self._json(request, list(entries.values()))

    async def _search_code(self, request: web.Request) -> web.Response:
        if self.require_auth_for_search and "Authorization" not in request.headers:
            return web.json_response(
                {
                    "message": "Requires authentication",
                    "documentation_url": "https://docs.github.com/rest/search/search#search-code",
                    "status": "401",
                },
                status=401,
            )
        words = request.query.get("q", "").split()
        repo = next((w[5:] for w in words if w.startswith("repo:")), None)
        terms = [w.strip('"').lower() for w in words if ":" not in w]
        if repo is None or not terms:
            return web.json_response(
                {
                    "message": "Validation Failed",
                    "errors": [
                        {
                            "message": "Must include at least one user, organization, or repository",
                            "resource": "Search",
                            "field": "q",
                            "code": "invalid",
                        }
                    ],
                    "documentation_url": "https://docs.github.com/v3/search/",
                    "status": "422",
                },
                status=422,
            )
        template = load("search_code")
        items = []
        for path, data in sorted(self.files.get(repo, {}).items()):
            if b"\0" in data[:8192]:
                continue
            text = data.decode("utf-8", errors="replace")
            if not all(t in text.lower() or t in path.lower() for t in terms):
                continue
            item = self._retarget(copy.deepcopy(template["items"][0]), repo)
            sha = blob_sha(data)
            api = item["url"].split("/repositories/")[0]
            item.update(
                name=path.rsplit("/", 1)[-1],
                path=path,
                sha=sha,
                url=f"{api}/repositories/748213/contents/{path}?ref=main",
                git_url=f"{api}/repositories/748213/git/blobs/{sha}",
                html_url=f"{WEB}/{repo}/blob/main/{path}",
                file_size=len(data),
            )
            lines = text.splitlines()
            hit = next((i for i, line in enumerate(lines) if terms[0] in line.lower()), 0)
            fragment = "\n".join(lines[max(0, hit - 1) : hit + 2])
            item["line_numbers"] = [str(hit + 1)]
            item["text_matches"][0].update(fragment=fragment, object_url=item["url"])
            start = fragment.lower().find(terms[0])
            item["text_matches"][0]["matches"] = (
                [
                    {
                        "text": fragment[start : start + len(terms[0])],
                        "indices": [start, start + len(terms[0])],
                    }
                ]
                if start >= 0
                else []
            )
            items.append(item)
        per_page = int(request.query.get("per_page", "30"))
        return self._json(
            request,
            {"total_count": len(items), "incomplete_results": False, "items": items[:per_page]},
        )

    async def _search_issues(self, request: web.Request) -> web.Response:
        words = request.query.get("q", "").split()
        repo = next((w[5:] for w in words if w.startswith("repo:")), "")
        since = next((w.split(">=", 1)[1] for w in words if w.startswith("merged:>=")), None)
        cutoff = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
        if cutoff is not None and cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)
        template = load("search_issues")
        items = []
        for pull in sorted(self.pulls.get(repo, []), key=lambda p: p.merged_at, reverse=True):
            if cutoff is not None and pull.merged_at < cutoff:
                continue
            item = self._retarget(copy.deepcopy(template["items"][0]), repo)
            text = json.dumps(item).replace("/42", f"/{pull.number}")
            item = json.loads(text)
            merged = pull.merged_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            item.update(
                number=pull.number,
                title=pull.title,
                user=self._user(pull.author),
                closed_at=merged,
                updated_at=merged,
                id=2914432000 + pull.number,
            )
            item["pull_request"]["merged_at"] = merged
            items.append(item)
        return self._json(
            request,
            {
                "total_count": len(items),
                "incomplete_results": False,
                "search_type": "lexical",
                "items": items,
            },
        )

    def _commit_payload(self, repo: str, c: FakeCommit, with_files: bool) -> dict[str, Any]:
        template = load("commit")
        payload: dict[str, Any] = self._retarget(
            json.loads(json.dumps(template).replace(template["sha"], c.sha)), repo
        )
        date = c.date.strftime("%Y-%m-%dT%H:%M:%SZ")
        payload["commit"]["message"] = c.message
        payload["commit"]["author"].update(
            name=c.author.title(), email=f"{c.author}@acme.example", date=date
        )
        payload["commit"]["committer"]["date"] = date
        payload["author"] = self._user(c.author)
        if with_files:
            entry = template["files"][0]
            payload["files"] = [dict(self._retarget(entry, repo), filename=f) for f in c.files]
        else:
            payload.pop("files", None)
            payload.pop("stats", None)
        return payload

    async def _list_commits(self, request: web.Request) -> web.Response:
        repo = self._repo_name(request)
        if repo not in self.files:
            return self._not_found()
        since = request.query.get("since")
        cutoff = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
        path = request.query.get("path")
        out = []
        for c in sorted(self.commits.get(repo, []), key=lambda c: c.date, reverse=True):
            if cutoff is not None and c.date < cutoff:
                continue
            if path and not any(f == path or f.startswith(path.rstrip("/") + "/") for f in c.files):
                continue
            out.append(self._commit_payload(repo, c, with_files=False))
        return self._json(request, out[: int(request.query.get("per_page", "30"))])

    async def _get_commit(self, request: web.Request) -> web.Response:
        repo = self._repo_name(request)
        sha = request.match_info["sha"]
        for c in self.commits.get(repo, []):
            if c.sha.startswith(sha):
                return self._json(request, self._commit_payload(repo, c, with_files=True))
        return self._not_found()

    async def _pull_files(self, request: web.Request) -> web.Response:
        repo = self._repo_name(request)
        number = int(request.match_info["number"])
        for pull in self.pulls.get(repo, []):
            if pull.number == number:
                entry = self._retarget(load("pull_files")[0], repo)
                return self._json(request, [dict(entry, filename=f) for f in pull.files])
        return self._not_found()


def trading_repo(fake: FakeGitHub, repo: str = "acme/trading") -> FakeGitHub:
    """Fill the fake with a small trading repository, one merged PR and two commits."""
    fake.add_file(repo, "src/trading/features/store.py", (DATA / "files" / "store.py").read_text())
    fake.add_file(repo, "src/trading/serving/online.py", (DATA / "files" / "online.py").read_text())
    fake.add_file(repo, "README.md", "# trading\n\nIngestion, features, models and execution.\n")
    fake.add_file(repo, "assets/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    fake.add_file(repo, "data/big.csv", "".join(f"{i},{i * 0.5},tick\n" for i in range(1, 1201)))
    now = datetime.now(UTC)
    fake.add_pull(
        repo,
        FakePull(
            number=42,
            title="Add FeatureStore online read path",
            author="dana",
            merged_at=now.replace(microsecond=0) - _days(2),
            files=["src/trading/features/store.py", "src/trading/serving/online.py"],
        ),
    )
    fake.add_pull(
        repo,
        FakePull(
            number=7,
            title="Old backtest harness",
            author="lee",
            merged_at=now.replace(microsecond=0) - _days(40),
            files=["src/trading/backtest/harness.py"],
        ),
    )
    fake.add_commit(
        repo,
        FakeCommit(
            sha="d670460b4b4aece5915caf5c68d12f560a9fe3e4",
            message="Add FeatureStore online read path (#42)\n\nReads from Redis with a 5 ms budget.",
            author="dana",
            date=now.replace(microsecond=0) - _days(2),
            files=["src/trading/features/store.py", "src/trading/serving/online.py"],
        ),
    )
    fake.add_commit(
        repo,
        FakeCommit(
            sha="5d2c1b0a99887766554433221100ffeeddccbbaa",
            message="Pin polars to 1.x",
            author="lee",
            date=now.replace(microsecond=0) - _days(1),
            files=["pyproject.toml"],
        ),
    )
    return fake


def _days(n: int) -> timedelta:
    return timedelta(days=n)
