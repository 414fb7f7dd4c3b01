"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision's own download and parsing code,
decoded ONCE into tensors and cached under the data root (`<root>/clexp-cache/<name>.pt`).

The cache holds the decoded uint8 images (N×C×H×W) and int64 labels: a quarter of the size of float
tensors, and loading it never touches torchvision (no per-sample `__getitem__`, no PIL). Images are
standardised per channel with the TRAIN set's mean and std at every load (exact statistics from a
256-bin histogram of the uint8 values). The cache records the sizes of the files it was decoded
from: when those files are still there and have changed, it is rebuilt; when they are gone, the
cache alone is enough.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from clexp.config.errors import one_line
from clexp.data.atomic import file_lock
from clexp.data.base import DataError, SourceData, declared

CACHE_DIR = "clexp-cache"
CACHE_VERSION = 2
FIX = (
    "Fix: put the files there, or point clexp to a folder that holds them with "
    "paths.data_dir=/path/with/the/files (or CLEXP_DATA_DIR=/path/with/the/files); "
    "or run offline with the default dataset=digits."
)


@dataclass(frozen=True)
class _Spec:
    key: str  # clexp's name (the config's dataset=...)
    cls_name: str  # torchvision.datasets class
    n_classes: int

    @property
    def cls(self):
        from torchvision import datasets

        return getattr(datasets, self.cls_name)

    @property
    def is_mnist(self) -> bool:
        return self.cls_name in ("MNIST", "FashionMNIST")

    def folder(self, root: Path) -> Path:
        """Where torchvision keeps the decoded files under `root`."""
        cls = self.cls
        return root / cls.__name__ / "raw" if self.is_mnist else root / cls.base_folder

    def files(self) -> list[tuple[str, str | None]]:
        """(file name, md5 or None) of every file torchvision reads, in the order it reads them."""
        cls = self.cls
        if self.is_mnist:  # torchvision checks MNIST's md5 on the downloaded .gz only
            return [(os.path.splitext(name)[0], None) for name, _ in cls.resources]
        return [(n, md5) for n, md5 in cls.train_list + cls.test_list] + [(cls.meta["filename"], cls.meta["md5"])]

    def sources(self) -> list[str]:
        """Where torchvision downloads from (for the error message)."""
        cls = self.cls
        return list(cls.mirrors) if self.is_mnist else [cls.url]


SPECS = {
    "mnist": _Spec("mnist", "MNIST", 10),
    "fashion_mnist": _Spec("fashion_mnist", "FashionMNIST", 10),
    "cifar10": _Spec("cifar10", "CIFAR10", 10),
    "cifar100": _Spec("cifar100", "CIFAR100", 100),
}


def resolve_root(root: str | os.PathLike) -> Path:
    """An absolute path; relative ones are taken from the folder clexp was launched in (Hydra may
    have changed the working directory)."""
    path = Path(root).expanduser()
    if path.is_absolute():
        return path
    try:
        from hydra.utils import get_original_cwd

        base = Path(get_original_cwd())
    except (ValueError, ImportError):  # ValueError: Hydra is not running
        base = Path.cwd()
    return (base / path).resolve()


