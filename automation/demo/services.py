"""The demo's services, all on loopback or unix sockets, each stopped by the `ExitStack` it joins.

PostgreSQL refuses to run as root: pgserver then runs it as its own unprivileged system user.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import shutil
import socket
import subprocess
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

from automation.errors import TaskFailed, UserInputError
from automation.tasks.io.procs import signals_held

DEV_MODULES = {"pgserver": "pgserver", "moto.server": "moto[server]", "stripe": "stripe"}


def require(module: str) -> ModuleType:
    """Import a dev dependency, or one line naming `make setup`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserInputError(
            f"the demo needs {DEV_MODULES.get(module, module)} (a dev dependency): run `make setup`"
        ) from None


def check_setup() -> None:
    """Every dependency the demo needs, before any service starts."""
    with warnings.catch_warnings():
        # pgserver keeps its start/stop lock in the user's runtime directory; without
        # XDG_RUNTIME_DIR (as under root) platformdirs warns and falls back to /tmp/runtime-UID
        warnings.simplefilter("ignore")
        require("pgserver")
    for module in DEV_MODULES:
        require(module)
    for name in ("redis-server", "redis-cli", "psql"):
        tool(name)


def tool(name: str) -> str:
    """The full path of a command-line tool `make setup` installs."""
    path = shutil.which(name)
    if path is None:
        raise UserInputError(f"the demo needs {name} on PATH: run `make setup`")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Postgres:
    data_dir: Path
    socket_dir: str

    def url(self, dbname: str = "postgres") -> str:
        """libpq's URL for a unix socket: the socket directory, percent-encoded, as the host."""
        return f"postgresql://postgres@{quote(self.socket_dir, safe='')}/{dbname}"


def start_postgres(stack: ExitStack, root: Path) -> Postgres:
    """Embedded PostgreSQL 16 in `root/pg`, reached over its unix socket; deleted on exit."""
    pgserver = require("pgserver")
    data_dir = root / "pg"
    data_dir.mkdir()
    stack.callback(stop_strays, data_dir)  # runs last: after the server's own cleanup
    server = pgserver.get_server(str(data_dir), cleanup_mode="delete")
    stack.callback(server.cleanup)
    return Postgres(data_dir, server.get_uri().split("host=")[1])


def stop_strays(data_dir: Path) -> None:
    """A server still running on `data_dir` (interrupted while it started, before pgserver
    returned a handle to stop it): terminate it, so nothing outlives the demo."""
    import psutil  # pgserver's own dependency

    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "-D" in cmdline and str(data_dir) in cmdline:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
                proc.wait(5)


def start_s3(stack: ExitStack) -> str:
    """moto's S3 in server mode (HTTP on loopback); its endpoint URL."""
    moto_server = require("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log on the terminal
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stack.callback(server.stop)
    return f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class Redis:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(stack: ExitStack, root: Path) -> Redis:
    """redis-server on a free loopback port with its data in `root/redis`; stopped on exit."""
    data_dir = root / "redis"
    data_dir.mkdir()
    port = free_port()
    args = [tool("redis-server"), "--bind", "127.0.0.1", "--port", str(port)]
    args += ["--dir", str(data_dir)]
    args += ["--save", "3600 1", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]
    args += ["--repl-diskless-sync-delay", "0"]  # the backup's snapshot starts at once
    # its own session: a Ctrl-C at the terminal reaches the demo, which stops Redis in order
    with signals_held():  # an interrupt now still finds it in the stack, to stop
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        stack.callback(stop_process, proc)
    wait_for_port(port, proc, "redis-server")
    return Redis(data_dir, port)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TaskFailed(f"{name} exited with {proc.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TaskFailed(f"{name} did not listen on 127.0.0.1:{port} within {timeout:g}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
