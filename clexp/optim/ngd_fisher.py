"""Feeds `optimizer=ngd` its Fisher: every `update_every` steps, the sampled-label per-sample
diagonal Fisher of the model on the current batch (eval mode, the experience's outputs)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from clexp.config.argspec import check_args


class NaturalGradientFisher(pl.Callback):
    ARGS = {"update_every": ("int", {}), "samples": ("int", {})}

    def __init__(self, update_every: int = 1, samples: int = 1, seed: int = 0):
        check_args(NaturalGradientFisher.ARGS, update_every=update_every, samples=samples)
        self.update_every, self.samples, self.seed = update_every, samples, seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        from clexp.curvature import diag_fisher

        if trainer.global_step % self.update_every:
            return
        optimizers = [o for o in trainer.optimizers if getattr(o, "needs_fisher", False)]
        if not optimizers:
            return
        if not hasattr(self, "generator") or self.generator.device != pl_module.device:
            self.generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        x = batch[0]
        mask = pl_module.output_mask(int(pl_module.experience))
        if any(getattr(o, "curvature", "diag") == "kfac" for o in optimizers):
            self._kfac(pl_module.model, x, mask, optimizers)
        fisher = diag_fisher(pl_module.model, x, variant="sampled", samples=self.samples, chunk_size=len(x),
                             output_mask=mask, generator=self.generator, reduce=False)
        named = dict(pl_module.model.named_parameters())
        by_param = {named[n]: f for n, f in fisher.items()}
        for opt in optimizers:
            opt.update_fisher({p: by_param.get(p, torch.zeros_like(p)) for g in opt.param_groups for p in g["params"]})

    def _kfac(self, model, x, mask, optimizers) -> None:
        """Sampled-label Kronecker factors of the batch for every Linear / Conv2d layer."""
        from clexp.curvature.kronecker import hooked_layers, kfac_factors

        factors = kfac_factors(model, x, variant="sampled", samples=self.samples, chunk_size=len(x),
                               output_mask=mask, generator=self.generator)
        layers = hooked_layers(model)
        blocks = [(layers[n].weight, layers[n].bias, f["A"], f["G"]) for n, f in factors.items()]
        for opt in optimizers:
            if getattr(opt, "curvature", "diag") == "kfac":
                opt.update_kfac(blocks)
