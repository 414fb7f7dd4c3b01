"""Hydra entry point (`clexp`, `python -m clexp`): compose → validate → run the stream → results."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from clexp.config import (
    conf_source,  # Light imports only up to here: `main` sets the cache folders before Lightning (through torchmetrics)
)
from clexp.core import ddp

# imports matplotlib, which would otherwise write its font cache into the home folder.

log = logging.getLogger("clexp")
# the configs: clexp/conf/ in an installed wheel, the repository's top-level conf/ otherwise (conf_source.py)
CONF_DIR = Path(conf_source.config_dir())


def _context() -> tuple[Path, bool, str | None]:
    """(run folder, multirun?, sweep group name)."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    from clexp.core.naming import sweep_group

    group = sweep_group(hc.sweep.dir) if multirun else None
    return Path(hc.runtime.output_dir), multirun, group


def resume_target(cfg: DictConfig, overrides: list[str]) -> tuple[Path, DictConfig, dict]:
    """The run folder to continue, its original config and its last stream checkpoint."""
    from omegaconf import OmegaConf

    from clexp.config.errors import ConfigError
    from clexp.core import checkpoint

    folder = Path(str(cfg.resume)).expanduser()
    ckpt, saved_cfg = checkpoint.last_checkpoint(folder), folder / ".hydra" / "config.yaml"
    if not (ckpt.is_file() and saved_cfg.is_file()):
        raise ConfigError("resume", str(cfg.resume),
                          "a run folder holding checkpoints/last.pt and .hydra/config.yaml")
    try:
        state = checkpoint.load(ckpt)
    except Exception as err:
        raise ConfigError("resume", str(cfg.resume), f"its checkpoint {ckpt} cannot be read ({err})") from err
    original = OmegaConf.load(saved_cfg)
    ignored = [o for o in overrides if not o.startswith("resume=")]
    if ignored:
        log.warning("resume: the run continues with its original config; ignored: %s", " ".join(ignored))
    return folder, original, state


def execute(cfg: DictConfig, run_dir: Path, overrides: list[str], multirun: bool = False,
            group: str | None = None) -> dict:
    """Validate `cfg`, run its stream into `run_dir`, return the results dict (what results.json holds).

    Bad input raises `ConfigError` / `DataError` / `ValueError`; a NaN or inf stops with
    `NonFiniteError`. The CLI turns these into one line and an exit code; `clexp.run` lets them rise.
    """
    from clexp.config.presets import apply_preset
    from clexp.core.console import continue_story, say
    from clexp.core.validation import validate

    applied = apply_preset(cfg, overrides)
    if applied:
        say(f"preset {cfg.preset.name}: {' '.join(applied)}")
    parts = validate(cfg)  # its torch-free first pass reports most bad values in well under 2 s
    from clexp.core.runner import StreamRunner

    state = None
    if cfg.get("resume"):
        run_dir, cfg, state = resume_target(cfg, overrides)
        parts = validate(cfg)
        continue_story(run_dir)  # the resumed run's story goes on in the train.log of the folder it continues
        say(f"Resuming {run_dir} after experience {state['experience']}"
            f"{'' if state['finished'] else ' (mid-experience, step ' + str(state['point']['step']) + ')'}")
    keep_writes_inside(run_dir, overrides)
    from clexp.core.loggers import close_logger, close_stale_wandb_run

    close_stale_wandb_run()  # a run an earlier job of this process left open must not take this job's metrics
    runner = StreamRunner(cfg, run_dir, group, resume=state, parts=parts)
    try:
        with ddp.sweep_job(multirun, run_dir):
            results = runner.run()
    except BaseException:
        close_logger(runner.logger, failed=True)  # the job's own wandb run, marked failed, before the next job
        raise
    results["is_global_zero"] = runner.is_global_zero
    return results


def run_job(cfg: DictConfig) -> float | None:
    """One job of the CLI (a single run or one job of a sweep); return the sweepers' objective: the
    final average accuracy on validation (`objective: val`) or test (`objective=test`). Bad input:
    one line on stderr and an exit code (a sweep goes on)."""
    from clexp.config.errors import DataError, NonFiniteError
    from clexp.core.console import FILE_ONLY, capture_warnings, say
    from clexp.core.results import format_table
    from clexp.launch import sweep_resume

    capture_warnings()  # into train.log too
    run_dir, multirun, group = _context()
    if cfg.get("task"):  # a geometry experiment (conf/experiment/ngd_linreg.yaml, ...)
        return run_geometry(cfg, run_dir, multirun)
    skipped, objective = sweep_resume.skip(cfg, run_dir, multirun)  # a re-run sweep: done before, same config
    if skipped:
        return objective
    from clexp.review.selection import check_objective, objective_value

    try:
        if multirun:  # an optimising sweeper (Optuna) maximises `objective`: validation needs a split
            check_objective(cfg, str(HydraConfig.get().sweeper.get("_target_", "")))
        results = execute(cfg, run_dir, list(HydraConfig.get().overrides.task), multirun, group)
    except (DataError, ValueError) as err:  # a user's mistake (ConfigError is a ValueError): one line
        return _fail(run_dir, multirun, f"{type(err).__name__}: {err}", exit_code=2)
    except NonFiniteError as err:
        return _fail(run_dir, multirun, f"non-finite value: {err}", exit_code=3)
    except Exception as err:
        if not multirun:
            log.exception("failed: %s: %s", type(err).__name__, err, extra=FILE_ONLY)  # the console gets Hydra's
            raise
        return _fail(run_dir, multirun, f"{type(err).__name__}: {err}\n{traceback.format_exc()}", exit_code=1)
    if results.pop("is_global_zero", True):
        say("\n" + format_table(results))
        say(f"\nResults: {Path(results['run_dir']) / 'results.json'}")
    return objective_value(cfg, results)


