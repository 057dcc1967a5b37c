"""The GitHub workflows validate against the workflow schema vendored in check-jsonschema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOWS = sorted((Path(__file__).parent.parent / ".github" / "workflows").glob("*.yml"))


def test_there_are_a_pr_and_a_deploy_workflow() -> None:
    assert [p.name for p in WORKFLOWS] == ["deploy.yml", "pull-request.yml"]


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
    pr = yaml.safe_load(WORKFLOWS[1].read_text())
    assert pr["permissions"]["pull-requests"] == "write"
    steps = pr["jobs"]["preview"]["steps"]
    (preview,) = [s for s in steps if "pulumi/actions" in s.get("uses", "")]
    assert preview["with"]["command"] == "preview"
    assert preview["with"]["comment-on-pr"] is True
    assert "secrets.PULUMI_BACKEND_URL" in preview["with"]["cloud-url"]
    assert "secrets.PULUMI_CONFIG_PASSPHRASE" in preview["env"]["PULUMI_CONFIG_PASSPHRASE"]
    assert pr["jobs"]["preview"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    deploy = yaml.safe_load(WORKFLOWS[0].read_text())
    triggers = deploy[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert triggers["workflow_dispatch"]["inputs"]["stack"]["options"] == ["dev", "prod"]
    assert "production" in deploy["jobs"]["up"]["environment"]
