"""A sweep re-run in the same folder skips the jobs that completed with the same config and runs the rest."""

import json

import pytest

from clexp.launch import sweep_resume
from tests.conftest import clexp_cli, compose

QUICK = ["experiment=smoke", "logger=none", "scenario.n_experiences=2", "model.hidden=[16]", "plots=false",
         "hydra.sweep.dir=sweep"]


def _completed(tmp_path, cfg, **changes):
    from omegaconf import OmegaConf

    results = {"status": "completed", "config": OmegaConf.to_container(cfg, resolve=True),
               "metrics": {"avg_acc": 0.5}, "val_metrics": {"avg_acc": 0.25}, **changes}
    (tmp_path / "results.json").write_text(json.dumps(results))


def test_a_completed_job_with_the_same_config_is_skipped_with_its_objective(tmp_path, capsys):
    cfg = compose(["experiment=smoke", "logger=none"])
    _completed(tmp_path, cfg)
    import importlib.util

    val = importlib.util.find_spec("clexp.review.selection") is not None  # objective: val (the default), when known
    assert sweep_resume.skip(cfg, tmp_path, multirun=True) == (True, 0.25 if val else 0.5)
    assert capsys.readouterr().out.count("Skipped:") == 1
    cfg.objective = "test"
    _completed(tmp_path, cfg)
    assert sweep_resume.skip(cfg, tmp_path, multirun=True) == (True, 0.5)


def test_a_corrected_published_number_reruns_nothing_but_a_changed_setting_does(tmp_path):
    """`preset.paper*` are records for clexp-reproduce's table; `preset.faithful` changes the run."""
    cfg = compose(["experiment=hsu2018_split_mnist", "logger=none", "method=ewc"])
    earlier = compose(["experiment=hsu2018_split_mnist", "logger=none", "method=ewc",
                       "preset.paper.naive.domain.mean=78.94", "preset.paper_source=elsewhere"])
    _completed(tmp_path, earlier, config=sweep_resume._as_run(earlier))  # as a run records it: preset applied
    assert sweep_resume.skip(cfg, tmp_path, multirun=True)[0]
    other = compose(["experiment=hsu2018_split_mnist", "logger=none", "method=ewc", "preset.faithful=true"])
    _completed(tmp_path, other, config=sweep_resume._as_run(other))
    assert not sweep_resume.skip(cfg, tmp_path, multirun=True)[0]


@pytest.mark.parametrize("case", ["other config", "failed", "damaged", "single run", "absent"])
def test_anything_else_runs_again(tmp_path, case):
    cfg = compose(["experiment=smoke", "logger=none"])
    _completed(tmp_path, compose(["experiment=smoke", "logger=none", "seed=1"]) if case == "other config" else cfg,
               **({"status": "failed"} if case == "failed" else {}))
    if case == "damaged":
        (tmp_path / "results.json").write_text("{not json")
    if case == "absent":
        (tmp_path / "results.json").unlink()
    assert sweep_resume.skip(cfg, tmp_path, multirun=case != "single run") == (False, None)


@pytest.mark.slow
def test_basic_launcher_rerun_skips_completed_jobs_and_runs_new_ones(tmp_path):
    out = clexp_cli(["-m", *QUICK, "seed=0,1"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    first = (tmp_path / "sweep" / "0" / "results.json").read_text()
    # the same sweep extended by one seed: jobs 0 and 1 are skipped, job 2 runs
    again = clexp_cli(["-m", *QUICK, "seed=0,1,2"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("Skipped:") == 2 and "sweep/0 already completed" in again.stdout
    assert (tmp_path / "sweep" / "0" / "results.json").read_text() == first
    assert json.loads((tmp_path / "sweep" / "2" / "results.json").read_text())["status"] == "completed"
    assert "3 completed, 0 failed" in again.stdout
    # a changed config is never taken for done: the job runs again
    changed = clexp_cli(["-m", *QUICK, "seed=0", "train.batch_size=16"], tmp_path)
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "Skipped:" not in changed.stdout
    assert json.loads((tmp_path / "sweep" / "0" / "results.json").read_text())["config"]["train"]["batch_size"] == 16
