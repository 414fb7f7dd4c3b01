"""Checks every config value before any data is loaded or model built: one readable line per error."""

from __future__ import annotations

from omegaconf import DictConfig

from clexp.loggers import LOGGERS
from clexp.stream import INCREMENTAL, SCENARIOS


class ConfigError(ValueError):
    """A config value that is not allowed: names the key, the value and what is allowed."""

    def __init__(self, key: str, value, allowed: str):
        self.key = key
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")


def _check(cond: bool, key: str, value, allowed: str) -> None:
    if not cond:
        raise ConfigError(key, value, allowed)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(cfg: DictConfig) -> None:
    """Raise `ConfigError` for the first bad value found."""
    _check(isinstance(cfg.seed, int), "seed", cfg.seed, "an integer")

    train = cfg.train
    epochs, iterations = train.get("epochs"), train.get("iterations")
    _check(epochs is not None or iterations is not None, "train.epochs", epochs,
           "set train.epochs or train.iterations (per experience)")
    if iterations is not None:
        _check(isinstance(iterations, int) and iterations >= 1, "train.iterations", iterations, "an integer >= 1")
    elif epochs is not None:
        _check(isinstance(epochs, int) and epochs >= 1, "train.epochs", epochs, "an integer >= 1")
    _check(isinstance(train.batch_size, int) and train.batch_size >= 1, "train.batch_size", train.batch_size,
           "an integer >= 1")

    sc = cfg.scenario
    _check(sc.name in SCENARIOS, "scenario.name", sc.name, ", ".join(SCENARIOS))
    _check(sc.incremental in INCREMENTAL, "scenario.incremental", sc.incremental, ", ".join(INCREMENTAL))
    _check(isinstance(sc.n_experiences, int) and sc.n_experiences >= 1, "scenario.n_experiences",
           sc.n_experiences, "an integer >= 1")
    n_classes = cfg.dataset.get("n_classes")
    if sc.name == "split" and n_classes:
        _check(n_classes % sc.n_experiences == 0, "scenario.n_experiences", sc.n_experiences,
               f"a divisor of the {n_classes} classes of dataset={cfg.dataset.name}")
        order = sc.get("class_order")
        if order is not None:
            _check(sorted(order) == list(range(n_classes)), "scenario.class_order", list(order),
                   f"a permutation of 0..{n_classes - 1}")
    if cfg.model.get("multihead"):
        _check(sc.incremental == "task", "model.multihead", True,
               f"multi-head models need scenario.incremental=task (got {sc.incremental})")

    _validate_method(cfg.method)

    lr = cfg.optimizer.get("lr")
    _check(_number(lr) and lr > 0, "optimizer.lr", lr, "a number > 0")
    if cfg.optimizer.get("name") == "ngd":
        o = cfg.optimizer
        _check(_number(o.damping) and o.damping >= 0, "optimizer.damping", o.damping, "a number >= 0")
        _check(_number(o.beta) and 0 <= o.beta < 1, "optimizer.beta", o.beta, "a number in [0, 1)")
        _check(o.fisher in ("diag", "kfac"), "optimizer.fisher", o.fisher, "diag, kfac")
        every = o.callback.update_every
        _check(isinstance(every, int) and every >= 1, "optimizer.callback.update_every", every, "an integer >= 1")

    _validate_devices(cfg.trainer)

    _check(cfg.logger.name in LOGGERS, "logger.name", cfg.logger.name, ", ".join(LOGGERS))
    if cfg.logger.name == "wandb":
        modes = ("auto", "online", "offline", "disabled")
        _check(cfg.logger.mode in modes, "logger.mode", cfg.logger.mode, ", ".join(modes))


FISHER_VARIANTS = ("exact", "sampled", "empirical", "batch")


def _validate_method(m: DictConfig) -> None:
    for key in ("lam", "c"):
        if key in m:
            _check(_number(m[key]) and m[key] >= 0, f"method.{key}", m[key], "a number >= 0")
    if "xi" in m:
        _check(_number(m.xi) and m.xi > 0, "method.xi", m.xi, "a number > 0")
    if "gamma" in m:
        _check(_number(m.gamma) and 0 < m.gamma <= 1, "method.gamma", m.gamma, "a number in (0, 1]")
    if "temperature" in m:
        _check(_number(m.temperature) and m.temperature > 0, "method.temperature", m.temperature, "a number > 0")
    if "mode" in m:
        _check(m.mode in ("separate", "online"), "method.mode", m.mode, "separate, online")
    fisher = m.get("fisher")
    if fisher is not None and m.name == "kfac_ewc":
        _check(fisher.variant in ("exact", "sampled"), "method.fisher.variant", fisher.variant, "exact, sampled")
    if fisher is not None:
        _check(fisher.variant in FISHER_VARIANTS, "method.fisher.variant", fisher.variant, ", ".join(FISHER_VARIANTS))
        _check(isinstance(fisher.samples, int) and fisher.samples >= 1, "method.fisher.samples", fisher.samples,
               "an integer >= 1")
    for key, node in (("method.fisher.max_samples", fisher), ("method.max_samples", m)):
        value = node.get("max_samples") if node is not None else None
        if value is not None:
            _check(isinstance(value, int) and value >= 1, key, value, "an integer >= 1 or null (all)")


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
