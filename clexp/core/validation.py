"""Checks before any data is loaded or model built: one readable line per error.

Two passes. `validate_light` needs neither torch nor Lightning (a bad value is reported in a fraction
of a second): mandatory values left out (`???`), the top-level keys (`seed`, `train.*`, `objective`,
`eval.*`), `trainer.precision` (float64 is refused), method keys nothing reads, and every config node's
arguments against the `ARGS` rules its class or function declares (read from source by `clexp.config.argspec`).
A sweep runs it on every job's config before the first job starts (`clexp.launch.sweep.check_jobs`).
`validate` then runs the model factory's own checks (a pretrained model's weights file, before
Lightning is imported), builds the run's components — each object checks its own arguments in its
constructor, the rules `ARGS` cannot express included — and the checks that span groups (the scenario
against the dataset and the model) and the devices the Trainer will ask for.
"""

from __future__ import annotations

from omegaconf import DictConfig

from clexp.config.argspec import check_args, static_rules
from clexp.config.errors import ConfigError, MissingValueError, is_number
from clexp.config.errors import check as _check
from clexp.config.overrides import check_method_keys
from clexp.core.build import Components, check_lr, components, in_user_terms

__all__ = ["ConfigError", "validate", "validate_light"]


def validate(cfg: DictConfig) -> Components:
    """Raise `ConfigError` for the first bad value found; return the run's components (built, hence
    checked: every object checks its own arguments)."""
    validate_light(cfg)
    _check_model(cfg)  # before Lightning is imported: a pretrained model's weights missing offline, at once
    parts = components(cfg)

    # checks that span groups: the scenario against the dataset and the model
    sc, n_classes = parts.scenario, cfg.dataset.get("n_classes")
    if n_classes:  # known before loading (null for files whose classes are known once read)
        try:
            sc.check_classes(int(n_classes), str(cfg.dataset.get("name", "")))
        except ConfigError as err:
            raise ConfigError(f"scenario.{err.key}", err.value, err.allowed) from None
    sc.check_heads(bool(cfg.model.get("multihead")))
    from clexp.data.augment import parse as parse_augment  # imports torch: in the second pass

    parse_augment(cfg.dataset.get("augment"))  # names and values; what depends on the data: once it is read
    if getattr(sc, "outputs", "all") == "seen":
        _check(not getattr(sc, "task_free", False), "scenario.outputs", "seen",
               "all in a task-free stream (the classes seen so far change at experience boundaries)")
        _check(getattr(sc, "boundaries", "sharp") == "sharp", "scenario.outputs", "seen",
               "all with scenario.boundaries=blurry (a blurred-in sample of the next experience has an unseen class)")
    if getattr(sc, "task_free", False):
        _validate_task_free(cfg, parts)
    _validate_devices(cfg.trainer)
    return parts


