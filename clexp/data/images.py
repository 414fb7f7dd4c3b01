"""Images read from files: the lazy form of a dataset that does not fit in memory.

`ImageFiles` stands where an in-memory source has its input tensor (`SourceData.x_train`,
`Experience.x_test`, ...): it holds file paths, never pixels. Indexing it (a bool mask, index
tensor, slice) gives another `ImageFiles` over the selected files, so the scenarios split it by
class, carve validation splits and take subsets without decoding anything. Pixels appear only in
batches: `input_batches` (evaluation, importance estimation) and `clexp.data.loader.StreamingLoader`
(training) decode them in `DataLoader` worker processes, with one function, `Decoding.__call__`, that
the in-memory path (`materialise`) uses too — so both paths see bit-identical inputs.

The paths live in one numpy array of bytes (no Python object per file): forked workers share it
without copy-on-access, and the main process's memory stays flat in the dataset size.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch

from clexp.data.base import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# PIL mode → channels of the decoded array (a palette image decodes to RGB)
MODE_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "La": 2, "PA": 4, "P": 3, "RGB": 3,
                 "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "CMYK": 4}
CONVERT_TO = {1: "L", 3: "RGB"}


def is_lazy(x) -> bool:
    """True for inputs read from files (`ImageFiles`), False for tensors."""
    return isinstance(x, ImageFiles)


@dataclass(frozen=True)
class Decoding:
    """How a file becomes an input: C×H×W float32, (x/255 − mean)/std per channel.

    `convert`: images of another mode are converted to `channels` (L or RGB) instead of refused;
    `resize`: images of another size are resized (bilinear, antialiased) instead of refused;
    `prepare`: a function applied to each decoded input after that (a pretrained model's resize and
    normalisation, `with_prepare`), `prepared` the shape it gives.
    """

    size: tuple[int, int]  # H, W
    channels: int  # 1 or 3
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale (0 with normalize=false)
    std: tuple[float, ...]  # (1 with normalize=false)
    convert: bool = False
    resize: bool = False
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
    prepared: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.prepared if self.prepare is not None else (self.channels, *self.size)

    @property
    def unit_range(self) -> bool:
        """True when the decoded pixels are in [0, 1] (dataset.normalize=false: mean 0, std 1)."""
        return all(m == 0 for m in self.mean) and all(s == 1 for s in self.std)

    @property
    def nbytes(self) -> int:
        """Bytes of one decoded input (float32)."""
        return 4 * math.prod(self.shape)

    def pixels(self, path: str) -> np.ndarray:
        """The file's uint8 pixels H×W×C (C = `channels`); DataError naming the file when it cannot
        be decoded or has the wrong channels or size."""
        from PIL import Image

        try:
            with Image.open(path) as img:
                mode = img.mode
                if mode != CONVERT_TO[self.channels]:
                    if not self.convert and MODE_CHANNELS.get(mode) != self.channels:
                        raise DataError(f"the image {path} has {describe_mode(mode)}, expected {self.channels} "
                                        f"channel{'s' if self.channels > 1 else ''} like the others "
                                        f"(dataset.convert=true converts every image to {CONVERT_TO[self.channels]})")
                    img = img.convert(CONVERT_TO[self.channels])
                else:
                    img.load()
                h, w = self.size
                if img.size != (w, h):
                    if not self.resize:
                        raise DataError(f"the image {path} is {img.size[1]}×{img.size[0]}, expected {h}×{w} like "
                                        f"the others (set dataset.image_size=[H,W] to resize every image)")
                    img = img.resize((w, h), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError… for a bad file
            raise DataError(f"the image {path} cannot be decoded ({type(err).__name__}: {first_line(err)})") from None
        return arr.reshape(h, w, self.channels)

    def __call__(self, path: str) -> torch.Tensor:
        """The input of one file: C×H×W float32, normalised."""
        x = torch.from_numpy(self.pixels(path).transpose(2, 0, 1).copy()).to(torch.float32)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        x = x.div_(255.0).sub_(mean).div_(std)
        return x if self.prepare is None else self.prepare(x)


def describe_mode(mode: str) -> str:
    n = MODE_CHANNELS.get(mode)
    return f"{n} channel{'s' if n != 1 else ''} (mode {mode})" if n else f"the mode {mode}"


def first_line(err: BaseException, limit: int = 160) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Table:
    """The files of one dataset: a root and paths relative to it (bytes, one array), how to decode
    them, and how to read them (worker processes, pinned memory)."""

    def __init__(self, root: str, paths: Sequence[str], decoding: Decoding, workers: int = 0,
                 pin_memory: bool | None = None):
        self.root = str(root)
        self.paths = np.array([p.encode("utf-8") for p in paths], dtype=np.bytes_)
        self.decoding = decoding
        self.workers = int(workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.paths[i].decode("utf-8"))


class ImageFiles:
    """N image files read lazily: `len`, `shape` (N×C×H×W), `dim()`, indexing (→ ImageFiles),
    `path(i)`, `decode()`. Built by the image sources (`image_folder`, `core50`)."""

    def __init__(self, table: _Table, index: np.ndarray | None = None):
        self.table = table
        self.index = np.arange(len(table.paths), dtype=np.int64) if index is None else index.astype(np.int64)

    @classmethod
    def from_paths(cls, root: str, paths: Sequence[str], decoding: Decoding, workers: int = 0,
                   pin_memory: bool | None = None) -> ImageFiles:
        return cls(_Table(root, paths, decoding, workers, pin_memory))

    # -- the tensor-like surface the scenarios use -------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.table.decoding.shape))

    def dim(self) -> int:
        return 4

    @property
    def decoding(self) -> Decoding:
        return self.table.decoding

    def __getitem__(self, key) -> ImageFiles:
        if isinstance(key, torch.Tensor):
            key = key.detach().cpu().numpy()
        if isinstance(key, (int, np.integer)):
            key = [int(key)]
        return ImageFiles(self.table, self.index[key])

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files under {self.table.root}, inputs {tuple(self.shape[1:])})"

    @staticmethod
    def cat(parts: Sequence[ImageFiles]) -> ImageFiles:
        tables = {id(p.table) for p in parts}
        if len(tables) != 1:
            raise ValueError("ImageFiles.cat: the parts come from different datasets")
        return ImageFiles(parts[0].table, np.concatenate([p.index for p in parts]))

    # -- reading -------------------------------------------------------------------------------
    def path(self, i: int) -> str:
        """The file of input i."""
        return self.table.path(int(self.index[i]))

    def decode(self) -> torch.Tensor:
        """Every input, decoded in this process (small sets: one input for FLOP counting, tests)."""
        out = torch.empty(self.shape, dtype=torch.float32)
        for i in range(len(self)):
            out[i] = self.table.decoding(self.path(i))
        return out

    @property
    def nbytes(self) -> int:
        """Bytes the decoded inputs would take (float32)."""
        return len(self) * self.table.decoding.nbytes


def with_prepare(inputs: Sequence[ImageFiles], prepare: Callable[[torch.Tensor], torch.Tensor]) -> list[ImageFiles]:
    """`inputs` whose decoded inputs go through `prepare` too (in the worker processes, like the
    decoding): new views over copies of their tables, so the dataset's own files stay as they were;
    one object in `inputs` more than once (a shared test set) stays one object."""
    tables: dict[int, _Table] = {}
    views: dict[int, ImageFiles] = {}
    out = []
    for x in inputs:
        if id(x) not in views:
            old = x.table
            if id(old) not in tables:
                table = copy.copy(old)
                d = old.decoding
                shape = tuple(prepare(torch.zeros(d.channels, *d.size)).shape)
                table.decoding = replace(d, prepare=prepare, prepared=shape)
                tables[id(old)] = table
            views[id(x)] = ImageFiles(tables[id(old)], x.index)
        out.append(views[id(x)])
    return out


def cat_inputs(parts: Sequence) -> torch.Tensor | ImageFiles:
    """`torch.cat` of input tensors, or the concatenation of `ImageFiles` of one dataset."""
    if any(is_lazy(p) for p in parts):
        return ImageFiles.cat(parts)
    return torch.cat(list(parts))


def first_input(x) -> torch.Tensor:
    """The first input as a 1×… tensor (FLOP counting)."""
    return x[:1].decode() if is_lazy(x) else x[:1]


# ------------------------------------------------------------------------------ batches in workers


class BadImage:
    """What a worker returns instead of a batch when a file cannot be decoded: the main process
    raises a one-line DataError naming the file (never the worker's traceback)."""

    def __init__(self, message: str):
        self.message = message


class BatchReader(torch.utils.data.Dataset):
    """Map-style dataset whose items are whole batches: `reader[list of positions]` decodes those
    inputs (in a worker process) and returns `(x, *extras)` — extras being tensors indexed alike
    (labels, task ids) — or a `BadImage`."""

    def __init__(self, files: ImageFiles, extras: Sequence[torch.Tensor] = ()):
        self.files = files
        self.extras = tuple(e.cpu() for e in extras)
        # CPU per-sample augmentation would go here (a callable on each decoded C×H×W input, run in
        # the workers); clexp augments on the training device instead (dataset.augment), after the
        # batch arrives, so that both the in-memory and the streaming path share one augmentation.
        self.sample_transform = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, positions):
        positions = [int(p) for p in positions]
        decode, files = self.files.table.decoding, self.files
        x = torch.empty((len(positions), *decode.shape), dtype=torch.float32)
        try:
            for k, p in enumerate(positions):
                x[k] = decode(files.path(p))
                if self.sample_transform is not None:
                    x[k] = self.sample_transform(x[k])
        except DataError as err:
            return BadImage(str(err))
        sel = torch.tensor(positions, dtype=torch.int64)
        return (x, *(e[sel] for e in self.extras))


