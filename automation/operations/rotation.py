"""Secret rotation as a stack operation: bump an epoch in config, `up`, and for the database
password apply the new value to PostgreSQL before any pod gets it.

Config `opsplane:rotation` is written as one JSON object (so `Pulumi.<stack>.yaml` never holds a
half-written rotation): `{app: {secret: {"epoch", "rotatedAt", "pending"}}}`, epoch an int,
rotatedAt ISO-8601 UTC; a bare int is short for `{"epoch": int}`. The program turns each epoch into
`RandomPassword` keepers (two slots per secret, current slot = epoch % 2, so the previous value
stays available).

Database password, in this order (the only order in which no pod holds a password the database
rejects):
1. `pending: true` + epoch+1, `up`: the new password exists (`ops[app].database.pendingPassword`),
   pods keep the current one;
2. `ALTER ROLE ... PASSWORD` through a connection made with the current password; the password is
   sent as a SCRAM verifier computed client-side, so the server never sees (or logs) it in clear;
3. `pending: false` + `rotatedAt`, `up`: pods roll onto the new password.
A failure after step 1 leaves a pending rotation that `--resume` finishes; the error says exactly
which side holds which password.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from automation.errors import OpsError, TaskFailed, UserInputError
from automation.stack.protocol import StackOps, app_ops
from contract.rotation import ROTATION_KEY, RotationState, parse_rotation

DB_PASSWORD = "db-password"
EXTERNAL_SECRETS_KEY = "opsplane:externalSecrets"
OnOutput = Callable[[str], None]


# --- config state (contract.rotation: the one model the program reads too) ---------------------
def _bad_rotation(stack: StackOps, detail: str) -> UserInputError:
    return UserInputError(
        f"config {ROTATION_KEY} on stack {stack.name!r}: {detail}; fix it with "
        f"`pulumi config edit` or `pulumi config set --stack {stack.name} {ROTATION_KEY} '<json>'`"
    )


def read_rotation(stack: StackOps) -> dict[str, dict[str, Any]]:
    """The whole `opsplane:rotation` object as stored (empty when unset)."""
    raw = stack.get_config(ROTATION_KEY)
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise _bad_rotation(stack, "not a JSON object") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise _bad_rotation(stack, "must be an object of apps, each an object of secrets")
    return value


def state_of(stack: StackOps, app: str, secret: str) -> RotationState | None:
    """The configured rotation state of one secret, or None when config never mentioned it."""
    try:
        rotation = parse_rotation(read_rotation(stack))
    except ValueError as exc:
        raise _bad_rotation(
            stack, f"{exc} (each secret is an int or {{epoch, rotatedAt, pending}})"
        ) from None
    return rotation.get(app, {}).get(secret)


def write_state(stack: StackOps, app: str, secret: str, state: RotationState) -> None:
    """Replace one secret's entry, keeping every other app and secret as it was."""
    rotation = read_rotation(stack)
    rotation.setdefault(app, {})[secret] = state.to_config()
    stack.set_config(ROTATION_KEY, json.dumps(rotation, sort_keys=True))


# --- what the app has ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SecretInfo:
    """One secret as the stack reports it, merged with its configured rotation state."""

    name: str
    kind: str
    epoch: int | None  # None for external secrets: they have no epoch
    workloads: list[str]
    rotated_at: str | None = None
    pending: bool = False
    config_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "epoch": self.epoch,
            "rotatedAt": self.rotated_at,
            "pending": self.pending,
            "workloads": self.workloads,
            "configKey": self.config_key,
        }


def list_secrets(stack: StackOps, app: str) -> list[SecretInfo]:
    """Every secret of the app: kind, epoch, last rotation, the workloads that use it."""
    rotation = read_rotation(stack).get(app, {})
    infos = []
    for name, spec in sorted((app_ops(stack, app).get("secrets") or {}).items()):
        state = state_of(stack, app, name) if name in rotation else None
        kind = str(spec.get("kind", "generated"))
        epoch = state.epoch if state else int(spec.get("epoch") or 0)
        infos.append(
            SecretInfo(
                name=name,
                kind=kind,
                epoch=epoch if kind == "generated" else None,
                workloads=list(spec.get("workloads") or []),
                rotated_at=(state.rotated_at_text if state else None) or spec.get("rotatedAt"),
                pending=state.pending if state else False,
                config_key=spec.get("configKey"),
            )
        )
    return infos


