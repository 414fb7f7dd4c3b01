"""`model.freeze_norm_stats`: from the second experience on, BatchNorm's running statistics (buffers
no penalty protects) stay those of experience 0 while its affine parameters still train; derived
from the checkpointed experience index, so a resumed run freezes alike."""

import json
import signal

import pytest
import pytorch_lightning as pl
import torch

from clexp.core import checkpoint
from clexp.core.module import ContinualModule
from clexp.data.loader import TensorLoader
from clexp.models import CNN, ResNet18
from tests.conftest import clexp_cli

SIZE = 16  # images large enough for every model here (the reduced ResNet-18 needs 16×16)


def data(task, n=32):
    g = torch.Generator().manual_seed(task)
    return (torch.randn(n, 1, SIZE, SIZE, generator=g) * (1 + task) + 2 * task, torch.randint(0, 2, (n,), generator=g),
            torch.full((n,), task, dtype=torch.long))


def fit(module, task, callbacks=(), steps=6):
    module.experience.fill_(task)  # as the runner's `prepare` does
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))
    trainer.fit(module, TensorLoader(data(task), batch_size=8, shuffle=True, seed=task))


def stats(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def new_module(freeze, factory=None):
    torch.manual_seed(0)
    model = (factory or (lambda f: CNN((1, SIZE, SIZE), 2, channels=[4, 4], hidden=[6], batch_norm=True,
                                       freeze_norm_stats=f)))(freeze)
    return ContinualModule(model, lambda p: torch.optim.SGD(p, lr=0.05))


@pytest.mark.parametrize("factory", [None, lambda f: ResNet18((1, SIZE, SIZE), 2, width=2, freeze_norm_stats=f)])
@pytest.mark.parametrize("freeze", [True, False])
def test_statistics_after_experience_1_equal_those_after_experience_0_only_when_frozen(freeze, factory):
    module = new_module(freeze, factory)
    fit(module, 0)
    after0 = stats(module.model)
    bn_params = {n: p.detach().clone() for n, p in module.model.named_parameters()
                 if isinstance(module.model.get_submodule(n.rsplit(".", 1)[0]), torch.nn.BatchNorm2d)}
    assert bn_params
    fit(module, 1)
    after1 = stats(module.model)
    same = all(torch.equal(after0[k], after1[k]) for k in after0)
    assert same is freeze
    # the affine parameters of the normalisation layers still train
    for n, p in module.model.named_parameters():
        if n in bn_params:
            assert not torch.equal(p.detach(), bn_params[n]), n


def test_experience_0_trains_its_statistics_even_when_frozen_later():
    module = new_module(True)
    before = stats(module.model)
    fit(module, 0)
    assert not all(torch.equal(before[k], v) for k, v in stats(module.model).items())


def test_freezing_follows_the_loaded_experience_index_and_survives_a_callback_that_calls_train():
    module = new_module(True)
    fit(module, 0)
    module.experience.fill_(1)
    state = module.state_dict()  # a checkpoint taken inside experience 1

    class Unfreezer(pl.Callback):  # e.g. an estimator that restores the whole module's train mode
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            pl_module.train()

    resumed = new_module(True)
    resumed.load_state_dict(state)
    before = stats(resumed.model)
    trainer = pl.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Unfreezer()])
    trainer.fit(resumed, TensorLoader(data(1), batch_size=8, shuffle=True, seed=1))  # no fill: from the state
    assert all(torch.equal(before[k], v) for k, v in stats(resumed.model).items())


@pytest.mark.slow
def test_killed_run_with_frozen_statistics_resumes_to_identical_results(tmp_path):
    args = ["scenario.incremental=task", "train.epochs=1", "model=cnn", "model.channels=[4]", "model.hidden=[16]",
            "model.batch_norm=true", "model.freeze_norm_stats=true", "method=l2", "logger=none", "plots=false",
            "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "trainer.checkpoint_every_n_steps=2"]
    full = clexp_cli([*args, "hydra.run.dir=full"], tmp_path)
    assert full.returncode == 0, full.stderr
    # 9 batches per experience: step 21 lies inside experience 2 (steps 18..26), between checkpoints
    killed = clexp_cli([*args, "hydra.run.dir=killed"], tmp_path, env={"CLEXP_KILL_AT_STEP": "21"})
    assert killed.returncode == -signal.SIGKILL
    state = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "killed"))
    assert state["experience"] == 2 and not state["finished"]
    resumed = clexp_cli(["resume=killed"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "full" / "results.json").read_text())
    b = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert a["acc_matrix"] == b["acc_matrix"]
    wa = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "full"))["module"]
    wb = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "killed"))["module"]
    assert any("running_mean" in k for k in wa)
    for k in wa:  # weights, BatchNorm statistics, L2's buffers: bit for bit
        assert torch.equal(wa[k], wb[k]), k
