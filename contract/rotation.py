"""Config `opsplane:rotation`: `{app: {secret: {"epoch", "rotatedAt", "pending"}}}`, one model.

Automation writes it (`rotate`); the program reads it (`Settings.rotation`, `RotatingSecret`
keepers). A bare int is short for `{"epoch": int}`. `rotatedAt` is ISO-8601; automation writes
UTC with a `Z` suffix.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from contract._model import ContractModel

ROTATION_KEY = "opsplane:rotation"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class RotationState(ContractModel):
    """One secret's rotation: the epoch its value is generated for, and a rotation in progress."""

    epoch: Annotated[int, Field(ge=0)] = 0
    rotated_at: datetime | None = None
    pending: bool = False

    @property
    def rotated_at_text(self) -> str | None:
        """`rotatedAt` as automation writes and prints it (UTC, `Z`)."""
        return format_time(self.rotated_at) if self.rotated_at else None

    def to_config(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "rotatedAt": self.rotated_at_text, "pending": self.pending}


Rotation = dict[str, dict[str, RotationState]]
_ROTATION: TypeAdapter[Rotation] = TypeAdapter(Rotation)


def format_time(value: datetime) -> str:
    """UTC `YYYY-MM-DDTHH:MM:SSZ` (a naive time is taken as UTC)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime(TIME_FORMAT)


def expand_shorthand(value: Any) -> Any:
    """`db-password: 2` is short for `db-password: {epoch: 2}`; anything else is left as given."""
    if not isinstance(value, Mapping):
        return value
    return {app: _expand_app(secrets) for app, secrets in value.items()}


def _expand_app(secrets: Any) -> Any:
    if not isinstance(secrets, Mapping):
        return secrets
    return {name: _expand(entry) for name, entry in secrets.items()}


def _expand(entry: Any) -> Any:
    is_int = isinstance(entry, int) and not isinstance(entry, bool)
    return {"epoch": entry} if is_int else entry


def parse_rotation(value: Any) -> Rotation:
    """The whole object, validated; raises `ValueError` naming `app.secret.key` and the rule."""
    try:
        return _ROTATION.validate_python(expand_shorthand(value))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ValueError(f"{where}: {error['msg']}" if where else error["msg"]) from None
