"""A sweep's launcher that cannot start stops before any job with one line naming what is missing and
how to get it (exit 2): a plugin not installed, a Ray address that does not answer, a submitit folder
that cannot be written, SLURM's sbatch not on PATH."""

import socket
from pathlib import Path

import pytest

from clexp.launch import launchers


def _one_line_error(out, *words):
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("clexp: error:"), out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not list(out.cwd.glob("sweep/*/results.json"))  # no job started


@pytest.fixture
def cli(clexp_main, tmp_path):
    def call(*args):
        out = clexp_main(["-m", "experiment=smoke", "logger=none", "hydra.sweep.dir=sweep", *args], tmp_path)
        out.cwd = tmp_path
        return out

    return call


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_without_the_extra_names_the_extra(cli, monkeypatch):
    real = launchers._importable
    monkeypatch.setattr(launchers, "_importable", lambda m: False if "ray" in m else real(m))
    _one_line_error(cli("hydra/launcher=ray"), "hydra/launcher=ray", 'pip install "clexp[ray]"', "make install-ray")


def test_a_ray_address_that_does_not_answer(cli, monkeypatch):
    monkeypatch.setattr(launchers, "_importable", lambda m: True)  # whether or not Ray is installed here
    port = _free_port()
    _one_line_error(cli("hydra/launcher=ray", f"hydra.launcher.ray.init.address=127.0.0.1:{port}"),
                    f"hydra.launcher.ray.init.address=127.0.0.1:{port}", "ray start --head")
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{port}")
    _one_line_error(cli("hydra/launcher=ray", "hydra.launcher.ray.init.address=null"), "RAY_ADDRESS",
                    "nothing answers")


def test_ray_address_auto_without_a_cluster_here(cli, monkeypatch, tmp_path):
    monkeypatch.setattr(launchers, "_importable", lambda m: True)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))
    _one_line_error(cli("hydra/launcher=ray", "hydra.launcher.ray.init.address=auto"), "ray start --head")


def test_connecting_to_a_ray_cluster_leaves_out_the_object_store_size(monkeypatch):
    monkeypatch.setattr(launchers, "_importable", lambda m: True)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        argv = launchers.check_launcher(["-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={address}"])
        with pytest.raises(launchers.LauncherError, match="num_cpus cannot be given"):
            launchers.check_launcher(["-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={address}",
                                      "+hydra.launcher.ray.init.num_cpus=2"])
    assert "++hydra.launcher.ray.init.object_store_memory=null" in argv
    assert argv[-1].startswith(f"hydra.sweep.dir={Path.cwd()}/outputs/multirun/")  # absolute for the cluster's workers
    # the preset's address=local: an instance of the sweep's own, whatever RAY_ADDRESS says
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert launchers.check_launcher(["-m", "hydra/launcher=ray"]) == ["-m", "hydra/launcher=ray"]


def test_a_submitit_folder_that_cannot_be_written(cli, tmp_path):
    (tmp_path / "a-file").write_text("")
    _one_line_error(cli("hydra/launcher=submitit_local", "hydra.launcher.submitit_folder=a-file/submitit/%j"),
                    "hydra.launcher.submitit_folder=a-file/submitit/%j", "cannot write")
    _one_line_error(cli("hydra/launcher=submitit_local", "hydra.sweep.dir=a-file/sweep"),
                    "hydra.sweep.dir=a-file/sweep", "writable")


def test_slurm_without_sbatch(cli, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    _one_line_error(cli("hydra/launcher=slurm"), "sbatch", "hydra/launcher=submitit_local")


def test_a_missing_launcher_plugin(cli, monkeypatch):
    monkeypatch.setattr(launchers, "_importable", lambda m: "submitit" not in m)
    _one_line_error(cli("hydra/launcher=submitit_local"), 'pip install "clexp[sweeps]"')


def test_a_single_run_or_the_basic_launcher_is_left_alone():
    assert launchers.check_launcher(["hydra/launcher=ray"]) == ["hydra/launcher=ray"]  # no -m: nothing launched
    assert launchers.check_launcher(["-m", "seed=0,1"]) == ["-m", "seed=0,1"]