class Batches(torch.utils.data.Sampler):
    """The batches (lists of positions) of one pass; replaced before each pass (persistent workers
    re-read it at every `iter`)."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a SLURM or container allocation), as
    PyTorch's DataLoader counts them when it warns about too many workers."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform (macOS, Windows)
        return os.cpu_count() or 1


def worker_loader(reader: BatchReader, sampler: torch.utils.data.Sampler, workers: int, pin_memory: bool,
                  persistent: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over whole batches, with at most as many worker processes as this process may use
    cores (more only compete for them; the batches are the same whatever their number). Its own
    generator: creating its iterators never draws from the global torch RNG (dropout and every other
    seeded draw stay as on the in-memory path)."""
    workers = min(int(workers), usable_cores())
    return torch.utils.data.DataLoader(
        reader, sampler=sampler, batch_size=None, num_workers=workers,
        pin_memory=pin_memory, persistent_workers=persistent and workers > 0,
        prefetch_factor=2 if workers > 0 else None, generator=torch.Generator().manual_seed(0),
    )


def raise_bad(batch):
    if isinstance(batch, BadImage):
        raise DataError(batch.message)
    return batch


def input_batches(x, chunks: Iterable[torch.Tensor],
                  device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
    """The inputs `x[chunk]` for each index tensor of `chunks`, in order, on `device`: a tensor
    indexed, or files decoded in worker processes (`ImageFiles`, its dataset's `workers`)."""
    chunks = list(chunks)
    if not is_lazy(x):
        for c in chunks:
            xb = x[c.to(x.device)]
            yield xb if device is None else xb.to(device, non_blocking=True)
        return
    sampler = Batches()
    sampler.batches = [c.tolist() for c in chunks]
    table = x.table
    pin = table.pin_memory and device is not None and torch.device(device).type == "cuda"
    # one batch: decoded here (starting worker processes would cost more than they overlap)
    workers = 0 if len(chunks) <= 1 else min(table.workers, len(chunks))
    for batch in worker_loader(BatchReader(x), sampler, workers, pin):
        xb = raise_bad(batch)[0]
        yield xb if device is None else xb.to(device, non_blocking=True)


def materialise(x: ImageFiles, batch: int = 256) -> torch.Tensor:
    """Every input of `x` decoded into one float32 tensor (the in-memory path), in worker processes."""
    out = torch.empty(x.shape, dtype=torch.float32)
    positions = torch.arange(len(x))
    start = 0
    for xb in input_batches(x, positions.split(batch)):
        out[start : start + len(xb)] = xb
        start += len(xb)
    return out


# ------------------------------------------------------------------------------ checks before training


@dataclass(frozen=True)
class Header:
    path: str
    mode: str | None  # None: not an image
    size: tuple[int, int] | None  # W, H (PIL's order)
    problem: str | None  # why the file cannot be used


def read_header(path: str) -> Header:
    """The file's mode and size from its header (no pixels decoded), or what is wrong with it."""
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return Header(path, None, None, "is empty (0 bytes)")
        with Image.open(path) as img:
            return Header(path, img.mode, img.size, None)
    except UnidentifiedImageError:
        return Header(path, None, None, "is not an image PIL can read")
    except OSError as err:
        return Header(path, None, None, f"cannot be read ({type(err).__name__}: {first_line(err)})")
    except Exception as err:  # noqa: BLE001 - a malformed header
        return Header(path, None, None, f"cannot be read ({type(err).__name__}: {first_line(err)})")


def read_headers(paths: Sequence[str], threads: int = 8) -> list[Header]:
    """Headers of every file (threads: the reads are I/O)."""
    if len(paths) < 64:
        return [read_header(p) for p in paths]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(read_header, paths, chunksize=256))


