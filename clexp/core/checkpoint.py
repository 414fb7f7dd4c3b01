"""Stream checkpoints: written atomically, loaded without running code (`weights_only=True`)."""

from __future__ import annotations

from pathlib import Path

import torch

from clexp.data.atomic import save_atomic  # noqa: F401 - the checkpoints' writer: checkpoint.save_atomic

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"


def load(path: Path) -> dict:
    """Load a checkpoint with `weights_only=True`: tensors and plain containers only, never code."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def last_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST
