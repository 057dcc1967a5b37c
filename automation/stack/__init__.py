"""Stack access: the `StackOps` protocol every operation uses, its `pulumi.automation` adapter,
and the offline render (the program under Pulumi's mock runtime).

The only part of `automation` that runs the program (`components.program`); commands and
operations see `StackOps`, never the adapter's internals.
"""
