"""Pretrained backbones: any classifier of torchvision.models (`model=torchvision`) or of timm
(`model=timm`), its classifier replaced by clexp's head(s), with the regularizers on top.

- `torchvision_model(arch=..., weights=...)`: `arch` any name of `torchvision.models.list_models()`
  (classification), `weights` a weights name of that arch (`IMAGENET1K_V1`, `DEFAULT`, ...; see
  `torchvision.models.get_model_weights(arch)`), a local file (a state_dict of that arch), or null
  (random initialisation).
- `timm_model(arch=..., pretrained=...)`: `arch` any timm model name (with or without a pretrained
  tag, e.g. `resnet18.a1_in1k`), `pretrained` true / false or a local file. Needs the `timm` extra.

Weights come from the local caches or a file (clexp/models/weights.py), read with weights_only.

The classifier (the final Linear; SqueezeNet's final 1×1 convolution) becomes the identity: the
backbone's output is the features the head(s) read (`ContinualClassifier`: one head, a masked shared
head in task-IL, or one head per experience with `multihead=true`).

Inputs. The model carries `input_transform`, made from the weights' own preprocessing metadata
(torchvision: `weights.transforms()` — resize, centre crop, mean and std, interpolation; timm: its
data config — input size, crop_pct, mean, std, interpolation): images in [0, 1] (`dataset.normalize=
false`) are resized, cropped and normalised as the weights were trained on; a grey image is repeated
to 3 channels. `model.image_size=S` resizes straight to S×S instead (no crop). Random weights: no
normalisation (the dataset's own standardisation stays), a resize only to the size the architecture
needs (ViT) or to `model.image_size`.

`prepare_inputs(model, x)` applies what a batch of raw images needs before `model(x)`: the transform
and, with `features_cache=true`, the frozen backbone. The runner applies it ONCE to every experience's
stored tensors before training (`prepare_stream`). Images streamed from files (`dataset.in_memory=false`)
stay streamed: the transform joins their decoding in the loader's worker processes, so every batch
arrives prepared; with `features_cache=true` they are read once and only the features are kept.

`trainable` (all | head | last:K; clexp/models/freeze.py defines the blocks per family),
`freeze_norm_stats` (with pretrained weights the norm layers keep the pretrained statistics from the
FIRST experience on; random weights: from the second, as for clexp's own models) and `features_cache`
(`trainable=head` only: the frozen backbone runs once over each experience's inputs, train, validation
and test, and the head(s) train and are evaluated on the cached features).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clexp.config.errors import ConfigError, check
from clexp.models.freeze import (
    FORMS,
    count,
    freeze,
    frozen_subtrees,
    parse_trainable,
    timm_layer_ids,
    torchvision_layer_ids,
)
from clexp.models.heads import ContinualClassifier
from clexp.models.weights import WeightsError, cached_hf, cached_url, is_file_spec, local_file, read_state_dict

# torchvision architectures whose random-weights default builds auxiliary classifiers
NO_AUX = {"googlenet": {"aux_logits": False, "init_weights": True},
          "inception_v3": {"aux_logits": False, "init_weights": True}}


# ------------------------------------------------------------------------------------------ the inputs


@dataclass(frozen=True)
class InputTransform:
    """Resize → centre crop → normalise, on batches (N×C×H×W) or single images (C×H×W) of floats in
    [0, 1], with torchvision's tensor functions (the ones `weights.transforms()` applies).

    `resize`: [S] (the shorter side to S, aspect kept) or [H, W] (exactly), or None; `crop`: [H, W]
    or None; `mean` / `std` per channel or None (no normalisation); `channels`: what the network takes
    (a 1-channel input is repeated)."""

    resize: tuple[int, ...] | None = None
    crop: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "bilinear"
    channels: int = 3
    source: str = ""  # where the numbers come from (printed once)

    @property
    def normalises(self) -> bool:
        return self.mean is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        if x.dim() >= 3 and x.shape[-3] == 1 and self.channels == 3:
            x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
        x = x.float()
        if self.resize is not None:
            x = TF.resize(x, list(self.resize), interpolation=InterpolationMode(self.interpolation), antialias=True)
        if self.crop is not None:
            x = TF.center_crop(x, list(self.crop))
        if self.mean is not None:
            x = TF.normalize(x, list(self.mean), list(self.std))
        return x.contiguous()

    def describe(self) -> str:
        parts = []
        if self.resize is not None:
            parts.append(f"resize {'×'.join(map(str, self.resize))} ({self.interpolation})")
        if self.crop is not None:
            parts.append(f"centre crop {'×'.join(map(str, self.crop))}")
        if self.mean is not None:
            parts.append(f"mean {list(self.mean)} std {list(self.std)}")
        return ", ".join(parts) or "none"


def _torchvision_transform(meta, image_size: int | None, source: str) -> InputTransform:
    """From a torchvision `ImageClassification` preset (what `weights.transforms()` returns)."""
    interp = getattr(meta, "interpolation", None)
    interp = getattr(interp, "value", "bilinear")
    mean, std = tuple(meta.mean), tuple(meta.std)
    if image_size is not None:
        return InputTransform((image_size, image_size), None, mean, std, interp, source=source)
    resize = tuple(meta.resize_size) if getattr(meta, "resize_size", None) else None
    crop = tuple(meta.crop_size) * (2 if len(meta.crop_size) == 1 else 1) if getattr(meta, "crop_size", None) else None
    return InputTransform(resize, crop, mean, std, interp, source=source)


def _timm_transform(config: dict, image_size: int | None, source: str) -> InputTransform:
    """From timm's data config (`timm.data.resolve_data_config`): input_size, crop_pct, mean, std."""
    _, h, w = config["input_size"]
    mean, std, interp = tuple(config["mean"]), tuple(config["std"]), config.get("interpolation", "bilinear")
    interp = interp if interp in ("nearest", "bilinear", "bicubic") else "bilinear"
    if image_size is not None:
        return InputTransform((image_size, image_size), None, mean, std, interp, source=source)
    crop_pct = config.get("crop_pct") or 1.0
    scale = (math.floor(h / crop_pct),) if h == w else (math.floor(h / crop_pct), math.floor(w / crop_pct))
    return InputTransform(scale, (h, w), mean, std, interp, source=source)


