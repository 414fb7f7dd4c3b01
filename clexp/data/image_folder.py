"""Any folder of images in torchvision's ImageFolder layout: `root/<class>/**/<image>`.

`train_root` and `test_root` each hold one folder per class (the same class names); without a
`test_root` a seeded, class-stratified `test_fraction` of the training images is the test set.
Classes are the folder names in sorted order (label 0 = the first). Every file is checked before
training from its header alone (empty, unreadable, not an image, wrong channels, wrong size), so a
bad file stops the run with one line naming it. Then, with `in_memory`:

- `true`, or `auto` when the decoded dataset (float32) fits `memory_budget_gb`: decoded once into
  tensors (on the training device during the run), like every other source;
- `false`, or `auto` beyond the budget: `ImageFiles`, decoded batch by batch by `workers` worker
  processes while training, evaluating and estimating importances (clexp/data/images.py).

Both give the same inputs (one decoding function) and, for the same seed, the same batches.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from clexp.config.errors import ConfigError, check, check_int, check_number
from clexp.data.base import DataError, SourceData, declared
from clexp.data.images import (
    IMAGE_EXTENSIONS,
    Decoding,
    ImageFiles,
    channels_of,
    check_headers,
    choose_memory,
    estimate_stats,
    materialise,
    read_header,
    read_headers,
)
from clexp.data.torchvision_sources import resolve_root

WHAT = "dataset=image_folder"


def list_classes(root: Path, key: str) -> dict[str, list[str]]:
    """{class name: image paths relative to root}, classes and files sorted; DataError for a
    missing root, a root without class folders, or a class folder without images."""
    if not root.exists():
        raise DataError(f"{WHAT}: the folder {root} does not exist (dataset.{key}); expected a folder holding one "
                        f"folder of images per class")
    if not root.is_dir():
        raise DataError(f"{WHAT}: {root} (dataset.{key}) is a file; expected a folder holding one folder of images "
                        f"per class")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as err:
        raise DataError(f"{WHAT}: the folder {root} cannot be read ({err.strerror})") from None
    classes = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    if not classes:
        loose = [e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
        hint = f" (it holds images directly, e.g. {loose[0]})" if loose else ""
        raise DataError(f"{WHAT}: {root} (dataset.{key}) has no class folders{hint}; expected one folder of "
                        f"images per class: {root}/<class>/<image>")
    out = {}
    for name in classes:
        files = []
        for folder, dirs, names in os.walk(root / name, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = os.path.relpath(folder, root)
            files += [os.path.join(rel, f) for f in sorted(names)
                      if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
        if not files:
            raise DataError(f"{WHAT}: the class folder {root / name} holds no images; expected image files "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
        out[name] = files
    return out


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) positions: of each class of n ≥ 2 images, max(1, round(fraction·n)) seeded ones test."""
    g = torch.Generator().manual_seed(seed)
    test = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        k = 0 if len(members) < 2 else max(1, round(fraction * len(members)))
        test.append(members[torch.randperm(len(members), generator=g)[:k]])
    test = torch.sort(torch.cat(test)).values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[test] = False
    return torch.nonzero(keep).flatten(), test


def parse_image_size(value) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError("image_size", value,
                          "an integer or [H, W] (pixels), or null for the images' own size") from None
    check(h >= 1 and w >= 1, "image_size", value, "positive sizes")
    return h, w


def build_decoding(paths: list[str], headers, size, channels, convert, normalize, mean, std,
                   stats_samples, what: str, resize: bool | None = None) -> Decoding:
    """The decoding of every image: its channels and size (given, or the first image's; `resize`:
    images of another size are resized, default when a size is given, else refused), its
    normalisation (given, or estimated on a seeded sample of the training images)."""
    first = headers[0] if headers else read_header(paths[0])
    if first.problem:
        raise DataError(f"{what}: the image {first.path} {first.problem}; expected an image file")
    if channels is None:
        channels = channels_of(first, what)
    check(channels in (1, 3), "channels", channels, "1 (grey) or 3 (RGB), or null for the first image's")
    resize = size is not None if resize is None else bool(resize)
    size = size if size is not None else (first.size[1], first.size[0])
    if headers:
        check_headers(headers, channels, None if resize else size, bool(convert), what)
    zeros, ones = (0.0,) * channels, (1.0,) * channels
    decoding = Decoding(size, channels, zeros, ones, bool(convert), resize)
    if not normalize:
        return decoding
    if mean is None or std is None:
        est_mean, est_std = estimate_stats(paths, decoding, stats_samples)
        mean = est_mean if mean is None else mean
        std = est_std if std is None else std
    mean, std = _per_channel(mean, channels, "mean"), _per_channel(std, channels, "std")
    if any(s <= 0 for s in std):
        raise ConfigError("std", list(std), "positive numbers")
    return Decoding(size, channels, mean, std, bool(convert), resize)


