"""`python -m automation status`: "what is wrong right now?" for one app, or every app of a stack.

Stack form `--stack S [--app A]` (everything from `ops`), or explicit form `--app A
--database-url U --redis-url U --bucket B --health-url NAME=URL ...`. One line per check:
PASS/WARN/FAIL, what was measured, and for WARN/FAIL the single next step. Exit 0 when nothing
fails, 1 when anything fails, 2 for bad input; `--json` always prints the complete report.
See docs/status.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from automation.commands.common import print_report
from automation.console import emit_json, handle_errors, print_progress
from automation.errors import UserInputError

MAX_TIMEOUT = 300.0

Str = str | None


def parse_health(values: list[str]) -> dict[str, str]:
    """`NAME=URL` pairs -> {name: url}; anything else is a one-line input error."""
    found: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name.strip() or urlsplit(url).scheme not in ("http", "https"):
            raise UserInputError(
                f"--health-url {value!r}: expected NAME=http(s)://host:port/path, "
                "e.g. api=http://127.0.0.1:8000/health"
            )
        found[name.strip()] = url
    return found


def check_url(option: str, url: Str, schemes: tuple[str, ...], example: str) -> None:
    if url is not None and (urlsplit(url).scheme not in schemes or not urlsplit(url).hostname):
        shown = f"{urlsplit(url).scheme or url.split(':')[0][:20]}://…"  # never the password
        raise UserInputError(f"{option}: expected a URL like {example}, got {shown!r}")


def check_database_url(url: Str) -> None:
    """A postgresql:// URL, or a libpq conninfo string (`host=... dbname=...`)."""
    if url is None or ("://" not in url and "=" in url):
        return
    if urlsplit(url).scheme not in ("postgresql", "postgres"):  # host may be in ?host=/socket
        raise UserInputError(
            f"--database-url: expected a URL like postgresql://user:pass@host:5432/db, "
            f"got {url.split('://')[0][:20]!r}://…"
        )


def check_numbers(timeout: float, watch: float | None) -> None:
    if not 0 < timeout <= MAX_TIMEOUT:
        raise UserInputError(f"--timeout {timeout:g}: must be > 0 and <= {MAX_TIMEOUT:g} seconds")
    if watch is not None and watch < 1:
        raise UserInputError(f"--watch {watch:g}: must be at least 1 second")


def explicit_targets(app: str, options: dict[str, Any]) -> Any:
    """StatusTargets from the explicit options, after checking each one."""
    from automation.operations.status import DEFAULT_RTO_SECONDS, StatusTargets

    check_database_url(options["database_url"])
    check_url("--redis-url", options["redis_url"], ("redis",), "redis://:pass@host:6379")
    check_url("--alertmanager-url", options["alertmanager_url"], ("http", "https"),
              "http://alertmanager:9093")  # fmt: skip
    check_url("--prometheus-url", options["prometheus_url"], ("http", "https"),
              "http://prometheus:9090")  # fmt: skip
    health = parse_health(options["health_url"])
    given = [k for k in ("database_url", "redis_url", "bucket") if options[k]]
    if not (given or health or options["alertmanager_url"] or options["prometheus_url"]):
        raise UserInputError(
            "nothing to check: give --stack S, or --database-url/--redis-url/--bucket/--health-url"
        )
    rto = options["rto_minutes"]
    return StatusTargets(
        app=app,
        database_url=options["database_url"],
        redis_url=options["redis_url"],
        bucket=options["bucket"],
        prefix=options["prefix"],
        health=health,
        prometheus_url=options["prometheus_url"],
        alertmanager_url=options["alertmanager_url"],
        pool_size=options["pool_size"],
        rto_seconds=rto * 60 if rto else DEFAULT_RTO_SECONDS,
        webhook_table=options["webhook_table"],
        expect_parts=("db", "redis") if options["redis_url"] else ("db",),
        pitr=options["pitr"],
        deep=options["deep"],
    )


def refuse_with_stack(options: dict[str, Any], app: Str) -> None:
    """Explicit-form options that `--stack` reads from `ops` instead, and, without `--app`, the
    ones that name one app's dependency: one line, exit 2."""
    if app is None:
        for name in ("database_url", "redis_url", "pool_size"):
            if options[name] is not None:
                flag = "--" + name.replace("_", "-")
                env = f" (or env OPSPLANE_{name.upper()})" if name.endswith("_url") else ""
                raise UserInputError(
                    f"{flag}{env}: it is one app's; add --app A to check that app with it"
                )
    explicit = [o for o in ("bucket", "health_url", "webhook_table") if options[o]]
    if explicit:
        flag = "--" + explicit[0].replace("_", "-")
        raise UserInputError(f"{flag}: --stack reads it from the stack's ops; drop one of the two")
    if options["pitr"]:
        raise UserInputError(
            "--pitr: --stack reads it from the stack's ops (ops.pitr.enabled, set by config "
            "opsplane:pitr.apps); drop --pitr"
        )


