"""A PostgreSQL instance this tool starts itself (the temporary recovery instance, and in tests
the archiving cluster), run as an unprivileged user because PostgreSQL refuses to run as root.

As root, the instance runs as the system user `opsplane-pg` (created with `useradd` when
missing), and the directories it needs (its data, the PostgreSQL binaries, the barman-cloud
tools and the Python that runs them) are made traversable (`o+x` on each parent, the way
pgserver does it; nothing is made readable). As any other user, it runs as that user.

Settings go into `postgresql.auto.conf` (the last file PostgreSQL reads), so a restored data
directory's own settings (archive_command, ports, hba) are overridden, never edited.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from automation.errors import TaskFailed

RUN_USER = "opsplane-pg"
# unix socket only, in a directory only RUN_USER and root can enter
HBA = "local all all trust\n"
MARK = "\n# opsplane: settings below replace any earlier ones (rewritten on every start)\n"


@dataclass(frozen=True)
class RunAs:
    """Who an instance runs as: None fields mean "this process' user"."""

    uid: int | None = None
    gid: int | None = None

    @property
    def extra_groups(self) -> list[int] | None:
        """Popen's `extra_groups`: none at all for the run user (dropping root's groups)."""
        return None if self.uid is None else []

    def own(self, path: Path) -> None:
        """Make `path` (and everything under it) belong to the run user."""
        if self.uid is None:
            return
        os.chown(path, self.uid, self.gid or 0)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), self.uid, self.gid or 0)


def run_as() -> RunAs:
    """As root: the unprivileged `opsplane-pg` user (created if missing); else ourselves."""
    if os.geteuid() != 0:
        return RunAs()
    try:
        entry = pwd.getpwnam(RUN_USER)
    except KeyError:
        made = subprocess.run(
            [
                "/usr/sbin/useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                RUN_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0 and "already exists" not in made.stderr:
            raise TaskFailed(
                f"cannot create the unprivileged user {RUN_USER} PostgreSQL runs as: "
                f"{made.stderr.strip() or made.returncode} (run as a non-root user instead)"
            ) from None
        entry = pwd.getpwnam(RUN_USER)
    return RunAs(entry.pw_uid, entry.pw_gid)


def make_traversable(*paths: Path) -> None:
    """`o+x` on every directory above each path (and on the path itself if a directory), so the
    run user can reach it; only as root, where the run user is someone else."""
    if os.geteuid() != 0:
        return
    for path in paths:
        target = Path(os.path.realpath(path))
        for directory in [target, *target.parents] if target.is_dir() else target.parents:
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(mode | stat.S_IXOTH)


def runtime_paths(bin_dir: Path) -> list[Path]:
    """What a PostgreSQL server and its archive/restore commands execute."""
    return [bin_dir, Path(sys.executable), Path(os.path.realpath(sys.executable))]


def tool_path(name: str) -> Path:
    """A barman-cloud tool: next to this Python (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found is None:
        raise TaskFailed(
            f"{name} not found: install barman-cloud (pip install 'barman[cloud]', or the "
            "barman-cli-cloud package)"
        )
    return Path(found)


@dataclass
class Instance:
    """One PostgreSQL data directory and the server running on it (unix socket only)."""

    pgdata: Path
    bin_dir: Path
    port: int = 5432
    owner: RunAs = field(default_factory=RunAs)

    @property
    def socket_dir(self) -> Path:
        return self.pgdata.parent / "sock"

    @property
    def log_file(self) -> Path:
        return self.pgdata.parent / "postgresql.log"

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return make_conninfo(
            host=str(self.socket_dir), port=str(self.port), dbname=dbname, user=user
        )

    def public_url(self, dbname: str, user: str) -> str:
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def _run(self, args: list[str], env: Mapping[str, str] | None = None) -> str:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            check=False,
            env=dict(env if env is not None else os.environ),
            cwd="/",
            user=self.owner.uid,
            group=self.owner.gid,
            extra_groups=self.owner.extra_groups,
        )
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise TaskFailed(
                f"{Path(args[0]).name} failed: {detail[-1] if detail else done.returncode}"
            )
        return done.stdout

    def prepare_dirs(self) -> None:
        """The socket directory (0700, the run user's) and the data directory's owner/mode."""
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.chmod(0o700)
        self.owner.own(self.socket_dir)
        make_traversable(self.pgdata.parent, *runtime_paths(self.bin_dir))

    def initdb(self) -> None:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self.owner.own(self.pgdata)
        self.prepare_dirs()
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )

    def configure(self, settings: Mapping[str, str | int]) -> None:
        """Our settings at the end of postgresql.auto.conf (replacing the ones a previous call
        wrote there; the file's own lines come first, so ours win), and our own hba."""
        hba = self.pgdata.parent / "pg_hba.conf"
        hba.write_text(HBA)
        merged = {
            "port": self.port,
            "listen_addresses": "",
            "unix_socket_directories": str(self.socket_dir),
            "hba_file": str(hba),
            "ident_file": str(hba),
            **settings,
        }
        lines = [
            f"{key} = '{str(value).replace(chr(39), chr(39) * 2)}'" for key, value in merged.items()
        ]
        auto = self.pgdata / "postgresql.auto.conf"
        kept = auto.read_text().split(MARK, 1)[0] if auto.exists() else ""
        auto.write_text(kept.rstrip("\n") + "\n" + MARK + "\n".join(lines) + "\n")
        self.owner.own(hba)
        self.owner.own(self.pgdata / "postgresql.auto.conf")

    def start(self, env: Mapping[str, str] | None = None) -> None:
        """Start the server in the background (pg_ctl without waiting); see `wait_ready`."""
        self.prepare_dirs()
        self.log_file.touch()
        self.owner.own(self.log_file)
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "start",
                "--no-wait",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
            ],
            env,
        )

    def pid(self) -> int | None:
        """The postmaster's pid while it runs, else None."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def wait_ready(self, timeout: float = 600.0, user: str = "postgres") -> None:
        """Until the server accepts connections; its log's last FATAL line if it stops."""
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.url(user=user), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                pass
            if not self.running() and time.monotonic() - started > 2:
                raise TaskFailed(f"PostgreSQL on {self.pgdata} stopped: {self.last_error()}")
            time.sleep(0.2)
        raise TaskFailed(f"PostgreSQL on {self.pgdata} not ready after {timeout:.0f}s")

    def last_error(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        bad = [line for line in lines if "FATAL" in line or "PANIC" in line]
        return (bad or lines or ["no log"])[-1].strip()[:300]

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs (immediate mode kills it without a checkpoint)."""
        if not self.running():
            return
        with contextlib.suppress(TaskFailed):
            self._run(
                [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", mode, "-w"]
            )
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @contextlib.contextmanager
    def running_with(self, env: Mapping[str, str] | None = None) -> Iterator[Instance]:
        self.start(env)
        try:
            self.wait_ready()
            yield self
        finally:
            self.stop()
