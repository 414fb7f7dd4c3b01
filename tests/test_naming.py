"""Run names say what ran; an unnamed sweep's wandb group is its date-time plus a hash of its overrides."""

from omegaconf import OmegaConf

from clexp.core.naming import sweep_group
from tests.conftest import compose


def test_run_names_carry_method_strength_data_scenario_and_seed():
    assert compose(["method=ewc"]).name == "ewc-lam10000-digits-split-class-s0"
    assert compose(["method=si", "method.c=0.5", "seed=3", "scenario=permuted"]).name == \
        "si-c0.5-digits-permuted-domain-s3"
    assert compose([]).name == "naive-digits-split-class-s0"  # no strength
    assert compose(["experiment=ngd_linreg"]).name == "ngd_linreg"  # a geometry experiment: its own name
    assert compose(["method=ewc", "name=mine"]).name == "mine"


def test_sweep_group_is_date_time_and_a_hash_of_the_overrides(tmp_path):
    groups = []
    for i, overrides in enumerate((["method=ewc,si", "seed=0,1"], ["method=ewc,mas", "seed=0,1"])):
        sweep = tmp_path / "2026-12-01" / f"10-00-0{i}"
        sweep.mkdir(parents=True)
        OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": overrides}}}), sweep / "multirun.yaml")
        groups.append(sweep_group(sweep))
    assert groups[0].startswith("2026-12-01_10-00-00-") and groups[1].startswith("2026-12-01_10-00-01-")
    assert groups[0].split("-")[-1] != groups[1].split("-")[-1]  # different overrides, different hash


def test_a_sweep_job_is_named_after_every_key_its_sweep_varies(tmp_path):
    import json

    from tests.conftest import clexp_cli

    out = clexp_cli(["-m", "experiment=smoke", "logger=none", "scenario.n_experiences=2", "plots=false",
                     "method=l2", "method.lam=0.1", "optimizer.lr=0.01,0.02", "optimizer=sgd,adam",
                     "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    names = sorted(json.loads(p.read_text())["config"]["name"] for p in (tmp_path / "sweep").glob("*/results.json"))
    assert names == sorted(f"l2-lam0.1-digits-split-class-s0-lr{lr}-{opt}"
                           for lr in ("0.01", "0.02") for opt in ("sgd", "adam"))
