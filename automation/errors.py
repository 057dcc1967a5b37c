"""Errors every automation command raises, and the exit code each one means.

Exit codes are a contract with the on-call engineer (and with scripts):
0 done, 1 failed with nothing lost, 2 bad input.
"""

from __future__ import annotations

import re


class OpsError(Exception):
    """Base for expected failures: printed as one line, never as a traceback."""

    exit_code = 1


class UserInputError(OpsError):
    """The input is wrong (bad flag, unknown app, missing secret): exit 2."""

    exit_code = 2


class TaskFailed(OpsError):
    """The task failed and left everything as it was: exit 1."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (a Job deadline, a node drain): handled like Ctrl-C, so every cleanup path runs."""


# --- never print a credential ----------------------------------------------------------------

_KEYWORD = re.compile(
    r"(?i)\b((?:pg)?password|passwd|pwd|secret|token|rediscli_auth|aws_secret_access_key)"
    r"(\s*=\s*)('(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&;,'\"]+)"
)
_PLACEHOLDERS = {"password", "PASSWORD", "pass", "***", ""}


def redact(text: str) -> str:
    """`text` with every credential replaced by `***`: the password of any `x:y@host` (however
    the rest of the URL is broken) and `password=...`-style keywords. Used wherever a message
    that may quote user input is printed (console.handle_errors, the console, --json)."""
    text = " ".join(_redact_userinfo(token) for token in text.split(" "))
    return _KEYWORD.sub(_redact_keyword, text)


def _redact_keyword(match: re.Match[str]) -> str:
    value = match.group(3).strip("'\"")
    if value in _PLACEHOLDERS or value.startswith(("<", "$", "{")):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}***"


def _redact_userinfo(token: str) -> str:
    """One whitespace-free token: `scheme://user:SECRET@rest` -> `scheme://user:***@rest`."""
    if "@" not in token:
        return token
    head, _, rest = token.rpartition("@")
    start = head.find("//")
    start = start + 2 if start >= 0 else len(head) - len(head.lstrip("'\"([<{=,;"))
    userinfo = head[start:]
    if ":" not in userinfo:
        return token
    user, _, secret = userinfo.partition(":")
    if secret in _PLACEHOLDERS:
        return token
    return f"{head[:start]}{user}:***@{rest}"
