"""Bad input of packnet, er (+replay=er) and Stable SGD's learning-rate decay: one line naming the key, exit 2,
before training."""

import pytest

QUICK = ["logger=none", "trainer.enable_progress_bar=false", "hydra.run.dir=run"]
FREE = "scenario.task_free=true train.iterations=100"

CASES = [
    ("method=packnet method.prune_fraction=0", "method.prune_fraction"),
    ("method=packnet method.prune_fraction=1", "method.prune_fraction"),
    ("method=packnet method.prune_fraction=1.5", "method.prune_fraction"),
    ("method=packnet method.prune_fraction=-0.2", "method.prune_fraction"),
    ("method=packnet method.retrain_epochs=-1", "method.retrain_epochs"),
    # one prunable layer of 64·8 = 512 weights: 512 → 5 → 0 free: room for 2 of the 5 experiences
    ("method=packnet method.prune_fraction=0.01 model.hidden=[8]", "method.prune_fraction"),
    (f"method=packnet {FREE}", "scenario.task_free"),
    ("method=er method.buffer_size=0", "method.buffer_size"),
    ("method=er method.buffer_size=-5", "method.buffer_size"),
    ("method=er method.replay_batch_size=0", "method.replay_batch_size"),
    ("method=ewc +replay=er method.buffer_size=0", "method.buffer_size"),
    ("method=si +replay=er method.replay_batch_size=0", "method.replay_batch_size"),
    ("train.lr_decay=0", "train.lr_decay"),
    ("train.lr_decay=1.5", "train.lr_decay"),
    ("experiment=stable_sgd train.lr_decay=-0.4", "train.lr_decay"),
    (f"experiment=stable_sgd {FREE}", "train.lr_decay"),
]


@pytest.mark.parametrize("overrides,key", CASES, ids=[c[1] + ":" + c[0] for c in CASES])
def test_bad_value_is_rejected_with_its_key(tmp_path, clexp_main, overrides, key):
    out = clexp_main([*QUICK, *overrides.split()], tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert len(lines) == 1 and key in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before training


def test_the_capacity_refusal_says_after_which_experience(tmp_path, clexp_main):
    out = clexp_main([*QUICK, "method=packnet", "method.prune_fraction=0.01", "model.hidden=[8]"], tmp_path)
    line = next(x for x in out.stderr.splitlines() if x.startswith("clexp: error:"))
    assert "room for 2 experience" in line and "after experience 1" in line and "features.1.weight" in line


def test_packnet_refuses_task_free_by_name(tmp_path, clexp_main):
    out = clexp_main([*QUICK, "method=packnet", *FREE.split()], tmp_path)
    line = next(x for x in out.stderr.splitlines() if x.startswith("clexp: error:"))
    assert "method=packnet" in line and "task-free" in line
