"""`python -m automation replay`: re-send failed webhook events, signed, rate-limited, once.

Stack form: `--stack S --app A [filters]` reads the webhook URL, signing scheme, header, secret,
rate limit, table and database from the app's `ops` output. Explicit form (what the in-cluster
Job runs, and what tests use): `--webhook-url URL --signing stripe|hmac-sha256 --secret-env VAR
(--from-db URL | --from-db-env VAR | --from-file PATH) [filters]`. See docs/replay.md.

The stack form and `--where cluster` (the replay as a cluster Job) are resolved in
automation/operations/replay.py; this module parses the options, asks and prints.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from automation.console import confirm, emit_json, handle_errors, print_progress, progress, stderr
from automation.errors import OpsError, TaskFailed, UserInputError
from automation.lazy import lazy_function, lazy_module
from automation.stack.protocol import StackOps, app_ops
from automation.tasks.replay.options import DEFAULT_CONCURRENCY, Columns
from automation.tasks.replay.signing import DEFAULT_HEADERS, SCHEMES, make_signer

if TYPE_CHECKING:
    from automation.operations import replay as op
    from automation.tasks.io import pgtools
    from automation.tasks.replay import run as rr
    from automation.tasks.replay.delivery import DeliveryConfig
    from automation.tasks.replay.ledger import Outcome
    from automation.tasks.replay.sources import Event, Filters, parse_time
else:  # psycopg and the delivery engine load when a replay runs, not for --help
    op = lazy_module("automation.operations.replay")
    rr = lazy_module("automation.tasks.replay.run")
    pgtools = lazy_module("automation.tasks.io.pgtools")
    DeliveryConfig = lazy_function("automation.tasks.replay.delivery", "DeliveryConfig")
    Filters = lazy_function("automation.tasks.replay.sources", "Filters")
    parse_time = lazy_function("automation.tasks.replay.sources", "parse_time")

_PANELS = {  # --help groups the options of each form apart
    "Stack form (--stack S --app A)": ("--stack", "--app", "--where"),
    "Explicit form (what the Job runs)": (
        "--webhook-url", "--signing", "--secret-env", "--header", "--from-db", "--from-db-env",
    ),
    "Event source (either form)": ("--from-file", "--table", "--id-column", "--payload-column",
                                   "--type-column", "--status-column", "--created-column"),
    "Which events": ("--status", "--since", "--until", "--type", "--id", "--limit", "--force"),
    "Delivery": ("--rate-limit", "--concurrency", "--timeout", "--max-attempts", "--backoff"),
}  # fmt: skip
_PANEL_OF = {name: panel for panel, names in _PANELS.items() for name in names}


def _opt(help_text: str, *names: str, **kw: Any) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel=_PANEL_OF.get(names[0]), **kw)


Str = str | None


def _open_stack(stack: str) -> StackOps:
    from automation.stack import pulumi_adapter as pulumi_stack

    return pulumi_stack.open_stack(stack)


def run_cluster_form(stack: StackOps, app: str, args: list[str], as_json: bool, yes: bool) -> None:
    """`--where cluster` (`op.run_as_job`): asked, the Job's lines streamed, its report printed."""
    result = op.run_as_job(
        stack,
        app,
        args,
        ask=lambda question: confirm(question, yes=yes),
        on_output=print_progress,
    )
    # run_as_job returns the task's own --json report, or raises with the Job's error line
    if as_json:
        emit_json(result)
    elif "selected" in result:
        print_summary(result)
    if result.get("ok") is False:
        raise TaskFailed(failure_message(result))


