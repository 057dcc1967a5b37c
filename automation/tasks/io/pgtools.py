"""PostgreSQL client tools whose major version matches the server, and libpq settings for them.

`pg_dump` refuses a newer server and a dump from a newer `pg_dump` may not restore on an older
server, so every task asks the server for its major version and runs tools of exactly that major.
Connection settings go to the tools through libpq environment variables, so the password is never
on a command line (`ps` shows argv to every user on the host).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from automation.errors import TaskFailed, UserInputError, redact
from automation.tasks.io.urls import POSTGRES_EXAMPLE, shown

PG_BIN_ENV = "OPSPLANE_PG_BIN"
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)")

# libpq connection keywords -> the environment variables libpq reads for them
_LIBPQ_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
}


def parse_url(url: str, option: str = "--database-url") -> dict[str, str]:
    """libpq keywords of a `postgresql://` URL or `key=value` conninfo; bad input is one line
    (exit 2) naming `option`, with the password redacted."""

    def bad(why: str) -> UserInputError:
        return UserInputError(f"{option} {shown(url)}: {why}; use {POSTGRES_EXAMPLE}")

    if not url.strip() or not url.isprintable():
        raise bad("empty or contains control characters")
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() not in ("postgresql", "postgres"):
        raise bad(f"scheme {scheme!r} is not postgresql://")
    if not sep and "=" not in url:
        raise bad("not a PostgreSQL URL")
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise bad(f"not a PostgreSQL URL ({redact(first_line(exc))})") from None
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise bad(f"port {port!r} is not a number from 1 to 65535")
    return {key: str(value) for key, value in params.items() if value is not None}


def database_name(url: str) -> str:
    """The database a URL names (libpq defaults to the user name when it names none)."""
    params = parse_url(url)
    return params.get("dbname") or params.get("user") or os.environ.get("PGUSER", "postgres")


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database (a conninfo string)."""
    params = parse_url(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


def describe(url: str) -> str:
    """`host:port/dbname` for messages: never the password."""
    params = parse_url(url)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port', '5432')}/{database_name(url)}"


def libpq_env(url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for pg_dump/pg_restore/psql that connects where `url` points.

    Settings come from the URL only: inherited PG* variables are dropped so that a stray PGHOST
    or PGPASSWORD in the caller's environment cannot redirect the tools.
    """
    env = {k: v for k, v in (base if base is not None else os.environ).items()}
    for var in _LIBPQ_ENV.values():
        env.pop(var, None)
    for key, value in parse_url(url).items():
        name = _LIBPQ_ENV.get(key)
        if name is None:
            raise UserInputError(
                f"--database-url: connection option {key!r} is not supported by the tasks; "
                f"use only {', '.join(sorted(_LIBPQ_ENV))}"
            )
        env[name] = value
    return env


def connect(url: str, **kwargs: object) -> psycopg.Connection:
    """A psycopg connection; an unreachable server is one clear line (TaskFailed)."""
    try:
        return psycopg.connect(url, connect_timeout=10, **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise TaskFailed(
            f"cannot connect to PostgreSQL at {describe(url)}: {first_line(exc)} "
            "(check --database-url and that the server is up)"
        ) from None


@contextmanager
def db_errors(what: str, fix: str = "") -> Iterator[None]:
    """Turn a PostgreSQL error inside the block into one line: what was being done, and why."""
    try:
        yield
    except psycopg.Error as exc:
        raise TaskFailed(f"{what}: {first_line(exc)}" + (f" ({fix})" if fix else "")) from None


def server_major(url: str) -> int:
    """The server's major version (16 for 16.4), from `server_version_num`."""
    with connect(url) as conn:
        return conn.info.server_version // 10000


def server_version(url: str) -> str:
    """The server's full version string, e.g. `16.4`."""
    with connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else ""


# the first minor release of each major whose psql knows `\restrict` (pg_dump writes it since)
RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
# custom-archive format -> the PostgreSQL release whose pg_dump writes it
ARCHIVE_FORMATS = {"1.14": "12 to 15", "1.15": "16", "1.16": "17"}
_chosen: dict[str, tuple[Path, str]] = {}  # tool name -> (path, full version) last chosen


def tool_version(path: Path) -> str:
    """`16.2` for a tool that prints `psql (PostgreSQL) 16.2`; "" if it does not run."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.search(r"\)\s+(\d+(?:\.\d+)?)", out)
    return match.group(1) if match else ""


def explain_tool_error(line: str, tool: Path | None = None) -> str:
    """A PostgreSQL tool's error line, with the versions involved and the fix when it is a
    version mismatch (the tool is `tool`, or the last one `find_pg_tool` chose)."""
    if "invalid command \\restrict" in line:
        path, version = _tool("psql", tool)
        major = int(version.split(".")[0]) if version[:2].isdigit() else 0
        need = f"{major}.{RESTRICT_SINCE[major]}" if major in RESTRICT_SINCE else "of 2025-08+"
        upgrade = f"postgresql-client-{major}" if major else "the PostgreSQL client tools"
        return (
            f"{line}: the dump was made by a pg_dump from August 2025 or later (13.22, 14.19, "
            f"15.14, 16.10, 17.6 and up), which writes \\restrict; psql {version or '?'} ({path}) "
            f"predates it: restore with psql {need} or newer (upgrade {upgrade} or point "
            f"{PG_BIN_ENV} at a newer client's bin directory)"
        )
    unsupported = re.search(r"unsupported version \((\d+\.\d+)\) in file header", line)
    if unsupported:
        path, version = _tool("pg_restore", tool)
        made = ARCHIVE_FORMATS.get(unsupported.group(1), "a newer release")
        return (
            f"{line}: the archive was made by pg_dump of PostgreSQL {made} (format "
            f"{unsupported.group(1)}); the target server runs PostgreSQL "
            f"{version.split('.')[0] or '?'} and its pg_restore {version or '?'} ({path}) cannot "
            f"read it: restore into a PostgreSQL {made.split()[-1]} (or newer) server; a dump "
            "does not go back to an older major"
        )
    return line


def _tool(name: str, tool: Path | None) -> tuple[str, str]:
    if tool is not None:
        return str(tool), tool_version(tool)
    path, version = _chosen.get(name, (Path(name), ""))
    return str(path), version


def tool_major(path: Path) -> int | None:
    """The major version a tool reports with `--version`, or None if it does not run."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search(out)
    return int(match.group(1)) if match else None


def candidate_dirs(major: int) -> Iterator[tuple[str, Path]]:
    """Where to look, in order, each with a label for error messages."""
    if os.environ.get(PG_BIN_ENV):
        yield PG_BIN_ENV, Path(os.environ[PG_BIN_ENV])
    yield "system", Path(f"/usr/lib/postgresql/{major}/bin")
    pgserver_bin = _pgserver_bin()
    if pgserver_bin is not None:
        yield "pgserver", pgserver_bin
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            yield "PATH", Path(entry)


def _pgserver_bin() -> Path | None:
    """pgserver's bundled tools, located without importing it (its import costs ~0.1 s and
    warns on stderr when XDG_RUNTIME_DIR is unset)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def find_pg_tool(name: str, major: int) -> Path:
    """A `pg_dump`/`pg_restore`/`psql` of exactly `major`; otherwise one line saying how to fix."""
    found: list[str] = []
    seen: set[Path] = set()
    for label, directory in candidate_dirs(major):
        candidate = directory / name
        resolved = candidate.resolve() if candidate.exists() else None
        if resolved is None or resolved in seen or not os.access(candidate, os.X_OK):
            continue
        seen.add(resolved)
        version = tool_major(candidate)
        if version == major:
            _chosen[name] = (candidate, tool_version(candidate))
            return candidate
        found.append(f"{version if version is not None else '?'} at {candidate} ({label})")
    which = ", ".join(found) if found else f"none (no {name} in ${PG_BIN_ENV}, system or PATH)"
    raise UserInputError(
        f"no {name} for PostgreSQL {major}: found {which}; install postgresql-client-{major} "
        f"or set {PG_BIN_ENV} to a directory holding the version-{major} tools"
    )


def tools_for(url: str, *names: str) -> dict[str, Path]:
    """The named tools matching the server behind `url` (one connection to ask its major)."""
    major = server_major(url)
    return {name: find_pg_tool(name, major) for name in names}


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
