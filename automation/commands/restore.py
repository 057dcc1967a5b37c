"""`restore`: the runbooks' database/Redis/MinIO restores and their emergency procedures, safely.

Two forms, both restoring `--component db|redis|objects|all` of one backup run (every requested
part verified before any is changed, then database, Redis, objects in that order):
- explicit (what a Job runs, and what tests use): `--database-url URL --bucket NAME
  (--key KEY | --latest)`, `--redis-data-dir DIR` for Redis, `--objects-bucket NAME` for objects;
  S3 from the standard AWS environment;
- stack: `--stack STACK --app APP [--backup latest|KEY] [--component ...]`, connection details
  from the app's `ops` output; the app is put in maintenance around the restore (always left
  again), or with `--where cluster` the restore runs as a cluster Job (which, for Redis, the
  program runs with Redis stopped and its data volume mounted).
`--cleanup` lists and drops `<db>_pre_restore_*` copies and leftover `<db>_restore_*` databases.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from psycopg.conninfo import make_conninfo

from automation.console import confirm, emit_json, handle_errors, progress, stderr
from automation.errors import OpsError, TaskFailed, UserInputError
from automation.stack.protocol import StackOps, app_ops
from automation.tasks import restore as task
from automation.tasks.io import pgtools
from automation.tasks.io.s3io import s3_client
from contract import backup_layout as bf

COMPONENTS = ("db", "redis", "objects", "all")
WHERE = ("local", "cluster")


def say(line: str) -> None:
    stderr.print(line, markup=False, highlight=False)


def bar(description: str, total: float | None = None) -> contextlib.AbstractContextManager[Any]:
    return progress(description, total)


@handle_errors
def restore(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="OPSPLANE_DATABASE_URL",
            help="Live database: postgresql://user:password@host:5432/db "
            "(or env OPSPLANE_DATABASE_URL, which keeps the password off the command line).",
            show_default=False,
        ),
    ] = None,
    bucket: Annotated[
        str | None,
        typer.Option("--bucket", envvar="OPSPLANE_BACKUP_BUCKET", help="Backup bucket."),
    ] = None,
    prefix: Annotated[
        str, typer.Option("--prefix", envvar="OPSPLANE_BACKUP_PREFIX", help="Backup key prefix.")
    ] = bf.DEFAULT_PREFIX,
    app: Annotated[str | None, typer.Option("--app", help="App name (qr, quickbite).")] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="A dump, a run folder or a manifest key (see `backups list`)."),
    ] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest complete run.")] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            help="Parallel loading sessions: plain splits COPY rows, index builds and "
            "foreign-key checks among them; custom runs pg_restore --jobs N, then checks "
            "foreign keys N-wide.",
            min=1,
        ),
    ] = 2,
    stack: Annotated[
        str | None, typer.Option("--stack", help="Stack form: read everything from its ops.")
    ] = None,
    backup: Annotated[
        str | None, typer.Option("--backup", help="Stack form: `latest` (default) or a KEY.")
    ] = None,
    component: Annotated[
        str, typer.Option("--component", help="db, redis, objects or all (database first).")
    ] = "db",
    where: Annotated[
        str, typer.Option("--where", help="Stack form: local, or cluster (a Job in the cluster).")
    ] = "local",
    redis_data_dir: Annotated[
        Path | None,
        typer.Option(
            "--redis-data-dir", help="Stopped Redis' data directory (component redis or all)."
        ),
    ] = None,
    objects_bucket: Annotated[
        str | None,
        typer.Option(
            "--objects-bucket",
            help="Explicit form: the app's bucket to restore objects into (component objects/all).",
        ),
    ] = None,
    cleanup: Annotated[
        bool, typer.Option("--cleanup", help="List and drop pre-restore copies and leftovers.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Verify the backup and show the plan; change nothing.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
    to_time: Annotated[
        str | None,
        typer.Option(
            "--to-time",
            help="Point-in-time recovery: ISO 8601 with a zone, or latest (see docs/pitr.md).",
        ),
    ] = None,
    inspect: Annotated[
        bool,
        typer.Option("--inspect", help="With --to-time: stop once the copy is up; print its URL."),
    ] = False,
    work_dir: Annotated[
        Path | None,
        typer.Option("--work-dir", help="With --to-time: where the recovered copy lives (reused)."),
    ] = None,
) -> None:
    """Restore a backup into a new database, check it, and swap it in; the old one is kept.

    `--component redis|objects|all` restores Redis and the object store from the same run.
    Verifies every part of the backup first; a bad one is refused and nothing changes. A restore
    that fails or is killed at any point leaves the live database as it was.
    `--to-time TIME` recovers the database as it was at TIME from the WAL archive instead.
    """
    if to_time is not None or inspect:
        run_point_in_time(
            PointInTime(database_url, bucket, app, prefix, to_time, inspect, work_dir, jobs),
            stack=stack, where=where,
            conflicting=bool(key or latest or backup or cleanup or dry_run),
            yes=yes, as_json=json,
        )  # fmt: skip
        return
    if stack is not None:
        if database_url or key or latest or objects_bucket:
            raise UserInputError(
                "--stack reads the database and buckets from the stack: drop --database-url/"
                "--key/--latest/--objects-bucket and name the backup with --backup latest|KEY"
            )
        if not app:
            raise UserInputError("--stack needs --app APP (e.g. --app qr)")
        options = StackForm(stack, app, backup, component, where, redis_data_dir, jobs)
        run_stack_form(options, cleanup=cleanup, yes=yes, dry_run=dry_run, as_json=json)
        return
    if cleanup:
        if database_url is None:
            raise UserInputError("--cleanup needs --database-url URL (or --stack STACK --app APP)")
        run_cleanup(database_url, yes=yes, dry_run=dry_run, as_json=json)
        return
    choice = ExplicitChoice.checked(component, jobs, redis_data_dir, objects_bucket, dry_run)
    if choice.wants("db") and database_url is None:
        raise UserInputError(
            "restore needs --stack STACK --app APP, or --database-url URL --bucket NAME "
            "(--key KEY | --latest)"
        )
    if not bucket:
        raise UserInputError("--bucket is required: the bucket holding the backups")
    if bool(key) == latest:
        raise UserInputError("name the backup with exactly one of --key KEY or --latest")
    client = s3_client()
    source = task.resolve_source(client, bucket, prefix=prefix, app=app, key=key)
    objects = explicit_objects(choice, client, source)
    if not dry_run:
        ask_before_restore(choice, database_url, source, yes)
    document: dict[str, Any] = {"component": choice.component}
    with verified_parts(choice, database_url, client, source, objects, dry_run=dry_run) as parts:
        if dry_run:
            document.update(dry_run_document(parts))
        else:
            apply_parts(document, parts)
    print_report(document, as_json=json)


def ask_before_restore(
    choice: ExplicitChoice, url: str | None, source: task.BackupRef, yes: bool
) -> None:
    what = []
    if choice.wants("db") and url is not None:
        live = pgtools.database_name(url)
        what.append(
            f"database {pgtools.describe(url)} (the current one is kept as "
            f"{live}_pre_restore_<time>)"
        )
    if choice.wants("redis"):
        what.append(f"Redis data in {choice.redis_data_dir} (previous files kept)")
    if choice.objects_bucket and choice.wants("objects"):
        what.append(f"objects in bucket {choice.objects_bucket}")
    confirm(f"Replace {'; '.join(what)} from s3://{source.bucket}/{source.key}?", yes=yes)


@dataclass(frozen=True)
class PointInTime:
    """`--to-time` and what goes with it."""

    database_url: str | None
    bucket: str | None
    app: str | None
    prefix: str
    to_time: str | None
    inspect: bool
    work_dir: Path | None
    jobs: int


def run_point_in_time(
    request: PointInTime, *, stack: str | None, where: str, conflicting: bool, yes: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """`restore --to-time`: the explicit form here, the stack form in operations/pitr.py."""
    from automation.commands import pitr

    if request.to_time is None:
        raise UserInputError("--inspect goes with --to-time TIME (ISO 8601 with a zone, or latest)")
    if conflicting:
        raise UserInputError(
            "--to-time recovers from the WAL archive: "
            "drop --key/--latest/--backup/--cleanup/--dry-run"
        )
    if stack is not None:
        pitr.run_stack_to_time(stack, request, where=where, yes=yes, as_json=as_json)
        return
    pitr.run_to_time(
        database_url=request.database_url, bucket=request.bucket, app=request.app,
        prefix=request.prefix, to_time=request.to_time, inspect=request.inspect,
        work_dir=request.work_dir, jobs=request.jobs, yes=yes, as_json=as_json,
    )  # fmt: skip


# --- what to restore, verified before anything changes ------------------------------------------


@dataclass(frozen=True)
class Choice:
    """The parts asked for (`--component`) and what restoring them needs."""

    component: str
    jobs: int
    redis_data_dir: Path | None

    def wants(self, part: str) -> bool:
        return self.component in (part, "all")


def check_component(component: str) -> None:
    if component not in COMPONENTS:
        raise UserInputError(f"--component {component!r}: use one of {', '.join(COMPONENTS)}")


def redis_dir_missing(component: str) -> UserInputError:
    return UserInputError(
        f"--component {component} needs --redis-data-dir DIR: the stopped Redis' data "
        "directory (its volume's mount point)"
    )


@dataclass(frozen=True)
class ExplicitChoice(Choice):
    objects_bucket: str | None = None
    dry_run: bool = False

    @classmethod
    def checked(
        cls,
        component: str,
        jobs: int,
        redis_data_dir: Path | None,
        objects_bucket: str | None,
        dry_run: bool,
    ) -> ExplicitChoice:
        """A dry run verifies the Redis part in a temporary directory: no data dir needed."""
        check_component(component)
        if component in ("redis", "all") and redis_data_dir is None and not dry_run:
            raise redis_dir_missing(component)
        if component == "objects" and not objects_bucket:
            raise UserInputError(
                "--component objects needs --objects-bucket NAME: the app's bucket to restore into"
            )
        return cls(component, jobs, redis_data_dir, objects_bucket, dry_run)


@dataclass
class Parts:
    """The verified parts of one backup run; `None` for a part not restored."""

    database: task.DatabaseRestore | None = None
    redis: task.RedisRestore | None = None
    objects: task.ObjectsRestore | None = None


ObjectsFactory = Callable[[], "task.ObjectsRestore | None"]


@contextlib.contextmanager
def verified_parts(
    choice: Choice,
    url: str | None,
    client: Any,
    source: task.BackupRef,
    objects: ObjectsFactory,
    *,
    dry_run: bool,
) -> Iterator[Parts]:
    """Read and check every requested part (database first), changing nothing; a bad part
    raises before any part is applied. Staged Redis files not moved into place are removed."""
    parts = Parts()
    with contextlib.ExitStack() as cleanup:
        if choice.wants("db"):
            assert url is not None
            parts.database = cleanup.enter_context(
                task.DatabaseRestore(
                    url, client, source, jobs=choice.jobs, dry_run=dry_run, log=say, bar=bar
                )
            )
            parts.database.verify()
        if choice.wants("redis"):
            parts.redis = task.RedisRestore(
                client, source.bucket, source.manifest, redis_dir(choice, cleanup), say
            )
            cleanup.callback(parts.redis.discard)
            parts.redis.verify()
        if choice.wants("objects"):
            parts.objects = objects()
            if parts.objects is not None:
                parts.objects.verify()
        yield parts


def redis_dir(choice: Choice, cleanup: contextlib.ExitStack) -> Path:
    """The data directory, or (dry run without one) a temporary directory to verify into."""
    if choice.redis_data_dir is not None:
        return choice.redis_data_dir
    return Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="opsplane-redis-")))


def dry_run_document(parts: Parts) -> dict[str, Any]:
    say("dry run: the backup is good; nothing was changed")
    verified = [
        name
        for name, part in (
            ("database", parts.database), ("redis", parts.redis), ("objects", parts.objects)
        )
        if part is not None
    ]  # fmt: skip
    database = parts.database.report.to_dict() if parts.database is not None else None
    return {"database": database, "verified": verified}


def explicit_objects(choice: ExplicitChoice, client: Any, source: task.BackupRef) -> ObjectsFactory:
    """Objects go back into `--objects-bucket` (same S3 as the backups). `all` without one is
    only allowed when the run has no objects (an app without an object store)."""
    if not choice.wants("objects"):
        return lambda: None
    if choice.objects_bucket:
        target = choice.objects_bucket
        return lambda: task.ObjectsRestore(
            client, source.bucket, source.manifest, client, target, say
        )
    parts = source.manifest.parts if source.manifest else []
    if any(part.format == "object" for part in parts):
        raise UserInputError(
            f"--component {choice.component}: the backup run holds objects; name the app's "
            "bucket to restore them into with --objects-bucket NAME"
        )
    return lambda: None


def print_report(document: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        emit_json(document)
        return
    db = document.get("database")
    if db:
        verb = "would restore" if db["dry_run"] else "restored"
        typer.echo(f"{verb} {db['database']} from {db['source']} ({db['format']})")
        for step in db["steps"]:
            detail = f"  {step['detail']}" if step["detail"] else ""
            typer.echo(f"  {step['name']:<8} {step['seconds']:>8.2f}s{detail}")
        if db.get("pre_restore"):
            typer.echo(f"previous database kept as {db['pre_restore']} (drop: restore --cleanup)")
        for name in db.get("leftovers", []):
            typer.echo(f"leftover of an interrupted restore: {name} (drop: restore --cleanup)")
    for part in ("redis", "objects"):
        if part in document:
            typer.echo(f"{part}: {document[part]}")


def run_cleanup(url: str, *, yes: bool, dry_run: bool, as_json: bool) -> None:
    names = task.cleanup_candidates(url)
    if not names or dry_run:
        document = {"database": pgtools.database_name(url), "found": names, "dropped": []}
        if as_json:
            emit_json(document)
        else:
            typer.echo("\n".join(names) if names else "no pre-restore copies or leftovers")
        return
    for name in names:
        say(f"  {name}")
    confirm(f"Drop these {len(names)} databases on {pgtools.describe(url)}?", yes=yes)
    report = task.cleanup(url, names, log=say)
    if as_json:
        emit_json(report.to_dict())
    else:
        typer.echo(f"dropped {len(report.dropped)}: {', '.join(report.dropped) or '-'}")
        for name, why in report.skipped.items():
            typer.echo(f"skipped {name}: {why}")


# --- the stack form -------------------------------------------------------------------------------


class StackForm:
    def __init__(
        self,
        stack: str,
        app: str,
        backup: str | None,
        component: str,
        where: str,
        redis_data_dir: Path | None,
        jobs: int,
    ) -> None:
        check_component(component)
        if where not in WHERE:
            raise UserInputError(f"--where {where!r}: use local or cluster")
        wants_redis = component in ("redis", "all")
        if where == "cluster" and redis_data_dir is not None:
            raise UserInputError(
                "--where cluster mounts Redis' volume in the Job itself: drop --redis-data-dir"
            )
        if wants_redis and where == "local" and redis_data_dir is None:
            raise redis_dir_missing(component)
        self.stack, self.app, self.where = stack, app, where
        self.key = None if backup in (None, "", "latest") else backup
        self.choice = Choice(component, jobs, redis_data_dir)

    @property
    def component(self) -> str:
        return self.choice.component

    def wants(self, part: str) -> bool:
        return self.choice.wants(part)


def database_url_from_ops(ops: dict[str, Any]) -> str:
    db = ops.get("database") or {}
    try:
        return make_conninfo(
            host=str(db["host"]),
            port=str(db["port"]),
            dbname=str(db["name"]),
            user=str(db["user"]),
            password=str(db.get("password") or ""),
        )
    except KeyError as exc:
        raise UserInputError(f"the app's ops output has no database.{exc.args[0]}") from None


@contextlib.contextmanager
def aws_endpoint(endpoint: str | None, region: str | None) -> Iterator[None]:
    """Point the standard AWS environment at one endpoint while a client is made (then undo)."""
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")}
    if endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
    if region:
        os.environ["AWS_DEFAULT_REGION"] = region
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def client_for(endpoint: str | None, region: str | None) -> Any:
    with aws_endpoint(endpoint, region):
        return s3_client()


def open_stack(name: str) -> StackOps:
    from automation.stack import pulumi_adapter as pulumi_stack

    return pulumi_stack.open_stack(name)


def run_stack_form(
    form: StackForm, *, cleanup: bool, yes: bool, dry_run: bool, as_json: bool
) -> None:
    stack = open_stack(form.stack)
    ops = app_ops(stack, form.app)
    if form.where == "cluster":
        if cleanup:
            raise UserInputError(
                "--cleanup runs where the database is reachable: drop --where cluster "
                "(or run `restore --cleanup --database-url ...` in an ops-runner pod)"
            )
        run_cluster_form(stack, form, ops, yes=yes, dry_run=dry_run, as_json=as_json)
        return
    url = database_url_from_ops(ops)
    if cleanup:
        run_cleanup(url, yes=yes, dry_run=dry_run, as_json=as_json)
        return
    backup = ops.get("backup") or {}
    client = client_for(backup.get("endpoint"), backup.get("region"))
    bucket, prefix = str(backup.get("bucket")), str(backup.get("prefix") or bf.DEFAULT_PREFIX)
    source = task.resolve_source(client, bucket, prefix=prefix, app=form.app, key=form.key)
    if not dry_run:
        confirm(
            f"Restore {form.component} of {form.app} on stack {stack.name} from "
            f"s3://{bucket}/{source.key}? ({form.app} goes into maintenance meanwhile)",
            yes=yes,
        )
    document = restore_components(stack, form, ops, url, client, source, dry_run=dry_run)
    print_report(document, as_json=as_json)


def restore_components(
    stack: StackOps,
    form: StackForm,
    ops: dict[str, Any],
    url: str,
    client: Any,
    source: task.BackupRef,
    *,
    dry_run: bool,
) -> dict[str, Any]:
    """Verify every requested part, then restore them all inside one maintenance window."""
    from automation.operations.maintenance import maintenance

    document: dict[str, Any] = {"stack": stack.name, "app": form.app, "component": form.component}
    objects = stack_objects(form, ops, client, source)
    with verified_parts(form.choice, url, client, source, objects, dry_run=dry_run) as parts:
        if dry_run:
            document.update(dry_run_document(parts))
            return document
        with maintenance(stack, form.app, say):
            apply_parts(document, parts)
    return document


def apply_parts(document: dict[str, Any], parts: Parts) -> None:
    """Database first, then Redis, then objects; a later part failing says what was done."""
    done: list[str] = []
    try:
        if parts.database is not None:
            document["database"] = parts.database.apply().to_dict()
            done.append(f"database (previous kept as {document['database']['pre_restore']})")
        if parts.redis is not None:
            document["redis"] = parts.redis.apply()
            done.append("redis")
        if parts.objects is not None:
            document["objects"] = parts.objects.apply()
    except OpsError as exc:
        if not done:
            raise
        raise TaskFailed(f"{exc} (already restored: {', '.join(done)})") from exc


def object_bucket(ops: dict[str, Any]) -> str | None:
    target = ops.get("objects") or {}
    return str(target["bucket"]) if target.get("bucket") else None


def no_object_bucket(app: str) -> UserInputError:
    return UserInputError(f"app {app!r} has no object bucket in its ops output: nothing to restore")


def stack_objects(
    form: StackForm, ops: dict[str, Any], client: Any, source: task.BackupRef
) -> ObjectsFactory:
    """The app's bucket from `ops.objects`; `all` on an app without one restores the rest."""
    bucket = object_bucket(ops)
    if not form.wants("objects") or (bucket is None and form.component == "all"):
        return lambda: None
    if bucket is None:
        raise no_object_bucket(form.app)
    endpoint, region = (
        (ops.get("objects") or {}).get("endpoint"),
        (ops.get("backup") or {}).get("region"),
    )
    return lambda: task.ObjectsRestore(
        client, source.bucket, source.manifest, client_for(endpoint, region), bucket, say
    )


