"""`restore --to-time TIME [--inspect]`: plan, recover a temporary instance, and (without
`--inspect`) bring the app database into live. See recover.py and live.py."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automation.tasks.io import pgtools
from automation.tasks.pitr import live, recover
from automation.tasks.pitr.barman import Archive
from automation.tasks.pitr.instance import Instance

Log = Callable[[str], None]


@dataclass
class PitrRestore:
    """One `--to-time` request against one app's archive and live database."""

    url: str
    archive: Archive
    when: str
    work_dir: Path | None = None
    jobs: int = 2
    log: Log = lambda line: None
    plan: recover.Plan | None = field(default=None, init=False)
    _job: live.PointInTimeRestore | None = field(default=None, init=False, repr=False)

    def check(self, client: Any = None) -> recover.Plan:
        """Pick base backup and target; refuses a TIME outside the window. Changes nothing."""
        self.plan = recover.plan(self.archive, recover.parse_time(self.when), client)
        start, end = self.plan.window
        self.log(
            f"recoverable window {recover.fmt(start)} .. {recover.fmt(end)}; base backup "
            f"{self.plan.backup.backup_id}, target {self.plan.target_label}"
        )
        return self.plan

    def instance(self) -> tuple[recover.Workspace, Instance]:
        """The temporary instance paused at the target (reused when it already is)."""
        assert self.plan is not None, "check() first"
        ws = recover.Workspace.open(self.work_dir, self.archive)
        env = {**os.environ, **self.archive.aws_env(), "HOME": str(ws.root), "TZ": "UTC"}
        inst = recover.recovered_instance(ws, self.plan, self.log, env, self.user)
        return ws, inst

    @property
    def user(self) -> str:
        params = pgtools.parse_url(self.url)
        return params.get("user") or os.environ.get("PGUSER", "postgres")

    def inspect(self) -> dict[str, Any]:
        """Recover and stop there: the instance stays up, paused; live is untouched."""
        ws, inst = self.instance()
        assert self.plan is not None
        db = pgtools.database_name(self.url)
        return {
            "inspect": True,
            "url": inst.public_url(db, self.user),
            "target": self.plan.target_label,
            "asked": recover.fmt(self.plan.asked),
            "base_backup": self.plan.backup.backup_id,
            "work_dir": str(ws.root),
            "stop": f"{inst.bin_dir / 'pg_ctl'} stop -D {inst.pgdata}",
        }

    def guard(self) -> None:
        """The plain restore's guards, before the recovery and before anything changes: a
        protected or missing target is refused, and so is a second restore of the database (the
        exclusive `restore:<db>` claim, held until `into_live` ends or `close`)."""
        if self._job is not None:
            return
        job = live.PointInTimeRestore(self.url, "", "", jobs=self.jobs, log=self.log)
        job.__enter__()
        self._job = job
        try:
            job.guard()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the claim (idempotent)."""
        if self._job is not None:
            job, self._job = self._job, None
            job.__exit__(None, None, None)

    def into_live(self) -> dict[str, Any]:
        """Guard, recover (or reuse an inspected copy at the same target), then the plain
        restore's verify -> shadow -> swap into live; the instance is stopped afterwards, its
        data kept for the next run."""
        self.guard()
        assert self._job is not None and self.plan is not None
        job = self._job
        try:
            ws, inst = self.instance()
            db = pgtools.database_name(self.url)
            job.source_url = inst.url(db, self.user)
            job.report.source = f"{self.archive.where()} at {self.plan.target_label}"
            try:
                job.verify()
                report = job.apply()
            finally:
                inst.stop()
                ws.state_file.unlink(missing_ok=True)  # stopped: the next run starts from the base
        finally:
            self.close()
        document: dict[str, Any] = {
            "database": report.to_dict(),
            "asked": recover.fmt(self.plan.asked),
        }
        document["database"]["dry_run"] = False
        return document
