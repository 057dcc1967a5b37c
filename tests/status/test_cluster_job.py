"""`status --where cluster` against the real program (mock runtime): the `status` task Job is
declared from the request automation writes, runs the explicit form with `--exit-zero`, and gets
the database and Redis URLs from the app's Secret (the env vars `--database-url`/`--redis-url`
read), never on its command line."""

from __future__ import annotations

import json

from automation.operations.status import cluster_args
from tests.fakes.fake_stack import FakeStack
from tests.program.conftest import render


def test_the_program_declares_the_status_job_with_the_urls_from_the_secret() -> None:
    prod = render("prod")
    stack = FakeStack("prod", outputs=prod.outputs)
    args = cluster_args(stack, "quickbite", timeout=5, deep=False)
    assert "--exit-zero" in args and "--database-url" not in args and "--redis-url" not in args
    assert args[args.index("--health-url") + 1].startswith("backend=http://backend.quickbite.svc:")
    request = {"app": "quickbite", "task": "status", "args": args, "id": "status-1"}
    rendered = render("prod", {"opsplane:clusterJob": request})
    (job,) = rendered.k8s("Job", "quickbite-status-1", "quickbite")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][2:] == ["--", "status", *args]
    secret_env = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert {"OPSPLANE_DATABASE_URL", "OPSPLANE_REDIS_URL"} <= secret_env
    password = prod.outputs["ops"]["quickbite"]["database"]["password"]
    assert password not in json.dumps(job)
