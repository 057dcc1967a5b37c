"""Apply the shared lifecycle rules (contract.backup_lifecycle) to a bucket through the S3 API:
what the backup task does on dev/MinIO, where no Pulumi resource manages the bucket."""

from __future__ import annotations

from typing import Any

from contract.backup_lifecycle import OUR_RULES, rule_key


def current_rules(client: Any, bucket: str) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules, or [] when it has none."""
    from botocore.exceptions import ClientError

    try:
        return list(client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise


def apply_lifecycle(client: Any, bucket: str, rules: list[dict[str, Any]]) -> bool:
    """Make the bucket carry `rules` (keeping rules that are not ours). True when it changed.

    Idempotent: reads the configuration back and writes only when it differs, so running the
    backup task every night does not rewrite the bucket configuration every night.
    """
    existing = current_rules(client, bucket)
    ours = {r["ID"] for r in rules}
    others = [r for r in existing if r.get("ID") not in ours and r.get("ID") not in OUR_RULES]
    wanted = others + rules
    if sorted(map(rule_key, existing)) == sorted(map(rule_key, wanted)):
        return False
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": wanted}
    )
    return True