def cluster_args(form: StackForm, ops: dict[str, Any]) -> list[str]:
    """The explicit form the Job runs: names only (the database URL and S3 settings come from
    the Job's environment; the program appends `--redis-data-dir` where it mounts Redis' data)."""
    backup = ops.get("backup") or {}
    prefix = str(backup.get("prefix") or bf.DEFAULT_PREFIX)
    args = ["--bucket", str(backup.get("bucket")), "--prefix", prefix, "--app", form.app]
    args += ["--component", form.component, "--jobs", str(form.choice.jobs), "--yes", "--json"]
    args += ["--key", form.key] if form.key else ["--latest"]
    bucket = object_bucket(ops)
    if form.wants("objects") and bucket is not None:
        args += ["--objects-bucket", bucket]
    elif form.component == "objects":
        raise no_object_bucket(form.app)
    return args


def describe_parts(form: StackForm) -> str:
    return "the database, Redis and objects" if form.component == "all" else {
        "db": "the database", "redis": "Redis", "objects": "the objects",
    }[form.component]  # fmt: skip


def run_cluster_form(
    stack: StackOps,
    form: StackForm,
    ops: dict[str, Any],
    *,
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """The restore as a Job in the cluster (the database and Redis are only reachable there).

    For Redis the request asks the program to stop Redis and mount its data volume in the Job
    (`mountRedis`); a dry run verifies without stopping anything. Removing the Job starts Redis
    again on the restored data, then maintenance is left."""
    from automation.operations.cluster_job import run_in_cluster
    from automation.operations.maintenance import maintenance

    args = cluster_args(form, ops)
    if dry_run:
        args.append("--dry-run")
        result = run_in_cluster(stack, form.app, "restore", args, say)
        print_report({"where": "cluster", **result}, as_json=as_json)
        return
    stops_redis = form.wants("redis")
    confirm(
        f"Restore {describe_parts(form)} of {form.app} on stack {stack.name} in the cluster from "
        f"{form.key or 'the latest backup'}? ({form.app} goes into maintenance meanwhile"
        f"{'; Redis is stopped until the Job is removed' if stops_redis else ''})",
        yes=yes,
    )
    with maintenance(stack, form.app, say):
        result = run_in_cluster(stack, form.app, "restore", args, say, mount_redis=stops_redis)
    print_report({"where": "cluster", **result}, as_json=as_json)


def register(app: typer.Typer) -> None:
    app.command("restore")(restore)
