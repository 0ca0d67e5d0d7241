"""The GitHub client: githubkit (async, typed) behind one small class.

Every request carries a pinned `X-GitHub-Api-Version` (githubkit's versioned
namespace sets it). GET responses with an ETag or Last-Modified are kept in the
`http_cache` table of archbot's SQLite database and revalidated with
conditional requests, so a repeated read costs no rate limit and the cache
survives a restart. Rate limits become a `ToolError` at once (a chat turn must
never wait for a reset); at most a few requests are in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

import httpx
from pydantic import ValidationError

from bot.errors import ArchbotError, ToolError
from bot.store import utcnow

if TYPE_CHECKING:
    # githubkit itself is imported on the first request (see GitHubClient.rest), not
    # at start-up: a bot that never reads a repository should not pay for it.
    from githubkit import GitHub
    from githubkit.exception import GitHubException, RequestFailed
    from githubkit.retry import RetryOption
    from githubkit_schemas.v2026_03_10.models import (
        Commit,
        ContentDirectoryItems,
        ContentFile,
        ContentSubmodule,
        ContentSymlink,
        DiffEntry,
        FullRepository,
        IssueSearchResultItem,
        SearchCodeGetResponse200,
    )
    from githubkit_schemas.v2026_03_10.rest import RestNamespace

    from bot.settings import GitHubSettings, Secrets, Settings
    from bot.store import Store

log = logging.getLogger(__name__)

API_VERSION: Literal["2026-03-10"] = "2026-03-10"  # sent as X-GitHub-Api-Version on every request
MAX_CONCURRENT_REQUESTS = 4  # GitHub's secondary limits punish bursts
MAX_RETRY_WAIT = timedelta(seconds=3)  # never let a turn sleep longer than this
REQUEST_TIMEOUT = 15.0
CACHE_MAX_ROWS = 5000
# Bodies can be megabytes each (a large file's contents): rows alone do not bound the disk.
CACHE_MAX_BYTES = 64 * 1024 * 1024
TEXT_MATCH = "application/vnd.github.text-match+json"
OWNER_RE = re.compile(r"(?=[A-Za-z0-9-]{1,39}\Z)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
SHA_RE = re.compile(r"[0-9a-fA-F]{4,64}")
PERCENT_ESCAPE_RE = re.compile(r"%[0-9A-Fa-f]{2}")
# Characters git refuses in ref names (git check-ref-format), plus what a URL would give meaning to.
REF_FORBIDDEN = frozenset(" ~^:?*[\\#")
# A qualifier that picks what is searched, wherever a word starts ('-repo:', '"org:', 'x.user:');
# 'current_user:' is a word of its own, not a qualifier.
SCOPE_QUALIFIER_RE = re.compile(r"(?<![a-z0-9_])(?:repo|org|user):")
SEARCH_ENDPOINTS = ("/search/code", "/search/issues")
MAX_PATH_CHARS = 1000
MAX_SEGMENT_BYTES = 255
MAX_REF_CHARS = 250
NO_REQUEST = "No request was sent."

_DROP_HEADERS = {"content-encoding", "content-length", "transfer-encoding", "connection"}


def valid_repo_name(repo: str) -> bool:
    """True when `repo` is exactly owner/name as GitHub allows them (nothing before or after)."""
    owner, slash, name = repo.partition("/")
    return (
        slash == "/"
        and OWNER_RE.fullmatch(owner) is not None
        and NAME_RE.fullmatch(name) is not None
        and name not in (".", "..")
    )


def split_repo(repo: str) -> tuple[str, str]:
    """'owner/name' -> ('owner', 'name'); ToolError on anything else."""
    if not valid_repo_name(repo):
        raise ToolError(
            f"{repo[:150]!r} is not a repository name: use owner/name, e.g. acme/trading. "
            + NO_REQUEST
        )
    owner, name = repo.split("/", 1)
    return owner, name


def _unsafe_characters(text: str) -> str | None:
    """Why `text` cannot go into a GitHub request, judged on it and its NFKC form; else None."""
    for form in (text, unicodedata.normalize("NFKC", text)):
        if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in form):
            return "it contains control characters"
        if "\\" in form:
            return "it contains a backslash"
        if "?" in form or "#" in form:
            return "it contains '?' or '#' (paths and refs are not URLs; a ref goes in `ref`)"
        if PERCENT_ESCAPE_RE.search(form):
            return "it is URL-encoded (pass the literal path, e.g. 'docs/my file.md')"
    return None


def check_path(path: str, what: str = "path") -> list[str]:
    """A repository-relative path as its validated segments; ToolError on any escape attempt.

    The path is literal (never URL-decoded) and relative to the repository root:
    `..`, `.`, empty segments, absolute paths, backslashes, percent-escapes,
    `?`, `#` and control characters are refused, also in their NFKC form (so
    fullwidth or one-dot-leader lookalikes do not slip through). A trailing `/`
    (a directory) is allowed; '' is the root.
    """
    text = path.strip(" ")
    shown = f"{what} {path[:200]!r}"
    if len(text) > MAX_PATH_CHARS:
        raise ToolError(f"The {what} is longer than {MAX_PATH_CHARS} characters. {NO_REQUEST}")
    if text.startswith("/"):
        raise ToolError(
            f"Refused {shown}: it is absolute; give a path inside the repository, "
            f"e.g. 'src/app.py'. {NO_REQUEST}"
        )
    reason = _unsafe_characters(text)
    if reason:
        raise ToolError(f"Refused {shown}: {reason}. {NO_REQUEST}")
    if not text:
        return []
    segments = text.removesuffix("/").split("/")
    for segment in segments:
        folded = unicodedata.normalize("NFKC", segment)
        if segment in ("", ".", "..") or folded in (".", "..") or "/" in folded:
            raise ToolError(
                f"Refused {shown}: it must stay inside the repository (no '..', '.' or "
                f"empty segments). {NO_REQUEST}"
            )
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise ToolError(f"Refused {shown}: a segment is over 255 bytes. {NO_REQUEST}")
    return segments


def encode_path(segments: list[str]) -> str:
    """Validated path segments percent-encoded one by one and joined with '/'."""
    return "/".join(quote(segment, safe="") for segment in segments)


def check_ref(ref: str) -> str:
    """A branch, tag or commit SHA that git would accept as a ref name; ToolError otherwise."""
    text = ref.strip(" ")
    shown = f"ref {ref[:200]!r}"
    reason = _unsafe_characters(text)
    if reason:
        raise ToolError(f"Refused {shown}: {reason}. {NO_REQUEST}")
    folded = unicodedata.normalize("NFKC", text)
    bad = (
        not text
        or len(text) > MAX_REF_CHARS
        or any(c in REF_FORBIDDEN for c in text + folded)
        or any(".." in form or "//" in form or "@{" in form for form in (text, folded))
        or text.startswith(("/", "-", "."))
        or text.endswith(("/", ".", ".lock"))
        or any(part.startswith(".") for part in text.split("/"))
        or text == "@"
    )
    if bad:
        raise ToolError(
            f"Refused {shown}: not a valid branch, tag or commit name (no '..', spaces, "
            f"'~^:?*[\\#', leading or trailing '/' or '.'). {NO_REQUEST}"
        )
    return text


def check_search_query(query: str) -> str:
    """Search terms that cannot widen a search beyond the one repository; ToolError otherwise."""
    text = query.strip()
    if not text:
        raise ToolError(f"The search query is empty. {NO_REQUEST}")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text if c != " "):
        raise ToolError(f"Refused the search query: it contains control characters. {NO_REQUEST}")
    folded = unicodedata.normalize("NFKC", text).casefold()
    if SCOPE_QUALIFIER_RE.search(folded):
        raise ToolError(
            "Do not put repo:, org: or user: in the query; the search is scoped to one "
            f"repository, chosen with the repo argument. {NO_REQUEST}"
        )
    return text


# -- the request sandbox ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestScope:
    """Where the requests of one client call may go: one repository, a search in it, or /rate_limit."""

    owner: str = ""
    name: str = ""
    search: str = ""  # one of SEARCH_ENDPOINTS, with q scoped to owner/name
    rate_limit: bool = False


_scope: ContextVar[RequestScope | None] = ContextVar("github_request_scope", default=None)


def _decoded_forms(segment: str) -> list[str] | None:
    """A raw path segment and what up to three rounds of percent-decoding make of it.

    None when a fourth round would still change it: nothing we build is encoded that deep.
    """
    forms = [segment]
    for _ in range(3):
        forms.append(unquote(forms[-1]))
    return None if unquote(forms[-1]) != forms[-1] else forms


def check_request_scope(url: httpx.URL, base: httpx.URL, scope: RequestScope | None) -> None:
    """The last gate before a request leaves: ToolError unless `url` is inside `scope`.

    Pure: compares the URL as it will be sent (raw, percent-escapes kept) with
    the API base and the scope of the current call. Every segment, under any
    depth of decoding, must be free of dot segments, slashes, backslashes and
    control characters, so a server that decodes once more cannot be walked
    out of the repository either.
    """
    where = url.raw_path.split(b"?", 1)[0].decode("ascii", errors="replace")[:300]
    refused = ToolError(f"Refused to send a GitHub request to {where}: {NO_REQUEST}")
    if scope is None:
        raise refused
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        raise refused
    prefix = base.raw_path.split(b"?", 1)[0].decode("ascii").rstrip("/")
    if not where.startswith(prefix + "/"):
        raise refused
    segments = where[len(prefix) + 1 :].split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        forms = _decoded_forms(segment)
        if forms is None:
            raise refused
        for form in forms:
            if form in (".", "..") or (not form and not last):
                raise refused
            if "/" in form or "\\" in form or "?" in form or "#" in form:
                raise refused
            if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in form):
                raise refused
    if scope.owner:
        inside = segments[:3] == ["repos", scope.owner, scope.name]
        if scope.search:
            inside = (
                scope.search in SEARCH_ENDPOINTS
                and "/" + "/".join(segments) == scope.search
                and _search_scoped(url, scope)
            )
        if not inside:
            raise ToolError(
                f"Refused to send a GitHub request to {where}: it is outside "
                f"{scope.owner}/{scope.name}. {NO_REQUEST} (If the repository was renamed "
                "or moved, bind its new name with `!repo owner/name`.)"
            )
    elif not (scope.rate_limit and segments == ["rate_limit"]):
        raise refused


def _search_scoped(url: httpx.URL, scope: RequestScope) -> bool:
    """True when the search query names exactly this repository and no other owner or repo."""
    words = unicodedata.normalize("NFKC", url.params.get("q", "")).casefold().split()
    scoped = [w for w in words if SCOPE_QUALIFIER_RE.search(w)]
    return scoped == [f"repo:{scope.owner}/{scope.name}".casefold()]


class SandboxTransport(httpx.AsyncBaseTransport):
    """Refuses every request outside the current call's `RequestScope`; nothing bypasses it.

    It is the transport githubkit sends through, so redirects and any future
    call are checked too; a call that set no scope can send nothing.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, base_url: str) -> None:
        self.inner = inner
        self.base = httpx.URL(base_url.rstrip("/") + "/")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Check the URL against the scope, then send it."""
        check_request_scope(request.url, self.base, _scope.get())
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """githubkit closes this after every call: the pool belongs to the client."""


# -- HTTP cache ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """One stored response: validators plus what is needed to replay it."""

    etag: str | None
    last_modified: str | None
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class HttpCache:
    """The `http_cache` table, used on the event loop's thread through the Store's connection."""

    def __init__(
        self, store: Store, max_rows: int = CACHE_MAX_ROWS, max_bytes: int = CACHE_MAX_BYTES
    ) -> None:
        self.store = store
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._puts = 0

    def get(self, key: str) -> CachedResponse | None:
        """The stored response for a cache key, if any."""
        row = self.store.conn.execute(
            "SELECT etag, last_modified, status, headers, body FROM http_cache WHERE url = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        headers = [(str(k), str(v)) for k, v in json.loads(row[3])]
        return CachedResponse(row[0], row[1], int(row[2]), headers, bytes(row[4]))

    def put(self, key: str, response: CachedResponse) -> None:
        """Store (or replace) a response; old rows are pruned now and then."""
        self.store.conn.execute(
            "INSERT INTO http_cache (url, etag, last_modified, status, headers, body, fetched_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(url) DO UPDATE SET etag = excluded.etag,"
            " last_modified = excluded.last_modified, status = excluded.status,"
            " headers = excluded.headers, body = excluded.body, fetched_at = excluded.fetched_at",
            (
                key,
                response.etag,
                response.last_modified,
                response.status,
                json.dumps(response.headers),
                response.body,
                utcnow(),
            ),
        )
        self._puts += 1
        # A large body prunes at once, so a burst of them cannot outgrow the byte bound.
        if self._puts % 100 == 0 or len(response.body) * 100 >= self.max_bytes:
            self.prune()

    def touch(self, key: str) -> None:
        """Record that a stored response was just revalidated."""
        self.store.conn.execute(
            "UPDATE http_cache SET fetched_at = ? WHERE url = ?", (utcnow(), key)
        )

    def prune(self) -> None:
        """Keep the most recently used responses: at most `max_rows`, bodies within `max_bytes`."""
        self.store.conn.execute(
            "DELETE FROM http_cache WHERE url IN (SELECT url FROM ("
            " SELECT url, row_number() OVER newest AS n,"
            " sum(length(body)) OVER newest AS total FROM http_cache"
            " WINDOW newest AS (ORDER BY fetched_at DESC, url ROWS UNBOUNDED PRECEDING))"
            " WHERE n > ? OR total > ?)",
            (self.max_rows, self.max_bytes),
        )


def cache_key(request: httpx.Request) -> str:
    """URL plus the headers the response varies on (media type, API version)."""
    accept = request.headers.get("accept", "")
    version = request.headers.get("x-github-api-version", "")
    return f"{request.url} accept={accept} version={version}"


class ConditionalCacheTransport(httpx.AsyncBaseTransport):
    """Adds If-None-Match / If-Modified-Since to GETs we have seen, replays the body on 304.

    githubkit's own cache (hishel) would keep its own database; this keeps
    the cache in archbot's SQLite file, next to everything else.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, cache: HttpCache | None) -> None:
        self.inner = inner
        self.cache = cache
        self.hits = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request, conditionally when a validator is stored."""
        if self.cache is None or request.method != "GET":
            return await self.inner.handle_async_request(request)
        key = cache_key(request)
        cached = self.cache.get(key)
        if cached is not None:
            if cached.etag:
                request.headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                request.headers["If-Modified-Since"] = cached.last_modified
        response = await self.inner.handle_async_request(request)
        if response.status_code == 304 and cached is not None:
            await response.aclose()
            self.cache.touch(key)
            self.hits += 1
            log.debug("github cache: 304 for %s", request.url.path)
            headers = [(k, v) for k, v in cached.headers]
            # Fresh rate-limit headers matter more than the stored ones.
            fresh = {
                k.lower(): v
                for k, v in response.headers.items()
                if k.lower().startswith("x-ratelimit")
            }
            headers = [(k, v) for k, v in headers if k.lower() not in fresh] + list(fresh.items())
            return httpx.Response(
                cached.status, headers=headers, content=cached.body, request=request
            )
        etag = response.headers.get("etag")
        last_modified = response.headers.get("last-modified")
        if response.status_code != 200 or not (etag or last_modified):
            return response
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _DROP_HEADERS]
        self.cache.put(key, CachedResponse(etag, last_modified, 200, headers, body))
        return httpx.Response(200, headers=headers, content=body, request=request)

    async def aclose(self) -> None:
        """githubkit closes its per-request clients (and so this transport) after each call: keep the pool."""

    async def close_inner(self) -> None:
        """Really close the connection pool (at shutdown)."""
        await self.inner.aclose()


# -- retries -----------------------------------------------------------------------------


class BoundedRetry:
    """Retry a rate limit only when the wait is a few seconds; a 5xx once after a second."""

    def __init__(self, max_wait: timedelta = MAX_RETRY_WAIT) -> None:
        self.max_wait = max_wait

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        """githubkit's retry decision hook."""
        from githubkit.exception import RateLimitExceeded, RequestFailed
        from githubkit.retry import RetryOption

        if retry_count >= 1:
            return RetryOption(False)
        if isinstance(exc, RateLimitExceeded):
            if exc.retry_after <= self.max_wait:
                return RetryOption(True, exc.retry_after)
            return RetryOption(False)
        if isinstance(exc, RequestFailed) and exc.response.status_code >= 500:
            return RetryOption(True, timedelta(seconds=1))
        return RetryOption(False)


