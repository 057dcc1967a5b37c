"""Every next step a check names resolves: each `docs/runbook.md#anchor` is a section of the
runbook, and docs/status.md documents every check name the checks produce."""

from __future__ import annotations

import re
from pathlib import Path

from tests.alerts.test_docs import github_slug, headings

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "docs" / "runbook.md"
CHECKS = REPO / "automation" / "tasks" / "checks"


def anchors_in_code() -> set[str]:
    text = "".join(p.read_text() for p in CHECKS.glob("*.py"))
    return set(re.findall(r'\{RUNBOOK\}#([a-z0-9-]+)"', text))


def check_names_in_code() -> set[str]:
    text = "".join(p.read_text() for p in CHECKS.glob("*.py"))
    return set(re.findall(r'Check\(\s*"([a-z]+(?::[a-z-]+)?)"', text))


def test_every_next_step_anchor_is_a_runbook_section() -> None:
    slugs = {github_slug(h) for level in ("##", "###") for h in headings(RUNBOOK, level)}
    anchors = anchors_in_code()
    assert len(anchors) >= 12
    assert anchors <= slugs, anchors - slugs


def test_status_doc_names_every_check() -> None:
    doc = (REPO / "docs" / "status.md").read_text()
    names = check_names_in_code()
    assert {"database:connections", "redis:memory", "backup:drill", "stack:lock"} <= names
    missing = {n for n in names if f"`{n}`" not in doc}
    assert not missing, missing
