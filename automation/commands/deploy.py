"""`deploy` and `rollback`: ship new images safely, and go back to an earlier deploy.

    deploy --stack S --app A --image SERVICE=IMAGE[:TAG|@DIGEST] ... [--yes] [--force]
           [--dry-run] [--json] [--restore-data] [--soak SECONDS] [--alertmanager-url URL]
    deploy --stack S --app A --history
    rollback --stack S --app A [--to N] [--restore-data] [--yes] [--dry-run] [--json]

The steps (automation/operations/deploy.py, docs/deploy.md): preflight (`status` must not FAIL),
a fresh backup as the rollback point, the images in config + `up` (migration Job first), a
watched soak, and on failure a rollback only when the schema head did not move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from automation.console import confirm, emit_json, handle_errors
from automation.console import print_progress as say  # the steps' lines, dim on stderr
from automation.errors import TaskFailed, UserInputError
from automation.lazy import lazy_module
from automation.stack.protocol import StackOps, app_ops, database_url

if TYPE_CHECKING:
    from automation.operations import deploy as op
else:  # the deploy engine (and what it imports) loads when a deploy runs, not for --help
    op = lazy_module("automation.operations.deploy")

StackOpt = Annotated[str, typer.Option("--stack", help="Pulumi stack, e.g. dev or prod.")]
AppOpt = Annotated[str, typer.Option("--app", help="App name (qr, quickbite).")]
YesOpt = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]
RestoreOpt = Annotated[
    bool,
    typer.Option(
        "--restore-data",
        help="If going back needs an older schema: restore the rollback point's database "
        "(writes since then are lost) inside maintenance, then the previous images.",
    ),
]
SoakOpt = Annotated[
    float | None,
    typer.Option("--soak", help="Seconds the new pods must stay healthy (default: config).", min=0),
]
AlertmanagerOpt = Annotated[
    str | None,
    typer.Option(
        "--alertmanager-url",
        help="Alertmanager to ask whether the error-rate alert fires during the soak.",
    ),
]
WhereOpt = Annotated[
    str | None,
    typer.Option(
        "--where",
        help="Where the schema head, backup and restore run: local (database reachable from "
        "here) or cluster (as Jobs). Default: cluster on a kubernetes stack, else local.",
    ),
]
ImageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--image", help="SERVICE=IMAGE, by tag or @sha256 digest; repeat for several services."
    ),
]


def open_stack(name: str) -> StackOps:
    from automation.stack import pulumi_adapter as pulumi_stack

    return pulumi_stack.open_stack(name)


# --- the real probes ----------------------------------------------------------------------------


def status_probe(stack: StackOps, app: str, where: str) -> Any:
    """The app's `status` (stack form): what preflight and the soak check, run where the app's
    addresses resolve (`cluster`: as a Job, like `status --where cluster`)."""
    from automation.operations.status import app_status, cluster_status

    if where == "cluster":
        return lambda: cluster_status(stack, app)
    return lambda: app_status(stack, app)


def error_rate_probe(alertmanager_url: str | None, app: str) -> Any:
    """Firing error-rate alerts of the app in Alertmanager (none asked: nothing to check)."""
    if not alertmanager_url:
        return lambda: []
    if not alertmanager_url.startswith(("http://", "https://")):
        raise UserInputError(
            f"--alertmanager-url {alertmanager_url!r}: use an http(s) URL, e.g. "
            "http://alertmanager:9093"
        )
    from automation.tasks.checks import alerts

    url = alertmanager_url.rstrip("/") + "/api/v2/alerts?active=true&silenced=false"

    def firing() -> list[str]:
        try:
            fetched = alerts.fetch(url, 5.0)
        except (OSError, ValueError) as exc:  # the soak counts it as a failing check
            why = " ".join(str(getattr(exc, "reason", None) or exc).split())[:200]
            raise TaskFailed(f"Alertmanager {alertmanager_url} did not answer: {why}") from None
        found = [a for a in fetched if alerts.ours(a, app)]
        names = [(a.get("labels") or {}).get("alertname") for a in found]
        return [n for n in names if n == op.ERROR_RATE_ALERT]

    return firing


def real_probes(
    stack: StackOps, app: str, alertmanager_url: str | None, where: str | None = None
) -> op.Probes:
    """Status, schema head, backup and restore wired to the app's `ops` output."""
    from automation.operations.status import where_checks_run
    from automation.tasks.schema import read_schema_head

    ops = app_ops(stack, app)
    if where not in (None, "local", "cluster"):
        raise UserInputError(f"--where {where!r}: use local or cluster")
    where = where or where_checks_run(ops)
    if where == "cluster":
        data = ClusterData(stack, app, ops)
        return op.Probes(
            health=status_probe(stack, app, where),
            schema_head=data.head,
            backup=data.point,
            restore=data.restore,
            firing=error_rate_probe(alertmanager_url, app),
        )
    url = database_url(ops)
    table = (op.deploy_ops(stack, app).get("migration") or {}).get("table")
    return op.Probes(
        health=status_probe(stack, app, where),
        schema_head=lambda: read_schema_head(url, table) if table else None,
        backup=lambda: take_backup(ops, url, app),
        restore=lambda point: restore_database(ops, url, app, point),
        firing=error_rate_probe(alertmanager_url, app),
    )


