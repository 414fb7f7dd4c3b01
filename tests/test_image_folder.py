"""dataset=image_folder: the lazy (streamed) and in-memory paths give the same batches, runs and
importances; resume on the lazy path; every bad input stops before training with one line naming
the file or folder; a corrupt image found while training stops cleanly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clexp.core import checkpoint
from clexp.data.base import DataError
from clexp.data.image_folder import load_image_folder
from clexp.data.images import ImageFiles, input_batches, is_lazy
from clexp.data.loader import StreamingLoader, TensorLoader
from tests.conftest import run_stream
from tests.test_pretrained import r18_state, torch_home  # noqa: F401 (fixtures)

QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "plots=false"]


def write_folder(root, classes=4, per_class=6, size=8, mode="RGB", seed=0, kinds=("png", "jpg")):
    """`root/class<c>/<i>.<png|jpg>`: small images whose colour depends on the class."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            px = np.clip(rng.normal(60 + 45 * c, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            img = Image.fromarray(px).convert(mode)
            img.save(folder / f"{i:03d}.{kinds[i % len(kinds)]}")
    return root


@pytest.fixture
def folders(tmp_path):
    write_folder(tmp_path / "train", per_class=10)
    write_folder(tmp_path / "test", per_class=3, seed=1)
    return tmp_path


def args(folders, *extra):
    return ["dataset=image_folder", f"dataset.train_root={folders / 'train'}", f"dataset.test_root={folders / 'test'}",
            "dataset.workers=0", "model=cnn", "model.channels=[8]", "model.hidden=[16]", "scenario.n_experiences=2",
            "train.batch_size=8", *QUIET, *extra]


def test_lazy_and_in_memory_paths_give_the_same_batches(folders):
    lazy = load_image_folder(folders / "train", folders / "test", in_memory=False, workers=0)
    mem = load_image_folder(folders / "train", folders / "test", in_memory=True, workers=0)
    assert is_lazy(lazy.x_train) and not is_lazy(mem.x_train)
    assert lazy.input_shape == mem.input_shape == (3, 8, 8) and lazy.n_classes == 4
    assert torch.equal(lazy.x_train.decode(), mem.x_train) and torch.equal(lazy.x_test.decode(), mem.x_test)
    y, t = mem.y_train, torch.zeros_like(mem.y_train)
    for rank, world in ((0, 1), (0, 2), (1, 2)):  # DDP: each rank's shard, the same on both paths
        a = TensorLoader((mem.x_train, y, t), 8, seed=3, rank=rank, world_size=world)
        b = StreamingLoader(lazy.x_train, (y, t), 8, seed=3, rank=rank, world_size=world)
        for _ in range(2):  # two passes: each reshuffles alike
            batches_a, batches_b = list(a), list(b)
            assert len(batches_a) == len(batches_b) == len(a)
            for ba, bb in zip(batches_a, batches_b):
                assert all(torch.equal(u, v) for u, v in zip(ba, bb))
        b.close()
    a = TensorLoader((mem.x_train, y, t), 8, seed=3)  # a resumed half pass: the same remaining batches
    b = StreamingLoader(lazy.x_train, (y, t), 8, seed=3)
    a.load_state_dict({"passes": 1, "skip": 2}), b.load_state_dict({"passes": 1, "skip": 2})
    assert all(torch.equal(u[0], v[0]) for u, v in zip(a, b)) and b.skip_at_start == 2


