"""CLI start-up: `python -m automation --help` against `python -c "import pulumi.automation"`, and
a restore's time before its first request.

Each round runs, one after the other, in fresh interpreters:
1. `python -c "import pulumi.automation"`: what any Pulumi-driven tool pays before doing anything;
2. `python -m automation --help` (every command registered: the slowest help);
3. `python -m automation restore --help`;
4. a restore (`restore --database-url ... --bucket B --key K --yes`) against a local TCP listener
   standing in for PostgreSQL and a local HTTP server standing in for S3: the time from starting
   the process to its first request reaching either (the restore checks its target database
   before it reads S3, so that is the database's connection; the restore then ends with a
   one-line error).
Reported: the median of each over the rounds, and help / import-pulumi as a ratio (goal < 1.0).

    .venv/bin/python bench/startup_bench.py                # 7 rounds
    .venv/bin/python bench/startup_bench.py --compare /tmp/opsplane-main  # and another checkout
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


class FirstRequest(BaseHTTPRequestHandler):
    """Notes when the first request arrives; answers every request 404 (no such key)."""

    arrived: list[float] = []

    def _answer(self) -> None:
        FirstRequest.arrived.append(time.perf_counter())
        body = b"<Error><Code>NoSuchKey</Code><Message>bench</Message></Error>"
        self.send_response(404)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


def first_connection(listener: socket.socket) -> None:
    """Note when the database's first connection arrives, then close it (not PostgreSQL)."""
    try:
        conn, _ = listener.accept()
    except OSError:
        return  # closed by the bench: no connection came
    FirstRequest.arrived.append(time.perf_counter())
    conn.close()


def time_to_first_request(python: str, cwd: Path) -> float:
    """Seconds from starting a restore to its first request (database check or S3)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FirstRequest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    database = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=first_connection, args=(database,), daemon=True).start()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    args = [python, "-m", "automation", "restore", "--database-url",
            f"postgresql://bench@127.0.0.1:{database.getsockname()[1]}/bench", "--bucket", "bench",
            "--key", "backups/qr/20260101T000000Z/db.dump", "--yes"]  # fmt: skip
    FirstRequest.arrived = []
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server.shutdown()
    server.server_close()
    database.close()
    if not FirstRequest.arrived:
        raise SystemExit("the restore made no request: check the command in this bench")
    return min(FirstRequest.arrived) - started


def measure_round(py: str, repo: Path, sides: dict[str, list[float]]) -> None:
    """One round of every side for one checkout, appended to `sides`."""
    commands = {
        "import pulumi.automation": [py, "-c", "import pulumi.automation"],
        "automation --help": [py, "-m", "automation", "--help"],
        "automation restore --help": [py, "-m", "automation", "restore", "--help"],
    }
    for name, args in commands.items():
        sides.setdefault(name, []).append(timed(args, repo))
    sides.setdefault("restore: first request", []).append(time_to_first_request(py, repo))


def report(repo: Path, rounds: int, sides: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in sides.items()}
    print(f"{repo} ({rounds} rounds, medians)")
    for name, values in sides.items():
        spread = f"{min(values):.3f}-{max(values):.3f}"
        print(f"  {name:28} {medians[name]:.3f} s   (range {spread})")
    ratio = medians["automation --help"] / medians["import pulumi.automation"]
    print(f"  ratio --help / import pulumi.automation: {ratio:.2f} (goal < 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to measure")
    parser.add_argument(
        "--compare", type=Path, help="a second checkout (e.g. before a change), run in turn"
    )
    parser.add_argument("--python", default=sys.executable)
    opts = parser.parse_args()
    repos = [opts.repo.resolve()] + ([opts.compare.resolve()] if opts.compare else [])
    results: dict[Path, dict[str, list[float]]] = {repo: {} for repo in repos}
    for _ in range(opts.rounds):
        for repo in repos:  # alternating, so both see the same machine load
            measure_round(opts.python, repo, results[repo])
    for repo in repos:
        report(repo, opts.rounds, results[repo])


if __name__ == "__main__":
    main()
