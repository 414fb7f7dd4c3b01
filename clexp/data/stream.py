"""Experiences and the scenario builders: split / permuted / rotated × task / domain / class-incremental.

A scenario is orthogonal to the dataset: it only needs a `SourceData`. Targets are expressed in the
model's output space, so the training loop never needs to know the scenario:

===========  =================================  =========================  ===================
incremental  split: target                      permuted/rotated: target   outputs (model)
===========  =================================  =========================  ===================
class        original class                     t·C + class                all classes of the stream
domain       position of the class in its exp.  class                      classes per experience
task, mask   as class-IL, masked to exp.        as class-IL, masked        all classes of the stream
task, heads  as domain-IL, head t               as domain-IL, head t       per head: classes per exp.
===========  =================================  =========================  ===================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from clexp.config.argspec import check_args
from clexp.config.errors import ConfigError, check, check_number
from clexp.data.base import SourceData
from clexp.data.images import cat_inputs, is_lazy

INCREMENTAL = ("task", "domain", "class")
OUTPUTS = ("all", "seen")  # scenario.outputs: every output from the start, or the classes seen so far (class-IL)


@dataclass
class Experience:
    """One experience of a stream: its data (targets already in output space) and what identifies it.
    Inputs are tensors, or `ImageFiles` (read from files batch by batch, clexp/data/images.py)."""

    index: int
    classes: list[int]  # the original dataset classes it contains
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    output_classes: list[int] = field(default_factory=list)  # model outputs this experience uses
    # the validation split carved out of the training data (`train.val_fraction`); None without one
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    # blurry boundaries (`blur_boundaries`): the task id of each training sample, some of which come
    # from a neighbouring experience; None: every sample is this experience's own
    task_train: torch.Tensor | None = None

    @property
    def t_train(self) -> torch.Tensor:
        if self.task_train is not None:
            return self.task_train
        return torch.full((len(self.y_train),), self.index, dtype=torch.int64)

    @property
    def t_test(self) -> torch.Tensor:
        return torch.full((len(self.y_test),), self.index, dtype=torch.int64)

    @property
    def t_val(self) -> torch.Tensor | None:
        return None if self.y_val is None else torch.full((len(self.y_val),), self.index, dtype=torch.int64)


@dataclass
class Stream:
    """A list of experiences plus what the model must know to be built for them."""

    name: str
    incremental: str
    experiences: list[Experience]
    n_outputs: int  # outputs of the (single) head, or of each head when multihead
    input_shape: tuple[int, ...]
    multihead: bool = False
    # every experience's test set is the same data (CORe50 NI / NIC: the complete test set): the
    # accuracy matrix evaluates it once per row (the model's outputs do not depend on the task id)
    shared_test: bool = False

    def __len__(self) -> int:
        return len(self.experiences)

    def __iter__(self):
        return iter(self.experiences)

    def __getitem__(self, i: int) -> Experience:
        return self.experiences[i]

    @property
    def has_validation(self) -> bool:
        return bool(self.experiences) and all(e.y_val is not None for e in self.experiences)

    @property
    def task_masks(self) -> torch.Tensor | None:
        """Bool matrix (T × n_outputs): the outputs each experience may predict (task-IL masking)."""
        if self.incremental != "task" or self.multihead:
            return None
        masks = torch.zeros(len(self.experiences), self.n_outputs, dtype=torch.bool)
        for e in self.experiences:
            masks[e.index, e.output_classes] = True
        return masks

    @property
    def seen_masks(self) -> torch.Tensor | None:
        """Bool matrix (T × n_outputs): row i, the outputs of experiences 0..i (`scenario.outputs=seen`, an
        expanding head as Hsu et al. 2018's `valid_out_dim`); None outside class-IL, whose outputs are
        already each experience's own (task-IL masks, domain-IL's shared outputs)."""
        if self.incremental != "class" or self.multihead:
            return None
        masks = torch.zeros(len(self.experiences), self.n_outputs, dtype=torch.bool)
        for e in self.experiences:
            masks[e.index:, e.output_classes] = True
        return masks


# ------------------------------------------------------------------------------ the validation split


def validation_seed(seed: int, experience: int) -> int:
    """The split's seed: the run's seed and the experience's index only (never the method or its
    strength), so that the jobs of a sweep that share a seed hold out the same examples."""
    return 1_000_003 * int(seed) + 7_919 * (int(experience) + 1) + 17


def _count_per_class(n: int, fraction: float) -> int:
    """Validation examples taken from a class of `n` training examples: floor(fraction·n)."""
    return int(math.floor(fraction * n + 1e-9))


def smallest_working_fraction(experiences: list[Experience]) -> float:
    """The smallest `train.val_fraction` that gives every class of every experience a validation example."""
    smallest = max(1 / int(n) for e in experiences for n in torch.unique(e.y_train, return_counts=True)[1].tolist())
    return math.ceil(smallest * 1e4) / 1e4  # rounded up to 4 decimals: still works


def carve_validation(stream: Stream, fraction: float, seed: int) -> Stream:
    """Move a seeded, class-stratified `fraction` of each experience's training examples into its
    validation split (`x_val`, `y_val`), in place: floor(fraction·n) examples of each class of n
    (drawn with `validation_seed(seed, index)`), the rest stay the training data in their order.
    Training, validation and test data are disjoint. `fraction == 0`: nothing changes.

    A class left without a validation example raises `ConfigError` naming the experience, the
    class and the smallest fraction that works."""
    fraction = float(fraction)
    if fraction == 0:
        return stream
    for e in stream.experiences:
        original = dict(zip(e.output_classes, e.classes))  # target → dataset class (for the message)
        g = torch.Generator().manual_seed(validation_seed(seed, e.index))
        val_idx = []
        for target in torch.unique(e.y_train).tolist():
            members = torch.nonzero(e.y_train == target).flatten()
            k = _count_per_class(len(members), fraction)
            if k == 0:
                name = original.get(int(target), int(target))
                raise ConfigError(
                    "train.val_fraction", fraction,
                    f"experience {e.index} has {len(members)} training examples of class {name}, none for "
                    f"validation; the smallest fraction that gives every class of every experience one is "
                    f"{smallest_working_fraction(stream.experiences):g} (or 0: no validation split)")
            val_idx.append(members[torch.randperm(len(members), generator=g)[:k]])
        val = torch.sort(torch.cat(val_idx)).values
        keep = torch.ones(len(e.y_train), dtype=torch.bool)
        keep[val] = False
        e.x_val, e.y_val = e.x_train[val], e.y_train[val]
        e.x_train, e.y_train = e.x_train[keep], e.y_train[keep]
    return stream


# ------------------------------------------------------------------------------ blurry boundaries

BOUNDARIES = ("sharp", "blurry")


def blur_seed(seed: int, experience: int) -> int:
    """The seed of experience `experience`'s training order and of the swaps at its start boundary:
    the run's seed and the experience only (never the method)."""
    return 3_000_017 * int(seed) + 15_485_863 * (int(experience) + 1) + 7


