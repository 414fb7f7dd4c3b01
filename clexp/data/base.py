"""The in-memory form every dataset source produces, before a scenario splits it into experiences."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from clexp.config.errors import DataError  # noqa: F401 - re-exported: clexp.data.base.DataError


@dataclass
class Protocol:
    """Experiences a dataset defines itself (CORe50's NI / NC / NIC batches), for `scenario=protocol`:
    the positions in `x_train` of each experience's training inputs, in the stream's order."""

    name: str
    train: list[torch.Tensor]
    description: str = ""  # where the experiences come from (the official lists, LUP.pkl, the layout)


@dataclass
class SourceData:
    """Train and test inputs of one dataset.

    Images are float tensors shaped N×C×H×W (flat features N×D are allowed), already normalised, or
    `ImageFiles` (clexp/data/images.py: files decoded batch by batch, for data beyond memory);
    labels are int64 tensors in [0, n_classes). `protocol`: the experiences the dataset defines, if any.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    protocol: Protocol | None = field(default=None)

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if len(x) != len(y):
                raise DataError(f"{self.name}: {split} inputs ({len(x)}) and labels ({len(y)}) differ in length")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
                raise DataError(
                    f"{self.name}: {split} labels must lie in [0, {self.n_classes}), "
                    f"found [{int(y.min())}, {int(y.max())}]"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input (C, H, W) or (D,)."""
        return tuple(self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4


def declared(data: SourceData, name: str | None, n_classes: int | None) -> SourceData:
    """`data` renamed to the config's `name`, after checking the config's `n_classes` (known before
    loading, so that the config could be checked before any data was read) against the data."""
    if n_classes is not None and int(n_classes) != data.n_classes:
        raise DataError(f"dataset.n_classes={n_classes} but {data.name} has {data.n_classes} classes")
    if name:
        data.name = name
    return data
