import os

import pytest

from tests.services import postgres, s3, s3_server  # noqa: F401  (shared fixtures)


def pytest_configure(config: pytest.Config) -> None:
    """As root, create the unprivileged users PostgreSQL runs as once, before xdist's workers start:
    two workers each running `useradd` for the same missing user on a fresh machine would race."""
    if os.geteuid() != 0 or hasattr(config, "workerinput"):
        return
    from pgserver.utils import ensure_user_exists

    from automation.tasks.pitr.instance import run_as

    ensure_user_exists("pgserver")  # pgserver's own user (pgserver.PostgresServer, as root)
    run_as()  # opsplane-pg, the user our PITR instances run as