def swap_probabilities(m: int) -> torch.Tensor:
    """p_j = ½·(1 − (j + ½)/m), j = 0 … m − 1: the chance that the j-th pair of positions counted from a
    boundary exchanges its samples (½ next to the boundary, falling linearly to 0 at distance m)."""
    j = torch.arange(m, dtype=torch.float64)
    return 0.5 * (1 - (j + 0.5) / m) if m else j


def blur_boundaries(stream: Stream, blur: float, seed: int) -> Stream:
    """Blurry boundaries, in place: neighbouring experiences' training data mix near each boundary.

    The rule (the training data only; validation splits and test sets stay pure):

    1. each experience's training samples are put in a seeded random order (`blur_seed(seed, k)`),
       which is also the order they are trained in (the runner does not reshuffle a blurry stream);
    2. at the boundary between experiences k − 1 and k (sizes n₁, n₂), m = ⌊blur · min(n₁, n₂) / 2⌋
       pairs of positions mirror each other: pair j (j = 0 … m − 1) is the (j + 1)-th position from the
       end of experience k − 1 and the (j + 1)-th from the start of experience k; the two samples of a
       pair are exchanged with probability p_j = ½·(1 − (j + ½)/m) (`swap_probabilities`);
    3. a moved sample keeps its label and its own task id (`Experience.task_train`: the head or mask
       task-IL uses), so it is a foreign sample where it now stands.

    Hence the expected share of foreign samples at distance j from a boundary is p_j, on both sides:
    ½ right at it, falling linearly to 0 at distance m; none further in. An experience's windows at its
    two ends never overlap (2m ≤ blur · n < n). With equal sizes n the expected foreign share of an
    inner experience is blur/4 (m·½ foreign samples at each end), blur/8 for the first and the last.
    Sizes do not change and every sample is still trained once per pass. `blur` in [0, 1); 0 changes
    nothing but the fixed order.
    """
    check_number("blur", blur, low=0, high=1, high_open=True)
    for e in stream.experiences:
        g = torch.Generator().manual_seed(blur_seed(seed, e.index))
        order = torch.randperm(len(e.y_train), generator=g)
        e.x_train, e.y_train = e.x_train[order], e.y_train[order]
        e.task_train = torch.full((len(e.y_train),), e.index, dtype=torch.int64)
    for k in range(1, len(stream.experiences)):
        a, b = stream.experiences[k - 1], stream.experiences[k]
        m = int(math.floor(blur * min(len(a.y_train), len(b.y_train)) / 2 + 1e-9))
        if m == 0:
            continue
        g = torch.Generator().manual_seed(blur_seed(seed, k) + 1)
        j = torch.arange(m)[torch.rand(m, generator=g, dtype=torch.float64) < swap_probabilities(m)]
        na = len(a.y_train)
        ia, ib = na - 1 - j, j
        idx_a, idx_b = torch.arange(na), torch.arange(na, na + len(b.y_train))  # positions in a ++ b
        idx_a[ia], idx_b[ib] = na + ib, ia
        for name in ("x_train", "y_train", "task_train"):  # by indexing: tensors, and inputs read from files
            both = cat_inputs([getattr(a, name), getattr(b, name)])
            setattr(a, name, both[idx_a])
            setattr(b, name, both[idx_b])
    return stream


