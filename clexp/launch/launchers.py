"""Checks of a sweep's launcher before Hydra starts (one line and exit 2 instead of Hydra's multi-line
errors, or a failure after the first jobs): the launcher's plugin is installed, a Ray address answers,
the submitit folder can be written, SLURM's `sbatch` is there.

`check_launcher(argv)` reads only the command line; it returns the arguments to run with (the same, or
with `object_store_memory` left out of `ray.init` when connecting to an existing Ray cluster, which
Ray refuses together with an address) and raises `LauncherError` for bad input.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
from pathlib import Path

from clexp.config.errors import ConfigError

# clexp's launcher presets (conf/hydra/launcher/) and the Hydra plugin + extra each needs
PLUGINS = {
    "parallel": ("hydra_plugins.hydra_joblib_launcher", "the joblib launcher", "clexp[sweeps]"),
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "the joblib launcher", "clexp[sweeps]"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "the submitit launcher", "clexp[sweeps]"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "the submitit launcher", "clexp[sweeps]"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "the submitit launcher", "clexp[sweeps]"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "Hydra's Ray launcher (hydra-ray-launcher and ray)", "clexp[ray]"),
}
SUBMITIT = {"submitit_local", "submitit_slurm", "slurm"}
# the Hydra sweepers clexp's presets use (conf/experiment/optuna_*.yaml) and the plugin + extra each needs
SWEEPERS = {"optuna": ("hydra_plugins.hydra_optuna_sweeper", "the Optuna sweeper", "clexp[sweeps]")}
DEFAULT_SWEEP_DIR = "outputs/multirun"  # conf/config.yaml: hydra.sweep.dir below it, by date and time


class LauncherError(ConfigError):
    """A launcher that cannot start: one line naming what is missing and how to get it (exit 2)."""

    def __init__(self, message: str):
        ValueError.__init__(self, message)
        self.key, self.value, self.allowed = "hydra/launcher", None, message


def _value(argv: list[str], *keys: str) -> str | None:
    """The last value the command line gives one of `keys` (with or without +/++), quotes stripped."""
    found = None
    for arg in argv:
        name, sep, value = arg.partition("=")
        if sep and name.lstrip("+") in keys:
            found = value.strip("'\"")
    return found


def _has(argv: list[str], key: str) -> bool:
    return any(arg.partition("=")[0].lstrip("+") == key for arg in argv)


def launcher_choice(argv: list[str]) -> str | None:
    """The `hydra/launcher` option the command line picks (None: Hydra's basic launcher)."""
    return _value(argv, "hydra/launcher", "override hydra/launcher")


def preset_choice(argv: list[str], group: str) -> str | None:
    """The `group` option (`hydra/sweeper`) an `experiment=` preset of the command line picks in its
    defaults list (`- override /hydra/sweeper: optuna`), read from the preset's file."""
    from omegaconf import OmegaConf

    from clexp.config import conf_source
    name = _value(argv, "experiment")
    dirs = [d for d in (_value(argv, "--config-dir"), conf_source.config_dir()) if d]
    for folder in dirs:
        path = Path(folder).expanduser() / "experiment" / f"{name}.yaml"
        if name and path.is_file():
            try:
                defaults = OmegaConf.to_container(OmegaConf.load(path)).get("defaults") or []
            except Exception:  # noqa: BLE001 - a broken preset: Hydra reports it
                return None
            for entry in defaults:
                if isinstance(entry, dict):
                    for key, value in entry.items():
                        if str(key).replace("override", "").strip().strip("/") == group:
                            return str(value)
            return None
    return None


def check_sweeper(argv: list[str]) -> None:
    """The sweeper the command line or its preset picks (`experiment=optuna_lam`) is installed; in run
    mode too, since Hydra composes the sweeper's config for a single run as well."""
    choice = _value(argv, "hydra/sweeper", "override hydra/sweeper") or preset_choice(argv, "hydra/sweeper")
    if choice in SWEEPERS:
        module, what, extra = SWEEPERS[choice]
        if not _importable(module):
            given = _value(argv, "hydra/sweeper", "override hydra/sweeper")
            who = f"hydra/sweeper={choice}"
            who = who if given else f"experiment={_value(argv, 'experiment')} ({who})"
            raise LauncherError(f"{who} needs {what}, which is not installed: "
                                f'pip install "{extra}" (in a checkout: pip install -e ".[{extra[6:-1]}]")')


def check_launcher(argv: list[str]) -> list[str]:
    """Check the sweeper and the launcher a command line picks; return the arguments to run with."""
    argv = list(argv)
    check_sweeper(argv)
    choice = launcher_choice(argv) or preset_choice(argv, "hydra/launcher")
    if choice is None or not ({"-m", "--multirun"} & set(argv)):
        return argv
    if choice in ("submitit_local", "ray"):
        # conf/hydra/launcher/<choice>.yaml shares its name with the plugin's schema; Hydra merges them and
        # warns that this is deprecated (a multi-line UserWarning on every sweep): the merge is what we want
        import warnings

        warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema")
    if choice in PLUGINS:
        module, what, extra = PLUGINS[choice]
        missing = [m for m in (module, "ray" if choice == "ray" else None) if m and not _importable(m)]
        if missing:
            in_checkout = "make install-ray" if choice == "ray" else f'pip install -e ".[{extra[6:-1]}]"'
            raise LauncherError(f"hydra/launcher={choice} needs {what}, which is not installed: "
                                f'pip install "{extra}" (in a checkout: {in_checkout})')
    if choice == "ray":
        argv = _check_ray(argv)
    if choice in SUBMITIT:
        _check_submitit_folder(argv)
    if choice in ("slurm", "submitit_slurm") and shutil.which("sbatch") is None:
        raise LauncherError(f"hydra/launcher={choice} needs SLURM's sbatch on PATH (run the sweep on the "
                            "cluster's login node), or run the jobs here with hydra/launcher=submitit_local")
    return argv


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# ------------------------------------------------------------------------------------------------ Ray


def _check_ray(argv: list[str]) -> list[str]:
    """conf/hydra/launcher/ray.yaml's address `local` (the preset) starts a Ray instance of the sweep's own;
    null lets Ray look (RAY_ADDRESS, then the cluster `ray start` left on this machine); `auto` must find
    one of those; HOST:PORT or ray://HOST:PORT must answer."""
    key = "hydra.launcher.ray.init.address"
    address = _value(argv, key)
    address = "local" if address is None else address
    if address == "local":
        return argv
    if address in ("null", "None", "~", "", "auto"):
        found = os.environ.get("RAY_ADDRESS") or None
        if found:
            key, address = "RAY_ADDRESS", found
        elif _current_cluster():
            address = "the cluster started on this machine"
        elif address == "auto":
            raise LauncherError(f"{key}=auto: no Ray cluster was started on this machine (start one with "
                                "`ray start --head`, or give the head's HOST:6379, or use address=local for a "
                                "Ray instance of the sweep's own)")
        else:
            return argv  # Ray starts an instance of its own
    if key == "RAY_ADDRESS" or not address.startswith("the cluster"):
        host, port = _host_port(address, key)
        if not _answers(host, port):
            raise LauncherError(f"{key}={address}: nothing answers at {host}:{port} (is the Ray head running? "
                                "`ray start --head` prints its address; hydra.launcher.ray.init.address=local "
                                "for a Ray instance of the sweep's own)")
    given = [k for k in ("num_cpus", "num_gpus", "resources", "object_store_memory")
             if _value(argv, f"hydra.launcher.ray.init.{k}") not in (None, "null")]
    if given:
        raise LauncherError(f"hydra.launcher.ray.init.{given[0]} cannot be given when connecting to an existing "
                            f"Ray cluster ({address}): the cluster's own resources count; per job: "
                            "hydra.launcher.ray.remote.num_cpus / num_gpus")
    if not _has(argv, "hydra.launcher.ray.init.object_store_memory"):
        # the plugin sets a small object store for a Ray it starts; Ray refuses it when connecting
        argv.append("++hydra.launcher.ray.init.object_store_memory=null")
    # a cluster's workers run in the folder where its `ray start` ran: the sweep folder as an absolute path
    sweep_dir = _value(argv, "hydra.sweep.dir") or _default_sweep_dir()
    if sweep_dir and not Path(sweep_dir).expanduser().is_absolute():
        argv.append(f"hydra.sweep.dir={Path.cwd() / sweep_dir}")
    return argv


def _default_sweep_dir() -> str | None:
    """conf/config.yaml's hydra.sweep.dir, unresolved (outputs/multirun/${now:...}/${now:...})."""
    from omegaconf import OmegaConf

    from clexp.config import conf_source
    try:
        return OmegaConf.to_container(OmegaConf.load(Path(conf_source.config_dir()) / "config.yaml"),
                                      resolve=False)["hydra"]["sweep"]["dir"]
    except Exception:  # noqa: BLE001 - a config of the user's own: leave Hydra's value
        return None


def _host_port(address: str, key: str) -> tuple[str, int]:
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?(?::(\d+))?/?", address)
    if not match:
        raise LauncherError(f"{key}={address}: not a Ray address (HOST:6379, ray://HOST:10001, auto or null)")
    default = 10001 if address.startswith("ray://") else 6379
    return match.group(1), int(match.group(2) or default)


def _answers(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _current_cluster() -> bool:
    """A cluster started here with `ray start` leaves its address in <ray temp dir>/ray_current_cluster."""
    temp = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    if not temp.is_file():
        return False
    host, port = _host_port(temp.read_text().strip(), "ray_current_cluster")
    return _answers(host, port)


# ------------------------------------------------------------------------------------------- submitit


def _check_submitit_folder(argv: list[str]) -> None:
    """submitit writes each job's pickle and logs under `hydra.launcher.submitit_folder`, by default in
    the sweep folder: its first existing parent must be a writable folder."""
    sweep_dir = _value(argv, "hydra.sweep.dir") or DEFAULT_SWEEP_DIR
    folder = _value(argv, "hydra.launcher.submitit_folder")
    key = "hydra.launcher.submitit_folder" if folder else "hydra.sweep.dir"
    shown = folder or sweep_dir
    folder = (folder or "${hydra.sweep.dir}/.submitit").replace("${hydra.sweep.dir}", sweep_dir)
    folder = folder.split("${", 1)[0].split("%", 1)[0] or "."  # up to the first interpolation or %j
    path = Path(folder).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not _writable(parent):
        raise LauncherError(f"{key}={shown}: submitit cannot write its job files there ({parent} is "
                            f"{'not a folder' if not parent.is_dir() else 'not writable'}): give a writable "
                            "hydra.sweep.dir or hydra.launcher.submitit_folder")


def _writable(folder: Path) -> bool:
    """A file can be made in `folder` (tried: `os.access` says yes to root on a read-only mount)."""
    import tempfile

    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False
