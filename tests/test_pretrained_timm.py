"""model=timm (skips without the optional `timm` extra): pretrained weights from a fake Hugging Face cache
(a random model's safetensors where the hub keeps them), the transform from timm's data config, the
missing-weights error, and `last:K` from timm's own block groups."""

import pytest
import torch

timm = pytest.importorskip("timm")

from clexp.models.pretrained import timm_model  # noqa: E402
from clexp.models.weights import WeightsError  # noqa: E402

REPO = "timm/resnet18.a1_in1k"  # resnet18's default pretrained tag
COMMIT = "0" * 40


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    repo = tmp_path / "hf" / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    save_file(state, str(repo / "snapshots" / COMMIT / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return state


def test_timm_weights_from_the_fake_cache(hf_cache):
    model = timm_model((3, 32, 32), 5, arch="resnet18", pretrained=True, download=False, trainable="last:1")
    own = {k[len("features."):]: v for k, v in model.state_dict().items() if k.startswith("features.")}
    assert all(torch.equal(v, hf_cache[k]) for k, v in own.items())
    assert set(own) == set(hf_cache) - {"fc.weight", "fc.bias"}
    t = model.input_transform  # timm's data config of resnet18.a1_in1k: 224 / crop_pct 0.95 → 235, bicubic
    assert (t.resize, t.crop, t.interpolation, t.mean) == ((235,), (224, 224), "bicubic", (0.485, 0.456, 0.406))
    free = {n for n, p in model.named_parameters() if p.requires_grad}
    assert free == {n for n, _ in model.named_parameters() if n.startswith(("head.", "features.layer4.1."))}
    assert model.head.in_features == 512


def test_timm_missing_weights_name_the_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsError, match="model.safetensors of timm/resnet18.a1_in1k.*hf download"):
        timm_model((3, 32, 32), 5, arch="resnet18", pretrained=True, download=False)


def test_timm_weights_offline_fail_at_once_in_one_line(tmp_path, monkeypatch, caplog):
    """download=true with the hub unreachable (here: a port nothing listens on): one line saying so,
    without huggingface_hub's retries (each a warning and seconds of backoff)."""
    import socket
    import time

    import huggingface_hub
    from huggingface_hub import constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))

    def never(*args, **kwargs):
        raise AssertionError("hf_hub_download asked an unreachable hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", never)
    start = time.perf_counter()
    with pytest.raises(WeightsError) as info:
        timm_model((3, 32, 32), 5, arch="resnet18", pretrained=True, download=True)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert len(message.splitlines()) == 1 and f"127.0.0.1:{port} cannot be reached" in message
    assert "hf download timm/resnet18.a1_in1k" in message
    assert not [r for r in caplog.records if r.name.startswith("huggingface_hub")]
