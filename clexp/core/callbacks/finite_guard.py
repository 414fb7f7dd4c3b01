"""Stops the run when the loss or the penalty becomes NaN or infinite, naming where and which."""

from __future__ import annotations

import math

import pytorch_lightning as pl

from clexp.config.errors import NonFiniteError  # noqa: F401 - re-exported: clexp.core.callbacks.finite_guard.NonFiniteError


def check_finite(pl_module, step: int) -> None:
    """Raise `NonFiniteError` if a term `ContinualModule.training_step` recorded is not finite."""
    terms = getattr(pl_module, "last_terms", None) or {}
    for name, value in terms.items():
        v = float(value)
        if not math.isfinite(v):
            raise NonFiniteError(
                f"experience {int(pl_module.experience)}, step {step}: the {name} became {v} "
                f"(training stopped; the last good stream checkpoint is kept). "
                f"Try a smaller optimizer.lr or regularization strength."
            )


class FiniteGuard(pl.Callback):
    """Checks the recorded terms after every step on the CPU and every `log_every_n_steps` steps on an
    accelerator (a check is a host sync there). Stream checkpoints check too before they save, so a
    non-finite state is never saved over the last good checkpoint."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        every = 1 if pl_module.device.type == "cpu" else max(1, trainer.log_every_n_steps)
        if trainer.global_step % every == 0:
            check_finite(pl_module, trainer.global_step)
