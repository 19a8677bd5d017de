"""MetricsWriter (metrics.jsonl, console, TensorBoard), device scalars, eval results, early
stopping."""

import io
import json
import struct

import jax.numpy as jnp
import numpy as np
import pytest

from tl_jax.train import metrics as metrics_lib


def _lines(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def _tensorboard_scalars(directory):
  """{tag: [(step, value)]} from the event files (TFRecord framing; no TensorFlow)."""
  from tensorboardX.proto import event_pb2
  scalars = {}
  for path in sorted(directory.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


def test_jsonl_console_and_tensorboard(tmp_path):
  stream = io.StringIO()
  writer = metrics_lib.MetricsWriter(tmp_path, total_steps=100, examples_per_step=32,
                                     enabled=True, stream=stream)
  writer.log_train(10, {"loss": jnp.float32(0.5), "lr": np.float64(1e-3)})
  with writer.paused():
    writer.log_eval(10, {"target/test/accuracy": jnp.float32(0.75),
                         "target/test/loss": np.float64(0.2)})
  writer.log_train(20, {"loss": jnp.float32(jnp.nan)})

  train, evaluated, nan_step = _lines(tmp_path / "metrics.jsonl")  # flushed before close
  assert train["step"] == 10 and isinstance(train["step"], int)
  assert train["loss"] == 0.5 and train["lr"] == pytest.approx(1e-3)
  assert isinstance(train["examples_per_sec"], float) and train["examples_per_sec"] > 0
  assert evaluated == {"step": 10, "target/test/accuracy": 0.75, "target/test/loss": 0.2}
  assert nan_step["loss"] is None  # JSON has no NaN: null, and the file stays strict JSON

  console = stream.getvalue().splitlines()
  assert console[0].startswith("step 10/100  loss 0.5000") and "examples/sec  ETA" in console[0]
  assert console[1].startswith("eval @ step 10: target/test/accuracy 0.7500")
  assert "\r" not in stream.getvalue()  # not a TTY: plain lines

  writer.close()
  scalars = _tensorboard_scalars(tmp_path / "tensorboard")
  assert scalars["loss"] == [(10, 0.5)]  # the NaN is not plotted
  assert scalars["target/test/accuracy"] == [(10, 0.75)]


def test_progress_bar_on_a_tty(tmp_path):
  stream = io.StringIO()
  writer = metrics_lib.MetricsWriter(tmp_path, total_steps=40, examples_per_step=8, enabled=True,
                                     tensorboard=False, stream=stream, progress_bar=True)
  writer.log_train(10, {"loss": 1.0})
  writer.log_train(20, {"loss": 0.5})
  writer.log_text("stage 1: unfreezing encoder/layer/5")
  writer.close()
  text = stream.getvalue()
  assert text.startswith("\r10/40 [#####...............] loss 1.0000")
  assert "\r20/40 [##########..........] loss 0.5000" in text
  assert text.endswith("\nstage 1: unfreezing encoder/layer/5\n")


def test_resume_drops_lines_past_the_restored_step(tmp_path):
  writer = metrics_lib.MetricsWriter(tmp_path, total_steps=200, enabled=True, tensorboard=False,
                                     stream=io.StringIO())
  for step in range(10, 130, 10):
    writer.log_train(step, {"loss": 1.0 / step})
    if step % 50 == 0:
      writer.log_eval(step, {"target/validation/accuracy": 0.5})
  writer.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 130, "lo')  # killed mid-write

  # Crash at step 120, last checkpoint at 100: steps 101..120 run again.
  writer = metrics_lib.MetricsWriter(tmp_path, total_steps=200, enabled=True, tensorboard=False,
                                     stream=io.StringIO(), resume_step=100)
  kept = _lines(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in kept] == [10, 20, 30, 40, 50, 50, 60, 70, 80, 90, 100, 100]
  writer.log_train(110, {"loss": 0.25})
  writer.close()
  steps = [r["step"] for r in _lines(tmp_path / "metrics.jsonl")]
  assert steps[-3:] == [100, 100, 110] and steps.count(110) == 1

  # A fresh start (no checkpoint) keeps nothing of an earlier attempt.
  metrics_lib.MetricsWriter(tmp_path, total_steps=200, enabled=True, tensorboard=False,
                            stream=io.StringIO(), resume_step=None).close()
  assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_only_the_writing_process_writes(tmp_path):
  stream = io.StringIO()
  writer = metrics_lib.MetricsWriter(tmp_path / "run", total_steps=10, enabled=False,
                                     stream=stream)
  record = writer.log_train(1, {"loss": jnp.float32(2.0)})
  writer.log_eval(1, {"target/test/accuracy": 1.0})
  writer.close()
  assert record["loss"] == 2.0
  assert not (tmp_path / "run").exists() and stream.getvalue() == ""


def test_metric_values_must_be_scalars(tmp_path):
  writer = metrics_lib.MetricsWriter(tmp_path, total_steps=10, enabled=True, tensorboard=False,
                                     stream=io.StringIO())
  with pytest.raises(ValueError, match=r"'loss' has shape \(8,\)"):
    writer.log_train(1, {"loss": jnp.ones(8)})  # e.g. a pmapped value, one per device
  writer.close()


def test_device_scalars_are_read_to_floats_in_one_place():
  # pmap returns one copy per device: the first is read; shard_map returns one copy.
  metrics = {"loss": jnp.array([0.5, 0.5]), "is_finite": jnp.float32(1), "lr": np.float64(1e-3)}
  host = metrics_lib.to_host_floats(metrics)
  assert host == {"loss": 0.5, "is_finite": 1.0, "lr": pytest.approx(1e-3)}
  assert all(type(v) is float for v in host.values())
  assert metrics_lib.scalar(jnp.array([[2.0], [2.0]]), replicated=True) == 2.0
  with pytest.raises(ValueError, match=r"'loss' has shape \(2,\)"):
    metrics_lib.scalar(metrics["loss"], "loss")  # not declared replicated: a mistake


def test_eval_results_sum_every_batch_of_every_split():
  """The loop's one eval path (evaluate_params -> step.summarize_eval) over eval-step sums."""
  from tl_jax.train import loop

  class Core:  # eval_step's output: psum'd sums, replicated per device under pmap
    domains = []

    def eval_step(self, params, batch, domain):
      del params
      self.domains.append(domain)
      return batch

  evals = {
      "source/validation": [
          {"correct": jnp.array([3.0, 3.0]), "count": jnp.array([4.0, 4.0]),
           "loss_sum": jnp.array([1.2, 1.2])},
          {"correct": jnp.float32(1), "count": jnp.float32(2), "loss_sum": jnp.float32(0.6)}],
      "target/test": [{"correct": np.float32(0), "count": np.float32(5),
                       "loss_sum": np.float32(5.0)}],
  }
  results = loop.evaluate_params(Core(), None, evals)
  assert results == {"source/validation/accuracy": pytest.approx(4 / 6),
                     "source/validation/loss": pytest.approx(1.8 / 6),
                     "target/test/accuracy": 0.0, "target/test/loss": 1.0}
  assert all(type(v) is float for v in results.values())
  assert Core.domains == ["source", "source", "target"]


def test_early_stopping_patience_and_resume():
  stopper = metrics_lib.EarlyStopping("target/validation/accuracy", patience=2)
  history = [0.5, 0.6, 0.6, 0.55, 0.7]
  decisions = [stopper.update(10 * (i + 1), {"target/validation/accuracy": v})
               for i, v in enumerate(history[:4])]
  assert decisions == [False, False, False, True]
  assert (stopper.best, stopper.best_step) == (0.6, 20)

  # The state goes through the checkpoint's JSON meta and back.
  saved = json.loads(json.dumps(stopper.state_dict()))
  resumed = metrics_lib.EarlyStopping("target/validation/accuracy", patience=3)
  resumed.load_state_dict(saved)
  assert not resumed.should_stop and resumed.evals_without_improvement == 2
  assert not resumed.update(50, {"target/validation/accuracy": 0.7})
  assert resumed.evals_without_improvement == 0 and resumed.best_step == 50

  loss = metrics_lib.EarlyStopping("target/validation/loss", patience=1, mode="min", min_delta=0.05)
  assert not loss.update(1, {"target/validation/loss": 1.0})
  assert loss.update(2, {"target/validation/loss": 0.97})  # not better by more than min_delta

  off = metrics_lib.EarlyStopping("target/validation/accuracy", patience=0)
  assert not any(off.update(i, {"target/validation/accuracy": 0.1}) for i in range(10))
  with pytest.raises(ValueError, match="'target/validation/accuracy' is not among"):
    off.update(11, {"target/test/accuracy": 0.1})
