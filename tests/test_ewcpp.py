"""EWC++: the running Fisher inside Lightning against a float64 oracle of the same schedule (the
per-sample Fisher of tests/oracles.py, one input and one class at a time, at the recorded parameters
of each update step), exact and sampled; per-task masks in a mixed (blurry) batch; the snapshot the
penalty holds at a consolidation."""

import copy
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from clexp.core.module import ContinualModule
from clexp.data.loader import TensorLoader
from clexp.methods.ewcpp import EWCPPPenalty, OnlineFisher
from clexp.models import MLP
from tests import oracles

N, BATCH = 24, 8


class Recorder(pl.Callback):
    """The parameters and the batch at the start of every step."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((copy.deepcopy(pl_module.model).double(), [b.clone() for b in batch]))


def data(seed=1, n=N):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def fit(module, callbacks, x, y, epochs=2, t=None):
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    t = torch.zeros(len(y), dtype=torch.long) if t is None else t
    trainer.fit(module, TensorLoader((x, y, t), batch_size=BATCH, shuffle=False))
    return trainer


def oracle_running_fisher(seen, alpha, every, variant="exact", draws=None):
    """F ← F_batch on the first update, α·F_batch + (1 − α)·F after; updates at steps 0, every, 2·every…"""
    F = None
    for step, (model, (x, y, _)) in enumerate(seen):
        if step % every:
            continue
        new = oracles.fisher(model, x.double(), variant=variant, draws=None if draws is None else draws[step])
        F = new if F is None else {k: alpha * new[k] + (1 - alpha) * F[k] for k in new}
    return F


def module(lam=1.0):
    torch.manual_seed(0)
    m = ContinualModule(MLP((5,), 3, hidden=[4]), lambda p: torch.optim.SGD(p, lr=0.1), EWCPPPenalty(lam))
    return m


@pytest.mark.parametrize("alpha,every", [(0.9, 2), (0.3, 1), (1.0, 3)])
def test_running_fisher_matches_the_float64_oracle(alpha, every):
    m, rec = module(), Recorder()
    x, y = data()
    fit(m, [OnlineFisher(alpha=alpha, update_every=every, variant="exact", plot=False), rec], x, y)
    reg = m.regularizer
    expected = oracle_running_fisher(rec.seen, alpha, every)
    got = {n: f.double() for n, f in zip(reg.names, reg.running("fisher"))}
    assert oracles.rel_err(got, expected) < 1e-5
    assert int(reg.fisher_updates) == len(range(0, len(rec.seen), every))
    # at the end of the fit: the penalty holds that Fisher and the parameters then (F* ← F, θ* ← θ)
    params = dict(m.model.named_parameters())
    for n, f in zip(reg.names, reg.running("fisher")):
        assert torch.equal(reg.importance(n), f) and torch.equal(reg.anchor(n), params[n].detach())


def test_sampled_fisher_uses_the_seeded_draws_of_each_step():
    """The sampled variant: the labels drawn with the step's generator (seed and stream step), against
    the oracle given the same draws; batches of 8 (one chunk of the engine: one multinomial call)."""
    m, rec = module(), Recorder()
    x, y = data()
    seed, every = 3, 2
    fit(m, [OnlineFisher(alpha=0.5, update_every=every, variant="sampled", seed=seed, plot=False), rec], x, y)
    draws = {}
    for step, (model, (xb, _, _)) in enumerate(rec.seen):
        if step % every == 0:
            g = torch.Generator().manual_seed(seed * 104_729 + 7_919 * step + 1)
            with torch.no_grad():
                p = torch.softmax(copy.deepcopy(model).float()(xb), -1)
            draws[step] = torch.multinomial(p, 1, replacement=True, generator=g)
    expected = oracle_running_fisher(rec.seen, 0.5, every, "sampled", draws)
    got = {n: f.double() for n, f in zip(m.regularizer.names, m.regularizer.running("fisher"))}
    assert oracles.rel_err(got, expected) < 1e-5


def test_a_mixed_batch_takes_each_task_with_its_own_mask():
    """A blurry task-IL batch holds two task ids: the Fisher is the count-weighted mean of each group's
    Fisher under its own output mask (task 0: outputs 0, 1; task 1: output 2 and 0)."""
    torch.manual_seed(0)
    masks = torch.tensor([[True, True, False], [True, False, True]])
    m = ContinualModule(MLP((5,), 3, hidden=[4]), lambda p: torch.optim.SGD(p, lr=0.1), EWCPPPenalty(1.0), masks)
    x, _ = data(n=8)
    t = torch.tensor([0, 0, 1, 0, 1, 1, 1, 0])
    y = torch.where(t == 0, torch.tensor(1), torch.tensor(2))
    cb = OnlineFisher(variant="exact", plot=False)
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=0)))
    got = {k: v.double() for k, v in cb.batch_fisher(trainer, m, x, y, t).items()}
    model = copy.deepcopy(m.model).double()
    parts = [oracles.fisher(model, x[t == k].double(), mask=masks[k]) for k in (0, 1)]
    share = [(t == k).double().mean() for k in (0, 1)]
    expected = {n: share[0] * parts[0][n] + share[1] * parts[1][n] for n in parts[0]}
    assert oracles.rel_err(got, expected) < 1e-6


def test_the_snapshot_is_replaced_not_summed_and_the_average_runs_on():
    m = module()
    cb = OnlineFisher(alpha=0.9, update_every=2, variant="exact", plot=False)
    x, y = data()
    fit(m, [cb], x, y, epochs=1)
    reg = m.regularizer
    first = {n: reg.importance(n).clone() for n in reg.names}
    running_after_first = [f.clone() for f in reg.running("fisher")]
    x2, y2 = data(seed=2)
    rec = Recorder()
    fit(m, [cb, rec], x2, y2, epochs=1)
    assert int(reg.consolidations) == 2
    for n, f in zip(reg.names, reg.running("fisher")):
        assert torch.equal(reg.importance(n), f)  # replaced by the running Fisher, not first + it
        assert not torch.allclose(reg.importance(n), first[n])
    # the moving average went on from where the first experience left it (its first update blends in)
    F = {n: f.double() for n, f in zip(reg.names, running_after_first)}
    for step, (model, (xb, _, _)) in enumerate(rec.seen):
        if step % 2 == 0:
            new = oracles.fisher(model, xb.double())
            F = {k: 0.9 * new[k] + 0.1 * F[k] for k in new}
    got = {n: f.double() for n, f in zip(reg.names, reg.running("fisher"))}
    assert oracles.rel_err(got, F) < 1e-5
    assert reg.scale == 0.5  # (λ/2)·Σ F* (θ − θ*)²


@pytest.mark.parametrize("kwargs,key", [({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha"),
                                        ({"update_every": 0}, "update_every"), ({"variant": "batch"}, "variant")])
def test_bad_values_name_their_argument(kwargs, key):
    from clexp.config.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        OnlineFisher(**kwargs)