# ------------------------------------------------------------------------------------------- the model


class PretrainedClassifier(ContinualClassifier):
    """A backbone (classifier removed) + clexp's head(s), its inputs prepared by `prepare_inputs`.

    With `features_cache`, `features` is the identity and the frozen backbone lives in `backbone`:
    `forward` takes the cached features, `prepare_inputs` makes them. Modules whose parameters are all
    frozen stay in eval mode whatever `train()` is called with."""

    def __init__(self, backbone: nn.Module, feature_dim: int, n_outputs: int, n_heads: int,
                 freeze_norm_stats: bool, transform: InputTransform | None, pretrained: bool,
                 features_cache: bool = False, description: str = ""):
        super().__init__(nn.Identity() if features_cache else backbone, feature_dim, n_outputs, n_heads,
                         freeze_norm_stats)
        if features_cache:
            self.backbone = backbone
        self.features_cache = bool(features_cache)
        self.input_transform = transform
        self.pretrained = bool(pretrained)
        # pretrained statistics are worth keeping from the start; random ones only after experience 0
        self.freeze_norm_stats_from = 0 if pretrained else 1
        self.description = description
        self._frozen = frozen_subtrees(self)
        self.train(True)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self._frozen:
            m.eval()
        return self

    @torch.no_grad()
    def prepare_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of raw inputs (images in [0, 1]) → what `forward` takes: the weights' transform and,
        with the feature cache, the frozen backbone (eval mode). For loaders: call it on each batch,
        on the model's device."""
        if self.input_transform is not None:
            x = self.input_transform(x)
        if self.features_cache:
            with _eval(self.backbone):
                x = self.backbone(x)
            x = x.reshape(len(x), -1)
        return x


@contextlib.contextmanager
def _eval(module: nn.Module):
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


# ----------------------------------------------------------------------------------------- torchvision


