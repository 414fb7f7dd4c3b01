"""A user's own data: an `.npz` or `.pt` file holding x_train, y_train, x_test, y_test.

Images may be N×H×W (one channel added) or N×C×H×W; flat features N×D work too; labels are
integers. Inputs are standardised with the train set's statistics (per channel, or per feature).
Also: reading MNIST's IDX files (e.g. the real test images in ../shared/data/mnist-t10k).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from clexp.data.base import DataError, SourceData
from clexp.data.torchvision_sources import resolve_root

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"dataset=arrays: no file at {path} (set dataset.path=FILE, an .npz or .pt file "
                        f"holding {', '.join(KEYS)})")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                return {k: torch.from_numpy(f[k]) for k in f.files}
        if path.suffix == ".pt":
            data = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(data, dict):
                raise DataError(f"dataset=arrays: {path} holds a {type(data).__name__}, not a dict of {', '.join(KEYS)}")
            return {k: torch.as_tensor(v) for k, v in data.items()}
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"dataset=arrays: {path} cannot be read ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:160]}); it is truncated or corrupt") from err
    raise DataError(f"dataset=arrays: {path} must be an .npz or .pt file")


def _images(x: torch.Tensor, key: str, path: Path) -> torch.Tensor:
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() in (2, 4):
        return x
    raise DataError(f"dataset=arrays: {path}: {key} has shape {tuple(x.shape)}; expected N×D, N×H×W or N×C×H×W")


def _labels(y: torch.Tensor, key: str, path: Path) -> torch.Tensor:
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        if y.dtype == torch.bool or not torch.equal(y, y.round()):
            raise DataError(f"dataset=arrays: {path}: {key} must hold integer class labels")
    y = y.reshape(-1).to(torch.int64)
    if len(y) and int(y.min()) < 0:
        raise DataError(f"dataset=arrays: {path}: {key} has negative labels (min {int(y.min())})")
    return y


def load_arrays(path: str | os.PathLike, name: str | None = None, normalize: bool = True) -> SourceData:
    """The four arrays of `path` as a SourceData (n_classes = largest label + 1)."""
    path = resolve_root(path)
    data = _read(path)
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise DataError(f"dataset=arrays: {path} lacks {', '.join(missing)} (found: {', '.join(sorted(data))})")
    x_train, x_test = (_images(data[k].float(), k, path) for k in ("x_train", "x_test"))
    y_train, y_test = (_labels(data[k], k, path) for k in ("y_train", "y_test"))
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"dataset=arrays: {path}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"dataset=arrays: {path}: x_train {tuple(x_train.shape[1:])} and x_test "
                        f"{tuple(x_test.shape[1:])} differ in shape")
    if normalize:
        dims = (0, 2, 3) if x_train.dim() == 4 else (0,)
        mean = x_train.mean(dim=dims, keepdim=True)
        std = x_train.std(dim=dims, keepdim=True).clamp_min(1e-8)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    return SourceData(name or path.stem, x_train, y_train, x_test, y_test, n_classes)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (MNIST's format), gzip-compressed or not, as a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file")
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: {body.size} values for shape {shape}")
    return body.reshape(shape)


def mnist_t10k_arrays(folder: str | os.PathLike, out_file: str | os.PathLike, test_fraction: float = 0.2,
                      seed: int = 0) -> Path:
    """The real MNIST test images (IDX gz files in `folder`) as an .npz with a stratified split."""
    from sklearn.model_selection import train_test_split

    folder = Path(folder)
    x = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    y = read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=y)
    out = Path(out_file)
    np.savez(out, x_train=x[tr], y_train=y[tr], x_test=x[te], y_test=y[te])
    return out
