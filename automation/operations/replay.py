"""Replay's stack and cluster forms, behind `commands/replay.py` (which parses, asks and prints).

- `Target`: where to send, how to sign, where the events live; what either form resolves to;
- the stack form (`target_from_stack`): the webhook URL, signing scheme, header, secret, rate
  limit, table and database from the app's `ops` output;
- the cluster form: the explicit-form arguments the in-cluster Job runs (`job_args`,
  `filter_args`; secrets come from the Job's environment), then the Job itself (`run_as_job`).

Questions go through `ask` and the Job's output through `on_output`, so this module prints
nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from automation.errors import UserInputError
from automation.operations.cluster_job import OnOutput, run_in_cluster
from automation.stack.protocol import StackOps, database_url
from automation.tasks.replay import run as rr
from automation.tasks.replay.options import JOB_DATABASE_URL_ENV, JOB_SECRET_ENV, Columns
from automation.tasks.replay.ratelimit import Rate, parse_rate
from automation.tasks.replay.signing import DEFAULT_HEADERS
from automation.tasks.replay.sources import Filters

DEFAULT_RATE = "30/minute"  # the QR runbook's `/billing/*` limit


@dataclass(frozen=True)
class Target:
    """Everything resolved from either form: where to send, how to sign, where events live."""

    url: str
    scheme: str
    header: str
    secret: str | None  # None for a dry run: nothing is signed, no secret is needed
    source: rr.Source
    rate: Rate

    def signing_secret(self) -> str:
        assert self.secret, "a dry run has no secret: it signs nothing"
        return self.secret


def webhook_url(webhook: dict[str, Any]) -> str:
    """The receiver: the ops output's `url`, with its `path` appended unless already there."""
    url, path = str(webhook.get("url") or ""), str(webhook.get("path") or "")
    if not path or url.rstrip("/").endswith(path.rstrip("/")):
        return url
    return url.rstrip("/") + "/" + path.lstrip("/")


def rate_of(option: str | None, ops_limit: Any) -> Rate:
    """`--rate-limit` when given, else the app's limit per minute, else `DEFAULT_RATE`."""
    if option is not None:
        return parse_rate(option)
    return parse_rate(f"{int(ops_limit)}/minute" if ops_limit else DEFAULT_RATE)


def target_from_stack(
    ops: dict[str, Any],
    app: str,
    *,
    header: str | None,
    rate: str | None,
    from_file: Path | None,
    columns: Columns,
    dry_run: bool = False,
) -> Target:
    """The stack form: everything from the app's `ops` output (a dry run needs no secret)."""
    webhook = ops.get("webhook")
    if not webhook:
        raise UserInputError(f"--app {app!r}: the app declares no webhook in its ops output")
    table = (
        columns.table if columns.table != Columns.table else webhook.get("table") or "webhook_logs"
    )
    if not webhook.get("secret") and not dry_run:
        raise UserInputError(
            f"--app {app!r}: stack has no value for the webhook secret "
            f"{webhook.get('secretName') or ''!r}; set it with `pulumi config set --secret`, "
            "run `pulumi up`, and rerun"
        )
    source = (
        rr.Source(file=from_file)
        if from_file
        else rr.Source(db_url=database_url(ops), columns=replace(columns, table=table))
    )
    return Target(
        url=webhook_url(webhook),
        scheme=webhook["signing"],
        header=header or webhook.get("header") or DEFAULT_HEADERS.get(webhook["signing"], ""),
        secret=None if dry_run else str(webhook["secret"]),
        source=source,
        rate=rate_of(rate, webhook.get("rateLimitPerMinute")),
    )


def job_args(
    target: Target,
    filters_args: list[str],
    delivery: dict[str, Any],
    force: bool,
    limit: int | None,
) -> list[str]:
    """The explicit-form arguments the in-cluster Job runs; secrets come from its environment."""
    args = ["--webhook-url", target.url, "--signing", target.scheme, "--header", target.header]
    args += ["--secret-env", JOB_SECRET_ENV, "--rate-limit", str(target.rate)]
    columns = target.source.columns
    args += ["--from-db-env", JOB_DATABASE_URL_ENV, "--table", columns.table]
    for option, column in columns.option_names().items():
        args += [option, column]
    args += [
        "--concurrency",
        str(delivery["concurrency"]),
        "--timeout",
        str(delivery["timeout"]),
        "--max-attempts",
        str(delivery["max_attempts"]),
        "--backoff",
        str(delivery["backoff"]),
    ]
    if limit is not None:
        args += ["--limit", str(limit)]
    if force:
        args.append("--force")
    return [*args, *filters_args, "--yes", "--json"]


def filter_args(filters: Filters, explicit_status: str | None) -> list[str]:
    """Filters as explicit-form options; relative times are pinned to absolute ones here."""
    args: list[str] = []
    if explicit_status is not None:
        args += ["--status", explicit_status]
    if filters.since:
        args += ["--since", filters.since.isoformat()]
    if filters.until:
        args += ["--until", filters.until.isoformat()]
    for pattern in filters.types:
        args += ["--type", pattern]
    for event_id in filters.ids:
        args += ["--id", event_id]
    return args


def run_as_job(
    stack: StackOps,
    app: str,
    args: list[str],
    *,
    ask: Callable[[str], None],
    on_output: OnOutput,
) -> dict[str, Any]:
    """`--where cluster`: the same replay as a Job the stack declares during `up`, asked first.
    Returns the task's own `--json` report, or raises with the Job's error line."""
    ask(f"Run webhook replay for {app} as a Job on stack {stack.name}?")
    return run_in_cluster(stack, app, task="replay", args=args, on_output=on_output)