def _classification_models() -> list[str]:
    import torchvision.models as models

    return models.list_models(module=models)


def _suggest(name: str, valid: Sequence[str], n: int = 6) -> str:
    close = difflib.get_close_matches(str(name), valid, n=n, cutoff=0.4)
    if not close:
        close = list(valid)[:n]
    return ", ".join(close)


def _torchvision_weights(arch: str, weights):
    """(weights enum member or None, local file or None)."""
    if weights is None:
        return None, None
    if not isinstance(weights, str) or not weights:
        raise ConfigError("model.weights", weights, "a torchvision weights name (e.g. IMAGENET1K_V1), a file, or null")
    if is_file_spec(weights):
        return None, local_file(weights, "model.weights")
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(arch)
    except (ValueError, KeyError):
        enum = None
    names = list(enum.__members__) if enum is not None else []
    name = weights.split(".", 1)[1] if "." in weights and weights.split(".", 1)[0] == getattr(enum, "__name__", "") \
        else weights
    if name not in names:
        allowed = (f"one of {', '.join(names)} (the weights of {arch}), a file, or null" if names
                   else f"a file or null ({arch} has no torchvision weights)")
        raise ConfigError("model.weights", weights, allowed)
    return enum[name], None


def check_torchvision(arch, weights=None, trainable="all", features_cache=False, image_size=None, **_ignored):
    """The checks that need no weights file: arch, weights name, trainable, features_cache, image_size."""
    valid = _classification_models()
    if arch not in valid:
        raise ConfigError("model.arch", arch, f"a torchvision classification model, e.g. {_suggest(arch, valid)} "
                                              f"({len(valid)} in torchvision.models.list_models())")
    member, file = _torchvision_weights(arch, weights)
    _check_common(trainable, features_cache, image_size)
    return member, file


def _check_common(trainable, features_cache, image_size) -> None:
    kind, _ = parse_trainable(trainable)
    check(isinstance(features_cache, bool), "model.features_cache", features_cache, "true or false")
    if features_cache and kind != "head":
        raise ConfigError("model.features_cache", True,
                          f"only with model.trainable=head (the backbone must be frozen to cache its features); "
                          f"model.trainable={trainable}")
    check(image_size is None or (isinstance(image_size, int) and not isinstance(image_size, bool) and image_size >= 1),
          "model.image_size", image_size, "an integer >= 1 (inputs resized to S×S), or null (the weights' own resize "
                                          "and crop)")


@contextlib.contextmanager
def _state_dict_from(member, path: Path):
    """While building, the torchvision builder's `weights.get_state_dict(...)` reads `path` with
    weights_only=True (its own call uses torch.hub's default, weights_only=False)."""
    cls = type(member)
    own = cls.__dict__.get("get_state_dict")

    def load(self, *args, **kwargs):
        return read_state_dict(path, "model.weights")

    type.__setattr__(cls, "get_state_dict", load)
    try:
        yield
    finally:
        if own is None:
            type.__delattr__(cls, "get_state_dict")
        else:
            type.__setattr__(cls, "get_state_dict", own)


def _classifier(net: nn.Module, n_classes: int) -> tuple[str, nn.Module]:
    """The final classifier: the last Linear with `n_classes` outputs (else the last such Conv2d)."""
    for kind in (nn.Linear, nn.Conv2d):
        found = [(n, m) for n, m in net.named_modules()
                 if isinstance(m, kind) and (m.out_features if kind is nn.Linear else m.out_channels) == n_classes]
        if found:
            return found[-1]
    raise ConfigError("model.arch", type(net).__name__, f"a classifier ending in a Linear layer of {n_classes} outputs")


def _replace(net: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, new)


