"""`pitr`: point-in-time recovery with barman-cloud (see docs/pitr.md).

- `pitr archive-command --bucket B --app A [--prefix P]`: the `archive_command` for a
  self-managed PostgreSQL (the Pulumi program builds its setting with the same function);
- `pitr status --bucket B --app A [--prefix P] [--database-url URL] [--json]`: base backups,
  the recoverable window, the newest archived WAL and its age, and (with the server) whether
  archiving is failing. Exit 1 when something is wrong.
`restore --to-time TIME [--inspect]` (commands/restore.py) calls `run_to_time` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from automation.console import confirm, emit_json, handle_errors, print_database_steps, stderr
from automation.errors import UserInputError
from contract import backup_layout as bf

Bucket = Annotated[
    str, typer.Option("--bucket", envvar="OPSPLANE_BACKUP_BUCKET", help="Backup bucket.")
]
App = Annotated[str, typer.Option("--app", help="App name (qr, quickbite).")]
Prefix = Annotated[
    str, typer.Option("--prefix", envvar="OPSPLANE_BACKUP_PREFIX", help="Backup key prefix.")
]


def say(line: str) -> None:
    stderr.print(line, markup=False, highlight=False)


@handle_errors
def archive_command(bucket: Bucket, app: App, prefix: Prefix = bf.DEFAULT_PREFIX) -> None:
    """Print the archive_command (one line, with %p) that ships WAL to the app's archive."""
    from automation.tasks.pitr.barman import Archive
    from contract import wal_layout as wl

    archive = Archive(bucket, app, prefix)
    typer.echo(wl.archive_command(archive.bucket, archive.app, archive.prefix))


@handle_errors
def status_command(
    bucket: Bucket,
    app: App,
    prefix: Prefix = bf.DEFAULT_PREFIX,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="OPSPLANE_DATABASE_URL",
            help="The archiving server (reads pg_stat_archiver: is archiving failing?).",
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
) -> None:
    """Base backups, the recoverable window, the newest archived WAL and its age."""
    from automation.tasks.pitr.state import pitr_state

    state = pitr_state(bucket, app, prefix, database_url=database_url)
    if json:
        emit_json(state.to_json())
    else:
        print_state(state.to_json())
    if not state.ok:
        raise typer.Exit(1)


def print_state(doc: dict[str, Any]) -> None:
    typer.echo(f"archive        {doc['archive']}")
    for b in doc["base_backups"]:
        typer.echo(
            f"base backup    {b['backup_id']}  {b['status']:<8} end {b['end']}  {b['size']:,} bytes"
        )
    if not doc["base_backups"]:
        typer.echo("base backup    none")
    window = doc["window"]
    typer.echo(f"window         {window['start'] or '-'} .. {window['end'] or '-'}")
    wal = doc["newest_wal"]
    age = f" ({wal['age_seconds']:.0f}s ago)" if wal["age_seconds"] is not None else ""
    typer.echo(f"newest WAL     {wal['segment'] or '-'} archived {wal['archived_at'] or '-'}{age}")
    archiver = doc.get("archiver")
    if archiver is not None:
        state = "FAILING" if doc["archiving_failing"] else "ok"
        typer.echo(
            f"archiving      {state}: {archiver['archived_count']} archived, "
            f"{archiver['failed_count']} failed, "
            f"{archiver['waiting_segments']} waiting on the server"
        )
    for problem in doc["problems"]:
        typer.echo(f"PROBLEM        {problem}")


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
    from automation.tasks.io import pgtools

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
    from automation.commands.status import finish_operation
    from automation.operations import pitr as operation
    from automation.stack import open_stack
    from automation.stack.protocol import app_ops, database_url

    if not request.app:
        raise UserInputError("--stack needs --app APP (e.g. --app qr)")
    if request.database_url or request.bucket:
        raise UserInputError("--stack reads the database and bucket from the stack: drop them")
    if where not in ("local", "cluster"):
        raise UserInputError(f"--where {where!r}: use local or cluster")
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
        url = database_url(app_ops(stack, request.app))
        document = operation.restore_to_time_local(
            stack, request.app, request.to_time, database_url=url, inspect=request.inspect,
            work_dir=request.work_dir, jobs=request.jobs, log=say, confirm=ask,
        )  # fmt: skip

        def print_text() -> None:
            print_inspect(document) if request.inspect else print_into_live(document)

    finish_operation(
        stack, request.app, "restore", document, as_json=as_json, print_text=print_text,
        where=where, verify=verify and not request.inspect,  # an inspect leaves live as it was
    )  # fmt: skip


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


ARCHIVE_EXAMPLES = """Examples:

  python -m automation pitr archive-command --bucket B --app qr"""


STATUS_EXAMPLES = """Examples:

  python -m automation pitr status --bucket B --app qr
  python -m automation pitr status --bucket B --app qr --database-url URL --json"""


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Point-in-time recovery: WAL archive and base backups.", no_args_is_help=True
    )
    group.command("archive-command", epilog=ARCHIVE_EXAMPLES)(archive_command)
    group.command("status", epilog=STATUS_EXAMPLES)(status_command)
    app.add_typer(group, name="pitr")