# -- errors ------------------------------------------------------------------------------


def _wait_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 120:
        return f"about {seconds // 60} minutes"
    return f"about {max(seconds, 1)} seconds"


def describe_github_error(exc: Exception, what: str) -> ToolError:
    """Turn a githubkit failure into a short message the model (and users) can act on."""
    from githubkit.exception import RateLimitExceeded, RequestError, RequestFailed, RequestTimeout

    if isinstance(exc, RateLimitExceeded):
        kind = "secondary" if type(exc).__name__.startswith("Secondary") else "primary"
        return ToolError(
            f"GitHub rate limit reached ({kind} limit) while {what}; it resets in "
            f"{_wait_text(exc.retry_after)}. Do not call the GitHub tools again in this turn: "
            "answer with what you already have and say what you could not check."
        )
    if isinstance(exc, RequestFailed):
        status = exc.response.status_code
        message = _error_message(exc)
        if status == 401:
            return ToolError(f"GitHub rejected the token (401) while {what}: check GITHUB_TOKEN.")
        if status == 403 and _error_code(exc) == "too_large":
            return ToolError(
                f"The file is over the 1 MB that GitHub's contents API returns (403 too_large) "
                f"while {what}, so none of its text could be read. Use search_code to find the "
                "lines you need, or read a smaller file."
            )
        if status == 403:
            return ToolError(
                f"GitHub refused access (403) while {what}: the token lacks permission{message}."
            )
        if status == 404:
            return ToolError(
                f"Not found on GitHub (404) while {what}: check the repository, path and ref "
                "(or the token cannot see this repository)."
            )
        if status == 422:
            return ToolError(f"GitHub could not process the request (422) while {what}{message}.")
        return ToolError(f"GitHub answered {status} while {what}{message}.")
    if isinstance(exc, RequestTimeout):
        return ToolError(f"GitHub did not answer in time while {what}.")
    if isinstance(exc, RequestError):
        return ToolError(f"GitHub cannot be reached while {what} ({type(exc.exc).__name__}).")
    if isinstance(exc, ValidationError):
        return ToolError(f"GitHub sent a response of an unexpected shape while {what}.")
    return ToolError(f"GitHub request failed while {what} ({type(exc).__name__}).")