def torchvision_backbone(arch: str, weights=None, download: bool = True, kwargs: dict | None = None):
    """(backbone without its classifier, feature width, weights' transforms metadata or None,
    pretrained?, description)."""
    from torchvision.models import get_model, get_model_weights

    member, file = check_torchvision(arch, weights)
    extra = dict(kwargs or {})
    if member is not None:
        path = cached_url(member.url, "model.weights", f"the {member} weights of {arch}", download)
        with _state_dict_from(member, path):
            net = get_model(arch, weights=member, **extra)
        n_classes, meta, source = len(member.meta["categories"]), member.transforms(), str(member)
    else:
        net = get_model(arch, weights=None, **{**NO_AUX.get(arch, {}), **extra})
        n_classes, meta, source = int(extra.get("num_classes", 1000)), None, "random weights"
        if file is not None:
            try:
                default = get_model_weights(arch).DEFAULT
                meta, source = default.transforms(), f"{file.name} (preprocessing of {default})"
            except (ValueError, KeyError, AttributeError):
                source = file.name
    name, layer = _classifier(net, n_classes)
    width = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    _replace(net, name, nn.Identity())
    if file is not None:
        _load_file(net, file, name, arch)
    return net, width, meta, member is not None or file is not None, source


def _load_file(net: nn.Module, file: Path, classifier: str, arch: str) -> None:
    """A state_dict of `arch` from a file, the classifier's entries dropped (replaced by the heads)."""
    state = {k: v for k, v in read_state_dict(file, "model.weights").items() if not k.startswith(classifier + ".")}
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that differ
        raise WeightsError(f"model.weights={file}: not a state_dict of torchvision's {arch} "
                           f"({' '.join(str(err).split())[:200]})") from None
    missing = [k for k in result.missing_keys if not k.startswith("aux")]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("aux")]
    if missing or unexpected:
        raise WeightsError(f"model.weights={file}: not a state_dict of torchvision's {arch} "
                           f"(missing {len(missing)} keys, e.g. {missing[:3]}; unexpected {len(unexpected)}, "
                           f"e.g. {unexpected[:3]})")


def torchvision_model(input_shape: Sequence[int], n_outputs: int, n_experiences: int = 1, arch: str = "resnet18",
                      weights: str | None = None, download: bool = True, trainable: str = "all",
                      freeze_norm_stats: bool = False, features_cache: bool = False, image_size: int | None = None,
                      multihead: bool = False, kwargs: dict | None = None) -> PretrainedClassifier:
    """A torchvision classifier with clexp's head(s) (see the module docstring for every key)."""
    check_torchvision(arch, weights, trainable, features_cache, image_size)
    _check_images(input_shape, f"model=torchvision (arch={arch})")
    net, width, meta, pretrained, source = torchvision_backbone(arch, weights, download, kwargs)
    fixed = getattr(net, "image_size", None)  # ViT: a position embedding for one input size only
    if meta is not None:
        transform = _torchvision_transform(meta, image_size, source)
    else:  # random weights: no normalisation; a resize only where asked or needed, grey → 3 channels
        size = image_size or (fixed if isinstance(fixed, int) and fixed != input_shape[-1] else None)
        transform = InputTransform((size, size) if size else None, source=source) \
            if size or input_shape[0] == 1 else None
    if isinstance(fixed, int) and image_size is not None and image_size != fixed:
        raise ConfigError("model.image_size", image_size, f"{fixed} or null: {arch} takes {fixed}×{fixed} inputs only "
                                                          f"(its position embedding)")
    ids, n_blocks, what = torchvision_layer_ids(net)
    freeze(net, ids, n_blocks, what, trainable, arch)
    return _assemble(net, width, n_outputs, n_experiences, multihead, freeze_norm_stats, transform, pretrained,
                     features_cache, f"torchvision {arch} ({source})", input_shape)


def _check_images(input_shape: Sequence[int], what: str) -> None:
    if len(input_shape) != 3:
        raise ConfigError("model", what, f"image inputs C×H×W, got shape {tuple(input_shape)}")


def _assemble(net, width, n_outputs, n_experiences, multihead, freeze_norm_stats, transform, pretrained,
              features_cache, description, input_shape) -> PretrainedClassifier:
    model = PretrainedClassifier(net, width, n_outputs, n_experiences if multihead else 1, freeze_norm_stats,
                                 transform, pretrained, features_cache, description)
    with torch.no_grad(), _eval(model):  # one dummy input: the backbone takes these inputs and gives `width` values
        probe = torch.rand(1, *input_shape)
        try:
            model(model.prepare_inputs(probe))
        except RuntimeError as err:
            raise ConfigError("model", description, f"inputs of shape {tuple(input_shape)} "
                                                    f"(after {transform.describe() if transform else 'no transform'}): "
                                                    f"{' '.join(str(err).split())[:200]}") from None
    return model


