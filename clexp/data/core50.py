"""CORe50 (Lomonaco & Maltoni 2017): 50 household objects of 10 categories, filmed in 11 sessions
(different backgrounds and lighting), 164,866 RGB frames at 128×128 (and a 32×32 version).

Its standard protocols are the experiences of `scenario=protocol` (`SourceData.protocol`):

=========  =====================================================  ===================  ===========
protocol   experiences                                            incremental          test set
=========  =====================================================  ===================  ===========
ni         the 8 training sessions (s1 s2 s4 s5 s6 s8 s9 s11)     domain               complete
nc         9 batches of objects: 10 (one per category), then 8×5  class (or task)      per batch
nic        79 batches of new objects and new sessions             class                complete
nicv2_79   NICv2 (Lomonaco et al. 2019): 79, 196 or 391 batches;  class                complete
nicv2_196  the first holds 10 objects (3,000 images), each later
nicv2_391  one new sessions of old objects or new objects
=========  =====================================================  ===================  ===========

The test set is the held-out sessions s3, s7 and s10 (44,972 frames). `run` (0..9) picks one of the
ten official orders. The experiences come from the official batch file lists
(`batches_filelists/{NI,NC,NIC}_inc/run<r>/train_batch_XX_filelist.txt`, `NIC_v2_<n>/run<r>/…`) when
they are there, else from `LUP.pkl` + `paths.pkl`; NI and NC can also be built from the folder
layout alone (the official construction of Lomonaco's `create_sI/sII_filelist.py`; run 0 in the
natural order, other runs seeded orders — not the official ones, which a warning says). Labels are
read from the paths (`o<k>` → object k−1; `categories=true`: category (k−1)//5), so the objects
keep one label in every protocol and run (the lists' per-run label remapping is not needed).

Files (md5-checked after download and before unpacking), in `root` (default <data root>/core50):
the images (`core50_128x128.zip` → `core50_128x128/s<i>/o<k>/C_<ii>_<kk>_<fff>.png`, or, with
`resolution=32`, `core50_32x32.zip` → `core50_32x32/…`, the same frames downscaled, from ContinualAI's
server: see `IMAGES`), `batches_filelists.zip`, `batches_filelists_NICv2.zip`, `paths.pkl`,
`LUP.pkl`, `labels.pkl`. The pickles are read with an unpickler that builds only lists, dicts,
strings and numbers (and numpy arrays), never arbitrary objects.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch

from clexp.config.errors import ConfigError, check, check_choice, check_int
from clexp.data.base import DataError, Protocol, declared
from clexp.data.download import check_md5, ensure_unpacked, extract_zip, extracted_marker, fetch
from clexp.data.image_folder import build_decoding, check_loader_options, finish_source, parse_image_size
from clexp.data.images import read_headers
from clexp.data.torchvision_sources import resolve_root

SITE = "https://vlomonaco.github.io/core50"
# (folder, archive, URL, md5). The 128×128 archive and the metadata: the official addresses of the CORe50
# site (vlomonaco.github.io/core50); md5s as Avalanche checks them (ContinualAI/avalanche,
# avalanche/benchmarks/datasets/core50/core50_data.py, `data`). The 32×32 archive is not on the site: it is
# ContinualAI's copy, the one Avalanche downloads for CORe50(mini=True), with the md5 Avalanche publishes
# for it (same file, `extra_data`).
IMAGES = {
    128: ("core50_128x128", "core50_128x128.zip",
          "http://bias.csr.unibo.it/maltoni/download/core50/core50_128x128.zip", "745f3373fed08d69343f1058ee559e13"),
    32: ("core50_32x32", "core50_32x32.zip",
         "http://vps.continualai.org/data/core50_32x32.zip", "d89d34cdc0281fa84074430e9a22b728"),
}
META = {
    "batches_filelists.zip": (f"{SITE}/data/batches_filelists.zip", "e3297508a8998ba0c99a83d6b36bde62"),
    "batches_filelists_NICv2.zip": (f"{SITE}/data/batches_filelists_NICv2.zip", "460f980a6c85b86b1ec8e7c6067bb7a3"),
    "paths.pkl": (f"{SITE}/data/paths.pkl", "b568f86998849184df3ec3465290f1b0"),
    "LUP.pkl": (f"{SITE}/data/LUP.pkl", "33afc26faa460aca98739137fdfa606e"),
    "labels.pkl": (f"{SITE}/data/labels.pkl", "281c95774306a2196f4505f22fd60ab1"),
}
N_BATCHES = {"ni": 8, "nc": 9, "nic": 79, "nicv2_79": 79, "nicv2_196": 196, "nicv2_391": 391}
LIST_DIRS = {"ni": ["batches_filelists/NI_inc"], "nc": ["batches_filelists/NC_inc"],
             "nic": ["batches_filelists/NIC_inc"],
             **{p: [f"NIC_v2_{p[6:]}", f"batches_filelists/NIC_v2_{p[6:]}"] for p in ("nicv2_79", "nicv2_196",
                                                                                     "nicv2_391")}}
LIST_ARCHIVE = {p: "batches_filelists.zip" if p in ("ni", "nc", "nic") else "batches_filelists_NICv2.zip"
                for p in N_BATCHES}
TRAIN_SESSIONS = (1, 2, 4, 5, 6, 8, 9, 11)
TEST_SESSIONS = (3, 7, 10)
N_OBJECTS, N_SESSIONS = 50, 11
_PATH = re.compile(r"(?:^|/)s(\d+)/o(\d+)/[^/]+$")
WHAT = "dataset=core50"


def how_to_get(root: Path, resolution: int) -> str:
    folder, archive, url, _ = IMAGES[resolution]
    return (f"Get them: download {url} (and the batch lists {META['batches_filelists.zip'][0]}, "
            f"{META['batches_filelists_NICv2.zip'][0]}) into {root}, or point clexp to a folder holding core50/ "
            f"with paths.data_dir=... (see {SITE})")


def object_of(path: str, where: str) -> tuple[int, int]:
    """(session, object) of a path `s<i>/o<k>/<file>` (1-based)."""
    m = _PATH.search(path.replace("\\", "/"))
    if not m:
        raise DataError(f"{WHAT}: {where} names {path!r}; expected paths s<session>/o<object>/<frame>.png")
    return int(m.group(1)), int(m.group(2))


# ------------------------------------------------------------------------------ the official files


class _SafeUnpickler(pickle.Unpickler):
    """Builds the containers and numbers of CORe50's pickles, numpy arrays included; nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("builtins", "set"), ("__builtin__", "set"),
               ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to build {module}.{name}")


