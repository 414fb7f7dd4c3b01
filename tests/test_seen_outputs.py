"""`scenario.outputs=seen` (class-IL with an expanding head, as Hsu et al. 2018's code): the loss, the
importances and the predictions of experience i use only the classes of experiences 0..i."""

import pytorch_lightning as pl
import torch

from clexp.core.runner import StreamRunner
from clexp.core.validation import validate
from clexp.methods.base import task_groups
from tests.conftest import FAST, compose

SEEN = [*FAST, "plots=false", "train.epochs=1", "train.val_fraction=0", "scenario.outputs=seen"]


def runner(tmp_path, overrides=()):
    cfg = compose([*SEEN, *overrides])
    return StreamRunner(cfg, tmp_path, parts=validate(cfg))


def test_seen_masks_grow_with_the_experiences(tmp_path):
    stream = runner(tmp_path).stream
    masks = stream.seen_masks
    assert masks.shape == (5, 10)
    for i in range(5):
        seen = sorted(c for e in stream.experiences[: i + 1] for c in e.output_classes)
        assert torch.nonzero(masks[i]).flatten().tolist() == seen == list(range(2 * (i + 1)))
    for incremental in ("task", "domain"):  # their outputs are already each experience's own
        assert runner(tmp_path / incremental, [f"scenario.incremental={incremental}"]).stream.seen_masks is None


def _head(module):
    return [p for n, p in module.model.named_parameters() if n.endswith("weight")][-1]


class HeadRows(pl.Callback):
    """The output layer's weight at each experience's start and end."""

    def __init__(self):
        self.start, self.end = [], []

    def on_train_start(self, trainer, pl_module):
        self.start.append(_head(pl_module).detach().clone())

    def on_train_end(self, trainer, pl_module):
        self.end.append(_head(pl_module).detach().clone())


def test_unseen_classes_get_no_gradient_and_are_never_predicted(tmp_path):
    rows = {}
    for outputs in ("seen", "all"):
        run, rows[outputs] = runner(tmp_path / outputs, [f"scenario.outputs={outputs}", "method=ewc",
                                                         "method.lam=10"]), HeadRows()
        run.callbacks.append(rows[outputs])
        res = run.run()
        if outputs == "seen":
            seen_res = res
    for i in range(5):  # experience i moves the rows of the classes seen so far, never those of later classes
        moved = (rows["seen"].end[i] != rows["seen"].start[i]).any(dim=1)
        assert moved[: 2 * (i + 1)].all() and not moved[2 * (i + 1):].any(), (i, moved)
    acc = seen_res["acc_matrix"]
    for i in range(5):  # a later experience's classes are never predicted: exactly 0 before they are trained
        assert all(acc[i][j] == 0.0 for j in range(i + 1, 5)), acc
    assert acc[0][0] > 0.9
    # the default trains every output from the first experience on
    assert (rows["all"].end[0] != rows["all"].start[0]).any(dim=1).all()


def test_importances_and_predictions_use_the_seen_outputs(tmp_path):
    """The output mask the estimators get (EWC, MAS, KFAC, EWC++ read it) and the module's predictions."""
    module, stream = (run := runner(tmp_path, ["method=ewc"])).module, run.stream
    module.experience.fill_(2)
    mask = module.output_mask(2)
    assert torch.nonzero(mask).flatten().tolist() == list(range(6))
    x, y = stream[2].x_train[:8], stream[2].y_train[:8]
    ((_, _, group_mask, share),) = list(task_groups(module, x, y, torch.full((8,), 2)))
    assert torch.equal(group_mask, mask) and share == 1.0
    with torch.no_grad():
        logits = module.eval()(x)
    assert torch.isinf(logits[:, 6:]).all() and torch.isfinite(logits[:, :6]).all()
    default = runner(tmp_path / "all", ["method=ewc", "scenario.outputs=all"]).module
    assert default.output_mask(2) is None
