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
`--cleanup` lists and drops `<db>_pre_restore_*` copies and the leftovers of interrupted restores
and drills (`<db>_restore_*`, `<db>_verify_*`; `pgswap.leftovers`).

The target must exist (`--create` for a fresh server) and is never a template or the maintenance
database; the confirmation says whether the database is replaced or created.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from automation.console import (
    bar,
    confirm,
    emit_json,
    handle_errors,
    print_database_steps,
    stderr,
)
from automation.errors import UserInputError
from automation.lazy import lazy_module
from automation.stack.protocol import StackOps, app_ops, database_url
from automation.tasks.io import urls
from contract import backup_layout as bf

if TYPE_CHECKING:
    from automation.operations import restore as op
    from automation.tasks import restore as task
    from automation.tasks.io import pgtools, s3io
else:  # psycopg and boto3 load when a restore runs, not for --help
    op = lazy_module("automation.operations.restore")
    task = lazy_module("automation.tasks.restore")
    pgtools = lazy_module("automation.tasks.io.pgtools")
    s3io = lazy_module("automation.tasks.io.s3io")

STACK = "Stack form (--stack S --app A)"
EXPLICIT = "Explicit form (what a Job runs)"


def say(line: str) -> None:
    stderr.print(line, markup=False, highlight=False)


