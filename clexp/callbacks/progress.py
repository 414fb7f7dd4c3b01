"""Lightning's progress bar, told which experience of how many is training; a bar for long reads
outside training (importance estimation over files)."""

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


def chunk_progress(chunks, total: int, desc: str, trainer=None):
    """Yield the `(size, item)` pairs of `chunks` unchanged; with a progress bar counting `total`
    inputs that appears only once the read has taken more than 2 seconds (never when the run has no
    progress bar, nor on ranks other than 0)."""
    shown = trainer is not None and getattr(trainer, "progress_bar_callback", None) is not None \
        and trainer.is_global_zero
    if not shown:
        yield from chunks
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="input", delay=2.0, leave=False, dynamic_ncols=True) as bar:
        for size, item in chunks:
            yield size, item
            bar.update(size)