# ------------------------------------------------------------------------------------------------ timm


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError("model", "timm", "timm installed: pip install 'clexp[timm]' (or pip install timm)") from None
    return timm


def check_timm(arch, pretrained=False, trainable="all", features_cache=False, image_size=None, **_ignored):
    timm = _timm()
    if not isinstance(arch, str) or not timm.is_model(arch):
        valid = timm.list_models()
        raise ConfigError("model.arch", arch, f"a timm model, e.g. {_suggest(arch, valid)} "
                                              f"({len(valid)} in timm.list_models())")
    check(isinstance(pretrained, bool) or (isinstance(pretrained, str) and bool(pretrained)), "model.pretrained",
          pretrained, "true (the arch's default pretrained weights), false (random), or a file")
    if isinstance(pretrained, str):
        local_file(pretrained, "model.pretrained")
    _check_common(trainable, features_cache, image_size)


def timm_weights_file(arch: str, pretrained, download: bool) -> Path | None:
    """The local file of `arch`'s pretrained weights (fetched into its cache when allowed), or None."""
    if pretrained is False:
        return None
    if isinstance(pretrained, str):
        return local_file(pretrained, "model.pretrained")
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    what = f"timm's pretrained weights of {arch}"
    if cfg is not None and cfg.hf_hub_id:
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        return cached_hf(cfg.hf_hub_id, names, "model.pretrained", what, download)
    if cfg is not None and cfg.url:
        return cached_url(cfg.url, "model.pretrained", what, download)
    raise ConfigError("model.pretrained", True, f"false: timm has no pretrained weights for {arch}")


def timm_model(input_shape: Sequence[int], n_outputs: int, n_experiences: int = 1, arch: str = "resnet18",
               pretrained: bool | str = True, download: bool = True, trainable: str = "all",
               freeze_norm_stats: bool = False, features_cache: bool = False, image_size: int | None = None,
               multihead: bool = False, kwargs: dict | None = None) -> PretrainedClassifier:
    """A timm model (`num_classes=0`: its pooled features) with clexp's head(s)."""
    check_timm(arch, pretrained, trainable, features_cache, image_size)
    _check_images(input_shape, f"model=timm (arch={arch})")
    timm = _timm()
    file = timm_weights_file(arch, pretrained, download)
    extra = dict(kwargs or {})
    if file is None:
        net = timm.create_model(arch, pretrained=False, num_classes=0, **extra)
        source = "random weights"
    else:
        net = timm.create_model(arch, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(file)},
                                **extra)
        source = file.name
    transform = None
    if file is not None:
        config = timm.data.resolve_data_config({}, model=net)
        transform = _timm_transform(config, image_size, f"timm data config of {arch}")
    elif image_size is not None or input_shape[0] == 1:
        transform = InputTransform((image_size, image_size) if image_size else None, source=source)
    ids, n_blocks, what = _timm_ids(net, arch, trainable)
    freeze(net, ids, n_blocks, what, trainable, arch)
    return _assemble(net, int(net.num_features), n_outputs, n_experiences, multihead, freeze_norm_stats, transform,
                     file is not None, features_cache, f"timm {arch} ({source})", input_shape)


def _timm_ids(net, arch, trainable):
    if parse_trainable(trainable)[0] != "last":
        return {}, 0, ""
    if not callable(getattr(net, "group_matcher", None)):
        raise ConfigError("model.trainable", trainable, f"all or head: timm's {arch} defines no blocks (group_matcher)")
    return timm_layer_ids(net)


# ------------------------------------------------------------------------ checks before data is read


