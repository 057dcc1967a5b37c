"""docs/alerts.md and the runbook fragment cover every alert and match the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.alerting.model import AlertRule
from components.alerting.rules import AlertParams, build_rule_groups
from components.catalog import CATALOG

QR_METRICS, QR_THRESHOLDS = CATALOG["qr"].metrics, CATALOG["qr"].thresholds
QUICKBITE_METRICS = CATALOG["quickbite"].metrics
QUICKBITE_THRESHOLDS = CATALOG["quickbite"].thresholds

ROOT = Path(__file__).resolve().parents[2]
ALERTS_DOC = ROOT / "docs" / "alerts.md"
RUNBOOK = ROOT / "docs" / "runbook.md"


def documented_rules() -> list[tuple[str, AlertRule]]:
    """Both systems with the prod defaults docs/alerts.md states."""
    out = []
    for app, metrics, thresholds, parts in (
        ("qr", QR_METRICS, QR_THRESHOLDS, ("db", "redis", "objects")),
        ("quickbite", QUICKBITE_METRICS, QUICKBITE_THRESHOLDS, ("db", "redis")),
    ):
        params = AlertParams(
            namespace=app,
            runbook_base_url="https://example.test/runbook.md",
            pvc_regex=f"data-{app}-(db|redis)-.*",
            backup_margin_seconds=3600,
            backup_parts=parts,
            thresholds=thresholds,
            pitr=True,  # the docs describe the point-in-time recovery alerts too
        )
        out += [(app, r) for g in build_rule_groups(app, metrics, params) for r in g.rules]
    return out


def github_slug(heading: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


RULES = documented_rules()
NAMES = sorted({r.name for _, r in RULES})


def headings(path: Path, level: str) -> list[str]:
    return re.findall(rf"^{level} (.+)$", path.read_text(), flags=re.M)


def test_every_alert_has_a_runbook_section_its_url_resolves_to() -> None:
    alert_sections = [h for h in headings(RUNBOOK, "###") if h.startswith("Alert: ")]
    slugs = {github_slug(h) for h in alert_sections}
    for _, rule in RULES:
        assert rule.runbook_url.split("#", 1)[1] in slugs, rule.name
    assert sorted(h.removeprefix("Alert: ") for h in alert_sections) == NAMES


def test_runbook_links_resolve() -> None:
    text = RUNBOOK.read_text()
    slugs = {github_slug(h) for level in ("##", "###") for h in headings(RUNBOOK, level)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) > 20
    for link in links:
        assert link in slugs, link


def test_alerts_doc_lists_every_alert() -> None:
    assert sorted(headings(ALERTS_DOC, "###")) == NAMES
    table_names = re.findall(r"^\| \[(\w+)\]\(#", ALERTS_DOC.read_text(), flags=re.M)
    assert sorted(table_names) == NAMES


@pytest.mark.parametrize(("app", "rule"), RULES, ids=[f"{a}-{r.name}" for a, r in RULES])
def test_alerts_doc_promql_matches_the_code(app: str, rule: AlertRule) -> None:
    assert f"```promql\n{rule.expr}\n```" in ALERTS_DOC.read_text()


GROUPS = {"maintenance", "backups", "pitr"}  # commands with subcommands


def documented_commands() -> dict[tuple[str, ...], set[str]]:
    """`python -m automation ...` snippets of both docs: command path → flags used with it."""
    found: dict[tuple[str, ...], set[str]] = {}
    for path in (ALERTS_DOC, RUNBOOK):
        for snippet in re.findall(r"`python -m automation ([^`]+)`", path.read_text()):
            tokens = snippet.split()
            command = tuple(tokens[:2]) if tokens[0] in GROUPS else (tokens[0],)
            flags = {t.split("=")[0] for t in tokens if t.startswith("--")}
            found.setdefault(command, set()).update(flags)
    return found


def test_documented_commands_and_flags_exist() -> None:
    from typer.testing import CliRunner

    from automation.cli import app

    commands = documented_commands()
    assert {("restore",), ("replay",), ("backup",), ("verify-backup",)} <= set(commands)
    runner = CliRunner()
    for command, flags in commands.items():
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
        assert result.exit_code == 0, (command, result.output)
        for flag in flags:
            assert re.search(rf"{re.escape(flag)}\b", result.output), (command, flag)
