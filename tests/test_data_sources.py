"""Dataset sources on tiny files in the real on-disk formats, through the real loading code.

No test touches the network: `urllib.request.urlopen` fails at once for the whole module, so
torchvision's real download code runs and fails as it would offline, without waiting on timeouts.
"""

import gzip
import hashlib
import pickle
import struct
import urllib.request
from urllib.error import URLError

import numpy as np
import pytest
import torch

from clexp.data import torchvision_sources as tvs
from clexp.data.arrays import load_arrays, mnist_t10k_arrays, read_idx
from clexp.data.base import DataError
from clexp.data.stream import build_split
from clexp.data.torchvision_sources import (
    channel_stats,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_mnist,
    load_torchvision,
    resolve_root,
)
from tests.conftest import clexp_cli


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every download fails at once with the error urllib raises without a network."""

    def fail(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", fail)


# ---------------------------------------------------------------- files in the real formats


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path, array: np.ndarray):
    path.write_bytes(idx_bytes(array))


def mnist_arrays(n_train=40, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }


def tiny_mnist(root, folder="MNIST", gz=False, **kwargs):
    """root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], as torchvision lays them out."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = mnist_arrays(**kwargs)
    for name, a in arrays.items():
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(a)))
        else:
            write_idx(raw / name, a)
    return raw, arrays


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def tiny_cifar(root, hundred=False, n=30, monkeypatch=None):
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (or cifar-100-python/
    {train, test, meta}) as pickled dicts. With `monkeypatch`, the class's md5 lists are set to these
    files' checksums, so torchvision's own integrity check and parser both run on them."""
    from torchvision import datasets

    cls = datasets.CIFAR100 if hundred else datasets.CIFAR10
    rng = np.random.default_rng(1)
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    key = "fine_labels" if hundred else "labels"
    n_classes = 100 if hundred else 10
    batches = {}
    for i, (name, _) in enumerate(cls.train_list + cls.test_list):
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: [(i + j) % n_classes for j in range(n)]}
        if hundred:
            batch["coarse_labels"] = [j % 20 for j in range(n)]
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
        batches[name] = batch
    with open(folder / cls.meta["filename"], "wb") as f:
        pickle.dump({cls.meta["key"]: [f"c{i}" for i in range(n_classes)]}, f)
    if monkeypatch is not None:
        monkeypatch.setattr(cls, "train_list", [[name, md5(folder / name)] for name, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[name, md5(folder / name)] for name, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / cls.meta["filename"])})
    return folder, batches


@pytest.fixture
def no_md5(monkeypatch):
    """Every md5 check passes (tiny files cannot match the official checksums); torchvision's checks
    that the files exist, and its parsers, still run. For callers that cannot patch the md5 lists."""
    monkeypatch.setattr("torchvision.datasets.utils.check_md5", lambda *args, **kwargs: True)


# ---------------------------------------------------------------- MNIST, Fashion-MNIST


@pytest.mark.parametrize(
    "loader,name,folder", [(load_mnist, "mnist", "MNIST"), (load_fashion_mnist, "fashion_mnist", "FashionMNIST")]
)
def test_mnist_like_loads_normalises_and_caches(tmp_path, monkeypatch, loader, name, folder):
    raw, arrays = tiny_mnist(tmp_path, folder)
    d = loader(tmp_path, download=True)  # files present: torchvision does not download
    assert d.name == name and d.n_classes == 10 and d.input_shape == (1, 28, 28)
    assert d.x_train.shape == (40, 1, 28, 28) and d.x_test.shape == (20, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64 and d.y_test.dtype == torch.int64
    assert d.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert d.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert abs(float(d.x_train.mean())) < 1e-5 and abs(float(d.x_train.std()) - 1) < 1e-4
    # the pixels themselves, standardised with the train statistics
    px = torch.tensor(arrays["train-images-idx3-ubyte"], dtype=torch.float64)
    expected = (torch.tensor(arrays["t10k-images-idx3-ubyte"], dtype=torch.float64) - px.mean()) / px.std()
    assert torch.allclose(d.x_test[:, 0].double(), expected, atol=1e-5)

    cache = tmp_path / "clexp-cache" / f"{name}.pt"
    stored = torch.load(cache, weights_only=True)
    assert stored["x_train"].dtype == torch.uint8 and stored["x_train"].shape == (40, 1, 28, 28)

    # the second load reads the cache only: torchvision's class is never called
    def boom(*args, **kwargs):
        raise AssertionError("torchvision was called although the cache exists")

    monkeypatch.setattr(f"torchvision.datasets.{folder}.__init__", boom)
    again = loader(tmp_path, download=False)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)
    for f in raw.iterdir():  # and works without the raw files at all
        f.unlink()
    assert torch.equal(loader(tmp_path, download=False).x_test, d.x_test)


def test_cache_is_rebuilt_when_the_raw_files_change(tmp_path):
    raw, _ = tiny_mnist(tmp_path)
    first = load_mnist(tmp_path)
    for name, a in mnist_arrays(n_train=50, seed=1).items():  # new files of other sizes
        write_idx(raw / name, a)
    second = load_mnist(tmp_path)
    assert len(first.y_train) == 40 and len(second.y_train) == 50


def test_broken_cache_is_rebuilt_with_a_warning(tmp_path):
    tiny_mnist(tmp_path)
    first = load_mnist(tmp_path)
    cache = tmp_path / "clexp-cache" / "mnist.pt"
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = load_mnist(tmp_path)
    assert torch.equal(again.x_train, first.x_train)
    torch.load(cache, weights_only=True)  # written again, whole


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    tiny_mnist(tmp_path)

    def read_only(*args, **kwargs):
        raise PermissionError("[Errno 13] Permission denied")

    monkeypatch.setattr("clexp.data.atomic.save_atomic", read_only)
    with pytest.warns(UserWarning, match="could not write the cache"):
        d = load_mnist(tmp_path)
    assert d.x_train.shape == (40, 1, 28, 28)


def test_mnist_from_gz_files_only(tmp_path):
    """Copied .gz files (not the official ones: their md5 differs) are unpacked without a download."""
    raw, arrays = tiny_mnist(tmp_path, gz=True)
    d = load_mnist(tmp_path, download=False)
    assert d.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert (raw / "train-images-idx3-ubyte").is_file()


def test_unnormalised_images_lie_in_unit_interval(tmp_path):
    _, arrays = tiny_mnist(tmp_path)
    d = load_mnist(tmp_path, normalize=False)
    assert torch.equal(d.x_train[:, 0] * 255, torch.tensor(arrays["train-images-idx3-ubyte"], dtype=torch.float32))


def test_channel_stats_are_exact():
    x = torch.randint(0, 256, (50, 3, 7, 7), dtype=torch.uint8)
    mean, std = channel_stats(x)
    xd = x.double()
    assert torch.allclose(mean, xd.mean(dim=(0, 2, 3)), atol=1e-10)
    assert torch.allclose(std, xd.transpose(0, 1).reshape(3, -1).std(dim=1), atol=1e-10)


# ---------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_loads_from_pickled_batches(tmp_path, monkeypatch, hundred):
    _, batches = tiny_cifar(tmp_path, hundred, monkeypatch=monkeypatch)
    load = load_cifar100 if hundred else load_cifar10
    d = load(tmp_path, download=False)
    n_train = 30 if hundred else 150
    assert d.x_train.shape == (n_train, 3, 32, 32) and d.x_test.shape == (30, 3, 32, 32)
    assert d.n_classes == (100 if hundred else 10) and d.y_train.dtype == torch.int64
    key = "fine_labels" if hundred else "labels"
    train_names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    assert d.y_train.tolist() == sum((batches[n][key] for n in train_names), [])
    per_channel = d.x_train.transpose(0, 1).reshape(3, -1)
    assert per_channel.mean(dim=1).abs().max() < 1e-5 and (per_channel.std(dim=1) - 1).abs().max() < 1e-4
    # channel order: CIFAR rows hold 1024 red, then 1024 green, then 1024 blue values
    raw = load(tmp_path, download=False, normalize=False)
    test_name = "test" if hundred else "test_batch"
    expected = torch.tensor(batches[test_name]["data"].reshape(-1, 3, 32, 32), dtype=torch.float32) / 255
    assert torch.allclose(raw.x_test, expected)


def test_cifar_tiny_files_fail_the_official_checksums(tmp_path, monkeypatch):
    """Without the patched md5 lists torchvision rejects the files, and the error names one."""
    tiny_cifar(tmp_path)
    with pytest.raises(DataError, match=r"data_batch_1 is truncated or corrupt \(its md5"):
        load_cifar10(tmp_path, download=False)


def test_no_md5_fixture_lets_tiny_cifar_files_through(tmp_path, no_md5):
    tiny_cifar(tmp_path, hundred=True, n=100)
    assert load_cifar100(tmp_path, download=False).x_train.shape == (100, 3, 32, 32)


def test_corrupt_cifar_batch_is_named(tmp_path, monkeypatch):
    folder, _ = tiny_cifar(tmp_path, monkeypatch=monkeypatch)
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="data_batch_3 is truncated or corrupt") as err:
        load_cifar10(tmp_path, download=True)  # the download of a fresh copy fails offline
    assert str(folder / "data_batch_3") in str(err.value)


# ---------------------------------------------------------------- missing and corrupt files


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_missing_files_and_failed_download_give_one_clear_message(tmp_path, name):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_torchvision(name, root, download=True)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"dataset={name}:")
    assert str(root) in msg and "found none of its files in" in msg  # where it looked
    assert "download them with torchvision from http" in msg and "Name or service not known" in msg
    assert "paths.data_dir=" in msg and "CLEXP_DATA_DIR=" in msg and "dataset=digits" in msg  # the fix
    assert not (root / "clexp-cache" / f"{name}.pt").exists()


def test_missing_files_without_download(tmp_path):
    raw, _ = tiny_mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, download=False)
    msg = str(err.value)
    assert f"did not find t10k-labels-idx1-ubyte in {raw} (data root {tmp_path};" in msg
    assert "dataset.download=false" in msg and "paths.data_dir=" in msg


def test_corrupt_idx_file_is_named(tmp_path):
    raw, _ = tiny_mnist(tmp_path)
    broken = raw / "train-images-idx3-ubyte"
    broken.write_bytes(broken.read_bytes()[:500])
    with pytest.raises(DataError, match="train-images-idx3-ubyte is truncated or corrupt") as err:
        load_mnist(tmp_path, download=True)
    assert str(broken) in str(err.value)


def test_corrupt_gz_file_is_named(tmp_path):
    raw, _ = tiny_mnist(tmp_path, gz=True)
    broken = raw / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is truncated or corrupt"):
        load_mnist(tmp_path, download=False)
    assert not (raw / "t10k-images-idx3-ubyte").exists()  # no half-written file left behind


def test_relative_root_is_taken_from_the_launch_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_root("data") == tmp_path.resolve() / "data"
    monkeypatch.setattr("hydra.utils.get_original_cwd", lambda: str(tmp_path / "launch"))
    assert resolve_root("data") == tmp_path / "launch" / "data"
    assert resolve_root(tmp_path / "abs") == tmp_path / "abs"


def test_unknown_name():
    with pytest.raises(DataError, match="not one of"):
        load_torchvision("svhn", "data")


# ---------------------------------------------------------------- arrays files


def arrays(shape=(12, 5, 5), n_test=6):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.random(shape) * 10 + 3,
        "y_train": np.arange(shape[0]) % 4,
        "x_test": rng.random((n_test, *shape[1:])),
        "y_test": np.arange(n_test) % 4,
    }


def save(path, a):
    if path.suffix == ".npz":
        np.savez(path, **a)
    else:
        torch.save({k: torch.as_tensor(v) for k, v in a.items()}, path)
    return path


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
@pytest.mark.parametrize(
    "shape,expected,dims",
    [((12, 5, 5), (12, 1, 5, 5), (0, 2, 3)), ((12, 3, 5, 5), (12, 3, 5, 5), (0, 2, 3)), ((12, 7), (12, 7), (0,))],
)
def test_arrays_npz_and_pt(tmp_path, suffix, shape, expected, dims):
    a = arrays(shape)
    d = load_arrays(save(tmp_path / f"d{suffix}", a))
    assert tuple(d.x_train.shape) == expected and d.x_test.shape[1:] == d.x_train.shape[1:]
    assert d.name == "d" and d.n_classes == 4 and d.is_image == (len(expected) == 4)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.y_test.tolist() == a["y_test"].tolist()
    # per channel (images) or per feature (flat): mean 0, std 1 on the train set
    assert d.x_train.mean(dim=dims).abs().max() < 1e-5
    assert (d.x_train.std(dim=dims) - 1).abs().max() < 1e-4
    raw = load_arrays(tmp_path / f"d{suffix}", name="mine", normalize=False)
    assert raw.name == "mine" and torch.allclose(
        raw.x_test.reshape(6, -1), torch.tensor(a["x_test"]).float().reshape(6, -1)
    )


def test_arrays_accept_every_integer_label_form(tmp_path):
    a = arrays()
    a["y_train"] = a["y_train"].astype(np.uint8)[:, None]  # N×1
    a["y_test"] = a["y_test"].astype(np.float32)  # whole numbers stored as floats
    a["y_test"][0] = 6  # n_classes counts both splits
    d = load_arrays(save(tmp_path / "d.npz", a))
    assert d.y_train.shape == (12,) and d.n_classes == 7 and d.y_test.dtype == torch.int64


def test_arrays_constant_feature_is_only_centred(tmp_path):
    a = arrays((12, 3))
    a["x_train"][:, 1] = 5.0
    a["x_test"][:, 1] = 6.0
    d = load_arrays(save(tmp_path / "d.npz", a))
    assert torch.isfinite(d.x_test).all() and torch.allclose(d.x_test[:, 1], torch.ones(6))


def test_arrays_build_a_split_stream(tmp_path):
    d = load_arrays(save(tmp_path / "d.pt", arrays((12, 2, 4, 4))))
    stream = build_split(d, 2, "class")
    assert [e.classes for e in stream] == [[0, 1], [2, 3]] and stream.input_shape == (2, 4, 4)


def test_arrays_relative_path_from_launch_folder(tmp_path, monkeypatch):
    save(tmp_path / "d.npz", arrays())
    monkeypatch.chdir(tmp_path)
    assert load_arrays("d.npz").n_classes == 4


@pytest.mark.parametrize(
    "break_it,match",
    [
        (lambda a: a.pop("y_test"), "lacks y_test"),
        (lambda a: a.update(y_train=a["y_train"][:5]), "x_train has 12 rows but y_train has 5"),
        (lambda a: a.update(y_train=a["y_train"] + 0.5), "integer class labels"),
        (lambda a: a.update(y_train=a["y_train"] > 1), "not booleans"),
        (lambda a: a.update(y_test=a["y_test"] - 3), "negative labels"),
        (lambda a: a.update(y_test=np.eye(4)[a["y_test"]]), "one integer class label per row"),
        (lambda a: a.update(x_test=np.zeros((6, 4, 4))), "must differ in shape only in N"),
        (lambda a: a.update(x_train=np.zeros((12, 8, 8, 3)), x_test=np.zeros((6, 8, 8, 3))), "looks like N×H×W×C"),
        (lambda a: a.update(x_train=np.zeros((12, 1, 1, 5, 5))), "expected N×D"),
        (lambda a: a["x_train"].__setitem__((0, 0, 0), np.nan), "NaN"),
        (lambda a: a.update(x_train=a["x_train"][:0], y_train=a["y_train"][:0]), "x_train is empty"),
        (lambda a: a.update(y_train=np.array(["a"] * 12)), "not a numeric array"),
    ],
)
@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_arrays_errors_name_the_file(tmp_path, break_it, match, suffix):
    a = arrays()
    break_it(a)
    path = tmp_path / f"bad{suffix}"
    if suffix == ".pt":  # torch cannot hold strings: store what torch.save can
        if a.get("y_train") is not None and a["y_train"].dtype.kind == "U":
            torch.save({**{k: torch.as_tensor(v) for k, v in a.items() if k != "y_train"}, "y_train": ["a"] * 12}, path)
        else:
            save(path, a)
    else:
        np.savez(path, **a)
    with pytest.raises(DataError, match=match) as err:
        load_arrays(path)
    assert str(path) in str(err.value)


def test_arrays_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no file at .*absent.npz.*dataset.path="):
        load_arrays(tmp_path / "absent.npz")
    cases = {
        "torn.npz": b"PK\x03\x04 not really a zip",
        "torn.pt": b"PK\x03\x04 not really a zip",
        "text.pt": b"hello",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=f"{name} cannot be read"):
            load_arrays(tmp_path / name)
    good = save(tmp_path / "good.pt", arrays())
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match="cut.pt cannot be read, it is truncated or corrupt"):
        load_arrays(tmp_path / "cut.pt")
    good = save(tmp_path / "good.npz", arrays())
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match="cut.npz cannot be read"):
        load_arrays(tmp_path / "cut.npz")


def test_arrays_wrong_containers(tmp_path):
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(DataError, match="list.pt holds a list, not a dict"):
        load_arrays(tmp_path / "list.pt")
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(DataError, match="one.npz holds one array"):
        load_arrays(tmp_path / "one.npz")
    np.savez(tmp_path / "obj.npz", **{**arrays(), "x_train": np.array([object()] * 12)})
    with pytest.raises(DataError, match="obj.npz: x_train holds Python objects"):
        load_arrays(tmp_path / "obj.npz")
    (tmp_path / "d.csv").write_text("1,2\n")
    with pytest.raises(DataError, match=r"d.csv must be an .npz"):
        load_arrays(tmp_path / "d.csv")


# ---------------------------------------------------------------- IDX files, real MNIST test images


def test_idx_reader(tmp_path):
    a = np.arange(48).reshape(3, 4, 4)
    write_idx(tmp_path / "x-idx3-ubyte", a)
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte"), a)
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(a)))
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), a)
    (tmp_path / "y-idx3-ubyte").write_bytes((tmp_path / "x-idx3-ubyte").read_bytes()[:30])
    with pytest.raises(DataError, match="y-idx3-ubyte is truncated"):
        read_idx(tmp_path / "y-idx3-ubyte")
    (tmp_path / "z-idx3-ubyte").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="z-idx3-ubyte is not an IDX file"):
        read_idx(tmp_path / "z-idx3-ubyte")
    (tmp_path / "w.gz").write_bytes(gzip.compress(idx_bytes(a))[:20])
    with pytest.raises(DataError, match="w.gz cannot be read"):
        read_idx(tmp_path / "w.gz")


def test_mnist_t10k_arrays_on_tiny_idx_files(tmp_path):
    n = 100
    rng = np.random.default_rng(0)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(rng.integers(0, 256, (n, 28, 28)))))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(n) % 10)))
    path = mnist_t10k_arrays(tmp_path, tmp_path / "out" / "m.npz")
    d = load_arrays(path)
    assert len(d.y_train) == 80 and len(d.y_test) == 20 and d.input_shape == (1, 28, 28)
    assert torch.bincount(d.y_test, minlength=10).tolist() == [2] * 10  # stratified
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.npz"]  # no temporary file left
    with pytest.raises(DataError, match="no t10k-images-idx3-ubyte"):
        mnist_t10k_arrays(tmp_path / "out", tmp_path / "x.npz")


@pytest.mark.mnist
def test_real_mnist_t10k_as_arrays_gives_split_mnist(tmp_path, mnist_dir):
    path = mnist_t10k_arrays(mnist_dir, tmp_path / "mnist.npz")
    d = load_arrays(path, name="mnist-t10k")
    assert len(d.y_train) == 8000 and len(d.y_test) == 2000 and d.input_shape == (1, 28, 28)
    assert d.n_classes == 10 and abs(float(d.x_train.mean())) < 1e-5
    counts_train, counts_test = torch.bincount(d.y_train), torch.bincount(d.y_test)
    assert torch.allclose(counts_test.float() / 2000, counts_train.float() / 8000, atol=1e-3)  # stratified
    stream = build_split(d, 5, "class")
    assert [e.classes for e in stream] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert sum(len(e.y_train) for e in stream) == 8000 and sum(len(e.y_test) for e in stream) == 2000
    assert all(set(e.y_train.tolist()) == set(e.classes) for e in stream)


@pytest.mark.mnist
def test_real_mnist_gz_files_load_through_torchvision(tmp_path, mnist_dir):
    """The official t10k .gz files, laid out as torchvision expects, parse with torchvision's code
    (their md5 is the official one); tiny IDX files stand in for the 60,000 training images."""
    raw, _ = tiny_mnist(tmp_path)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).unlink()
        (raw / f"{name}.gz").write_bytes((mnist_dir / f"{name}.gz").read_bytes())
    d = load_mnist(tmp_path, download=True)
    assert d.x_test.shape == (10000, 1, 28, 28) and torch.bincount(d.y_test).min() > 800


# ---------------------------------------------------------------- through the CLI


@pytest.mark.slow
def test_cli_runs_on_tiny_mnist_files_and_stops_clearly_without_data(tmp_path):
    tiny_mnist(tmp_path / "data")
    out = clexp_cli(
        [
            "dataset=mnist",
            "paths.data_dir=data",
            "model=cnn",
            "model.channels=[4]",
            "model.hidden=[8]",
            "train.epochs=1",
            "logger=none",
            "trainer.enable_progress_bar=false",
            "scenario.n_experiences=2",
            "train.val_fraction=0",  # 4 training images per class: too few to hold any out
            "hydra.run.dir=run",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "data" / "clexp-cache" / "mnist.pt").is_file()  # relative to the launch folder
    missing = clexp_cli(
        ["dataset=mnist", "dataset.download=false", "paths.data_dir=empty", "logger=none", "hydra.run.dir=run2"],
        tmp_path,
    )
    assert missing.returncode == 2
    assert "dataset=mnist" in missing.stderr and "paths.data_dir" in missing.stderr
    assert str(tmp_path / "empty") in missing.stderr and "Traceback" not in missing.stderr


def test_module_exports():
    assert tvs.SPECS.keys() == {"mnist", "fashion_mnist", "cifar10", "cifar100"}
