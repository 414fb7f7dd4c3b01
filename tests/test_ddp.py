"""Lightning DDP on CPU (gloo, 2 processes): importances equal the single-process ones, a whole run
gives a sane matrix, and a DDP sweep writes each job once, into its own folder."""

import json

import pytest
import torch

from clexp import checkpoint
from tests.conftest import clexp_cli

# one process with batch 32 sees the same batches as two processes with 16 each (TensorLoader shards),
# as long as no pass ends (the last, padded batch would differ): 10 steps of 32 < 719 inputs
BASE = ["scenario.n_experiences=2", "train.epochs=null", "train.iterations=10", "model.hidden=[32]", "logger=none",
        "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "scenario.incremental=task"]


def importances(run_dir):
    module = checkpoint.load(checkpoint.last_checkpoint(run_dir))["module"]
    return {k: v for k, v in module.items() if "importance__" in k or "omega__" in k}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ewc", "si", "mas"])
def test_importances_under_ddp_match_one_process(tmp_path, method):
    single = clexp_cli([*BASE, f"method={method}", "train.batch_size=32", "hydra.run.dir=single"], tmp_path)
    assert single.returncode == 0, single.stderr
    two = clexp_cli([*BASE, f"method={method}", "train.batch_size=16", "trainer=ddp", "trainer.devices=2",
                     "trainer.accelerator=cpu", "hydra.run.dir=ddp"], tmp_path)
    assert two.returncode == 0, two.stderr
    a, b = importances(tmp_path / "single"), importances(tmp_path / "ddp")
    assert a.keys() == b.keys() and a
    for k in a:
        rel = (a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-12)
        assert rel < 1e-5, (k, float(rel))
    ra = json.loads((tmp_path / "single" / "results.json").read_text())
    rb = json.loads((tmp_path / "ddp" / "results.json").read_text())
    # evaluation covers each test sample once: the same matrix up to float rounding of the weights
    assert torch.allclose(torch.tensor(ra["acc_matrix"]), torch.tensor(rb["acc_matrix"]), atol=0.02)


@pytest.mark.slow
def test_ddp_sweep_runs_each_job_once_in_its_own_folder(tmp_path):
    out = clexp_cli(["-m", *BASE, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
                     "method=naive,si", "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0", "1"]  # the children started no sweep of their own
    for job, method in (("0", "naive"), ("1", "si")):
        results = json.loads((tmp_path / "sweep" / job / "results.json").read_text())
        assert results["config"]["method"]["name"] == method
        assert results["config"]["trainer"]["devices"] == 2
        R = results["acc_matrix"]
        assert len(R) == 2 and all(0 <= a <= 1 for r in R for a in r) and R[1][1] > 0.5  # chance: 0.2
        assert (tmp_path / "sweep" / job / "train_ddp_process_1.log").exists()
    assert not list(tmp_path.glob("outputs/multirun/*"))  # no stray sweep folder from a child
