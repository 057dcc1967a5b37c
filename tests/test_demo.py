"""`python -m automation demo` (what `make demo` runs): every step with a small seed, interrupts,
a step that fails, and a machine without the dev dependencies.

The whole demo runs here once, with `--rows 300` (seconds, not the default seed's work); `.ci/run`
runs `make demo` itself with the default seed, so CI pays the fixed cost (services, ~12 command
start-ups, the render) twice: about 15 s.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

from automation.demo.play import Runner, StepFailed

REPO = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, "-m", "automation", "demo"]
HEADINGS = [
    "1. Seed a QR-shaped database",
    "2. Back up, list the backups, verify the newest one",
    "3. status: everything passes",
    "4. A disaster: rows deleted, a table dropped",
    "5. Restore the latest backup",
    "6. status: all passing again",
    "7. Replay the failed webhooks, twice",
    "8. Render the prod stack offline",
]


def root_and_redis_port(output: str) -> tuple[Path, int | None]:
    """The demo's temporary directory (it names it as it removes it) and its Redis port (from
    `where everything lives`, when it got that far)."""
    removing = re.search(r"^stopping the services, removing (/\S*opsplane-demo-\S+)$", output, re.M)
    port = re.search(r"redis://127\.0\.0\.1:(\d+)", output)
    assert removing, output
    return Path(removing.group(1)), int(port.group(1)) if port else None


def assert_cleaned_up(root: Path, redis_port: int | None) -> None:
    """The directory is gone and no PostgreSQL, Redis or command of this run is left running
    (commands name the database by its socket directory, percent-encoded)."""
    assert not root.exists(), f"{root} was left behind"
    leftovers = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        mine = str(root) in cmdline or quote(str(root), safe="") in cmdline
        if mine or (redis_port and cmdline.startswith(f"redis-server 127.0.0.1:{redis_port}")):
            leftovers.append(f"{proc.pid} {cmdline}")
    assert not leftovers, leftovers


class TestWholeDemo:
    def test_every_step_runs_the_real_command_and_everything_is_cleaned_up(
        self, tmp_path: Path
    ) -> None:
        out = tmp_path / "prod"
        result = subprocess.run(
            [*DEMO, "--rows", "300", "--out", str(out)],
            cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        output = result.stdout
        assert result.returncode == 0, output + result.stderr
        positions = [output.find(f"── {heading}") for heading in HEADINGS]
        assert -1 not in positions and positions == sorted(positions), output
        for command in ("backup", "backups list", "verify-backup", "restore", "replay", "render"):
            assert f"$ python -m automation {command} " in output
        assert "\nINSERT 0 300\n" in output  # psql's own output, seeding from qr_seed.sql
        assert "\nDROP TABLE\nDELETE 300\n" in output  # the disaster, through psql
        assert output.count("$ python -m automation replay ") == 2
        assert output.count("$ python -m automation status ") == 4  # 3, 4, 6 (before/after cleanup)
        assert re.search(r"^FAIL +health:api .*HTTP 503.*→ next: ", output, re.MULTILINE)
        assert len(re.findall(r"^qr: \d+ pass, 0 warn, 0 fail", output, re.MULTILINE)) == 2
        assert "VERIFIED backups/qr/" in output  # verify-backup's own output
        assert "previous database kept as qr_pre_restore_" in output  # restore's own output
        assert "selected 10: delivered 0, skipped (already delivered) 10" in output
        assert "✔ the second run delivered 0 events" in output
        assert "would deploy: 2 apps: " in output
        assert (out / "summary.json").is_file()
        assert "demo done in" in output
        assert "Traceback" not in output + result.stderr
        assert_cleaned_up(*root_and_redis_port(output))


class TestInterrupts:
    @pytest.mark.parametrize(
        ("signum", "whole_group", "when"),
        [
            (signal.SIGINT, True, "starting PostgreSQL"),
            (signal.SIGINT, True, "$ python -m automation backup "),
            (signal.SIGTERM, False, "$ python -m automation backup "),
        ],
        ids=["ctrl-c-while-services-start", "ctrl-c-during-backup", "sigterm-during-backup"],
    )
    def test_a_signal_stops_what_runs_and_cleans_up(
        self, tmp_path: Path, signum: signal.Signals, whole_group: bool, when: str
    ) -> None:
        """Ctrl-C at a terminal reaches the whole foreground process group (the demo, the running
        command and its tools); SIGTERM (a CI runner, `kill`) reaches the demo alone."""
        proc = subprocess.Popen(
            [*DEMO, "--rows", "300", "--out", str(tmp_path / "prod")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )  # fmt: skip
        seen = []
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(when):
                break
        if whole_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        rest, stderr = proc.communicate(timeout=60)
        output = "".join(seen) + rest
        assert proc.returncode == 1, output + stderr
        assert f"error: interrupted ({signum.name}): services stopped" in stderr
        assert "── 3." not in output and "demo done" not in output
        assert "Traceback" not in output + stderr
        assert_cleaned_up(*root_and_redis_port(output))


class TestFailures:
    def test_a_command_that_fails_fails_its_step(self) -> None:
        """`backups list` against an S3 endpoint where nothing listens: exit 1, not 0."""
        env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
        env |= {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
        runner = Runner(env, step="step 2")
        expected = r"^step 2 did not do what it says: exit code 1, not 0"
        with pytest.raises(StepFailed, match=expected):
            runner.automation("backups", "list", "--bucket", "nowhere")
        assert runner.child is None

    def test_a_check_that_does_not_hold_fails_the_step(self) -> None:
        with pytest.raises(StepFailed, match="step 7 did not do what it says: delivered 3"):
            Runner({}, step="step 7").check(False, "delivered 3")

    def test_bad_rows_is_exit_2_and_one_line(self) -> None:
        result = subprocess.run(
            [*DEMO, "--rows", "0"], cwd=REPO, capture_output=True, text=True, check=False
        )
        assert result.returncode == 2
        assert result.stderr.strip() == "error: --rows 0: must be at least 1"

    def test_without_the_dev_dependencies_it_says_make_setup(self, tmp_path: Path) -> None:
        """A `pgserver` that cannot be imported (as on a machine without `make setup`)."""
        shadow = tmp_path / "shadow"
        shadow.mkdir()
        (shadow / "pgserver.py").write_text("raise ImportError('not installed')\n")
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        env = {**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{REPO}", "TMPDIR": str(scratch)}
        result = subprocess.run(
            DEMO, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=60
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.strip() == (
            "error: the demo needs pgserver (a dev dependency): run `make setup`"
        )
        assert list(scratch.iterdir()) == []  # its temporary directory is removed too
