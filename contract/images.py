"""Image references: what `opsplane:apps.<app>.services.<svc>.image` and `deploy --image` accept.

One check for both sides: the program validates config with it, `deploy` validates `--image`.
"""

from __future__ import annotations

import re

_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def check_image(value: str) -> str:
    """`value` when it is an image reference (`registry/name:tag`, optionally `@sha256:...`)."""
    if not _IMAGE.match(value):
        raise ValueError(
            f"must be an image reference like 'registry/name:tag' (lowercase name), got {value!r}"
        )
    return value