def _error_code(exc: RequestFailed) -> str:
    """The first `errors[].code` of a GitHub error body ('too_large', 'invalid', ...), or ''."""
    try:
        data = json.loads(exc.response.raw_response.content or b"{}")
    except (ValueError, httpx.ResponseNotRead):
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("code", ""))
    return ""


def _error_message(exc: RequestFailed) -> str:
    try:
        data = json.loads(exc.response.raw_response.content or b"{}")
    except (ValueError, httpx.ResponseNotRead):
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return f": {str(message)[:200]}" if message else ""


# -- the client ------------------------------------------------------------------------------


@dataclass
class MergedPull:
    """A pull request merged in the window, with the paths it touched."""

    number: int
    title: str
    author: str
    merged_at: str
    html_url: str
    files: list[str] = field(default_factory=list)
    more_files: int = 0


@dataclass
class CommitInfo:
    """A commit in the window."""

    sha: str
    headline: str
    author: str
    date: str
    html_url: str
    files: list[str] = field(default_factory=list)


@dataclass
class Activity:
    """A repository's recent changes (used by recent_changes and the weekly check-in)."""

    repo: str
    since: datetime
    path: str | None
    pulls: list[MergedPull]
    commits: list[CommitInfo]
    pulls_total: int
    commits_truncated: bool
    notes: list[str] = field(default_factory=list)


