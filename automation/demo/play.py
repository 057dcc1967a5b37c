"""The demo: start the services, play the on-call loop with the real commands, check each step.

Every step prints a heading, then each command it runs as a subprocess from the repository root
(`$ python -m automation ...`; `$ psql ...`/`$ redis-cli ...` to seed and to cause the disaster),
exactly as run, with that command's own output; then the demo checks the step's effect
independently (tables, S3 objects, the receiver's count) and stops with exit 1 at the first step
that did not do what it says. Services and the temporary directory are removed on the way out,
also after Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automation.demo import seed, services
from automation.demo.standin import WEBHOOK_PATH, StandIn
from automation.errors import TaskFailed
from automation.tasks.io.procs import signals_held

REPO = Path(__file__).resolve().parents[2]
APP = "qr"
BUCKET = "opsplane-demo-backups"
SIGNING_VAR = "OPSPLANE_DEMO_WEBHOOK_SECRET"  # holds the Stripe signing secret
MOTO_KEY = "demo"  # moto accepts any key: a throwaway one, never a real credential
REPLAY_RATE = "600/minute"
LEFTOVERS = "database:leftovers"  # status' check of kept pre-restore databases


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: stop the running command, then clean up."""


class StepFailed(TaskFailed):
    """A step did not do what it says."""


@dataclass(frozen=True)
class Options:
    rows: int = 100_000
    out: Path = Path("out/prod")


@dataclass
class World:
    """Where everything lives while the demo runs."""

    root: Path
    pg: services.Postgres
    s3_endpoint: str
    redis: services.Redis
    app: StandIn
    out: Path
    rows: int
    seeded: dict[str, int | None] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return self.pg.url(APP)

    @property
    def admin_url(self) -> str:
        return self.pg.url("postgres")

    @property
    def health_url(self) -> str:
        return f"{self.app.base_url}/health"

    @property
    def webhook_url(self) -> str:
        return f"{self.app.base_url}{WEBHOOK_PATH}"

    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=MOTO_KEY,
            aws_secret_access_key=MOTO_KEY,
        )

    def command_env(self, secret: str) -> dict[str, str]:
        # the user's own AWS_*, OPSPLANE_* and libpq PG* settings (profiles, URLs) stay out
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPSPLANE_", "PG"))}
        env.update(
            AWS_ENDPOINT_URL=self.s3_endpoint,
            AWS_ACCESS_KEY_ID=MOTO_KEY,
            AWS_SECRET_ACCESS_KEY=MOTO_KEY,
            AWS_DEFAULT_REGION="us-east-1",
            PYTHONUNBUFFERED="1",
            COLUMNS=env.get("COLUMNS", "100"),
        )
        env[SIGNING_VAR] = secret
        return env


# --- printing and running -----------------------------------------------------------------------


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Runner:
    """Runs a step's commands as subprocesses, echoing and keeping their output."""

    env: dict[str, str]
    child: subprocess.Popen[str] | None = None
    step: str = ""

    def heading(self, number: int, title: str) -> None:
        self.step = f"step {number}"
        out()
        out(f"── {number}. {title} " + "─" * max(0, 76 - len(title)))

    def automation(self, *args: str, expect: int = 0) -> str:
        """Run `python -m automation ARGS`; see `run`."""
        shown = f"python -m automation {shlex.join(args)}"
        return self.run([sys.executable, "-m", "automation", *args], shown, expect=expect)

    def tool(self, name: str, *args: str) -> str:
        """Run a tool `make setup` installs (psql, redis-cli), found on PATH; see `run`."""
        return self.run([services.tool(name), *args], shlex.join([name, *args]))

    def run(self, argv: list[str], shown: str, *, expect: int = 0) -> str:
        """Print `$ shown`, run argv from the repository root echoing its output as it comes;
        its exit code must be `expect`. Returns stdout and stderr, merged."""
        out(f"$ {shown}")
        lines: list[str] = []
        try:
            with signals_held():  # an interrupt now still finds the command in `self.child`
                self.child = subprocess.Popen(
                    argv,
                    cwd=REPO,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            assert self.child.stdout is not None
            for line in self.child.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                lines.append(line)
            code = self.child.wait()
        finally:
            self.stop_child()
        if code != expect:
            raise StepFailed(f"{self.step} did not do what it says: exit code {code}, not {expect}")
        return "".join(lines)

    def stop_child(self) -> None:
        """Interrupted mid-command: the command gets SIGINT (it stops cleanly), then SIGKILL."""
        child, self.child = self.child, None
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGINT)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            raise StepFailed(f"{self.step} did not do what it says: {what}")
        out(f"  ✔ {what}")


