"""A user's own data: an `.npz` or `.pt` file holding x_train, y_train, x_test, y_test.

Inputs may be images N×H×W (one channel is added) or N×C×H×W, or flat features N×D; labels are
non-negative integers (any integer dtype, or floats holding whole numbers), N or N×1.
`n_classes` is the largest label + 1 over both splits. Inputs are standardised with the TRAIN set's
statistics: per channel for images, per feature for flat inputs (a constant channel or feature is
only centred).

Also here: reading MNIST's IDX files, and turning the real MNIST test images (a folder holding
`t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz`) into such a file with a stratified
train/test split.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from clexp.data.base import DataError, SourceData, declared
from clexp.data.torchvision_sources import resolve_root

KEYS = ("x_train", "y_train", "x_test", "y_test")
FORMATS = ".npz (numpy.savez) or .pt (torch.save of a dict)"


def _read(path: Path) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The names the file holds, and the four arrays among them as tensors."""
    if not path.is_file():
        raise DataError(
            f"dataset=arrays: no file at {path}. Set dataset.path=FILE, an {FORMATS} holding {', '.join(KEYS)}"
        )
    if path.suffix not in (".npz", ".pt"):
        raise DataError(f"dataset=arrays: {path} must be an {FORMATS}, not {path.suffix or 'a file without suffix'}")
    try:
        if path.suffix == ".npz":
            f = np.load(path, allow_pickle=False)
            if not isinstance(f, np.lib.npyio.NpzFile):
                raise DataError(
                    f"dataset=arrays: {path} holds one array, not the arrays {', '.join(KEYS)} "
                    f"(write it with numpy.savez(path, x_train=..., y_train=..., ...))"
                )
            with f:
                names, arrays = list(f.files), {}
                for k in KEYS:
                    if k in names:
                        try:
                            arrays[k] = f[k]
                        except ValueError as err:
                            if "allow_pickle" not in str(err):
                                raise
                            raise DataError(
                                f"dataset=arrays: {path}: {k} holds Python objects; store a numeric array"
                            ) from None
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(data, dict):
                raise DataError(
                    f"dataset=arrays: {path} holds a {type(data).__name__}, not a dict with the keys {', '.join(KEYS)}"
                )
            names, arrays = [str(k) for k in data], {k: data[k] for k in KEYS if k in data}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(
            f"dataset=arrays: {path} cannot be read, it is truncated or corrupt "
            f"({type(err).__name__}: {_first_line(err)})"
        ) from err
    except Exception as err:  # noqa: BLE001 - e.g. weights_only refusing a pickled object
        raise DataError(f"dataset=arrays: {path} cannot be read ({type(err).__name__}: {_first_line(err)})") from err
    return names, {k: _tensor(v, k, path) for k, v in arrays.items()}


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else "")[:200]


def _tensor(value, key: str, path: Path) -> torch.Tensor:
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        kind = getattr(value, "dtype", type(value).__name__)
        raise DataError(f"dataset=arrays: {path}: {key} is not a numeric array ({kind})") from err
    if t.dtype.is_complex:
        raise DataError(f"dataset=arrays: {path}: {key} is complex; expected real numbers")
    return t


def _inputs(x: torch.Tensor, key: str, path: Path) -> torch.Tensor:
    if x.dim() == 3:  # N×H×W
        x = x.unsqueeze(1)
    elif x.dim() == 4:
        c, w = x.shape[1], x.shape[3]
        if c > 4 and w in (1, 3, 4):
            raise DataError(
                f"dataset=arrays: {path}: {key} has shape {tuple(x.shape)}, which looks like "
                f"N×H×W×C; store images as N×C×H×W (numpy: x.transpose(0, 3, 1, 2))"
            )
    elif x.dim() != 2:
        raise DataError(
            f"dataset=arrays: {path}: {key} has shape {tuple(x.shape)}; expected N×D (flat "
            f"features), N×H×W or N×C×H×W (images)"
        )
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"dataset=arrays: {path}: {key} holds NaN or infinite values")
    return x


def _labels(y: torch.Tensor, key: str, path: Path) -> torch.Tensor:
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise DataError(
            f"dataset=arrays: {path}: {key} has shape {tuple(y.shape)}; expected one integer class "
            f"label per row (N), not one-hot or multi-label"
        )
    if y.dtype == torch.bool or (y.dtype.is_floating_point and not bool((y == y.round()).all())):
        raise DataError(
            f"dataset=arrays: {path}: {key} must hold integer class labels (found {y.dtype} values "
            f"that are not whole numbers)"
            if y.dtype != torch.bool
            else f"dataset=arrays: {path}: {key} must hold integer class labels, not booleans"
        )
    y = y.to(torch.int64)
    if len(y) and int(y.min()) < 0:
        raise DataError(
            f"dataset=arrays: {path}: {key} has negative labels (min {int(y.min())}); labels are "
            f"class indices 0, 1, 2, …"
        )
    return y