def check_config(cfg) -> None:
    """Run by `clexp.core.validation` before any data is read: the model's keys, the weights' file (found in
    its cache or fetched, else one line naming it), and that the images reach the weights in [0, 1]."""
    node = cfg.model
    target = str(node.get("_target_", ""))
    keys = {k: node.get(k) for k in ("arch", "trainable", "features_cache", "image_size")}
    download = bool(node.get("download", True))
    if target.endswith("timm_model"):
        check_timm(pretrained=node.get("pretrained", True), **keys)
        file = timm_weights_file(keys["arch"], node.get("pretrained", True), download)
        normalised = file is not None
        if parse_trainable(keys["trainable"])[0] == "last":
            with torch.device("meta"):
                net = _timm().create_model(keys["arch"], pretrained=False, num_classes=0,
                                           **dict(node.get("kwargs") or {}))
            ids, n_blocks, what = _timm_ids(net, keys["arch"], keys["trainable"])
            freeze(net, ids, n_blocks, what, keys["trainable"], keys["arch"])
    else:
        member, file = check_torchvision(weights=node.get("weights"), **keys)
        if member is not None:
            cached_url(member.url, "model.weights", f"the {member} weights of {keys['arch']}", download)
        normalised = member is not None or file is not None
        if parse_trainable(keys["trainable"])[0] == "last":
            from torchvision.models import get_model

            with torch.device("meta"):
                net = get_model(keys["arch"], weights=None, **{**NO_AUX.get(keys["arch"], {}),
                                                               **dict(node.get("kwargs") or {})})
            ids, n_blocks, what = torchvision_layer_ids(net)
            freeze(net, ids, n_blocks, what, keys["trainable"], keys["arch"])
    if normalised and cfg.get("dataset") is not None and cfg.dataset.get("normalize") is True:
        raise ConfigError("dataset.normalize", True,
                          "false with pretrained weights: they take images in [0, 1] and normalise them with their "
                          "own mean and std (the model's input transform)")


torchvision_model.check_config = check_config
timm_model.check_config = check_config


# ------------------------------------------------------------------------------ preparing the stream


def preparation_device(trainer_cfg=None) -> torch.device:
    """Where the inputs are prepared: the GPU the Trainer will use (this process's under DDP), else CPU."""
    accelerator = str((trainer_cfg or {}).get("accelerator", "auto"))
    if torch.cuda.is_available() and accelerator in ("gpu", "cuda", "auto"):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def prepare_inputs(model: nn.Module, x, device: torch.device | str | None = None,
                   batch_size: int = 256) -> torch.Tensor:
    """`model.prepare_inputs` over all of `x` (a tensor, or `ImageFiles` decoded in batches by its
    workers) in batches of `batch_size` on `device` (default: the model's); the result on CPU (where
    the stream keeps its tensors). Without `prepare_inputs`: `x`."""
    from clexp.data.images import input_batches

    fn = getattr(model, "prepare_inputs", None)
    if not callable(fn):
        return x
    device = torch.device(device) if device is not None else next(model.parameters()).device
    outs = [fn(xb).cpu() for xb in input_batches(x, torch.arange(len(x)).split(batch_size), device)]
    if not outs:  # no inputs: the shape from one dummy
        probe = fn(torch.zeros(1, *x.shape[1:], device=device)).cpu()
        return probe[:0]
    return torch.cat(outs)


SPLITS = ("train", "val", "test")


def _check_unit_range(inputs: list) -> None:
    """Pretrained weights take images in [0, 1]: tensors are scanned, files read from their decoding
    (dataset.normalize=false decodes to [0, 1])."""
    from clexp.data.images import is_lazy

    if any(is_lazy(x) and not x.decoding.unit_range for x in inputs):
        raise ConfigError("dataset.normalize", True, "false with pretrained weights: they take images in [0, 1] and "
                          "normalise them with their own mean and std (the model's input transform)")
    tensors = [x for x in inputs if not is_lazy(x) and x.numel()]
    if not tensors:
        return
    low, high = min(float(x.min()) for x in tensors), max(float(x.max()) for x in tensors)
    if low < -1e-3 or high > 1 + 1e-3:
        raise ConfigError("dataset.normalize", f"the inputs range over [{low:.3g}, {high:.3g}]",
                          "images in [0, 1] (dataset.normalize=false): the pretrained weights' transform normalises "
                          "them with its own mean and std")


