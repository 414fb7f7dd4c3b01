"""Task-free streams and the online setting, on Split Digits with a tiny MLP: one continuous run of
train.iterations steps (the experiences' shares in proportion to their data), evaluated at the original
experience ends; no boundary event (consolidations every method.consolidate_every steps only, the
optimizer never rebuilt); importances from the training batches, never from a pass over an
experience's data; every method runs without boundaries."""

import pytest
import torch

from clexp.core.runner import StreamRunner, task_free_steps
from clexp.core.validation import validate
from tests.conftest import FAST, compose

TINY = [*FAST, "model.hidden=[16]", "plots=false", "optimizer=adam", "optimizer.lr=0.01"]
FREE = ["scenario.task_free=true", "train.iterations=40"]


def runner(tmp_path, overrides):
    cfg = compose([*TINY, *overrides])
    r = StreamRunner(cfg, tmp_path, parts=validate(cfg))
    return r, r.run()


def test_steps_are_shared_in_proportion_to_the_data():
    assert task_free_steps(40, [100, 100, 100, 100]) == [10, 10, 10, 10]
    assert task_free_steps(10, [10, 30]) == [2, 8]  # ends at round(10·10/40) = 2 and 10
    assert sum(task_free_steps(37, [11, 13, 17, 19])) == 37


def test_one_continuous_run_evaluated_at_the_experience_ends(tmp_path, monkeypatch):
    from clexp.methods import si

    calls = []
    real = si.PathIntegral.consolidate
    monkeypatch.setattr(si.PathIntegral, "consolidate", lambda self, tr, m: (calls.append(tr.global_step),
                                                                              real(self, tr, m)))
    r, results = runner(tmp_path, [*FREE, "method=si", "method.consolidate_every=8"])
    assert results["compute"]["optimizer_steps"] == task_free_steps(40, [len(e.y_train) for e in r.stream])
    assert len(results["acc_matrix"]) == 5 and len(results["acc_matrix"][0]) == 5  # rows at the experience ends
    assert int(r.module.regularizer.consolidations) == 40 // 8 == len(calls)  # every 8 steps, never at an end
    # the optimizer went on over the experience ends: Adam's step count is the whole stream's
    assert int(r.optimizer_state[0]["state"][0]["step"]) == 40


@pytest.mark.parametrize("method", ["ewc", "online_ewc", "mas", "l2", "lwf", "kfac_ewc", "si", "ewcpp", "rwalk"])
def test_every_method_runs_without_boundaries(tmp_path, monkeypatch, method):
    """No estimator reads an experience's data (each would raise), every consolidation happens every
    10 steps; blurry boundaries and task-IL (a task id per sample) on top."""
    from clexp.methods import base, ewc, kfac_ewc, mas

    def refuse(*args, **kwargs):
        raise AssertionError("a pass over the experience's data")

    for module in (base, ewc, kfac_ewc, mas):
        monkeypatch.setattr(module, "experience_shard", refuse)
    overrides = [*FREE, f"method={method}", "method.consolidate_every=10", "scenario.boundaries=blurry",
                 "scenario.incremental=task"]
    if method == "rwalk":
        overrides.append("method.lam=1e-6")
    r, results = runner(tmp_path, overrides)
    assert sum(results["compute"]["optimizer_steps"]) == 40
    reg = r.module.regularizer
    if hasattr(reg, "consolidations"):
        assert int(reg.consolidations) == 4
    elif method == "kfac_ewc":
        assert int(reg.slots) == 4
    else:  # lwf: every output seen so far is an old one
        assert (reg.output_group >= 0).sum() > 0


def test_online_setting_estimates_from_the_batches(tmp_path, monkeypatch):
    """experiment=online: one pass, batches of 10, EWC's Fisher the mean of its per-batch Fishers (no
    second pass over the experience: the boundary estimate would raise), consolidated at each end."""
    from clexp.methods import ewc

    monkeypatch.setattr(ewc, "experience_shard", lambda *a, **k: (_ for _ in ()).throw(AssertionError("2nd pass")))
    seen = []
    real = ewc.FisherImportance.estimate_batch
    monkeypatch.setattr(ewc.FisherImportance, "estimate_batch",
                        lambda self, tr, m, x, y, t: (seen.append(len(y)), real(self, tr, m, x, y, t))[1])
    preset = compose(["experiment=online"]).train
    assert (preset.epochs, preset.iterations, preset.batch_size, preset.online) == (1, None, 10, True)
    r, results = runner(tmp_path, ["experiment=online", "method=ewc", "train.epochs=1"])  # FAST's 2 epochs: back to 1
    assert int(r.module.regularizer.consolidations) == 5
    assert sum(seen) == sum(len(e.y_train) for e in r.stream)  # every training sample estimated once


def test_online_mean_is_the_sample_weighted_mean_of_the_batches():
    from types import SimpleNamespace

    from clexp.methods.base import ImportanceCallback

    class Constant(ImportanceCallback):
        def estimate_batch(self, trainer, pl_module, x, y, t):
            return {"w": x.mean(0)}

    cb = Constant(plot=False)
    got = {}
    module = SimpleNamespace(task_free=False, online_importance=True,
                             regularizer=SimpleNamespace(consolidate=lambda imp, model: got.update(imp)), model=None)
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=0)))
    xs = [torch.tensor([[1.0], [3.0]]), torch.tensor([[10.0]])]
    for x in xs:
        cb.on_train_batch_end(trainer, module, None, (x, torch.zeros(len(x)), torch.zeros(len(x))), 0)
    cb.consolidate(trainer, module)
    assert torch.allclose(got["w"], torch.tensor([14.0 / 3]))  # (1 + 3 + 10) / 3 samples
    assert cb._sums is None and cb._count == 0
