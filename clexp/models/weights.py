"""Where pretrained weights come from: the local caches (torch.hub's for torchvision, the Hugging Face
hub's for timm) or a file, never silently from the network.

- torchvision: `<torch hub dir>/checkpoints/<file name of the weights' URL>`; the hub dir is
  `$TORCH_HOME/hub` (default `~/.cache/torch/hub`), as `torch.hub.get_dir()` says.
- timm: `$HF_HUB_CACHE` (default `$HF_HOME/hub`, `~/.cache/huggingface/hub`), the snapshot of the
  weights' Hugging Face repository (`model.safetensors`, else `pytorch_model.bin`); weights timm
  still serves from a URL live in the torch hub dir, as torchvision's.

When the file is missing and `model.download` is true, it is fetched into that cache; when it is
missing and cannot be fetched (no network, or `model.download=false`), `WeightsError` names the file
it looked for and the command that fetches it on a machine with a network. Every file is read with
`torch.load(weights_only=True)` (or safetensors).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch


class WeightsError(ValueError):
    """Pretrained weights that cannot be found, fetched or read: one line that says where and how."""


def _one_line(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_file_spec(value: str) -> bool:
    """A `model.weights` value that names a file rather than a torchvision weights name."""
    return any(sep in value for sep in ("/", os.sep)) or value.endswith((".pth", ".pt", ".bin", ".safetensors")) \
        or value.startswith("~")


def local_file(value: str, key: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        try:
            from hydra.utils import get_original_cwd

            path = Path(get_original_cwd()) / path
        except (ValueError, ImportError):
            path = Path.cwd() / path
    if not path.is_file():
        raise WeightsError(f"{key}={value}: no such file ({path})")
    return path


def read_state_dict(path: Path, key: str) -> dict[str, torch.Tensor]:
    """A state dict from a .pth / .pt / .bin file (weights_only) or a .safetensors file; a checkpoint
    dict holding one under `state_dict` or `model` is unwrapped."""
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is the same user-facing problem
        raise WeightsError(f"{key}: cannot read {path} as weights ({type(err).__name__}: {_one_line(err)}); "
                           "it must be a state_dict saved with torch.save (or a .safetensors file)") from None
    if isinstance(state, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{key}: {path} does not hold a state_dict (a dict of tensors)")
    return state


# ------------------------------------------------------------------------------------------ torch.hub


def hub_checkpoints() -> Path:
    """torch.hub's download folder (`$TORCH_HOME/hub/checkpoints`), read now (tests set TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def url_file(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def cached_url(url: str, key: str, what: str, download: bool) -> Path:
    """The torch.hub cache's copy of `url`; fetched when missing and `download`; else WeightsError."""
    path = hub_checkpoints() / url_file(url)
    if path.is_file():
        return path
    reason = "model.download=false"
    if download:
        try:
            from torch.hub import HASH_REGEX, download_url_to_file

            path.parent.mkdir(parents=True, exist_ok=True)
            match = HASH_REGEX.search(path.name)
            download_url_to_file(url, str(path), match.group(1) if match else None, progress=False)
            return path
        except Exception as err:  # noqa: BLE001 - no network, a proxy, a full disk: one message
            path.unlink(missing_ok=True)
            reason = f"the download failed: {_one_line(err, 100)}"
    raise WeightsError(
        f"{key}: {what} are not in the local cache: looked for {path} ($TORCH_HOME/hub/checkpoints; {reason}). "
        f"On a machine with a network: curl -L -o {path.name} {url} ; then copy {path.name} into {path.parent}/ "
        f"(or pass {key}=/path/to/{path.name})")


# ------------------------------------------------------------------------------------ Hugging Face hub


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be asked (HF_HUB_OFFLINE, or its host does not answer within
    `timeout` seconds), or None. Asked once, so that an offline machine hears it at once instead of
    after huggingface_hub's retries with backoff (a minute, and a warning per retry)."""
    import socket

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return f"the download failed: {host}:{port} cannot be reached ({_one_line(err, 60)}; no network?)"


def cached_hf(repo: str, filenames: list[str], key: str, what: str, download: bool) -> Path:
    """The HF cache's copy of the first of `filenames` in `repo` (`id` or `id@revision`); fetched
    when missing and `download`; else WeightsError."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = repo.partition("@")
    cache = hf_cache_dir()
    for name in filenames:
        found = try_to_load_from_cache(repo_id, name, cache_dir=str(cache), revision=revision or None)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    where = cache / f"models--{repo_id.replace('/', '--')}"
    reason = "model.download=false"
    if download:
        reason = _hub_unreachable()
    if download and reason is None:
        import logging

        from huggingface_hub import hf_hub_download

        errors = []
        hub_log = logging.getLogger("huggingface_hub")
        level = hub_log.level
        hub_log.setLevel(logging.ERROR)  # its retry warnings: the one line below says what failed
        try:
            for name in filenames:
                try:
                    return Path(hf_hub_download(repo_id, name, revision=revision or None, cache_dir=str(cache)))
                except Exception as err:  # noqa: BLE001 - offline, missing file, gated repo: try the next name
                    errors.append(_one_line(err, 100))
        finally:
            hub_log.setLevel(level)
        reason = f"the download failed: {errors[0]}"
    raise WeightsError(
        f"{key}: {what} are not in the local cache: looked for {filenames[0]} of {repo_id} under {where} "
        f"($HF_HUB_CACHE; {reason}). On a machine with a network: "
        f"pip install huggingface_hub && HF_HUB_CACHE=hf-cache hf download {repo_id} {filenames[0]} ; "
        f"then copy hf-cache/ into {cache}/ (or pass model.pretrained=/path/to/{filenames[0]})")