class GitHubClient:
    """Read-only access to the GitHub REST API for the repository tools and check-ins."""

    def __init__(
        self,
        settings: GitHubSettings,
        token: str | None,
        store: Store | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.has_token = bool(token)
        self.cache = HttpCache(store) if store is not None else None
        inner = transport or httpx.AsyncHTTPTransport(retries=1)
        self.transport = ConditionalCacheTransport(inner, self.cache)
        self.sandbox = SandboxTransport(self.transport, settings.api_url)
        self._token = token or None
        self._github: GitHub[Any] | None = None
        self._rest: RestNamespace | None = None

    @property
    def rest(self) -> RestNamespace:
        """githubkit's REST namespace at the pinned API version, built on first use."""
        if self._rest is None:
            from githubkit import GitHub
            from githubkit.throttling import LocalThrottler

            self._github = GitHub(
                self._token,
                base_url=self.settings.api_url,
                user_agent="archbot (+https://github.com/archbot)",
                timeout=REQUEST_TIMEOUT,
                async_transport=self.sandbox,
                http_cache=False,  # our conditional cache lives in archbot's SQLite instead
                throttler=LocalThrottler(MAX_CONCURRENT_REQUESTS),
                auto_retry=BoundedRetry(),
                follow_redirects=True,  # each hop passes the sandbox again
            )
            self._rest = self._github.rest(API_VERSION)
        return self._rest

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.transport.close_inner()

    @asynccontextmanager
    async def _call(self, what: str, scope: RequestScope) -> AsyncIterator[None]:
        """Run one API call inside `scope` (the sandbox checks it) and translate its errors."""
        from githubkit.exception import GitHubException, RequestError, RequestFailed

        token = _scope.set(scope)
        try:
            yield
        except ArchbotError:
            raise
        except RequestError as exc:
            if isinstance(exc.exc, ToolError):  # the sandbox refused; githubkit wrapped it
                log.warning("github: %s refused by the sandbox: %s", what, exc.exc)
                raise exc.exc from None
            log.info("github: %s failed: %r", what, exc)
            raise describe_github_error(exc, what) from None
        except (GitHubException, ValidationError) as exc:
            not_found = isinstance(exc, RequestFailed) and exc.response.status_code == 404
            log.log(
                logging.DEBUG if not_found else logging.INFO, "github: %s failed: %r", what, exc
            )
            raise describe_github_error(exc, what) from None
        finally:
            _scope.reset(token)

    async def repository(self, repo: str) -> FullRepository:
        """GET /repos/{owner}/{repo}."""
        owner, name = split_repo(repo)
        async with self._call(f"reading repository {repo}", RequestScope(owner, name)):
            resp = await self.rest.repos.async_get(owner, name)
            return resp.parsed_data

    async def rate_limit(self) -> tuple[int, int]:
        """GET /rate_limit: (remaining, limit) of the core budget."""
        async with self._call("checking the token", RequestScope(rate_limit=True)):
            resp = await self.rest.rate_limit.async_get()
            core = resp.parsed_data.resources.core
            return core.remaining, core.limit

    async def search_code(
        self, repo: str, query: str, per_page: int = 10
    ) -> SearchCodeGetResponse200:
        """Code search scoped to one repository, with text-match fragments."""
        owner, name = split_repo(repo)
        q = f"{check_search_query(query)} repo:{owner}/{name}"
        scope = RequestScope(owner, name, search="/search/code")
        async with self._call(f"searching code in {repo}", scope):
            resp = await self.rest.search.async_code(
                q=q, per_page=per_page, headers={"Accept": TEXT_MATCH}
            )
            return resp.parsed_data

    async def get_content(
        self, repo: str, path: str, ref: str | None = None
    ) -> ContentFile | list[ContentDirectoryItems] | ContentSymlink | ContentSubmodule:
        """GET /repos/{owner}/{repo}/contents/{path} (a file, a directory listing, ...)."""
        owner, name = split_repo(repo)
        segments = check_path(path)
        ref = check_ref(ref) if ref is not None and ref.strip() else None
        clean = "/".join(segments)
        where = f"reading {repo}/{clean}" + (f"@{ref}" if ref else "")
        async with self._call(where, RequestScope(owner, name)):
            # githubkit pastes path parameters into its URL template unencoded: encode here.
            encoded = encode_path(segments)
            if ref:
                resp = await self.rest.repos.async_get_content(owner, name, encoded, ref=ref)
            else:
                resp = await self.rest.repos.async_get_content(owner, name, encoded)
            return resp.parsed_data

    async def merged_pulls(
        self, repo: str, since: datetime, per_page: int = 30
    ) -> tuple[int, list[IssueSearchResultItem]]:
        """Pull requests merged since a moment (search API), newest first; (total, items)."""
        owner, name = split_repo(repo)
        q = f"repo:{owner}/{name} is:pr is:merged merged:>={since.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        scope = RequestScope(owner, name, search="/search/issues")
        async with self._call(f"listing merged pull requests of {repo}", scope):
            resp = await self.rest.search.async_issues_and_pull_requests(
                q=q, sort="updated", order="desc", per_page=per_page
            )
            data = resp.parsed_data
            return data.total_count, list(data.items)

    async def pull_files(self, repo: str, number: int) -> list[DiffEntry]:
        """Files a pull request touched (first 100)."""
        owner, name = split_repo(repo)
        if number < 1:
            raise ToolError(f"#{number} is not a pull request number. {NO_REQUEST}")
        what = f"listing files of pull request #{number} in {repo}"
        async with self._call(what, RequestScope(owner, name)):
            resp = await self.rest.pulls.async_list_files(owner, name, number, per_page=100)
            return list(resp.parsed_data)

    async def commits(
        self, repo: str, since: datetime, path: str | None = None, per_page: int = 30
    ) -> list[Commit]:
        """Commits on the default branch since a moment, optionally touching `path`."""
        owner, name = split_repo(repo)
        clean = "/".join(check_path(path)) if path else None
        async with self._call(f"listing commits of {repo}", RequestScope(owner, name)):
            if clean:
                resp = await self.rest.repos.async_list_commits(
                    owner, name, since=since, path=clean, per_page=per_page
                )
            else:
                resp = await self.rest.repos.async_list_commits(
                    owner, name, since=since, per_page=per_page
                )
            return list(resp.parsed_data)

    async def commit(self, repo: str, sha: str) -> Commit:
        """One commit with its files."""
        owner, name = split_repo(repo)
        if SHA_RE.fullmatch(sha) is None:
            raise ToolError(f"{sha[:80]!r} is not a commit SHA. {NO_REQUEST}")
        async with self._call(f"reading commit {sha[:7]} of {repo}", RequestScope(owner, name)):
            resp = await self.rest.repos.async_get_commit(owner, name, sha)
            return resp.parsed_data

    async def recent_activity(
        self, repo: str, since: datetime, path: str | None = None, detail_limit: int = 8
    ) -> Activity:
        """Merged PRs and commits since `since`, with touched paths for the newest ones."""
        split_repo(repo)
        path = "/".join(check_path(path)) or None if path else None
        commits = await self.commits(repo, since, path)
        pulls_total, items = await self.merged_pulls(repo, since)
        notes: list[str] = []
        pulls: list[MergedPull] = []
        for item in items:
            merged_at = None
            if item.pull_request and item.pull_request.merged_at:
                merged_at = item.pull_request.merged_at
            pulls.append(
                MergedPull(
                    number=item.number,
                    title=item.title,
                    author=item.user.login if item.user else "unknown",
                    merged_at=(merged_at or item.closed_at or item.updated_at).isoformat(),
                    html_url=item.html_url,
                )
            )
        detailed = pulls[:detail_limit]
        file_lists = await asyncio.gather(
            *(self.pull_files(repo, p.number) for p in detailed), return_exceptions=True
        )
        for pull, files in zip(detailed, file_lists, strict=True):
            if isinstance(files, ToolError):
                notes.append(f"files of #{pull.number} unavailable: {files}")
                continue
            if isinstance(files, BaseException):
                raise files
            pull.files = [f.filename for f in files[:20]]
            pull.more_files = max(0, len(files) - 20)
        if path:
            prefix = path
            pulls = [
                p
                for p in pulls
                if p in detailed and any(f == prefix or f.startswith(prefix + "/") for f in p.files)
            ]
        infos = [
            CommitInfo(
                sha=c.sha,
                headline=(c.commit.message or "").splitlines()[0] if c.commit.message else "",
                author=_commit_author(c),
                date=_commit_date(c),
                html_url=c.html_url,
            )
            for c in commits
        ]
        # Touched paths only for commits no listed pull request already describes.
        pr_numbers = {p.number for p in pulls}
        detail = [
            i
            for i in infos
            if not _is_merge_headline(i.headline) and _pr_ref(i.headline) not in pr_numbers
        ][: max(0, detail_limit // 2)]
        details = await asyncio.gather(
            *(self.commit(repo, i.sha) for i in detail), return_exceptions=True
        )
        for info, full in zip(detail, details, strict=True):
            if isinstance(full, ToolError):
                notes.append(f"files of {info.sha[:7]} unavailable: {full}")
                continue
            if isinstance(full, BaseException):
                raise full
            info.files = [f.filename for f in (full.files or [])[:20]]
        return Activity(
            repo=repo,
            since=since,
            path=path,
            pulls=pulls,
            commits=infos,
            pulls_total=pulls_total,
            commits_truncated=len(commits) >= 30,
            notes=notes,
        )


def _commit_author(c: Commit) -> str:
    if c.author is not None and getattr(c.author, "login", None):
        return str(getattr(c.author, "login", ""))
    git_author = c.commit.author
    return (git_author.name if git_author and git_author.name else None) or "unknown"


def _commit_date(c: Commit) -> str:
    for person in (c.commit.committer, c.commit.author):
        if person is not None and person.date:
            value = person.date
            return value.isoformat() if isinstance(value, datetime) else str(value)
    return ""


def _pr_ref(headline: str) -> int | None:
    """The PR number GitHub appends to squash-merge headlines: 'Title (#42)'."""
    match = re.search(r"\(#(\d+)\)\s*$", headline)
    return int(match.group(1)) if match else None


def _is_merge_headline(headline: str) -> bool:
    return headline.startswith("Merge pull request #") or headline.startswith("Merge branch ")


def create_client(settings: Settings, secrets: Secrets, store: Store | None) -> GitHubClient:
    """The client the composition root puts into `Services.github`."""
    token = secrets.github_token.get_secret_value() if secrets.github_token else None
    return GitHubClient(settings.github, token, store)


async def doctor_check(settings: Settings, secrets: Secrets) -> str | None:
    """`archbot doctor`: reach GitHub and the default repository (None when not configured)."""
    token = secrets.github_token.get_secret_value() if secrets.github_token else None
    repo = settings.github.default_repo
    if not repo and not token:
        return None
    client = GitHubClient(settings.github, token, None)
    try:
        if repo:
            try:
                info = await client.repository(repo)
            except ToolError as exc:
                raise ArchbotError(str(exc)) from None
            visibility = "private" if info.private else "public"
            auth = "with GITHUB_TOKEN" if token else "without a token (code search needs one)"
            return f"{info.full_name} reachable ({visibility}, default branch {info.default_branch}) {auth}"
        try:
            remaining, limit = await client.rate_limit()
        except ToolError as exc:
            raise ArchbotError(str(exc)) from None
        return f"token accepted ({remaining}/{limit} requests left this hour); no default_repo set"
    finally:
        await client.aclose()
