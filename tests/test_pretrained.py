"""Pretrained backbones (model=torchvision, model=timm): weights from a fake local cache or a file (a
randomly initialised model's state_dict saved under the exact name torchvision / timm look for; never a
download), the missing-weights error, the head modes, `trainable` (frozen parameters unchanged, absent
from the penalty and the optimizer), the feature cache against the frozen backbone, bad input, and a
short run of the preset. Tiny: ResNet-18 on 32×32 images, a handful of them."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from clexp.models.pretrained import InputTransform, prepare_inputs, torchvision_model
from clexp.models.weights import WeightsError
from tests.conftest import compose

R18_FILE = "resnet18-f37072fd.pth"  # the file name of ResNet18_Weights.IMAGENET1K_V1's URL
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "plots=false"]


@pytest.fixture(scope="module")
def r18_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18().state_dict()


@pytest.fixture
def torch_home(tmp_path, monkeypatch, r18_state):
    """TORCH_HOME with ResNet-18's IMAGENET1K_V1 file (random weights) where torch.hub keeps it."""
    home = tmp_path / "torch-home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(r18_state, home / "hub" / "checkpoints" / R18_FILE)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def images(path, n_train=40, n_test=20, classes=4, size=32, seed=0):
    """An arrays file of images in [0, 1] (dataset=arrays dataset.normalize=false)."""
    g = torch.Generator().manual_seed(seed)
    data = {"x_train": torch.rand(n_train, 3, size, size, generator=g),
            "y_train": torch.arange(n_train) % classes,
            "x_test": torch.rand(n_test, 3, size, size, generator=g), "y_test": torch.arange(n_test) % classes}
    torch.save(data, path)
    return path


def backbone_params_equal(model, state, prefix="features."):
    own = {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    return all(torch.equal(own[k], state[k]) for k in own) and set(own) == set(state) - {"fc.weight", "fc.bias"}


# ------------------------------------------------------------------------------------------- loading


def test_weights_by_name_come_from_the_fake_cache(torch_home, r18_state):
    model = torchvision_model((3, 32, 32), 10, arch="resnet18", weights="IMAGENET1K_V1", download=False)
    assert backbone_params_equal(model, r18_state)
    assert model.pretrained and model.freeze_norm_stats_from == 0
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in model.modules())  # no classifier


def test_transform_is_the_weights_own(torch_home):
    """resize 256 → centre crop 224 → ImageNet mean/std, as weights.transforms() does it."""
    model = torchvision_model((3, 40, 48), 10, arch="resnet18", weights="IMAGENET1K_V1", download=False)
    x = torch.rand(2, 3, 40, 48)
    ours = model.input_transform(x)
    theirs = torch.stack([torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()(img) for img in x])
    assert ours.shape == (2, 3, 224, 224) and torch.allclose(ours, theirs, atol=1e-5)
    grey = InputTransform(crop=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3)(torch.rand(1, 1, 8, 8))
    assert grey.shape == (1, 3, 8, 8)  # a grey image repeated to the 3 channels the weights take


def test_weights_from_a_file(tmp_path, r18_state):
    path = tmp_path / "mine.pth"
    torch.save({"state_dict": r18_state}, path)
    model = torchvision_model((3, 32, 32), 10, arch="resnet18", weights=str(path))
    assert backbone_params_equal(model, r18_state) and model.pretrained
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="not a state_dict of torchvision's resnet18"):
        torchvision_model((3, 32, 32), 10, arch="resnet18", weights=str(path))


def test_missing_weights_name_the_file_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    expected = tmp_path / "empty" / "hub" / "checkpoints" / R18_FILE
    with pytest.raises(WeightsError) as err:
        torchvision_model((3, 32, 32), 10, arch="resnet18", weights="IMAGENET1K_V1", download=False)
    message = str(err.value)
    assert str(expected) in message and "curl -L -o resnet18-f37072fd.pth https://download.pytorch.org" in message

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr("torch.hub.download_url_to_file", offline)
    with pytest.raises(WeightsError, match="the download failed: Network is unreachable"):
        torchvision_model((3, 32, 32), 10, arch="resnet18", weights="IMAGENET1K_V1", download=True)
    assert not expected.exists()


