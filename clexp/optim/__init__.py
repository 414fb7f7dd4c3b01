"""Optimizers: natural-gradient descent with the model's diagonal Fisher."""

from clexp.optim.ngd import NGD

__all__ = ["NGD"]
