"""Stack operations: maintenance, rotation, in-cluster Jobs, restore and replay (their stack and
cluster forms), point-in-time recovery's stack form, status, deploy. Each reads the app's `ops`
output through `StackOps`, changes config, runs `up`, and calls tasks.

Import `contract`, `automation.errors`, `automation.stack.protocol` and `automation.tasks`; never
`commands`, `cli` or the Pulumi adapter. Imported by commands.
"""
