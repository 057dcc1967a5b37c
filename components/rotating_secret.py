"""RotatingSecret: a generated secret that rotates when its epoch in config is bumped.

Two `RandomPassword` slots: the slot for the epoch's parity holds the newest value, the other the
previous one. Bumping the epoch by one replaces exactly one slot (its keeper changes), so the
previous value survives for grace-period verification (JWT) and for two-phase database password
rotation (`pending`: the new value exists but workloads still use the old one).
"""

from __future__ import annotations

import pulumi
import pulumi_random as random

from components.catalog.spec import SecretSpec
from contract.rotation import RotationState


class RotatingSecret(pulumi.ComponentResource):
    current: pulumi.Output[str]
    previous: pulumi.Output[str] | None
    pending: pulumi.Output[str] | None
    epoch: int

    def __init__(
        self,
        name: str,
        *,
        spec: SecretSpec,
        state: RotationState,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("opsplane:index:RotatingSecret", name, None, opts)
        epoch = state.epoch
        slots = {
            parity: random.RandomPassword(
                f"{name}-slot{parity}",
                length=spec.length,
                special=spec.special,
                keepers={"epoch": str(epoch if epoch % 2 == parity else epoch - 1)},
                opts=pulumi.ResourceOptions(parent=self),
            ).result
            for parity in (0, 1)
        }
        newest, older = slots[epoch % 2], slots[(epoch - 1) % 2]
        self.epoch = epoch
        self.current = older if state.pending else newest
        self.pending = newest if state.pending else None
        self.previous = older if (epoch > 0 and not state.pending) else None
        self.register_outputs({"epoch": epoch, "pending": state.pending})
