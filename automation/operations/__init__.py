"""Stack operations: maintenance, rotation, in-cluster Jobs, and the stack forms of restore and
replay. Each reads the app's `ops` output through `StackOps`, changes config, runs `up`, and calls
tasks. Imports `contract`, `automation.stack.protocol`, `automation.tasks`; never `commands`.
"""
