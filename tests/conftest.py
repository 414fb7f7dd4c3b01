"""Shared helpers: compose the real configs, run tiny streams in-process or the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# the 10k real MNIST test images for the `mnist` tests: the folder CLEXP_MNIST_T10K names (they skip without it)
MNIST_T10K = Path(os.environ.get("CLEXP_MNIST_T10K") or ROOT / "data" / "mnist-t10k")

# small, quiet and fast: the default digits stream with a narrow MLP and 2 epochs
FAST = ["train.epochs=2", "model.hidden=[64]", "logger=none", "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu"]

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def compose(overrides: list[str] = ()):
    """The composed config, as `clexp` would see it (no Hydra runtime)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def run_stream(run_dir: Path, overrides: list[str] = (), fast: bool = True) -> dict:
    """Validate and run one experiment in this process; return its results dict."""
    from clexp.config.presets import apply_preset
    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate

    cfg = compose([*(FAST if fast else []), *overrides])
    apply_preset(cfg, list(overrides))
    return StreamRunner(cfg, run_dir, parts=validate(cfg)).run()


def clexp_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300, clear: list[str] = ()):
    """Run `python -m clexp ARGS` in `cwd` (environment: ours + `env`, minus `clear`)."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **(env or {})}
    # a rendezvous left in this process's environment (Lightning's SLURM environment writes MASTER_ADDR) must
    # not reach a DDP child: one stale host name and its ranks wait forever
    # nor may a wandb service that an in-process test started here (WANDB_SERVICE): the child's runs would go to
    # this process's service, which never writes them once this process has finished its own run
    clear = (*clear, *(k for k in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE",
                                   "WANDB_SERVICE") if k not in (env or {})))
    for name in clear:
        full_env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "clexp", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.fixture
def mnist_dir() -> Path:
    if not (MNIST_T10K / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no MNIST t10k files in {MNIST_T10K} (set CLEXP_MNIST_T10K to their folder)")
    return MNIST_T10K


class CliResult:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def clexp_main(monkeypatch, capsys):
    """`clexp ARGS` in this process (from `cwd`): the console script's own `main`, its exit code and
    output. Far faster than a subprocess for runs that stop early (bad input)."""

    def call(args: list[str], cwd: Path) -> CliResult:
        from hydra.core.global_hydra import GlobalHydra

        from clexp.train import main

        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = 0
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            GlobalHydra.instance().clear()
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return call


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny float64 models, where starting threads costs more than the work."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
