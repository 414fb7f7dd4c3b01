"""Backbones with a single head, or one head per experience for task-IL (`multihead=true`)."""

from clexp.models.heads import ContinualClassifier
from clexp.models.mlp import MLP

__all__ = ["ContinualClassifier", "MLP"]