def test_lazy_run_equals_the_in_memory_run_with_two_workers(tmp_path, folders):
    """EWC (importances read through the loader), anytime evaluation and a validation split: the same
    results and weights, bit for bit, whether the images are decoded into memory or streamed by 2 workers."""
    extra = ["method=ewc", "train.epochs=2", "train.val_fraction=0.2", "eval.every_n_steps=3"]
    mem = run_stream(tmp_path / "mem", args(folders, *extra, "dataset.in_memory=true"), fast=False)
    lazy = run_stream(tmp_path / "lazy", args(folders, *extra, "dataset.in_memory=false", "dataset.workers=2"),
                      fast=False)
    for key in ("acc_matrix", "val_acc_matrix", "metrics"):
        assert mem[key] == lazy[key], key
    assert mem["anytime"]["acc"] == lazy["anytime"]["acc"]
    a = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "mem"))["module"]
    b = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "lazy"))["module"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # Fisher buffers included


AUGMENT = "dataset.augment=[{name:random_crop,padding:2},hflip,{name:color_jitter,brightness:0.4,contrast:0.4}]"


def test_image_folder_has_an_augment_key():
    from tests.conftest import compose

    assert list(compose(["dataset=image_folder", "dataset.train_root=x"]).dataset.augment) == []
    assert list(compose(["dataset=core50"]).dataset.augment) == []


def test_augmented_streamed_run_equals_the_in_memory_run(tmp_path, folders):
    """Padding with black and colour jitter take each channel's training range: read from the files
    when they are streamed, it is the in-memory one, and so are the augmented batches and the results."""
    from clexp.data.augment import channel_range

    lazy = load_image_folder(folders / "train", folders / "test", in_memory=False, workers=0)
    mem = load_image_folder(folders / "train", folders / "test", in_memory=True, workers=0)
    half = torch.arange(len(lazy.y_train)) % 2 == 0
    got = channel_range([lazy.x_train[half], lazy.x_train[~half], lazy.x_train[half]])  # a file twice: read once
    want = channel_range([mem.x_train])
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert torch.equal(want[0], mem.x_train.amin(dim=(0, 2, 3)))
    assert torch.equal(want[1], mem.x_train.amax(dim=(0, 2, 3)))
    extra = ["method=ewc", "train.epochs=2", AUGMENT]
    runs = {mode: run_stream(tmp_path / mode, args(folders, *extra, f"dataset.in_memory={mode}", "dataset.workers=2"),
                             fast=False) for mode in ("true", "false")}
    run_stream(tmp_path / "plain", args(folders, "method=ewc", "train.epochs=2", "dataset.in_memory=false"),
               fast=False)
    assert runs["true"]["acc_matrix"] == runs["false"]["acc_matrix"]
    a = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "true"))["module"]
    b = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "false"))["module"]
    c = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "plain"))["module"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert not all(torch.equal(a[k], c[k]) for k in a)  # and the augmentation did change the training


@pytest.mark.parametrize("method", ["fisher", "batch_fisher", "mas", "kfac"])
def test_importance_read_in_chunks_equals_the_in_memory_one(folders, monkeypatch, method):
    """The experience read through the loader in chunks of 7 (weighted means, reduced once) gives the
    in-memory estimate."""
    from clexp.curvature import kfac_factors
    from clexp.methods import base
    from clexp.methods.ewc import FisherImportance
    from clexp.methods.mas import MASImportance

    monkeypatch.setattr(base, "READ_CHUNK", 7)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 4))
    trainer = type("Trainer", (), {"global_rank": 0, "world_size": 1, "progress_bar_callback": None,
                                   "is_global_zero": True})()
    out = []
    for in_memory in (True, False):
        data = load_image_folder(folders / "train", folders / "test", in_memory=in_memory, workers=0)
        exp = type("Exp", (), {"x_train": data.x_train, "y_train": data.y_train, "index": 0})()
        module = type("Module", (), {"current_experience": exp, "device": torch.device("cpu"), "model": model,
                                     "experience": torch.tensor(0), "output_mask": lambda self, i: None})()
        if method == "kfac":
            x, y = base.experience_shard(trainer, module, None, 0)
            est = base.over_chunks(trainer, module, x, y, lambda xc, yc, reduce: kfac_factors(model, xc, reduce=reduce))
        else:
            callback = {"fisher": FisherImportance(), "batch_fisher": FisherImportance("batch", batch_size=3),
                        "mas": MASImportance()}[method]
            est = callback.estimate(trainer, module)
        out.append(base._flatten(est))
    a, b = out
    assert a.keys() == b.keys() and a
    for k in a:  # equal up to the rounding of sums taken in another order
        assert float((a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-30)) < 1e-6, k