# --- the steps ----------------------------------------------------------------------------------


def step_seed(world: World, run: Runner) -> None:
    run.heading(1, "Seed a QR-shaped database (and a few Redis keys)")
    run.tool("psql", world.admin_url, "-c", f"CREATE DATABASE {APP}")
    rows, head = f"rows={world.rows}", f"head={seed.QR_HEAD}"
    run.tool(
        "psql", world.db_url, "-v", "ON_ERROR_STOP=1", "-v", rows, "-v", head, "-f", seed.SEED_SQL
    )
    redis = ["-h", "127.0.0.1", "-p", str(world.redis.port)]
    run.tool("redis-cli", *redis, "MSET", "session:1", "alice", "session:2", "bob", "rate:api", "7")
    world.seeded = seed.counts(world.db_url)
    out(f"  {seed.describe_counts(world.seeded)}")
    run.check(
        world.seeded["accounts"] == world.rows
        and (world.seeded["webhook_logs failed"] or 0) > 0
        and seed.migration_head(world.db_url) == seed.QR_HEAD,
        f"{world.rows:,} accounts, {world.seeded['webhook_logs failed']} failed webhook events, "
        f"Alembic head {seed.QR_HEAD}",
    )


def step_backup(world: World, run: Runner) -> None:
    from automation.tasks.backups import list_backups

    run.heading(2, "Back up, list the backups, verify the newest one")
    db, redis = world.db_url, world.redis.url
    run.automation("backup", "--bucket", BUCKET, "--database-url", db, "--redis-url", redis)
    runs = list_backups(world.s3(), BUCKET, app=APP)
    parts = set(runs[0].parts) if len(runs) == 1 and runs[0].complete else set()
    run.check(
        {"db.sql.gz", "redis.rdb.gz"} <= parts,
        f"one complete backup run in s3://{BUCKET} with parts {', '.join(sorted(parts)) or '-'}",
    )
    run.automation("backups", "list", "--bucket", BUCKET)
    run.automation("verify-backup", "--database-url", db, "--bucket", BUCKET, "--latest")
    verified = list_backups(world.s3(), BUCKET, app=APP)[0].verified
    run.check(verified == "ok", f"the backup is tagged verified={verified}")


def status_args(world: World) -> list[str]:
    args = ["status", "--app", APP, "--database-url", world.db_url, "--redis-url", world.redis.url]
    return [*args, "--bucket", BUCKET, "--health-url", f"api={world.health_url}"]


STATUS_LINE = re.compile(r"^(PASS|WARN|FAIL)\s+(\S+)\s+(.*)$", re.MULTILINE)


def status_levels(output: str) -> dict[str, list[str]]:
    """Check names by level ("pass", "warn", "fail") from `status`'s one line per check."""
    levels: dict[str, list[str]] = {"pass": [], "warn": [], "fail": []}
    for level, name, _ in STATUS_LINE.findall(output):
        levels[level.lower()].append(name)
    return levels


def next_steps(output: str, level: str) -> dict[str, str]:
    """The next step `status` names for each check at `level` ("WARN"/"FAIL")."""
    found = {}
    for found_level, name, rest in STATUS_LINE.findall(output):
        if found_level == level:
            found[name] = rest.split("→ next: ", 1)[1] if "→ next: " in rest else ""
    return found


