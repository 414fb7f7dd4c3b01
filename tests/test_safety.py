"""Nothing is written outside the run folder and the data root (wandb and matplotlib caches included)."""

import os

import pytest

from tests.conftest import clexp_cli


def files_under(folder):
    return {os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs}


@pytest.mark.slow
def test_a_run_writes_only_into_its_folder_and_the_data_root(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    unset = ["XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR", "WANDB_DIR", "WANDB_CACHE_DIR",
             "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR", "WANDB_CONFIG_DIR"]
    out = clexp_cli(["experiment=smoke", "logger=wandb", "method=si", "hydra.run.dir=run", "paths.data_dir=data"],
                    work, env={"HOME": str(home)}, clear=unset)
    assert out.returncode == 0, out.stderr
    assert files_under(home) == set()
    outside = {f for f in files_under(work) if not f.startswith((str(work / "run"), str(work / "data")))}
    assert outside == set()
    assert (work / "run" / "results.json").exists()
