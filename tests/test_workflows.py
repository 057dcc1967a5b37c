"""The GitHub workflows validate against the workflow schema vendored in check-jsonschema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOWS = sorted((Path(__file__).parent.parent / ".github" / "workflows").glob("*.yml"))


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS[0].parent / name).read_text())


def test_there_are_a_pr_a_deploy_and_a_drift_workflow() -> None:
    assert [p.name for p in WORKFLOWS] == ["deploy.yml", "drift.yml", "pull-request.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_vendored_schema(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    steps: []\n")  # no runs-on
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         str(broken)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1


def test_previews_comment_on_pull_requests_and_prod_is_manual() -> None:
    pr = workflow("pull-request.yml")
    assert pr["permissions"]["pull-requests"] == "write"
    steps = pr["jobs"]["preview"]["steps"]
    (preview,) = [s for s in steps if "pulumi/actions" in s.get("uses", "")]
    assert preview["with"]["command"] == "preview"
    assert preview["with"]["comment-on-pr"] is True
    assert "secrets.PULUMI_BACKEND_URL" in preview["with"]["cloud-url"]
    assert "secrets.PULUMI_CONFIG_PASSPHRASE" in preview["env"]["PULUMI_CONFIG_PASSPHRASE"]
    assert pr["jobs"]["preview"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    deploy = workflow("deploy.yml")
    triggers = deploy[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert triggers["workflow_dispatch"]["inputs"]["stack"]["options"] == ["dev", "prod"]
    assert "production" in deploy["jobs"]["up"]["environment"]


def test_drift_is_checked_nightly_on_prod_and_opens_an_issue() -> None:
    drift = workflow("drift.yml")
    (schedule,) = drift[True]["schedule"]  # YAML 1.1 reads the key `on` as True
    minute, hour, dom, month, dow = schedule["cron"].split()
    assert (dom, month, dow) == ("*", "*", "*") and minute.isdigit() and hour.isdigit()
    assert drift["permissions"] == {"contents": "read", "issues": "write", "id-token": "write"}
    assert drift["concurrency"]["group"] == "deploy-prod"  # waits for a prod deploy
    steps = drift["jobs"]["preview"]["steps"]
    (preview,) = [s for s in steps if "pulumi/actions" in s.get("uses", "")]
    assert preview["with"]["command"] == "preview"
    assert preview["with"]["stack-name"] == "prod"
    assert preview["with"]["refresh"] is True
    assert preview["with"]["expect-no-changes"] is True
    (report,) = [s for s in steps if "github-script" in s.get("uses", "")]
    assert report["if"] == f"failure() && steps.{preview['id']}.outcome == 'failure'"
    script = report["with"]["script"]
    assert "issues.create(" in script and "issues.createComment(" in script
    assert 'labels: "drift"' in script  # one open drift issue, updated rather than duplicated


def test_every_workflow_installs_from_the_hashed_lock() -> None:
    for path in WORKFLOWS:
        runs = [
            s.get("run", "") for job in workflow(path.name)["jobs"].values() for s in job["steps"]
        ]
        installs = [r for r in runs if "pip install" in r]
        assert all("--require-hashes -r requirements.lock" in r for r in installs), path.name


@pytest.mark.parametrize("name", ["deploy.yml", "drift.yml", "pull-request.yml"])
def test_a_workflow_that_assumes_an_aws_role_may_request_the_oidc_token(name: str) -> None:
    """configure-aws-credentials with role-to-assume (and no keys) needs `id-token: write`;
    without it every run fails at the credentials step, and drift would never be reported."""
    flow = workflow(name)
    steps = [s for job in flow["jobs"].values() for s in job.get("steps", [])]
    assumes = [s for s in steps if "configure-aws-credentials" in s.get("uses", "")]
    assert assumes, f"{name} assumes no AWS role"
    assert all("role-to-assume" in s["with"] for s in assumes)
    assert flow["permissions"]["id-token"] == "write"
