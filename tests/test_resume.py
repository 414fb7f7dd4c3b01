"""Resume: a run killed with SIGKILL in the middle of experience 3 and resumed ends with exactly the
results of the uninterrupted run; checkpoints are atomic and load without running code."""

import json
import signal

import pytest
import torch

from clexp.core import checkpoint
from tests.conftest import clexp_cli

# task-IL so that the penalty matters; 2 epochs × 9 batches = 18 steps per experience
BASE = ["scenario.incremental=task", "train.epochs=2", "model.hidden=[64]", "logger=none",
        "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "trainer.checkpoint_every_n_steps=4",
        "eval.every_n_steps=5"]  # anytime evaluation on: its curves must resume too


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ewc", "si"])
def test_killed_run_resumes_to_identical_results(tmp_path, method):
    args = [*BASE, f"method={method}"]
    full = clexp_cli([*args, "hydra.run.dir=full"], tmp_path)
    assert full.returncode == 0, full.stderr
    # step 43 lies inside experience 3 (steps 36..53), between checkpoints (every 4 steps)
    killed = clexp_cli([*args, "hydra.run.dir=killed"], tmp_path, env={"CLEXP_KILL_AT_STEP": "43"})
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "results.json").exists()
    state = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "killed"))
    assert state["experience"] == 2 and not state["finished"] and state["point"]["step"] == 4
    resumed = clexp_cli(["resume=killed"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming" in resumed.stdout
    story = (tmp_path / "killed" / "train.log").read_text()  # the run's story, continued where it was cut
    assert story.count("] - start ") == 2 and "] - Resuming " in story and "] - after 4 (5/5 experiences)" in story
    a = json.loads((tmp_path / "full" / "results.json").read_text())
    b = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert a["acc_matrix"] == b["acc_matrix"]
    assert a["metrics"] == b["metrics"]
    assert a["val_acc_matrix"] == b["val_acc_matrix"] and a["val_metrics"] == b["val_metrics"]  # the same split
    assert a["val_acc_matrix"] is not None and len(a["val_acc_matrix"]) == 5
    assert a["anytime"] == b["anytime"] | {"eval_s": a["anytime"]["eval_s"]}  # the same curves, steps, boundaries
    for key in ("optimizer_steps", "training_samples", "forward_flops_per_sample"):
        assert a["compute"][key] == b["compute"][key], key
    wa = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "full"))["module"]
    wb = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "killed"))["module"]
    assert wa.keys() == wb.keys()
    for k in wa:  # weights, penalty buffers, SI sums: bit for bit
        assert torch.equal(wa[k], wb[k]), k


def test_resume_of_a_folder_that_is_no_run_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    out = clexp_cli(["resume=empty"], tmp_path)
    assert out.returncode == 2
    assert "resume" in out.stderr and "checkpoints/last.pt" in out.stderr


def test_atomic_save_keeps_the_previous_file_when_a_save_fails(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    checkpoint.save_atomic({"experience": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"partial garbage")
        raise KeyboardInterrupt  # as if killed during the write

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic({"experience": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["experience"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left


def test_checkpoints_load_with_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(Exception, match="[Ww]eights only|weights_only"):
        checkpoint.load(path)
