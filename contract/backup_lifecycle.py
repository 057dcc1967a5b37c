"""Backup retention as S3 lifecycle rules: pure data, shared by Pulumi (prod) and the backup task
(dev/MinIO, through the S3 API).

The rules replace the runbook's `find backups -name "backup_*.sql.gz" -mtime +30 -delete`:
- backups expire after `retention_days`, but only objects tagged `retention=standard`, so a
  pinned backup (`backups pin KEY` retags it `retention=pinned`) is kept past retention;
- noncurrent versions (what a versioned bucket keeps of overwritten objects) expire in days;
- multipart uploads a crashed backup left behind are aborted after `abort_incomplete_days`.

`lifecycle_rules` returns the exact shape of boto3's `put_bucket_lifecycle_configuration`
(`LifecycleConfiguration={"Rules": ...}`); the Pulumi program converts the same dicts into
pulumi-aws lifecycle resources and the backup task applies them to MinIO
(automation/tasks/io/lifecycle.py), so both environments run one definition.
"""

from __future__ import annotations

import json
from typing import Any

from contract.backup_layout import RETENTION_STANDARD, TAG_RETENTION

RULE_EXPIRE = "opsplane-expire-standard-backups"
RULE_NONCURRENT = "opsplane-expire-noncurrent-versions"
RULE_ABORT = "opsplane-abort-incomplete-multipart"
OUR_RULES = (RULE_EXPIRE, RULE_NONCURRENT, RULE_ABORT)

RETENTION_TAG = {"Key": TAG_RETENTION, "Value": RETENTION_STANDARD}


def lifecycle_rules(
    retention_days: int,
    noncurrent_days: int = 7,
    abort_incomplete_days: int = 1,
    prefix: str = "",
) -> list[dict[str, Any]]:
    """The backup bucket's lifecycle rules (boto3 shape), scoped to `prefix` when given."""
    for name, days in (
        ("retention_days", retention_days),
        ("noncurrent_days", noncurrent_days),
        ("abort_incomplete_days", abort_incomplete_days),
    ):
        if days < 1:
            raise ValueError(f"{name} must be at least 1 day, got {days}")
    scope = prefix.strip("/") + "/" if prefix.strip("/") else ""
    return [
        {
            "ID": RULE_EXPIRE,
            "Status": "Enabled",
            "Filter": _standard_retention_filter(scope),
            "Expiration": {"Days": retention_days},
        },
        {
            "ID": RULE_NONCURRENT,
            "Status": "Enabled",
            "Filter": {"Prefix": scope},
            "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
        },
        {
            "ID": RULE_ABORT,
            "Status": "Enabled",
            "Filter": {"Prefix": scope},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": abort_incomplete_days},
        },
    ]


def _standard_retention_filter(scope: str) -> dict[str, Any]:
    """Objects tagged retention=standard (under `scope`): S3 wants `And` only for 2+ predicates."""
    if scope:
        return {"And": {"Prefix": scope, "Tags": [dict(RETENTION_TAG)]}}
    return {"Tag": dict(RETENTION_TAG)}


def normalize(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule in a comparable form: S3 stores may echo a rule with extra empty fields."""
    keep = (
        "ID",
        "Status",
        "Filter",
        "Expiration",
        "NoncurrentVersionExpiration",
        "AbortIncompleteMultipartUpload",
        "Transitions",
    )
    out = {k: rule[k] for k in keep if rule.get(k) not in (None, {}, [])}
    flt = out.get("Filter", {})
    if "And" in flt:
        conj = flt["And"]
        out["Filter"] = {
            "And": {
                "Prefix": conj.get("Prefix", ""),
                "Tags": sorted(conj.get("Tags", []), key=lambda t: (t["Key"], t["Value"])),
            }
        }
    elif "Tag" in flt:
        out["Filter"] = {"Tag": dict(flt["Tag"])}
    elif "Filter" in out:
        out["Filter"] = {"Prefix": flt.get("Prefix", "")}
    return out


def rule_key(rule: dict[str, Any]) -> str:
    """A rule as comparable text (`normalize`d, keys sorted)."""
    return json.dumps(normalize(rule), sort_keys=True)
