"""`rotate`: epoch bumps against FakeStack, and ALTER ROLE against a real PostgreSQL 16 that
requires scram-sha-256 passwords over TCP on 127.0.0.1 (a private pgserver-built instance)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgserver._commands import initdb, pg_ctl
from pgserver.utils import ensure_prefix_permissions, ensure_user_exists
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.errors import TaskFailed, UserInputError
from automation.operations import rotation
from automation.operations.rotation import (
    ROTATION_KEY,
    RotationIncomplete,
    plan_rotation,
    resume,
    rotate,
)
from automation.stack import pulumi_adapter as pulumi_stack
from tests.fakes.fake_stack import FakeStack, ProgramModel, model_password, sample_ops


# --- a PostgreSQL that checks passwords -----------------------------------------------------------
@dataclass
class ScramPostgres:
    port: int
    log: Path

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        )

    def accepts(self, role: str, password: str) -> bool:
        try:
            psycopg.connect(
                host="127.0.0.1", port=self.port, user=role, password=password, dbname="postgres"
            ).close()
        except psycopg.OperationalError as exc:
            assert "password authentication failed" in str(exc)
            return False
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def scram_pg() -> Iterator[ScramPostgres]:
    """PostgreSQL 16 on 127.0.0.1: `postgres` trusted, every other role needs scram-sha-256."""
    base = Path(tempfile.mkdtemp(prefix="opsplane-scram-"))
    data, log = base / "data", base / "log"
    user = None
    if os.geteuid() == 0:  # postgres refuses to run as root; pgserver uses this system user
        user = "pgserver"
        ensure_user_exists(user)
        ensure_prefix_permissions(base)
        base.chmod(0o777)
    initdb(
        ["--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-sync"], pgdata=data, user=user
    )
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    port = _free_port()
    options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c log_statement=all"
    pg_ctl(["-w", "-o", options, "-l", str(log), "start"], pgdata=data, user=user, timeout=30)
    try:
        yield ScramPostgres(port=port, log=log)
    finally:
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=data, user=user, timeout=30)


@pytest.fixture
def role(scram_pg: ScramPostgres) -> str:
    """A fresh login role whose password is the model's epoch-0 db-password of `qr`."""
    name = f"qr_{uuid.uuid4().hex[:8]}"
    with scram_pg.admin() as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(name),
                psycopg.sql.Literal(model_password("qr", "db-password", 0)),
            )
        )
    return name


def db_stack(scram_pg: ScramPostgres, role: str, **kwargs: Any) -> FakeStack:
    ops = sample_ops("qr")
    ops["database"].update(host="127.0.0.1", port=scram_pg.port, name="postgres", user=role)
    return FakeStack(outputs={"ops": {"qr": ops}}, on_up=ProgramModel(), **kwargs)


OLD = model_password("qr", "db-password", 0)
NEW = model_password("qr", "db-password", 1)


def quiet(_line: str) -> None:
    return None


def record_alter_role(monkeypatch: pytest.MonkeyPatch, stack: FakeStack) -> None:
    real = rotation.set_role_password

    def recorded(conn: psycopg.Connection, role: str, new_password: str) -> None:
        real(conn, role, new_password)
        stack.note("alter-role")

    monkeypatch.setattr(rotation, "set_role_password", recorded)


def rotation_entry(stack: FakeStack, app: str = "qr", secret: str = "db-password") -> dict:
    return json.loads(stack.config[ROTATION_KEY])[app][secret]


