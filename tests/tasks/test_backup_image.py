"""The ops-runner Dockerfile, checked without a Docker engine: what it installs and copies."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "automation" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert current == "", "dangling line continuation"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def test_base_image_and_pg_major_build_arg() -> None:
    steps = instructions()
    froms = [args for op, args in steps if op == "FROM"]
    assert len(froms) == 1 and re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim(-\w+)?", froms[0])
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert args["PYTHON_VERSION"] == "3.11"
    assert args["PG_MAJOR"] == "16"


def test_installs_version_matched_pg_client_and_redis_cli() -> None:
    runs = " ".join(args for op, args in instructions() if op == "RUN")
    assert "apt.postgresql.org" in runs  # PGDG: any major, not only Debian's
    assert "postgresql-client-${PG_MAJOR}" in runs
    assert "redis-tools" in runs
    assert "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump --version" in runs  # build fails if absent
    assert "pip install --require-hashes -r requirements.lock" in runs


def test_copies_the_automation_package_and_runs_it() -> None:
    steps = instructions()
    copies = [args.split() for op, args in steps if op == "COPY"]
    sources = [c[0] for c in copies]
    assert sources == ["requirements.lock", "automation/", "components/", "contract/"]
    for source in ("automation/", "components/", "contract/"):
        assert (ROOT / source / "__init__.py").exists()
    assert (ROOT / "automation" / "__main__.py").exists()
    entrypoint = next(args for op, args in steps if op == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", "automation"]
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_the_redis_restore_uid_has_a_user_in_the_image() -> None:
    """The Redis-restore Job runs as the Redis volume's owner (components/datastore.py)."""
    from components.datastore import REDIS_UID

    runs = " ".join(args for op, args in instructions() if op == "RUN")
    assert f"useradd --uid {REDIS_UID} " in runs
