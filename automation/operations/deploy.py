"""Safe deploys as a stack operation: preflight, a data rollback point, apply (the migration Job
first, then a rolling update), a watched soak, and a rollback only when it is safe.

1. preflight: the app's `status` must not FAIL (`force` overrides); record the images running
   (`ops[app].deploy.images`) and the schema head.
2. rollback point: a fresh backup (named in the report and the history).
3. apply: the new images in config (`opsplane:apps.<app>.services.<svc>.image`), `up`. The
   program runs the migration Job first and the Deployments wait for it (components/migration.py);
   pulumi-kubernetes waits for every new pod to be Ready.
4. watch: for the soak period every health check must not FAIL and the error-rate alert must
   not fire.
5. on failure: the previous images go back (config + `up`) only if the schema head did not move
   (or moved to a head the app declared compatible, `deploy.compatibleHeads`). Otherwise nothing
   is rolled back and the error says so, offering fail-forward or `--restore-data` (restore the
   rollback point inside maintenance, then the previous images).
Every outcome is recorded in `opsplane:deployHistory` (contract/deploy.py).

The health check, schema head, backup, restore and alert query are injected (`Probes`): the
command wires the real ones; tests script them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from automation.errors import OpsError, TaskFailed, Terminated, UserInputError
from automation.stack.protocol import StackBusy, StackOps, app_ops
from contract import deploy as history
from contract.images import check_image

OnOutput = Callable[[str], None]
ERROR_RATE_ALERT = "HighErrorRate"


class Check(Protocol):
    name: str
    status: str
    detail: str


class Health(Protocol):
    """What `deploy` needs of `automation.operations.status.StatusReport`."""

    checks: list[Any]

    @property
    def failed(self) -> bool: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class Probes:
    """The outside world of a deploy; the command wires the real ones."""

    health: Callable[[], Health]
    schema_head: Callable[[], str | None]
    backup: Callable[[], str]  # takes a fresh backup; returns its name (the rollback point)
    restore: Callable[[str], str]  # restores the database to a rollback point (in maintenance)
    firing: Callable[[], list[str]] = lambda: []  # firing error-rate alerts of the app
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    poll_seconds: float = 5.0


@dataclass
class Step:
    name: str
    status: str = "running"  # running | ok | failed | skipped
    started: str = ""
    seconds: float = 0.0
    detail: str = ""


@dataclass
class DeployReport:
    stack: str
    app: str
    kind: str  # deploy | rollback
    before: dict[str, str]
    after: dict[str, str]
    result: str = "running"
    migration: str = ""
    schema_before: str | None = None
    schema_after: str | None = None
    rollback_point: str | None = None
    record: int | None = None
    steps: list[Step] = field(default_factory=list)
    preflight_health: Health | None = field(default=None, repr=False)  # status before the change
    health: Health | None = field(default=None, repr=False)  # the soak's last status report

    def to_json(self) -> dict[str, Any]:
        """The report; the app's status checks as `status` prints them (`{"checks": [...]}`):
        `preflight_status` before the change, `status` the soak's last report (None: not run)."""
        document = asdict(replace(self, preflight_health=None, health=None))
        del document["preflight_health"], document["health"]
        for key, health in (("preflight_status", self.preflight_health), ("status", self.health)):
            document[key] = None if health is None else health.to_json()
        return document

    @contextmanager
    def step(self, name: str, on_output: OnOutput) -> Iterator[Step]:
        """A timed step, shown as it starts and ends; an error marks it failed and propagates."""
        step = Step(name, started=datetime.now(UTC).isoformat(timespec="seconds"))
        self.steps.append(step)
        on_output(f"[{name}] ...")
        started = time.monotonic()
        try:
            yield step
        except BaseException as exc:
            step.status, step.detail = "failed", step.detail or reason(exc)
            raise
        else:
            step.status = "ok" if step.status == "running" else step.status
        finally:
            step.seconds = round(time.monotonic() - started, 3)
            on_output(f"[{name}] {step.status}: {step.detail}")