def _per_channel(value, channels: int, key: str) -> tuple[float, ...]:
    values = [float(value)] * channels if isinstance(value, (int, float)) else [float(v) for v in value]
    check(len(values) == channels, key, list(values), f"one number per channel ({channels}) on the [0, 1] scale")
    return tuple(values)


def check_loader_options(in_memory, memory_budget_gb, workers, stats_samples) -> None:
    check(str(in_memory).lower() in ("auto", "true", "false"), "in_memory", in_memory, "auto, true or false")
    check_number("memory_budget_gb", memory_budget_gb, low=0)
    check_int("workers", workers, low=0)
    check_int("stats_samples", stats_samples, low=1)


def finish_source(name: str, root: Path, train_paths: list[str], y_train: torch.Tensor, test_paths: list[str],
                  y_test: torch.Tensor, n_classes: int, decoding: Decoding, in_memory, memory_budget_gb: float,
                  workers: int, what: str, **extra) -> SourceData:
    """A SourceData of ImageFiles (streamed) or of decoded tensors (in memory), as `in_memory` chooses."""
    files = ImageFiles.from_paths(str(root), train_paths + test_paths, decoding, workers)
    x_train, x_test = files[: len(train_paths)], files[len(train_paths):]
    if choose_memory(in_memory, memory_budget_gb, files.nbytes, what):
        x_train, x_test = materialise(x_train), materialise(x_test)
    return SourceData(name, x_train, y_train, x_test, y_test, n_classes, **extra)


def load_image_folder(
    train_root: str,
    test_root: str | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    image_size=None,
    channels: int | None = None,
    convert: bool = False,
    normalize: bool = True,
    mean=None,
    std=None,
    stats_samples: int = 2000,
    in_memory="auto",
    memory_budget_gb: float = 4.0,
    workers: int = 4,
    check_images: bool = True,
    name: str = "image_folder",
    n_classes: int | None = None,
) -> SourceData:
    """The images of `train_root` (and `test_root`) as a SourceData: tensors or ImageFiles."""
    check_loader_options(in_memory, memory_budget_gb, workers, stats_samples)
    check_number("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
    size = parse_image_size(image_size)
    train_dir = resolve_root(train_root)
    train = list_classes(train_dir, "train_root")
    class_names = list(train)
    if test_root is not None:
        test_dir = resolve_root(test_root)
        test = list_classes(test_dir, "test_root")
        if set(test) != set(train):
            only_train, only_test = sorted(set(train) - set(test)), sorted(set(test) - set(train))
            parts = [f"only in {train_dir}: {', '.join(only_train)}" if only_train else "",
                     f"only in {test_dir}: {', '.join(only_test)}" if only_test else ""]
            raise DataError(f"{WHAT}: the train and test roots have different class folders "
                            f"({'; '.join(p for p in parts if p)}); expected the same classes in both")
    label = {c: i for i, c in enumerate(class_names)}

    common = Path(os.path.commonpath([train_dir, test_dir])) if test_root is not None else train_dir

    def flatten(folder: Path, listing: dict[str, list[str]]) -> tuple[list[str], torch.Tensor]:
        paths = [str(folder / p) for c in class_names for p in listing[c]]
        labels = torch.tensor([label[c] for c in class_names for _ in listing[c]], dtype=torch.int64)
        return paths, labels

    train_paths, y_train = flatten(train_dir, train)
    if test_root is not None:
        test_paths, y_test = flatten(test_dir, test)
    else:
        tr, te = stratified_split(y_train, float(test_fraction), int(split_seed))
        test_paths, y_test = [train_paths[i] for i in te.tolist()], y_train[te]
        train_paths, y_train = [train_paths[i] for i in tr.tolist()], y_train[tr]
    headers = read_headers(train_paths + test_paths) if check_images else []
    decoding = build_decoding(train_paths, headers, size, channels, convert, normalize, mean, std, stats_samples, WHAT)
    what = f"{WHAT}: {len(train_paths):,} training and {len(test_paths):,} test images of {len(class_names)} classes"
    rel_train = [os.path.relpath(p, common) for p in train_paths]
    rel_test = [os.path.relpath(p, common) for p in test_paths]
    data = finish_source(name, common, rel_train, y_train, rel_test, y_test, len(class_names), decoding,
                         in_memory, memory_budget_gb, workers, what)
    return declared(data, None, n_classes)