def foreign_share(stream: Stream) -> list[torch.Tensor]:
    """Per experience, a bool per training position: the sample there comes from another experience."""
    return [e.t_train != e.index for e in stream.experiences]


def class_order(n_classes: int, order: list[int] | None, shuffle: bool, seed: int) -> list[int]:
    """The order in which classes enter the stream: given, seeded shuffle, or natural."""
    if order is not None:
        order = [int(c) for c in order]
        if sorted(order) != list(range(n_classes)):
            raise ValueError(f"scenario.class_order={order} is not a permutation of 0..{n_classes - 1}")
        return order
    if shuffle:
        g = torch.Generator().manual_seed(seed)
        return torch.randperm(n_classes, generator=g).tolist()
    return list(range(n_classes))


def select_classes(x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples of `x`, `y` whose label is one of `classes`, in their order."""
    keep = torch.isin(y, torch.tensor(classes, dtype=y.dtype))
    return x[keep], y[keep]


def _relabel(y: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Position of each label in `classes` (domain-IL / multi-head targets)."""
    lut = torch.full((int(max(classes)) + 1,), -1, dtype=torch.int64)
    lut[torch.tensor(classes)] = torch.arange(len(classes))
    return lut[y]


def build_split(
    data: SourceData,
    n_experiences: int,
    incremental: str,
    multihead: bool = False,
    order: list[int] | None = None,
    shuffle_classes: bool = False,
    seed: int = 0,
) -> Stream:
    """Classes partitioned into `n_experiences` equal groups, in (seeded) class order."""
    C = data.n_classes
    if n_experiences < 1 or C % n_experiences:
        raise ValueError(f"scenario.n_experiences={n_experiences} must divide the {C} classes of {data.name}")
    k = C // n_experiences
    perm = class_order(C, order, shuffle_classes, seed)
    exps = []
    for t in range(n_experiences):
        cls = perm[t * k : (t + 1) * k]
        xtr, ytr = select_classes(data.x_train, data.y_train, cls)
        xte, yte = select_classes(data.x_test, data.y_test, cls)
        if incremental == "domain" or (incremental == "task" and multihead):
            ytr, yte, out = _relabel(ytr, cls), _relabel(yte, cls), list(range(k))
        else:
            out = list(cls)
        exps.append(Experience(t, list(cls), xtr, ytr, xte, yte, out))
    n_out = k if (incremental == "domain" or multihead) else C
    return Stream(f"split_{data.name}", incremental, exps, n_out, data.input_shape, multihead)


def _transformed_stream(data, n_experiences, incremental, multihead, transforms, name) -> Stream:
    """Every experience holds all classes, seen through its own input transform."""
    if is_lazy(data.x_train):
        raise ConfigError("scenario", name, f"split or protocol: scenario={name} transforms every input in memory "
                          f"and {data.name} is streamed from its files (dataset.in_memory=true decodes it into memory)")
    C = data.n_classes
    exps = []
    for t, fn in enumerate(transforms):
        offset = 0 if (incremental == "domain" or multihead) else t * C
        exps.append(
            Experience(
                t,
                list(range(C)),
                fn(data.x_train),
                data.y_train + offset,
                fn(data.x_test),
                data.y_test + offset,
                list(range(offset, offset + C)),
            )
        )
    n_out = C if (incremental == "domain" or multihead) else C * n_experiences
    return Stream(f"{name}_{data.name}", incremental, exps, n_out, data.input_shape, multihead)


def pixel_permutations(n_pixels: int, n_experiences: int, seed: int, first_identity: bool) -> list[torch.Tensor]:
    """One fixed, seeded pixel permutation per experience (the first optionally the identity)."""
    g = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(n_pixels, generator=g) for _ in range(n_experiences)]
    if first_identity:
        perms[0] = torch.arange(n_pixels)
    return perms


