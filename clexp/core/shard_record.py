"""A debug record of what each process trained on: with the environment variable CLEXP_RECORD_SHARDS
set to a folder, every rank writes there, at the end of each experience, the training inputs its loader
gave it (`rank<r>_experience<i>.json`: the files of streamed images, else positions in the experience's
training data, in the order drawn) and its module's weights then (`rank<r>_experience<i>.pt`). For
checking DDP by hand or in tests: the ranks' shards are disjoint and cover the experience, and every
rank ends with the same model. Off (nothing recorded, nothing kept) when the variable is unset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

ENV = "CLEXP_RECORD_SHARDS"


def record_folder() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def start(loader) -> None:
    """Make `loader` keep the positions of the batches it yields (when recording)."""
    if record_folder() is not None:
        loader.drawn = []


def write(loader, inputs, experience: int, rank: int, world_size: int, module: torch.nn.Module) -> None:
    """The record of one rank's experience (see the module doc); nothing when not recording."""
    folder = record_folder()
    if folder is None or getattr(loader, "drawn", None) is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    positions = [int(p) for p in loader.drawn]
    named = callable(getattr(inputs, "path", None))
    record = {"experience": experience, "rank": rank, "world_size": world_size, "n": len(inputs),
              "inputs": [inputs.path(p) for p in positions] if named else positions}
    stem = folder / f"rank{rank}_experience{experience}"
    stem.with_suffix(".json").write_text(json.dumps(record))
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, stem.with_suffix(".pt"))