def collect(stack: Str, app: Str, timeout: float, where: Str, options: dict[str, Any]) -> Any:
    """One report, in the form the options ask for. `where` None: `where_checks_run` (a Job on a
    Kubernetes stack, here on the Docker stack). `--stack` without `--app`: every app of the
    stack's `ops`, one after the other (a `StackReport`)."""
    from automation.operations import status as st

    if stack is None:
        if app is None:
            raise UserInputError(
                "--app: the explicit form checks one app; give --app A (or --stack S for "
                "every app on a stack)"
            )
        return st.run_checks(explicit_targets(app, options), timeout=timeout)
    refuse_with_stack(options, app)
    from automation.stack import pulumi_adapter as pulumi_stack  # Pulumi: the stack form only

    target = pulumi_stack.open_stack(stack)
    if app is not None:
        return app_report(target, app, timeout, where, options)
    started = time.monotonic()
    apps = list(target.outputs().get("ops") or {})
    if not apps:
        raise UserInputError(
            f"--stack {stack!r}: its ops output lists no app; run `pulumi up` on it first, "
            "or give --app A"
        )
    reports = [app_report(target, name, timeout, where, options) for name in apps]
    return st.StackReport(stack, reports, seconds=round(time.monotonic() - started, 3))


def app_report(target: Any, app: str, timeout: float, where: Str, options: dict[str, Any]) -> Any:
    """One app's report in the stack form, with the `alerts` "not checked" line when no
    monitoring URL is given."""
    from automation.operations import status as st

    report = stack_report(target, app, timeout, where, options)
    if not (options["alertmanager_url"] or options["prometheus_url"]):
        report.checks.append(st.alerts_not_checked())
    return report


def stack_report(target: Any, app: str, timeout: float, where: Str, options: dict[str, Any]) -> Any:
    """The stack form's report, here or as a cluster Job."""
    from automation.operations import status as st
    from automation.stack.protocol import app_ops

    stack = target.name
    where = where or st.where_checks_run(app_ops(target, app))
    overrides = {"pool_size": options["pool_size"], "rto_minutes": options["rto_minutes"]}
    if where == "cluster":
        local_only = [o for o in ("database_url", "redis_url") if options[o]]
        if local_only:
            flag = "--" + local_only[0].replace("_", "-")
            raise UserInputError(
                f"{flag} (or env OPSPLANE_{local_only[0].upper()}): the checks of stack "
                f"{stack!r} run in the cluster; add --where local to check through it"
            )
        monitoring = [
            arg
            for flag in ("alertmanager_url", "prometheus_url")
            if options[flag]
            for arg in ("--" + flag.replace("_", "-"), options[flag])
        ]
        return st.cluster_status(
            target,
            app,
            timeout=timeout,
            deep=options["deep"],
            monitoring=monitoring,
            on_output=print_progress,
            **overrides,
        )
    check_database_url(options["database_url"])
    return st.app_status(
        target,
        app,
        timeout=timeout,
        deep=options["deep"],
        database_url=options["database_url"],
        redis_url=options["redis_url"],
        alertmanager_url=options["alertmanager_url"],
        prometheus_url=options["prometheus_url"],
        **overrides,
    )


def watch_loop(report: Any, every: float, refresh: Callable[[], Any], as_json: bool) -> Any:
    """Refresh every `every` seconds until Ctrl-C; returns the last complete report."""
    try:
        while True:
            time.sleep(every)
            fresh = refresh()
            if not as_json:
                typer.echo(f"\n--- {time.strftime('%H:%M:%S')} ---")
            show(fresh, as_json)
            report = fresh
    except KeyboardInterrupt:
        return report


def show(report: Any, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_json())
    elif hasattr(report, "reports"):  # every app of a stack: one section per app
        for index, each in enumerate(report.reports):
            if index:
                typer.echo("")
            print_report(each)
        counts, apps = report.counts(), len(report.reports)
        worst = ", ".join(f"{r.app} {r.worst}" for r in report.reports)
        typer.echo(
            f"{report.stack}: {apps} app(s) ({worst}): {counts['pass']} pass, "
            f"{counts['warn']} warn, {counts['fail']} fail ({report.seconds or 0:.1f} s)"
        )
    else:
        print_report(report)


