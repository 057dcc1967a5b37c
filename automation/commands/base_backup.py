"""`base-backup`: a barman-cloud base backup of a PostgreSQL server whose PGDATA is on this
machine, then, with `--retention-days N`, `barman-cloud-backup-delete --retention-policy
"RECOVERY WINDOW OF N DAYS"`. With `--schedule CRON` it keeps running and backs up each time the
schedule fires (the database pod's base-backup sidecar runs it so)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from automation.console import emit_json, handle_errors, stderr
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
        typer.Option("--pgdata", envvar="PGDATA", help="The server's data directory (local)."),
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
    schedule: Annotated[
        str | None,
        typer.Option("--schedule", help="Keep running; back up whenever this cron fires (UTC)."),
    ] = None,
    pushgateway: Annotated[
        str | None,
        typer.Option("--pushgateway", help="Push the success time (the BaseBackupMissing alert)."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
) -> None:
    """Take a base backup (barman-cloud-backup) for point-in-time recovery."""
    from automation.tasks.pitr.barman import Archive
    from automation.tasks.pitr.basebackup import BaseBackupJob, run_on_schedule
    from automation.tasks.pitr.schedule import parse

    if schedule is not None:
        parse(schedule)
    job = BaseBackupJob(
        database_url, pgdata, Archive(bucket, app, prefix), retention_days, pushgateway
    )
    job.check()
    if schedule is not None:
        run_on_schedule(job, schedule, lambda line: stderr.print(line, markup=False))
        return
    stderr.print(f"base backup of {app} into {job.archive.where()} ...", markup=False)
    document = job.run()
    if json:
        emit_json(document)
    else:
        typer.echo(document["backup_id"])


EXAMPLES = """Examples:

  python -m automation base-backup --pgdata DIR --bucket B --app qr
  python -m automation base-backup --pgdata DIR --bucket B --app qr --json"""


def register(app: typer.Typer) -> None:
    app.command("base-backup", epilog=EXAMPLES)(base_backup)