def standardise(x_train: torch.Tensor, x_test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x − mean) / std with the train set's statistics: per channel (N×C×H×W) or per feature (N×D).
    A constant channel or feature (std 0, or a single training row) is only centred."""
    dims = (0, 2, 3) if x_train.dim() == 4 else (0,)
    mean = x_train.mean(dim=dims, keepdim=True)
    std = x_train.std(dim=dims, keepdim=True) if len(x_train) > 1 else torch.zeros_like(mean)
    std = torch.where(std > 1e-6 * (1 + mean.abs()), std, torch.ones_like(std))
    return (x_train - mean) / std, (x_test - mean) / std


def load_arrays(path: str | os.PathLike, name: str | None = None, normalize: bool = True,
                n_classes: int | None = None) -> SourceData:
    """The four arrays of `path` (relative: from the launch folder) as a SourceData; `name`
    defaults to the file's stem."""
    path = resolve_root(path)
    names, data = _read(path)
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise DataError(
            f"dataset=arrays: {path} lacks {', '.join(missing)} (it holds: "
            f"{', '.join(sorted(names)) or 'nothing'}); it needs {', '.join(KEYS)}"
        )
    x_train, x_test = (_inputs(data[k], k, path) for k in ("x_train", "x_test"))
    y_train, y_test = (_labels(data[k], k, path) for k in ("y_train", "y_test"))
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"dataset=arrays: {path}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
    if len(x_train) == 0:
        raise DataError(f"dataset=arrays: {path}: x_train is empty")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"dataset=arrays: {path}: one input of x_train is {tuple(x_train.shape[1:])} but one of "
            f"x_test is {tuple(x_test.shape[1:])}; they must differ in shape only in N"
        )
    if normalize:
        x_train, x_test = standardise(x_train, x_test)
    declared_classes, n_classes = n_classes, int(torch.cat([y_train, y_test]).max()) + 1
    return declared(SourceData(name or path.stem, x_train, y_train, x_test, y_test, n_classes), None, declared_classes)


IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (MNIST's format), gzip-compressed (`.gz`) or not, as a numpy array."""
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"no IDX file at {path}") from None
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path} cannot be read, it is truncated or corrupt ({_first_line(err)})") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dims = data[3]
    if len(data) < 4 + 4 * dims:
        raise DataError(f"{path} is truncated: its header is incomplete")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    dtype = np.dtype(IDX_TYPES[data[2]])
    body = data[4 + 4 * dims :]
    if len(body) != int(np.prod(shape)) * dtype.itemsize:
        raise DataError(f"{path} is truncated or corrupt: {len(body)} bytes of data for shape {shape}")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def mnist_t10k_arrays(
    folder: str | os.PathLike, out_file: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0
) -> Path:
    """The real MNIST test images (`t10k-{images-idx3,labels-idx1}-ubyte[.gz]` in `folder`) written as
    an .npz for `load_arrays`: uint8 N×28×28 images, int64 labels, split stratified by class."""
    from sklearn.model_selection import train_test_split

    folder = Path(folder)

    def find(stem: str) -> Path:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                return candidate
        raise DataError(f"no {stem}[.gz] in {folder}")

    x = read_idx(find("t10k-images-idx3-ubyte"))
    y = read_idx(find("t10k-labels-idx1-ubyte")).astype(np.int64)
    if len(x) != len(y):
        raise DataError(f"{folder}: {len(x)} images but {len(y)} labels")
    tr, te = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=y)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.npz")  # written whole, then renamed
    np.savez(tmp, x_train=x[tr], y_train=y[tr], x_test=x[te], y_test=y[te])
    os.replace(tmp, out)
    return out


def load_mnist_t10k(path: str | os.PathLike, name: str | None = None, n_classes: int | None = 10,
                    seed: int = 0, train_fraction: float = 0.8) -> SourceData:
    """The 10,000 real MNIST test images (`t10k-{images-idx3,labels-idx1}-ubyte[.gz]` in the folder
    `path`) as a stand-in for MNIST where the 60,000 training images are not available: a seeded
    random 80/20 train/test split, standardised with the train part's mean and std (one value for all
    pixels). The same images and split as the benchmarks' `bench.common.mnist_like`."""
    folder = resolve_root(path)
    if not folder.is_dir():
        raise DataError(f"dataset=mnist_t10k: {folder} is not a folder (it should hold "
                        "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]); set dataset.path=FOLDER")

    def find(stem: str) -> Path:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                return candidate
        raise DataError(f"dataset=mnist_t10k: no {stem}[.gz] in {folder}")

    x = torch.from_numpy(read_idx(find("t10k-images-idx3-ubyte"))).float().div(255).unsqueeze(1)
    y = torch.from_numpy(read_idx(find("t10k-labels-idx1-ubyte")).astype(np.int64))
    if len(x) != len(y):
        raise DataError(f"{folder}: {len(x)} images but {len(y)} labels")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_train = int(train_fraction * len(y))
    tr, te = perm[:n_train], perm[n_train:]
    x = (x - x[tr].mean()) / x[tr].std()
    data = SourceData("mnist-t10k", x[tr], y[tr], x[te], y[te], 10)
    return declared(data, name, n_classes)
