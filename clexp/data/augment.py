"""`dataset.augment`: per-sample augmentations of the training batches, on the training device.

    dataset:
      augment:                                  # applied in this order; [] or null: none
        - {name: random_crop, size: 32, padding: 4}
        - {name: hflip, p: 0.5}
        - {name: color_jitter, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1, p: 0.8}
        - {name: random_resized_crop, scale: [0.08, 1.0], ratio: [0.75, 1.3333]}

On the command line: `dataset.augment=[{name:random_crop,padding:4},hflip]` (a bare name takes that
augmentation's defaults, `NAMES` below).

The augmentations are kornia's (`kornia.augmentation`): batched tensors on the training device, each
sample with its own random parameters (`same_on_batch=False`), no per-sample Python work besides
kornia's own. `ContinualModule.training_step` applies them to its training batch, and nothing else
does: evaluation, validation, anytime evaluation and importance estimation (Fisher, MAS, KFAC: they
read the experience's tensors, `clexp.methods.base.experience_shard`) see the inputs as they are.

Randomness. kornia draws its parameters from torch's global generator, on the CPU (its modules are
never moved to the device; the parameters are a few numbers per sample). `Augment.__call__` draws
them from a generator seeded with (run seed, rank, stream step) and restores the global generator's
state afterwards: the training's own randomness (dropout, ...) is the same with and without
augmentation, and a resumed run, which knows the stream step, draws exactly the same augmentations
as an uninterrupted one without anything more in the checkpoint.

Values. clexp's images are normalised before training; "black" (the padding of `random_crop`,
`fill: black`) is each channel's smallest value in the training data, as torchvision's RandomCrop
pads with 0 before `Normalize`; `color_jitter` maps each channel's range of the training data onto
[0, 1] (kornia's colour operations clamp to it), jitters, and maps back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from clexp.config.errors import check, is_number

KEY = "dataset.augment"

# every augmentation's keys and their defaults (`name` aside)
NAMES: dict[str, dict] = {
    # pad by `padding` pixels on every side, then a random size×size window (size null: the input's size)
    "random_crop": {"size": None, "padding": 0, "padding_mode": "constant", "fill": "black"},
    # mirror left-right with probability p, per sample
    "hflip": {"p": 0.5},
    # brightness, contrast, saturation: factors drawn from [max(0, 1 - v), 1 + v]; hue: a shift in
    # [-v, v] turns of the colour wheel (v <= 0.5); all applied to a sample with probability p
    "color_jitter": {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, "p": 1.0},
    # a random window of `scale` of the area and aspect ratio in `ratio`, resized to size×size (bilinear)
    "random_resized_crop": {"size": None, "scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3]},
}
PADDING_MODES = ("constant", "reflect", "replicate")


@dataclass
class Spec:
    """One entry of `dataset.augment`, checked: its name, its index in the list, its values."""

    name: str
    index: int
    params: dict = field(default_factory=dict)
    given: dict = field(default_factory=dict)  # the entry as written (for the messages)

    def key(self, name: str) -> str:
        return f"{KEY}[{self.index}].{name}"


# ------------------------------------------------------------------------------ the config's checks


def _size(spec: Spec) -> None:
    size = spec.params["size"]
    if size is None:
        return
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    ok = isinstance(size, (list, tuple)) and len(size) == 2 and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    check(ok, spec.key("size"), spec.params["size"], "an integer >= 1, [height, width], or null (the input's size)")
    spec.params["size"] = [int(s) for s in size]


def _probability(spec: Spec) -> None:
    p = spec.params["p"]
    check(is_number(p) and 0 <= p <= 1, spec.key("p"), p, "a probability in [0, 1]")


def _interval(spec: Spec, name: str, low: float, high: float | None, what: str) -> None:
    value = spec.params[name]
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(is_number(v) for v in value)
    ok = ok and low < value[0] <= value[1] and (high is None or value[1] <= high)
    check(ok, spec.key(name), value, what)
    spec.params[name] = [float(v) for v in value]


def _check_random_crop(spec: Spec) -> None:
    _size(spec)
    pad = spec.params["padding"]
    check(isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0, spec.key("padding"), pad,
          "an integer >= 0 (pixels added on every side)")
    check(spec.params["padding_mode"] in PADDING_MODES, spec.key("padding_mode"), spec.params["padding_mode"],
          ", ".join(PADDING_MODES))
    fill = spec.params["fill"]
    check(fill == "black" or is_number(fill), spec.key("fill"), fill,
          "black (each channel's smallest training value) or a number (in the normalised inputs' units)")


def _check_color_jitter(spec: Spec) -> None:
    for name in ("brightness", "contrast", "saturation"):
        v = spec.params[name]
        check(is_number(v) and v >= 0, spec.key(name), v, "a number >= 0 (factors in [max(0, 1 - v), 1 + v])")
    hue = spec.params["hue"]
    check(is_number(hue) and 0 <= hue <= 0.5, spec.key("hue"), hue, "a number in [0, 0.5] (turns of the colour wheel)")
    _probability(spec)


def _check_random_resized_crop(spec: Spec) -> None:
    _size(spec)
    _interval(spec, "scale", 0, 1, "[low, high] with 0 < low <= high <= 1 (the window's share of the area)")
    _interval(spec, "ratio", 0, None, "[low, high] with 0 < low <= high (the window's width / height)")


CHECKS = {"random_crop": _check_random_crop, "hflip": _probability, "color_jitter": _check_color_jitter,
          "random_resized_crop": _check_random_resized_crop}


def parse(entries) -> list[Spec]:
    """`dataset.augment` (a list of `{name: ..., key: value}` or bare names; None: none) → checked
    `Spec`s. A bad entry raises `ConfigError` naming `dataset.augment[i].key`."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(entries, (DictConfig, ListConfig)):
        entries = OmegaConf.to_container(entries, resolve=True)
    if entries is None:
        return []
    check(isinstance(entries, (list, tuple)), KEY, entries,
          "a list of augmentations, e.g. [{name: random_crop, padding: 4}, {name: hflip}], or [] for none")
    specs = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"name": entry}
        check(isinstance(entry, dict) and "name" in entry, f"{KEY}[{i}]", entry,
              f"a mapping with a name ({', '.join(NAMES)}) and that augmentation's keys")
        name = entry["name"]
        check(name in NAMES, f"{KEY}[{i}].name", name, ", ".join(NAMES))
        spec = Spec(name, i, dict(NAMES[name]), dict(entry))
        for k, v in entry.items():
            if k == "name":
                continue
            check(k in NAMES[name], spec.key(k), v, f"{name} has no such key (its keys: {', '.join(NAMES[name])})")
            spec.params[k] = v
        CHECKS[name](spec)
        specs.append(spec)
    return specs