def read_pickle(path: Path):
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="latin1").load()
    except Exception as err:  # noqa: BLE001 - truncated, not a pickle, unexpected contents
        raise DataError(f"{WHAT}: {path} cannot be read ({type(err).__name__}: {str(err)[:160]}); expected the "
                        f"official file from {META[path.name][0] if path.name in META else SITE}") from None


def fetch_meta(root: Path, names: list[str], download: bool) -> list[str]:
    """Download the missing official files among `names` (zips unpacked); return why each that is
    still missing is missing. After a download that fails (offline, the site down) the others are
    not tried: they come from the same site."""
    failures: list[str] = []
    for name in names:
        if download and not (root / name).exists() and any(f.startswith("downloading ") for f in failures):
            failures.append(f"{name} was not tried (the download before it failed)")
            continue
        path = root / name
        url, md5 = META[name]
        zipped = name.endswith(".zip")
        if zipped and path.exists() and extracted_marker(path).exists():
            continue
        if not path.exists():
            if not download:
                failures.append(f"{name} is not in {root}")
                continue
            try:
                fetch(url, path, md5)
            except DataError as err:
                failures.append(str(err))
                continue
        elif zipped:
            check_md5(path, md5, url)
        if zipped:
            extract_zip(path, root)
    return failures


# ------------------------------------------------------------------------------ protocols


def from_lists(root: Path, protocol: str, run: int) -> tuple[list[list[str]], list[str], str] | None:
    """(train paths per batch, test paths, where) from the official file lists, or None."""
    for rel in LIST_DIRS[protocol]:
        folder = root / rel / f"run{run}"
        if not folder.is_dir():
            continue
        files = [folder / f"train_batch_{b:02d}_filelist.txt" for b in range(N_BATCHES[protocol])]
        files.append(folder / "test_filelist.txt")
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise DataError(f"{WHAT}: {folder} lacks {missing[0].name} ({len(missing)} of the {len(files)} lists of "
                            f"{protocol} are missing); expected the official lists (unzip {LIST_ARCHIVE[protocol]} "
                            f"from {SITE} into {root} again)")
        lists = []
        for f in files:
            paths = []
            for line in f.read_text().splitlines():
                if line.strip():
                    paths.append(line.split()[0])
            if not paths:
                raise DataError(f"{WHAT}: the list {f} is empty; expected one 'path label' line per image")
            lists.append(paths)
        return lists[:-1], lists[-1], f"the official lists in {folder}"
    return None


