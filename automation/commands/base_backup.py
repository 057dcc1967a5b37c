"""`base-backup`: a barman-cloud base backup of a PostgreSQL server whose PGDATA is on this
machine (the base-backup sidecar runs it on a schedule), then, with `--retention-days N`,
`barman-cloud-backup-delete --retention-policy "RECOVERY WINDOW OF N DAYS"`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from automation.console import emit_json, handle_errors, stderr
from automation.errors import UserInputError
from contract import backup_layout as bf


@handle_errors
def base_backup(
    database_url: Annotated[
        str,
        typer.Option(
            "--database-url",
            envvar="OPSPLANE_DATABASE_URL",
            help="The server, as a superuser (or env OPSPLANE_DATABASE_URL).",
        ),
    ],
    pgdata: Annotated[
        Path,
        typer.Option(
            "--pgdata", envvar="PGDATA", help="The server's data directory (must be local)."
        ),
    ],
    bucket: Annotated[
        str, typer.Option("--bucket", envvar="OPSPLANE_BACKUP_BUCKET", help="Backup bucket.")
    ],
    app: Annotated[str, typer.Option("--app", help="App name (qr, quickbite).")],
    prefix: Annotated[
        str, typer.Option("--prefix", envvar="OPSPLANE_BACKUP_PREFIX", help="Backup key prefix.")
    ] = bf.DEFAULT_PREFIX,
    retention_days: Annotated[
        int | None,
        typer.Option(
            "--retention-days", help="Then delete what a recovery window of N days no longer needs."
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
) -> None:
    """Take a base backup (barman-cloud-backup) for point-in-time recovery."""
    from automation.tasks.pitr.barman import Archive, apply_retention, take_base_backup
    from automation.tasks.pitr.state import data_directory

    archive = Archive(bucket, app, prefix)
    if retention_days is not None and retention_days < 1:
        raise UserInputError(f"--retention-days {retention_days}: use at least 1")
    served = data_directory(database_url)
    if not pgdata.is_dir() or os.path.realpath(pgdata) != os.path.realpath(served):
        raise UserInputError(
            f"--pgdata {pgdata}: the server's data directory is {served}; run base-backup where "
            "it is mounted (the database pod's base-backup sidecar)"
        )
    stderr.print(f"base backup of {app} into {archive.where()} ...", markup=False)
    backup_id = take_base_backup(database_url, archive)
    document: dict[str, object] = {"backup_id": backup_id, "archive": archive.where()}
    if retention_days is not None:
        apply_retention(archive, retention_days)
        document["retention"] = f"RECOVERY WINDOW OF {retention_days} DAYS"
    if json:
        emit_json(document)
    else:
        typer.echo(backup_id)


def register(app: typer.Typer) -> None:
    app.command("base-backup")(base_backup)
