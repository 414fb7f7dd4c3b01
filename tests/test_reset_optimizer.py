"""`train.reset_optimizer`: a fresh optimizer every experience (the default), or one optimizer whose state
(Adam's moments and step count) goes on over the experience boundaries (false, as Hsu et al. 2018's code),
resumed bit for bit from a stream checkpoint."""

import pytest
import pytorch_lightning as pl
import torch

from clexp.core.runner import StreamRunner
from clexp.core.validation import validate
from tests.conftest import FAST, compose
from tests.stop_resume import stopped_and_resumed

BASE = [*FAST, "plots=false", "model.hidden=[16]", "optimizer=adam", "scenario.n_experiences=5",
        "train.iterations=6", "train.epochs=null", "train.val_fraction=0"]


class AdamSteps(pl.Callback):
    """Adam's step count of the first parameter when each experience's training starts (after any load)."""

    def __init__(self):
        self.steps = []

    def on_train_start(self, trainer, pl_module):
        state = trainer.optimizers[0].state
        first = next(iter(state.values()), None)
        self.steps.append(int(first["step"]) if first else 0)


@pytest.mark.parametrize("reset,expected", [(True, [0, 0, 0, 0, 0]), (False, [0, 6, 12, 18, 24])])
def test_the_optimizer_state_is_carried_only_when_asked(tmp_path, reset, expected):
    cfg = compose([*BASE, f"train.reset_optimizer={str(reset).lower()}"])
    steps = AdamSteps()
    StreamRunner(cfg, tmp_path, parts=validate(cfg), extra_callbacks=[steps]).run()
    assert steps.steps == expected


def test_carried_and_fresh_optimizers_train_differently(tmp_path):
    runs = {r: StreamRunner(c := compose([*BASE, f"train.reset_optimizer={r}"]), tmp_path / r,
                            parts=validate(c)).run() for r in ("true", "false")}
    assert runs["true"]["acc_matrix"][0] == runs["false"]["acc_matrix"][0]  # the first experience: the same
    assert runs["true"]["acc_matrix"][1:] != runs["false"]["acc_matrix"][1:]


@pytest.mark.parametrize("stop,last", [(9, 8), (7, 6)], ids=["mid-experience", "boundary"])
def test_a_carried_optimizer_resumes_bit_for_bit(tmp_path, stop, last):
    base = [*BASE, "train.reset_optimizer=false", "trainer.checkpoint_every_n_steps=2", "method=ewc"]
    full, resumed, state, a, b = stopped_and_resumed(base, tmp_path, stop)
    assert state["steps"] + (0 if state["finished"] else state["point"]["step"]) == last
    assert full["acc_matrix"] == resumed["acc_matrix"] and full["metrics"] == resumed["metrics"]
    for k in a["module"]:
        assert torch.equal(a["module"][k], b["module"][k]), k
    for sa, sb in zip(a["optimizers"][0]["state"].values(), b["optimizers"][0]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
