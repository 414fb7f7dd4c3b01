"""Split Digits' source: scikit-learn's 8×8 handwritten digits (1,797 images, shipped offline)."""

from __future__ import annotations

import torch

from clexp.data.base import SourceData, declared


def load_digits(test_fraction: float = 0.2, seed: int = 0, name: str = "digits",
                n_classes: int | None = None) -> SourceData:
    """Load the digits as 1×8×8 images scaled to [0, 1] then standardised, split stratified by class."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=test_fraction, random_state=seed, stratify=y.numpy()
    )
    idx_train, idx_test = torch.as_tensor(idx_train), torch.as_tensor(idx_test)
    mean, std = x[idx_train].mean(), x[idx_train].std()
    x = (x - mean) / std
    return declared(SourceData("digits", x[idx_train], y[idx_train], x[idx_test], y[idx_test], n_classes=10),
                    name, n_classes)
