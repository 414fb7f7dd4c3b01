"""Regularization terms added to the task loss; their state lives in registered buffers."""

from clexp.penalties.base import Regularizer
from clexp.penalties.distillation import Distillation
from clexp.penalties.kronecker import KroneckerPenalty
from clexp.penalties.path_integral import PathIntegralPenalty
from clexp.penalties.quadratic import QuadraticPenalty

__all__ = ["Distillation", "KroneckerPenalty", "PathIntegralPenalty", "QuadraticPenalty", "Regularizer"]
