"""`scenario=protocol`: the experiences a dataset defines itself (`SourceData.protocol`), e.g.
CORe50's NI, NC and NIC batches (clexp/data/core50.py)."""

from __future__ import annotations

import torch

from clexp.config.argspec import check_args
from clexp.config.errors import ConfigError
from clexp.data.base import SourceData
from clexp.data.stream import INCREMENTAL, Experience, Scenario, Stream, select_classes


class Protocol(Scenario):
    """The experiences the dataset itself defines (`SourceData.protocol`: CORe50's NI, NC, NIC batches).

    Targets are the dataset's classes and the head covers all of them. When the experiences' classes
    are disjoint (NC) each experience is tested on the test images of its classes, as with `split`
    (class- or task-IL); when they share classes (NI: every object in every session, domain-IL; NIC
    or the 10 categories: class-IL) every experience is tested on the complete test set, evaluated
    once per row of the accuracy matrix (`Stream.shared_test`)."""

    ARGS = {"incremental": ("choice", INCREMENTAL), "use_first": ("int", {"allow_none": True})}

    def __init__(self, incremental: str = "class", name: str = "protocol", use_first: int | None = None):
        check_args(Protocol.ARGS, incremental=incremental, use_first=use_first)
        self.incremental, self.seed, self.n_experiences = incremental, None, None
        self.use_first = None if use_first is None else int(use_first)
        self.name = name

    def check_heads(self, multihead: bool) -> None:
        if multihead:
            raise ConfigError("model.multihead", True, "false with scenario=protocol: its experiences differ in "
                              "size (task-IL masks a shared head instead)")

    def build(self, data: SourceData, multihead: bool, seed: int) -> Stream:
        if data.protocol is None:
            raise ConfigError("scenario", self.name, f"a scenario other than protocol for dataset {data.name}: it "
                              "defines no experiences of its own (dataset=core50 does); e.g. scenario=split")
        groups = data.protocol.train
        if self.use_first is not None and self.use_first > len(groups):
            raise ConfigError("scenario.use_first", self.use_first,
                              f"at most the {len(groups)} experiences of {data.protocol.name}, or null")
        classes = [sorted(torch.unique(data.y_train[g]).tolist()) for g in groups]
        disjoint = sum(len(c) for c in classes) == len(set().union(*map(set, classes)))
        allowed = ("class", "task") if disjoint else ("domain", "class")
        if self.incremental not in allowed:
            raise ConfigError("scenario.incremental", self.incremental,
                              f"{' or '.join(allowed)} for {data.protocol.name} (its experiences "
                              f"{'hold disjoint classes' if disjoint else 'share classes'})")
        exps = []
        for t, (g, cls) in enumerate(zip(groups, classes)):
            if disjoint:
                xte, yte = select_classes(data.x_test, data.y_test, cls)
            else:
                xte, yte = data.x_test, data.y_test
            exps.append(Experience(t, cls, data.x_train[g], data.y_train[g], xte, yte, list(cls)))
        stream = Stream(f"{data.protocol.name}_{data.name}", self.incremental, exps, data.n_classes,
                        data.input_shape, False, shared_test=not disjoint)
        return stream
