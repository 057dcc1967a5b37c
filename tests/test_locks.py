"""The hashed locks agree with the ranges in requirements*.txt (the source; `make lock`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# source -> its lock; each lock holds every requirement of its source, `-r` includes followed
PAIRS = {
    "requirements.txt": "requirements.lock",
    "requirements-dev.txt": "requirements-dev.lock",
    "requirements-checkov.txt": "requirements-checkov.lock",
    "components/pitr_image/requirements.txt": "components/pitr_image/requirements.lock",
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def requirements(path: Path) -> list[Requirement]:
    """The requirements a source file names, following `-r other.txt`."""
    found: list[Requirement] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            found += requirements(path.parent / line[3:].strip())
        else:
            found.append(Requirement(line))
    return found


def lock_pins(path: Path) -> dict[str, Version]:
    """name -> pinned version; fails when an entry has no hash (pip's --require-hashes would)."""
    pins: dict[str, Version] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
    for entry in entries:
        match = _PIN.match(entry)
        if not match:
            continue
        assert "--hash=sha256:" in entry, f"{path.name}: {match.group(1)} has no hash"
        pins[canonicalize_name(match.group(1))] = Version(match.group(3))
    return pins


def disagreements(source: Path, lock: Path) -> list[str]:
    pins = lock_pins(lock)
    problems = []
    for req in requirements(source):
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name}: not in {lock.name}")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}: {lock.name} pins {pins[name]}, outside {req.specifier}")
    return problems


@pytest.mark.parametrize(("source", "lock"), sorted(PAIRS.items()))
def test_every_requirement_is_pinned_within_its_range(source: str, lock: str) -> None:
    assert disagreements(ROOT / source, ROOT / lock) == []


def test_dev_lock_pins_the_runtime_lock_versions() -> None:
    """Tests run what the ops-runner image installs."""
    runtime, dev = lock_pins(ROOT / "requirements.lock"), lock_pins(ROOT / "requirements-dev.lock")
    assert len(runtime) > 20
    assert {k: v for k, v in runtime.items() if dev.get(k) != v} == {}


def test_a_pin_outside_its_range_or_without_a_hash_is_caught(tmp_path: Path) -> None:
    source = tmp_path / "requirements.txt"
    source.write_text("pyyaml>=6,<7\nrich>=15\n")
    lock = tmp_path / "requirements.lock"
    lock.write_text("pyyaml==5.4.1 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert disagreements(source, lock) == [
        "pyyaml: requirements.lock pins 5.4.1, outside <7,>=6",
        "rich: not in requirements.lock",
    ]
    lock.write_text("pyyaml==6.0.4\n")
    with pytest.raises(AssertionError, match="pyyaml has no hash"):
        lock_pins(lock)