def build_permuted(data, n_experiences, incremental, multihead=False, seed=0, first_identity=True) -> Stream:
    """Permuted stream: the same permutation is applied to an experience's train and test inputs."""
    shape = data.input_shape
    n_pixels = math.prod(shape[-2:]) if data.is_image else shape[-1]
    perms = pixel_permutations(n_pixels, n_experiences, seed, first_identity)

    def make(p):
        def fn(x):
            flat = x.reshape(*x.shape[: x.dim() - (2 if data.is_image else 1)], n_pixels)
            return flat[..., p].reshape(x.shape)

        return fn

    return _transformed_stream(data, n_experiences, incremental, multihead, [make(p) for p in perms], "permuted")


def rotation_angles(n_experiences: int, angles: list[float] | None, max_angle: float) -> list[float]:
    """Given angles, or evenly spaced in [0, max_angle)."""
    if angles is not None:
        if len(angles) != n_experiences:
            raise ValueError(f"scenario.angles has {len(angles)} values for {n_experiences} experiences")
        return [float(a) for a in angles]
    return [i * max_angle / n_experiences for i in range(n_experiences)]


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate N×C×H×W images about their centre (bilinear, zero fill), in chunks."""
    if degrees % 360 == 0:
        return x
    from torchvision.transforms.functional import InterpolationMode
    from torchvision.transforms.functional import rotate as tv_rotate

    fill = float(x.min())  # the normalised value of a black pixel
    return torch.cat(
        [tv_rotate(c, degrees, InterpolationMode.BILINEAR, fill=[fill]) for c in x.split(4096)]
    )


def build_rotated(data, n_experiences, incremental, multihead=False, angles=None, max_angle=180.0) -> Stream:
    if not data.is_image:
        raise ValueError(f"scenario=rotated needs image inputs; {data.name} has flat features")
    degs = rotation_angles(n_experiences, angles, max_angle)
    fns = [lambda x, a=a: rotate(x, a) for a in degs]
    return _transformed_stream(data, n_experiences, incremental, multihead, fns, "rotated")


class Scenario:
    """A scenario turns a dataset (`SourceData`) into a `Stream`; built from `conf/scenario/*.yaml`.

    `seed` (null: the run's seed) draws the class order, permutations... ; `name` prefixes the
    stream's name; `use_first=k` keeps only the first k experiences (tuning on the first k, Chaudhry
    et al. 2019: the same classes, permutations and model as the whole stream, cut short).
    `boundaries`: `sharp`, or `blurry` (neighbouring experiences' training data mix near each boundary,
    `blur` the width: `blur_boundaries`, applied by the runner after the validation split is carved).
    `task_free`: the runner trains the stream as one continuous run without boundary events
    (clexp/core/runner.py). `outputs`: `all`, or `seen` (class-IL: the loss, the importances and the
    predictions use only the classes of the experiences seen so far, an expanding head: `Stream.seen_masks`).
    Subclasses check their own values when constructed (before any data is read).
    """

    ARGS = {"incremental": ("choice", INCREMENTAL), "n_experiences": ("int", {}),
            "seed": ("int", {"low": 0, "allow_none": True}), "use_first": ("int", {"allow_none": True}),
            "boundaries": ("choice", ("sharp", "blurry")),
            "blur": ("number", {"low": 0, "high": 1, "high_open": True}), "outputs": ("choice", OUTPUTS)}

    def __init__(self, incremental: str = "class", n_experiences: int = 5, seed: int | None = None,
                 name: str | None = None, use_first: int | None = None, boundaries: str = "sharp",
                 blur: float = 0.2, task_free: bool = False, outputs: str = "all"):
        check_args(Scenario.ARGS, incremental=incremental, n_experiences=n_experiences, seed=seed,
                   use_first=use_first, boundaries=boundaries, blur=blur, outputs=outputs)
        check(isinstance(task_free, bool), "task_free", task_free, "true or false")
        check(use_first is None or use_first <= n_experiences, "use_first", use_first,
              f"at most scenario.n_experiences ({n_experiences}), or null for the whole stream")
        self.incremental, self.n_experiences, self.seed = incremental, int(n_experiences), seed
        self.use_first = None if use_first is None else int(use_first)
        self.name = name or type(self).__name__.lower()
        self.boundaries, self.blur, self.task_free = boundaries, float(blur), bool(task_free)
        self.outputs = outputs

    def check_heads(self, multihead: bool) -> None:
        """One head per experience needs the task id: task-IL only (checked before data is read, too)."""
        if multihead and self.incremental != "task":
            raise ConfigError("model.multihead", True,
                              f"multi-head models need scenario.incremental=task (got {self.incremental})")

    def __call__(self, data: SourceData, multihead: bool = False, run_seed: int = 0) -> Stream:
        self.check_heads(multihead)
        stream = self.build(data, multihead, self.seed if self.seed is not None else run_seed)
        if self.use_first is not None:  # the first-k protocol: the same stream (and model), cut short
            stream.experiences = stream.experiences[: self.use_first]
        return stream

    def build(self, data: SourceData, multihead: bool, seed: int) -> Stream:
        raise NotImplementedError

    def check_classes(self, n_classes: int, dataset: str) -> None:
        """Check this scenario against a dataset of `n_classes` classes (before its data is read)."""


class Split(Scenario):
    """The classes partitioned into `n_experiences` equal groups, in (seeded) class order."""

    def __init__(self, incremental: str = "class", n_experiences: int = 5, class_order: list[int] | None = None,
                 shuffle_classes: bool = False, seed: int | None = None, name: str = "split",
                 use_first: int | None = None, boundaries: str = "sharp", blur: float = 0.2, task_free: bool = False,
                 outputs: str = "all"):
        super().__init__(incremental, n_experiences, seed, name, use_first, boundaries, blur, task_free, outputs)
        self.class_order = None if class_order is None else [int(c) for c in class_order]
        self.shuffle_classes = bool(shuffle_classes)

    def check_classes(self, n_classes: int, dataset: str) -> None:
        check(n_classes % self.n_experiences == 0, "n_experiences", self.n_experiences,
              f"a divisor of the {n_classes} classes of dataset={dataset}")
        if self.class_order is not None:
            check(sorted(self.class_order) == list(range(n_classes)), "class_order", self.class_order,
                  f"a permutation of 0..{n_classes - 1}")

    def build(self, data, multihead, seed):
        return build_split(data, self.n_experiences, self.incremental, multihead, self.class_order,
                           self.shuffle_classes, seed)


class Permuted(Scenario):
    """Every experience holds all classes behind its own fixed, seeded pixel permutation."""

    def __init__(self, incremental: str = "domain", n_experiences: int = 5, first_identity: bool = True,
                 seed: int | None = None, name: str = "permuted", use_first: int | None = None,
                 boundaries: str = "sharp", blur: float = 0.2, task_free: bool = False,
                 outputs: str = "all"):
        super().__init__(incremental, n_experiences, seed, name, use_first, boundaries, blur, task_free, outputs)
        self.first_identity = bool(first_identity)

    def build(self, data, multihead, seed):
        return build_permuted(data, self.n_experiences, self.incremental, multihead, seed, self.first_identity)


class Rotated(Scenario):
    """Every experience holds all classes rotated by its own fixed angle."""

    def __init__(self, incremental: str = "domain", n_experiences: int = 5, angles: list[float] | None = None,
                 max_angle: float = 180.0, seed: int | None = None, name: str = "rotated",
                 use_first: int | None = None, boundaries: str = "sharp", blur: float = 0.2, task_free: bool = False,
                 outputs: str = "all"):
        super().__init__(incremental, n_experiences, seed, name, use_first, boundaries, blur, task_free, outputs)
        if angles is not None and len(angles) != self.n_experiences:
            raise ConfigError("angles", list(angles), f"one angle per experience ({self.n_experiences})")
        check_number("max_angle", max_angle)
        self.angles = None if angles is None else [float(a) for a in angles]
        self.max_angle = float(max_angle)

    def build(self, data, multihead, seed):
        return build_rotated(data, self.n_experiences, self.incremental, multihead, self.angles, self.max_angle)