def secret_info(stack: StackOps, app: str, secret: str) -> SecretInfo:
    infos = {info.name: info for info in list_secrets(stack, app)}
    if secret not in infos:
        known = ", ".join(sorted(infos)) or "none"
        raise UserInputError(f"--secret {secret!r}: {app} has no such secret (it has: {known})")
    return infos[secret]


def external_instructions(stack: StackOps, app: str, info: SecretInfo) -> str:
    """How to rotate a secret opsplane does not own: new value from the provider, then `up`."""
    key = info.config_key or info.name
    full_key = key if ":" in key else f"{EXTERNAL_SECRETS_KEY}.{app}.{key}"
    return (
        f"--secret {info.name!r} is external (issued by its provider, not generated): rotate it in "
        f"the provider's dashboard, then run `pulumi config set --secret --path --stack "
        f"{stack.name} '{full_key}' <new value>` and `pulumi up --stack {stack.name}` "
        f"(rolls {', '.join(info.workloads) or 'nothing'})"
    )


# --- the plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RotationPlan:
    stack: str
    app: str
    secret: str
    from_epoch: int
    to_epoch: int
    workloads: list[str]
    database_role: str | None = None  # set for the database password: ALTER ROLE target

    def describe(self) -> str:
        rolls = ", ".join(self.workloads) or "no workloads"
        db = f"; PostgreSQL role {self.database_role} gets it first" if self.database_role else ""
        return (
            f"rotate {self.app}/{self.secret} on {self.stack}: epoch {self.from_epoch} -> "
            f"{self.to_epoch}, rolls {rolls}{db}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "app": self.app,
            "secret": self.secret,
            "fromEpoch": self.from_epoch,
            "toEpoch": self.to_epoch,
            "workloads": self.workloads,
            "databaseRole": self.database_role,
        }


def plan_rotation(stack: StackOps, app: str, secret: str) -> RotationPlan:
    """What `rotate` will do; refuses external secrets (with instructions) and pending rotations."""
    info = secret_info(stack, app, secret)
    if info.kind == "external":
        raise UserInputError(external_instructions(stack, app, info))
    if info.pending:
        raise UserInputError(
            f"--secret {secret!r}: a rotation to epoch {info.epoch} is still pending: finish it "
            f"with `{resume_command(stack, app, secret)}`"
        )
    role = str(app_ops(stack, app)["database"]["user"]) if secret == DB_PASSWORD else None
    epoch = info.epoch or 0
    return RotationPlan(
        stack=stack.name,
        app=app,
        secret=secret,
        from_epoch=epoch,
        to_epoch=epoch + 1,
        workloads=info.workloads,
        database_role=role,
    )


def resume_command(stack: StackOps, app: str, secret: str) -> str:
    return (
        f"python -m automation rotate --stack {stack.name} --app {app} --secret {secret} --resume"
    )


# --- the database side --------------------------------------------------------------------------
@dataclass(frozen=True)
class DatabaseTarget:
    """Where ALTER ROLE runs: the stack's database, or `--database-url` (e.g. a port-forward)."""

    params: dict[str, Any]
    role: str
    url_has_password: bool

    @classmethod
    def from_ops(cls, database: dict[str, Any], override_url: str | None) -> DatabaseTarget:
        params: dict[str, Any] = {
            "host": database.get("host"),
            "port": database.get("port"),
            "dbname": database.get("name"),
            "user": database.get("user"),
        }
        url_has_password = False
        if override_url:
            try:
                given = conninfo_to_dict(override_url)
            except psycopg.ProgrammingError as exc:
                raise UserInputError(f"--database-url: not a PostgreSQL URL ({exc})") from None
            url_has_password = "password" in given
            params.update({k: v for k, v in given.items() if v not in (None, "")})
        return cls(
            params={k: v for k, v in params.items() if v is not None},
            role=str(database["user"]),
            url_has_password=url_has_password,
        )

    def conninfo(self, password: str) -> str:
        """Connection string; the stack's password unless the URL brought its own credentials."""
        if self.url_has_password:
            return make_conninfo(**self.params)
        return make_conninfo(**{**self.params, "password": password})

    def where(self) -> str:
        host = self.params.get("host", "localhost")
        return f"{host}:{self.params.get('port', 5432)}/{self.params.get('dbname', '')}"