def _o(*names: str, help_: str, **extra: Any) -> Any:
    return typer.Option(*names, help=help_, **extra)


AppOpt = Annotated[
    Str, _o("--app", help_="App name (qr, quickbite); with --stack, default: every app on it.")
]
StackOpt = Annotated[Str, _o("--stack", help_="Pulumi stack: take everything from its ops output.")]
DbOpt = Annotated[
    Str,
    _o("--database-url", envvar="OPSPLANE_DATABASE_URL", show_envvar=False,
       help_="PostgreSQL URL (explicit form; or env OPSPLANE_DATABASE_URL)."),
]  # fmt: skip
RedisOpt = Annotated[
    Str,
    _o("--redis-url", envvar="OPSPLANE_REDIS_URL", show_envvar=False,
       help_="Redis URL (explicit form; or env OPSPLANE_REDIS_URL)."),
]  # fmt: skip
BucketOpt = Annotated[Str, _o("--bucket", help_="Backup bucket (explicit form).")]
PrefixOpt = Annotated[str, _o("--prefix", help_="Backup prefix in the bucket.")]
HealthOpt = Annotated[
    list[str], _o("--health-url", help_="Service health endpoint NAME=URL; repeatable.")
]
PromOpt = Annotated[Str, _o("--prometheus-url", help_="Prometheus URL (firing alerts).")]
AmOpt = Annotated[Str, _o("--alertmanager-url", help_="Alertmanager URL (firing alerts).")]
TableOpt = Annotated[Str, _o("--webhook-table", help_="Webhook log table, e.g. webhook_logs.")]
PitrOpt = Annotated[
    bool, _o("--pitr", help_="The app archives WAL: check the recoverable window and lag.")
]
PoolOpt = Annotated[int | None, _o("--pool-size", help_="The app's connection pool size.")]
RtoOpt = Annotated[
    float | None, _o("--rto-minutes", help_="RTO target the drill's restore time is held to.")
]
TimeoutOpt = Annotated[float, _o("--timeout", help_="Seconds each check may take.")]
WatchOpt = Annotated[float | None, _o("--watch", help_="Refresh every N seconds until Ctrl-C.")]
WhereOpt = Annotated[
    Str,
    _o("--where", help_="local, or cluster (run the checks as a Job); default: cluster on a "
       "Kubernetes stack, local on the Docker stack and in the explicit form."),
]  # fmt: skip
DeepOpt = Annotated[
    bool, _o("--deep", help_="Add connections per client, top statements, Redis memory.")
]
JsonOpt = Annotated[bool, _o("--json", help_="Print the JSON report on stdout.")]
ExitZeroOpt = Annotated[bool, _o("--exit-zero", hidden=True, help_="Exit 0 even on FAIL (Job).")]


@handle_errors
def status(
    app: AppOpt = None,
    stack: StackOpt = None,
    database_url: DbOpt = None,
    redis_url: RedisOpt = None,
    bucket: BucketOpt = None,
    prefix: PrefixOpt = "backups",
    health_url: HealthOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    prometheus_url: PromOpt = None,
    alertmanager_url: AmOpt = None,
    webhook_table: TableOpt = None,
    pitr: PitrOpt = False,
    pool_size: PoolOpt = None,
    rto_minutes: RtoOpt = None,
    timeout: TimeoutOpt = 5.0,
    watch: WatchOpt = None,
    where: WhereOpt = None,
    deep: DeepOpt = False,
    json: JsonOpt = False,
    exit_zero: ExitZeroOpt = False,
) -> None:
    """What is wrong right now: every check of APP (or of every app on the stack) as
    PASS/WARN/FAIL with the next step."""
    check_numbers(timeout, watch)
    if where not in (None, "local", "cluster"):
        raise UserInputError(f"--where {where!r}: must be local or cluster")
    if where == "cluster" and stack is None:
        raise UserInputError("--where cluster needs --stack (the Job is declared by the stack)")
    options = dict(locals())
    report = collect(stack, app, timeout, where, options)
    show(report, json)
    if watch is not None:
        report = watch_loop(
            report, watch, lambda: collect(stack, app, timeout, where, options), json
        )
    if report.failed and not exit_zero:
        raise typer.Exit(1)


EXAMPLES = """Examples:

  python -m automation status --stack dev
  python -m automation status --stack prod --app qr --where cluster
  python -m automation status --stack dev --app quickbite --deep --watch 10
  python -m automation status --app qr --database-url URL --health-url api=URL"""


def register(app: typer.Typer) -> None:
    app.command("status", epilog=EXAMPLES)(status)
