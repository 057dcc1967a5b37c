"""`pitr`: point-in-time recovery with barman-cloud (see docs/pitr.md).

- `pitr archive-command --bucket B --app A [--prefix P]`: the `archive_command` for a
  self-managed PostgreSQL (the Pulumi program builds its setting with the same function);
- `pitr status --bucket B --app A [--prefix P] [--database-url URL] [--json]`: base backups,
  the recoverable window, the newest archived WAL and its age, and (with the server) whether
  archiving is failing. Exit 1 when something is wrong.
`restore --to-time TIME [--inspect]` lives with the restore command (commands/restore.py).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from automation.console import emit_json, handle_errors
from contract import backup_layout as bf

Bucket = Annotated[
    str, typer.Option("--bucket", envvar="OPSPLANE_BACKUP_BUCKET", help="Backup bucket.")
]
App = Annotated[str, typer.Option("--app", help="App name (qr, quickbite).")]
Prefix = Annotated[
    str, typer.Option("--prefix", envvar="OPSPLANE_BACKUP_PREFIX", help="Backup key prefix.")
]


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
