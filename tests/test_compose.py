"""Every option of every config group, and every preset, composes and validates (builds its
components) — without reading any data."""

import copy
from pathlib import Path

import pytest
import torch

from clexp.config.errors import ConfigError
from clexp.config.presets import apply_preset
from clexp.core.build import build_model
from clexp.core.validation import validate, validate_light
from clexp.data.stream import Stream
from tests.conftest import CONF, compose

GROUPS = ["dataset", "scenario", "model", "method", "optimizer", "trainer", "logger", "callbacks"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# what each option needs besides itself to validate on this machine
NEEDS = {("dataset", "arrays"): ["dataset.path=x.npz"], ("dataset", "image_folder"): ["dataset.train_root=x"],
         ("dataset", "mnist_t10k"): ["dataset.path=x"],
         ("scenario", "permuted"): ["scenario.incremental=domain"],
         ("trainer", "ddp"): ["trainer.accelerator=cpu"],
         # pretrained backbones: random weights here (no weights file; never a download in tests)
         ("model", "torchvision"): ["model.weights=null"], ("model", "timm"): ["model.pretrained=false"]}
PRESET_NEEDS = {"split_cifar100_pretrained": ["model.weights=null"], "core50_ni": ["model.weights=null"],
                "core50_nc": ["model.weights=null"]}


def test_every_group_has_options():
    assert {g for g, _ in OPTIONS} == set(GROUPS)


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_validates(group, option):
    if (group, option) == ("model", "timm"):
        pytest.importorskip("timm")
    cfg = compose([f"{group}={option}", *NEEDS.get((group, option), [])])
    if (group, option) == ("trainer", "gpu") and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="trainer.accelerator"):
            validate(cfg)
        return
    parts = validate(cfg)
    assert parts.trainer is not None and parts.scenario is not None
    if group == "model":  # built for an image stream of the default shape
        stream = Stream("s", "class", [], n_outputs=10, input_shape=(1, 16, 16))
        model = build_model(cfg, stream)
        x = torch.zeros(2, 1, 16, 16)
        if hasattr(model, "prepare_inputs"):  # pretrained backbones: the inputs prepared once (resize, 3 channels)
            x = model.prepare_inputs(x)
        assert model(x).shape == (2, 10)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_preset_composes_and_validates(name):
    cfg = compose([f"experiment={name}", *PRESET_NEEDS.get(name, [])])
    if cfg.get("task"):  # geometry experiments: their own entry point
        return
    apply_preset(cfg, [])
    validate(cfg)


def test_every_method_preset_combination_composes():
    """Every method under every preset: fully validated (components built) in the preset's own scenario;
    in the other two the preset's table is applied and the torch-free pass checks the result (the
    components do not depend on `scenario.incremental` but for the multi-head refusal, checked fully)."""
    methods = sorted(p.stem for p in Path(CONF / "method").glob("*.yaml"))
    for name in EXPERIMENTS:
        base = compose([f"experiment={name}", *PRESET_NEEDS.get(name, [])])
        if base.get("task"):
            continue
        own = base.scenario.incremental
        for method in methods:
            composed = compose([f"experiment={name}", f"method={method}", *PRESET_NEEDS.get(name, [])])
            for inc in ("task", "domain", "class"):
                cfg = copy.deepcopy(composed)  # = composing with scenario.incremental=inc (a plain value)
                cfg.scenario.incremental = inc
                apply_preset(cfg, [])
                if cfg.model.get("multihead") and inc != "task":  # a task-IL preset: refused, by name
                    with pytest.raises(ConfigError, match="model.multihead"):
                        validate(cfg)
                elif inc == own:
                    validate(cfg)
                else:
                    validate_light(cfg)
