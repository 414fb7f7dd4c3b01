"""Sweeps: a launcher's checks before Hydra starts (`launchers`), the end of a multirun with its job list and
exit code (`sweep`), and resuming a sweep (`sweep_resume`). Launching itself is Hydra's launcher plugins'."""
