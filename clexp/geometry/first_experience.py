"""Train the configured model on the first experience of the configured stream (plain loop), as the
starting point of the Fisher experiments."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clexp.core.build import build_model, build_optimizer, load_stream
from clexp.data.loader import TensorLoader


def train_first_experience(cfg):
    torch.manual_seed(cfg.seed)
    stream = load_stream(cfg)
    exp = stream[0]
    model = build_model(cfg, stream)
    opt = build_optimizer(cfg.optimizer)(model.parameters())
    loader = TensorLoader((exp.x_train, exp.y_train), cfg.train.batch_size, seed=cfg.seed)
    model.train()
    for _ in range(cfg.train.epochs or 1):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    mask = stream.task_masks[0] if stream.task_masks is not None else None
    return model, opt, exp, mask
