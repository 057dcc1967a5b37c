"""Restore against real services: embedded PostgreSQL 16 and S3 over HTTP (moto server)."""

from __future__ import annotations

import psycopg
import pytest

from automation.tasks import restore as r
from automation.tasks.s3io import s3_client
from tests.schemas import QR_HEAD, QUICKBITE_HEAD
from tests.tasks.restore_helpers import (
    create_qr,
    create_quickbite,
    databases,
    hand_made_dump,
    managed_backup,
    scramble,
    table_checksums,
)


def restore(url: str, bucket: str, *, app: str | None = None, key: str | None = None, **kw):
    client = s3_client()
    source = r.resolve_source(client, bucket, prefix="backups", app=app, key=key)
    return r.restore_database(url, client, source, **kw)


def test_qr_round_trip_plain_restores_exactly_what_was_backed_up(postgres, s3):
    url = postgres.create_database("qr")
    create_qr(url)
    bucket = s3.create_bucket()
    managed_backup(url, bucket, "qr")
    backed_up = table_checksums(url)
    scramble(url)
    damaged = table_checksums(url)
    assert damaged != backed_up

    report = restore(url, bucket, app="qr")

    assert table_checksums(url) == backed_up
    assert report.migration_head == QR_HEAD
    assert report.tables["public.accounts"] == 300
    assert [s.name for s in report.steps] == ["verify", "create", "load", "check", "swap"]
    assert report.pre_restore is not None
    pre_url = url.replace(report.database + "?", report.pre_restore + "?")
    assert table_checksums(pre_url) == damaged  # the previous database is kept
    assert databases(postgres, report.database + "_restore_") == []
