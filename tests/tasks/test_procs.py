"""A signal that lands while a child process starts: the child is still stopped, never orphaned.

`subprocess.Popen` is wrapped so the process sends itself the signal the moment the child exists,
before `Popen` returns: the narrowest window, hit every time (a CI run once hit it by chance,
with SIGTERM reaching `make demo` as it started `python -m automation backup`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from automation.demo.play import Interrupted, Runner, interrupts
from automation.tasks.io.procs import process_chunks, signals_held

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def signal_on_start(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[Any]]:
    """Every `Popen` sends this process SIGTERM once its child runs; the children, to check."""
    started: list[subprocess.Popen[Any]] = []
    real_popen = subprocess.Popen

    def popen_then_signal(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        proc = real_popen(*args, **kwargs)
        started.append(proc)
        os.kill(os.getpid(), signal.SIGTERM)  # its handler runs before this call returns
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen_then_signal)
    yield started
    for proc in started:  # what a failing test left running
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def sigterm_raises() -> Any:
    """SIGTERM raises, as under the CLI (`Terminated`); the test's handler is put back after."""

    class Raised(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Raised(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    yield Raised
    signal.signal(signal.SIGTERM, previous)


class TestSignalsHeld:
    def test_a_signal_in_the_block_is_raised_at_its_end(self, sigterm_raises: Any) -> None:
        reached = []
        with pytest.raises(sigterm_raises), signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            reached.append("after the signal")
        assert reached == ["after the signal"]
        with pytest.raises(sigterm_raises):  # and it still raises outside the block
            os.kill(os.getpid(), signal.SIGTERM)

    def test_no_signal_no_raise(self, sigterm_raises: Any) -> None:
        with signals_held():
            value = 1
        assert value == 1


class TestChildStartedAsTheSignalArrives:
    def test_the_demo_stops_the_command_it_was_starting(
        self, signal_on_start: list[subprocess.Popen[Any]]
    ) -> None:
        runner = Runner(dict(os.environ), step="step 2")
        with pytest.raises(Interrupted, match="SIGTERM"), interrupts():
            runner.run(SLEEPER, "sleep 60")
        assert len(signal_on_start) == 1
        assert signal_on_start[0].poll() is not None, "the command was left running"
        assert runner.child is None

    def test_a_dump_pipe_kills_the_tool_it_was_starting(
        self, signal_on_start: list[subprocess.Popen[Any]], sigterm_raises: Any
    ) -> None:
        with pytest.raises(sigterm_raises):
            list(process_chunks(SLEEPER, dict(os.environ), "sleeper"))
        assert len(signal_on_start) == 1
        assert signal_on_start[0].poll() is not None, "the tool was left running"