def validate_light(cfg: DictConfig) -> None:
    """The checks that need no torch (see the module's docstring); raise `ConfigError`."""
    missing = next(missing_keys(cfg), None)
    if missing:  # `???` in a group's config: a value only the user can give (dataset=image_folder's train_root)
        group = missing.split(".", 1)[0]
        owner = f" (with {group}={cfg[group].get('name')})" if isinstance(cfg.get(group), DictConfig) else ""
        raise MissingValueError(missing, f"{missing} needs a value{owner}: add {missing}=... to the command line")
    _check(isinstance(cfg.seed, int), "seed", cfg.seed, "an integer")
    _check_precision(cfg.get("trainer"))

    train = cfg.train  # top-level keys, read by the runner itself
    epochs, iterations = train.get("epochs"), train.get("iterations")
    _check(epochs is not None or iterations is not None, "train.epochs", epochs,
           "set train.epochs or train.iterations (per experience)")
    if iterations is not None:
        _check(isinstance(iterations, int) and iterations >= 1, "train.iterations", iterations, "an integer >= 1")
    elif epochs is not None:
        _check(isinstance(epochs, int) and epochs >= 1, "train.epochs", epochs, "an integer >= 1")
    _check(isinstance(train.batch_size, int) and train.batch_size >= 1, "train.batch_size", train.batch_size,
           "an integer >= 1")
    _check(isinstance(train.eval_batch_size, int) and train.eval_batch_size >= 1, "train.eval_batch_size",
           train.eval_batch_size, "an integer >= 1")
    online = train.get("online", False)
    _check(isinstance(online, bool), "train.online", online, "true or false")
    decay = train.get("lr_decay", 1.0)
    _check(is_number(decay) and 0 < decay <= 1, "train.lr_decay", decay,
           "a number in (0, 1]: experience i trains at optimizer.lr·lr_decay^i (Stable SGD); 1 = no decay")
    reset = train.get("reset_optimizer", True)
    _check(isinstance(reset, bool), "train.reset_optimizer", reset,
           "true (a fresh optimizer every experience) or false (its state carried over the boundaries)")
    _check(reset or decay == 1, "train.reset_optimizer", reset,
           "true with train.lr_decay < 1 (each experience's decayed learning rate is set on a fresh optimizer)")

    _validate_evaluation(cfg)  # train.val_fraction, objective, eval.*

    check_method_keys(cfg.method)  # `+method.lam=10` with SI: a key nothing reads
    check_lr(cfg.get("optimizer"))
    for path, node in _target_nodes(cfg):
        _check_node(node, path)


def missing_keys(node, path: str = ""):
    """The full keys of the mandatory values left out (`???`), without resolving any interpolation."""
    from omegaconf import ListConfig

    keys = range(len(node)) if isinstance(node, ListConfig) else list(node)
    for key in keys:
        child = node._get_node(key)
        sub = f"{path}.{key}" if path else str(key)
        if child is None or str(key) == "hydra":
            continue
        if child._is_missing():
            yield sub
        elif isinstance(child, (DictConfig, ListConfig)) and not child._is_none() and not child._is_interpolation():
            yield from missing_keys(child, sub)


# Lightning's precision values that compute in float64: clexp's methods keep their state in float32
FLOAT64 = ("64", "64-true", "double")


def _check_precision(trainer) -> None:
    """`trainer.precision=64-true` is refused: the penalties' anchors and importances, EWC++/RWalk's
    moving averages and the projections of gpm/ogd are float32 (a float64 model is refused when built)."""
    if trainer is None:
        return
    precision = str(trainer.get("precision", "32-true"))
    _check(precision not in FLOAT64, "trainer.precision", trainer.get("precision"),
           "32-true, 16-mixed, bf16-mixed, 16-true or bf16-true: clexp's methods keep their state in float32 "
           "(float64 is not supported)")


def _target_nodes(node: DictConfig, path: str = ""):
    """(path, node) of every config node with a `_target_`, depth first."""
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            sub = f"{path}.{key}" if path else str(key)
            if "_target_" in child:
                yield sub, child
            yield from _target_nodes(child, sub)


