"""`clexp --version` (clexp's version and those of the libraries it runs on) and the launcher / sweeper
choices that `clexp --help` lists (Hydra's own help leaves out the `hydra/*` groups)."""

from __future__ import annotations

from importlib import metadata

from omegaconf import OmegaConf

VERSION = "0.1.0"  # clexp.__version__; pyproject.toml's version
LIBRARIES = (("torch", "torch"), ("Lightning", "pytorch-lightning"), ("Hydra", "hydra-core"))


def version_text() -> str:
    """`clexp 0.1.0 (torch 2.x, Lightning 2.x, Hydra 1.3.x)`, read from the installed packages' metadata
    (nothing heavy is imported)."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"clexp {VERSION} ({', '.join(f'{name} {version(dist)}' for name, dist in LIBRARIES)})"


def group_choices(group: str) -> str:
    """The options of config group `group` (e.g. `hydra/launcher`) that this installation offers: clexp's
    presets and the installed Hydra plugins' own, comma-separated."""
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        return "(see clexp --help)"
    return ", ".join(GlobalHydra.instance().config_loader().get_group_options(group))


def register() -> None:
    """`${clexp_choices:hydra/launcher}` in conf/hydra/help/clexp.yaml."""
    if not OmegaConf.has_resolver("clexp_choices"):
        OmegaConf.register_new_resolver("clexp_choices", group_choices)
