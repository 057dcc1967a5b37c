"""Tasks: plain functions that run locally, in CI tests, and inside the cluster as Jobs.

Import only `automation.errors`, other tasks and `contract` (no console, commands, operations or
stack: a Job runs them without the CLI). Imported by commands, operations and `jobrun`.
"""
