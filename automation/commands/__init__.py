"""CLI command groups; each module exposes `register(app: typer.Typer)`.

COMMANDS maps each top-level command to the module that registers it, so `python -m automation
NAME` imports that module only (tests/test_cli.py checks the map against the modules). A command
missing here still works: the CLI then loads every module.
"""

COMMANDS: dict[str, str] = {
    "backup": "backup",
    "base-backup": "base_backup",
    "backups": "backup",
    "verify-backup": "backup",
    "maintenance": "maintenance",
    "ops": "stack_info",
    "pitr": "pitr",
    "render": "render",
    "replay": "replay",
    "restore": "restore",
    "rotate": "rotate",
}
