"""The restore's orchestration behind `commands/restore.py` (which parses, asks and prints).

- what to restore (`Choice`, `ExplicitChoice`, `StackForm`), checked before any work;
- `verified_parts`: every requested part of one backup run read and checked (database first)
  before any is changed; `apply_parts` then restores database, Redis, objects in that order and,
  when a later part fails, says what was already done;
- the stack form: S3 and the database from the app's `ops` output (`stack_source`), the parts
  restored inside one maintenance window (`restore_components`), or the explicit form run as a
  cluster Job (`cluster_args`, `cluster_restore`).

Progress goes through the `log` and `bar` callbacks and questions through `ask`, so this module
prints nothing itself.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automation.errors import OpsError, TaskFailed, UserInputError
from automation.operations.cluster_job import run_in_cluster
from automation.operations.maintenance import maintenance
from automation.stack.protocol import StackOps
from automation.tasks import pgswap
from automation.tasks import restore as task
from automation.tasks.backups import BarFactory, no_bar
from automation.tasks.io import pgtools, s3io
from contract import backup_layout as bf

COMPONENTS = ("db", "redis", "objects", "all")
WHERE = ("local", "cluster")

Log = Callable[[str], None]


def quiet(line: str) -> None:
    """The default `log`: say nothing."""


# --- what to restore, verified before anything changes ------------------------------------------


@dataclass(frozen=True)
class Choice:
    """The parts asked for (`--component`) and what restoring them needs."""

    component: str
    jobs: int
    redis_data_dir: Path | None
    create: bool = False  # the database may not exist yet (`--create`)

    def wants(self, part: str) -> bool:
        return self.component in (part, "all")


def check_component(component: str) -> None:
    if component not in COMPONENTS:
        raise UserInputError(f"--component {component!r}: use one of {', '.join(COMPONENTS)}")


def redis_dir_missing(component: str) -> UserInputError:
    return UserInputError(
        f"--component {component} needs --redis-data-dir DIR: the stopped Redis' data "
        "directory (its volume's mount point)"
    )


@dataclass(frozen=True)
class ExplicitChoice(Choice):
    objects_bucket: str | None = None
    dry_run: bool = False

    @classmethod
    def checked(
        cls,
        component: str,
        jobs: int,
        redis_data_dir: Path | None,
        objects_bucket: str | None,
        dry_run: bool,
        *,
        create: bool = False,
    ) -> ExplicitChoice:
        """A dry run verifies the Redis part in a temporary directory: no data dir needed."""
        check_component(component)
        if component in ("redis", "all") and redis_data_dir is None and not dry_run:
            raise redis_dir_missing(component)
        if component == "objects" and not objects_bucket:
            raise UserInputError(
                "--component objects needs --objects-bucket NAME: the app's bucket to restore into"
            )
        return cls(
            component,
            jobs,
            redis_data_dir,
            create=create,
            objects_bucket=objects_bucket,
            dry_run=dry_run,
        )


def target_case(url: str | None, create: bool) -> str:
    """Refuse a protected or missing target (before anything is read); say which case it is."""
    assert url is not None
    live = pgtools.database_name(url)
    info = pgswap.check_target(url, live, create=create)
    if info is None:
        return f"create database {pgtools.describe(url)} (it does not exist yet: --create)"
    return (
        f"replace the existing database {pgtools.describe(url)} (the current one is kept as "
        f"{live}_pre_restore_<time>)"
    )


def check_objects_target(client: Any, choice: ExplicitChoice) -> None:
    """The bucket objects go back into exists, checked before anything is restored."""
    if choice.objects_bucket and choice.wants("objects"):
        s3io.check_bucket(client, choice.objects_bucket, option="--objects-bucket")


@dataclass
class Parts:
    """The verified parts of one backup run; `None` for a part not restored."""

    database: task.DatabaseRestore | None = None
    redis: task.RedisRestore | None = None
    objects: task.ObjectsRestore | None = None


ObjectsFactory = Callable[[], "task.ObjectsRestore | None"]


@contextlib.contextmanager
def verified_parts(
    choice: Choice,
    url: str | None,
    client: Any,
    source: task.BackupRef,
    objects: ObjectsFactory,
    *,
    dry_run: bool,
    log: Log = quiet,
    bar: BarFactory = no_bar,
) -> Iterator[Parts]:
    """Read and check every requested part (database first), changing nothing; a bad part
    raises before any part is applied. Staged Redis files not moved into place are removed."""
    parts = Parts()
    with contextlib.ExitStack() as cleanup:
        if choice.wants("db"):
            assert url is not None
            parts.database = cleanup.enter_context(
                task.DatabaseRestore(
                    url,
                    client,
                    source,
                    jobs=choice.jobs,
                    dry_run=dry_run,
                    create=choice.create,
                    log=log,
                    bar=bar,
                )
            )
            parts.database.verify()
        if choice.wants("redis"):
            parts.redis = task.RedisRestore(
                client, source.bucket, source.manifest, redis_dir(choice, cleanup), log
            )
            cleanup.callback(parts.redis.discard)
            parts.redis.verify()
        if choice.wants("objects"):
            parts.objects = objects()
            if parts.objects is not None:
                parts.objects.verify()
        yield parts


def redis_dir(choice: Choice, cleanup: contextlib.ExitStack) -> Path:
    """The data directory, or (dry run without one) a temporary directory to verify into."""
    if choice.redis_data_dir is not None:
        return choice.redis_data_dir
    return Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="opsplane-redis-")))


def dry_run_document(parts: Parts, log: Log = quiet) -> dict[str, Any]:
    log("dry run: the backup is good; nothing was changed")
    verified = [
        name
        for name, part in (
            ("database", parts.database), ("redis", parts.redis), ("objects", parts.objects)
        )
        if part is not None
    ]  # fmt: skip
    database = parts.database.report.to_dict() if parts.database is not None else None
    return {"database": database, "verified": verified}


def explicit_objects(
    choice: ExplicitChoice, client: Any, source: task.BackupRef, log: Log = quiet
) -> ObjectsFactory:
    """Objects go back into `--objects-bucket` (same S3 as the backups). `all` without one is
    only allowed when the run has no objects (an app without an object store)."""
    if not choice.wants("objects"):
        return lambda: None
    if choice.objects_bucket:
        target = choice.objects_bucket
        return lambda: task.ObjectsRestore(
            client, source.bucket, source.manifest, client, target, log
        )
    parts = source.manifest.parts if source.manifest else []
    if any(part.format == "object" for part in parts):
        raise UserInputError(
            f"--component {choice.component}: the backup run holds objects; name the app's "
            "bucket to restore them into with --objects-bucket NAME"
        )
    return lambda: None


def restore_parts(
    document: dict[str, Any],
    choice: Choice,
    url: str | None,
    client: Any,
    source: task.BackupRef,
    objects: ObjectsFactory,
    *,
    dry_run: bool,
    log: Log = quiet,
    bar: BarFactory = no_bar,
    around: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> dict[str, Any]:
    """Verify every requested part, then (not a dry run) apply them all inside `around()`;
    the outcome goes into `document`, which is returned."""
    with verified_parts(
        choice, url, client, source, objects, dry_run=dry_run, log=log, bar=bar
    ) as parts:
        if dry_run:
            document.update(dry_run_document(parts, log))
            return document
        with around():
            apply_parts(document, parts)
    return document


def apply_parts(document: dict[str, Any], parts: Parts) -> None:
    """Database first, then Redis, then objects; a later part failing says what was done."""
    done: list[str] = []
    try:
        if parts.database is not None:
            document["database"] = parts.database.apply().to_dict()
            done.append(f"database (previous kept as {document['database']['pre_restore']})")
        if parts.redis is not None:
            document["redis"] = parts.redis.apply()
            done.append("redis")
        if parts.objects is not None:
            document["objects"] = parts.objects.apply()
    except (OpsError, KeyboardInterrupt) as exc:
        report = {**document, "restored": [d.split()[0] for d in done]}
        report["not_restored"] = [p for p in parts_wanted(parts) if p not in report["restored"]]
        if isinstance(exc, KeyboardInterrupt) or not done:
            exc.report = report  # type: ignore[union-attr]  # --json prints it
            raise
        failed = TaskFailed(f"{exc} (already restored: {', '.join(done)})")
        failed.report = report  # type: ignore[attr-defined]
        raise failed from exc


def parts_wanted(parts: Parts) -> list[str]:
    named = (("database", parts.database), ("redis", parts.redis), ("objects", parts.objects))
    return [name for name, part in named if part is not None]


# --- the stack form -------------------------------------------------------------------------------


class StackForm:
    def __init__(
        self,
        stack: str,
        app: str,
        backup: str | None,
        component: str,
        where: str,
        redis_data_dir: Path | None,
        jobs: int,
        create: bool = False,
    ) -> None:
        check_component(component)
        if where not in WHERE:
            raise UserInputError(f"--where {where!r}: use local or cluster")
        wants_redis = component in ("redis", "all")
        if where == "cluster" and redis_data_dir is not None:
            raise UserInputError(
                "--where cluster mounts Redis' volume in the Job itself: drop --redis-data-dir"
            )
        if wants_redis and where == "local" and redis_data_dir is None:
            raise redis_dir_missing(component)
        self.stack, self.app, self.where = stack, app, where
        self.key = None if backup in (None, "", "latest") else backup
        self.choice = Choice(component, jobs, redis_data_dir, create)

    @property
    def component(self) -> str:
        return self.choice.component

    def wants(self, part: str) -> bool:
        return self.choice.wants(part)


def backup_client(ops: dict[str, Any]) -> Any:
    """An S3 client for the app's backup bucket (endpoint and region from `ops.backup`)."""
    backup = ops.get("backup") or {}
    return s3io.s3_client(backup.get("endpoint"), backup.get("region"))


