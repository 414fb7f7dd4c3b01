"""Every bad config value stops the run before any data or model, with one line naming the key."""

from pathlib import Path

import pytest

from tests.conftest import clexp_cli

QUICK = ["logger=none", "trainer.enable_progress_bar=false", "hydra.run.dir=run"]

CASES = [
    ("method=ewc method.lam=-1", "method.lam"),
    ("method=online_ewc method.lam=-5", "method.lam"),
    ("method=si method.c=-0.1", "method.c"),
    ("method=si method.xi=0", "method.xi"),
    ("method=online_ewc method.gamma=0", "method.gamma"),
    ("method=online_ewc method.gamma=1.5", "method.gamma"),
    ("method=ewc method.fisher.variant=bogus", "method.fisher.variant"),
    ("method=ewc method.fisher.samples=0", "method.fisher.samples"),
    ("scenario.n_experiences=3", "scenario.n_experiences"),
    ("scenario.class_order=[0,0,1,2,3,4,5,6,7,8]", "scenario.class_order"),
    ("model.multihead=true scenario.incremental=class", "model.multihead"),
    ("optimizer.lr=0", "optimizer.lr"),
    ("optimizer=adam optimizer.lr=-1e-3", "optimizer.lr"),
    ("train.epochs=null train.iterations=null", "train.epochs"),
    ("trainer.accelerator=cpu trainer.devices=4096", "trainer.devices"),
    ("trainer.accelerator=gpu", "trainer.accelerator"),
    ("resume=/nonexistent/run", "resume"),
    ("scenario.incremental=sideways", "scenario.incremental"),
    ("scenario=permuted scenario.n_experiences=0", "scenario.n_experiences"),
    ("scenario=rotated scenario.angles=[0,90]", "scenario.angles"),
    ("logger=wandb logger.mode=sometimes", "logger.mode"),
    ("optimizer=ngd optimizer.damping=-1", "optimizer.damping"),
    ("optimizer=ngd optimizer.fisher=full", "optimizer.fisher"),
    ("optimizer=ngd callbacks.ngd_fisher.update_every=0", "callbacks.ngd_fisher.update_every"),
    ("optimizer=adam optimizer.betas=[2.0,0.9]", "optimizer"),
    ("train.eval_batch_size=0", "train.eval_batch_size"),
    ("scenario.outputs=some", "scenario.outputs"),
    ("scenario.outputs=seen scenario.boundaries=blurry", "scenario.outputs"),
    ("scenario.outputs=seen scenario.task_free=true train.iterations=50", "scenario.outputs"),
    ("train.reset_optimizer=sometimes", "train.reset_optimizer"),
    ("train.reset_optimizer=false train.lr_decay=0.5", "train.reset_optimizer"),
]


@pytest.mark.parametrize("overrides,key", CASES, ids=[c[1] + ":" + c[0].split()[-1] for c in CASES])
def test_bad_value_is_rejected_with_its_key(tmp_path, clexp_main, overrides, key):
    out = clexp_main([*QUICK, *overrides.split()], tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert len(lines) == 1 and key in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before training


@pytest.mark.parametrize("overrides", ["method=nonexistent", "scenario=nonexistent", "model=nonexistent",
                                       "optimizer=nonexistent"])
def test_unknown_group_option_is_one_line_with_the_options(tmp_path, clexp_main, overrides):
    from clexp.config import conf_source
    out = clexp_main([*QUICK, overrides], tmp_path)
    group = overrides.split("=")[0]
    options = sorted(p.stem for p in (Path(conf_source.config_dir()) / group).glob("*.yaml"))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0] == (f"clexp: error: ConfigError: {group}='nonexistent' is not allowed: {group} is one of "
                        f"{', '.join(options)}")


def test_exploding_learning_rate_stops_with_the_loss_named(tmp_path, clexp_main):
    out = clexp_main([*QUICK, "optimizer.lr=1e12", "train.epochs=3"], tmp_path)
    assert out.returncode == 3, out.stderr
    assert "experience 0, step" in out.stderr and "the loss became" in out.stderr


def test_exploding_penalty_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    from clexp.core import (
        checkpoint,  # c = 1e300 overflows float32: the penalty is not finite from the first step of experience 1
    )
    out = clexp_cli([*QUICK, "method=si", "method.c=1e300", "train.epochs=2"], tmp_path)
    assert out.returncode == 3, out.stderr
    assert "experience 1, step 1: the penalty became" in out.stderr
    state = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "run"))
    assert state["experience"] == 0 and state["finished"]
    assert all(v.isfinite().all() for v in state["module"].values() if v.is_floating_point())


KFAC_CASES = [("method=kfac_ewc method.fisher.variant=empirical", "method.fisher.variant"),
              ("method=kfac_ewc method.mode=both", "method.mode"),
              ("method=lwf method.temperature=0", "method.temperature"),
              ("method=mas method.max_samples=0", "method.max_samples"),
              ("method=l2 method.lam=-1", "method.lam"),
              ("method=ewc method.fisher.chunk_size=0", "method.fisher.chunk_size")]


@pytest.mark.parametrize("overrides,key", KFAC_CASES, ids=[c[0].split()[-1] for c in KFAC_CASES])
def test_method_values_are_checked_by_the_methods_themselves(tmp_path, clexp_main, overrides, key):
    out = clexp_main([*QUICK, *overrides.split()], tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert len(lines) == 1 and key in lines[0], out.stderr


def test_validation_has_no_method_names():
    """Methods check their own values: validation.py never branches on which method runs."""
    from pathlib import Path

    import clexp.core.validation

    source = Path(clexp.core.validation.__file__).read_text()
    for name in ("ewc", "kfac", "lwf", "mas", "si\"", "'si'", "l2"):
        assert name not in source


@pytest.mark.parametrize("overrides,key,named", [
    ("method=si method.lam=10", "method.lam", "c"),          # no such key: Hydra's error, as one line
    ("method=si +method.lam=10", "method.lam", "c"),         # added with +, but SI never reads it
    ("+model.foo=3", "model.foo", "hidden"),                 # an argument the model does not take
    ("+scenario.bogus=1", "scenario.bogus", "n_experiences"),
])
def test_a_key_the_group_does_not_use_is_named_with_the_keys_it_has(tmp_path, clexp_main, overrides, key, named):
    out = clexp_main([*QUICK, "train.epochs=1", *overrides.split()], tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert len(lines) == 1 and key in lines[0] and named in lines[0], out.stderr
    assert "Traceback" not in out.stderr and "HYDRA_FULL_ERROR" not in out.stderr