def target_from_options(
    *,
    url: Str,
    signing: Str,
    secret_env: Str,
    header: Str,
    from_db: Str,
    from_db_env: Str,
    from_file: Path | None,
    rate: Str,
    columns: Columns,
    dry_run: bool = False,
) -> op.Target:
    missing = [
        name
        for name, value in (
            ("--webhook-url", url),
            ("--signing", signing),
            ("--secret-env", secret_env or dry_run),
        )
        if not value
    ]
    if missing:
        raise UserInputError(
            f"{', '.join(missing)} missing: give --stack and --app, or --webhook-url, --signing "
            "and --secret-env with --from-db/--from-file"
        )
    if signing not in SCHEMES:
        raise UserInputError(f"--signing {signing!r}: use one of {', '.join(SCHEMES)}")
    sources = [s for s in (from_db, from_db_env, from_file) if s]
    if len(sources) != 1:
        raise UserInputError(
            "give exactly one event source: --from-db URL, --from-db-env VAR or --from-file PATH"
        )
    if from_db_env:
        from_db = os.environ.get(from_db_env) or None
        if not from_db:
            raise UserInputError(
                f"--from-db-env {from_db_env}: environment variable is unset or empty"
            )
    if from_db:
        pgtools.parse_url(from_db, f"--from-db-env {from_db_env}" if from_db_env else "--from-db")
    source = rr.Source(file=from_file) if from_file else rr.Source(db_url=from_db, columns=columns)
    return op.Target(
        url=rr.check_url(str(url)),
        scheme=str(signing),
        header=header or DEFAULT_HEADERS[str(signing)],
        secret=None if dry_run else rr.secret_from_env(str(secret_env)),
        source=source,
        rate=op.rate_of(rate, None),
    )


def build_filters(
    *, status: Str, since: Str, until: Str, types: list[str], ids: list[str], from_file: bool
) -> Filters:
    if from_file and status is not None:
        raise UserInputError("--status applies to --from-db only: an export has no delivery status")
    if status is None:
        status = None if from_file else "failed"
    now = datetime.now(UTC)  # one clock for both ends: `--since 3d --until 2d` is exact
    start = parse_time("--since", since, now) if since else None
    end = parse_time("--until", until, now) if until else None
    if start and end and start >= end:
        raise UserInputError(
            f"--since {since} --until {until}: the window is empty (since must be before until); "
            f"did you mean --since {until} --until {since}?"
        )
    return Filters(
        status=None if status == "any" else status,
        since=start,
        until=end,
        types=tuple(types),
        ids=tuple(ids),
    )


def _check_numbers(concurrency: int, timeout: float, max_attempts: int, limit: int | None) -> None:
    for name, value, minimum in (
        ("--concurrency", concurrency, 1),
        ("--timeout", timeout, 0.001),
        ("--max-attempts", max_attempts, 1),
        ("--limit", limit if limit is not None else 1, 1),
    ):
        if value < minimum:
            raise UserInputError(f"{name} {value}: must be at least {minimum:g}")


def print_plan(plan: rr.Plan, target: op.Target) -> None:
    stderr.print(
        f"would send {len(plan.to_send)} event(s) to {target.url} ({target.scheme}, "
        f"{target.rate}); {len(plan.skipped)} already delivered",
        highlight=False,
    )
    if plan.held:
        stderr.print(held_message(plan.held), highlight=False)
    for row in rr.dry_run_listing(plan):
        doubt = "  (in doubt: a killed run was sending it)" if row["in_doubt"] else ""
        stderr.print(
            f"  {row['id']}  {row['type'] or '-'}  {row['created'] or '-'}  "
            f"{row['bytes']} B{doubt}",
            highlight=False,
            markup=False,
        )


def print_summary(report: dict[str, Any]) -> None:
    failed = ", ".join(f"{n} x {reason}" for reason, n in report["failed"].items()) or "none"
    stderr.print(
        f"selected {report['selected']}: delivered {report['delivered']}, "
        f"skipped (already delivered) {report['skipped_already_delivered']}, failed {failed}"
        + (f", not attempted {report['not_attempted']}" if report["not_attempted"] else ""),
        highlight=False,
    )
    doubted = report["in_doubt_resent"]
    if doubted:
        shown = ", ".join(doubted[:10]) + (
            f" and {len(doubted) - 10} more" if len(doubted) > 10 else ""
        )
        stderr.print(
            f"{len(doubted)} event(s) may have reached the receiver twice (in flight when a run "
            f"was killed, then sent again; receivers dedup by event id): {shown}",
            highlight=False,
            markup=False,
        )
    stderr.print(f"ledger: {report['ledger']}", highlight=False, markup=False)


