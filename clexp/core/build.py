"""Objects from config nodes: `hydra.utils.instantiate`, with the errors a user can fix shown as one
line that names the config key they set.

A `ConfigError` raised by a constructor names its own argument (`lam`); `build(node, "method.regularizer")`
turns that into the key the user sets: the interpolation the argument comes from (`${method.lam}` →
`method.lam`), or else `<path>.<argument>`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from clexp.config.errors import ConfigError, check_number

_INTERPOLATION = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


def user_key(node: DictConfig | None, path: str, key: str) -> str:
    """The config key a user sets for argument `key` of the node at `path`."""
    head = key.split(".", 1)[0]
    if isinstance(node, DictConfig) and head in node:
        raw = OmegaConf.to_container(node, resolve=False).get(head)
        match = _INTERPOLATION.match(raw) if isinstance(raw, str) else None
        if match:
            return match.group(1) + key[len(head):]
    return f"{path}.{key}" if path else key


def in_user_terms(err: ConfigError, node: DictConfig | None, path: str) -> ConfigError:
    """A constructor's `ConfigError` (its argument's name) rewritten with the key the user sets."""
    return ConfigError(user_key(node, path, err.key), err.value, err.allowed)


def _unexpected_key(err: BaseException | None) -> str | None:
    """The argument name of a "got an unexpected keyword argument 'x'" TypeError, else None."""
    match = re.search(r"unexpected keyword argument '([^']+)'", str(err)) if isinstance(err, TypeError) else None
    return match.group(1) if match else None


def _arguments(target: str) -> list[str]:
    """The keyword arguments a `_target_` accepts (for the message naming the keys a node may have)."""
    import inspect

    from hydra.utils import get_object

    try:
        params = inspect.signature(get_object(target)).parameters.values()
    except (ValueError, TypeError, ImportError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]


def build(node: DictConfig | None, path: str = "", **kwargs: Any) -> Any:
    """`instantiate(node, **kwargs)`; None (or an empty node) stays None."""
    if node is None or (isinstance(node, DictConfig) and not node):
        return None
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from clexp.data.base import DataError

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:  # a user-facing error inside the target: show it, not the wrapper
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise in_user_terms(cause, node, path) from None
        if isinstance(cause, (DataError, ValueError)):
            raise cause from None
        unknown = _unexpected_key(cause)
        if unknown is not None:
            target = OmegaConf.to_container(node, resolve=False).get("_target_", "?")
            value = OmegaConf.to_container(node, resolve=True).get(unknown) if unknown in node else None
            raise ConfigError(f"{path}.{unknown}" if path else unknown, value,
                              f"{target} has no such argument (its keys: {', '.join(_arguments(target))})") from None
        raise
    except ConfigError as err:  # raised by a callable returned with _partial_, or outside Hydra's wrapper
        raise in_user_terms(err, node, path) from None


# ------------------------------------------------------------------------------ the run's components


@dataclass
class Components:
    """Everything a run builds from its config before any data is read. Building them checks every
    value: each object checks its own arguments in its constructor."""

    scenario: Any  # clexp.data.stream.Scenario
    regularizer: Any  # clexp.methods.base.Regularizer or None
    method_callbacks: list
    callbacks: list  # the `callbacks` group: run infrastructure, optimizer feeds, your own
    optimizer: Callable  # params -> torch.optim.Optimizer
    trainer: Callable  # **per-experience arguments -> clexp.core.trainer.Trainer
    logging: Any  # clexp.core.loggers.Logging


def build_named(nodes: DictConfig | None, path: str) -> list:
    """A mapping `name: node` (null entries skipped) → the built objects, in order."""
    if not nodes:
        return []
    built = [build(node, f"{path}.{name}") for name, node in nodes.items() if node is not None]
    return [b for b in built if b is not None]


def check_lr(node: DictConfig) -> None:
    """`optimizer.lr` > 0 (torch's own optimizers accept lr=0; a torch-free check)."""
    if isinstance(node, DictConfig) and "lr" in node:
        check_number("optimizer.lr", node.get("lr"), low=0, low_open=True)


def build_optimizer(node: DictConfig) -> Callable:
    """The optimizer factory (`_partial_`), tried once on a dummy parameter so that its own checks
    run now, before any data is read."""
    import torch

    check_lr(node)
    factory = build(node, "optimizer")
    probe = torch.nn.Parameter(torch.zeros(1))
    try:
        factory([probe])
    except ConfigError as err:
        raise in_user_terms(err, node, "optimizer") from None
    except ValueError as err:  # torch's own checks ("Invalid learning rate: -1")
        raise ConfigError("optimizer", OmegaConf.to_container(node, resolve=True).get("_target_"), str(err)) from None
    return factory


def components(cfg: DictConfig) -> Components:
    method = cfg.method
    return Components(
        scenario=build(cfg.scenario, "scenario"),
        regularizer=build(method.get("regularizer"), "method.regularizer"),
        method_callbacks=build_named(method.get("callbacks"), "method.callbacks"),
        callbacks=build_named(cfg.get("callbacks"), "callbacks"),
        optimizer=build_optimizer(cfg.optimizer),
        trainer=build(cfg.trainer, "trainer"),
        logging=build(cfg.logger, "logger"),
    )


# keys of a dataset node that the runner reads itself, not arguments of the source's `_target_`
DATASET_OWN = ("augment",)


def source_node(dataset: DictConfig) -> DictConfig:
    """The dataset node without the keys the runner reads itself (`augment`: clexp/data/augment.py); its
    interpolations (`${paths.data_dir}`) still resolve."""
    if not any(k in dataset for k in DATASET_OWN):
        return dataset
    import copy

    from omegaconf import open_dict

    node = copy.copy(dataset)  # a shallow copy: same parent, its own keys
    with open_dict(node):
        for k in DATASET_OWN:
            node.pop(k, None)
    return node


def load_stream(cfg: DictConfig, scenario=None):
    """The dataset source of `cfg.dataset`, turned into a stream by the scenario."""
    scenario = scenario if scenario is not None else build(cfg.scenario, "scenario")
    data = build(source_node(cfg.dataset), "dataset")
    return scenario(data, bool(cfg.model.get("multihead")), int(cfg.seed))


def build_model(cfg: DictConfig, stream):
    """The model for `stream` (the model contract: clexp/models/__init__.py). Its floating-point
    parameters must be float32 (or lower): the methods keep their anchors, importances and
    projections in float32, so a float64 model is refused here, before training."""
    model = build(cfg.model, "model", input_shape=stream.input_shape, n_outputs=stream.n_outputs,
                  n_experiences=len(stream))
    wide = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters() if p.dtype.itemsize > 4
                   and p.is_floating_point()})
    if wide:
        raise ConfigError("model", str(cfg.model.get("_target_")),
                          f"a model with float32 parameters (this one has {', '.join(wide)}): clexp's methods keep "
                          "their state in float32; float64 is not supported")
    return model
