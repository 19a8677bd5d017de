"""tl_jax: transfer learning research in JAX.

Layers, lowest first (a module imports only its own folder or a lower layer; tests/test_layout.py
checks it):

  errors.py    TlJaxError, the base of every user-facing error.
  machine_load.py  Is the machine quiet enough to time on? (every benchmark prints it)
  config.py    Every config key and default, its checks, loading config files (no jax).
  extras.py    Optional packages and the error that names their extra.
  data/        TFDS builders, grain pipelines and sharding: config -> batches.
  models/      Flax BERT and ViT with HF-named params, heads, LoRA, loading, forward and export.
  report.py    An experiment's outputs: table, results, plots.
  pieces.py    A config's dataset facts, model, params and tokenizer, built one way everywhere.
  methods/     In-step objectives: the registry and joint loss, one file per transfer method.
  train/       Freezing, optimizer, the jitted step, the loop, checkpoints, metrics.
  analysis/    Offline tools on a backbone: features, probes, few-shot, selection, UDA scores.
  sweep/       Grids of runs as subprocesses, their results and tables over seeds.
  harness.py   What the experiments/ scripts share: flags, environment, seeds through sweeps.
  summary.py   `tl-jax info`.
  main.py      The `tl-jax` command line.
"""

__version__ = "0.1.0"
