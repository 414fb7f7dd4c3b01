"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision's own download and parsing code,
decoded ONCE into normalised tensors and cached under the data root (`<root>/clexp-cache/<name>.pt`).

The training loop never sees torchvision's per-sample `__getitem__` or PIL: it gets tensors.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from clexp.checkpoint import save_atomic
from clexp.data.base import DataError, SourceData

CACHE_DIR = "clexp-cache"
# where torchvision keeps each dataset's files under the root
_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "cifar-10-batches-py",
            "cifar100": "cifar-100-python"}
CACHE_VERSION = 1


def resolve_root(root: str | os.PathLike) -> Path:
    """Relative roots are taken from the folder clexp was launched in (Hydra may change the cwd)."""
    path = Path(root).expanduser()
    if path.is_absolute():
        return path
    try:
        from hydra.utils import get_original_cwd

        base = Path(get_original_cwd())
    except (ValueError, ImportError):
        base = Path.cwd()
    return (base / path).resolve()


def _datasets():
    from torchvision import datasets

    return {
        "mnist": (datasets.MNIST, 10),
        "fashion_mnist": (datasets.FashionMNIST, 10),
        "cifar10": (datasets.CIFAR10, 10),
        "cifar100": (datasets.CIFAR100, 100),
    }


def _to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset's whole arrays (no per-sample access): uint8 images → float N×C×H×W in [0, 1]."""
    data = ds.data
    if isinstance(data, np.ndarray):  # CIFAR: N×H×W×C
        x = torch.from_numpy(data).permute(0, 3, 1, 2)
    else:  # MNIST-like: N×H×W
        x = data.unsqueeze(1)
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return x.float().div_(255.0), y


def _normalise(x_train: torch.Tensor, x_test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel standardisation with the TRAIN set's statistics."""
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
    return (x_train - mean) / std, (x_test - mean) / std


def _broken_file(folder: Path) -> Path | None:
    """The first file under `folder` that torchvision's parsers cannot read (to name it in the error)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            if "idx3" in path.name and not path.name.endswith(".gz"):
                read_image_file(str(path))
            elif "idx1" in path.name and not path.name.endswith(".gz"):
                read_label_file(str(path))
            elif path.suffix in ("", ".meta") and path.parent.name.startswith("cifar"):
                with open(path, "rb") as f:
                    pickle.load(f, encoding="latin1")
        except Exception:  # noqa: BLE001 - any failure means this file is the broken one
            return path
    return None


def _missing_message(name: str, root: Path, download: bool, err: Exception) -> str:
    tried = f"downloading with torchvision failed ({str(err).splitlines()[0][:200]})" if download else \
        "download is off (dataset.download=false)"
    return (
        f"dataset={name}: its files are not under {root} and {tried}. Fix: put the files there or point "
        f"paths.data_dir (or CLEXP_DATA_DIR) to a folder that has them, e.g. paths.data_dir=/data; "
        f"or run offline with the default dataset=digits."
    )


def load_torchvision(name: str, root: str | os.PathLike = "data", download: bool = True) -> SourceData:
    """One of mnist, fashion_mnist, cifar10, cifar100, from the cache or through torchvision."""
    specs = _datasets()
    if name not in specs:
        raise DataError(f"dataset {name!r} is not one of {', '.join(specs)}")
    cls, n_classes = specs[name]
    root = resolve_root(root)
    cache = root / CACHE_DIR / f"{name}.pt"
    if cache.exists():
        try:
            d = torch.load(cache, map_location="cpu", weights_only=True)
            if d.get("version") == CACHE_VERSION:
                return SourceData(name, d["x_train"], d["y_train"], d["x_test"], d["y_test"], n_classes)
        except Exception as err:
            cache.unlink(missing_ok=True)
            if not isinstance(err, (OSError, RuntimeError, pickle.UnpicklingError, KeyError, EOFError)):
                raise
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except Exception as err:
        broken = _broken_file(root / _FOLDERS[name]) if (root / _FOLDERS[name]).exists() else None
        if broken is not None:
            raise DataError(
                f"dataset={name}: the file {broken} cannot be read ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:160]}); it is truncated or corrupt: delete it (it is downloaded "
                f"again) or point paths.data_dir to good files."
            ) from err
        raise DataError(_missing_message(name, root, download, err)) from err
    (x_train, y_train), (x_test, y_test) = _to_tensors(train), _to_tensors(test)
    x_train, x_test = _normalise(x_train, x_test)
    save_atomic({"version": CACHE_VERSION, "x_train": x_train, "y_train": y_train, "x_test": x_test,
                 "y_test": y_test}, cache)
    return SourceData(name, x_train, y_train, x_test, y_test, n_classes)


def load_mnist(root="data", download=True) -> SourceData:
    return load_torchvision("mnist", root, download)


def load_fashion_mnist(root="data", download=True) -> SourceData:
    return load_torchvision("fashion_mnist", root, download)


def load_cifar10(root="data", download=True) -> SourceData:
    return load_torchvision("cifar10", root, download)


def load_cifar100(root="data", download=True) -> SourceData:
    return load_torchvision("cifar100", root, download)
