"""Dataset sources on tiny files in the real on-disk formats, through the real loading code."""

import pickle
import struct
from urllib.error import URLError

import numpy as np
import pytest
import torch

from clexp.data.arrays import load_arrays, mnist_t10k_arrays, read_idx
from clexp.data.base import DataError
from clexp.data.torchvision_sources import load_torchvision
from clexp.stream import build_split
from tests.conftest import clexp_cli


def write_idx(path, array: np.ndarray):
    code = 0x08  # unsigned byte
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def tiny_mnist(root, folder="MNIST", n_train=40, n_test=20):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    return raw


def tiny_cifar(root, hundred=False, n=30):
    rng = np.random.default_rng(0)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    key = "fine_labels" if hundred else "labels"
    files = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    n_classes = 100 if hundred else 10
    for name in files:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: list(range(n % n_classes)) * 0 +
                 [i % n_classes for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    meta_name, meta_key = ("meta", "fine_label_names") if hundred else ("batches.meta", "label_names")
    with open(folder / meta_name, "wb") as f:
        pickle.dump({meta_key: [f"c{i}" for i in range(n_classes)]}, f)
    return folder


@pytest.fixture
def no_md5(monkeypatch):
    """Tiny CIFAR files cannot match the official checksums; the parsing code stays the real one."""
    from torchvision.datasets import cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)


@pytest.fixture
def offline(monkeypatch):
    """Downloads fail at once, as without a network (torchvision's own retry loop still runs)."""
    from torchvision.datasets import mnist

    def fail(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(mnist, "download_and_extract_archive", fail)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_loads_normalises_and_caches(tmp_path, name, folder, offline):
    raw = tiny_mnist(tmp_path, folder)
    d = load_torchvision(name, tmp_path, download=True)
    assert d.x_train.shape == (40, 1, 28, 28) and d.x_test.shape == (20, 1, 28, 28)
    assert d.y_train.dtype == torch.int64 and d.y_train.tolist() == [i % 10 for i in range(40)]
    assert abs(d.x_train.mean()) < 1e-5 and abs(d.x_train.std() - 1) < 1e-3
    assert (tmp_path / "clexp-cache" / f"{name}.pt").exists()
    for f in raw.iterdir():  # the second load needs the cache only
        f.unlink()
    again = load_torchvision(name, tmp_path, download=False)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_loads_from_pickled_batches(tmp_path, hundred, no_md5):
    tiny_cifar(tmp_path, hundred)
    d = load_torchvision("cifar100" if hundred else "cifar10", tmp_path, download=False)
    assert d.x_train.shape == ((30 if hundred else 150), 3, 32, 32) and d.x_test.shape == (30, 3, 32, 32)
    assert d.n_classes == (100 if hundred else 10)
    per_channel = d.x_train.mean(dim=(0, 2, 3))
    assert per_channel.abs().max() < 1e-5


def test_missing_files_and_failed_download_give_one_clear_message(tmp_path, offline):
    with pytest.raises(DataError) as err:
        load_torchvision("mnist", tmp_path / "nowhere", download=True)
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "download" in msg
    assert "paths.data_dir" in msg and "dataset=digits" in msg


def test_corrupt_file_is_named(tmp_path, offline):
    raw = tiny_mnist(tmp_path)
    broken = raw / "train-images-idx3-ubyte"
    broken.write_bytes(broken.read_bytes()[:500])
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_torchvision("mnist", tmp_path, download=True)


def test_corrupt_cifar_batch_is_named(tmp_path, no_md5):
    folder = tiny_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_torchvision("cifar10", tmp_path, download=False)


def arrays(shape=(12, 5, 5)):
    rng = np.random.default_rng(0)
    return {"x_train": rng.random(shape), "y_train": np.arange(shape[0]) % 4,
            "x_test": rng.random((6, *shape[1:])), "y_test": np.arange(6) % 4}


@pytest.mark.parametrize("shape", [(12, 5, 5), (12, 3, 5, 5), (12, 7)])
def test_arrays_npz_and_pt(tmp_path, shape):
    a = arrays(shape)
    np.savez(tmp_path / "d.npz", **a)
    torch.save({k: torch.as_tensor(v) for k, v in a.items()}, tmp_path / "d.pt")
    for f in ("d.npz", "d.pt"):
        d = load_arrays(tmp_path / f)
        expected = (12, 1, 5, 5) if len(shape) == 3 else shape
        assert tuple(d.x_train.shape) == expected and d.n_classes == 4
        assert abs(float(d.x_train.mean())) < 1e-5


@pytest.mark.parametrize("break_it,match", [
    (lambda a: a.pop("y_test"), "lacks y_test"),
    (lambda a: a.update(y_train=a["y_train"][:5]), "12 rows but y_train has 5"),
    (lambda a: a.update(y_train=a["y_train"] + 0.5), "integer"),
    (lambda a: a.update(y_test=a["y_test"] - 3), "negative"),
    (lambda a: a.update(x_test=np.zeros((6, 4, 4))), "differ in shape"),
])
def test_arrays_errors_name_the_file(tmp_path, break_it, match):
    a = arrays()
    break_it(a)
    np.savez(tmp_path / "bad.npz", **a)
    with pytest.raises(DataError, match=match) as err:
        load_arrays(tmp_path / "bad.npz")
    assert "bad.npz" in str(err.value)


def test_arrays_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="no file"):
        load_arrays(tmp_path / "absent.npz")
    (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="torn.npz.*cannot be read"):
        load_arrays(tmp_path / "torn.npz")


def test_idx_reader_rejects_truncated_files(tmp_path):
    write_idx(tmp_path / "x-idx3-ubyte", np.zeros((3, 4, 4)))
    assert read_idx(tmp_path / "x-idx3-ubyte").shape == (3, 4, 4)
    (tmp_path / "y-idx3-ubyte").write_bytes((tmp_path / "x-idx3-ubyte").read_bytes()[:30])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "y-idx3-ubyte")


@pytest.mark.mnist
def test_real_mnist_t10k_as_arrays_gives_split_mnist(tmp_path, mnist_dir):
    path = mnist_t10k_arrays(mnist_dir, tmp_path / "mnist.npz")
    d = load_arrays(path, name="mnist-t10k")
    assert len(d.y_train) == 8000 and len(d.y_test) == 2000 and d.input_shape == (1, 28, 28)
    assert torch.bincount(d.y_test).min() >= 170  # stratified
    stream = build_split(d, 5, "class")
    assert [e.classes for e in stream] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert sum(len(e.y_train) for e in stream) == 8000


@pytest.mark.slow
def test_cli_runs_on_tiny_mnist_files_and_stops_clearly_without_data(tmp_path):
    tiny_mnist(tmp_path / "data")
    out = clexp_cli(["dataset=mnist", "paths.data_dir=data", "model=cnn", "model.channels=[4]", "model.hidden=[8]",
                     "train.epochs=1", "logger=none", "trainer.enable_progress_bar=false", "scenario.n_experiences=2",
                     "hydra.run.dir=run"], tmp_path)
    assert out.returncode == 0, out.stderr
    missing = clexp_cli(["dataset=mnist", "dataset.download=false", "paths.data_dir=empty", "logger=none",
                         "hydra.run.dir=run2"], tmp_path)
    assert missing.returncode == 2
    assert "dataset=mnist" in missing.stderr and "paths.data_dir" in missing.stderr and "Traceback" not in missing.stderr