def _connect(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect_with_any(target: DatabaseTarget, passwords: list[str]) -> psycopg.Connection:
    """A connection using the first password the database accepts (resume: old or new)."""
    last: BaseException | None = None
    for password in passwords:
        try:
            return _connect(target.conninfo(password))
        except psycopg.OperationalError as exc:
            last = exc
    raise TaskFailed(
        f"cannot log in to PostgreSQL at {target.where()} as the app's role "
        f"({_first_line(last or Exception('no password'))}); from outside the cluster pass "
        "--database-url pointing at a port-forward"
    )


def set_role_password(conn: psycopg.Connection, role: str, new_password: str) -> None:
    """ALTER ROLE with the password as a client-side SCRAM verifier (never sent or logged clear).

    `ALTER ROLE ... PASSWORD` takes no bind parameters, so the verifier goes in as `sql.Literal`.
    """
    verifier = conn.pgconn.encrypt_password(new_password.encode(), role.encode(), None)
    statement = sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(verifier.decode())
    )
    conn.execute(statement)


def check_login(target: DatabaseTarget, password: str) -> None:
    """Prove the database accepts `password` for the role (skipped for URL-given credentials)."""
    if target.url_has_password and target.params.get("user") != target.role:
        return
    with _connect(make_conninfo(**{**target.params, "user": target.role, "password": password})):
        pass


# --- the rotation -------------------------------------------------------------------------------
@dataclass
class RotationReport:
    plan: RotationPlan
    steps: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"

    def step(self, name: str, started: float) -> None:
        self.steps.append({"step": name, "seconds": round(time.monotonic() - started, 3)})

    def as_dict(self) -> dict[str, Any]:
        return {**self.plan.as_dict(), "status": self.status, "steps": self.steps}


class RotationIncomplete(TaskFailed):
    """A rotation stopped after its first change; the message says where everything stands."""


def rotate(
    stack: StackOps,
    plan: RotationPlan,
    on_output: OnOutput,
    database_url: str | None = None,
) -> RotationReport:
    """Carry out `plan` (see the module docstring for the database password order)."""
    if plan.secret == DB_PASSWORD:
        return _rotate_database_password(stack, plan, on_output, database_url)
    return _rotate_generated(stack, plan, on_output)


