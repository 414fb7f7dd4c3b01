"""SI's penalty (Zenke et al. 2017): the quadratic penalty plus the running path integral.

The running sums live here, in buffers, rather than in the callback: they are then saved in
stream checkpoints (resume mid-experience) and travel with the module like the importances.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.penalties.quadratic import QuadraticPenalty, buffer_key


class PathIntegralPenalty(QuadraticPenalty):
    """`c · Σ Ω (θ − θ*)²` with Ω accumulated over experiences (online mode, γ = 1).

    Buffers per parameter: `omega__*` (ω, the path integral of this experience), `start__*` (θ at
    the experience's start), `prev__*` (θ before the current optimizer step) and the non-persistent
    `grad__*` (the task loss's gradient of the current step).
    """

    def __init__(self, strength: float, clamp: bool = False):
        super().__init__(strength, factor=1.0, mode="online", gamma=1.0, clamp_min=0.0 if clamp else None)

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        params = dict(model.named_parameters())
        for n in self.names:
            for kind in ("omega", "start", "prev", "grad"):
                self.register_buffer(f"{kind}__{buffer_key(n)}", torch.zeros_like(params[n], dtype=torch.float32),
                                     persistent=kind != "grad")

    def running(self, kind: str) -> list[torch.Tensor]:
        return [getattr(self, f"{kind}__{buffer_key(n)}") for n in self.names]
