"""Config `opsplane:clusterJob`: automation asks the program to run one task as a Kubernetes Job.

The program declares the Job while the key is set and exports `clusterJob`
(`{"id", "status", "report", "error"}`); docs/automation.md, "The cluster Job".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, model_validator

from contract._model import ContractModel

CLUSTER_JOB_KEY = "opsplane:clusterJob"
CLUSTER_JOB_OUTPUT = "clusterJob"
ClusterTask = Literal["restore", "replay", "verify-backup", "backup", "status"]
CLUSTER_TASKS: tuple[str, ...] = get_args(ClusterTask)
JOB_ID_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"


class ClusterJobRequest(ContractModel):
    """Asked for by automation (`--where cluster`): the stack declares a Job that runs a task.

    `mountRedis` (restore only): the app's Redis is scaled to 0 and the Job mounts its data volume
    and gets `--redis-data-dir <mount path>` after `args`.
    """

    app: str
    task: ClusterTask
    args: list[str] = Field(default_factory=list)
    id: Annotated[str, Field(pattern=JOB_ID_PATTERN)]
    mount_redis: bool = False

    @model_validator(mode="after")
    def _mount_only_for_restore(self) -> ClusterJobRequest:
        if self.mount_redis and self.task != "restore":
            raise ValueError(
                f"mountRedis: only a restore writes Redis' volume, not a {self.task!r} task"
            )
        return self

    def to_config(self) -> dict[str, Any]:
        """The config value: `mountRedis` only when set."""
        value: dict[str, Any] = {
            "app": self.app,
            "task": self.task,
            "args": list(self.args),
            "id": self.id,
        }
        if self.mount_redis:
            value["mountRedis"] = True
        return value
