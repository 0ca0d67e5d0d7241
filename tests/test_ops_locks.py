"""The lock files install on Python 3.11, 3.12 and 3.13: for each version, every requirement of
the project and of every locked package (markers evaluated for that version) is pinned, at a
version its specifier accepts, and no locked package refuses that Python. Checked offline from
the installed metadata; discord.py needs `audioop-lts` from 3.13 on."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.11", "3.12", "3.13")


def pins(lock: Path) -> dict[str, tuple[str, Marker | None]]:
    """name -> (version, marker) for each `name==version [; marker]` line."""
    found = {}
    for line in lock.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==(\S+)\s*(?:;\s*(.+))?$", line):
            marker = Marker(match.group(3)) if match.group(3) else None
            found[canonicalize_name(match.group(1))] = (match.group(2), marker)
    return found


def environment(version: str, extra: str = "") -> dict[str, str]:
    env = dict(default_environment())
    env.update(python_version=version, python_full_version=f"{version}.0", extra=extra)
    return env


def project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in extras:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


def problems(lock: Path, extras: tuple[str, ...], version: str) -> list[str]:
    locked = pins(lock)
    env = environment(version)
    wanted = {n for n, (_, m) in locked.items() if m is None or m.evaluate(env)}
    found: list[str] = []
    queue = [(r, "pyproject.toml") for r in project_requirements(extras)]
    for name in wanted:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            # Only a package this interpreter does not need may be absent from the venv.
            found.append(f"{name} is locked for {version} but not installed here to check")
            continue
        requires_python = dist.metadata.get("Requires-Python")
        if requires_python and not SpecifierSet(requires_python).contains(f"{version}.0"):
            found.append(f"{name} {dist.version} requires Python {requires_python}")
        queue += [(Requirement(r), name) for r in dist.requires or []]
    for req, by in queue:
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        if name == "archbot":
            continue
        if name not in wanted:
            found.append(f"{req} (needed by {by}) is not pinned for Python {version}")
        elif not req.specifier.contains(locked[name][0], prereleases=True):
            found.append(f"{name}=={locked[name][0]} does not satisfy {req} (from {by})")
    return found


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", ()), ("requirements-dev.lock", ("dev",))]
)
def test_lock_is_complete_for_python(lock: str, extras: tuple[str, ...], version: str) -> None:
    # The venv is 3.11: a package only 3.13 needs cannot be read here, only its pin checked.
    found = [
        p
        for p in problems(ROOT / lock, extras, version)
        if not (p.startswith("audioop-lts is locked") and version >= "3.13")
    ]
    assert found == []


def test_a_lock_without_audioop_lts_fails_for_313(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    text = (ROOT / "requirements.lock").read_text()
    lock.write_text(re.sub(r"(?m)^audioop-lts==.*$", "", text))
    assert problems(lock, (), "3.12") == []
    assert any("audioop-lts" in p and "not pinned" in p for p in problems(lock, (), "3.13"))


def test_audioop_lts_is_pinned_for_313_only() -> None:
    for lock in ("requirements.lock", "requirements-dev.lock"):
        _, marker = pins(ROOT / lock)["audioop-lts"]
        assert marker is not None
        assert marker.evaluate(environment("3.13")) and not marker.evaluate(environment("3.12"))
