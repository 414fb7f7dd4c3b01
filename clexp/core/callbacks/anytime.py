"""Anytime evaluation (the "stability gap", De Lange et al. 2023): every `eval.every_n_steps` optimizer
steps inside an experience, and at its end, the accuracy of every experience seen so far on a fixed,
seeded subset of `eval.anytime_samples` inputs of its validation split (of its test set when the
stream has none).

Logged as `anytime/acc_exp{j}` against the stream's step; kept for `results.json` (`anytime`) and
drawn as `anytime.png` with the experience boundaries marked. The runner adds this callback only
when `eval.every_n_steps` is set: off, it costs nothing. Its records live in the stream checkpoint,
so a resumed run ends with the same curves.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from clexp.core.evaluation import accuracy_per_experience
from clexp.data.images import cat_inputs, is_lazy
from clexp.data.stream import Stream


def subset_seed(seed: int, experience: int) -> int:
    """The subset's seed: the run's seed and the experience only (as the validation split's)."""
    return 2_000_003 * int(seed) + 104_729 * (int(experience) + 1) + 31


class AnytimeEvaluation(pl.Callback):
    def __init__(self, stream: Stream, every_n_steps: int, samples: int = 256, seed: int = 0,
                 batch_size: int = 1024):
        self.every, self.n, self.batch_size = int(every_n_steps), len(stream), batch_size
        self.source = "val" if stream.has_validation else "test"
        xs, ys, ts = [], [], []
        for e in stream:
            x, y, t = (getattr(e, f"{a}_{self.source}") for a in "xyt")
            g = torch.Generator().manual_seed(subset_seed(seed, e.index))
            keep = torch.sort(torch.randperm(len(y), generator=g)[: int(samples)]).values
            xs.append(x[keep]), ys.append(y[keep]), ts.append(t[keep])
        self._x, self._y, self._t = cat_inputs(xs), torch.cat(ys), torch.cat(ts)
        self.samples = int(samples)
        # one record per evaluation: the stream's optimizer step, the experience trained, accuracies 0..i
        self.steps: list[int] = []
        self.experience: list[int] = []
        self.acc: list[list[float]] = []
        self.boundaries: list[int] = []  # the stream's step at the end of each experience
        self.seconds: list[float] = []  # evaluation seconds per experience (the cost of being on)
        self.begin(0, 0, 0)

    def begin(self, experience: int, steps_before: int, done_steps: int = 0) -> None:
        """Before experience `experience`'s fit: the stream's steps before it, those already done in it."""
        self.current, self.steps_before, self.done_steps = experience, steps_before, done_steps

    def evaluate(self, pl_module) -> list[float]:
        """Accuracy per experience 0..current on the subsets."""
        device = pl_module.device
        if self._y.device != device:  # inputs read from files stay files
            self._x, self._y, self._t = (a if is_lazy(a) else a.to(device) for a in (self._x, self._y, self._t))
        seen = self._t <= self.current
        accs = accuracy_per_experience(pl_module, self._x[seen], self._y[seen], self._t[seen], self.current + 1,
                                       self.batch_size)
        return accs

    def _record(self, trainer, pl_module, step: int) -> None:
        start = time.perf_counter()
        accs = self.evaluate(pl_module)
        self.seconds.extend([0.0] * (self.current + 1 - len(self.seconds)))
        self.seconds[self.current] += time.perf_counter() - start
        while self.steps and self.steps[-1] >= step:  # a re-run stretch after a resume replaces its records
            self.steps.pop(), self.experience.pop(), self.acc.pop()
        self.steps.append(step), self.experience.append(self.current), self.acc.append(accs)
        if trainer.logger is not None:
            trainer.logger.log_metrics({f"anytime/acc_exp{j}": a for j, a in enumerate(accs)}, step=step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = self.done_steps + trainer.global_step  # optimizer steps in this experience
        if step % self.every == 0 and step > 0:
            self._record(trainer, pl_module, self.steps_before + step)

    def on_train_end(self, trainer, pl_module):
        step = self.steps_before + self.done_steps + trainer.global_step
        if not (self.steps and self.steps[-1] == step and self.experience[-1] == self.current):
            self._record(trainer, pl_module, step)
        del self.boundaries[self.current:]
        self.boundaries.append(step)

    def results(self) -> dict:
        return {"every_n_steps": self.every, "samples": self.samples, "set": self.source, "steps": self.steps,
                "experience": self.experience, "acc": self.acc, "boundaries": self.boundaries,
                "eval_s": self.seconds}

    def state_dict(self) -> dict:
        return {"steps": self.steps, "experience": self.experience, "acc": self.acc, "boundaries": self.boundaries,
                "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.experience = list(state["steps"]), list(state["experience"])
        self.acc, self.boundaries = [list(a) for a in state["acc"]], list(state["boundaries"])
        self.seconds = list(state.get("seconds", []))

    def plot(self, path: Path, title: str = "") -> Path | None:
        """`anytime.png`: each experience's accuracy against the stream's step, boundaries dashed."""
        if not self.steps:
            return None
        from clexp.core.plots import pyplot

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
        for j in range(self.n):
            pts = [(s, a[j]) for s, a in zip(self.steps, self.acc) if j < len(a)]
            if pts:
                ax.plot([s for s, _ in pts], [100 * a for _, a in pts], lw=1.4, label=f"exp{j}")
        for b in self.boundaries[:-1]:
            ax.axvline(b, color="gray", ls="--", lw=0.8)
        ax.set_xlabel("optimizer step (stream); dashed: experience boundaries")
        ax.set_ylabel(f"accuracy (%), ≤ {self.samples} {self.source} inputs per exp.")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=min(self.n, 5), loc="lower left")
        ax.set_title(title or f"anytime evaluation every {self.every} steps", fontsize=10)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return Path(path)