def all_pass(world: World, run: Runner) -> None:
    levels = status_levels(run.automation(*status_args(world)))
    run.check(
        len(levels["pass"]) >= 4 and not levels["warn"] and not levels["fail"],
        f"all {len(levels['pass'])} checks pass (health:api, database, redis, backups)",
    )


def step_status_ok(world: World, run: Runner) -> None:
    run.heading(3, "status: everything passes")
    all_pass(world, run)


def step_disaster(world: World, run: Runner) -> None:
    run.heading(4, "A disaster: rows deleted, a table dropped")
    run.tool("psql", world.db_url, "-c", seed.DISASTER_SQL)
    now = seed.counts(world.db_url)
    out(f"  {seed.describe_counts(now)}")
    run.check(
        now["qr_events"] is None and (now["qr_items"] or 0) < (world.seeded["qr_items"] or 0),
        "qr_events is gone and half the QR codes with it",
    )


def step_status_fail(world: World, run: Runner) -> None:
    fails = next_steps(run.automation(*status_args(world), expect=1), "FAIL")
    run.check(
        "health:api" in fails and all(fails.values()),
        f"status FAILs {', '.join(fails) or 'nothing'} and names the next step "
        f"({fails.get('health:api') or 'none'})",
    )


def step_restore(world: World, run: Runner) -> None:
    run.heading(5, "Restore the latest backup: a new database, checked, swapped in")
    run.automation(
        "restore", "--database-url", world.db_url, "--bucket", BUCKET, "--latest", "--yes"
    )
    now = seed.counts(world.db_url)
    out(f"  {seed.describe_counts(now)}")
    run.check(now == world.seeded, "every table is back with every row it had at the backup")
    kept = seed.databases(world.admin_url, f"{APP}_pre_restore_%")
    run.check(len(kept) == 1, f"the damaged database is kept as {', '.join(kept) or '(none)'}")
    run.check(
        seed.counts(world.pg.url(kept[0]))["qr_events"] is None,
        f"{kept[0]} is the database as the disaster left it",
    )


def step_status_again(world: World, run: Runner) -> None:
    run.heading(6, "status: all passing again")
    output = run.automation(*status_args(world))
    levels, warns = status_levels(output), next_steps(output, "WARN")
    run.check(
        "health:api" in levels["pass"] and not levels["fail"] and set(warns) <= {LEFTOVERS},
        "nothing fails; the only WARN is the kept previous database, with its next step",
    )
    out("  (its next step, once the restored data is confirmed: drop the kept copy)")
    run.automation("restore", "--cleanup", "--database-url", world.db_url, "--yes")
    kept = seed.databases(world.admin_url, f"{APP}_pre_restore_%")
    run.check(not kept, "no pre-restore copy is left")
    all_pass(world, run)


def step_replay(world: World, run: Runner) -> None:
    run.heading(7, "Replay the failed webhooks, twice: the second run delivers nothing")
    failed = seed.failed_event_ids(world.db_url)
    args = ["replay", "--webhook-url", world.webhook_url, "--signing", "stripe"]
    args += ["--secret-env", SIGNING_VAR, "--from-db", world.db_url]
    args += ["--rate-limit", REPLAY_RATE, "--yes"]
    run.automation(*args)
    first = world.app.delivered()
    run.check(
        set(first) == failed and set(first.values()) == {1} and world.app.rejected == 0,
        f"the receiver verified and acknowledged each of the {len(failed)} failed events once",
    )
    run.automation(*args)
    second = world.app.delivered()
    run.check(
        second == first,
        f"the second run delivered {sum(second.values()) - sum(first.values())} events",
    )


def step_render(world: World, run: Runner) -> None:
    run.heading(8, "Render the prod stack offline: what `pulumi up -s prod` would deploy")
    run.automation("render", "--stack", "prod", "--out", str(world.out), "--placeholder-secrets")
    summary_path = world.out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    run.check(
        summary.get("stack") == "prod" and summary.get("resources", 0) > 0,
        f"{summary_path} written",
    )
    out(f"  would deploy: {render_summary(summary)}")