def test_missing_weights_stop_the_cli_before_training(tmp_path, monkeypatch, clexp_main):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    data = images(tmp_path / "d.pt")
    out = clexp_main([*QUIET, "hydra.run.dir=run", "model=torchvision", "model.download=false", "dataset=arrays",
                      f"dataset.path={data}", "dataset.normalize=false"], tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert out.returncode == 2 and len(lines) == 1 and R18_FILE in lines[0], out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------------------------------- heads


@pytest.mark.parametrize("multihead", [False, True])
def test_heads_replace_the_classifier(torch_home, multihead):
    model = torchvision_model((3, 32, 32), 3, n_experiences=4, arch="resnet18", weights="IMAGENET1K_V1",
                              image_size=32, multihead=multihead)
    heads = list(model.heads) if multihead else [model.head]
    assert model.n_heads == (4 if multihead else 1) and all(h.in_features == 512 and h.out_features == 3 for h in heads)
    x = prepare_inputs(model, torch.rand(2, 3, 32, 32))
    model.eval()
    h = model.features(x)
    for t, head in enumerate(heads):
        assert torch.allclose(model(x, torch.full((2,), t)), head(h), atol=1e-6)


def test_masked_shared_head_in_task_il(tmp_path, torch_home):
    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate

    cfg = compose([*QUIET, "model=torchvision", "model.weights=IMAGENET1K_V1", "model.image_size=32", "dataset=arrays",
                   f"dataset.path={images(tmp_path / 'd.pt')}", "dataset.normalize=false", "scenario.n_experiences=2",
                   "scenario.incremental=task", "train.val_fraction=0"])
    runner = StreamRunner(cfg, tmp_path / "run", parts=validate(cfg))
    assert runner.model.n_heads == 1 and runner.model.head.out_features == 4
    assert runner.module.task_masks.tolist() == [[True, True, False, False], [False, False, True, True]]
    assert runner.stream.input_shape == (3, 32, 32) and runner.stream[0].x_test.min() < 0  # normalised once


# ------------------------------------------------------------------------------------------- trainable


@pytest.mark.parametrize("trainable,free,method", [("head", ["head."], "ewc"),
                                                   ("last:1", ["head.", "features.layer4.1."], "ewc")])
def test_frozen_parameters_stay_put_and_are_not_regularized(tmp_path, torch_home, r18_state, trainable, free, method):
    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate

    cfg = compose([*QUIET, "model=torchvision", "model.weights=IMAGENET1K_V1", "dataset=arrays",
                   f"dataset.path={images(tmp_path / 'd.pt', n_train=8, n_test=4, size=16)}", "dataset.normalize=false",
                   "scenario.n_experiences=2", "train.val_fraction=0", "train.epochs=null", "train.iterations=1",
                   f"method={method}", *(["method.fisher.max_samples=4"] if method == "ewc" else []),
                   f"model.trainable={trainable}", "model.image_size=16",
                   "optimizer=sgd", "optimizer.momentum=0.9"])
    runner = StreamRunner(cfg, tmp_path / "run", parts=validate(cfg))
    before = {n: p.detach().clone() for n, p in runner.model.named_parameters()}
    runner.run()
    trainable_names = {n for n, p in runner.model.named_parameters() if p.requires_grad}
    assert trainable_names == {n for n in before if n.startswith(tuple(free))}
    for n, p in runner.model.named_parameters():
        assert torch.equal(p, before[n]) != (n in trainable_names) or n.endswith("bias"), n  # frozen: unchanged
    assert set(runner.module.regularizer.names) == trainable_names  # penalty buffers: trainable only
    assert int(runner.module.regularizer.consolidations) == 2
    optimizer = runner.module.configure_optimizers()
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == \
        {id(p) for n, p in runner.model.named_parameters() if n in trainable_names}
    frozen_bn = [m for n, m in runner.model.named_modules() if isinstance(m, nn.BatchNorm2d)
                 and not any(p.requires_grad for p in m.parameters())]
    runner.model.train()
    assert all(not m.training for m in frozen_bn)  # frozen parts run in eval mode: statistics fixed


def test_last_k_blocks_of_a_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    from clexp.models.freeze import freeze, torchvision_layer_ids

    vit = VisionTransformer(image_size=16, patch_size=8, num_layers=3, num_heads=2, hidden_dim=8, mlp_dim=16)
    ids, n, what = torchvision_layer_ids(vit)
    assert n == 3 and what == "EncoderBlock"
    freeze(vit, ids, n, what, "last:1", "vit")
    free = {k for k, p in vit.named_parameters() if p.requires_grad}
    assert free == {k for k, _ in vit.named_parameters() if k.startswith(("encoder.layers.encoder_layer_2.",
                                                                          "encoder.ln.", "heads."))}


# ------------------------------------------------------------------------------------------- feature cache


def test_feature_cache_equals_the_frozen_backbone(tmp_path, torch_home):
    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate

    base = [*QUIET, "model=torchvision", "model.weights=IMAGENET1K_V1", "model.image_size=32", "dataset=arrays",
            f"dataset.path={images(tmp_path / 'd.pt', n_train=16, n_test=8)}", "dataset.normalize=false",
            "scenario.n_experiences=2", "train.val_fraction=0", "train.epochs=2", "model.trainable=head",
            "train.batch_size=8"]
    runs = {}
    for cache in (False, True):
        cfg = compose([*base, f"model.features_cache={str(cache).lower()}"])
        runs[cache] = StreamRunner(cfg, tmp_path / f"run{cache}", parts=validate(cfg))
    cached, plain = runs[True], runs[False]
    data = torch.load(tmp_path / "d.pt", weights_only=True)
    raw = data["x_train"][data["y_train"] < 2][:4]  # experience 0's first inputs (classes 0 and 1)
    backbone = cached.model.backbone.eval()
    with torch.no_grad():
        expected = backbone(cached.model.input_transform(raw))
        features = plain.model.features.eval()(plain.model.input_transform(raw))
    assert torch.allclose(expected, features, atol=1e-5)
    assert cached.stream.input_shape == (512,)
    assert torch.allclose(cached.stream[0].x_train[:4], expected, atol=1e-5)
    results = {c: r.run() for c, r in runs.items()}
    assert torch.allclose(cached.model.head.weight, plain.model.head.weight, atol=1e-4)  # the same training
    assert results[True]["acc_matrix"] == results[False]["acc_matrix"]  # and the same evaluation


# ------------------------------------------------------------------------------------------- bad input


BAD = [
    ("model.arch=resnet19", "model.arch", "resnet18"),
    ("model.weights=IMAGENET9K_V9", "model.weights", "IMAGENET1K_V1"),
    ("model.trainable=some", "model.trainable", "last:K"),
    ("model.trainable=last:0", "model.trainable", "last:K"),
    ("model.trainable=last:9", "model.trainable", "8 blocks"),
    ("model.features_cache=true", "model.features_cache", "trainable=head"),
    ("model.weights=/no/such/file.pth", "model.weights", "no such file"),
    ("dataset.normalize=true", "dataset.normalize", "[0, 1]"),
]


def test_bad_model_input_is_one_line_before_training(tmp_path, torch_home, clexp_main):
    """Each bad value: exit 2 and one line naming the key and what is allowed, before any data is read."""
    from clexp.core.validation import validate

    data = images(tmp_path / "d.pt")
    for i, (override, key, hint) in enumerate(BAD):
        weights = [] if "weights" in override else ["model.weights=IMAGENET1K_V1"]
        args = [*QUIET, "model=torchvision", *weights, "dataset=arrays", f"dataset.path={data}",
                "dataset.normalize=false", override]
        if i % 2:  # every other one in-process only (the CLI prints exactly this error's text)
            with pytest.raises(ValueError) as err:
                validate(compose(args))
            assert key in str(err.value) and hint in str(err.value), str(err.value)
            continue
        out = clexp_main([*QUIET, "hydra.run.dir=run", "model=torchvision", *weights, "dataset=arrays",
                          f"dataset.path={data}", "dataset.normalize=false", override], tmp_path)
        lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
        assert out.returncode == 2 and len(lines) == 1, (override, out.stderr)
        assert key in lines[0] and hint in lines[0], lines[0]
        assert "Traceback" not in out.stderr and not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------------------------------- the preset


def test_split_cifar100_pretrained_preset_runs(tmp_path, torch_home, monkeypatch):
    from tests.conftest import run_stream
    from tests.test_data_sources import tiny_cifar

    monkeypatch.setattr("torchvision.datasets.utils.check_md5", lambda *args, **kwargs: True)
    tiny_cifar(tmp_path / "data", hundred=True, n=100)
    cfg = compose(["experiment=split_cifar100_pretrained"])
    assert (cfg.model.arch, cfg.model.weights, cfg.scenario.n_experiences) == ("resnet18", "IMAGENET1K_V1", 10)
    for incremental in ("task", "class"):  # the first 2 of its 10 experiences (use_first: the same stream, cut)
        results = run_stream(tmp_path / f"run-{incremental}", [
            "experiment=split_cifar100_pretrained", f"scenario.incremental={incremental}", "method=naive",
            f"paths.data_dir={tmp_path / 'data'}", "dataset.download=false", "train.epochs=null",
            "train.iterations=1", "model.image_size=16", "scenario.use_first=2", *QUIET], fast=False)
        assert len(results["acc_matrix"]) == 2 and len(results["acc_matrix"][0]) == 2
