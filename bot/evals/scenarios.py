"""Scenario files: what the architect is asked, the fixture repository it may read, and
the rubric its answers are held to. Built-in ones ship in `bot/evals/scenarios/`.

A file (JSON or TOML) holds one scenario, or several under a `scenarios` list. Every
file is validated; a bad one is refused with one line naming the file and the field.
"""

from __future__ import annotations

import json
import logging
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.errors import ArchbotError
from bot.github import check_path, valid_repo_name

log = logging.getLogger(__name__)

SUFFIXES = (".json", ".toml")
MAX_FILE_BYTES = 1_000_000
MAX_FIXTURE_FILE_BYTES = 200_000


class ScenarioError(ArchbotError):
    """A scenario file that cannot be used; the message names the file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContextLine(_Strict):
    """An earlier message of the thread, shown to the architect as context before turn 1."""

    user: str = Field(min_length=1, max_length=80)
    text: str = Field(min_length=1, max_length=8000)
    is_bot: bool = False


class FixtureRepo(_Strict):
    """A repository served to the repo tools from the scenario itself (no GitHub needed)."""

    name: str = Field(description="owner/name the tools see")
    files: dict[str, str] = Field(min_length=1)

    @model_validator(mode="after")
    def _valid(self) -> FixtureRepo:
        if not valid_repo_name(self.name):
            raise ValueError(f"repo.name {self.name[:80]!r} is not owner/name")
        for path, text in self.files.items():
            try:
                check_path(path)
            except ArchbotError as exc:
                raise ValueError(f"repo.files path {path[:80]!r}: {exc}") from None
            if not path.strip("/"):
                raise ValueError("repo.files has an empty path")
            if len(text.encode()) > MAX_FIXTURE_FILE_BYTES:
                raise ValueError(
                    f"repo.files {path!r} is larger than {MAX_FIXTURE_FILE_BYTES} bytes"
                )
        return self


class Checks(_Strict):
    """The rubric decided by code (bot.evals.checks); each enabled check scores one point."""

    alternatives: bool = True
    tradeoffs: bool = True
    clarifying_question: bool = False  # the scenario is vague: the first answer must ask
    # Each group is one planted pitfall; naming any of its phrasings counts.
    pitfalls: list[list[str]] = Field(default_factory=list)
    # Paths the answer cites must exist in the fixture; at least this many must be cited.
    min_cited_paths: int = Field(0, ge=0, le=50)
    min_words: int = Field(40, ge=0)
    max_words: int = Field(900, ge=1)
    no_mass_pings: bool = True
    sign_off_once: bool = True

    @model_validator(mode="after")
    def _valid(self) -> Checks:
        if self.min_words > self.max_words:
            raise ValueError("checks.min_words is larger than checks.max_words")
        for group in self.pitfalls:
            if not group or not all(term.strip() for term in group):
                raise ValueError("checks.pitfalls: every group needs at least one non-empty phrase")
        return self


class Scenario(_Strict):
    """One conversation to hold with the architect and the rubric for its answers."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    title: str = Field(min_length=1, max_length=200)
    turns: list[str] = Field(min_length=1, max_length=10)
    context: list[ContextLine] = Field(default_factory=list, max_length=50)
    repo: FixtureRepo | None = None
    checks: Checks = Field(default_factory=Checks)
    judge: list[str] = Field(default_factory=list, max_length=10)  # extra --judge-model criteria
    draft: bool = False  # written by --from-feedback; its checks still need a human
    notes: str = Field("", max_length=20_000)

    @model_validator(mode="after")
    def _valid(self) -> Scenario:
        if any(not t.strip() for t in self.turns):
            raise ValueError("turns: a user turn is empty")
        if self.checks.min_cited_paths and self.repo is None:
            raise ValueError("checks.min_cited_paths needs a fixture repo")
        return self


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"


def parse_scenarios(data: Any, source: str) -> list[Scenario]:
    """Validate one file's parsed content; ScenarioError (one line) when it is not usable."""
    items = data.get("scenarios") if isinstance(data, dict) and "scenarios" in data else [data]
    if isinstance(data, list):
        items = data
    if not isinstance(items, list) or not items:
        raise ScenarioError(f"{source}: no scenario in it (expected an object or a list)")
    out: list[Scenario] = []
    for index, item in enumerate(items):
        try:
            out.append(Scenario.model_validate(item))
        except ValidationError as exc:
            which = f" scenario {index + 1}" if len(items) > 1 else ""
            raise ScenarioError(f"{source}{which}: {_first_error(exc)}") from None
    return out


def load_file(path: Path) -> list[Scenario]:
    """The scenarios of one .json or .toml file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ScenarioError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return _parse_bytes(raw, path.suffix.lower(), str(path))


def _parse_bytes(raw: bytes, suffix: str, source: str) -> list[Scenario]:
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except UnicodeDecodeError:
        raise ScenarioError(f"{source}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{source}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML ({exc})") from None
    return parse_scenarios(data, source)


def load_path(path: Path) -> list[Scenario]:
    """Scenarios from a file, or from every .json/.toml file in a folder (sorted, not recursive)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise ScenarioError(f"{path}: no .json or .toml scenario files in it")
        return [s for f in files for s in load_file(f)]
    if not path.exists():
        raise ScenarioError(f"{path}: no such file or folder")
    if path.suffix.lower() not in SUFFIXES:
        raise ScenarioError(f"{path}: a scenario file ends in .json or .toml")
    return load_file(path)


def builtin_scenarios() -> list[Scenario]:
    """The scenarios shipped inside the package."""
    folder = resources.files("bot.evals").joinpath("scenarios")
    out: list[Scenario] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_file() and entry.name.endswith(SUFFIXES):
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            out.extend(_parse_bytes(entry.read_bytes(), suffix, f"built-in {entry.name}"))
    return out


def select(builtin: list[Scenario], extra: list[Scenario]) -> list[Scenario]:
    """Built-ins plus the team's own; an id used twice is refused (ids key the baseline)."""
    seen: set[str] = set()
    for scenario in [*builtin, *extra]:
        if scenario.id in seen:
            raise ScenarioError(f"scenario id {scenario.id!r} is used twice; ids must be unique")
        seen.add(scenario.id)
    return [*builtin, *extra]
