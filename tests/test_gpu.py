"""GPU-only checks (issue 23), skipped where torch sees no GPU: no host synchronisation in the training
step of any method, mixed precision keeps the importances in float32, one-GPU DDP equals one process.
`bash bench/gpu_check.sh` runs them first on a GPU machine."""

from __future__ import annotations

import json
import math

import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import clexp_cli, compose

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")

METHODS = ["naive", "ewc", "online_ewc", "si", "mas", "l2", "lwf", "kfac_ewc", "packnet"]
# a tiny stream on the GPU: 2 experiences (the second one with the penalty of the first), a narrow MLP
GPU = ["trainer=gpu", "logger=none", "trainer.enable_progress_bar=false", "plots=false", "model.hidden=[64]",
       "scenario.n_experiences=2"]
# steps per experience < the 23 batches of an experience: no step is an epoch's last batch but by design
STEPS = 6
NO_LOGGING = [*GPU, "train.epochs=null", f"train.iterations={STEPS}", "trainer.log_every_n_steps=1000000"]


def stream_runner(run_dir, overrides, extra_callbacks=()):
    """The real runner, as `tests.conftest.run_stream` builds it, with callbacks of the test's own."""
    from clexp.config.presets import apply_preset
    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate

    cfg = compose(list(overrides))
    apply_preset(cfg, list(overrides))
    return StreamRunner(cfg, run_dir, parts=validate(cfg), extra_callbacks=list(extra_callbacks))


class SyncIsAnError(pl.Callback):
    """`torch.cuda.set_sync_debug_mode("error")` from `on_train_batch_start` to `on_train_batch_end` of
    every step that does not log (`ContinualModule._log_now`, the module's own decision). Appended after
    every other callback: the methods' per-step work (SI's path integral in `on_train_batch_end`) and the
    infrastructure's (FiniteGuard) fall inside the checked window."""

    def __init__(self):
        self.checked = 0
        self.armed = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not pl_module._log_now():
            torch.cuda.set_sync_debug_mode("error")
            self.armed = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.checked += self.armed
        self.disarm()

    def on_exception(self, trainer, pl_module, exception):
        self.disarm()

    def disarm(self):
        if self.armed:
            torch.cuda.set_sync_debug_mode("default")
            self.armed = False


@needs_gpu
def test_sync_debug_mode_catches_a_host_sync():
    """The mechanism the next test relies on: a sync under "error" mode raises."""
    x = torch.ones(3, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError):
            x.sum().item()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@needs_gpu
@pytest.mark.parametrize("method", METHODS)
def test_no_host_sync_in_the_training_step(tmp_path, method):
    guard = SyncIsAnError()
    runner = stream_runner(tmp_path, [*NO_LOGGING, f"method={method}"], [guard])
    try:
        results = runner.run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert runner.module.device.type == "cuda"
    # per experience every step but the first (global_step 0: a logging step) ran under "error"
    assert guard.checked >= 2 * (STEPS - 1), guard.checked
    assert all(math.isfinite(a) for row in results["acc_matrix"] for a in row)


def float_buffers(runner) -> dict[str, torch.Tensor]:
    return {n: b for n, b in runner.module.regularizer.named_buffers() if b.is_floating_point()}


@needs_gpu
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("method", ["ewc", "si"])
def test_mixed_precision_runs_with_float32_importances(tmp_path, method, precision):
    runner = stream_runner(tmp_path, [*GPU, "train.epochs=1", f"method={method}", f"trainer.precision={precision}"])
    results = runner.run()
    R = results["acc_matrix"]
    assert all(math.isfinite(a) for row in R for a in row) and math.isfinite(results["metrics"]["avg_acc"])
    assert R[0][0] > 0.5 and R[1][1] > 0.5  # each experience learnt (5 classes each: chance 0.2)
    # the weights stay float32 under autocast; every importance, anchor and running sum too
    assert {p.dtype for p in runner.model.parameters()} == {torch.float32}
    buffers = float_buffers(runner)
    importances = {n: b for n, b in buffers.items() if n.startswith("importance__")}
    assert importances, sorted(buffers)
    assert all(b.dtype == torch.float32 for b in importances.values()), {n: b.dtype for n, b in importances.items()}
    assert all(b.dtype in (torch.float32, torch.float64) for b in buffers.values()), \
        {n: b.dtype for n, b in buffers.items()}
    assert all(bool(torch.isfinite(b).all()) for b in buffers.values())
    assert sum(float(b.abs().sum()) for b in importances.values()) > 0  # consolidated after experience 0
    if method == "si":
        omegas = [b for n, b in buffers.items() if n.startswith("omega__")]
        assert omegas and all(b.dtype == torch.float32 for b in omegas)


def importances(run_dir) -> dict[str, torch.Tensor]:
    from clexp.core import checkpoint
    module = checkpoint.load(checkpoint.last_checkpoint(run_dir))["module"]
    return {k: v for k, v in module.items() if "importance__" in k or "omega__" in k}


@needs_gpu
@pytest.mark.parametrize("method", ["ewc", "si"])
def test_ddp_on_one_gpu_equals_one_process(tmp_path, method):
    base = [*GPU, f"method={method}", "train.epochs=1"]
    single = clexp_cli([*base, "hydra.run.dir=single"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = clexp_cli([*base, "trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=1", "hydra.run.dir=ddp"],
                    tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    ra = json.loads((tmp_path / "single" / "results.json").read_text())
    rb = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert rb["config"]["trainer"]["strategy"] == "ddp" and rb["config"]["trainer"]["devices"] == 1
    assert torch.allclose(torch.tensor(ra["acc_matrix"]), torch.tensor(rb["acc_matrix"]), atol=0.02)
    a, b = importances(tmp_path / "single"), importances(tmp_path / "ddp")
    assert a.keys() == b.keys() and a
    for k in a:
        rel = (a[k].float() - b[k].float()).norm() / a[k].float().norm().clamp_min(1e-12)
        assert rel < 1e-3, (k, float(rel))