def failure_message(report: dict[str, Any]) -> str:
    held = report.get("held_in_doubt") or []
    if held and report["delivered"] == report["to_send"]:
        return held_message(held)
    failed = sum(report["failed"].values()) + report["not_attempted"]
    hint = ""
    if any(code in report["failed"] for code in ("400", "401", "403")):
        hint = " (4xx on a signature usually means a wrong secret or --header)"
    return (
        f"{failed} of {report['to_send']} event(s) not delivered ({report['failed']}){hint}; "
        "rerun the same command to retry them: delivered events are skipped"
    )


def held_message(held: list[str]) -> str:
    ids = " ".join(f"--id {i}" for i in held[:5]) + (" ..." if len(held) > 5 else "")
    return (
        f"{len(held)} event(s) were resent once already and were in flight again when that run "
        f"was killed: not sent a third time; check the receiver for them, then send with {ids} "
        "--force"
    )


def execute(
    target: op.Target,
    filters: Filters,
    *,
    delivery: dict[str, Any],
    limit: int | None,
    force: bool,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> dict[str, Any]:
    """Select, plan, confirm, deliver, report; raises TaskFailed unless all were delivered.
    Interrupted (Ctrl-C, SIGTERM) or failed midway, the error carries the report so far."""
    events = rr.load_events(target.source, filters)
    context: dict[str, Any] = {
        "run_id": rr.new_run_id(),
        "webhook_url": target.url,
        "signing": target.scheme,
        "rate_limit": str(target.rate),
        "source": target.source.describe(),
        "dry_run": dry_run,
    }
    plan, location, doubted = read_only_plan(
        target.source, events, context["run_id"], force=force, limit=limit
    )
    context["ledger"] = location
    if dry_run:  # needs no signing secret: nothing is signed
        report = {**rr.summarize(plan, [], doubted, **context), "events": rr.dry_run_listing(plan)}
        emit_json(report) if as_json else print_plan(plan, target)
        return report
    outcomes: list[Outcome] = []
    if plan.to_send:
        signer = make_signer(target.scheme, target.signing_secret(), target.header)
        confirm(f"Send {len(plan.to_send)} webhook event(s) to {target.url}?", yes=yes)
        config = DeliveryConfig(url=target.url, signer=signer, **delivery)
        plan, doubted = send(target, events, config, outcomes, context, force=force, limit=limit)
    report = rr.summarize(plan, outcomes, doubted, **context)
    emit_json(report) if as_json else print_summary(report)
    if not report["ok"]:
        raise TaskFailed(failure_message(report))
    return report


def send(
    target: op.Target,
    events: list[Event],
    config: DeliveryConfig,
    outcomes: list[Outcome],
    context: dict[str, Any],
    *,
    force: bool,
    limit: int | None,
) -> tuple[rr.Plan, set[str]]:
    """Deliver under the ledger's lock (planning again: another run may have finished
    meanwhile); `outcomes` fills as events finish. Stopped midway, the exception gets the
    report so far (`report`, and a `summary` line for an interrupt) and is raised again."""
    ledger = rr.open_ledger(target.source, context["run_id"], writable=True)
    plan = rr.Plan([], [], [])
    try:
        states, doubted = ledger.states(), ledger.doubted()
        plan = rr.make_plan(events, states, force=force, limit=limit, doubted=doubted)
        with progress("replaying", total=len(plan.to_send)) as advance:
            rr.deliver_plan(plan, config, target.rate, ledger, lambda _: advance(1), outcomes)
        return plan, ledger.doubted()
    except (KeyboardInterrupt, OpsError) as exc:
        report = rr.summarize(plan, outcomes, _doubted_or_empty(ledger), **context)
        exc.report = {**report, "interrupted": isinstance(exc, KeyboardInterrupt)}  # type: ignore[union-attr]
        exc.summary = stopped_line(report)  # type: ignore[union-attr]
        print_summary(report)
        raise
    finally:
        ledger.close()


def _doubted_or_empty(ledger: Any) -> set[str]:
    try:
        return set(ledger.doubted())
    except OpsError:  # the ledger's database went away: the report says what this run saw
        return set()


def stopped_line(report: dict[str, Any]) -> str:
    """What an interrupted run did and did not do, in one line."""
    return (
        f"delivered {report['delivered']} of {report['to_send']}, "
        f"{report['not_attempted']} not attempted, failed {sum(report['failed'].values())} "
        f"(recorded in {report['ledger']}); rerun the same command to send the rest: "
        "delivered events are skipped"
    )


def read_only_plan(
    source: rr.Source, events: list[Event], run_id: str, *, force: bool, limit: int | None
) -> tuple[rr.Plan, str, set[str]]:
    """The plan from the ledger as it is, without creating or locking anything."""
    ledger = rr.open_ledger(source, run_id, writable=False)
    try:
        doubted = ledger.doubted()
        plan = rr.make_plan(events, ledger.states(), force=force, limit=limit, doubted=doubted)
        return plan, ledger.location, doubted
    finally:
        ledger.close()


EXAMPLES = """Examples:

  python -m automation replay --stack prod --app qr --since 6h --dry-run
  python -m automation replay --stack prod --app qr --since 6h --yes
  python -m automation replay --stack prod --app qr --where cluster --yes"""


def register(app: typer.Typer) -> None:
    app.command("replay", epilog=EXAMPLES)(replay)


@handle_errors
def replay(
    stack: Annotated[Str, _opt("Pulumi stack (stack form), e.g. dev or prod.", "--stack")] = None,
    app: Annotated[Str, _opt("App name from the stack's ops output (stack form).", "--app")] = None,
    where: Annotated[
        str, _opt("local, or cluster: run as a Job the stack declares (prod).", "--where")
    ] = "local",
    webhook_url: Annotated[Str, _opt("Receiver URL (explicit form).", "--webhook-url")] = None,
    signing: Annotated[Str, _opt("stripe or hmac-sha256 (explicit form).", "--signing")] = None,
    secret_env: Annotated[
        Str, _opt("Environment variable holding the signing secret.", "--secret-env")
    ] = None,
    header: Annotated[
        Str,
        _opt("Signature header (default Stripe-Signature / X-Razorpay-Signature).", "--header"),
    ] = None,
    from_db: Annotated[Str, _opt("Source: the app database URL.", "--from-db")] = None,
    from_db_env: Annotated[
        Str, _opt("Source: environment variable holding the database URL.", "--from-db-env")
    ] = None,
    from_file: Annotated[
        Path | None, _opt("Source: Stripe `events list` JSON or JSON Lines export.", "--from-file")
    ] = None,
    table: Annotated[str, _opt("Webhook log table.", "--table")] = Columns.table,
    id_column: Annotated[str, _opt("Event id column.", "--id-column")] = Columns.id,
    payload_column: Annotated[
        str, _opt("Raw payload column.", "--payload-column")
    ] = Columns.payload,
    type_column: Annotated[str, _opt("Event type column.", "--type-column")] = Columns.type,
    status_column: Annotated[str, _opt("Status column.", "--status-column")] = Columns.status,
    created_column: Annotated[str, _opt("Timestamp column.", "--created-column")] = Columns.created,
    status: Annotated[
        Str, _opt("Status to replay (database; default failed; 'any' for all).", "--status")
    ] = None,
    since: Annotated[
        Str, _opt("From this time (ISO 8601, unix, or age like 6h).", "--since")
    ] = None,
    until: Annotated[Str, _opt("Before this time (same forms as --since).", "--until")] = None,
    types: Annotated[
        list[str] | None, _opt("Event type, `*` wildcards; repeatable.", "--type")
    ] = None,
    ids: Annotated[list[str] | None, _opt("Event id; repeatable.", "--id")] = None,
    limit: Annotated[int | None, _opt("Send at most N events this run.", "--limit")] = None,
    rate_limit: Annotated[
        Str, _opt("N/minute (default: the app's limit, else 30/minute).", "--rate-limit")
    ] = None,
    concurrency: Annotated[
        int, _opt("Parallel deliveries.", "--concurrency")
    ] = DEFAULT_CONCURRENCY,
    timeout: Annotated[float, _opt("Seconds to wait for each answer.", "--timeout")] = 10.0,
    max_attempts: Annotated[int, _opt("Attempts per event (5xx/timeouts).", "--max-attempts")] = 5,
    backoff: Annotated[float, _opt("First retry delay cap, seconds; doubles.", "--backoff")] = 0.5,
    force: Annotated[bool, _opt("Send even events the ledger says delivered.", "--force")] = False,
    dry_run: Annotated[bool, _opt("List what would be sent; send nothing.", "--dry-run")] = False,
    yes: Annotated[bool, _opt("Do not ask for confirmation.", "--yes")] = False,
    json: Annotated[bool, _opt("Print a JSON report on stdout.", "--json")] = False,
) -> None:
    """Replay webhook events (failed ones by default) to the app's receiver, each at most once."""
    _check_numbers(concurrency, timeout, max_attempts, limit)
    if where not in ("local", "cluster"):
        raise UserInputError(f"--where {where!r}: use local or cluster")
    columns = Columns(table, id_column, payload_column, type_column, status_column, created_column)
    filters = build_filters(
        status=status,
        since=since,
        until=until,
        types=types or [],
        ids=ids or [],
        from_file=from_file is not None,
    )
    delivery = {
        "concurrency": concurrency,
        "timeout": timeout,
        "max_attempts": max_attempts,
        "backoff": backoff,
    }
    stack_form = stack is not None or app is not None
    if stack_form:
        if not (stack and app):
            raise UserInputError("the stack form needs both --stack and --app")
        explicit = [
            n
            for n, v in (
                ("--webhook-url", webhook_url),
                ("--signing", signing),
                ("--secret-env", secret_env),
                ("--from-db", from_db),
                ("--from-db-env", from_db_env),
            )
            if v
        ]
        if explicit:
            raise UserInputError(
                f"{', '.join(explicit)}: not with --stack/--app (the stack's ops output gives them)"
            )
        stack_ops = _open_stack(stack)
        ops = app_ops(stack_ops, app)
        target = op.target_from_stack(
            ops,
            app,
            header=header,
            rate=rate_limit,
            from_file=from_file,
            columns=columns,
            dry_run=dry_run,
        )
        if where == "local" and ops.get("target") == "kubernetes":
            stderr.print(
                f"note: {app} on {stack} runs in Kubernetes; its webhook and database addresses "
                "are in-cluster: if they are unreachable from here, rerun with --where cluster",
                highlight=False,
            )
    elif where == "cluster":
        raise UserInputError("--where cluster needs the stack form: --stack STACK --app APP")
    else:
        target = target_from_options(
            url=webhook_url,
            signing=signing,
            secret_env=secret_env,
            header=header,
            from_db=from_db,
            from_db_env=from_db_env,
            from_file=from_file,
            rate=rate_limit,
            columns=columns,
            dry_run=dry_run,
        )
    if where == "cluster":
        if from_file is not None:
            raise UserInputError(
                "--from-file with --where cluster: the Job cannot read local files"
            )
        args = op.job_args(target, op.filter_args(filters, status), delivery, force, limit)
        run_cluster_form(
            stack_ops, str(app), [*args, *(["--dry-run"] if dry_run else [])], json, yes
        )
        return
    execute(
        target,
        filters,
        delivery=delivery,
        limit=limit,
        force=force,
        dry_run=dry_run,
        yes=yes,
        as_json=json,
    )