def _to_uint8(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision dataset's whole arrays (never its per-sample path): uint8 N×C×H×W, int64 labels."""
    data = torch.as_tensor(ds.data)
    if data.dim() == 3:  # MNIST-like: N×H×W
        x = data.unsqueeze(1)
    else:  # CIFAR: N×H×W×C
        x = data.permute(0, 3, 1, 2)
    y = torch.as_tensor(ds.targets, dtype=torch.int64)
    return x.to(torch.uint8).contiguous(), y


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-channel mean and std (unbiased) of uint8 images N×C×H×W, from 256-bin histograms."""
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / (n - 1).clamp_min(1)
        means.append(mean)
        stds.append(var.sqrt())
    return torch.stack(means), torch.stack(stds)


def standardise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x − mean) / std per channel, as float32; a constant channel (std 0) is only centred."""
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    shape = (1, -1, 1, 1)
    out = x.to(torch.float32)
    return out.sub_(mean.to(torch.float32).view(shape)).div_(std.to(torch.float32).view(shape))


def _fingerprint(spec: _Spec, root: Path) -> dict[str, int]:
    """Sizes of the files the cache is decoded from (those present)."""
    folder = spec.folder(root)
    return {name: (folder / name).stat().st_size for name, _ in spec.files() if (folder / name).is_file()}


def _read_cache(spec: _Spec, root: Path, cache: Path) -> dict | None:
    """The cached tensors, or None when there is no usable cache (a broken or stale one is rebuilt)."""
    if not cache.is_file():
        return None
    try:
        d = torch.load(cache, map_location="cpu", weights_only=True)
        ok = isinstance(d, dict) and d.get("version") == CACHE_VERSION
        if ok:
            # stale when a source file still there has changed; files gone: the cache is all there is
            sources = d["sources"]
            ok = all(sources.get(name) == size for name, size in _fingerprint(spec, root).items())
        return d if ok else None
    except Exception as err:  # noqa: BLE001 - the cache is derived data: any failure means rebuild
        warnings.warn(
            f"dataset={spec.key}: ignoring the unreadable cache {cache} ({one_line(err)}); "
            f"decoding the dataset files again",
            stacklevel=3,
        )
        return None


def _write_cache(spec: _Spec, root: Path, cache: Path, tensors: dict) -> None:
    from clexp.data.atomic import save_atomic

    try:
        save_atomic({"version": CACHE_VERSION, "sources": _fingerprint(spec, root), **tensors}, cache)
    except OSError as err:  # a read-only data folder still works, it just decodes every time
        warnings.warn(
            f"dataset={spec.key}: could not write the cache {cache} ({one_line(err)}); "
            f"the files will be decoded again next time",
            stacklevel=3,
        )


def _broken_file(spec: _Spec, root: Path) -> tuple[Path, str] | None:
    """The first file that is present but cannot be used, and why (to name it in the error)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file
    from torchvision.datasets.utils import check_integrity

    folder = spec.folder(root)
    for name, md5 in spec.files():
        path = folder / name
        if not path.is_file():
            continue
        try:
            if spec.is_mnist:
                (read_image_file if "idx3" in name else read_label_file)(str(path))
            else:
                with open(path, "rb") as f:
                    pickle.load(f, encoding="latin1")
        except Exception as err:  # noqa: BLE001 - any failure means this file is the broken one
            return path, f"it cannot be parsed: {type(err).__name__} {one_line(err, 120)}".rstrip()
        if md5 is not None and not check_integrity(str(path), md5):
            return path, "its md5 checksum differs from the official one"
    return None


def _unpack_gz(spec: _Spec, root: Path) -> None:
    """MNIST-like: decompress `X.gz` files that lack their `X` beside them (torchvision itself only
    unpacks a .gz whose md5 is the official one, and only when downloading)."""
    if not spec.is_mnist:
        return
    from torchvision.datasets.utils import extract_archive

    folder = spec.folder(root)
    for name, _ in spec.files():
        gz = folder / f"{name}.gz"
        if gz.is_file() and not (folder / name).is_file():
            try:
                extract_archive(str(gz), str(folder))
            except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
                (folder / name).unlink(missing_ok=True)
                raise DataError(
                    f"dataset={spec.key}: the file {gz} is truncated or corrupt ({one_line(err, 120)}). "
                    f"Delete it or copy a good one there. {FIX}"
                ) from err


def _failure(spec: _Spec, root: Path, download: bool, err: Exception) -> DataError:
    """One message for every way loading can fail: where it looked, what it tried, how to fix it."""
    broken = _broken_file(spec, root)
    if broken is not None:
        path, why = broken
        return DataError(
            f"dataset={spec.key}: the file {path} is truncated or corrupt ({why}). Delete it"
            f"{' so that torchvision downloads it again' if download else ' and run with dataset.download=true'}"
            f", or copy a good one there. {FIX}"
        )
    folder = spec.folder(root)
    missing = [name for name, _ in spec.files() if not (folder / name).is_file()]
    if not missing:  # every file is there and parses: show torchvision's own complaint
        return DataError(
            f"dataset={spec.key}: torchvision could not load the files in {folder}: "
            f"{type(err).__name__}: {one_line(err)}. {FIX}"
        )
    names = [name for name, _ in spec.files()]
    alt = "; each may be gzipped, X.gz" if spec.is_mnist else f"; or the official {spec.cls.filename} in the data root"
    what = "found none of its files" if len(missing) == len(names) else f"did not find {', '.join(missing)}"
    where = f"dataset={spec.key}: {what} in {folder} (data root {root}; it needs {', '.join(names)}{alt})."
    if download:
        tried = f"Tried to download them with torchvision from {', '.join(spec.sources())}: {one_line(err)}."
    else:
        tried = "Did not try to download them (dataset.download=false)."
    return DataError(f"{where} {tried} {FIX}")


def load_torchvision(
    name: str, root: str | os.PathLike = "data", download: bool = True, normalize: bool = True
) -> SourceData:
    """One of mnist, fashion_mnist, cifar10, cifar100: from the cache, else through torchvision
    (downloading when `download` and the files are missing), then cached."""
    if name not in SPECS:
        raise DataError(f"dataset={name!r} is not one of {', '.join(SPECS)}")
    spec = SPECS[name]
    root = resolve_root(root)
    cache = root / CACHE_DIR / f"{name}.pt"
    d = _read_cache(spec, root, cache)
    if d is None:
        # downloads are serialised; without them, racing decoders each replace the cache atomically
        with file_lock(root / CACHE_DIR / f".{name}.lock") if download else contextlib.nullcontext():
            d = _read_cache(spec, root, cache)  # another process may have built it meanwhile
            if d is None:
                _unpack_gz(spec, root)
                try:
                    train = spec.cls(str(root), train=True, download=download)
                    test = spec.cls(str(root), train=False, download=download)
                except Exception as err:  # noqa: BLE001 - torchvision raises RuntimeError, URLError, OSError…
                    raise _failure(spec, root, download, err) from err
                (x_train, y_train), (x_test, y_test) = _to_uint8(train), _to_uint8(test)
                d = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
                _write_cache(spec, root, cache, d)
    x_train, x_test = d["x_train"], d["x_test"]
    if normalize:
        mean, std = channel_stats(x_train)
        x_train, x_test = standardise(x_train, mean, std), standardise(x_test, mean, std)
    else:  # [0, 1]
        x_train, x_test = x_train.float().div_(255.0), x_test.float().div_(255.0)
    return SourceData(name, x_train, d["y_train"], x_test, d["y_test"], spec.n_classes)


def load_mnist(root: str | os.PathLike = "data", download: bool = True, normalize: bool = True,
        name: str = "mnist", n_classes: int | None = None) -> SourceData:
    """MNIST: 60,000 + 10,000 grey 28×28 digits, as 1×28×28 images."""
    return declared(load_torchvision("mnist", root, download, normalize), name, n_classes)


def load_fashion_mnist(root: str | os.PathLike = "data", download: bool = True, normalize: bool = True,
        name: str = "fashion_mnist", n_classes: int | None = None) -> SourceData:
    """Fashion-MNIST: 60,000 + 10,000 grey 28×28 clothing images of 10 classes."""
    return declared(load_torchvision("fashion_mnist", root, download, normalize), name, n_classes)


def load_cifar10(root: str | os.PathLike = "data", download: bool = True, normalize: bool = True,
        name: str = "cifar10", n_classes: int | None = None) -> SourceData:
    """CIFAR-10: 50,000 + 10,000 colour 32×32 images of 10 classes, as 3×32×32."""
    return declared(load_torchvision("cifar10", root, download, normalize), name, n_classes)


def load_cifar100(root: str | os.PathLike = "data", download: bool = True, normalize: bool = True,
        name: str = "cifar100", n_classes: int | None = None) -> SourceData:
    """CIFAR-100: 50,000 + 10,000 colour 32×32 images of 100 (fine) classes, as 3×32×32."""
    return declared(load_torchvision("cifar100", root, download, normalize), name, n_classes)