@dataclass(frozen=True)
class StackSource:
    """Where a stack-form restore reads from: the backup bucket's client and the resolved run."""

    client: Any
    bucket: str
    source: task.BackupRef


def stack_source(form: StackForm, ops: dict[str, Any]) -> StackSource:
    """The backup named by `--backup` (or the latest) in the app's backup bucket."""
    backup = ops.get("backup") or {}
    client = backup_client(ops)
    bucket, prefix = str(backup.get("bucket")), str(backup.get("prefix") or bf.DEFAULT_PREFIX)
    source = task.resolve_source(client, bucket, prefix=prefix, app=form.app, key=form.key)
    return StackSource(client, bucket, source)


def restore_components(
    stack: StackOps,
    form: StackForm,
    ops: dict[str, Any],
    url: str,
    client: Any,
    source: task.BackupRef,
    *,
    dry_run: bool,
    log: Log = quiet,
    bar: BarFactory = no_bar,
) -> dict[str, Any]:
    """Verify every requested part, then restore them all inside one maintenance window."""
    document: dict[str, Any] = {"stack": stack.name, "app": form.app, "component": form.component}
    objects = stack_objects(form, ops, client, source, log)
    return restore_parts(
        document,
        form.choice,
        url,
        client,
        source,
        objects,
        dry_run=dry_run,
        log=log,
        bar=bar,
        around=lambda: maintenance(stack, form.app, log),
    )