# --- database password ----------------------------------------------------------------------------
def test_db_password_order_and_the_database_accepts_only_the_new_one(
    scram_pg: ScramPostgres, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = db_stack(scram_pg, role)
    record_alter_role(monkeypatch, stack)
    states: list[dict] = []
    stack_set = stack.set_config
    monkeypatch.setattr(
        stack,
        "set_config",
        lambda k, v, **kw: (states.append(json.loads(v)), stack_set(k, v, **kw)),
    )
    report = rotate(stack, plan_rotation(stack, "qr", "db-password"), quiet)

    assert stack.ops_sequence() == ["set_config", "up", "alter-role", "set_config", "up"]
    assert states[0]["qr"]["db-password"]["pending"] is True
    assert states[0]["qr"]["db-password"]["epoch"] == 1
    assert states[1]["qr"]["db-password"]["pending"] is False
    assert states[1]["qr"]["db-password"]["rotatedAt"].endswith("Z")
    assert report.status == "rotated"
    assert not scram_pg.accepts(role, OLD)
    assert scram_pg.accepts(role, NEW)
    database = stack.outputs()["ops"]["qr"]["database"]
    assert database["password"] == NEW and "pendingPassword" not in database


def test_password_travels_as_a_scram_verifier_never_in_clear(
    scram_pg: ScramPostgres, role: str
) -> None:
    stack = db_stack(scram_pg, role)
    rotate(stack, plan_rotation(stack, "qr", "db-password"), quiet)
    with scram_pg.admin() as conn:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role])
        assert stored.fetchone()[0].startswith("SCRAM-SHA-256$")
    log = scram_pg.log.read_text(errors="replace")
    assert "ALTER ROLE" in log  # log_statement=all saw the statement...
    assert NEW not in log  # ...but not the password


def test_failure_after_alter_role_is_explained_and_resume_finishes(
    scram_pg: ScramPostgres, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = db_stack(scram_pg, role, fail_on_up=2)
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)
    args = [
        "rotate",
        "--stack",
        "dev",
        "--app",
        "qr",
        "--secret",
        "db-password",
        "--no-verify",
        "--yes",
    ]
    result = CliRunner().invoke(cli_app, args)

    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "the database now has the NEW password but the pods still have the OLD one" in message
    assert "new connections will fail" in message
    assert (
        "python -m automation rotate --stack dev --app qr --secret db-password --resume" in message
    )
    assert "Traceback" not in result.stderr
    assert NEW not in result.output and OLD not in result.output
    assert scram_pg.accepts(role, NEW) and not scram_pg.accepts(role, OLD)
    assert stack.outputs()["ops"]["qr"]["database"]["password"] == OLD  # pods: still old

    resumed = CliRunner().invoke(cli_app, [*args[:-1], "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "rotated"
    assert stack.outputs()["ops"]["qr"]["database"]["password"] == NEW
    assert scram_pg.accepts(role, NEW)


def test_failure_before_alter_role_changes_no_password_and_resume_completes(
    scram_pg: ScramPostgres, role: str
) -> None:
    stack = db_stack(scram_pg, role, fail_on_up=1)
    with pytest.raises(RotationIncomplete) as info:
        rotate(stack, plan_rotation(stack, "qr", "db-password"), quiet)
    assert "still use the current password (nothing is broken)" in str(info.value)
    assert scram_pg.accepts(role, OLD)
    assert rotation_entry(stack)["pending"] is True

    report = resume(stack, "qr", "db-password", quiet)
    assert report.status == "rotated"
    assert scram_pg.accepts(role, NEW) and not scram_pg.accepts(role, OLD)
    assert rotation_entry(stack)["pending"] is False


def test_resume_when_role_already_has_the_new_password(scram_pg: ScramPostgres, role: str) -> None:
    """A crash between ALTER ROLE and activation: the current password is refused, resume copes."""
    stack = db_stack(scram_pg, role)
    stack.set_config(
        ROTATION_KEY, json.dumps({"qr": {"db-password": {"epoch": 1, "pending": True}}})
    )
    stack.up(quiet)
    with scram_pg.admin() as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(NEW)
            )
        )
    report = resume(stack, "qr", "db-password", quiet)
    assert report.status == "rotated"
    assert stack.outputs()["ops"]["qr"]["database"]["password"] == NEW
    assert scram_pg.accepts(role, NEW)


def test_unreachable_database_changes_nothing(scram_pg: ScramPostgres, role: str) -> None:
    stack = db_stack(scram_pg, role)
    plan = plan_rotation(stack, "qr", "db-password")
    url = f"postgresql://127.0.0.1:{_free_port()}/postgres"
    with pytest.raises(TaskFailed, match=r"cannot log in .* nothing was changed") as info:
        rotate(stack, plan, quiet, database_url=url)
    assert "--database-url" in str(info.value)
    assert stack.calls == []
    assert scram_pg.accepts(role, OLD)


