"""Optuna sweeps that survive being stopped: the study lives in a SQLite file of the sweep folder.

Hydra's Optuna sweeper keeps its study in memory unless `storage` is set, and a re-run of a sweep with
a storage would still launch all `n_trials` again, numbering the jobs from 0 over the old folders. This
subclass (`hydra.sweeper._target_` in conf/experiment/optuna_*.yaml) makes a re-run of the same
command with the same `hydra.sweep.dir` go on where the study stopped:

- the SQLite file's folder is created before the study is opened;
- the trials the study already completed count towards `n_trials` (a job that failed in clexp is a
  completed trial scored 0.0, see clexp/train.py); a trial left running by a stopped sweep is marked
  failed and replaced by a new one;
- new jobs are numbered after the study's trials, so no job folder is written twice, and the sampler is
  reseeded (seeded as at the start, it would propose the first points again);
- Optuna's own log lines go through Hydra's logging (no colour codes in the log).
"""

from __future__ import annotations

import logging
from pathlib import Path

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # without the sweeps extra: a plain class, which Hydra's plugin scan passes over
    OptunaSweeper = object

log = logging.getLogger(__name__)


def sqlite_path(storage) -> Path | None:
    """The file of a `sqlite:///PATH` storage URL (None for another storage)."""
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        return Path(storage[len("sqlite:///"):])
    return None


class ResumableOptunaSweeper(OptunaSweeper):
    """Hydra's Optuna sweeper, resumable from its storage (see the module's docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        import optuna

        super().__init__(*args, **kwargs)
        optuna.logging.disable_default_handler()  # its handler colours the level with ANSI codes
        optuna.logging.enable_propagation()  # into Hydra's logging, formatted like every other line

    def sweep(self, arguments):
        impl = self.sweeper
        path = sqlite_path(impl.storage)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        if impl.storage is not None and impl.study_name is not None:
            done, total = self._resume(impl.storage, impl.study_name)
            if total:
                left = max(0, impl.n_trials - done)
                log.info("Optuna study %r in %s: %d trials finished, %d to go (n_trials=%d)",
                         impl.study_name, impl.storage, done, left, impl.n_trials)
                impl.n_trials = left
                impl.job_idx = total  # new job folders after the existing ones
                if hasattr(impl.sampler, "reseed_rng"):
                    impl.sampler.reseed_rng()  # a sampler seeded as before would propose the same points again
        if impl.n_trials == 0:
            log.info("Nothing left to run; the study's best trial is in optimization_results.yaml")
        return super().sweep(arguments)

    @staticmethod
    def _resume(storage, study_name: str) -> tuple[int, int]:
        """(trials finished, trials in all) of an existing study; stale running trials are marked failed."""
        import optuna
        from optuna.trial import TrialState

        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:  # no such study yet
            return 0, 0
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)  # its job was stopped: a new trial replaces it
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        return len(finished), len(study.trials)
