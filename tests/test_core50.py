"""dataset=core50 on a small fake tree in CORe50's layout (s1..s11 / o1..o50, the official batch lists,
LUP.pkl / paths.pkl / labels.pkl): the protocols as scenarios, the download / checksum / unpack path
on a fake archive served from a file:// URL, and the one-line failures when files are missing."""

from __future__ import annotations

import hashlib
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from clexp.config.errors import ConfigError
from clexp.core import checkpoint
from clexp.data import core50
from clexp.data.base import DataError
from clexp.data.core50 import TEST_SESSIONS, TRAIN_SESSIONS, load_core50
from clexp.data.images import is_lazy
from clexp.data.protocol import Protocol
from tests.conftest import compose, run_stream
from tests.test_pretrained import R18_FILE, r18_state, torch_home  # noqa: F401 (fixtures)

FOLDER = "core50_32x32"


def frame(s: int, o: int) -> str:
    return f"s{s}/o{o}/C_{s:02d}_{o:02d}_000.png"


def write_tree(root, frames=1):
    """One (or `frames`) 32×32 frame per session and object; the colour tells the object."""
    rng = np.random.default_rng(0)
    for o in range(1, 51):
        colour = np.array([5 * o, 255 - 5 * o, (37 * o) % 256], dtype=np.float64)
        for s in range(1, 12):
            folder = root / FOLDER / f"s{s}" / f"o{o}"
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(frames):
                px = np.clip(colour + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(folder / f"C_{s:02d}_{o:02d}_{f:03d}.png")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("core50"))


def load(root, **kw):
    return load_core50(root, download=False, resolution=32, workers=0, **{"in_memory": False, **kw})


def test_ni_from_the_layout(tree):
    data = load(tree, protocol="ni")
    assert is_lazy(data.x_train) and data.input_shape == (3, 32, 32) and data.n_classes == 50
    groups = data.protocol.train
    assert len(groups) == 8 and all(len(g) == 50 for g in groups)
    sessions = [{data.x_train.path(int(i)).split("/")[-3] for i in g} for g in groups]
    assert sessions == [{f"s{s}"} for s in TRAIN_SESSIONS]  # run 0: the natural order
    assert all(torch.equal(torch.sort(data.y_train[g]).values, torch.arange(50)) for g in groups)
    assert len(data.y_test) == 150 and {data.x_test.path(i).split("/")[-3] for i in range(150)} == \
        {f"s{s}" for s in TEST_SESSIONS}
    stream = Protocol("domain")(data)
    assert len(stream) == 8 and stream.shared_test and stream.n_outputs == 50 and stream.incremental == "domain"
    assert all(e.x_test is data.x_test for e in stream)
    with pytest.raises(ConfigError, match="scenario.incremental"):
        Protocol("task")(data)


def test_nc_from_the_layout(tree):
    data = load(tree, protocol="nc", in_memory=True)
    assert not is_lazy(data.x_train)
    stream = Protocol("class")(data)
    classes = [e.classes for e in stream]
    assert len(stream) == 9 and not stream.shared_test
    assert classes[0] == list(range(0, 50, 5))  # one object of each category
    assert classes[1] == [1, 6, 11, 16, 21] and classes[2] == [26, 31, 36, 41, 46]  # create_sII_filelist.py
    assert sorted(c for cs in classes for c in cs) == list(range(50))
    assert all(len(e.y_train) == 8 * len(e.classes) and len(e.y_test) == 3 * len(e.classes) for e in stream)
    assert all(set(e.y_test.tolist()) == set(e.classes) for e in stream)
    with pytest.raises(ConfigError, match="scenario.incremental"):
        Protocol("domain")(data)
    other = load(tree, protocol="nc", run=3)  # another run: another order of the same batches
    assert [sorted(torch.unique(other.y_train[g]).tolist()) for g in other.protocol.train] != classes
    assert sorted(map(tuple, (sorted(torch.unique(other.y_train[g]).tolist()) for g in other.protocol.train))) == \
        sorted(map(tuple, classes))


def test_ten_categories(tree):
    data = load(tree, protocol="ni", categories=True)
    assert data.n_classes == 10 and torch.equal(torch.unique(data.y_train), torch.arange(10))
    first = data.protocol.train[0]
    for i in first[:12].tolist():
        obj = int(data.x_train.path(i).split("/")[-2][1:])
        assert int(data.y_train[i]) == (obj - 1) // 5
    stream = Protocol("class")(load(tree, protocol="nc", categories=True))
    assert stream.shared_test  # the categories recur: every experience on the complete test set