def check_headers(headers: Sequence[Header], channels: int, size: tuple[int, int] | None, convert: bool,
                  what: str) -> None:
    """DataError naming the first file that is unusable, has other channels than `channels` (unless
    `convert`) or another size than `size` (H, W; None: resized anyway)."""
    for h in headers:
        if h.problem:
            raise DataError(f"{what}: the image {h.path} {h.problem}; expected an image file")
        n = MODE_CHANNELS.get(h.mode)
        if not convert and n != channels:
            raise DataError(f"{what}: the image {h.path} has {describe_mode(h.mode)}, expected {channels} "
                            f"channel{'s' if channels > 1 else ''} like the others "
                            f"(dataset.convert=true converts every image to {CONVERT_TO[channels]})")
        if size is not None and (h.size[1], h.size[0]) != tuple(size):
            raise DataError(f"{what}: the image {h.path} is {h.size[1]}×{h.size[0]}, expected {size[0]}×{size[1]} "
                            f"like the others (set dataset.image_size=[H,W] to resize every image)")


def channels_of(header: Header, what: str) -> int:
    n = MODE_CHANNELS.get(header.mode)
    if n not in CONVERT_TO:
        raise DataError(f"{what}: the image {header.path} has {describe_mode(header.mode)}; set dataset.channels=1 "
                        f"or 3 and dataset.convert=true to convert every image")
    return n


