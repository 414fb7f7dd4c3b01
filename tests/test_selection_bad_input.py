"""Bad values of the validation split, the first-k protocol, the objective and anytime evaluation:
one line naming the key, exit code 2, before any training (the style of tests/test_bad_input.py)."""

import pytest

QUICK = ["logger=none", "trainer.enable_progress_bar=false", "hydra.run.dir=run"]

CASES = [
    ("train.val_fraction=1", "train.val_fraction"),
    ("train.val_fraction=1.5", "train.val_fraction"),
    ("train.val_fraction=-0.1", "train.val_fraction"),
    ("train.val_fraction=abc", "train.val_fraction"),
    ("scenario.use_first=6", "scenario.use_first"),
    ("scenario.use_first=0", "scenario.use_first"),
    ("scenario=permuted scenario.n_experiences=3 scenario.use_first=4", "scenario.use_first"),
    ("objective=train", "objective"),
    ("eval.every_n_steps=0", "eval.every_n_steps"),
    ("eval.every_n_steps=-3", "eval.every_n_steps"),
    ("eval.every_n_steps=5 eval.anytime_samples=0", "eval.anytime_samples"),
]


def refused(out, key):
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert len(lines) == 1 and key in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


@pytest.mark.parametrize("overrides,key", CASES, ids=[c[0].split()[-1] for c in CASES])
def test_bad_value_is_rejected_with_its_key(tmp_path, clexp_main, overrides, key):
    out = clexp_main([*QUICK, *overrides.split()], tmp_path)
    refused(out, key)
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before training


def test_split_leaving_a_class_without_validation_names_experience_class_and_fraction(tmp_path, clexp_main):
    # Split Digits: 1,437 training images, about 144 per class; 0.005 × 144 < 1
    out = clexp_main([*QUICK, "train.val_fraction=0.005"], tmp_path)
    line = refused(out, "train.val_fraction")
    assert "experience 0" in line and "class 0" in line
    smallest = float(line.split("every class of every experience one is ")[1].split()[0])
    assert 0.005 < smallest < 0.01
    assert not (tmp_path / "run" / "checkpoints").exists()
    ok = clexp_main([*QUICK, f"train.val_fraction={smallest}", "experiment=smoke", "scenario.n_experiences=2",
                     "plots=false", "hydra.run.dir=ok"], tmp_path)
    assert ok.returncode == 0, ok.stderr  # the fraction it names works