RENDERED_KINDS = (
    ("kubernetes:apps/v1:Deployment", "Deployments"),
    ("kubernetes:apps/v1:StatefulSet", "StatefulSets"),
    ("kubernetes:batch/v1:CronJob", "CronJobs"),
    ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "autoscalers"),
    ("kubernetes:networking.k8s.io/v1:Ingress", "Ingresses"),
    ("kubernetes:core/v1:Secret", "Secrets"),
    ("kubernetes:monitoring.coreos.com/v1:PrometheusRule", "alert rule groups"),
    ("aws:s3/bucket:Bucket", "S3 buckets"),
)


def render_summary(summary: dict[str, Any]) -> str:
    by_type = summary.get("by_type", {})
    apps = by_type.get("opsplane:index:App", 0)
    kinds = [f"{by_type[t]} {label}" for t, label in RENDERED_KINDS if by_type.get(t)]
    return (
        f"{apps} apps: {', '.join(kinds)} ({summary.get('resources')} resources, "
        f"{summary.get('kubernetes_objects')} Kubernetes objects)"
    )


Step = Callable[[World, Runner], None]
STEPS: tuple[Step, ...] = (
    step_seed,
    step_backup,
    step_status_ok,
    step_disaster,
    step_status_fail,
    step_restore,
    step_status_again,
    step_replay,
    step_render,
)


# --- services, signals, cleanup -----------------------------------------------------------------


def start_world(stack: ExitStack, root: Path, options: Options, secret: str) -> World:
    out("starting PostgreSQL 16 (pgserver), S3 (moto server), redis-server, the app stand-in ...")
    pg = services.start_postgres(stack, root)
    s3_endpoint = services.start_s3(stack)
    redis = services.start_redis(stack, root)
    app = StandIn(pg.url(APP), secret).start()
    stack.callback(app.stop)
    world = World(root, pg, s3_endpoint, redis, app, options.out.resolve(), options.rows)
    world.s3().create_bucket(Bucket=BUCKET)
    return world


def print_where(world: World) -> None:
    out()
    out("where everything lives (all removed at the end, except the render):")
    out(f"  PostgreSQL 16 (pgserver)  {world.db_url}  data {world.pg.data_dir}")
    out(f"  S3 (moto, server mode)    {world.s3_endpoint}  bucket {BUCKET}")
    out(f"  Redis                     {world.redis.url}  data {world.redis.data_dir}")
    out(f"  QR API stand-in           health {world.health_url}")
    out(f"                            Stripe webhooks {world.webhook_url}")
    out(f"  render output (kept)      {world.out}")
    out(f"  commands run from {REPO} with AWS_ENDPOINT_URL={world.s3_endpoint},")
    out(f"  AWS_ACCESS_KEY_ID=demo and {SIGNING_VAR} (random each run, never printed)")


@contextmanager
def interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` once; further ones wait for the cleanup."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signal.Signals(signum).name)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_demo(options: Options) -> float:
    """Play every step; returns the seconds it took. Raises StepFailed at the first bad step."""
    started = time.monotonic()
    secret = "whsec_" + secrets.token_hex(24)
    root = Path(tempfile.mkdtemp(prefix="opsplane-demo-"))
    try:
        with interrupts(), ExitStack() as stack:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
            services.check_setup()
            try:
                world = start_world(stack, root, options, secret)
                print_where(world)
                runner = Runner(world.command_env(secret))
                for step in STEPS:
                    step(world, runner)
            finally:  # before the stack stops the services and removes the directory
                out(f"\nstopping the services, removing {root}")
    except Interrupted as exc:
        removed = "removed" if not root.exists() else "NOT removed (delete it by hand)"
        raise TaskFailed(
            f"interrupted ({exc}): services stopped, {root} {removed}; nothing else was touched"
        ) from None
    return time.monotonic() - started
