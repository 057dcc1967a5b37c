"""The stack form of `replay` (`--stack/--app`, settings from the `ops` output) and
`--where cluster` (the same replay as a Job the stack runs), against `FakeStack`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import Result
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

from automation.jobrun import run_task
from automation.stack import pulumi_adapter as pulumi_stack
from automation.tasks.replay.run import JOB_DATABASE_URL_ENV, JOB_SECRET_ENV
from tests import schemas
from tests.fakes.fake_stack import FakeStack, ProgramModel, sample_ops
from tests.receivers import Receiver, stripe_verifier
from tests.services import Postgres

SECRET = "whsec_stack_form_secret"
DB_PASSWORD = "not-needed-by-pgserver"


def run_cli(*args: str) -> Result:
    from automation.cli import app

    return CliRunner().invoke(app, ["replay", *args])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(verify=stripe_verifier(SECRET)) as server:
        yield server


@pytest.fixture
def qr_db(postgres: Postgres) -> tuple[str, str]:
    """(database name, URL) of a QR database with 30 webhook log rows (10 failed)."""
    url = postgres.create_database("stackreplay")
    with psycopg.connect(url) as conn:
        conn.execute(schemas.QR_DDL)
        schemas.insert_webhook_logs(conn, 30, stripe=True)
    return conninfo_to_dict(url)["dbname"], url


def qr_ops(postgres: Postgres, db_name: str, receiver: Receiver, **webhook: Any) -> dict[str, Any]:
    ops = sample_ops("qr", "dev")
    ops["database"].update(
        host=postgres.socket_dir, port=5432, name=db_name, user="postgres", password=DB_PASSWORD
    )
    ops["webhook"] = {
        "url": receiver.url,
        "path": "/webhook",
        "signing": "stripe",
        "header": "Stripe-Signature",
        "secret": SECRET,
        "secretName": "stripe-webhook-secret",
        "rateLimitPerMinute": 6000,
        "table": "webhook_logs",
        **webhook,
    }
    return ops


def use_stack(monkeypatch: pytest.MonkeyPatch, stack: FakeStack) -> None:
    monkeypatch.setattr(pulumi_stack, "open_stack", lambda name: stack)


def failed_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {
            r[0] for r in conn.execute("SELECT event_id FROM webhook_logs WHERE status='failed'")
        }


def test_stack_form_takes_everything_from_the_ops_output(
    postgres: Postgres, qr_db: tuple[str, str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, url = qr_db
    stack = FakeStack("dev", outputs={"ops": {"qr": qr_ops(postgres, name, receiver)}})
    use_stack(monkeypatch, stack)

    result = run_cli("--stack", "dev", "--app", "qr", "--yes", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rate_limit"] == "6000/minute" and report["signing"] == "stripe"
    assert receiver.acked_ids() == failed_ids(url)  # signed with the ops secret, verified
    assert SECRET not in result.output and DB_PASSWORD not in result.output
    assert stack.calls == []  # a local replay changes nothing on the stack


def test_stack_form_rate_limit_defaults_to_30_per_minute_without_one(
    postgres: Postgres, qr_db: tuple[str, str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = qr_db
    ops = qr_ops(postgres, name, receiver, rateLimitPerMinute=None)
    use_stack(monkeypatch, FakeStack("dev", outputs={"ops": {"qr": ops}}))
    result = run_cli("--stack", "dev", "--app", "qr", "--dry-run", "--json")
    assert json.loads(result.stdout)["rate_limit"] == "30/minute"
    assert receiver.arrivals == []


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--app", "shop"], "--app 'shop'"),
        (["--app", "qr", "--webhook-url", "http://x/"], "--webhook-url: not with --stack/--app"),
        (["--app", "quickbite"], "declares no webhook"),
        (["--app", "shop2"], "no value for the webhook secret 'shop-webhook-secret'"),
    ],
)
def test_stack_form_bad_input(
    postgres: Postgres,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    match: str,
) -> None:
    ops = {
        "qr": qr_ops(postgres, "x", receiver),
        "quickbite": sample_ops("quickbite", "dev", webhook=None),  # an app without a webhook
        "shop2": qr_ops(postgres, "x", receiver, secret=None, secretName="shop-webhook-secret"),
    }
    use_stack(monkeypatch, FakeStack("dev", outputs={"ops": ops}))
    result = run_cli("--stack", "dev", *args, "--yes")
    assert result.exit_code == 2
    assert match in result.stderr and "Traceback" not in result.output


def test_where_cluster_runs_the_same_replay_as_a_job(
    postgres: Postgres, qr_db: tuple[str, str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, url = qr_db
    requests: list[dict[str, Any]] = []

    def job(request: dict[str, Any]) -> dict[str, Any]:
        """What the TaskJob does: `automation.jobrun` with the app's Secrets in its environment."""
        requests.append(request)
        monkeypatch.setenv(JOB_SECRET_ENV, SECRET)
        monkeypatch.setenv(JOB_DATABASE_URL_ENV, url)
        return run_task([request["task"], *request["args"]])

    stack = FakeStack(
        "prod",
        outputs={"ops": {"qr": qr_ops(postgres, name, receiver)}},
        on_up=ProgramModel(job_runner=job),
    )
    use_stack(monkeypatch, stack)

    result = run_cli(
        "--stack",
        "prod",
        "--app",
        "qr",
        "--where",
        "cluster",
        "--type",
        "checkout.*",
        "--since",
        "2h",
        "--yes",
        "--json",
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["delivered"] == len(failed_ids(url)) == 10
    assert receiver.acked_ids() == failed_ids(url)
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]
    (request,) = requests
    assert request["task"] == "replay" and request["app"] == "qr"
    job_args = " ".join(request["args"])
    assert SECRET not in job_args and DB_PASSWORD not in job_args
    assert f"--secret-env {JOB_SECRET_ENV}" in job_args
    assert f"--from-db-env {JOB_DATABASE_URL_ENV}" in job_args
    assert "--since 20" in job_args  # the relative time was pinned before the Job ran


def test_where_cluster_reports_the_jobs_failure(
    postgres: Postgres, qr_db: tuple[str, str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, url = qr_db

    def job(request: dict[str, Any]) -> dict[str, Any]:
        monkeypatch.setenv(JOB_SECRET_ENV, "whsec_rotated_meanwhile")
        monkeypatch.setenv(JOB_DATABASE_URL_ENV, url)
        return run_task([request["task"], *request["args"]])

    stack = FakeStack(
        "prod",
        outputs={"ops": {"qr": qr_ops(postgres, name, receiver)}},
        on_up=ProgramModel(job_runner=job),
    )
    use_stack(monkeypatch, stack)
    result = run_cli("--stack", "prod", "--app", "qr", "--where", "cluster", "--yes")
    assert result.exit_code == 1
    assert "not delivered" in result.stderr and "Traceback" not in result.output
    assert stack.ops_sequence() == ["set_config", "up", "remove_config", "up"]
    assert receiver.acked_ids() == set()