def run(overrides: list[str] = (), config_dir: str | None = None) -> dict:
    """Run one experiment from Python (a notebook, a script) and return its results dict — the same
    config as `clexp OVERRIDE ...` composes (Hydra's compose API), the same run folder layout
    (`.hydra/config.yaml` included, so `resume=` works), the same results.json.

    `config_dir`: a folder of your own configs (e.g. `method/mine.yaml`) added to the search path,
    like `clexp --config-dir DIR`. Bad input raises `ConfigError` / `DataError` (no exit).
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    overrides = list(overrides)
    extra = [f"hydra.searchpath=[file://{Path(config_dir).expanduser().resolve()}]"] if config_dir else []
    set_cache_dirs(data_dir_from_argv(overrides))
    with initialize_config_dir(conf_source.config_dir(), version_base="1.3", job_name="clexp"):
        cfg = compose(conf_source.CONFIG_NAME, overrides=[*overrides, *extra], return_hydra_config=True)
    run_dir = Path(str(cfg.hydra.run.dir))
    with open_dict(cfg):
        del cfg["hydra"]
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
    if cfg.get("task"):
        from clexp.geometry import run_task

        return run_task(cfg, run_dir)
    results = execute(cfg, run_dir, overrides)
    results.pop("is_global_zero", None)
    return results


def set_cache_dirs(data_dir: str | None) -> None:
    """Caches of wandb and matplotlib (unless the user set them): under `<data root>/.cache` when
    `paths.data_dir` is given (command line or CLEXP_DATA_DIR), else under the user's cache folder
    (`$XDG_CACHE_HOME/clexp`, default `~/.cache/clexp`) — never in the folder the run starts from."""
    cache = cache_dir(data_dir)
    for var, folder in (("WANDB_CACHE_DIR", "wandb"), ("WANDB_DATA_DIR", "wandb-data"),
                        ("WANDB_ARTIFACT_DIR", "wandb-artifacts"),
                        ("MPLCONFIGDIR", "matplotlib")):
        os.environ.setdefault(var, str(cache / folder))


def cache_dir(data_dir: str | None) -> Path:
    """The folder of clexp's caches: `<data_dir>/.cache`, or the user's cache folder when `data_dir` is None."""
    if data_dir is not None:
        return Path(data_dir).expanduser().resolve() / ".cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser().resolve() / "clexp"


def data_dir_from_argv(argv: list[str]) -> str | None:
    """`paths.data_dir` as the command line, or else CLEXP_DATA_DIR, gives it; None when neither does."""
    for arg in reversed(argv):
        if arg.startswith(("paths.data_dir=", "++paths.data_dir=", "+paths.data_dir=")):
            return arg.split("=", 1)[1].strip("'\"")
    return os.environ.get("CLEXP_DATA_DIR") or None


def keep_writes_inside(run_dir: Path, overrides: list[str]) -> None:
    """wandb's run files in the run folder; caches as `set_cache_dirs` says."""
    set_cache_dirs(data_dir_from_argv(overrides))
    os.environ.setdefault("WANDB_DIR", str(run_dir))


def run_geometry(cfg: DictConfig, run_dir: Path, multirun: bool):
    from clexp.geometry import run_task

    try:
        run_task(cfg, run_dir)
    except ValueError as err:
        return _fail(run_dir, multirun, f"{type(err).__name__}: {err}", exit_code=2)
    print(f"Figures and numbers: {run_dir}")
    return None


def _fail(run_dir: Path, multirun: bool, message: str, exit_code: int):
    """Record the failure in the run folder; a single run exits, a sweep job returns None."""
    from clexp.core.results import write_results

    write_results({"status": "failed", "error": message}, run_dir)
    print(f"clexp: error: {message.splitlines()[0]}", file=sys.stderr)
    log.error("failed: %s", message, extra={"file_only": True})  # train.log's last line (stderr has it)
    if not multirun:
        sys.exit(exit_code)
    if "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")):
        # the Optuna plugin cannot record a failed trial (it re-raises): score it as the worst accuracy
        log.warning("job failed; Optuna scores it 0.0: %s", message.splitlines()[0])
        return 0.0
    return None


@hydra.main(version_base="1.3", config_path=conf_source.CONFIG_PATH, config_name="config")
def _app(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def main(argv: list[str] | None = None) -> None:
    """The console script (`argv`: its arguments, default the command line's): a DDP child of a sweep
    job runs that job alone, then the Hydra app."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    if sys.argv[1:] == ["--version"]:  # clexp's own, not Hydra's (which names Hydra's version only)
        from clexp.config.about import version_text

        print(version_text())
        sys.exit(0)
    ddp.redirect_sweep_child()
    from clexp.config.errors import ConfigError
    from clexp.config.overrides import check_command_line
    from clexp.launch import sweep
    from clexp.launch.launchers import check_launcher

    try:  # a key its group does not have: one line here, not Hydra's multi-line error
        check_command_line(sys.argv[1:], conf_source.config_dir())
        sys.argv[1:] = check_launcher(sys.argv[1:])  # the sweep's launcher can start (plugin, Ray, folder)
        sweep.check_jobs(sys.argv[1:], conf_source.config_dir())  # every job's config, before the first trains
    except ConfigError as err:
        print(f"clexp: error: ConfigError: {err}", file=sys.stderr)
        sys.exit(2)
    set_cache_dirs(data_dir_from_argv(sys.argv[1:]))
    sweep.FAILED.clear()
    from clexp.config.about import register

    register()  # the launcher and sweeper choices of --help
    _app()
    if sweep.FAILED:  # a sweep whose jobs all ran, some of which failed (listed in its summary)
        sys.exit(1)


if __name__ == "__main__":
    main()
