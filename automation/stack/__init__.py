"""Stack access: the `StackOps` protocol every operation uses, its `pulumi.automation` adapter,
and the offline render (the program under Pulumi's mock runtime).

The only part of `automation` that runs the program (`components.program`); commands and
operations see `StackOps`, never the adapter's internals. Imported by commands and (the protocol
only) by operations; imports `automation.errors`, `contract` and, to run the program,
`components`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automation.stack.protocol import StackOps


def open_stack(name: str) -> StackOps:
    """The named stack through the Pulumi adapter, imported only now: `--help` never loads Pulumi
    (tests replace `pulumi_adapter.open_stack`)."""
    from automation.stack import pulumi_adapter

    return pulumi_adapter.open_stack(name)