@handle_errors
def restore(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            rich_help_panel=EXPLICIT,
            envvar="OPSPLANE_DATABASE_URL",
            help="The live database, postgresql://user:pw@host:5432/db (or the env var, "
            "which keeps the password off the command line). In the stack form of --to-time: "
            "live as reachable from here, e.g. through kubectl port-forward (docs/pitr.md).",
            show_default=False,
        ),
    ] = None,
    bucket: Annotated[
        str | None,
        typer.Option(
            "--bucket",
            rich_help_panel=EXPLICIT,
            envvar="OPSPLANE_BACKUP_BUCKET",
            help="Backup bucket.",
        ),
    ] = None,
    prefix: Annotated[
        str,
        typer.Option(
            "--prefix",
            rich_help_panel=EXPLICIT,
            envvar="OPSPLANE_BACKUP_PREFIX",
            help="Backup key prefix.",
        ),
    ] = bf.DEFAULT_PREFIX,
    app: Annotated[str | None, typer.Option("--app", help="App name (qr, quickbite).")] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            rich_help_panel=EXPLICIT,
            help="A dump, a run folder or a manifest key (see `backups list`).",
        ),
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", rich_help_panel=EXPLICIT, help="The newest complete run.")
    ] = False,
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
        str | None,
        typer.Option(
            "--stack", rich_help_panel=STACK, help="Stack form: read everything from its ops."
        ),
    ] = None,
    backup: Annotated[
        str | None,
        typer.Option(
            "--backup", rich_help_panel=STACK, help="Stack form: `latest` (default) or a KEY."
        ),
    ] = None,
    component: Annotated[
        str, typer.Option("--component", help="db, redis, objects or all (database first).")
    ] = "db",
    where: Annotated[
        str,
        typer.Option(
            "--where",
            rich_help_panel=STACK,
            help="Stack form: local, or cluster (a Job in the cluster).",
        ),
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
            rich_help_panel=EXPLICIT,
            help="Explicit form: the app's bucket to restore objects into (component objects/all).",
        ),
    ] = None,
    cleanup: Annotated[
        bool, typer.Option("--cleanup", help="List and drop pre-restore copies and leftovers.")
    ] = False,
    create: Annotated[
        bool,
        typer.Option(
            "--create", help="The database does not exist yet (a fresh server): create it."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Verify the backup and show the plan; change nothing.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="End by running the app's status checks (FAIL: exit 1).",
            rich_help_panel=STACK,
        ),
    ] = True,
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
    check_inputs(database_url, where)
    if to_time is not None or inspect:
        run_point_in_time(
            PointInTime(database_url, bucket, app, prefix, to_time, inspect, work_dir, jobs),
            stack=stack, where=where,
            conflicting=bool(key or latest or backup or cleanup or dry_run),
            yes=yes, as_json=json, verify=verify,
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
        options = op.StackForm(stack, app, backup, component, where, redis_data_dir, jobs, create)
        run_stack_form(
            options, cleanup=cleanup, yes=yes, dry_run=dry_run, as_json=json, verify=verify
        )
        return
    stack_form_only(where=where)
    if cleanup:
        if database_url is None:
            raise UserInputError("--cleanup needs --database-url URL (or --stack STACK --app APP)")
        run_cleanup(database_url, yes=yes, dry_run=dry_run, as_json=json)
        return
    choice = op.ExplicitChoice.checked(
        component, jobs, redis_data_dir, objects_bucket, dry_run, create=create
    )
    if choice.wants("db") and database_url is None:
        raise UserInputError(
            "restore needs --stack STACK --app APP, or --database-url URL --bucket NAME "
            "(--key KEY | --latest)"
        )
    if not bucket:
        raise UserInputError("--bucket is required: the bucket holding the backups")
    if bool(key) == latest:
        raise UserInputError("name the backup with exactly one of --key KEY or --latest")
    check_buckets(bucket, objects_bucket)
    case = op.target_case(database_url, create) if choice.wants("db") else ""
    client = s3io.s3_client()
    op.check_objects_target(client, choice)
    source = task.resolve_source(client, bucket, prefix=prefix, app=app, key=key)
    objects = op.explicit_objects(choice, client, source, say)
    if not dry_run:
        ask_before_restore(choice, database_url, source, yes, case)
    document: dict[str, Any] = {"component": choice.component}
    op.restore_parts(
        document, choice, database_url, client, source, objects, dry_run=dry_run, log=say, bar=bar
    )
    print_report(document, as_json=json)


def ask_before_restore(
    choice: op.ExplicitChoice, url: str | None, source: task.BackupRef, yes: bool, case: str
) -> None:
    what = []
    if choice.wants("db") and url is not None:
        what.append(case)
    if choice.wants("redis"):
        what.append(f"Redis data in {choice.redis_data_dir} (previous files kept)")
    if choice.objects_bucket and choice.wants("objects"):
        what.append(f"objects in bucket {choice.objects_bucket}")
    confirm(f"Restore: {'; '.join(what)}, from s3://{source.bucket}/{source.key}?", yes=yes)


def check_inputs(url: str | None, where: str) -> None:
    """The URL, --where and the S3 endpoint, before any work (a bad one: exit 2)."""
    if where not in ("local", "cluster"):
        raise UserInputError(f"--where {where!r}: use local or cluster (stack form only)")
    if url is not None:
        pgtools.parse_url(url)
    urls.s3_endpoint()


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
    as_json: bool, verify: bool = True,
) -> None:  # fmt: skip
    """`restore --to-time`: `run_to_time` (explicit form) or `run_stack_to_time` (stack form)."""
    if request.to_time is None:
        raise UserInputError("--inspect goes with --to-time TIME (ISO 8601 with a zone, or latest)")
    if conflicting:
        raise UserInputError(
            "--to-time recovers from the WAL archive: "
            "drop --key/--latest/--backup/--cleanup/--dry-run"
        )
    if stack is not None:
        run_stack_to_time(stack, request, where=where, yes=yes, as_json=as_json, verify=verify)
        return
    run_to_time(
        database_url=request.database_url, bucket=request.bucket, app=request.app,
        prefix=request.prefix, to_time=request.to_time, inspect=request.inspect,
        work_dir=request.work_dir, jobs=request.jobs, yes=yes, as_json=as_json,
    )  # fmt: skip


