"""Objects from config nodes: `hydra.utils.instantiate`, minus the bookkeeping keys clexp adds."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

# keys that describe a config node but are no arguments of its `_target_`
META_KEYS = ("name", "multihead", "n_classes", "callback")


def build(node: DictConfig | None, **kwargs: Any) -> Any:
    """`instantiate(node, **kwargs)` without clexp's descriptive keys; None stays None."""
    if node is None:
        return None
    from hydra.errors import InstantiationException

    from clexp.data.base import DataError

    cfg = OmegaConf.to_container(node, resolve=True)
    for key in META_KEYS:
        cfg.pop(key, None)
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as err:  # a user-facing error inside the target: show it, not the wrapper
        if isinstance(err.__cause__, (DataError, ValueError)):
            raise err.__cause__ from None
        raise
