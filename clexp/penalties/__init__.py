"""Regularization terms added to the task loss; their state lives in registered buffers."""

from clexp.penalties.base import Regularizer

__all__ = ["Regularizer"]