def run_to_time(
    *,
    database_url: str | None,
    bucket: str | None,
    app: str | None,
    prefix: str,
    to_time: str,
    inspect: bool,
    work_dir: Path | None,
    jobs: int,
    yes: bool,
    as_json: bool,
) -> None:
    """The explicit form of `restore --to-time` (see automation/tasks/pitr/run.py)."""
    from automation.tasks.pitr.barman import Archive
    from automation.tasks.pitr.run import PitrRestore

    if not database_url or not bucket or not app:
        raise UserInputError(
            "restore --to-time needs --database-url URL --bucket NAME --app APP "
            "(or --stack STACK --app APP)"
        )
    job = PitrRestore(database_url, Archive(bucket, app, prefix), to_time, work_dir, jobs, say)
    plan = job.check()
    if inspect:
        document = job.inspect()
        emit_json(document) if as_json else print_inspect(document)
        return
    live = pgtools.database_name(database_url)
    job.guard()  # the plain restore's target checks and claim, before anything changes
    confirm(
        f"Replace database {pgtools.describe(database_url)} with its state at "
        f"{plan.target_label} (the current one is kept as {live}_pre_restore_<time>)?",
        yes=yes,
    )
    document = job.into_live()
    if as_json:
        emit_json(document)
    else:
        print_into_live(document)


def run_stack_to_time(
    stack_name: str, request: Any, *, where: str, yes: bool, as_json: bool, verify: bool = True
) -> None:
    """`restore --stack S --app A --to-time TIME [--inspect] [--where cluster]`; a recovery into
    live ends with the app's status checks, as every restore does (`--no-verify` skips them)."""
    from automation.commands.common import finish_operation
    from automation.operations import pitr as operation

    if not request.app:
        raise UserInputError("--stack needs --app APP (e.g. --app qr)")
    if request.bucket:
        raise UserInputError("--stack reads the bucket from the stack: drop --bucket")
    if where not in ("local", "cluster"):
        raise UserInputError(f"--where {where!r}: use local or cluster")
    if request.database_url and where == "cluster":
        raise UserInputError(
            "--database-url names the live database as reachable from here (e.g. through "
            "`kubectl port-forward`): drop it with --where cluster (the Job reads the stack's)"
        )
    stack = open_stack(stack_name)

    def ask(question: str) -> None:
        confirm(question, yes=yes)

    if where == "cluster":
        document = operation.restore_to_time_cluster(
            stack, request.app, request.to_time, inspect=request.inspect, jobs=request.jobs,
            log=say, confirm=ask,
        )  # fmt: skip

        def print_text() -> None:
            typer.echo(f"restored in the cluster: {document}")
    else:
        # the live database from the stack, or as reachable from here (a port-forward to prod's)
        url = request.database_url or database_url(app_ops(stack, request.app))
        document = operation.restore_to_time_local(
            stack, request.app, request.to_time, database_url=url, inspect=request.inspect,
            work_dir=request.work_dir, jobs=request.jobs, log=say, confirm=ask,
        )  # fmt: skip

        def print_text() -> None:
            print_inspect(document) if request.inspect else print_into_live(document)

    finish_operation(
        stack, request.app, "restore", document, as_json=as_json, print_text=print_text,
        # through a port-forward the app's own names resolve only in the cluster: check from
        # where they do (a Job on Kubernetes), as operations do when not told
        where=None if request.database_url else where,
        verify=verify and not request.inspect,  # an inspect leaves live as it was
    )  # fmt: skip


def stack_form_only(*, where: str) -> None:
    if where != "local":
        raise UserInputError(f"--where {where}: needs the stack form (--stack STACK --app APP)")


def check_buckets(bucket: str, objects: str | None) -> None:
    urls.bucket_name(bucket)
    if objects:
        urls.bucket_name(objects, "--objects-bucket")