def from_lup(root: Path, protocol: str, run: int) -> tuple[list[list[str]], list[str], str] | None:
    """(train paths per batch, test paths, where) from LUP.pkl + paths.pkl, or None."""
    lup_file, paths_file = root / "LUP.pkl", root / "paths.pkl"
    if not (lup_file.is_file() and paths_file.is_file()):
        return None
    lup, paths = read_pickle(lup_file), read_pickle(paths_file)
    try:
        batches = lup[protocol][run]
    except (KeyError, IndexError, TypeError):
        raise DataError(f"{WHAT}: {lup_file} has no run {run} of {protocol}; expected the official LUP.pkl "
                        f"({META['LUP.pkl'][0]})") from None
    if len(batches) != N_BATCHES[protocol] + 1:
        raise DataError(f"{WHAT}: {lup_file} holds {len(batches)} lists for {protocol} run {run}, expected "
                        f"{N_BATCHES[protocol]} training batches and the test set")
    labels_file = root / "labels.pkl"
    if labels_file.is_file():  # the labels' lists must match the index lists one to one
        labels = read_pickle(labels_file)
        try:
            sizes = [len(b) for b in labels[protocol][run]]
        except (KeyError, IndexError, TypeError):
            raise DataError(f"{WHAT}: {labels_file} has no run {run} of {protocol}") from None
        if sizes != [len(b) for b in batches]:
            raise DataError(f"{WHAT}: {labels_file} and {lup_file} disagree on the sizes of the batches of "
                            f"{protocol} run {run}; expected the official files")
    try:
        lists = [[str(paths[int(i)]) for i in b] for b in batches]
    except (IndexError, ValueError, TypeError):
        raise DataError(f"{WHAT}: {lup_file} points past the {len(paths)} entries of {paths_file}") from None
    return lists[:-1], lists[-1], f"{lup_file} and {paths_file}"


def from_layout(images: Path, protocol: str, run: int) -> tuple[list[list[str]], list[str], str]:
    """NI or NC built from the folder layout, as the official scripts build them (the batch contents);
    run 0: the natural order, other runs: an order drawn from the run."""
    by_session: dict[int, list[str]] = {}
    for s in range(1, N_SESSIONS + 1):
        for o in range(1, N_OBJECTS + 1):
            folder = images / f"s{s}" / f"o{o}"
            if not folder.is_dir():
                raise DataError(f"{WHAT}: the folder {folder} does not exist; expected the layout of "
                                f"{images.name} (s1..s11/o1..o50/*.png)")
            frames = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".png")
            if not frames:
                raise DataError(f"{WHAT}: the folder {folder} holds no images; expected .png frames")
            by_session.setdefault(s, []).extend(f"s{s}/o{o}/{f}" for f in frames)

    def order(n: int) -> list[int]:
        if run == 0:
            return list(range(n))
        return torch.randperm(n, generator=torch.Generator().manual_seed(run)).tolist()

    test = [p for s in TEST_SESSIONS for p in by_session[s]]
    train_all = [p for s in TRAIN_SESSIONS for p in by_session[s]]
    if protocol == "ni":
        sessions = [TRAIN_SESSIONS[i] for i in order(len(TRAIN_SESSIONS))]
        batches = [by_session[s] for s in sessions]
    else:  # nc: the first batch one object of each category, then 8 batches of 5 (create_sII_filelist.py)
        objs = [[i * 5 for i in range(10)]]
        for b in range(1, 9):
            k = (b + 1) // 2  # Python 2's round(b / 2.0), as the official script ran
            objs.append([i * 5 + k for i in (range(5) if b % 2 else range(5, 10))])
        objs = [objs[0]] + [objs[1 + i] for i in order(8)]
        obj = {p: object_of(p, str(images))[1] - 1 for p in train_all}
        batches = [[p for p in train_all if obj[p] in set(group)] for group in objs]
    return batches, test, f"the folder layout of {images}"