def object_bucket(ops: dict[str, Any]) -> str | None:
    target = ops.get("objects") or {}
    return str(target["bucket"]) if target.get("bucket") else None


def no_object_bucket(app: str) -> UserInputError:
    return UserInputError(f"app {app!r} has no object bucket in its ops output: nothing to restore")


def stack_objects(
    form: StackForm, ops: dict[str, Any], client: Any, source: task.BackupRef, log: Log = quiet
) -> ObjectsFactory:
    """The app's bucket from `ops.objects`; `all` on an app without one restores the rest."""
    bucket = object_bucket(ops)
    if not form.wants("objects") or (bucket is None and form.component == "all"):
        return lambda: None
    if bucket is None:
        raise no_object_bucket(form.app)
    endpoint, region = (
        (ops.get("objects") or {}).get("endpoint"),
        (ops.get("backup") or {}).get("region"),
    )
    return lambda: task.ObjectsRestore(
        client, source.bucket, source.manifest, s3io.s3_client(endpoint, region), bucket, log
    )


def cluster_args(form: StackForm, ops: dict[str, Any]) -> list[str]:
    """The explicit form the Job runs: names only (the database URL and S3 settings come from
    the Job's environment; the program appends `--redis-data-dir` where it mounts Redis' data)."""
    backup = ops.get("backup") or {}
    prefix = str(backup.get("prefix") or bf.DEFAULT_PREFIX)
    args = ["--bucket", str(backup.get("bucket")), "--prefix", prefix, "--app", form.app]
    args += ["--component", form.component, "--jobs", str(form.choice.jobs), "--yes", "--json"]
    args += ["--key", form.key] if form.key else ["--latest"]
    args += ["--create"] if form.choice.create else []
    bucket = object_bucket(ops)
    if form.wants("objects") and bucket is not None:
        args += ["--objects-bucket", bucket]
    elif form.component == "objects":
        raise no_object_bucket(form.app)
    return args


def cluster_restore(
    stack: StackOps,
    form: StackForm,
    ops: dict[str, Any],
    *,
    dry_run: bool,
    ask: Callable[[], None],
    log: Log = quiet,
) -> dict[str, Any]:
    """The restore as a Job in the cluster (the database and Redis are only reachable there).

    For Redis the request asks the program to stop Redis and mount its data volume in the Job
    (`mountRedis`); a dry run verifies without stopping anything (and does not `ask`). Removing
    the Job starts Redis again on the restored data, then maintenance is left."""
    args = cluster_args(form, ops)
    if dry_run:
        args.append("--dry-run")
        return {"where": "cluster", **run_in_cluster(stack, form.app, "restore", args, log)}
    ask()
    with maintenance(stack, form.app, log):
        result = run_in_cluster(
            stack, form.app, "restore", args, log, mount_redis=form.wants("redis")
        )
    return {"where": "cluster", **result}
