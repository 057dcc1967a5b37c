"""prod AWS: hardened buckets, lifecycle retention, a narrowly scoped IAM role, ECR."""

from __future__ import annotations

import json

import pytest

from automation.stack.render import Rendered, unwrap
from components.backup_plan import to_pulumi_rules
from contract.backup_lifecycle import lifecycle_rules

BUCKETS = [
    "opsplane-prod-qr-exports",
    "opsplane-prod-backups-qr",
    "opsplane-prod-backups-quickbite",
]


def bucket_resource(prod: Rendered, kind: str, bucket_name: str) -> dict:
    (bucket,) = [
        r for r in prod.of_type("aws:s3/bucket:Bucket") if r.inputs["bucket"] == bucket_name
    ]
    owned = [r for r in prod.of_type(kind) if r.name.startswith(bucket.name)]
    assert len(owned) == 1, (kind, bucket_name)
    return unwrap(owned[0].inputs)


def test_buckets_the_systems_need(prod: Rendered) -> None:
    assert sorted(r.inputs["bucket"] for r in prod.of_type("aws:s3/bucket:Bucket")) == sorted(
        BUCKETS
    )


@pytest.mark.parametrize("name", BUCKETS)
def test_every_bucket_is_hardened(prod: Rendered, name: str) -> None:
    block = bucket_resource(prod, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name)
    assert all(
        block[k] is True
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    sse = bucket_resource(
        prod,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        name,
    )
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    versioning = bucket_resource(prod, "aws:s3/bucketVersioning:BucketVersioning", name)
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    policy = json.loads(bucket_resource(prod, "aws:s3/bucketPolicy:BucketPolicy", name)["policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    assert deny["Resource"] == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]


def test_backup_lifecycle_is_the_shared_rule_set(prod: Rendered) -> None:
    lifecycles = prod.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert len(lifecycles) == 2
    rules = unwrap(lifecycles[0].inputs)["rules"]
    expected = lifecycle_rules(30, 7, 1)
    assert len(rules) == len(expected) == 3
    by_id = {r["id"]: r for r in rules}
    assert by_id["opsplane-expire-standard-backups"]["expiration"] == {"days": 30}
    assert by_id["opsplane-expire-standard-backups"]["filter"]["tag"] == {
        "key": "retention",
        "value": "standard",
    }
    assert by_id["opsplane-expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {
        "noncurrentDays": 7
    }
    assert by_id["opsplane-abort-incomplete-multipart"]["abortIncompleteMultipartUpload"] == {
        "daysAfterInitiation": 1
    }
    assert to_pulumi_rules(expected)[0]["filter"]["tag"]["key"] == "retention"


def test_retention_days_come_from_config(render_stack) -> None:
    rendered = render_stack("prod", {"opsplane:backup": {"retentionDays": 45}})
    (lifecycle, *_) = rendered.of_type(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    )
    rules = {r["id"]: r for r in unwrap(lifecycle.inputs)["rules"]}
    assert rules["opsplane-expire-standard-backups"]["expiration"] == {"days": 45}


def test_runner_role_is_scoped_to_the_apps_prefix_and_service_account(prod: Rendered) -> None:
    policies = {
        r.name: json.loads(unwrap(r.inputs)["policy"])
        for r in prod.of_type("aws:iam/rolePolicy:RolePolicy")
    }
    qb = policies["quickbite-backup-runner-policy"]["Statement"]
    resources = {s["Sid"]: s["Resource"] for s in qb}
    assert (
        resources["ReadWriteOwnPrefix"]
        == "arn:aws:s3:::opsplane-prod-backups-quickbite/backups/quickbite/*"
    )
    assert qb[0]["Condition"]["StringLike"]["s3:prefix"] == [
        "backups/quickbite/*",
        "backups/quickbite",
    ]
    assert "MirrorAppBucket" not in resources
    qr = {s["Sid"] for s in policies["qr-backup-runner-policy"]["Statement"]}
    assert "MirrorAppBucket" in qr
    (role,) = [
        r for r in prod.of_type("aws:iam/role:Role") if r.name == "quickbite-backup-runner-role"
    ]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    condition = trust["Condition"]["StringEquals"]
    assert "system:serviceaccount:quickbite:quickbite-ops-runner" in condition.values()


def test_ops_runner_image_is_built_and_pushed_to_ecr(prod: Rendered, dev: Rendered) -> None:
    repos = sorted(r.inputs["name"] for r in prod.of_type("aws:ecr/repository:Repository"))
    # and PITR's PostgreSQL image per app (Pulumi.prod.yaml archives both; tests/program/test_pitr)
    assert repos == [
        "opsplane/ops-runner", "opsplane/qr-postgres-pitr", "opsplane/quickbite-postgres-pitr"
    ]  # fmt: skip
    (image,) = [
        i
        for i in prod.of_type("docker:index/image:Image")
        if i.inputs["build"]["dockerfile"] == "automation/Dockerfile"
    ]
    assert image.inputs["imageName"].startswith("123456789012.dkr.ecr.")
    (local,) = dev.of_type("docker:index/image:Image")
    assert local.inputs["skipPush"] is True
    assert not dev.of_type("aws:ecr/repository:Repository")
