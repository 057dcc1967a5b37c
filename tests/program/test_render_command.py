"""`python -m automation render` as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "automation", "render", *args],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_prod_without_outside_secrets_is_bad_input_naming_the_keys(tmp_path: Path) -> None:
    result = run("--stack", "prod", "--out", str(tmp_path))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "externalSecrets: missing qr.stripeSecretKey, qr.stripeWebhookSecret" in lines[0]
    assert not list(tmp_path.iterdir())


def test_unknown_stack_is_bad_input(tmp_path: Path) -> None:
    result = run("--stack", "staging", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--stack 'staging': no Pulumi.staging.yaml (stacks: dev, prod)" in result.stderr


def test_both_stacks_render_to_files(tmp_path: Path) -> None:
    for stack, extra in (("dev", []), ("prod", ["--placeholder-secrets"])):
        out = tmp_path / stack
        result = run("--stack", stack, "--out", str(out), "--json", *extra)
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary == json.loads((out / "summary.json").read_text())
        assert summary["resources"] > 50
    prod = tmp_path / "prod"
    assert json.loads((prod / "summary.json").read_text())["placeholder_secrets"] == [
        "qr-auth0ClientSecret", "qr-stripeSecretKey", "qr-stripeWebhookSecret",
        "quickbite-paymentWebhookSecret",
    ]  # fmt: skip
    manifests = [yaml.safe_load(p.read_text()) for p in (prod / "kubernetes").glob("*.yaml")]
    assert {m["kind"] for m in manifests} >= {"Deployment", "StatefulSet", "CronJob", "Ingress"}
    assert (tmp_path / "dev" / "resources" / "qr-api-container.json").exists()
    assert not list((tmp_path / "dev" / "kubernetes").iterdir())