class DeployFailed(TaskFailed):
    """The deploy (or rollback) failed; `report` says what was done about it."""

    def __init__(self, message: str, report: DeployReport) -> None:
        super().__init__(message)
        self.report = report


def reason(exc: BaseException) -> str:
    """One line for an error: its message (a URLError's reason), else its type."""
    text = " ".join(str(getattr(exc, "reason", None) or exc).split())[:300]
    if isinstance(exc, OpsError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- what is running and what would change -----------------------------------------------------


def deploy_ops(stack: StackOps, app: str) -> dict[str, Any]:
    block = app_ops(stack, app).get("deploy")
    if not isinstance(block, dict) or not isinstance(block.get("images"), dict):
        raise UserInputError(
            f"stack {stack.name!r} exports no ops.{app}.deploy (images, migration): "
            f"run `pulumi up -s {stack.name}` once with this version of opsplane"
        )
    return block


def parse_images(values: list[str], known: dict[str, str]) -> dict[str, str]:
    """`--image SERVICE=IMAGE[:TAG|@DIGEST]` values, checked against the app's services."""
    images: dict[str, str] = {}
    for value in values:
        service, sep, image = value.partition("=")
        if not sep or not service or not image:
            raise UserInputError(f"--image {value!r}: use SERVICE=IMAGE[:TAG|@DIGEST]")
        if service not in known:
            raise UserInputError(
                f"--image {value!r}: unknown service {service!r}; the app has "
                f"{', '.join(sorted(known))}"
            )
        try:
            images[service] = check_image(image)
        except ValueError as exc:
            raise UserInputError(f"--image {value!r}: {exc}") from None
    return images


def migration_plan(block: dict[str, Any], before: dict[str, str], after: dict[str, str]) -> str:
    """Whether (and how) a migration runs when `before` becomes `after`."""
    migration = block.get("migration") or {}
    service = migration.get("service")
    if not service:
        return "none: the app declares no migrations"
    command = " ".join(migration.get("command") or [])
    if before.get(service) == after.get(service):
        return f"none: {service}'s image is unchanged"
    if migration.get("atStart"):
        return f"at start: {service}'s new pods migrate ({migration.get('table')}) before Ready"
    if migration.get("job"):
        return f"Job for {after[service]}: `{command}` before any pod changes"
    return f"`{command}` before the containers change"


def service_key(app: str, service: str) -> str:
    return f"opsplane:apps.{app}.services.{service}.image"


def configured_image(stack: StackOps, app: str, service: str) -> str | None:
    """The image config holds for a service (what the next `up` deploys), if set there."""
    value = stack.get_config(service_key(app, service), path=True)
    return value or None


def skip_migration_key(app: str) -> str:
    return f"opsplane:apps.{app}.deploy.skipMigrationFor"


def hold_migration(stack: StackOps, app: str, image: str | None) -> None:
    """`deploy.skipMigrationFor`: the program declares no migration step for `image` (None:
    every image migrates). Set when going back onto a compatible head that older image does not
    know (its `alembic upgrade head` fails "Can't locate revision"); cleared otherwise."""
    key = skip_migration_key(app)
    current = stack.get_config(key, path=True)
    if image and current != image:
        stack.set_config(key, image, path=True)
    elif not image and current:
        stack.remove_config(key, path=True)


def skip_for(
    block: dict[str, Any], images: dict[str, str], head_then: str | None, head_now: str | None
) -> str | None:
    """Going back to `images`, built for `head_then`, onto `head_now`: when the head moved (to
    a declared compatible one) the migrating image must not migrate; it does not know it."""
    service = (block.get("migration") or {}).get("service")
    return images.get(service) if service and head_then != head_now else None


def set_images(stack: StackOps, app: str, images: dict[str, str]) -> None:
    for service, image in sorted(images.items()):
        stack.set_config(service_key(app, service), image, path=True)


# --- history ------------------------------------------------------------------------------------


def read_history(stack: StackOps) -> history.History:
    try:
        return history.parse_history(stack.get_config(history.HISTORY_KEY))
    except history.HistoryError as exc:
        raise UserInputError(
            f"config {exc}; fix it with `pulumi config edit -s {stack.name}`"
        ) from None


def record(stack: StackOps, report: DeployReport, detail: str = "") -> int:
    """Append the outcome to `opsplane:deployHistory`; returns its number."""
    all_records = read_history(stack)
    records = all_records.setdefault(report.app, [])
    number = history.next_number(records)
    records.append(
        history.DeployRecord(
            n=number,
            kind="rollback" if report.kind == "rollback" else "deploy",
            at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            result=report.result,  # type: ignore[arg-type]
            images=report.after,
            previous=report.before,
            schema_before=report.schema_before,
            schema_head=report.schema_after,
            rollback_point=report.rollback_point,
            detail=detail[:300],
        )
    )
    stack.set_config(history.HISTORY_KEY, history.dump_history(all_records))
    report.record = number
    return number


# --- the steps ----------------------------------------------------------------------------------


def failing(report: Health) -> list[str]:
    return [f"{c.name} FAIL ({c.detail})" for c in report.checks if c.status == "fail"]


def preflight(
    report: DeployReport, probes: Probes, *, force: bool, command: str, on_output: OnOutput
) -> None:
    with report.step("preflight", on_output) as step:
        report.preflight_health = probes.health()
        failed = failing(report.preflight_health)
        if failed and not force:
            raise DeployFailed(
                f"preflight: {report.app} is failing now ({'; '.join(failed)}); nothing was "
                f"changed: fix it first (`{command}`) or pass --force to deploy anyway",
                report,
            )
        report.schema_before = probes.schema_head()
        forced = f"forced past {len(failed)} failing check(s); " if failed else ""
        step.detail = f"{forced}schema head {report.schema_before or 'none'}"


def rollback_point(report: DeployReport, probes: Probes, on_output: OnOutput) -> None:
    with report.step("rollback-point", on_output) as step:
        report.rollback_point = probes.backup()
        step.detail = f"fresh backup {report.rollback_point}"


def apply(
    stack: StackOps, report: DeployReport, images: dict[str, str], on_output: OnOutput
) -> None:
    with report.step("apply", on_output) as step:
        hold_migration(stack, report.app, None)  # a new image migrates
        set_images(stack, report.app, images)
        stack.up(on_output)
        step.detail = ", ".join(f"{s}={i}" for s, i in sorted(images.items()))


def watch(report: DeployReport, probes: Probes, soak: float, on_output: OnOutput) -> None:
    """Health must not FAIL and the error-rate alert must not fire for `soak` seconds."""
    with report.step("watch", on_output) as step:
        deadline, rounds = probes.clock() + soak, 0
        while True:
            problems = soak_problems(probes, report)
            if problems:
                raise TaskFailed(f"unhealthy during the soak: {'; '.join(problems)}")
            rounds += 1
            left = deadline - probes.clock()
            if left <= 0:
                break
            probes.sleep(min(probes.poll_seconds, left))
        step.detail = f"healthy for {soak:g}s ({rounds} checks)"


def soak_problems(probes: Probes, report: DeployReport) -> list[str]:
    """What fails now (the status report kept as `report.health`). A check that cannot run (an
    unreachable Alertmanager, a status probe that raised) is a failing check with its reason,
    never a crash past the rollback."""
    report.health = None  # a probe that raises leaves no report, not an older one
    try:
        report.health = probes.health()
        problems = failing(report.health)
    except OpsError:
        raise
    except Exception as exc:
        problems = [f"status did not run ({reason(exc)})"]
    try:
        problems += [f"alert {name} firing" for name in probes.firing()]
    except Exception as exc:
        problems.append(f"error-rate alert unknown ({reason(exc)})")
    return problems


def compatible(before: str | None, now: str | None, declared: list[str]) -> bool:
    """The previous images can run on the schema now: it did not move, or it moved to a head
    the app declared compatible (expand-only migrations, `deploy.compatibleHeads`)."""
    return now == before or (now is not None and now in declared)


# --- deploy -------------------------------------------------------------------------------------


@dataclass
class DeployRequest:
    app: str
    images: dict[str, str]  # only the services that change
    force: bool = False
    restore_data: bool = False
    soak_seconds: float | None = None  # None: the app's `deploy.soakSeconds`
    status_command: str = "python -m automation status"


def plan(stack: StackOps, request: DeployRequest) -> DeployReport:
    """What the deploy would do: each image old -> new and whether a migration runs."""
    block = deploy_ops(stack, request.app)
    before = dict(block["images"])
    after = {**before, **request.images}
    if after == before:
        raise UserInputError(
            f"--image: nothing to deploy, {request.app} already runs "
            + ", ".join(f"{s}={before[s]}" for s in sorted(request.images))
        )
    report = DeployReport(stack.name, request.app, "deploy", before, after)
    report.migration = migration_plan(block, before, after)
    return report


def deploy(
    stack: StackOps, request: DeployRequest, probes: Probes, on_output: OnOutput
) -> DeployReport:
    """Run the whole deploy; raises DeployFailed (with the report) unless it succeeded."""
    report = plan(stack, request)
    block = deploy_ops(stack, request.app)
    soak = block.get("soakSeconds", 60) if request.soak_seconds is None else request.soak_seconds
    preflight(
        report, probes, force=request.force, command=request.status_command, on_output=on_output
    )
    rollback_point(report, probes, on_output)
    changed = {s: i for s, i in report.after.items() if report.before.get(s) != i}
    try:
        apply(stack, report, changed, on_output)
        watch(report, probes, float(soak), on_output)
    except StackBusy as exc:  # the update never started: only the config to put back
        set_images(stack, request.app, {s: report.before[s] for s in changed})
        raise TaskFailed(f"{exc}; nothing was deployed, config holds the running images") from exc
    except KeyboardInterrupt as exc:
        interrupted(stack, report, exc)
        raise
    except Exception as exc:  # any failure goes through the same recovery, never past it
        cause = f"{report.steps[-1].name}: {reason(exc)}"
        try:
            message = recover(stack, report, probes, request, block, on_output, cause)
        except KeyboardInterrupt as stop:
            interrupted(stack, report, stop)
            raise
        raise DeployFailed(message, report) from exc
    report.schema_after = head_or_none(probes, on_output)
    report.result = "succeeded"
    record(stack, report)
    return report


def interrupted(stack: StackOps, report: DeployReport, exc: KeyboardInterrupt) -> None:
    """Ctrl-C or SIGTERM after the images changed: record it (`interrupted`) and name the next
    step in the line the console prints (`exc.summary`); `--json` gets the step report."""
    stage = report.steps[-1].name if report.steps else "start"
    what = "terminated" if isinstance(exc, Terminated) else "interrupted"
    report.result = "interrupted"
    try:
        record(stack, report, f"{what} during {stage}")
        recorded = f"recorded as #{report.record}"
    except (Exception, KeyboardInterrupt) as error:  # say so; the line below still shows
        recorded = f"NOT recorded in the history ({reason(error)})"
    command = f"python -m automation rollback --stack {stack.name} --app {report.app}"
    setattr(  # noqa: B010 (KeyboardInterrupt declares no such attribute)
        exc,
        "summary",
        f"{report.kind} of {report.app} stopped during {stage} ({recorded}); the new images may "
        f"be partly rolled out and config holds them. Next step: `{command}` (it checks the "
        "schema head first)",
    )
    setattr(exc, "report", report.to_json())  # noqa: B010


def head_or_none(probes: Probes, on_output: OnOutput) -> str | None:
    """The schema head after a deploy that succeeded: not reading it must not fail the deploy."""
    try:
        return probes.schema_head()
    except OpsError as exc:
        on_output(f"warning: could not read the schema head after the deploy ({exc})")
        return None


def recover(
    stack: StackOps,
    report: DeployReport,
    probes: Probes,
    request: DeployRequest,
    block: dict[str, Any],
    on_output: OnOutput,
    cause: str,
) -> str:
    """After a failed apply/watch: roll back if safe, restore data if asked, else refuse.
    Records the outcome; returns the one-line message for the operator."""
    with report.step("rollback", on_output) as step:
        try:
            report.schema_after = probes.schema_head()
        except Exception as exc:  # unknown head: refuse (and record), never abort silently
            report.result, step.status = "refused", "skipped"
            step.detail = unreadable_head(stack.name, report, reason(exc))
            cause = f"{cause}; schema head unreadable"
        declared = list(block.get("compatibleHeads") or [])
        if report.result == "refused":
            pass
        elif compatible(report.schema_before, report.schema_after, declared):
            skip = skip_for(block, report.before, report.schema_before, report.schema_after)
            go_back(stack, report, report.before, on_output, skip_migration_for=skip)
            report.result, step.detail = "rolled-back", "previous images restored"
        elif request.restore_data:
            try:
                restore_and_go_back(stack, report, probes, report.before, on_output)
            except DeployFailed:  # the `up` back to the previous images failed: recorded
                raise
            except Exception as exc:  # the restore failed: recorded, with its reason
                report.result = "failed"
                step.detail = f"data restore to {report.rollback_point} failed: {reason(exc)}"
                record(stack, report, f"{step.detail} (after {cause})")  # the reason first
                raise DeployFailed(restore_failed(stack.name, report, cause), report) from exc
            report.result = "restored"
            step.detail = f"data restored to {report.rollback_point}, previous images back"
        else:
            report.result, step.status = "refused", "skipped"
            step.detail = refusal(stack.name, report)
    record(stack, report, cause)
    return outcome_message(stack.name, report, cause)


def go_back(
    stack: StackOps,
    report: DeployReport,
    images: dict[str, str],
    on_output: OnOutput,
    *,
    skip_migration_for: str | None = None,
) -> None:
    """Config back to `images` (only the services that differ from what runs) and `up`;
    `skip_migration_for`: the image whose migration the program must not declare."""
    running = report.after if report.kind == "deploy" else report.before
    back = {  # against config, which an interrupted deploy may have left ahead of `ops`
        s: i
        for s, i in images.items()
        if (configured_image(stack, report.app, s) or running.get(s)) != i
    }
    try:
        hold_migration(stack, report.app, skip_migration_for)
        set_images(stack, report.app, back)
        stack.up(on_output)
    except OpsError as exc:
        report.result = "failed"
        record(stack, report, f"rollback failed: {exc}")
        raise DeployFailed(
            f"the rollback itself failed ({exc}); config holds the previous images again: "
            f"run `pulumi up -s {stack.name}` and check `status`",
            report,
        ) from exc


def restore_and_go_back(
    stack: StackOps,
    report: DeployReport,
    probes: Probes,
    images: dict[str, str],
    on_output: OnOutput,
) -> None:
    """In maintenance: the database back to the rollback point, then `images`."""
    from automation.operations.maintenance import maintenance

    if report.rollback_point is None:
        raise TaskFailed("no rollback point was taken: nothing to restore")
    with maintenance(stack, report.app, on_output):
        probes.restore(report.rollback_point)
        go_back(stack, report, images, on_output)
    report.schema_after = head_or_none(probes, on_output)  # done: not reading it fails nothing


def unreadable_head(stack_name: str, report: DeployReport, why: str) -> str:
    """The schema head could not be read after the failure: the previous images may not read
    it, so nothing goes back on its own; the two ways forward."""
    return (
        f"NOT rolled back: the schema head could not be read ({why}), so whether the previous "
        f"images (built for {report.schema_before or 'none'}) can run on it is unknown. Either "
        f"fail forward (`deploy --stack {stack_name} --app {report.app} --image "
        f"SERVICE=FIXED_IMAGE`), or, once the database answers, `rollback --stack {stack_name} "
        f"--app {report.app}` (it checks the head; add --restore-data to go back to the "
        f"rollback point {report.rollback_point}, writes since then are lost)"
    )


def restore_failed(stack_name: str, report: DeployReport, cause: str) -> str:
    """`--restore-data` after a failed deploy, and the restore failed: the new images still run
    (config holds them); the two ways forward."""
    step = next((s.detail for s in report.steps if s.name == "rollback"), "data restore failed")
    return (
        f"deploy #{report.record} of {report.app} failed at {cause}; {step}. NOT rolled back: the "
        f"new images still run and config holds them. Either retry once the restore's cause is "
        f"fixed (`rollback --stack {stack_name} --app {report.app} --restore-data`, back to the "
        f"rollback point {report.rollback_point}), or fail forward (`deploy --stack {stack_name} "
        f"--app {report.app} --image SERVICE=FIXED_IMAGE`)"
    )


def refusal(stack_name: str, report: DeployReport) -> str:
    """Why the previous images cannot come back on their own, and the two ways forward."""
    return (
        f"NOT rolled back: the schema head moved from {report.schema_before or 'none'} to "
        f"{report.schema_after or 'none'} and the previous images were built for "
        f"{report.schema_before or 'none'}. Either fail forward (`deploy --stack {stack_name} "
        f"--app {report.app} --image SERVICE=FIXED_IMAGE`), or go back with the data of the "
        f"rollback point {report.rollback_point} (writes since then are lost): `rollback "
        f"--stack {stack_name} --app {report.app} --restore-data`"
    )


def outcome_message(stack_name: str, report: DeployReport, cause: str) -> str:
    why = (
        "the schema head did not move"
        if report.schema_after == report.schema_before
        else f"schema head {report.schema_after} is declared compatible"
    )
    refused = next((s.detail for s in report.steps if s.name == "rollback"), "")
    done = {
        "rolled-back": f"rolled back to the previous images ({why})",
        "restored": f"data restored to {report.rollback_point} and the previous images are back",
        "refused": refused or refusal(stack_name, report),
    }[report.result]
    return f"deploy #{report.record} of {report.app} failed at {cause}; {done}"


# --- rollback -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a rollback goes: an image set, the schema head it ran on, the backup holding the
    data of that time, and how to name it (`label`) and ask for it again (`flag`)."""

    images: dict[str, str]
    schema_head: str | None
    point: str | None
    label: str
    flag: str  # "--to N", or "" for the default
    since: int = 0  # the records from this number on moved the schema away from `schema_head`


def rollback_target(
    records: list[history.DeployRecord], running: dict[str, str], to: int | None
) -> Target:
    """`--to N`: deploy N's images. Default: undo the last deploy when it is what runs
    (succeeded, refused, or a deploy whose recovery failed: back to the images before it, with
    its rollback point); else the
    newest succeeded deploy whose images differ from what runs."""
    last = records[-1] if records else None
    if to is None and last and last.result == "interrupted":  # config may be ahead of `ops`
        return Target(
            last.previous, last.schema_before, last.rollback_point,
            f"the images before deploy #{last.n} (interrupted)", "", last.n,
        )  # fmt: skip
    undoable = last and (
        last.result in ("succeeded", "refused") or (last.result, last.kind) == ("failed", "deploy")
    )
    if to is None and last and undoable and last.images == running:
        return Target(
            last.previous, last.schema_before, last.rollback_point,
            f"the images before deploy #{last.n}", "", last.n,
        )  # fmt: skip
    if to is not None:
        chosen = history.find(records, to)
        if chosen is None:
            known = ", ".join(str(r.n) for r in records) or "none"
            raise UserInputError(f"--to {to}: no such deploy in the history (numbers: {known})")
        if chosen.result != "succeeded":
            raise UserInputError(
                f"--to {to}: deploy #{to} {chosen.result}; "
                "pick a succeeded one (`deploy --history`)"
            )
    else:
        candidates = [r for r in records if r.result == "succeeded" and r.images != running]
        if not candidates:
            raise UserInputError(
                "nothing to roll back to: no earlier deploy in the history (`deploy --history`); "
                "deploy the image you want with `deploy --image`"
            )
        chosen = candidates[-1]
    later = [r for r in records if r.n > chosen.n and r.rollback_point]
    point = later[0].rollback_point if later else None
    return Target(
        chosen.images, chosen.schema_head, point, f"deploy #{chosen.n}", f"--to {chosen.n}",
        chosen.n + 1,
    )  # fmt: skip


def plan_rollback(stack: StackOps, app: str, to: int | None = None) -> tuple[DeployReport, Target]:
    """What `rollback` would do: each image now -> then, and the schema head it needs."""
    block = deploy_ops(stack, app)
    running = dict(block["images"])
    target = rollback_target(read_history(stack).get(app, []), running, to)
    report = DeployReport(stack.name, app, "rollback", running, {**running, **target.images})
    report.rollback_point = target.point
    report.migration = f"back to {target.label} (schema head {target.schema_head or 'none'})"
    return report, target


def rollback(
    stack: StackOps,
    app: str,
    probes: Probes,
    on_output: OnOutput,
    *,
    to: int | None = None,
    restore_data: bool = False,
    soak_seconds: float | None = None,
) -> DeployReport:
    """Back to the image set of an earlier succeeded deploy, with the same schema check."""
    block = deploy_ops(stack, app)
    report, target = plan_rollback(stack, app, to)
    point = target.point
    with report.step("schema-check", on_output) as step:
        report.schema_before = probes.schema_head()
        declared = list(block.get("compatibleHeads") or [])
        crossed = heads_since(read_history(stack).get(app, []), target.since)
        breaking = [
            h
            for h in [*crossed, report.schema_before]
            if not compatible(target.schema_head, h, declared)
        ]
        ok = not breaking
        step.detail = (
            f"now {report.schema_before or 'none'}, {target.label} ran on "
            f"{target.schema_head or 'none'}"
        )
        if not ok and not restore_data:
            raise_refused_rollback(stack, report, target, breaking[0])
    try:
        if ok:
            with report.step("apply", on_output):
                skip = skip_for(block, report.after, target.schema_head, report.schema_before)
                go_back(stack, report, report.after, on_output, skip_migration_for=skip)
        else:
            with report.step("restore-data", on_output) as step:
                restore_and_go_back(stack, report, probes, report.after, on_output)
                step.detail = f"data restored to {point}"
        soak = block.get("soakSeconds", 60) if soak_seconds is None else soak_seconds
        watch(report, probes, float(soak), on_output)
    except DeployFailed:
        raise
    except OpsError as exc:
        report.result = "failed"
        record(stack, report, str(exc))
        raise DeployFailed(f"rollback of {app} failed: {exc}", report) from exc
    report.schema_after = probes.schema_head()
    report.result = "restored" if not ok else "succeeded"
    record(stack, report, f"rollback to {target.label}")
    return report


def heads_since(records: list[history.DeployRecord], since: int) -> list[str]:
    """The schema heads the database went through from record `since` on (recorded ones)."""
    heads: list[str] = []
    for r in records:
        for head in (r.schema_before, r.schema_head) if r.n >= since else ():
            if head is not None and head not in heads:
                heads.append(head)
    return heads


def raise_refused_rollback(
    stack: StackOps, report: DeployReport, target: Target, breaking: str | None
) -> None:
    command = f"rollback --stack {stack.name} --app {report.app} {target.flag}".rstrip()
    data = (
        f"`{command} --restore-data` restores {target.point} first (writes since then are lost)"
        if target.point
        else "no rollback point is recorded for it, so only a fail-forward deploy remains"
    )
    via = (
        f", and since then it went through {breaking}, which is not declared compatible "
        "(deploy.compatibleHeads)"
        if breaking is not None and breaking != report.schema_before
        else ""
    )
    raise TaskFailed(
        f"rollback refused, nothing was changed: {target.label} ran on schema head "
        f"{target.schema_head or 'none'} and the database is at {report.schema_before or 'none'}"
        f"{via}; those images may not read this schema. {data}"
    )


def history_rows(stack: StackOps, app: str) -> list[dict[str, Any]]:
    return [
        r.model_dump(by_alias=True, exclude_none=True) for r in read_history(stack).get(app, [])
    ]


def describe_plan(report: DeployReport) -> list[str]:
    lines = [
        f"{s}: {report.before.get(s, '(none)')} -> {i}"
        for s, i in sorted(report.after.items())
        if report.before.get(s) != i
    ]
    return [*lines, f"migration: {report.migration}"]


def dumps(report: DeployReport) -> str:
    return json.dumps(report.to_json(), sort_keys=True)
