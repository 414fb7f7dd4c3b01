"""Run infrastructure as Lightning callbacks: the accuracy matrix, stream checkpoints, the
non-finite guard, progress. (Methods' callbacks live with their method in `clexp.methods`.)"""

from clexp.core.callbacks.accuracy_matrix import AccuracyMatrix
from clexp.core.callbacks.finite_guard import FiniteGuard
from clexp.core.callbacks.progress import ExperienceProgressBar

__all__ = ["AccuracyMatrix", "ExperienceProgressBar", "FiniteGuard"]