def take_backup(ops: dict[str, Any], url: str, app: str) -> str:
    """A fresh database backup (custom format) into the app's backup bucket; its manifest key."""
    from automation.operations.restore import backup_client
    from automation.tasks.backup import BackupOptions, run_backup

    backup = ops.get("backup") or {}
    options = BackupOptions(
        bucket=str(backup.get("bucket")),
        database_url=url,
        prefix=str(backup.get("prefix") or "backups"),
        app=app,
        format="custom",
    )
    return run_backup(options, say, client=backup_client(ops)).manifest_key


def restore_database(ops: dict[str, Any], url: str, app: str, point: str) -> str:
    """The database back to a rollback point (verify, new database, swap; the old one kept)."""
    from automation.console import bar
    from automation.operations.restore import Choice, backup_client, restore_parts
    from automation.tasks import restore as task

    backup = ops.get("backup") or {}
    client = backup_client(ops)
    prefix = str(backup.get("prefix") or "backups")
    source = task.resolve_source(
        client, str(backup.get("bucket")), prefix=prefix, app=app, key=point
    )
    document: dict[str, Any] = {}
    choice = Choice("db", 2, None)
    restore_parts(
        document, choice, url, client, source, lambda: None, dry_run=False, log=say, bar=bar
    )
    return str((document.get("database") or {}).get("pre_restore") or "")


class ClusterData:
    """The data steps as cluster Jobs (prod: the database is only reachable inside).

    The schema head comes from a backup Job's report (`database.migration_head`), so reading it
    also takes a fresh backup; the one taken at preflight is the rollback point.
    """

    def __init__(self, stack: StackOps, app: str, ops: dict[str, Any]) -> None:
        backup = ops.get("backup") or {}
        self.stack, self.app, self.ops = stack, app, ops
        self.bucket, self.prefix = str(backup.get("bucket")), str(backup.get("prefix") or "backups")
        self.fresh: str | None = None

    def _backup(self) -> dict[str, Any]:
        from automation.operations.cluster_job import run_in_cluster

        args = ["--bucket", self.bucket, "--prefix", self.prefix, "--app", self.app]
        report = run_in_cluster(self.stack, self.app, "backup", [*args, "--format", "custom"], say)
        self.fresh = str(report.get("manifest_key") or "") or None
        return report

    def head(self) -> str | None:
        head = (self._backup().get("database") or {}).get("migration_head")
        return str(head) if head else None

    def point(self) -> str:
        """The backup the preceding `head()` just took, else a new one."""
        key, self.fresh = self.fresh, None
        return key or str(self._backup()["manifest_key"])

    def restore(self, point: str) -> str:
        from automation.operations.cluster_job import run_in_cluster
        from automation.operations.restore import StackForm, cluster_args

        form = StackForm(self.stack.name, self.app, point, "db", "cluster", None, 2)
        report = run_in_cluster(self.stack, self.app, "restore", cluster_args(form, self.ops), say)
        return str((report.get("database") or {}).get("pre_restore") or "")


# --- printing -----------------------------------------------------------------------------------


def print_plan(report: op.DeployReport, as_json: bool) -> None:
    if as_json:
        emit_json({**report.to_json(), "dryRun": True, "plan": op.describe_plan(report)})
        return
    typer.echo(f"plan for {report.app} on {report.stack} (dry run: nothing changed):")
    for line in op.describe_plan(report):
        typer.echo(f"  {line}")


def print_outcome(report: op.DeployReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_json())
        return
    for step in report.steps:
        typer.echo(f"  {step.name:<15} {step.status:<8} {step.seconds:>8.1f}s  {step.detail}")
    print_checks(report)