def load_core50(
    root: str = "data/core50",
    download: bool = True,
    resolution: int = 128,
    protocol: str = "ni",
    run: int = 0,
    categories: bool = False,
    image_size=None,
    normalize: bool = True,
    mean=None,
    std=None,
    stats_samples: int = 2000,
    in_memory="auto",
    memory_budget_gb: float = 4.0,
    workers: int = 4,
    check_images: bool = True,
    name: str = "core50",
    n_classes: int | None = None,
):
    """CORe50's images and the experiences of `protocol` / `run` as a SourceData (see the module doc)."""
    check_choice("resolution", resolution, tuple(IMAGES))
    check_choice("protocol", protocol, tuple(N_BATCHES))
    check_int("run", run, low=0)
    check(run <= 9, "run", run, "one of the 10 official runs, 0..9")
    check_loader_options(in_memory, memory_budget_gb, workers, stats_samples)
    size = parse_image_size(image_size)
    root_dir = resolve_root(root)
    folder, archive, url, md5 = IMAGES[resolution]
    images = root_dir / folder
    why = ensure_unpacked(images, root_dir / archive, url, md5, bool(download))
    if why is not None:
        raise DataError(f"{WHAT}: {why}. {how_to_get(root_dir, resolution)}")

    found = from_lists(root_dir, protocol, run) or from_lup(root_dir, protocol, run)
    if found is None:
        failures = fetch_meta(root_dir, [LIST_ARCHIVE[protocol], "paths.pkl", "LUP.pkl", "labels.pkl"], bool(download))
        found = from_lists(root_dir, protocol, run) or from_lup(root_dir, protocol, run)
        if found is None:
            if protocol not in ("ni", "nc"):
                raise DataError(f"{WHAT}: protocol {protocol} needs the official batch lists and found none in "
                                f"{root_dir} ({'; '.join(failures)}). Get them: download "
                                f"{META[LIST_ARCHIVE[protocol]][0]} into {root_dir} and unzip it there")
            found = from_layout(images, protocol, run)
            if download and failures:  # say what was asked for, what failed, and what is used instead
                print(f"{WHAT}: the official batch lists could not be downloaded ({failures[0]}); the {protocol} "
                      f"experiences are built from the folder layout of {images} instead")
            if run != 0:
                warnings.warn(f"{WHAT}: no official batch lists in {root_dir}: run {run} of {protocol} is built "
                              f"from the folder layout with an order drawn from the run, not the official one "
                              f"(download {META[LIST_ARCHIVE[protocol]][0]} for it)", stacklevel=2)
    batches, test, source = found

    where = source
    train_paths = [p for b in batches for p in b]
    for p in train_paths + test:
        if not (images / p).is_file():
            raise DataError(f"{WHAT}: {where} name {p}, which is not in {images}; expected every image of the "
                            f"official {archive} (delete {images} to unpack it again)")
    div = 5 if categories else 1
    labels = {p: (object_of(p, where)[1] - 1) // div for p in train_paths + test}
    y_train = torch.tensor([labels[p] for p in train_paths], dtype=torch.int64)
    y_test = torch.tensor([labels[p] for p in test], dtype=torch.int64)
    starts = torch.tensor([0] + [len(b) for b in batches]).cumsum(0)
    groups = [torch.arange(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
    if any(len(g) == 0 for g in groups):
        raise DataError(f"{WHAT}: {where} give an empty training batch; expected images in every batch")
    abs_train = [str(images / p) for p in train_paths]
    abs_test = [str(images / p) for p in test]
    headers = read_headers(abs_train + abs_test) if check_images else []
    # the images must be at the resolution asked for, unless dataset.image_size resizes them
    decoding = build_decoding(abs_train, headers, size or (resolution, resolution), 3, False, normalize, mean, std,
                              stats_samples, WHAT, resize=size is not None)
    C = 10 if categories else N_OBJECTS
    what = (f"{WHAT} {resolution}×{resolution}, {protocol} run {run} ({len(batches)} experiences from {source}): "
            f"{len(train_paths):,} training and {len(test):,} test images, {C} classes")
    data = finish_source(name, images, train_paths, y_train, test, y_test, C, decoding, in_memory,
                         memory_budget_gb, workers, what,
                         protocol=Protocol(protocol, groups, f"{protocol} run {run} from {source}"))
    if n_classes is not None and int(n_classes) != C:
        raise ConfigError("n_classes", n_classes, f"{C} (dataset.categories={bool(categories)})")
    return declared(data, None, None)
