"""`backup`, `backups list|pin` and `verify-backup`: the backup CronJobs' and on-call's commands.

They take explicit endpoints (no stack needed): S3 from the standard AWS environment
(`AWS_ENDPOINT_URL`, credentials or the IRSA role), and connection URLs from flags or, in
CronJobs, from environment variables filled from Secrets (so passwords are never in a pod spec
or on a command line).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from automation.console import emit_json, handle_errors, progress, stderr
from automation.errors import OpsError, TaskFailed, UserInputError
from automation.lazy import lazy_function, lazy_module
from automation.tasks.io import urls
from automation.tasks.io.gz import DEFAULT_GZIP_LEVEL
from contract import backup_layout as bf

if TYPE_CHECKING:
    from automation.tasks.backup import BackupOptions, run_backup
    from automation.tasks.backups import list_backups, pin
    from automation.tasks.io import pgtools, s3io
    from automation.tasks.verify import VerifyReport, push_verify_result, verify_backup
else:  # psycopg and boto3 load when a command runs, not for --help
    BackupOptions = lazy_function("automation.tasks.backup", "BackupOptions")
    run_backup = lazy_function("automation.tasks.backup", "run_backup")
    list_backups = lazy_function("automation.tasks.backups", "list_backups")
    pin = lazy_function("automation.tasks.backups", "pin")
    pgtools = lazy_module("automation.tasks.io.pgtools")
    s3io = lazy_module("automation.tasks.io.s3io")
    push_verify_result = lazy_function("automation.tasks.verify", "push_verify_result")
    verify_backup = lazy_function("automation.tasks.verify", "verify_backup")

DatabaseUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="OPSPLANE_DATABASE_URL",
        help="The app's database, postgresql://user:pw@host:5432/db (or env).",
        show_default=False,
    ),
]
Bucket = Annotated[
    str,
    typer.Option(
        "--bucket", envvar="OPSPLANE_BACKUP_BUCKET", help="Backup bucket.", show_default=False
    ),
]
Prefix = Annotated[
    str, typer.Option("--prefix", envvar="OPSPLANE_BACKUP_PREFIX", help="Key prefix for backups.")
]
App = Annotated[
    str | None, typer.Option("--app", help="App name in keys (default: database name).")
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def say(line: str) -> None:
    """Progress and messages, printed literally (they carry S3 keys, which may hold brackets)."""
    stderr.print(line, markup=False, highlight=False, soft_wrap=True)


def say_styled(line: str) -> None:
    """A line with rich markup; every piece of data in it must go through `escape`."""
    stderr.print(line, highlight=False, soft_wrap=True)


@handle_errors
def backup(
    bucket: Bucket,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="OPSPLANE_DATABASE_URL",
            help="The app's database, postgresql://user:pw@host:5432/db (or env).",
            show_default=False,
        ),
    ] = None,
    prefix: Prefix = bf.DEFAULT_PREFIX,
    app: App = None,
    format: Annotated[str, typer.Option("--format", help="plain (SQL, gzip) or custom.")] = "plain",
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            envvar="OPSPLANE_REDIS_URL",
            help="redis://:password@host:6379 (or env OPSPLANE_REDIS_URL).",
            show_default=False,
        ),
    ] = None,
    objects_bucket: Annotated[
        str | None, typer.Option("--objects-bucket", help="The app's bucket to mirror.")
    ] = None,
    gzip_level: Annotated[
        int, typer.Option("--gzip-level", help="1 fastest .. 9 smallest (plain dumps, Redis).")
    ] = DEFAULT_GZIP_LEVEL,
    lifecycle: Annotated[
        bool,
        typer.Option(
            "--lifecycle", help="Apply the retention lifecycle to the bucket (dev/MinIO)."
        ),
    ] = False,
    retention_days: Annotated[
        int, typer.Option("--retention-days", help="Days a standard backup is kept.")
    ] = 30,
    pushgateway: Annotated[
        str | None, typer.Option("--pushgateway", help="Pushgateway URL for the success metric.")
    ] = None,
    json: Json = False,
) -> None:
    """Back up the database (and Redis, the app's bucket) as one run; prints the manifest key."""
    check_inputs(bucket, database_url, redis_url, objects_bucket, pushgateway)
    options = BackupOptions(
        bucket=bucket,
        database_url=database_url,
        prefix=prefix,
        app=app,
        format=format,
        redis_url=redis_url,
        objects_bucket=objects_bucket,
        gzip_level=gzip_level,
        apply_lifecycle=lifecycle,
        retention_days=retention_days,
        pushgateway=pushgateway,
    )
    result = run_backup(options, report=say, bar=progress)
    if json:
        emit_json(result.to_dict())
    else:
        typer.echo(result.manifest_key)


@handle_errors
def list_command(
    bucket: Bucket,
    prefix: Prefix = bf.DEFAULT_PREFIX,
    app: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    json: Json = False,
) -> None:
    """Backups, newest first: time, size, format, parts and verification state.

    `(latest)` marks the run `--latest` picks. A run without a manifest (killed, failed, or still
    running) is INCOMPLETE, with any upload it left open."""
    check_inputs(bucket)
    runs = list_backups(s3io.s3_client(), bucket, prefix, app)
    runs += base_backups(bucket, prefix, app)
    if json:
        emit_json([vars(r) for r in runs])
        return
    if not runs:
        say(f"no backups under s3://{bucket}/{prefix.strip('/')}/")
        return
    table = Table("time (UTC)", "app", "size", "format", "parts", "verified", "retention", "key")
    for r in runs:
        parts = r.parts + [f"{name} (upload open)" for name in r.open_uploads]
        table.add_row(
            r.run_id + (" (latest)" if r.latest else ""),
            r.app,
            human_size(r.size),
            (r.format or "-") + ("" if r.managed else " (by hand)"),
            ", ".join(parts) + ("" if r.complete else " [INCOMPLETE]"),
            f"{r.verified} {r.verified_at}" if r.verified else "never",
            r.retention or "-",
            r.key,
        )
    Console(width=200).print(table)


@handle_errors
def pin_command(
    key: Annotated[str, typer.Argument(help="A run's manifest key (or any of its parts).")],
    bucket: Bucket,
    unpin: Annotated[bool, typer.Option("--unpin", help="Back to standard retention.")] = False,
    json: Json = False,
) -> None:
    """Keep a backup past retention (retention=pinned), or --unpin it. A base backup (a key
    under .../pitr/APP/base/ID/) is kept with barman-cloud-backup-keep."""
    check_inputs(bucket)
    if pin_base_backup(bucket, key, unpin=unpin, json=json):
        return
    keys = pin(s3io.s3_client(), bucket, key, pinned=not unpin)
    value = bf.RETENTION_STANDARD if unpin else bf.RETENTION_PINNED
    if json:
        emit_json({"bucket": bucket, "retention": value, "keys": keys})
    else:
        say(f"{len(keys)} objects tagged {bf.TAG_RETENTION}={value}")
        typer.echo(key)


@handle_errors
def verify_command(
    database_url: DatabaseUrl,
    bucket: Bucket,
    prefix: Prefix = bf.DEFAULT_PREFIX,
    key: Annotated[str | None, typer.Option("--key", help="The backup (dump or manifest).")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest complete backup.")] = False,
    app: App = None,
    pushgateway: Annotated[
        str | None, typer.Option("--pushgateway", help="Pushgateway URL for the result metric.")
    ] = None,
    json: Json = False,
) -> None:
    """Restore drill: checksum, restore into a throwaway database, check, drop, tag the result."""
    if (key is None) == (not latest):
        raise UserInputError("pass exactly one of --key KEY or --latest")
    check_inputs(bucket, database_url, pushgateway=pushgateway)
    try:
        report = verify_backup(
            database_url, bucket, prefix, key, app, report_progress=say, bar=progress
        )
    except OpsError as failure:
        if pushgateway:
            try:
                push_verify_result(pushgateway, app or pgtools.database_name(database_url), False)
            except OpsError as push:  # the drill's own failure is the error to show
                raise TaskFailed(
                    f"{failure} (and the failure metric was not pushed: {push})"
                ) from None
        raise
    if pushgateway:
        push_verify_result(
            pushgateway, report.app or pgtools.database_name(database_url), report.ok
        )
    if json:
        emit_json(report.to_dict())
    else:
        print_report(report)
    if not report.ok:
        failed = next((c for c in report.checks if not c.ok), None)
        reason = f"{failed.name}: {failed.detail}" if failed else "no check ran"
        raise TaskFailed(f"backup s3://{bucket}/{report.key} did NOT verify: {reason}")


def check_inputs(
    bucket: str,
    database_url: str | None = None,
    redis_url: str | None = None,
    objects_bucket: str | None = None,
    pushgateway: str | None = None,
) -> None:
    """Every URL, bucket name and the S3 endpoint, checked before any work (bad one: exit 2)."""
    urls.bucket_name(bucket)
    if database_url is not None:
        pgtools.parse_url(database_url)
    if redis_url is not None:
        urls.redis_url(redis_url)
    if objects_bucket is not None:
        urls.bucket_name(objects_bucket, "--objects-bucket")
    if pushgateway is not None:
        urls.http_url(pushgateway, "--pushgateway", "http://pushgateway:9091")
    urls.s3_endpoint()


def print_report(report: VerifyReport) -> None:
    say(f"backup  s3://{report.bucket}/{report.key} ({report.format})")
    for check in report.checks:
        mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
        say_styled(f"  {mark} {escape(check.name)}: {escape(str(check.detail))}")
    for item in report.not_checked:
        say_styled(f"  [yellow]not checked[/] {escape(item)}")
    if report.restore_seconds is not None:
        say(f"restore time {report.restore_seconds:.2f}s into {report.database} (dropped)")
    typer.echo(f"{'VERIFIED' if report.ok else 'FAILED'} {report.key}")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def base_backups(bucket: str, prefix: str, app: str | None) -> list[Any]:
    """Point-in-time recovery base backups, listed beside the logical backups."""
    from automation.tasks.pitr.listing import base_backup_summaries

    return base_backup_summaries(s3io.s3_client(), bucket, prefix, app)


def pin_base_backup(bucket: str, key: str, *, unpin: bool, json: bool) -> bool:
    """`backups pin` of a base backup (barman-cloud-backup-keep); False for any other key."""
    from automation.tasks.pitr.listing import pin_base

    parsed = pin_base(bucket, key, pinned=not unpin)
    if parsed is None:
        return False
    state = "released (back to the retention window)" if unpin else "kept (barman keep: full)"
    if json:
        emit_json({"bucket": bucket, "base_backup": parsed[2], "app": parsed[1], "kept": not unpin})
    else:
        say(f"base backup {parsed[2]} of {parsed[1]} {state}")
        typer.echo(key)
    return True


# the URLs come from OPSPLANE_DATABASE_URL / OPSPLANE_REDIS_URL: passwords stay off the line
BACKUP_EXAMPLES = """Examples:

  python -m automation backup --bucket qr-backups --app qr
  python -m automation backup --bucket qr-backups --app qr --format custom"""
VERIFY_EXAMPLES = """Examples:

  python -m automation verify-backup --bucket qr-backups --app qr --latest"""
LIST_EXAMPLES = """Examples:

  python -m automation backups list --bucket qr-backups --app qr"""
PIN_EXAMPLES = """Examples:

  python -m automation backups pin qr/20260101T020000Z/ --bucket qr-backups"""


def register(app: typer.Typer) -> None:
    app.command("backup", epilog=BACKUP_EXAMPLES)(backup)
    app.command("verify-backup", epilog=VERIFY_EXAMPLES)(verify_command)
    group = typer.Typer(help="List and pin backups.", no_args_is_help=True)
    group.command("list", epilog=LIST_EXAMPLES)(list_command)
    group.command("pin", epilog=PIN_EXAMPLES)(pin_command)
    app.add_typer(group, name="backups")
