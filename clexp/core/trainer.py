"""The Lightning `Trainer` of one experience, built from `conf/trainer/*.yaml` with `_partial_`: the
runner adds what changes per experience (epochs or steps, callbacks, logger).

Two keys are clexp's own: `gradient_clip_val` (the module clips by norm in its manual optimization
step — Lightning refuses the Trainer argument with manual optimization) and
`checkpoint_every_n_steps` (stream checkpoints inside an experience). Everything else is passed
to `pytorch_lightning.Trainer` unchanged.
"""

from __future__ import annotations

import pytorch_lightning as pl

from clexp.config.argspec import check_args
from clexp.config.errors import check_number


class Trainer(pl.Trainer):
    ARGS = {"checkpoint_every_n_steps": ("int", {"allow_none": True})}

    def __init__(self, *, gradient_clip_val: float | None = None, checkpoint_every_n_steps: int | None = None,
                 **kwargs):
        if gradient_clip_val is not None:
            check_number("gradient_clip_val", gradient_clip_val, low=0, low_open=True)
        check_args(Trainer.ARGS, checkpoint_every_n_steps=checkpoint_every_n_steps)
        defaults = {"enable_checkpointing": False, "num_sanity_val_steps": 0, "limit_val_batches": 0,
                    "use_distributed_sampler": False}
        super().__init__(**{**defaults, **kwargs})
        self.clip_norm = gradient_clip_val
        self.checkpoint_every_n_steps = checkpoint_every_n_steps