def _timed(report: RotationReport, name: str, action: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = action()
    report.step(name, started)
    return result


def _rotate_generated(stack: StackOps, plan: RotationPlan, on_output: OnOutput) -> RotationReport:
    report = RotationReport(plan)
    state = RotationState(epoch=plan.to_epoch, rotated_at=datetime.now(UTC), pending=False)
    _timed(report, "set epoch", lambda: write_state(stack, plan.app, plan.secret, state))
    try:
        _timed(report, "up (roll workloads)", lambda: stack.up(on_output))
    except OpsError as exc:
        raise RotationIncomplete(
            f"{exc}; config asks for {plan.secret} epoch {plan.to_epoch} but the update stopped, "
            f"so {', '.join(plan.workloads) or 'its users'} may be split between the old and new "
            f"value: finish with `{resume_command(stack, plan.app, plan.secret)}`"
        ) from exc
    report.status = "rotated"
    return report


def _rotate_database_password(
    stack: StackOps, plan: RotationPlan, on_output: OnOutput, database_url: str | None
) -> RotationReport:
    report = RotationReport(plan)
    database = app_ops(stack, plan.app)["database"]
    target = DatabaseTarget.from_ops(database, database_url)
    try:
        _timed(report, "check current login", lambda: _check_current(target, database["password"]))
    except TaskFailed as exc:
        raise TaskFailed(f"{exc}; nothing was changed") from exc
    previous = state_of(stack, plan.app, plan.secret)
    pending = RotationState(
        epoch=plan.to_epoch, rotated_at=previous.rotated_at if previous else None, pending=True
    )
    _timed(report, "set pending", lambda: write_state(stack, plan.app, plan.secret, pending))
    _finish_pending(stack, plan.app, target, on_output, report)
    return report


def _finish_pending(
    stack: StackOps,
    app: str,
    target: DatabaseTarget,
    on_output: OnOutput,
    report: RotationReport,
    resuming: bool = False,
) -> None:
    """From a pending db-password rotation: up, ALTER ROLE, activate, up (also what resume runs)."""
    where = (
        "the pods still use the current password; the database has it too, unless an earlier "
        "run already applied the new one"
        if resuming
        else "the database and the pods still use the current password (nothing is broken)"
    )
    try:
        _timed(report, "up (create new password)", lambda: stack.up(on_output))
        database = app_ops(stack, app)["database"]
        new_password = _pending_password(stack, database)
        _timed(report, "alter role", lambda: _apply(stack, app, target, database, new_password))
    except RotationIncomplete:
        raise
    except OpsError as exc:
        raise RotationIncomplete(
            f"{exc}; {where}; the rotation is pending: finish it with "
            f"`{resume_command(stack, app, DB_PASSWORD)}`"
        ) from exc
    _activate(stack, app, on_output, report)


def _check_current(target: DatabaseTarget, password: str) -> None:
    connect_with_any(target, [password]).close()


def _pending_password(stack: StackOps, database: dict[str, Any]) -> str:
    new_password = database.get("pendingPassword")
    if not new_password:
        raise TaskFailed(
            f"stack {stack.name!r} exported no database.pendingPassword while the rotation is "
            "pending; the program must export it"
        )
    return str(new_password)


def _apply(
    stack: StackOps,
    app: str,
    target: DatabaseTarget,
    database: dict[str, Any],
    new_password: str,
) -> None:
    """ALTER ROLE through a login with the current password, or the new one if already applied."""
    with connect_with_any(target, [database["password"], new_password]) as conn:
        try:
            set_role_password(conn, target.role, new_password)
        except psycopg.Error as exc:
            raise TaskFailed(f"ALTER ROLE {target.role} failed ({_first_line(exc)})") from exc
    try:
        check_login(target, new_password)
    except psycopg.OperationalError as exc:
        raise RotationIncomplete(
            f"ALTER ROLE {target.role} succeeded but a login with the new password was refused "
            f"({_first_line(exc)}); the database has the NEW password, the pods still have the "
            "OLD one and new connections will fail: check the server's pg_hba.conf, then run "
            f"`{resume_command(stack, app, DB_PASSWORD)}`"
        ) from exc


def _activate(stack: StackOps, app: str, on_output: OnOutput, report: RotationReport) -> None:
    state = state_of(stack, app, DB_PASSWORD) or RotationState()
    active = RotationState(epoch=state.epoch, rotated_at=datetime.now(UTC), pending=False)
    try:
        _timed(report, "set active", lambda: write_state(stack, app, DB_PASSWORD, active))
        _timed(report, "up (roll pods)", lambda: stack.up(on_output))
    except OpsError as exc:
        raise RotationIncomplete(
            f"{exc}; the database now has the NEW password but the pods still have the OLD one: "
            "running pods keep their open connections, new connections will fail until this is "
            f"finished: run `{resume_command(stack, app, DB_PASSWORD)}`"
        ) from exc
    report.status = "rotated"


def resume(
    stack: StackOps,
    app: str,
    secret: str,
    on_output: OnOutput,
    database_url: str | None = None,
) -> RotationReport:
    """Finish a rotation that stopped midway; a rotation that is complete is left alone."""
    info = secret_info(stack, app, secret)
    if info.kind == "external":
        raise UserInputError(external_instructions(stack, app, info))
    epoch = info.epoch or 0
    plan = RotationPlan(stack.name, app, secret, epoch, epoch, info.workloads)
    report = RotationReport(plan)
    ops = app_ops(stack, app)
    if secret == DB_PASSWORD and info.pending:
        target = DatabaseTarget.from_ops(ops["database"], database_url)
        _finish_pending(stack, app, target, on_output, report, resuming=True)
        return report
    deployed_epoch = int((ops.get("secrets") or {}).get(secret, {}).get("epoch") or 0)
    unfinished = deployed_epoch != epoch or "pendingPassword" in ops.get("database", {})
    if not unfinished and not info.pending:
        report.status = "nothing to resume"
        return report
    if info.pending:
        done = RotationState(epoch=epoch, rotated_at=datetime.now(UTC), pending=False)
        write_state(stack, app, secret, done)
    try:
        _timed(report, "up (finish)", lambda: stack.up(on_output))
    except OpsError as exc:
        raise RotationIncomplete(
            f"{exc}; {secret} is still not rolled out everywhere: rerun "
            f"`{resume_command(stack, app, secret)}`"
        ) from exc
    report.status = "rotated"
    return report
