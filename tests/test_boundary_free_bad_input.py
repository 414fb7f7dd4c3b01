"""Bad input of the boundary-free streams and methods: one line naming the key, exit 2, before training."""

import pytest

QUICK = ["logger=none", "trainer.enable_progress_bar=false", "hydra.run.dir=run"]
FREE = "scenario.task_free=true train.iterations=100"

CASES = [
    (f"method=ewc {FREE}", "method.consolidate_every"),
    (f"method=online_ewc {FREE}", "method.consolidate_every"),
    (f"method=mas {FREE}", "method.consolidate_every"),
    (f"method=l2 {FREE}", "method.consolidate_every"),
    (f"method=lwf {FREE}", "method.consolidate_every"),
    (f"method=kfac_ewc {FREE}", "method.consolidate_every"),
    ("method=ewcpp method.alpha=0", "method.alpha"),
    ("method=ewcpp method.alpha=1.5", "method.alpha"),
    ("method=rwalk method.alpha=-0.2", "method.alpha"),
    ("method=ewcpp method.update_every=0", "method.update_every"),
    ("method=rwalk method.update_every=0", "method.update_every"),
    ("method=rwalk method.variant=both", "method.variant"),
    ("method=rwalk method.eps=0", "method.eps"),
    ("method=ewcpp method.fisher.variant=batch", "method.fisher.variant"),
    ("method=si method.consolidate_every=0", "method.consolidate_every"),
    ("scenario.boundaries=blurry scenario.blur=1", "scenario.blur"),
    ("scenario.boundaries=blurry scenario.blur=-0.1", "scenario.blur"),
    ("scenario=permuted scenario.blur=1.5", "scenario.blur"),
    ("scenario.boundaries=fuzzy", "scenario.boundaries"),
    ("scenario.task_free=true", "train.iterations"),
    ("scenario.task_free=true train.iterations=3", "train.iterations"),
    (f"method=joint {FREE}", "method.joint"),
    ("train.online=maybe", "train.online"),
    ("method=gpm method.threshold=0", "method.threshold"),
    ("method=gpm method.threshold=1.5", "method.threshold"),
    ("method=gpm method.samples=0", "method.samples"),
    ("method=ogd method.memory_per_experience=0", "method.memory_per_experience"),
    ("method=agem method.memory_per_experience=0", "method.memory_per_experience"),
    ("method=agem method.memory_batch_size=0", "method.memory_batch_size"),
    (f"method=gpm {FREE}", "scenario.task_free"),
    (f"method=ogd {FREE}", "scenario.task_free"),
    (f"method=agem {FREE}", "scenario.task_free"),
]


@pytest.mark.parametrize("overrides,key", CASES, ids=[c[1] + ":" + c[0] for c in CASES])
def test_bad_value_is_rejected_with_its_key(tmp_path, clexp_main, overrides, key):
    out = clexp_main([*QUICK, *overrides.split()], tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert len(lines) == 1 and key in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before training


def test_the_refusal_names_the_method_and_what_to_set(tmp_path, clexp_main):
    out = clexp_main([*QUICK, "method=mas", *FREE.split()], tmp_path)
    line = next(x for x in out.stderr.splitlines() if x.startswith("clexp: error:"))
    assert "method=mas" in line and "method.consolidate_every=N" in line and "task-free" in line
