"""TrAdaBoost, few labelled target examples: digits (labelled source) -> digits/rotated with
5 labelled images per class, on frozen features of the ViT pre-trained on digits/original.

Run:   python experiments/tradaboost.py --config=configs/tradaboost_digits.py \\
           [--out=runs/tradaboost]
       (pre-trains the ViT with experiments/freezing_benchmark.py's code when
       runs/freezing_benchmark/pretrain/vit_digits/export is missing, ~1 min; features are
       cached under runs/feature_cache)
Measured (2 busy CPU cores, 9 s with cached features; 64-d CLS features of the 4-layer ViT
pre-trained on digits/original (90.7% there); 1258 labelled source, 5 x 10 labelled target,
270 target test images; seeds = k-shot draws 0, 1, 2; every classifier is the same weighted
softmax regression, 300 Adam steps, features standardised with source statistics):
  | method                                               | target test acc | per seed            |
  | Target only (k-shot probe)                           | 0.483 ± 0.017   | 0.481, 0.463, 0.504 |
  | Source only probe                                    | 0.204 ± 0.000   | 0.204, 0.204, 0.204 |
  | Source + target pooled probe                         | 0.269 ± 0.011   | 0.259, 0.263, 0.285 |
  | TrAdaBoost (uniform start, as the paper)             | 0.296 ± 0.016   | 0.274, 0.304, 0.311 |
  | TrAdaBoost (target starts with share 0.5 of weight)  | 0.440 ± 0.040   | 0.415, 0.407, 0.496 |
With the paper's uniform start the 50 target images hold 4% of the weight, every round's
learner has weighted target error >= 1/2 (clipped to 0.499, so the target weights hardly move)
and TrAdaBoost stays near pooling. With a balanced start the errors fall to 0.003-0.26 and the
source weight fades to ~0, yet it stays under target-only: on these features the rotated
domain gains nothing from the upright source.
"""

from tl_jax.config import base_config
from tl_jax.analysis import tradaboost

PRETRAINED_VIT = 'runs/freezing_benchmark/pretrain/vit_digits/export'


def get_config(arg=None):
  del arg
  config = base_config()
  config.model.name = PRETRAINED_VIT
  config.model.init = 'pretrained'
  config.model.pooling = 'cls'  # as it was pre-trained (configs/sweeps/vit_digits_pretrain.py)
  config.model.dropout_rate = 0.0
  config.model.attention_dropout_rate = 0.0
  config.data.source.name = 'digits'
  config.data.target.name = 'digits/rotated'
  config.data.eval_batch_size = 256
  config.transfer.tradaboost = tradaboost.default_config()
  return config
