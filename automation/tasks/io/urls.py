"""Check every URL, endpoint and bucket name a command takes before any work starts.

Each check returns the value or raises `UserInputError` with one line that names the option,
quotes the value with its password redacted, and says what to type instead (exit 2). The
parsers that use these values later (libpq, redis-cli, boto3, urllib3) then never see garbage,
so a malformed value can never surface as their traceback or in their messages.
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import SplitResult, urlsplit

from automation.errors import UserInputError, redact

POSTGRES_EXAMPLE = "postgresql://user:password@host:5432/dbname"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def shown(value: str) -> str:
    """A value quoted for a message, credentials redacted, control characters escaped."""
    return redact(repr(value))


def split(url: str, option: str, schemes: tuple[str, ...], example: str) -> SplitResult:
    """`urlsplit` with one-line errors: known scheme, a host, a numeric port in range."""
    if not url.isprintable() or any(c.isspace() for c in url):
        raise UserInputError(f"{option} {shown(url)}: contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UserInputError(f"{option} {shown(url)}: {_why(exc)}; use e.g. {example}") from None
    if parts.scheme.lower() not in schemes:
        found = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise UserInputError(
            f"{option} {shown(url)}: {found}, expected {' or '.join(s + '://' for s in schemes)}; "
            f"use e.g. {example}"
        )
    if not parts.hostname:
        raise UserInputError(f"{option} {shown(url)}: no host; use e.g. {example}")
    if port == 0:
        raise UserInputError(f"{option} {shown(url)}: port 0; use e.g. {example}")
    return parts


def _why(exc: ValueError) -> str:
    text = str(exc)
    if "Port" in text or "port" in text:
        return "the port is not a number from 1 to 65535"
    if "IPv6" in text or "[" in text:
        return "a malformed [IPv6] host"
    return "not a URL"


def http_url(url: str, option: str, example: str = "http://localhost:8000/path") -> str:
    """An http(s) URL with a host (webhook receivers, Pushgateway, health checks)."""
    split(url, option, ("http", "https"), example)
    return url


def redis_url(url: str, option: str = "--redis-url") -> str:
    split(url, option, ("redis", "rediss"), "redis://:password@host:6379")
    return url


def s3_endpoint() -> str | None:
    """`AWS_ENDPOINT_URL` (MinIO, moto, another S3), checked; None when unset (AWS itself)."""
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(var)
        if value:
            split(value, var, ("http", "https"), "http://localhost:9000 (MinIO), or unset it")
            return value
    return None


def bucket_name(name: str, option: str = "--bucket") -> str:
    """An S3 bucket name by AWS' rules: 3-63 of a-z 0-9 . -, starting and ending with a letter
    or digit, no `..`, not an IP address."""
    ok = bool(_BUCKET.fullmatch(name)) and ".." not in name and not _is_ip(name)
    if not ok:
        raise UserInputError(
            f"{option} {shown(name)}: not a valid S3 bucket name; use 3-63 lowercase letters, "
            "digits, '.' or '-', starting and ending with a letter or digit (e.g. qr-backups)"
        )
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