def prepare_stream(stream, model: nn.Module, device: torch.device | str | None = None, batch_size: int = 256,
                   memory_fraction: float = 0.8):
    """Replace every experience's inputs (train, validation, test) by `prepare_inputs(model, x)`, once,
    before training; `stream.input_shape` follows. The model moves to `device` for it and back.

    Streamed images (`ImageFiles`) stay streamed: the weights' transform joins their decoding, in the
    loader's worker processes (`with_prepare`), so every batch — training, evaluation, importance —
    arrives prepared. With the feature cache they are read once instead, and the features kept in memory.
    Refused (ConfigError) before any work when the tensors kept would not fit in `memory_fraction` of
    this machine's memory, or when pretrained weights would get images outside [0, 1]."""
    from clexp.data.images import first_input, is_lazy, with_prepare

    transform = getattr(model, "input_transform", None)
    cache = bool(getattr(model, "features_cache", False))
    if not callable(getattr(model, "prepare_inputs", None)) or not len(stream) or (transform is None and not cache):
        return stream
    slots = [(e, s) for e in stream for s in SPLITS if getattr(e, f"x_{s}") is not None]
    inputs = [getattr(e, f"x_{s}") for e, s in slots]
    n = sum(len(x) for x in {id(x): x for x in inputs}.values())  # a shared test set counts once
    if transform is not None and transform.normalises:
        _check_unit_range(inputs)
    first = stream[0].x_train
    before = "×".join(map(str, first.shape[1:]))
    source = f" from {transform.source}" if transform is not None and transform.source else ""
    if not cache and all(is_lazy(x) for x in inputs):  # streamed: prepared by the workers, batch by batch
        for (e, s), x in zip(slots, with_prepare(inputs, transform)):
            setattr(e, f"x_{s}", x)
        shape = tuple(stream[0].x_train.shape[1:])
        print(f"inputs prepared as they are streamed, by the loader's workers: {n:,} images "
              f"{before} → inputs {'×'.join(map(str, shape))}; transform: {transform.describe()}{source}")
        stream.input_shape = shape
        return stream
    device = torch.device(device) if device is not None else torch.device("cpu")
    original = next(model.parameters()).device
    model.to(device)
    try:
        probe = prepare_inputs(model, first_input(first), device)
        shape = tuple(probe.shape[1:])
        need = n * math.prod(shape) * 4
        total = _physical_memory()
        if total and need > memory_fraction * total:
            raise ConfigError("model", getattr(model, "description", type(model).__name__),
                              f"inputs this machine can hold: the prepared inputs ({n:,} × {'×'.join(map(str, shape))} "
                              f"floats) need {need / 2**30:.1f} GiB of its {total / 2**30:.1f} GiB; use "
                              "model.trainable=head model.features_cache=true (features only), a smaller "
                              "model.image_size, or fewer inputs")
        start = time.perf_counter()
        done: dict[int, torch.Tensor] = {}  # one input object in several slots (a shared test set): prepared once
        for (e, s), x in zip(slots, inputs):
            if id(x) not in done:
                done[id(x)] = prepare_inputs(model, x, device, batch_size)
            setattr(e, f"x_{s}", done[id(x)])
        seconds = time.perf_counter() - start
    finally:
        model.to(original)
    what = "features of the frozen backbone" if cache else "inputs"
    print(f"inputs prepared once on {device.type} ({seconds:.1f} s): {n:,} images {before} → {what} "
          f"{'×'.join(map(str, shape))}; transform: {transform.describe() if transform else 'none'}{source}")
    stream.input_shape = shape
    return stream


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def describe(model: nn.Module) -> str:
    total, trainable = count(model)
    return f"{getattr(model, 'description', '')}: {total:,} parameters ({trainable:,} trainable)"


__all__ = ["FORMS", "InputTransform", "PretrainedClassifier", "WeightsError", "check_config", "prepare_inputs",
           "prepare_stream", "timm_model", "torchvision_model"]