def estimate_stats(paths: Sequence[str], decoding: Decoding, samples: int, seed: int = 0) -> tuple[tuple, tuple]:
    """Per-channel mean and std (on the [0, 1] scale) of a seeded sample of `samples` training
    images (all of them when there are fewer): the normalisation of both paths."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(paths), generator=g)[: int(samples)].sort().values.tolist()
    raw = Decoding(decoding.size, decoding.channels, (0.0,) * decoding.channels, (1.0,) * decoding.channels,
                   decoding.convert, decoding.resize)
    c = decoding.channels
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    count = 0
    for i in pick:
        px = torch.tensor(raw.pixels(paths[i]).reshape(-1, c), dtype=torch.float64) / 255.0
        total += px.sum(0)
        squares += (px * px).sum(0)
        count += px.shape[0]
    mean = total / max(count, 1)
    var = (squares / max(count, 1) - mean * mean).clamp_min(0) * count / max(count - 1, 1)
    std = var.sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def choose_memory(in_memory, budget_gb: float, nbytes: int, what: str) -> bool:
    """`dataset.in_memory` (auto | true | false) → decode into tensors (True) or stream (False)."""
    choice = str(in_memory).lower() if not isinstance(in_memory, bool) else ("true" if in_memory else "false")
    if choice not in ("auto", "true", "false"):
        from clexp.config.errors import ConfigError

        raise ConfigError("in_memory", in_memory, "auto, true or false")
    resident = choice == "true" or (choice == "auto" and nbytes <= float(budget_gb) * 2**30)
    how = "decoded into memory" if resident else "streamed from the files by worker processes"
    print(f"{what}: {nbytes / 2**30:.2f} GB decoded, {how} (dataset.in_memory={choice}, "
          f"dataset.memory_budget_gb={budget_gb:g})")
    return resident
