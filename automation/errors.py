"""Errors every automation command raises, and the exit code each one means.

Exit codes are a contract with the on-call engineer (and with scripts):
0 done, 1 failed with nothing lost, 2 bad input.
"""

from __future__ import annotations


class OpsError(Exception):
    """Base for expected failures: printed as one line, never as a traceback."""

    exit_code = 1


class UserInputError(OpsError):
    """The input is wrong (bad flag, unknown app, missing secret): exit 2."""

    exit_code = 2


class TaskFailed(OpsError):
    """The task failed and left everything as it was: exit 1."""

    exit_code = 1