def print_report(document: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        emit_json(document)
        return
    db = document.get("database")
    if db:
        verb = "would restore" if db["dry_run"] else "restored"
        typer.echo(f"{verb} {db['database']} from {db['source']} ({db['format']})")
        print_database_steps(db)
        for name in db.get("leftovers", []):
            typer.echo(f"leftover of {task.interrupted(name)}: {name} (drop: restore --cleanup)")
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


# --- `--to-time` (point-in-time recovery; see docs/pitr.md) -------------------------------------


def print_inspect(doc: dict[str, Any]) -> None:
    typer.echo(
        f"recovered to {doc['target']} (asked {doc['asked']}), live untouched; connect with:"
    )
    typer.echo(doc["url"])
    say(f"work dir {doc['work_dir']}; another --to-time reuses it; stop: {doc['stop']}")
    say("to make this the live database: run the same command without --inspect (no new recovery)")


def print_into_live(doc: dict[str, Any]) -> None:
    db = doc["database"]
    typer.echo(f"restored {db['database']} to {doc['asked']} from {db['source']}")
    print_database_steps(db)


# --- the stack form (orchestration in automation/operations/restore.py) ---------------------------


def open_stack(name: str) -> StackOps:
    from automation.stack import pulumi_adapter as pulumi_stack

    return pulumi_stack.open_stack(name)


def run_stack_form(
    form: op.StackForm,
    *,
    cleanup: bool,
    yes: bool,
    dry_run: bool,
    as_json: bool,
    verify: bool = True,
) -> None:
    stack = open_stack(form.stack)
    ops = app_ops(stack, form.app)
    if form.where == "cluster":
        if cleanup:
            raise UserInputError(
                "--cleanup runs where the database is reachable: drop --where cluster "
                "(or run `restore --cleanup --database-url ...` in an ops-runner pod)"
            )
        run_cluster_form(stack, form, ops, yes=yes, dry_run=dry_run, as_json=as_json, verify=verify)
        return
    url = database_url(ops)
    if cleanup:
        run_cleanup(url, yes=yes, dry_run=dry_run, as_json=as_json)
        return
    found = op.stack_source(form, ops)
    case = f"; {op.target_case(url, form.choice.create)}" if form.wants("db") else ""
    if not dry_run:
        confirm(
            f"Restore {form.component} of {form.app} on stack {stack.name} from "
            f"s3://{found.bucket}/{found.source.key}{case}? ({form.app} goes into maintenance "
            "meanwhile)",
            yes=yes,
        )
    document = op.restore_components(
        stack, form, ops, url, found.client, found.source, dry_run=dry_run, log=say, bar=bar
    )
    if dry_run:
        print_report(document, as_json=as_json)
        return
    finish_verified(stack, form, document, as_json=as_json, verify=verify)


def finish_verified(
    stack: StackOps, form: op.StackForm, document: dict[str, Any], *, as_json: bool, verify: bool
) -> None:
    """The restore's report, then the app's status checks (issue 13: a FAIL exits 1)."""
    from automation.commands.common import finish_operation

    finish_operation(
        stack,
        form.app,
        "restore",
        document,
        as_json=as_json,
        print_text=lambda: print_report(document, as_json=False),
        where=form.where,
        verify=verify,
    )


def describe_parts(form: op.StackForm) -> str:
    return "the database, Redis and objects" if form.component == "all" else {
        "db": "the database", "redis": "Redis", "objects": "the objects",
    }[form.component]  # fmt: skip


def run_cluster_form(
    stack: StackOps,
    form: op.StackForm,
    ops: dict[str, Any],
    *,
    yes: bool,
    dry_run: bool,
    as_json: bool,
    verify: bool = True,
) -> None:
    """The restore as a cluster Job (`op.cluster_restore`): asked, then reported and verified."""

    def ask() -> None:
        confirm(
            f"Restore {describe_parts(form)} of {form.app} on stack {stack.name} in the cluster "
            f"from {form.key or 'the latest backup'}? ({form.app} goes into maintenance meanwhile"
            f"{'; Redis is stopped until the Job is removed' if form.wants('redis') else ''})",
            yes=yes,
        )

    document = op.cluster_restore(stack, form, ops, dry_run=dry_run, ask=ask, log=say)
    if dry_run:
        print_report(document, as_json=as_json)
        return
    finish_verified(stack, form, document, as_json=as_json, verify=verify)


EXAMPLES = """Examples:

  python -m automation restore --stack prod --app qr --dry-run
  python -m automation restore --stack prod --app qr --component all
  python -m automation restore --bucket qr-backups --app qr --latest
  python -m automation restore --cleanup --stack prod --app qr"""


def register(app: typer.Typer) -> None:
    app.command("restore", epilog=EXAMPLES)(restore)
