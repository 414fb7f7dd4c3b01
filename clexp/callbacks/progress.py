"""Lightning's progress bar, told which experience of how many is training."""

from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar


class ExperienceProgressBar(TQDMProgressBar):
    """Shows `Experience i/T · epoch e/E` as the bar's description."""

    def __init__(self, refresh_rate: int = 10):
        super().__init__(refresh_rate=refresh_rate)

    def on_train_epoch_start(self, trainer, pl_module):
        super().on_train_epoch_start(trainer, pl_module)
        i = int(pl_module.experience) + 1
        epochs = "" if trainer.max_epochs in (None, -1) else f"/{trainer.max_epochs}"
        self.train_progress_bar.set_description(
            f"Experience {i}/{pl_module.n_experiences} · epoch {trainer.current_epoch + 1}{epochs}"
        )
