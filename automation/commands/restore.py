"""`restore`: the runbooks' database/Redis/MinIO restores and their emergency procedures, safely.

Two forms:
- explicit (what a Job runs, and what tests use): `--database-url URL --bucket NAME
  (--key KEY | --latest)`, S3 from the standard AWS environment;
- stack: `--stack STACK --app APP [--backup latest|KEY] [--component db|redis|objects|all]`,
  connection details from the app's `ops` output; the app is put in maintenance around the
  restore (always left again), or with `--where cluster` the restore runs as a cluster Job.
`--cleanup` lists and drops `<db>_pre_restore_*` copies and leftover `<db>_restore_*` databases.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from psycopg.conninfo import make_conninfo

from automation import backup_format as bf
from automation.cli import confirm, emit_json, handle_errors, progress, stderr
from automation.errors import OpsError, TaskFailed, UserInputError
from automation.stack import StackOps, app_ops
from automation.tasks import pgtools
from automation.tasks import restore as task
from automation.tasks.s3io import s3_client

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
        int, typer.Option("--jobs", help="Parallel pg_restore jobs (custom format).", min=1)
    ] = 2,
    stack: Annotated[
        str | None, typer.Option("--stack", help="Stack form: read everything from its ops.")
    ] = None,
    backup: Annotated[
        str | None, typer.Option("--backup", help="Stack form: `latest` (default) or a KEY.")
    ] = None,
    component: Annotated[
        str, typer.Option("--component", help="Stack form: db, redis, objects or all.")
    ] = "db",
    where: Annotated[
        str, typer.Option("--where", help="Stack form: local, or cluster (a Job in the cluster).")
    ] = "local",
    redis_data_dir: Annotated[
        Path | None,
        typer.Option("--redis-data-dir", help="Stopped Redis' data directory (component redis)."),
    ] = None,
    cleanup: Annotated[
        bool, typer.Option("--cleanup", help="List and drop pre-restore copies and leftovers.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Verify the backup and show the plan; change nothing.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
) -> None:
    """Restore a backup into a new database, check it, and swap it in; the old one is kept.

    Verifies the whole backup first; a bad one is refused and nothing changes. A restore that
    fails or is killed at any point leaves the live database as it was.
    """
    if stack is not None:
        if database_url or key or latest:
            raise UserInputError(
                "--stack reads the database and bucket from the stack: drop --database-url/--key/"
                "--latest and name the backup with --backup latest|KEY"
            )
        if not app:
            raise UserInputError("--stack needs --app APP (e.g. --app qr)")
        options = StackForm(stack, app, backup, component, where, redis_data_dir, jobs)
        run_stack_form(options, cleanup=cleanup, yes=yes, dry_run=dry_run, as_json=json)
        return
    if database_url is None:
        raise UserInputError(
            "restore needs --stack STACK --app APP, or --database-url URL --bucket NAME "
            "(--key KEY | --latest)"
        )
    if cleanup:
        run_cleanup(database_url, yes=yes, dry_run=dry_run, as_json=json)
        return
    if not bucket:
        raise UserInputError("--bucket is required: the bucket holding the backups")
    if bool(key) == latest:
        raise UserInputError("name the backup with exactly one of --key KEY or --latest")
    client = s3_client()
    source = task.resolve_source(client, bucket, prefix=prefix, app=app, key=key)
    if not dry_run:
        ask_before_restore(database_url, source, yes)
    report = task.restore_database(
        database_url, client, source, jobs=jobs, dry_run=dry_run, log=say, bar=bar
    )
    print_report({"database": report.to_dict()}, as_json=json)


def ask_before_restore(url: str, source: task.BackupRef, yes: bool) -> None:
    live = pgtools.database_name(url)
    confirm(
        f"Replace database {pgtools.describe(url)} with s3://{source.bucket}/{source.key}? "
        f"(the current one is kept as {live}_pre_restore_<time>)",
        yes=yes,
    )


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
        if component not in COMPONENTS:
            raise UserInputError(f"--component {component!r}: use one of {', '.join(COMPONENTS)}")
        if where not in WHERE:
            raise UserInputError(f"--where {where!r}: use local or cluster")
        if where == "cluster" and component != "db":
            raise UserInputError(
                "--where cluster restores the database only: run --component redis/objects "
                "from a machine that reaches them, or without --where cluster"
            )
        wants_redis = component in ("redis", "all")
        if wants_redis and where == "local" and redis_data_dir is None:
            raise UserInputError(
                f"--component {component} needs --redis-data-dir DIR: the stopped Redis' data "
                "directory (its volume's mount point)"
            )
        self.stack, self.app, self.where, self.jobs = stack, app, where, jobs
        self.key = None if backup in (None, "", "latest") else backup
        self.component = component
        self.redis_data_dir = redis_data_dir

    def wants(self, part: str) -> bool:
        return self.component in (part, "all")


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
    from automation import pulumi_stack

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
    from automation.maintenance import maintenance

    document: dict[str, Any] = {"stack": stack.name, "app": form.app, "component": form.component}
    db_job = task.DatabaseRestore(
        url, client, source, jobs=form.jobs, dry_run=dry_run, log=say, bar=bar
    )
    redis: task.RedisRestore | None = None
    objects: task.ObjectsRestore | None = None
    with db_job:
        try:
            if form.wants("db"):
                db_job.verify()
            if form.wants("redis"):
                assert form.redis_data_dir is not None
                redis = task.RedisRestore(
                    client, source.bucket, source.manifest, form.redis_data_dir, say
                )
                redis.verify()
            if form.wants("objects"):
                objects = objects_restore(ops, client, source, form.app)
                objects.verify()
            if dry_run:
                say("dry run: the backup is good; nothing was changed")
                document["database"] = db_job.report.to_dict() if form.wants("db") else None
                return document
            with maintenance(stack, form.app, say):
                apply_parts(document, db_job if form.wants("db") else None, redis, objects)
        finally:
            if redis is not None:
                redis.discard()
    return document


def apply_parts(
    document: dict[str, Any],
    db_job: task.DatabaseRestore | None,
    redis: task.RedisRestore | None,
    objects: task.ObjectsRestore | None,
) -> None:
    """Database first, then Redis, then objects; a later part failing says what was done."""
    done: list[str] = []
    try:
        if db_job is not None:
            document["database"] = db_job.apply().to_dict()
            done.append(f"database (previous kept as {document['database']['pre_restore']})")
        if redis is not None:
            document["redis"] = redis.apply()
            done.append("redis")
        if objects is not None:
            document["objects"] = objects.apply()
    except OpsError as exc:
        if not done:
            raise
        raise TaskFailed(f"{exc} (already restored: {', '.join(done)})") from exc


def objects_restore(
    ops: dict[str, Any], client: Any, source: task.BackupRef, app: str
) -> task.ObjectsRestore:
    target = ops.get("objects")
    if not target or not target.get("bucket"):
        raise UserInputError(
            f"app {app!r} has no object bucket in its ops output: nothing to restore"
        )
    region = (ops.get("backup") or {}).get("region")
    target_client = client_for(target.get("endpoint"), region)
    return task.ObjectsRestore(
        client, source.bucket, source.manifest, target_client, str(target["bucket"]), say
    )


def run_cluster_form(
    stack: StackOps,
    form: StackForm,
    ops: dict[str, Any],
    *,
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """The restore as a Job in the cluster (the database is only reachable there); the Job gets
    the database URL and S3 settings from its environment, so only names go into the request."""
    from automation.cluster_job import run_in_cluster
    from automation.maintenance import maintenance

    backup = ops.get("backup") or {}
    prefix = str(backup.get("prefix") or bf.DEFAULT_PREFIX)
    args = ["--bucket", str(backup.get("bucket")), "--prefix", prefix]
    args += ["--app", form.app, "--jobs", str(form.jobs), "--yes", "--json"]
    args += ["--key", form.key] if form.key else ["--latest"]
    if dry_run:
        args.append("--dry-run")
        result = run_in_cluster(stack, form.app, "restore", args, say)
        print_report({"where": "cluster", **result}, as_json=as_json)
        return
    confirm(
        f"Restore the database of {form.app} on stack {stack.name} in the cluster from "
        f"{form.key or 'the latest backup'}? ({form.app} goes into maintenance meanwhile)",
        yes=yes,
    )
    with maintenance(stack, form.app, say):
        result = run_in_cluster(stack, form.app, "restore", args, say)
    print_report({"where": "cluster", **result}, as_json=as_json)


def register(app: typer.Typer) -> None:
    app.command("restore")(restore)
