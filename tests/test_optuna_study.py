"""Optuna sweeps keep their study in the sweep folder (optuna.db) and a re-run goes on where it stopped;
Optuna's and its storage's log lines carry no colour codes and no set-up chatter."""

import json

import pytest
import yaml

from tests.conftest import clexp_cli

SEARCH = ["experiment=optuna_lam", "logger=none", "scenario.n_experiences=2", "train.epochs=1", "model.hidden=[16]",
          "trainer.enable_progress_bar=false", "plots=false", "method=l2", "method.lam=tag(log,interval(0.001,1))",
          "hydra.sweep.dir=sweep"]


def _trials(sweep):
    return {int(p.parent.name): json.loads(p.read_text()) for p in sweep.glob("*/results.json")}


@pytest.mark.slow
def test_a_rerun_continues_the_study_without_rewriting_its_jobs(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    first = clexp_cli(["-m", *SEARCH, "hydra.sweeper.n_trials=2"], tmp_path)
    assert first.returncode == 0, first.stderr
    sweep = tmp_path / "sweep"
    assert (sweep / "optuna.db").is_file()
    before = _trials(sweep)
    assert sorted(before) == [0, 1]
    mtimes = {n: (sweep / str(n) / "results.json").stat().st_mtime_ns for n in before}

    again = clexp_cli(["-m", *SEARCH, "hydra.sweeper.n_trials=3"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 trials finished, 1 to go" in again.stdout
    after = _trials(sweep)
    assert sorted(after) == [0, 1, 2]  # one new job, numbered after the old ones
    assert {n: (sweep / str(n) / "results.json").stat().st_mtime_ns for n in before} == mtimes  # untouched
    lams = [after[n]["config"]["method"]["lam"] for n in range(3)]
    assert len(set(lams)) == 3, lams  # the resumed sampler proposes a new point
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert all(r["val_metrics"] for r in after.values())  # objective: val, the default: validation is optimised
    objective = {n: r["val_metrics"]["avg_acc"] for n, r in after.items()}
    assert best["best_value"] == pytest.approx(max(objective.values()))
    tied = [after[n]["config"]["method"]["lam"] for n, v in objective.items() if v == max(objective.values())]
    assert any(best["best_params"]["method.lam"] == pytest.approx(lam) for lam in tied)  # ties happen
    # each trial's run name carries its searched value
    assert all(f"lam{float(r['config']['method']['lam']):g}" in r["config"]["name"] for r in after.values())

    done = clexp_cli(["-m", *SEARCH, "hydra.sweeper.n_trials=3"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 trials finished, 0 to go" in done.stdout and sorted(_trials(sweep)) == [0, 1, 2]

    for out in (first, again, done):
        text = out.stdout + out.stderr
        assert "\x1b[" not in text  # no ANSI colour codes
        assert "setup plugin" not in text and "fontManager" not in text  # alembic's, matplotlib's INFO lines


@pytest.mark.parametrize("method,low,high", [("ewc", 1000, 100000), ("online_ewc", 1000, 100000),
                                             ("kfac_ewc", 1, 100), ("mas", 0.03, 10), ("l2", 0.03, 3),
                                             ("lwf", 0.1, 3), ("ewcpp", 1000, 1000000),
                                             ("rwalk", 1e-5, 3e-3)])
def test_each_method_gets_its_own_search_range(method, low, high):
    from hydra import compose, initialize_config_dir

    from clexp.config import conf_source
    with initialize_config_dir(conf_source.config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=optuna_lam", f"method={method}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params["method.lam"] == f"tag(log, interval({low}, {high}))"
