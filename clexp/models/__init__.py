"""Backbones with a single head, or one head per experience for task-IL (`multihead=true`)."""

from clexp.models.cnn import CNN
from clexp.models.heads import ContinualClassifier
from clexp.models.mlp import MLP
from clexp.models.resnet import ResNet18

__all__ = ["CNN", "MLP", "ContinualClassifier", "ResNet18"]
