"""Resume of a pretrained-backbone run: stopped inside experience 1 and resumed from its last stream
checkpoint, a partly trainable ResNet-18 (EWC on what trains, frozen BatchNorm in eval mode) and a
head on cached features end bit for bit where the uninterrupted runs end."""

import pytest
import torch

from tests.stop_resume import stopped_and_resumed
from tests.test_pretrained import QUIET, images, r18_state, torch_home  # noqa: F401 (fixtures)


@pytest.mark.parametrize("extra", [["model.trainable=last:1", "method=ewc", "method.fisher.max_samples=2"],
                                   ["model.trainable=head", "model.features_cache=true", "method=si"]],
                         ids=["last-block-ewc", "feature-cache-si"])
def test_stopped_pretrained_run_resumes_to_identical_results(tmp_path, torch_home, extra):  # noqa: F811
    data = images(tmp_path / "d.pt", n_train=16, n_test=8, size=16)
    base = [*QUIET, "model=torchvision", "model.weights=IMAGENET1K_V1", "model.image_size=16", "dataset=arrays",
            f"dataset.path={data}", "dataset.normalize=false", "scenario.n_experiences=2", "train.val_fraction=0",
            "train.epochs=3", "train.batch_size=4", "optimizer=sgd", "optimizer.momentum=0.9",
            "trainer.checkpoint_every_n_steps=4",
            *extra]
    # 6 steps per experience: step 11 lies inside experience 1, after its checkpoint
    full, resumed, state, a, b = stopped_and_resumed(base, tmp_path, 11)
    assert state["experience"] == 1 and not state["finished"] and state["point"]["step"] == 4
    assert full["acc_matrix"] == resumed["acc_matrix"] and full["metrics"] == resumed["metrics"]
    a, b = a["module"], b["module"]
    assert a.keys() == b.keys() and any("running_mean" in k for k in a)
    for k in a:  # weights, BatchNorm statistics, penalty buffers: bit for bit
        assert torch.equal(a[k], b[k]), k