def test_official_lists_come_first(tmp_path, tree):
    root = tmp_path / "c"
    root.mkdir()
    (root / FOLDER).symlink_to(tree / FOLDER)
    folder = root / "batches_filelists" / "NI_inc" / "run0"
    folder.mkdir(parents=True)
    for b, s in enumerate(reversed(TRAIN_SESSIONS)):  # an order of our own: s11 first
        (folder / f"train_batch_{b:02d}_filelist.txt").write_text(
            "".join(f"{frame(s, o)} {o - 1}\n" for o in range(1, 51)))
    (folder / "test_filelist.txt").write_text("".join(f"{frame(s, o)} {o - 1}\n" for s in (3, 7) for o in range(1, 51)))
    data = load(root, protocol="ni")
    assert "official lists" in data.protocol.description
    assert data.x_train.path(int(data.protocol.train[0][0])).endswith("s11/o1/C_11_01_000.png")
    assert len(data.y_test) == 100
    (folder / "train_batch_03_filelist.txt").unlink()
    with pytest.raises(DataError, match="lacks train_batch_03_filelist.txt"):
        load(root, protocol="ni")


def _lup(root, protocol="nicv2_79", broken_labels=False):
    """LUP.pkl / paths.pkl / labels.pkl for one run of `protocol`: the training frames dealt over its batches."""
    paths = [frame(s, o) for s in range(1, 12) for o in range(1, 51)]
    train = [i for i, p in enumerate(paths) if int(p.split("/")[0][1:]) in TRAIN_SESSIONS]
    test = [i for i, p in enumerate(paths) if int(p.split("/")[0][1:]) in TEST_SESSIONS]
    n = core50.N_BATCHES[protocol]
    batches = [train[b::n] for b in range(n)] + [test]
    labels = [[int(paths[i].split("/")[1][1:]) - 1 for i in b] for b in batches]
    if broken_labels:
        labels[0] = labels[0][:-1]
    for name, obj in (("paths.pkl", paths), ("LUP.pkl", {protocol: [batches]}), ("labels.pkl", {protocol: [labels]})):
        with open(root / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return batches


def test_nicv2_from_lup_and_its_checks(tmp_path, tree):
    root = tmp_path / "c"
    root.mkdir()
    (root / FOLDER).symlink_to(tree / FOLDER)
    with pytest.raises(DataError) as err:  # NICv2 needs the official lists: one line, where to get them
        load(root, protocol="nicv2_79")
    assert len(str(err.value).splitlines()) == 1 and "batches_filelists_NICv2.zip" in str(err.value)
    batches = _lup(root)
    data = load(root, protocol="nicv2_79")
    assert len(data.protocol.train) == 79 and [len(g) for g in data.protocol.train] == [len(b) for b in batches[:-1]]
    assert len(data.y_test) == 150
    stream = Protocol("class")(data)
    assert stream.shared_test and len(stream) == 79
    _lup(root, broken_labels=True)
    with pytest.raises(DataError, match="disagree"):
        load(root, protocol="nicv2_79")

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    with open(root / "LUP.pkl", "wb") as f:
        pickle.dump({"nicv2_79": Evil()}, f)
    with pytest.raises(DataError, match="refusing to build"):
        load(root, protocol="nicv2_79")


def test_offline_without_files_fails_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(DataError) as err:
        load_core50(tmp_path / "nothing", download=False, resolution=32)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(tmp_path / "nothing") in message
    assert "core50_32x32.zip" in message and "Get them" in message
    folder, archive, _, md5 = core50.IMAGES[32]
    monkeypatch.setitem(core50.IMAGES, 32, (folder, archive, (tmp_path / "absent.zip").as_uri(), md5))
    with pytest.raises(DataError) as err:
        load_core50(tmp_path / "nothing", download=True, resolution=32)
    assert f"downloading {(tmp_path / 'absent.zip').as_uri()} failed" in str(err.value)
    assert not list((tmp_path / "nothing").glob("*.part"))


@pytest.mark.parametrize("resolution", [32, 128])
def test_download_checks_the_md5_and_unpacks(tmp_path, tree, monkeypatch, resolution):
    """Each resolution's archive (here a few fake frames, served from a file:// URL in place of the
    official one): a wrong md5 keeps nothing, the right one unpacks, an interrupted unpacking is redone."""
    folder, name, url, official = core50.IMAGES[resolution]
    assert name == f"{folder}.zip" and url.endswith(f"/{name}") and len(official) == 32
    server = tmp_path / "server"
    server.mkdir()
    archive = server / name
    with zipfile.ZipFile(archive, "w") as z:
        for s in (1, 2, 3):  # a few sessions suffice: NC from LUP.pkl names only these frames
            for path in sorted((tree / FOLDER / f"s{s}").rglob("*.png")):
                z.write(path, f"{folder}/{path.relative_to(tree / FOLDER)}")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    size = None if resolution == 32 else 32  # the fake frames are 32×32: resized to themselves
    root = tmp_path / "core50"
    root.mkdir()
    monkeypatch.setitem(core50.IMAGES, resolution, (folder, name, archive.as_uri(), "0" * 32))
    with pytest.raises(DataError, match="not the official"):  # a wrong checksum: nothing is kept
        load_core50(root, resolution=resolution, workers=0)
    assert not (root / name).exists() and not list(root.glob("*.part")) and not (root / folder).exists()
    monkeypatch.setitem(core50.IMAGES, resolution, (folder, name, archive.as_uri(), md5))
    paths = [frame(s, o) for s in (1, 2, 3) for o in range(1, 51)]
    with open(root / "paths.pkl", "wb") as f:
        pickle.dump(paths, f)
    nc = [[i for i, p in enumerate(paths) if int(p.split("/")[1][1:]) % 9 == b and p.startswith(("s1/", "s2/"))]
          for b in range(9)] + [[i for i, p in enumerate(paths) if p.startswith("s3/")]]
    with open(root / "LUP.pkl", "wb") as f:
        pickle.dump({"nc": [nc]}, f)
    data = load_core50(root, resolution=resolution, protocol="nc", workers=0, image_size=size)
    assert (root / name).exists() and (root / f".{name}.extracted").exists() and (root / folder / "s3").is_dir()
    assert len(data.protocol.train) == 9 and len(data.y_test) == 50 and data.input_shape == (3, 32, 32)
    shutil.rmtree(root / folder / "s2")  # an interrupted unpacking (no marker): unpacked again
    (root / f".{name}.extracted").unlink()
    load_core50(root, resolution=resolution, protocol="nc", workers=0, image_size=size)
    assert (root / folder / "s2").is_dir()
    (root / f".{name}.extracted").unlink()  # an archive changed since: refused before unpacking
    with open(root / name, "ab") as f:
        f.write(b"x")
    with pytest.raises(DataError, match="not the official"):
        load_core50(root, resolution=resolution, protocol="nc", workers=0, image_size=size)


QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "plots=false"]