def test_resume_mid_experience_on_the_lazy_path(tmp_path, folders):
    """Stopped in the middle of experience 1 (after a checkpoint), resumed from it: the same results
    and weights as the uninterrupted streamed run (the sampler's position is in the checkpoint)."""
    import pytorch_lightning as pl

    from clexp.config.presets import apply_preset
    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate
    from tests.conftest import compose

    class Stop(Exception):
        pass

    class StopAt(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *a):
            if int(pl_module.experience) == 1 and trainer.global_step == 4:
                raise Stop

    overrides = args(folders, "method=si", "train.epochs=2", "dataset.in_memory=false",
                     "trainer.checkpoint_every_n_steps=2")
    full = run_stream(tmp_path / "full", overrides, fast=False)
    cfg = compose(overrides)
    apply_preset(cfg, overrides)
    with pytest.raises(Stop):
        StreamRunner(cfg, tmp_path / "killed", parts=validate(cfg), extra_callbacks=[StopAt()]).run()
    state = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "killed"))
    # 18 training images, batches of 8: step 4 is the first batch of the second pass
    assert state["experience"] == 1 and not state["finished"] and state["point"]["step"] == 4
    assert state["point"]["loader"] == {"passes": 1, "skip": 1}
    resumed = StreamRunner(cfg, tmp_path / "killed", resume=state, parts=validate(cfg)).run()
    assert full["acc_matrix"] == resumed["acc_matrix"] and full["metrics"] == resumed["metrics"]
    a = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "full"))["module"]
    b = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "killed"))["module"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_auto_decodes_within_the_budget_and_streams_beyond_it(folders, capsys):
    small = load_image_folder(folders / "train", folders / "test", in_memory="auto", memory_budget_gb=1, workers=0)
    big = load_image_folder(folders / "train", folders / "test", in_memory="auto", memory_budget_gb=1e-6, workers=0)
    assert not is_lazy(small.x_train) and is_lazy(big.x_train)
    assert "decoded into memory" in capsys.readouterr().out


def test_test_fraction_split_resize_and_grey(tmp_path):
    write_folder(tmp_path / "grey", classes=3, per_class=5, size=10, mode="L")
    data = load_image_folder(tmp_path / "grey", image_size=[6, 4], in_memory=True, workers=0, test_fraction=0.2)
    assert data.input_shape == (1, 6, 4) and len(data.y_test) == 3 and len(data.y_train) == 12
    assert abs(float(data.x_train.mean())) < 0.2  # standardised with the sampled statistics


def test_files_batches_decode_in_order(folders):
    lazy = load_image_folder(folders / "train", in_memory=False, workers=0)
    sub = lazy.x_train[torch.tensor([5, 1, 3])]
    assert isinstance(sub, ImageFiles) and len(sub) == 3
    (batch,) = list(input_batches(lazy.x_train, [torch.tensor([5, 1, 3])]))
    assert torch.equal(batch, sub.decode())


def test_permuted_scenario_on_streamed_images_is_refused(tmp_path, folders, clexp_main):
    out = clexp_main([*args(folders, "dataset.in_memory=false", "scenario=permuted", "scenario.incremental=domain"),
                      "hydra.run.dir=run"], tmp_path)
    assert out.returncode == 2 and "scenario=permuted" in out.stderr and "dataset.in_memory=true" in out.stderr


# ------------------------------------------------------------------------------ bad input


def _empty(root):
    (root / "train" / "class1" / "000.png").write_bytes(b"")
    return root / "train" / "class1" / "000.png", "is empty"


def _garbage(root):
    (root / "train" / "class2" / "001.jpg").write_bytes(b"not an image at all")
    return root / "train" / "class2" / "001.jpg", "not an image"


def _no_images(root):
    folder = root / "train" / "class3"
    for f in folder.iterdir():
        f.unlink()
    (folder / "notes.txt").write_text("no images here")
    return folder, "holds no images"


def _other_classes(root):
    (root / "test" / "class3").rename(root / "test" / "class9")
    return "class9", "different class folders"


def _rgba(root):
    path = root / "train" / "class0" / "004.png"
    Image.new("RGBA", (8, 8), (1, 2, 3, 4)).save(path)
    return path, "4 channels (mode RGBA), expected 3"


def _grey(root):
    path = root / "test" / "class0" / "001.png"
    Image.new("L", (8, 8), 7).save(path)
    return path, "1 channel (mode L), expected 3"


def _size(root):
    path = root / "train" / "class1" / "003.png"
    Image.new("RGB", (9, 8)).save(path)
    return path, "is 8×9, expected 8×8"


def _no_root(root):
    return root / "nowhere", "does not exist"


BAD = [_empty, _garbage, _no_images, _other_classes, _rgba, _grey, _size, _no_root]


@pytest.mark.parametrize("break_it", BAD, ids=[b.__name__[1:] for b in BAD])
def test_bad_input_is_one_line_naming_the_file(folders, break_it):
    named, expected = break_it(folders)
    train = named if break_it is _no_root else folders / "train"
    with pytest.raises(DataError) as err:
        load_image_folder(train, folders / "test", workers=0)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(named) in message and expected in message, message


def test_bad_input_exits_2_before_training(tmp_path, folders, clexp_main):
    named, expected = _rgba(folders)
    out = clexp_main(["dataset=image_folder", f"dataset.train_root={folders / 'train'}",
                      f"dataset.test_root={folders / 'test'}", "dataset.workers=0", *QUIET, "hydra.run.dir=run"],
                     tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert out.returncode == 2 and len(lines) == 1 and str(named) in lines[0] and expected in lines[0], out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "run" / "checkpoints").exists()


def test_corrupt_image_found_while_training_stops_cleanly(tmp_path, folders, clexp_main):
    """A PNG whose header is fine but whose pixels are cut off, in experience 1's training data: the
    run trains experience 0, then stops with one line naming the file; the last checkpoint stays."""
    path = folders / "train" / "class3" / "002.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot be decoded"):  # the in-memory path finds it before training
        load_image_folder(folders / "train", folders / "test", in_memory=True, workers=0)
    # given statistics: no image is decoded before training (none estimates them)
    out = clexp_main([*args(folders, "dataset.in_memory=false", "method=ewc", "train.epochs=1", "train.val_fraction=0",
                            "dataset.mean=0.5", "dataset.std=0.25"),
                      "hydra.run.dir=run"], tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert out.returncode == 2 and len(lines) == 1 and str(path) in lines[0] and "cannot be decoded" in lines[0]
    state = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "run"))
    assert state["experience"] == 0 and state["finished"]


@pytest.mark.parametrize("extra", [[], ["model.trainable=head", "model.features_cache=true"]],
                         ids=["fine-tuned", "feature-cache"])
def test_pretrained_backbone_on_streamed_images_equals_in_memory(tmp_path, folders, torch_home, extra):  # noqa: F811
    """A pretrained ResNet-18 (the fake cache's weights): the weights' transform applied by the loader's
    workers to each streamed image (or the features computed from the files once) gives the run that
    prepares the decoded tensors in memory."""
    common = ["model=torchvision", "model.weights=IMAGENET1K_V1", "model.download=false", "model.image_size=16",
              "dataset.normalize=false", "train.epochs=1", *extra]
    base = [a for a in args(folders) if not a.startswith("model")]
    mem = run_stream(tmp_path / "mem", [*base, *common, "dataset.in_memory=true"], fast=False)
    lazy = run_stream(tmp_path / "lazy", [*base, *common, "dataset.in_memory=false", "dataset.workers=2"], fast=False)
    assert mem["acc_matrix"] == lazy["acc_matrix"] and mem["metrics"] == lazy["metrics"]
    a = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "mem"))["module"]
    b = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "lazy"))["module"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