def _check_node(node: DictConfig, path: str) -> None:
    """The node's values against its class's static `ARGS` rules (clexp.config.argspec)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    rules = static_rules(str(node.get("_target_")))
    if not rules:
        return
    try:
        values = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException:
        return  # an interpolation that only resolves later: the constructor checks it
    try:
        check_args(rules, **{k: v for k, v in values.items() if k in rules})
    except ConfigError as err:
        raise in_user_terms(err, node, path) from None


def _check_model(cfg: DictConfig) -> None:
    """A model factory's own checks that need no data, when it has them (`<factory>.check_config(cfg)`):
    pretrained backbones check their arch, weights (the file in its cache), trainable and feature cache."""
    from hydra.utils import get_object

    try:
        factory = get_object(str(cfg.model.get("_target_")))
    except Exception:  # noqa: BLE001 - a target that does not import fails where the model is built, as before
        return
    check_config = getattr(factory, "check_config", None)
    if callable(check_config):
        check_config(cfg)


def _validate_task_free(cfg: DictConfig, parts: Components) -> None:
    """A task-free stream: its length, and methods that need boundaries told how often to consolidate."""
    iterations = cfg.train.get("iterations")
    n = parts.scenario.use_first or parts.scenario.n_experiences
    _check(iterations is not None, "train.iterations", iterations,
           "an integer >= 1 in a task-free stream (scenario.task_free=true): the optimizer steps of the whole stream")
    _check(iterations >= n, "train.iterations", iterations,
           f"at least the number of experiences ({n}) in a task-free stream: the steps of the whole stream")
    _check(not cfg.method.get("joint"), "method.joint", True,
           "false in a task-free stream (training on the union of the experiences so far needs their boundaries)")
    decay = cfg.train.get("lr_decay", 1.0)
    _check(decay == 1, "train.lr_decay", decay, "1 in a task-free stream (scenario.task_free=true): the decay is "
           "per experience, and a task-free stream has no experience boundaries")
    for cb in parts.method_callbacks:
        refusal = getattr(cb, "task_free_refusal", None)  # a method that cannot work without boundaries at all
        if refusal:
            raise ConfigError("scenario.task_free", True, refusal)
    for cb in parts.method_callbacks:
        if not getattr(cb, "supports_task_free", True):  # gpm, ogd, agem: consolidation at experience ends only
            raise ConfigError("scenario.task_free", True,
                              f"false with method={cfg.method.name}: it updates its memory at experience "
                              "boundaries, which a task-free stream has none of (no task-free form)")
        if getattr(cb, "needs_boundaries", False) and getattr(cb, "consolidate_every", None) is None:
            raise ConfigError("method.consolidate_every", None,
                              f"an integer >= 1: method={cfg.method.name} consolidates at experience boundaries, "
                              "which a task-free stream (scenario.task_free=true) has none of; set "
                              "method.consolidate_every=N to consolidate every N optimizer steps")


def _validate_devices(t: DictConfig) -> None:
    """More devices than the machine has is caught here, before anything is built."""
    import os

    import torch

    devices, accelerator = t.get("devices", 1), t.get("accelerator", "auto")
    if not isinstance(devices, int):
        return  # "auto", a list of indices: Lightning checks those
    _check(devices >= 1, "trainer.devices", devices, "an integer >= 1")
    gpus = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda"):
        _check(gpus > 0, "trainer.accelerator", accelerator, "cpu or auto: this machine has no GPU")
        _check(devices <= gpus, "trainer.devices", devices, f"at most {gpus} (GPUs on this machine)")
    elif accelerator == "cpu" or (accelerator == "auto" and gpus == 0):
        cpus = os.cpu_count() or 1
        _check(devices <= cpus, "trainer.devices", devices, f"at most {cpus} (CPU cores on this machine)")
    else:
        _check(devices <= gpus, "trainer.devices", devices, f"at most {gpus} (GPUs on this machine)")


def _validate_evaluation(cfg: DictConfig) -> None:
    """The validation split, the sweepers' objective and anytime evaluation (clexp/review/selection.py)."""
    val_fraction = cfg.train.get("val_fraction", 0)
    _check(is_number(val_fraction) and 0 <= val_fraction < 1, "train.val_fraction", val_fraction,
           "a number in [0, 1): the share of each experience's training data held out for validation")
    _check(cfg.get("objective", "val") in ("val", "test"), "objective", cfg.get("objective"),
           "val (the validation splits' average accuracy) or test")

    ev = cfg.get("eval") or {}
    every, samples = ev.get("every_n_steps"), ev.get("anytime_samples", 256)
    _check(every is None or (isinstance(every, int) and not isinstance(every, bool) and every >= 1),
           "eval.every_n_steps", every, "an integer >= 1 (optimizer steps between anytime evaluations), or null")
    _check(isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1, "eval.anytime_samples",
           samples, "an integer >= 1")
