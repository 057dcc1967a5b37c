"""`--help` at 3 a.m.: examples, the two forms' options apart, docstrings that re-wrap, and a
`--database-url` that still says what it is in an 80-column terminal."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from automation.cli import build_app, reflow
from tests.test_bad_input import leaf_commands

# every command (a new command adds its own `epilog`; test_every_command_has_examples)
WITH_EXAMPLES = [
    "backup", "verify-backup", "backups list", "backups pin", "restore", "replay", "rotate",
    "maintenance on", "maintenance off", "maintenance status", "ops", "render",
    "status", "deploy", "rollback", "base-backup", "demo", "pitr status", "pitr archive-command",
]  # fmt: skip


def help_text(name: str, columns: int) -> str:
    result = CliRunner().invoke(
        build_app(), [*name.split(), "--help"], env={"COLUMNS": str(columns)}
    )
    assert result.exit_code == 0, result.output
    return result.output


class TestHelp:
    @pytest.mark.parametrize("name", WITH_EXAMPLES)
    def test_examples_are_shown_and_fit_80_columns(self, name: str) -> None:
        text = help_text(name, 80)
        assert "Examples:" in text
        examples = text.split("Examples:", 1)[1]
        commands = [line.strip() for line in examples.splitlines() if "python -m" in line]
        assert commands and all(
            c.startswith("python -m automation " + name.split()[0]) for c in commands
        )
        assert "…" not in text  # nothing cut off

    def test_docstrings_rewrap_without_stray_breaks(self) -> None:
        for name, command in leaf_commands().items():
            doc = inspect.getdoc(command.callback.__wrapped__) if command.callback else None
            if not doc:
                continue
            text = " ".join(help_text(name, 200).split())  # the terminal's wrapping undone
            for paragraph in reflow(doc).split("\n\n"):
                assert " ".join(paragraph.split()) in text, (name, paragraph)
            wide = [line.strip(" │") for line in help_text(name, 200).splitlines()]
            first = reflow(doc).split("\n\n")[0]
            assert any(line.strip() == first for line in wide), (name, first)  # one line

    @pytest.mark.parametrize("name", ["restore", "replay"])
    def test_stack_form_options_are_grouped_apart(self, name: str) -> None:
        text = help_text(name, 100)
        stack, explicit = text.index("Stack form"), text.index("Explicit form")
        assert text.index("--stack ", stack) < text.index("╰", stack)  # inside its panel
        assert "--stack " not in text[explicit : text.index("╰", explicit)]

    @pytest.mark.parametrize("name", ["backup", "verify-backup", "restore", "rotate"])
    def test_database_url_says_what_it_is_at_80_columns(self, name: str) -> None:
        lines = help_text(name, 80).splitlines()
        [start] = [i for i, line in enumerate(lines) if "--database-url" in line]
        described = " ".join(lines[start : start + 3])
        assert "database" in described.split("--database-url", 1)[1]
        assert "…" not in described


def test_every_command_has_examples() -> None:
    assert set(leaf_commands()) == set(WITH_EXAMPLES)