def test_database_url_override_points_alter_role_elsewhere(
    scram_pg: ScramPostgres, role: str
) -> None:
    stack = db_stack(scram_pg, role)
    ops = stack.outputs()
    ops["ops"]["qr"]["database"]["host"] = "postgres.qr.svc.cluster.local"  # in-cluster DNS
    stack.set_outputs(ops)
    url = f"postgresql://127.0.0.1:{scram_pg.port}/postgres"
    rotate(stack, plan_rotation(stack, "qr", "db-password"), quiet, database_url=url)
    assert scram_pg.accepts(role, NEW)


# --- other secrets, the plan, the command line --------------------------------------------------
def app_stack(**kwargs: Any) -> FakeStack:
    outputs = {"ops": {"qr": sample_ops("qr"), "quickbite": sample_ops("quickbite")}}
    return FakeStack(outputs=outputs, on_up=ProgramModel(), **kwargs)


def test_generated_secret_bumps_epoch_and_runs_up() -> None:
    stack = app_stack(config={ROTATION_KEY: json.dumps({"qr": {"db-password": 4}})})
    report = rotate(stack, plan_rotation(stack, "quickbite", "jwt-secret"), quiet)
    assert stack.ops_sequence() == ["set_config", "up"]
    assert report.plan.from_epoch == 0 and report.plan.to_epoch == 1
    entry = rotation_entry(stack, "quickbite", "jwt-secret")
    assert entry["epoch"] == 1 and entry["pending"] is False and entry["rotatedAt"]
    assert json.loads(stack.config[ROTATION_KEY])["qr"] == {"db-password": 4}  # untouched
    assert stack.outputs()["ops"]["quickbite"]["secrets"]["jwt-secret"]["epoch"] == 1


def test_int_shorthand_is_the_epoch() -> None:
    stack = app_stack(config={ROTATION_KEY: json.dumps({"qr": {"redis-password": 3}})})
    plan = plan_rotation(stack, "qr", "redis-password")
    assert (plan.from_epoch, plan.to_epoch) == (3, 4)


def test_generated_secret_up_failure_says_how_to_finish() -> None:
    stack = app_stack(fail_on_up=1)
    with pytest.raises(RotationIncomplete, match="--secret redis-password --resume"):
        rotate(stack, plan_rotation(stack, "qr", "redis-password"), quiet)
    assert resume(stack, "qr", "redis-password", quiet).status == "rotated"
    assert stack.outputs()["ops"]["qr"]["secrets"]["redis-password"]["epoch"] == 1


def test_resume_with_nothing_pending_changes_nothing() -> None:
    stack = app_stack()
    assert resume(stack, "qr", "redis-password", quiet).status == "nothing to resume"
    assert stack.calls == []


def test_pending_rotation_blocks_a_new_one() -> None:
    pending = {"qr": {"db-password": {"epoch": 2, "pending": True}}}
    stack = app_stack(config={ROTATION_KEY: json.dumps(pending)})
    with pytest.raises(UserInputError, match=r"still pending.*--resume"):
        plan_rotation(stack, "qr", "db-password")


@pytest.fixture
def cli_stack(monkeypatch: pytest.MonkeyPatch) -> FakeStack:
    stack = app_stack()
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name, *a, **k: stack)
    return stack


def run(*args: str) -> Any:
    return CliRunner().invoke(cli_app, ["rotate", "--stack", "dev", "--no-verify", *args])


@pytest.mark.parametrize(
    ("app", "secret", "key"),
    [
        ("qr", "stripe-secret-key", "opsplane:externalSecrets.qr.stripeSecretKey"),
        ("qr", "stripe-webhook-secret", "opsplane:externalSecrets.qr.stripeWebhookSecret"),
        ("qr", "auth0-client-secret", "opsplane:externalSecrets.qr.auth0ClientSecret"),
        (
            "quickbite",
            "payment-webhook-secret",
            "opsplane:externalSecrets.quickbite.paymentWebhookSecret",
        ),
    ],
)
def test_external_secret_gives_the_exact_config_command(
    cli_stack: FakeStack, app: str, secret: str, key: str
) -> None:
    result = run("--app", app, "--secret", secret, "--yes")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert f"pulumi config set --secret --path --stack dev '{key}' <new value>" in message
    assert "pulumi up --stack dev" in message
    assert cli_stack.calls == []