def preset_args(preset, tree, lazy=True):
    """The preset on the fake tree's 32×32 frames: 2 experiences, one step each."""
    return [f"experiment={preset}", "method=naive", f"dataset.root={tree}", "dataset.resolution=32",
            "dataset.download=false", "dataset.workers=0", f"dataset.in_memory={str(not lazy).lower()}",
            "train.epochs=null", "train.iterations=1", "train.batch_size=16", "scenario.use_first=2", *QUIET]


@pytest.mark.parametrize("preset,lazy", [("core50_ni", True), ("core50_nc", False)])
def test_presets_run_a_smoke_stream(tmp_path, tree, torch_home, r18_state, preset, lazy):  # noqa: F811
    """The presets fine-tune the ImageNet-pretrained ResNet-18 (here: the fake cache's random weights),
    streamed (ni) or in memory (nc), the frames at their own size."""
    cfg = compose([f"experiment={preset}"])
    assert (cfg.model.arch, cfg.model.weights, cfg.model.image_size, cfg.dataset.normalize) == \
        ("resnet18", "IMAGENET1K_V1", 128, False)
    results = run_stream(tmp_path / "run", preset_args(preset, tree, lazy), fast=False)
    R = results["acc_matrix"]
    assert len(R) == 2 and results["config"]["dataset"]["protocol"] == preset[-2:]
    assert results["config"]["model"]["_target_"].endswith("torchvision_model")
    assert results["config"]["model"]["image_size"] == 32  # follows dataset.resolution
    module = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "run"))["module"]
    start = r18_state["conv1.weight"]  # fine-tuned from the cached weights: one small step away from them
    assert (module["model.features.conv1.weight"] - start).norm() < 0.05 * start.norm()
    if preset == "core50_ni":  # one shared test set: every column alike
        assert all(row[0] == row[1] for row in R)
        assert results["config"]["scenario"]["incremental"] == "domain"


@pytest.mark.parametrize("preset", ["core50_ni", "core50_nc"])
def test_presets_without_the_weights_stop_before_training(tmp_path, tree, monkeypatch, clexp_main, preset):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    out = clexp_main([*preset_args(preset, tree), "model.download=false", "hydra.run.dir=run"], tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert out.returncode == 2 and len(lines) == 1 and R18_FILE in lines[0] and "curl" in lines[0], out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "run" / "checkpoints").exists()


def test_download_offline_with_the_images_there_says_what_it_used(tmp_path, tree, monkeypatch, capsys):
    """download=true, the frames there, the batch lists not and their site unreachable: one download
    is tried (the others come from the same site), then one line says that it failed and that the
    experiences come from the folder layout."""
    for name, (_, md5) in list(core50.META.items()):
        monkeypatch.setitem(core50.META, name, ((tmp_path / "offline" / name).as_uri(), md5))
    root = tmp_path / "core50"
    root.mkdir()
    (root / FOLDER).symlink_to(tree / FOLDER)
    capsys.readouterr()
    data = load_core50(root, download=True, resolution=32, protocol="ni", workers=0, in_memory=False)
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if line.startswith("Downloading ")]) == 1, out
    said = [line for line in out if "could not be downloaded" in line]
    assert len(said) == 1 and "failed" in said[0] and "folder layout" in said[0] and str(root / FOLDER) in said[0]
    assert len(data.protocol.train) == 8  # ni: the 8 training sessions, from the layout
