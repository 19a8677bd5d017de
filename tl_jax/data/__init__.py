"""Data: TFDS sources (ours registered on import) -> grain pipelines -> host-local batches.

  dataset_info(domain_cfg, data_cfg) -> DatasetInfo
  build_train_iterator(data_cfg, *, tokenizer, image_size, seed, ...) -> grain iterator of
      {'target': batch[, 'source': batch]}, with get_state()/set_state()
  build_eval_batches(data_cfg, *, tokenizer, image_size, ...) -> {'target/test': EvalBatches}
  few_shot_draws(data_cfg, seed) -> [Draw]; start_lines(data_cfg, draws) -> lines a run prints
  training_examples(data_cfg, role, ...) -> one domain's training examples once, in order
"""

from tl_jax.data import builders  # registers bbc_news, digits, folder with TFDS
from tl_jax.data.errors import (BadExampleError, BatchSizeError, DataError, DatasetNotFoundError,
                                DatasetNotPreparedError, EmptyDatasetError)
from tl_jax.data.pipeline import (EvalBatches, active_roles, build_eval_batches,
                                  build_train_iterator, dataset_info, few_shot_draws,
                                  start_lines, training_examples, with_draws)
from tl_jax.data.sharding import host_batch_size, split_for_devices, to_global_arrays
from tl_jax.data.sources import DatasetInfo, data_source, get_builder

__all__ = [
    'BadExampleError', 'BatchSizeError', 'DataError', 'DatasetInfo', 'DatasetNotFoundError',
    'DatasetNotPreparedError', 'EmptyDatasetError', 'EvalBatches', 'build_eval_batches',
    'build_train_iterator', 'data_source', 'dataset_info', 'few_shot_draws', 'get_builder',
    'host_batch_size', 'start_lines', 'with_draws', 'active_roles', 'training_examples',
    'split_for_devices', 'to_global_arrays', 'builders',
]