def test_cli_list_shows_every_secret_with_kind_epoch_and_users(cli_stack: FakeStack) -> None:
    run("--app", "quickbite", "--secret", "jwt-secret", "--yes")
    result = run("--app", "quickbite", "--list", "--json")
    assert result.exit_code == 0
    secrets = {s["name"]: s for s in json.loads(result.stdout)["secrets"]}
    assert set(secrets) == {"db-password", "redis-password", "jwt-secret", "payment-webhook-secret"}
    assert secrets["jwt-secret"]["epoch"] == 1 and secrets["jwt-secret"]["rotatedAt"]
    assert secrets["jwt-secret"]["workloads"] == ["backend"]
    assert secrets["payment-webhook-secret"]["kind"] == "external"
    assert secrets["payment-webhook-secret"]["epoch"] is None
    assert secrets["db-password"]["rotatedAt"] is None
    table = run("--app", "quickbite", "--list")
    assert table.exit_code == 0 and "jwt-secret" in table.stdout and "never" in table.stdout


def test_cli_asks_first_and_dry_run_changes_nothing(cli_stack: FakeStack) -> None:
    refused = run("--app", "qr", "--secret", "redis-password")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    dry = run("--app", "qr", "--secret", "redis-password", "--dry-run", "--json")
    assert dry.exit_code == 0
    plan = json.loads(dry.stdout)
    assert plan["toEpoch"] == 1 and plan["workloads"] == ["api", "redis"]
    assert cli_stack.calls == []


def test_cli_bad_input_is_exit_2(cli_stack: FakeStack) -> None:
    assert run("--app", "qr").exit_code == 2
    unknown = run("--app", "qr", "--secret", "nope", "--yes")
    assert unknown.exit_code == 2 and "has no such secret" in unknown.stderr
    assert run("--app", "nope", "--secret", "db-password").exit_code == 2


def test_alter_role_refused_is_one_line_and_leaves_the_password(
    scram_pg: ScramPostgres, role: str
) -> None:
    """Connecting (via --database-url) as another, unprivileged role: ALTER ROLE is refused."""
    other = f"other_{uuid.uuid4().hex[:8]}"
    with scram_pg.admin() as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'otherpw'").format(
                psycopg.sql.Identifier(other)
            )
        )
    stack = db_stack(scram_pg, role)
    url = f"postgresql://{other}:otherpw@127.0.0.1:{scram_pg.port}/postgres"
    with pytest.raises(RotationIncomplete) as info:
        rotate(stack, plan_rotation(stack, "qr", "db-password"), quiet, database_url=url)
    message = str(info.value)
    assert f"ALTER ROLE {role} failed" in message
    assert "still use the current password" in message and "--resume" in message
    assert "\n" not in message
    assert scram_pg.accepts(role, OLD) and not scram_pg.accepts(role, NEW)


def test_new_password_refused_after_alter_role_says_the_database_changed(
    scram_pg: ScramPostgres, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_args: Any) -> None:
        raise psycopg.OperationalError("FATAL: no pg_hba.conf entry for host")

    monkeypatch.setattr(rotation, "check_login", refused)
    stack = db_stack(scram_pg, role)
    with pytest.raises(RotationIncomplete) as info:
        rotate(stack, plan_rotation(stack, "qr", "db-password"), quiet)
    message = str(info.value)
    assert "the database has the NEW password" in message and "--resume" in message
    assert scram_pg.accepts(role, NEW)  # ALTER ROLE did happen, as the message says
    assert stack.ops_sequence() == ["set_config", "up"]  # pods were not rolled


def test_interrupt_during_rotation_points_at_resume(
    cli_stack: FakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rotation, "rotate", interrupted)
    result = run("--app", "qr", "--secret", "redis-password", "--yes")
    assert result.exit_code == 1
    assert "--secret redis-password --resume" in " ".join(result.stderr.split())


def test_external_instructions_accept_a_bare_config_key() -> None:
    ops = sample_ops("qr")
    ops["secrets"]["stripe-secret-key"]["configKey"] = "stripeSecretKey"
    stack = FakeStack(name="prod", outputs={"ops": {"qr": ops}})
    with pytest.raises(UserInputError) as info:
        plan_rotation(stack, "qr", "stripe-secret-key")
    assert "'opsplane:externalSecrets.qr.stripeSecretKey' <new value>" in str(info.value)
    assert "--stack prod" in str(info.value)
