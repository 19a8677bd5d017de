"""Unsupervised DA validation of the digits -> digits/rotated DA table: every run of
experiments/da_table.py scored without target labels (IWV, DEV, −entropy, SND, source val acc),
against the oracle target test accuracy.

Run:   python experiments/da_table.py            (once: the runs under runs/da_table/runs)
       python experiments/da_validation.py --config=configs/da_validation_digits.py \\
           [--out=runs/da_validation]
Measured (2 busy CPU cores, ~1 min for 27 runs: the 9 DA-table methods x 3 seeds present in
runs/da_table/runs at the time; per-run scores in runs/da_validation/table.md):
  | score          | Spearman ρ vs oracle | picks               | its target acc | oracle best    |
  | source val acc | +0.374               | mdd_s1              | 0.230          | coral_s2 0.385 |
  | −IWV (CE)      | -0.173               | importance_kliep_s1 | 0.156          | coral_s2 0.385 |
  | −IWV (0-1)     | -0.147               | importance_kliep_s0 | 0.219          | coral_s2 0.385 |
  | −DEV (CE)      | -0.334               | importance_kliep_s0 | 0.219          | coral_s2 0.385 |
  | −entropy       | -0.213               | importance_kmm_s2   | 0.126          | coral_s2 0.385 |
  | SND            | -0.744               | importance_kmm_s2   | 0.126          | coral_s2 0.385 |
Only source validation accuracy ranks the runs better than chance. Upright and rotated digits
are almost separable, so the domain classifier's ratio is extreme (Kish effective sample size
of w: 2-85 of the 269 source validation images) and IWV/DEV rest on a handful of examples;
with domain_classifier_c=0.01 (median ESS 63) IWV/DEV go to ρ ≈ -0.02. Entropy and SND reward
confident or collapsed predictions: they pick KMM runs that are near chance on the target.
"""

import ml_collections as mlc

from tl_jax.analysis import uda_validation


def get_config(arg=None):
  del arg
  config = mlc.ConfigDict()
  config.transfer = mlc.ConfigDict()
  config.transfer.uda_validation = uda_validation.default_config()
  return config
