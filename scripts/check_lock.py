"""Check that requirements-lock.txt still matches pyproject.toml; exit 1 saying "run make lock" if not.

Every dependency of the project and of its ``test`` extra (for Python 3.11 on Linux x86_64,
the platform the lock is resolved for) must be pinned in the lock, at a version its bound in
pyproject.toml allows. Offline: it reads the two files and nothing else.

    .venv/bin/python scripts/check_lock.py [PYPROJECT [LOCK]]
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("test",)
# The lock's platform (see the Makefile's `lock` target): markers are judged for it.
ENVIRONMENT = {
    "python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
    "implementation_name": "cpython", "platform_python_implementation": "CPython",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def locked_versions(lock_text: str) -> dict[str, Version]:
    """``name==version`` lines of a pip-compile / uv lock, by canonical name."""
    return {
        canonicalize_name(match.group(1)): Version(match.group(2))
        for match in map(PIN.match, lock_text.splitlines())
        if match
    }


def required(pyproject_text: str) -> list[Requirement]:
    """The project's dependencies and those of its EXTRAS that apply on the lock's platform."""
    project = tomllib.loads(pyproject_text)["project"]
    lines = list(project.get("dependencies", []))
    for extra in EXTRAS:
        lines += project.get("optional-dependencies", {}).get(extra, [])
    requirements = [Requirement(line) for line in lines]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({**ENVIRONMENT, "extra": ""})]


def mismatches(pyproject_text: str, lock_text: str) -> list[str]:
    """What the lock lacks: one line per dependency missing or locked outside its bound."""
    locked = locked_versions(lock_text)
    problems = []
    for requirement in required(pyproject_text):
        version = locked.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement} does not allow the locked {requirement.name}=={version}")
    return problems


def main(argv: list[str]) -> int:
    pyproject = Path(argv[0]) if argv else ROOT / "pyproject.toml"
    lock = Path(argv[1]) if len(argv) > 1 else ROOT / "requirements-lock.txt"
    if not lock.exists():
        print(f"check_lock: {lock.name} is missing: run make lock", file=sys.stderr)
        return 1
    problems = mismatches(pyproject.read_text(), lock.read_text())
    if problems:
        print(f"check_lock: {lock.name} does not match {pyproject.name}: run make lock", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
