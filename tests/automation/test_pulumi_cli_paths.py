"""The real adapter through the real `pulumi.automation` SDK, with a scripted `pulumi` executable
on PATH standing in for the CLI (none is installed here): what the SDK runs, and how each CLI
failure reaches the operator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from automation.cli import app as cli_app
from automation.errors import TaskFailed, UserInputError
from automation.stack.pulumi_adapter import open_stack
from tests.fakes.fake_stack import sample_ops

REPO = Path(__file__).resolve().parents[2]

FAKE_CLI = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    if args == ["version"]:
        print("v3.200.0")
        sys.exit(0)
    with open(os.environ["FAKE_PULUMI_SCENARIO"]) as f:
        rules = json.load(f)
    for rule in rules:
        if all(word in args for word in rule["when"]):
            sys.stdout.write(rule.get("stdout", ""))
            sys.stderr.write(rule.get("stderr", ""))
            sys.exit(rule.get("code", 0))
    """
)


class FakeCli:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        script = bin_dir / "pulumi"
        script.write_text(FAKE_CLI.format(python=sys.executable))
        script.chmod(0o755)
        self.log = tmp_path / "calls.log"
        self.scenario = tmp_path / "scenario.json"
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_PULUMI_LOG": str(self.log),
            "FAKE_PULUMI_SCENARIO": str(self.scenario),
        }
        for key in ("PATH", "FAKE_PULUMI_LOG", "FAKE_PULUMI_SCENARIO"):
            monkeypatch.setenv(key, self.env[key])

    def script(self, *rules: dict[str, Any]) -> None:
        self.scenario.write_text(json.dumps(list(rules)))

    def config_sets(self) -> list[list[str]]:
        return [c for c in self.calls() if "config" in c and "set" in c]

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def invoke(self, *args: str) -> Any:
        """In process (the SDK still runs the scripted CLI as a subprocess)."""
        return CliRunner().invoke(cli_app, list(args))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "automation", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    return FakeCli(tmp_path, monkeypatch)


OUTPUTS = json.dumps({"ops": {"qr": sample_ops("qr", "prod")}})
NOT_FOUND = "error: configuration key 'opsplane:maintenance' not found for stack 'prod'\n"
CONFLICT = "error: [409] Conflict: Another update is currently in progress.\n"


def test_unknown_stack_is_one_line_exit_2(fake_cli: FakeCli) -> None:
    fake_cli.script(
        {"when": ["stack", "select"], "stderr": "error: no stack named 'prod' found\n", "code": 255}
    )
    proc = fake_cli.cli("maintenance", "status", "--stack", "prod", "--app", "qr")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --stack 'prod': no such stack for this project; create it with "
        "`pulumi stack init prod` or pick one from `pulumi stack ls`"
    ]


def test_status_reads_outputs_and_config_through_the_sdk(fake_cli: FakeCli) -> None:
    fake_cli.script(
        {"when": ["stack", "output"], "stdout": OUTPUTS},
        {"when": ["config", "get"], "stderr": NOT_FOUND, "code": 255},
    )
    proc = fake_cli.invoke("maintenance", "status", "--stack", "prod", "--app", "qr", "--json")
    assert proc.exit_code == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["configured"] is False and status["writers"] == ["api", "web", "admin"]
    assert ["--non-interactive", "stack", "select", "--stack", "prod"] in fake_cli.calls()
    assert any("--show-secrets" in call for call in fake_cli.calls())


def test_concurrent_update_during_maintenance_on_is_exit_1(fake_cli: FakeCli) -> None:
    fake_cli.script(
        {"when": ["stack", "output"], "stdout": OUTPUTS},
        {"when": ["config", "get"], "stderr": NOT_FOUND, "code": 255},
        {"when": ["up"], "stderr": CONFLICT, "code": 255},
    )
    proc = fake_cli.invoke("maintenance", "on", "--stack", "prod", "--app", "qr", "--yes")
    assert proc.exit_code == 1
    assert "stack 'prod' is being updated by someone else" in proc.stderr
    assert "Traceback" not in proc.stderr
    set_calls = fake_cli.config_sets()
    assert set_calls[0][-1] == '["qr"]' and "opsplane:maintenance" in set_calls[0]


def test_up_failure_reports_the_last_error_line(fake_cli: FakeCli) -> None:
    fake_cli.script(
        {"when": ["stack", "select"]},
        {
            "when": ["up"],
            "stdout": "Updating (prod)\n",
            "stderr": "error: update failed: Job qr-restore: BackoffLimitExceeded\n",
            "code": 255,
        },
    )
    stack = open_stack("prod", REPO)
    with pytest.raises(TaskFailed) as info:
        stack.up(lambda _line: None)
    assert str(info.value) == (
        "`pulumi up` on stack 'prod' failed: update failed: Job qr-restore: BackoffLimitExceeded"
    )


def test_config_roundtrip_through_the_sdk(fake_cli: FakeCli) -> None:
    fake_cli.script(
        {"when": ["config", "get"], "stdout": json.dumps({"value": '["qr"]', "secret": False})}
    )
    stack = open_stack("prod", REPO)
    assert stack.get_config("opsplane:maintenance") == '["qr"]'
    stack.set_config("opsplane:externalSecrets.qr.stripeSecretKey", "sk_x", secret=True, path=True)
    set_call = fake_cli.config_sets()[0]
    assert "--secret" in set_call and "--path" in set_call and set_call[-1] == "sk_x"


def test_missing_cli_from_python_is_user_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserInputError, match="Pulumi CLI is not installed or not on PATH"):
        open_stack("dev", REPO)
