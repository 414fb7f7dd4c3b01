"""hydra/launcher=slurm without a cluster: the sbatch script submitit writes from clexp's preset (partition,
GPUs, tasks per node = trainer.devices, nodes, time, array parallelism), and Lightning's SLURM environment
reading the ranks of such a task (one task per device: no re-launch)."""

import os

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF

submitit = pytest.importorskip("submitit")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


def sbatch_script(tmp_path, monkeypatch, overrides, n_jobs=3) -> str:
    """The sbatch script of an n-job array, built the way the Hydra submitit plugin builds its executor."""
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\n")  # submitit looks for srun before it writes anything
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_")
    executor = submitit.AutoExecutor(cluster="slurm", folder=str(params.pop("submitit_folder")).replace("%j", ""),
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    executor._executor.parameters["map_count"] = n_jobs
    return executor._executor._make_submission_file_text("python -m clexp", "uid")


def test_slurm_preset_asks_one_task_and_one_gpu_per_device(tmp_path, monkeypatch):
    text = sbatch_script(tmp_path, monkeypatch, ["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                                                  "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=90",
                                                  "hydra.launcher.array_parallelism=2",
                                                  f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    for line in ("--partition=gpu", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--time=90",
                 "--cpus-per-task=8", "--mem=32GB", "--array=0-2%2"):
        assert f"#SBATCH {line}\n" in text, text
    assert "srun --unbuffered" in text  # one process per task, started by SLURM


def test_slurm_preset_for_cpu_jobs(tmp_path, monkeypatch):
    text = sbatch_script(tmp_path, monkeypatch, ["hydra.launcher.gpus_per_node=null", "trainer.accelerator=cpu",
                                                  f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert "--gpus-per-node" not in text and "#SBATCH --ntasks-per-node=1\n" in text


def test_lightning_reads_the_ranks_of_a_slurm_task(monkeypatch):
    from lightning_fabric.plugins.environments import SLURMEnvironment

    env = {"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4", "SLURM_PROCID": "6", "SLURM_LOCALID": "2",
           "SLURM_NODEID": "1", "SLURM_JOB_NAME": "clexp", "SLURM_JOB_ID": "42",
           "SLURM_NODELIST": "node[1-2]"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # SLURMEnvironment writes MASTER_ADDR / MASTER_PORT into os.environ: undone after the test, or a later DDP
    # test in this worker would inherit MASTER_ADDR=node1 and its ranks wait forever for an unknown host
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)
    assert SLURMEnvironment.detect()
    slurm = SLURMEnvironment()
    assert (slurm.world_size(), slurm.global_rank(), slurm.local_rank(), slurm.node_rank()) == (8, 6, 2, 1)
    assert slurm.creates_processes_externally  # Lightning starts no processes of its own: no re-launch
    assert slurm.main_address == "node1"
