"""Stable SGD (experiment=stable_sgd): the per-experience learning rate lr·γ^i, in every experience's
optimizer (any method), the dropout in the model, and the preset's values."""

import pytest
import pytorch_lightning as pl
from torch import nn

from clexp.core.runner import StreamRunner
from clexp.core.validation import validate
from tests.conftest import compose


class LearningRates(pl.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_start(self, trainer, pl_module):
        self.lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])


@pytest.mark.parametrize("method", ["naive", "si"])
def test_each_experience_trains_at_the_decayed_rate(tmp_path, method):
    cfg = compose(["experiment=stable_sgd", f"method={method}", "model.hidden=[16]", "logger=none", "plots=false",
                   "trainer.enable_progress_bar=false", "train.iterations=2", "scenario.n_experiences=5"])
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.train.lr_decay, cfg.train.batch_size,
            cfg.model.dropout) == (0.04, 0.8, 0.4, 16, 0.5)
    probe = LearningRates()
    runner = StreamRunner(cfg, tmp_path, parts=validate(cfg), extra_callbacks=[probe])
    assert [m.p for m in runner.model.modules() if isinstance(m, nn.Dropout)] == [0.5]
    runner.run()
    expected = [0.1 * 0.4 ** (i + 1) for i in range(5)]  # the official code's rates: lr·γ^τ, τ = 1..5
    assert [g[0] for g in probe.lrs] == pytest.approx(expected, rel=1e-12)
