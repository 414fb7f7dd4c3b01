"""Lightning callbacks: the accuracy matrix, progress, and the methods' importance estimators."""

from clexp.callbacks.accuracy_matrix import AccuracyMatrix
from clexp.callbacks.progress import ExperienceProgressBar

__all__ = ["AccuracyMatrix", "ExperienceProgressBar"]