# ------------------------------------------------------------------------------ the augmentations


def step_seed(seed: int, rank: int, step: int) -> int:
    """The augmentation generator's seed of one training step: a hash of (run seed, rank, stream step)."""
    digest = hashlib.blake2b(f"clexp-augment:{int(seed)}:{int(rank)}:{int(step)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _on(cache: dict, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` as a (1, C, 1, 1) tensor on `like`'s device and dtype, copied there once."""
    key = (like.device, like.dtype)
    if key not in cache:
        cache.clear()
        cache[key] = t.to(like.device, like.dtype).view(1, -1, 1, 1)
    return cache[key]


def channel_range(inputs: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel's smallest and largest value over N×C×H×W inputs (float32, on the CPU): tensors,
    or image files read lazily (`ImageFiles`, `dataset.in_memory=false`), which are decoded here in
    batches, each file once, with the decoding the training uses — so a streamed dataset gets the
    very range its in-memory form would (the same padding, the same jitter, the same runs)."""
    from clexp.data.images import ImageFiles, input_batches, is_lazy

    lows, highs = [], []

    def add(x: torch.Tensor) -> None:
        lows.append(x.amin(dim=(0, 2, 3)))
        highs.append(x.amax(dim=(0, 2, 3)))

    files: dict[int, list] = {}  # the lazy inputs by dataset table: each file decoded once
    for x in inputs:
        if x is None or not len(x):
            continue
        if is_lazy(x):
            files.setdefault(id(x.table), []).append(x)
        else:
            add(x)
    for parts in files.values():
        every = ImageFiles.cat(parts)
        unique = ImageFiles(every.table, np.unique(every.index))
        for xb in input_batches(unique, torch.arange(len(unique)).split(256)):
            add(xb)
    return (torch.stack(lows).amin(0).float().cpu(), torch.stack(highs).amax(0).float().cpu())


class _PadCrop(torch.nn.Module):
    """Pad (a per-channel constant, or reflect / replicate), then kornia's random crop of the input's size."""

    def __init__(self, size: tuple[int, int], padding: int, mode: str, fill: torch.Tensor):
        import kornia.augmentation as K

        super().__init__()
        self.padding, self.mode, self.fill, self._cache = padding, mode, fill, {}
        self.crop = K.RandomCrop(size, cropping_mode="slice")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        if p:
            if self.mode == "constant":
                n, c, h, w = x.shape
                canvas = _on(self._cache, self.fill, x).expand(n, c, h + 2 * p, w + 2 * p).contiguous()
                canvas[:, :, p : p + h, p : p + w] = x
                x = canvas
            else:
                x = torch.nn.functional.pad(x, (p, p, p, p), mode=self.mode)
        return self.crop(x)


class _InRange(torch.nn.Module):
    """An augmentation that works on [0, 1] images, applied to each channel's range mapped onto [0, 1]."""

    def __init__(self, op: torch.nn.Module, low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        self.op, self.low, self.span = op, low, (high - low).clamp_min(1e-12)
        self._low, self._span = {}, {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, span = _on(self._low, self.low, x), _on(self._span, self.span, x)
        return self.op((x - low) / span) * span + low


class Augment:
    """The `dataset.augment` pipeline for inputs of `input_shape` (C×H×W): `augment(x, step, rank)`.

    Shape-dependent checks run here (after the data is read, before training): images only, every
    output the input's size (evaluation sees un-augmented inputs of that size), a crop no larger than
    the padded image, saturation and hue on 3-channel images only. `value_range` (each channel's
    smallest and largest training value) is needed by `random_crop` with `fill: black` and by
    `color_jitter`. A plain object, not a submodule: not in the module's state_dict, not moved by
    Lightning (kornia's parameters are drawn on the CPU)."""

    def __init__(self, specs: list[Spec], input_shape: Sequence[int], seed: int = 0,
                 value_range: tuple[torch.Tensor, torch.Tensor] | None = None):
        import kornia.augmentation as K

        self.specs, self.seed = list(specs), int(seed)
        self.input_shape = tuple(int(s) for s in input_shape)
        if not self.specs:
            self.ops = []
            return
        check(len(self.input_shape) == 3, self.specs[0].key("name"), self.specs[0].name,
              f"image inputs C×H×W (this dataset's inputs have shape {self.input_shape}): set dataset.augment=[]")
        c, h, w = self.input_shape
        if value_range is not None:
            value_range = (value_range[0].float().cpu(), value_range[1].float().cpu())
        self.ops = []
        for spec in self.specs:
            q = spec.params
            if spec.name in ("random_crop", "random_resized_crop"):
                size = tuple(q["size"]) if q["size"] is not None else (h, w)
                if spec.name == "random_crop":
                    pad = q["padding"]
                    check(size[0] <= h + 2 * pad and size[1] <= w + 2 * pad, spec.key("size"), spec.given.get("size"),
                          f"at most the padded image, {h + 2 * pad}×{w + 2 * pad} (inputs {h}×{w}, padding {pad})")
                check(size == (h, w), spec.key("size"), spec.given.get("size"),
                      f"the inputs' size {h}×{w}, or null: evaluation sees un-augmented {h}×{w} inputs "
                      "(random_resized_crop crops and resizes back)")
            if spec.name == "random_crop":
                pad, mode = q["padding"], q["padding_mode"]
                if mode == "reflect":
                    check(pad < min(h, w), spec.key("padding"), pad,
                          f"less than the image's smaller side ({min(h, w)}) with padding_mode=reflect")
                if q["fill"] == "black":  # without a value range: inputs in [0, 1], black is 0
                    fill = value_range[0] if value_range is not None else torch.zeros(c)
                else:
                    fill = torch.full((c,), float(q["fill"]))
                self.ops.append(_PadCrop(size, pad, mode, fill))
            elif spec.name == "hflip":
                self.ops.append(K.RandomHorizontalFlip(p=float(q["p"])))
            elif spec.name == "color_jitter":
                for name in ("saturation", "hue"):
                    check(c == 3 or q[name] == 0, spec.key(name), q[name],
                          f"0 on {c}-channel images (only brightness and contrast apply to them)")
                low, high = value_range if value_range is not None else (torch.zeros(c), torch.ones(c))
                jitter = K.ColorJitter(float(q["brightness"]), float(q["contrast"]), float(q["saturation"]),
                                       float(q["hue"]), p=float(q["p"]))
                self.ops.append(_InRange(jitter, low, high))
            else:  # random_resized_crop
                self.ops.append(K.RandomResizedCrop(size, scale=tuple(q["scale"]), ratio=tuple(q["ratio"]),
                                                    cropping_mode="slice"))

    @property
    def needs_value_range(self) -> bool:
        return needs_value_range(self.specs)

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __repr__(self) -> str:
        return f"Augment({', '.join(s.name for s in self.specs)})"

    def __call__(self, x: torch.Tensor, step: int, rank: int = 0) -> torch.Tensor:
        """`x` (N×C×H×W) augmented, each sample with its own parameters, drawn from (seed, rank, step).
        The global CPU generator is left as it was."""
        if not self.ops:
            return x
        with torch.random.fork_rng(devices=[]):  # saves and restores the CPU generator only
            torch.random.default_generator.manual_seed(step_seed(self.seed, rank, step))
            with torch.no_grad():
                for op in self.ops:
                    x = op(x)
        return x


def needs_value_range(specs: list[Spec]) -> bool:
    return any(s.name == "color_jitter" or (s.name == "random_crop" and s.params["fill"] == "black"
                                            and s.params["padding"] > 0 and s.params["padding_mode"] == "constant")
               for s in specs)


def build_augment(cfg, stream) -> Augment | None:
    """The run's `Augment` for `stream` (None without `dataset.augment`); raises `ConfigError` for an
    entry that does not fit the data (before training)."""
    specs = parse(cfg.dataset.get("augment"))
    if not specs:
        return None
    value_range = None
    if needs_value_range(specs) and len(stream.input_shape) == 3:
        value_range = channel_range([t for e in stream.experiences for t in (e.x_train, e.x_val)])
    return Augment(specs, stream.input_shape, int(cfg.seed), value_range)
