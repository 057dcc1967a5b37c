"""CLI command groups; each module exposes `register(app: typer.Typer)`.

COMMANDS maps each top-level command to the module that registers it, so `python -m automation
NAME` imports that module only (tests/test_cli.py checks the map against the modules). A command
missing here still works: the CLI then loads every module.

Imported by `automation.cli` only. Commands parse options and print; they call operations and
tasks, naming Pulumi, boto3 and psycopg users through `automation.lazy` so `--help` stays cheap.
"""

# Modules that register no command: helpers the commands share (`common`: finish_operation,
# print_report). Every other public module exposes `register(app)`.
HELPERS: frozenset[str] = frozenset({"common"})

COMMANDS: dict[str, str] = {
    "backup": "backup",
    "base-backup": "base_backup",
    "backups": "backup",
    "deploy": "deploy",
    "demo": "demo",
    "verify-backup": "backup",
    "maintenance": "maintenance",
    "ops": "stack_info",
    "pitr": "pitr",
    "render": "render",
    "replay": "replay",
    "restore": "restore",
    "rollback": "deploy",
    "rotate": "rotate",
    "status": "status",
}
