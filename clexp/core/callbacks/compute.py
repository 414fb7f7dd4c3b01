"""Compute accounting per experience (results.json `compute`): optimizer steps, training samples seen
(all ranks), seconds spent in the method's boundary-time importance estimation (Fisher / MAS /
KFAC: the method callbacks' `on_train_end`), and once per run the model's forward FLOPs per sample
(`torch.utils.flop_counter`). The runner adds the training seconds (fit minus evaluation minus
estimation)."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch


def forward_flops_per_sample(module: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> int | None:
    """FLOPs of one forward pass on one input (eval mode, no grad); None where it cannot be counted."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        device = next(module.parameters()).device
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(x[:1].to(device), t[:1].to(device))
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - an exotic layer the counter does not know: the rest still holds
        return None
    finally:
        module.train(was_training)


class _Timed:
    """`callback.on_train_end`, timed into `owner._importance` (a plain object: picklable for ddp_spawn)."""

    def __init__(self, hook, callback, owner):
        self.hook, self.callback, self.owner = hook, callback, owner

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.hook(self.callback, *args, **kwargs)
        finally:
            self.owner._importance += time.perf_counter() - start


class ComputeAccounting(pl.Callback):
    def __init__(self, method_callbacks: list):
        self.steps: list[int] = []
        self.samples: list[int] = []
        self.importance_s: list[float] = []
        self._samples = 0
        self._importance = 0.0
        for cb in method_callbacks:  # time the boundary-time estimation where a method has one
            if type(cb).on_train_end is not pl.Callback.on_train_end:
                cb.on_train_end = _Timed(type(cb).on_train_end, cb, self)

    def begin(self, resumed_mid_experience: bool) -> None:
        """Before an experience's fit; a run resumed inside one keeps the counts its checkpoint holds."""
        if not resumed_mid_experience:
            self._samples, self._importance = 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._samples += int(batch[0].shape[0]) * trainer.world_size

    def end(self, experience: int, steps: int) -> None:
        """After experience `experience`'s fit (every callback's on_train_end has run)."""
        for lst, v in ((self.steps, steps), (self.samples, self._samples), (self.importance_s, self._importance)):
            del lst[experience:]
            lst.append(v)
        self._samples, self._importance = 0, 0.0

    def state_dict(self) -> dict:
        return {"steps": self.steps, "samples": self.samples, "importance_s": self.importance_s,
                "partial": [self._samples, self._importance]}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.samples = list(state["steps"]), list(state["samples"])
        self.importance_s = list(state["importance_s"])
        self._samples, self._importance = int(state["partial"][0]), float(state["partial"][1])
