"""A scenario's fixture repository served to the real repo tools through the
`GitHubClient` transport seam, so `archbot eval` needs no GitHub at all.

It answers the REST calls the tools make (contents, code search, commits, merged
pull request search) in GitHub's JSON shapes, which githubkit validates as it
would GitHub's; anything else is a 404. Nothing leaves the process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any
from urllib.parse import unquote

import httpx

from bot.evals.scenarios import FixtureRepo

log = logging.getLogger(__name__)

WEB = "https://github.com"
REF = "main"
_REPO_URL_FIELDS = (
    "archive assignees blobs branches collaborators comments commits compare contents "
    "contributors deployments downloads events forks git_commits git_refs git_tags "
    "issue_comment issue_events issues keys labels languages merges milestones "
    "notifications pulls releases stargazers statuses subscribers subscription tags "
    "teams trees hooks"
).split()
_USER_URL_FIELDS = (
    "followers following gists starred subscriptions organizations repos events received_events"
).split()


def blob_sha(data: bytes) -> str:
    """Git's blob id of some content (what GitHub reports as a file's sha)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FixtureTransport(httpx.AsyncBaseTransport):
    """An httpx transport that plays GitHub for one fixture repository (or none)."""

    def __init__(self, repo: FixtureRepo | None, api_url: str = "https://api.github.com") -> None:
        self.repo = repo.name if repo else ""
        self.files = {p.strip("/"): t.encode() for p, t in (repo.files.items() if repo else [])}
        self.api = api_url.rstrip("/")
        self.requests: list[str] = []  # method and path of every request, for the curious

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer one API request from the fixture."""
        path = unquote(request.url.path)
        base_path = httpx.URL(self.api).path.rstrip("/")
        path = path[len(base_path) :] if base_path and path.startswith(base_path) else path
        self.requests.append(f"{request.method} {path}")
        if request.method != "GET":
            return self._not_found()
        prefix = f"/repos/{self.repo}/" if self.repo else None
        if path == "/search/code":
            return self._search_code(request.url.params.get("q", ""))
        if path == "/search/issues":
            return _json({"total_count": 0, "incomplete_results": False, "items": []})
        if prefix and path == f"/repos/{self.repo}/commits":
            return _json([])
        if prefix and path.startswith(prefix + "contents"):
            return self._contents(path[len(prefix + "contents") :].strip("/"))
        return self._not_found()

    # payloads -----------------------------------------------------------------------

    def _not_found(self) -> httpx.Response:
        return _json(
            {
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest",
                "status": "404",
            },
            status=404,
        )

    def _owner(self) -> dict[str, Any]:
        login = self.repo.split("/")[0]
        user: dict[str, Any] = {
            "login": login,
            "id": 1,
            "node_id": "MDQ6VXNlcjE=",
            "avatar_url": f"https://avatars.githubusercontent.com/{login}",
            "gravatar_id": "",
            "url": f"{self.api}/users/{login}",
            "html_url": f"{WEB}/{login}",
            "type": "Organization",
            "site_admin": False,
        }
        for name in _USER_URL_FIELDS:
            user[f"{name}_url"] = f"{self.api}/users/{login}/{name}"
        return user

    def _repository(self) -> dict[str, Any]:
        api = f"{self.api}/repos/{self.repo}"
        repo: dict[str, Any] = {
            "id": 1,
            "node_id": "R_fixture",
            "name": self.repo.split("/")[1],
            "full_name": self.repo,
            "owner": self._owner(),
            "private": True,
            "html_url": f"{WEB}/{self.repo}",
            "description": "archbot eval fixture",
            "fork": False,
            "url": api,
        }
        for name in _REPO_URL_FIELDS:
            repo[f"{name}_url"] = f"{api}/{name}"
        return repo

    def _entry(self, path: str) -> dict[str, Any]:
        data = self.files.get(path)
        is_file = data is not None
        sha = blob_sha(data) if data is not None else hashlib.sha1(path.encode()).hexdigest()
        url = f"{self.api}/repos/{self.repo}/contents/{path}?ref={REF}"
        html = f"{WEB}/{self.repo}/{'blob' if is_file else 'tree'}/{REF}/{path}"
        git = f"{self.api}/repos/{self.repo}/git/{'blobs' if is_file else 'trees'}/{sha}"
        return {
            "type": "file" if is_file else "dir",
            "size": len(data) if data is not None else 0,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": url,
            "git_url": git,
            "html_url": html,
            "download_url": (
                f"https://raw.githubusercontent.com/{self.repo}/{REF}/{path}" if is_file else None
            ),
            "_links": {"self": url, "git": git, "html": html},
        }

    def _contents(self, path: str) -> httpx.Response:
        data = self.files.get(path)
        if data is not None:
            entry = self._entry(path)
            entry.update(content=base64.encodebytes(data).decode(), encoding="base64")
            return _json(entry)
        base = f"{path}/" if path else ""
        children = sorted(
            {p[len(base) :].split("/", 1)[0] for p in self.files if p.startswith(base)}
        )
        if not children:
            return self._not_found()
        return _json([self._entry(f"{base}{name}") for name in children])

    def _search_code(self, query: str) -> httpx.Response:
        words = query.split()
        repo = next((w[5:] for w in words if w.startswith("repo:")), "")
        terms = [w.strip('"').lower() for w in words if ":" not in w]
        paths = [w[5:].strip("/").lower() for w in words if w.startswith("path:")]
        items: list[dict[str, Any]] = []
        if repo == self.repo and self.repo:
            for path, data in sorted(self.files.items()):
                text = data.decode("utf-8", errors="replace")
                lowered = text.lower()
                if paths and not any(path.lower().startswith(p) for p in paths):
                    continue
                if not terms or not all(t in lowered or t in path.lower() for t in terms):
                    continue
                lines = text.splitlines()
                hit = next((i for i, line in enumerate(lines) if terms[0] in line.lower()), 0)
                fragment = "\n".join(lines[max(0, hit - 1) : hit + 2])
                entry = self._entry(path)
                items.append(
                    {
                        "name": entry["name"],
                        "path": path,
                        "sha": entry["sha"],
                        "url": entry["url"],
                        "git_url": entry["git_url"],
                        "html_url": entry["html_url"],
                        "repository": self._repository(),
                        "score": 1.0,
                        "text_matches": [
                            {
                                "object_url": entry["url"],
                                "object_type": "FileContent",
                                "property": "content",
                                "fragment": fragment,
                                "matches": [],
                            }
                        ],
                    }
                )
        return _json({"total_count": len(items), "incomplete_results": False, "items": items[:10]})


def _json(payload: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