def print_checks(report: op.DeployReport) -> None:
    """The app's status checks, as `status` prints them: the preflight's when any WARNs or
    FAILs, and the last one of the soak (what the app looked like when the deploy ended)."""
    from automation.commands.common import print_report

    before = report.preflight_health
    if before is not None and any(c.status != "pass" for c in before.checks):
        typer.echo("status at preflight:")
        print_report(before)
    if report.health is not None:
        typer.echo("status at the end of the soak:")
        print_report(report.health)


def print_history(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no deploys recorded yet")
    for row in rows:
        images = ", ".join(f"{s}={i}" for s, i in sorted(row["images"].items()))
        typer.echo(
            f"#{row['n']:<3} {row['at']}  {row['kind']:<8} {row['result']:<11} "
            f"schema {row.get('schemaHead') or '-'}  {images}"
        )


# --- commands -----------------------------------------------------------------------------------


@handle_errors
def deploy(
    stack: StackOpt,
    app: AppOpt,
    image: ImageOpt = None,
    yes: YesOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Deploy even though `status` FAILs now.")
    ] = False,
    dry_run: DryRunOpt = False,
    json: JsonOpt = False,
    restore_data: RestoreOpt = False,
    history: Annotated[
        bool, typer.Option("--history", help="List the app's recorded deploys and rollbacks.")
    ] = False,
    soak: SoakOpt = None,
    alertmanager_url: AlertmanagerOpt = None,
    where: WhereOpt = None,
) -> None:
    """Deploy new images: migration first, rolling update, watched soak, safe rollback."""
    target = open_stack(stack)
    if history:
        print_history(op.history_rows(target, app), json)
        return
    known = op.deploy_ops(target, app)["images"]
    images = op.parse_images(image or [], known)
    if not images:
        raise UserInputError("--image SERVICE=IMAGE is required (or --history to list deploys)")
    request = op.DeployRequest(
        app, images, force=force, restore_data=restore_data, soak_seconds=soak,
        status_command=f"python -m automation status --stack {stack} --app {app}",
    )  # fmt: skip
    planned = op.plan(target, request)
    if dry_run:
        print_plan(planned, json)
        return
    for line in op.describe_plan(planned):
        say(line)
    confirm(f"Deploy to {app} on stack {stack} ({len(images)} image(s))?", yes=yes)
    try:
        report = op.deploy(target, request, real_probes(target, app, alertmanager_url, where), say)
    except op.DeployFailed as exc:
        print_outcome(exc.report, json)
        raise
    print_outcome(report, json)
    say(f"deploy #{report.record} of {app} on {stack} succeeded")


@handle_errors
def rollback(
    stack: StackOpt,
    app: AppOpt,
    to: Annotated[
        int | None,
        typer.Option("--to", help="Deploy number to go back to (`deploy --history`).", min=1),
    ] = None,
    restore_data: RestoreOpt = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json: JsonOpt = False,
    soak: SoakOpt = None,
    alertmanager_url: AlertmanagerOpt = None,
    where: WhereOpt = None,
) -> None:
    """Go back to the images of an earlier succeeded deploy, if they can run on the schema."""
    target = open_stack(stack)
    planned, _ = op.plan_rollback(target, app, to)
    if dry_run:
        print_plan(planned, json)
        return
    for line in op.describe_plan(planned):
        say(line)
    confirm(f"Roll {app} on stack {stack} back ({planned.migration})?", yes=yes)
    try:
        report = op.rollback(
            target, app, real_probes(target, app, alertmanager_url, where), say,
            to=to, restore_data=restore_data, soak_seconds=soak,
        )  # fmt: skip
    except op.DeployFailed as exc:
        print_outcome(exc.report, json)
        raise
    print_outcome(report, json)
    say(f"{app} on {stack} is {planned.migration}")


DEPLOY_EXAMPLES = """Examples:

  python -m automation deploy --stack prod --app qr --image api=REPO/qr-api:1.1
  python -m automation deploy --stack prod --app qr --history"""


ROLLBACK_EXAMPLES = """Examples:

  python -m automation rollback --stack prod --app qr --dry-run
  python -m automation rollback --stack prod --app qr --to 3 --restore-data"""


def register(app: typer.Typer) -> None:
    app.command("deploy", epilog=DEPLOY_EXAMPLES)(deploy)
    app.command("rollback", epilog=ROLLBACK_EXAMPLES)(rollback)
