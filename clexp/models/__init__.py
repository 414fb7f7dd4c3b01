"""Models: backbones with a single head, or one head per experience for task-IL (`multihead=true`).

The model contract — what clexp's models follow and what your own model must follow
-----------------------------------------------------------------------------------------
A model is a config node in the `model` group (`conf/model/*.yaml`) whose `_target_` is a factory
(a function or a class). The runner builds it with

    instantiate(cfg.model, input_shape=stream.input_shape, n_outputs=stream.n_outputs,
                n_experiences=len(stream))

so the factory receives, as keyword arguments:

- `input_shape`: the shape of ONE input, without the batch dimension (`(C, H, W)` for images,
  `(D,)` for flat features);
- `n_outputs`: the outputs of the head (class-IL: every class of the stream; domain-IL: the classes
  of one experience; task-IL: every class of the stream when a shared head is masked, the classes
  of one experience with `multihead=true`);
- `n_experiences`: the number of experiences of the stream;
- every key of its config node, none stripped: its own hyper-parameters and the two keys every
  model config has,
  - `multihead: bool = False`: one head per experience (`n_heads == n_experiences`) when true,
    else one head (`n_heads == 1`); true only in task-IL (validated before the run);
  - `freeze_norm_stats: bool = False`: stored as the attribute of the same name (below).

It returns an `nn.Module` with:

- `forward(x, task=None) -> logits`: `x` a batch `N × input_shape`; `task` a LongTensor of `N`
  task ids (the experience each sample belongs to), a Python int, or None (then `active_task`).
  It returns the RAW logits `N × n_outputs` of each sample's head: no softmax, no task mask
  (`ContinualModule` masks a shared head to the experience's outputs in task-IL). A single-head
  model ignores `task`.
- `features`: the submodule mapping `x` to the representation the head(s) read; `forward` calls it
  exactly once. LwF with several heads records its output with a forward hook during the training
  step, instead of running the backbone a second time.
- `n_heads`: 1, or `n_experiences` with `multihead=true`.
- `head` (when `n_heads == 1`), or `heads` (an `nn.ModuleList` of `n_heads` modules, indexed by
  task id: experience k's head is `heads[k]`, its parameters `heads.k.*`); each maps the features
  to `n_outputs` logits and has `out_features` (an `nn.Linear`). LwF reads them; quadratic methods
  only see `named_parameters()`.
- `active_task`: an int attribute, the head `forward` uses when `task` is None. The runner sets it
  to the experience being trained before each experience (estimators such as the Fisher call
  `model(x)` alone, on that experience's data).
- `freeze_norm_stats`: a bool attribute. When true, `ContinualModule` trains every normalisation
  layer with running statistics (BatchNorm, InstanceNorm with `track_running_stats`) in eval mode
  from the second experience on: the statistics stay those of the first experience (the affine
  parameters still train), so the network the penalty protects is the one that is evaluated.

Optionally `prepare_inputs(x) -> x'`: what a batch of raw inputs needs before `forward` (pretrained
backbones: the weights' resize and normalisation, and with the feature cache the frozen backbone). The
runner applies it once to every experience's stored tensors before training, or, for images streamed from
files, the loader's workers to each decoded image (clexp/models/pretrained.py); `forward` then takes the
prepared inputs.

`ContinualClassifier(features, feature_dim, n_outputs, n_heads, freeze_norm_stats)` implements all
of it around any backbone: a factory of your own can build its backbone and return that.
"""

from clexp.models.cnn import CNN
from clexp.models.heads import ContinualClassifier
from clexp.models.mlp import MLP
from clexp.models.resnet import ResNet18

__all__ = ["CNN", "MLP", "ContinualClassifier", "ResNet18"]
