"""Lightning callbacks: the accuracy matrix, progress, and the methods' importance estimators."""

from clexp.callbacks.accuracy_matrix import AccuracyMatrix
from clexp.callbacks.importance import (
    DistillationTeacher,
    FisherImportance,
    ImportanceCallback,
    MASImportance,
    PathIntegral,
    UniformImportance,
)
from clexp.callbacks.progress import ExperienceProgressBar

__all__ = [
    "AccuracyMatrix", "DistillationTeacher", "ExperienceProgressBar", "FisherImportance", "ImportanceCallback",
    "MASImportance", "PathIntegral", "UniformImportance",
]
