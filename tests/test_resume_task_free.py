"""Resume inside a task-free, blurry stream: a run stopped mid-experience and resumed from its last
stream checkpoint ends bit for bit where the uninterrupted run ends — the optimizer carried over the
experience ends, RWalk's running Fisher and path sums, and EWC's per-batch Fisher sums included."""

import pytest
import torch

from clexp.core import checkpoint
from clexp.core.runner import StreamRunner
from clexp.core.validation import validate
from tests.conftest import FAST, compose
from tests.stop_resume import Stop, StopAt

BASE = [*FAST, "model.hidden=[16]", "plots=false", "optimizer=adam", "optimizer.lr=0.01", "scenario.task_free=true",
        "train.iterations=60", "scenario.boundaries=blurry", "scenario.incremental=task",
        "trainer.checkpoint_every_n_steps=7", "eval.every_n_steps=5", "method.consolidate_every=9"]


RWALK = ["method=rwalk", "method.lam=1e-5", "method.fisher.variant=sampled"]
EWC = ["method=ewc", "method.fisher.variant=sampled"]


# step 33: inside experience 2 (steps 24..36), after its checkpoint at step 7 of it (31), before the
# consolidation at 36 (the per-batch sums since the one at 27 are in that checkpoint); step 26: the last
# checkpoint is the one after experience 1, whose optimizer state the next experience must go on with
@pytest.mark.parametrize("method,stop,last", [(RWALK, 33, 31), (EWC, 33, 31), (RWALK, 26, 24)],
                         ids=["rwalk-mid", "ewc-mid", "rwalk-boundary"])
def test_stopped_task_free_run_resumes_to_identical_results(tmp_path, method, stop, last):
    cfg = compose([*BASE, *method])
    full = StreamRunner(cfg, tmp_path / "full", parts=validate(cfg)).run()
    cfg = compose([*BASE, *method])
    with pytest.raises(Stop):
        StreamRunner(cfg, tmp_path / "stopped", parts=validate(cfg), extra_callbacks=[StopAt(stop)]).run()
    state = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "stopped"))
    assert state["steps"] + (0 if state["finished"] else state["point"]["step"]) == last
    cfg = compose([*BASE, *method])
    resumed = StreamRunner(cfg, tmp_path / "stopped", parts=validate(cfg), resume=state).run()
    assert full["acc_matrix"] == resumed["acc_matrix"] and full["metrics"] == resumed["metrics"]
    assert full["anytime"]["acc"] == resumed["anytime"]["acc"]
    a = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "full"))
    b = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "stopped"))
    for k in a["module"]:  # weights and every penalty buffer, bit for bit
        assert torch.equal(a["module"][k], b["module"][k]), k
    for sa, sb in zip(a["optimizers"][0]["state"].values(), b["optimizers"][0]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
