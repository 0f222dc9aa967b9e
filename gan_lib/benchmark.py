"""Speed measurement of the train step against a Keras baseline and the machine's peak.

`run_benchmark` times `gan_lib.train_step` in several precision and XLA modes,
the same DCGAN written with stock Keras layers (`gan_lib.keras_baseline`), a
large matrix product and the step's heaviest convolution (the peak yardsticks),
and the input pipeline alone. It returns one JSON-ready dict that
`format_markdown` turns into tables. `examples/benchmark.py` is its command line.

FLOPs of one train step are counted by hand from the layer shapes
(`train_step_flops`) and checked against the convolutions and matrix products
of the traced graph (`count_graph_flops`). TensorFlow 2.21 has no Python API
for XLA's cost analysis, so the count does not come from XLA.
"""

import dataclasses
import json
import math
import os
import platform
import statistics
import time
from typing import Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from gan_lib import data
from gan_lib import devices
from gan_lib import io_utils
from gan_lib import keras_baseline
from gan_lib import train_step

# Train step modes: name -> (precision, jit_compile). `resolve_mode` resolves "auto"
# the way `gan_lib.training` resolves the defaults of `examples/train_gan.py`.
MODES = ("graph", "xla", "bf16", "xla_bf16", "auto")
_FIXED_MODES = {
    "graph": ("float32", False),
    "xla": ("float32", True),
    "bf16": ("mixed_bfloat16", False),
    "xla_bf16": ("mixed_bfloat16", True),
}
BASELINE_MODES = {"keras_float32": "float32", "keras_mixed_bfloat16": "mixed_bfloat16"}

# Op types whose multiply-accumulates `count_graph_flops` counts.
_COUNTED_OP_TYPES = ("MatMul", "Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")
_KERNEL_SIZE = 5
_CPU_FLAGS_REPORTED = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
# The input pipeline should deliver images at least this many times faster than the
# fastest train step consumes them, so it never makes the step wait.
PIPELINE_TARGET_RATIO = 10.0


class BenchmarkSettingsError(ValueError):
  """A benchmark setting that is out of range. The message names the flag."""


@dataclasses.dataclass
class BenchmarkSettings:
  """Settings of a benchmark run: what `run_benchmark` measures and for how long.

  Attributes:
    batch_sizes: images per train step. Every mode is timed at each.
    modes: train step modes from `MODES`.
    warmup_steps: untimed steps before the timed runs, which include tracing and
      compilation.
    timed_steps: steps per timed run.
    repeats: timed runs per mode and batch size.
    skip_baseline: whether to skip the Keras baseline.
    baseline_modes: Keras baseline modes from `BASELINE_MODES` to time.
    skip_peak: whether to skip the matmul and convolution peak measurements.
    skip_pipeline: whether to skip the input pipeline measurement.
    peak_matmul_size: N of the N x N matrix product of the peak measurement.
    peak_conv_batch_size: batch of the peak measurement's transposed convolution.
    peak_seconds: minimum timed seconds per peak kernel and dtype.
    pipeline_batches: timed batches of the input pipeline measurement, at most
      one epoch's batches after the warm-up ones.
    pipeline_warmup_batches: untimed batches first, which include filling the
      shuffle buffer.
    noise_dim: size of the generator's noise vector.
    width: channel width of both networks.
    seed: seed of the weights, the noise and the synthetic batches.
    data_dir: TFDS data dir of the prepared `mnist` data set (None: TFDS's default).
  """

  batch_sizes: tuple = (256,)
  modes: tuple = MODES
  warmup_steps: int = 3
  timed_steps: int = 10
  repeats: int = 3
  skip_baseline: bool = False
  baseline_modes: tuple = tuple(BASELINE_MODES)
  skip_peak: bool = False
  skip_pipeline: bool = False
  peak_matmul_size: int = 2048
  peak_conv_batch_size: int = 256
  peak_seconds: float = 2.0
  pipeline_batches: int = 100
  pipeline_warmup_batches: int = 3
  noise_dim: int = 100
  width: int = 64
  seed: int = 0
  data_dir: Optional[str] = None

  def validate(self):
    """Raises BenchmarkSettingsError naming the first invalid field, its value and the range."""
    if not self.batch_sizes:
      raise BenchmarkSettingsError("--batch_sizes is missing: expected whole numbers >= 1")
    for batch_size in self.batch_sizes:
      if not _is_integer(batch_size) or batch_size < 1:
        raise BenchmarkSettingsError(
            f"--batch_sizes={_join(self.batch_sizes)!r} is invalid: expected whole numbers "
            f">= 1, got {batch_size!r}")
    _check_modes(self.modes)
    unknown = [mode for mode in self.baseline_modes if mode not in BASELINE_MODES]
    if unknown or not self.baseline_modes:
      raise BenchmarkSettingsError(
          f"--baseline_modes={','.join(self.baseline_modes)!r} is invalid: expected a "
          f"comma-separated list of {', '.join(BASELINE_MODES)}")
    for name in ("warmup_steps", "timed_steps", "repeats", "peak_matmul_size",
                 "peak_conv_batch_size", "pipeline_batches", "pipeline_warmup_batches",
                 "noise_dim", "width"):
      _check_integer(name, getattr(self, name), minimum=1)
    _check_integer("seed", self.seed, minimum=0)
    if (isinstance(self.peak_seconds, bool) or not isinstance(self.peak_seconds, (int, float))
        or not self.peak_seconds > 0):
      raise BenchmarkSettingsError(
          f"--peak_seconds={self.peak_seconds!r} is invalid: expected a number of seconds > 0")


def _is_integer(value):
  return isinstance(value, int) and not isinstance(value, bool)


def _join(values):
  return ",".join(str(value) for value in values)


def _check_integer(name, value, minimum):
  if not _is_integer(value) or value < minimum:
    raise BenchmarkSettingsError(
        f"--{name}={value!r} is invalid: expected a whole number >= {minimum}")


def _check_modes(modes):
  expected = f"expected a comma-separated list of {', '.join(MODES)}"
  if not modes:
    raise BenchmarkSettingsError(f"--modes is missing: {expected}")
  for mode in modes:
    if mode not in MODES:
      raise BenchmarkSettingsError(
          f"--modes={_join(modes)!r} is invalid: unknown mode {mode!r}, {expected}")
  if len(set(modes)) != len(modes):
    raise BenchmarkSettingsError(
        f"--modes={_join(modes)!r} is invalid: a mode is listed more than once")


def parse_batch_sizes(values):
  """Converts the strings of a `--batch_sizes` list flag to a tuple of ints.

  Raises:
    BenchmarkSettingsError: if a value is not a whole number. `validate` checks the range.
  """
  batch_sizes = []
  for value in values:
    try:
      batch_sizes.append(int(value))
    except ValueError:
      raise BenchmarkSettingsError(
          f"--batch_sizes={_join(values)!r} is invalid: expected whole numbers >= 1, "
          f"got {value!r}") from None
  return tuple(batch_sizes)


def check_output_path(path):
  """Raises BenchmarkSettingsError unless `path` can be written as a file (its folder exists)."""
  if not path:
    raise BenchmarkSettingsError("--output_json is missing: expected a file path")
  if os.path.isdir(path):
    raise BenchmarkSettingsError(
        f"--output_json={path!r} is invalid: it is a folder, expected a file path")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise BenchmarkSettingsError(
        f"--output_json={path!r} is invalid: the folder {folder!r} does not exist")


def resolve_mode(mode):
  """Returns (precision, jit_compile) of a mode in `MODES`.

  "auto" is what `devices.resolve_precision("auto")` and
  `devices.resolve_jit_compile("auto")` pick on this machine, the library's default.
  """
  if mode == "auto":
    return devices.resolve_precision("auto"), devices.resolve_jit_compile("auto")
  if mode not in _FIXED_MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  return _FIXED_MODES[mode]


# FLOP counting.


def layer_forward_macs(noise_dim=100, width=64):
  """Returns the multiply-accumulates (MACs) of each layer's forward pass for one image.

  A dense layer does inputs * outputs MACs. A 5x5 convolution does
  output_pixels * 25 * input_channels * output_channels, and a 5x5 transposed
  convolution input_pixels * 25 * input_channels * output_channels. Both count
  every kernel tap, including taps on SAME padding. Biases, batch norm,
  activations and dropout are elementwise and not counted.
  """
  taps = _KERNEL_SIZE * _KERNEL_SIZE
  return {
      "generator/project": noise_dim * 7 * 7 * 4 * width,
      "generator/upsample1": 7 * 7 * taps * (4 * width) * (2 * width),
      "generator/upsample2": 7 * 7 * taps * (2 * width) * width,
      "generator/to_image": 14 * 14 * taps * width * 1,
      "discriminator/conv1": 14 * 14 * taps * 1 * width,
      "discriminator/conv2": 7 * 7 * taps * width * (2 * width),
      "discriminator/logit": 7 * 7 * 2 * width * 1,
  }


def train_step_macs_per_image(noise_dim=100, width=64):
  """Returns the MACs of one train step per image of the batch, counted from layer shapes.

  With G = the generator's layers, D = the discriminator's, and B images:

  - forward: G on B noise vectors, D on B real and B generated images (2B).
  - discriminator loss backward: weight gradients of every D layer on 2B images
    (as many MACs as the forward pass), and input gradients of conv2 and logit
    on 2B. conv1 needs no input gradient because no source lies below it.
  - generator loss backward: input gradients of every D layer on the B generated
    images, weight gradients of every G layer on B, and input gradients of every
    G layer except the first dense one, whose input is the noise.

  Per image that is 2 * project + 3 * (upsample1 + upsample2 + to_image) +
  5 * conv1 + 7 * (conv2 + logit). One MAC is two FLOPs.
  """
  macs = layer_forward_macs(noise_dim, width)
  generator_convolutions = (macs["generator/upsample1"] + macs["generator/upsample2"]
                            + macs["generator/to_image"])
  return (2 * macs["generator/project"] + 3 * generator_convolutions
          + 5 * macs["discriminator/conv1"]
          + 7 * (macs["discriminator/conv2"] + macs["discriminator/logit"]))


def train_step_flops(batch_size, noise_dim=100, width=64):
  """Returns the FLOPs of one train step on `batch_size` images (2 per MAC, see above)."""
  return 2 * batch_size * train_step_macs_per_image(noise_dim, width)


def _live_operations(graph):
  """Returns the ops that run when the function runs: those its outputs or side effects need.

  Gradient functions build ops whose results no other op uses (such as the filter
  gradient of a layer whose weights are not a source). The function runtime
  prunes them, so they must not be counted.
  """
  pending = [tensor.op for tensor in graph.outputs] + list(graph.control_outputs)
  live = {}
  while pending:
    operation = pending.pop()
    if operation.name in live:
      continue
    live[operation.name] = operation
    pending.extend(tensor.op for tensor in operation.inputs)
    pending.extend(operation.control_inputs)
  return list(live.values())


def _static_shape(tensor, operation):
  if not tensor.shape.is_fully_defined():
    raise ValueError(
        f"{operation.name} ({operation.type}) has a shape that is not fully known: {tensor.shape}")
  return tensor.shape.as_list()


def _operation_macs(operation):
  """Returns the MACs of one MatMul or NHWC convolution op from its static shapes."""
  if operation.type == "MatMul":
    a_shape = _static_shape(operation.inputs[0], operation)
    inner = a_shape[0] if operation.get_attr("transpose_a") else a_shape[1]
    return math.prod(_static_shape(operation.outputs[0], operation)) * inner
  if operation.get_attr("data_format") != b"NHWC":
    raise ValueError(f"{operation.name}: only NHWC convolutions are counted")
  # Kernels are [height, width, in, out] in the forward convolution's terms, and
  # MACs = that convolution's output elements * height * width * in.
  if operation.type == "Conv2D":
    kernel = _static_shape(operation.inputs[1], operation)
    forward_output = _static_shape(operation.outputs[0], operation)
  else:
    # Both backprop ops take the forward convolution's output gradient as input 2.
    kernel_tensor = (operation.inputs[1] if operation.type == "Conv2DBackpropInput"
                     else operation.outputs[0])
    kernel = _static_shape(kernel_tensor, operation)
    forward_output = _static_shape(operation.inputs[2], operation)
  return math.prod(forward_output) * kernel[0] * kernel[1] * kernel[2]


def count_graph_flops(concrete_function):
  """Counts the FLOPs of the matrix products and convolutions a traced function runs.

  Counts the live MatMul, Conv2D, Conv2DBackpropInput and Conv2DBackpropFilter
  ops of the function's graph, at 2 FLOPs per MAC. Ops inside nested function
  calls (such as `tf.cond` branches) are not counted, and neither is
  elementwise work.

  Args:
    concrete_function: a traced `tf.function`, e.g. from `get_concrete_function`.

  Returns:
    FLOPs as an int.

  Raises:
    ValueError: if a counted op has a shape that is not fully known.
  """
  total_macs = 0
  for operation in _live_operations(concrete_function.graph):
    if operation.type not in _COUNTED_OP_TYPES:
      continue
    total_macs += _operation_macs(operation)
  return 2 * total_macs


# Timing.


def _spread(values):
  return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def make_synthetic_batches(batch_size, count=4, seed=0):
  """Returns `count` float32 batches [batch_size, 28, 28, 1] of uniform noise in [-1, 1].

  The train step's FLOPs do not depend on the pixel values, so the timing feeds
  these pre-made batches in a cycle and leaves the input pipeline out.
  """
  rng = np.random.default_rng(seed)
  return [tf.constant(rng.uniform(-1.0, 1.0, size=(batch_size, 28, 28, 1)), tf.float32)
          for _ in range(count)]


def time_train_step(step, batches, warmup_steps, timed_steps, repeats):
  """Times a train step: warm-up steps first, then `repeats` runs of `timed_steps` steps.

  Each run ends by reading the discriminator loss as a Python float, which
  waits for the last step to finish.

  Args:
    step: a callable mapping a batch to a dict with a `discriminator_loss` scalar.
    batches: the batches fed in a cycle, all of the same size.
    warmup_steps: untimed steps, which include tracing and compilation.
    timed_steps: steps per timed run.
    repeats: number of timed runs.

  Returns:
    A dict: `steps_per_second` and `images_per_second` as {median, min, max}
    over the runs, `run_seconds`, `warmup_seconds` and the last
    `discriminator_loss`.
  """
  if min(warmup_steps, timed_steps, repeats) < 1:
    raise ValueError(f"warmup_steps, timed_steps and repeats must be at least 1, got "
                     f"{warmup_steps}, {timed_steps} and {repeats}")
  batch_size = int(batches[0].shape[0])
  start = time.perf_counter()
  for index in range(warmup_steps):
    metrics = step(batches[index % len(batches)])
  float(metrics["discriminator_loss"])
  warmup_seconds = time.perf_counter() - start

  run_seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    for index in range(timed_steps):
      metrics = step(batches[index % len(batches)])
    last_loss = float(metrics["discriminator_loss"])
    run_seconds.append(time.perf_counter() - start)

  steps_per_second = [timed_steps / seconds for seconds in run_seconds]
  return {
      "steps_per_second": _spread(steps_per_second),
      "images_per_second": _spread([rate * batch_size for rate in steps_per_second]),
      "run_seconds": run_seconds,
      "warmup_seconds": warmup_seconds,
      "discriminator_loss": last_loss,
  }


# Peak yardsticks.


def _time_calls(function, arguments, flops_per_call, min_seconds, warmup_calls=3, min_calls=3):
  """Times calls of `function` for at least `min_seconds` and returns GFLOP/s, best and median.

  The warm-up calls are not timed: the first traces the function, and the next
  ones can still be slower, for example while oneDNN creates its kernels. Each
  call is synchronised by reading one element of its result.
  """
  for _ in range(warmup_calls):
    float(tf.reshape(function(*arguments), [-1])[0])
  call_seconds = []
  total = 0.0
  while total < min_seconds or len(call_seconds) < min_calls:
    start = time.perf_counter()
    result = function(*arguments)
    float(tf.reshape(result, [-1])[0])
    call_seconds.append(time.perf_counter() - start)
    total += call_seconds[-1]
  return {
      "gflops_per_second": flops_per_call / min(call_seconds) / 1e9,
      "gflops_per_second_median": flops_per_call / statistics.median(call_seconds) / 1e9,
      "calls": len(call_seconds),
      "flops_per_call": flops_per_call,
  }


def measure_matmul_peak(size, dtype, min_seconds):
  """Measures the GFLOP/s of an N x N by N x N `tf.linalg.matmul` (2 N^3 FLOPs) in `dtype`."""
  rng = tf.random.Generator.from_seed(0)
  a = tf.cast(rng.normal([size, size]), dtype)
  b = tf.cast(rng.normal([size, size]), dtype)
  matmul = tf.function(tf.linalg.matmul)
  result = _time_calls(matmul, (a, b), 2 * size ** 3, min_seconds)
  result["shape"] = f"{size}x{size} @ {size}x{size}"
  return result


def measure_conv_peak(batch_size, width, dtype, min_seconds):
  """Measures the GFLOP/s of the train step's heaviest convolution in `dtype`.

  That is the generator's first transposed convolution: [B, 7, 7, 4*width] to
  [B, 7, 7, 2*width] with a 5x5 kernel and stride 1, 2 * B * 49 * 25 *
  4*width * 2*width FLOPs.
  """
  input_channels, output_channels = 4 * width, 2 * width
  rng = tf.random.Generator.from_seed(0)
  images = tf.cast(rng.normal([batch_size, 7, 7, input_channels]), dtype)
  kernel = tf.cast(
      rng.normal([_KERNEL_SIZE, _KERNEL_SIZE, output_channels, input_channels]), dtype)
  output_shape = [batch_size, 7, 7, output_channels]

  @tf.function
  def transposed_conv(images, kernel):
    return tf.nn.conv2d_transpose(images, kernel, output_shape, strides=1, padding="SAME")

  flops = 2 * batch_size * 7 * 7 * _KERNEL_SIZE * _KERNEL_SIZE * input_channels * output_channels
  result = _time_calls(transposed_conv, (images, kernel), flops, min_seconds)
  result["shape"] = (f"conv2d_transpose [{batch_size}, 7, 7, {input_channels}] -> "
                     f"[{batch_size}, 7, 7, {output_channels}], 5x5, stride 1")
  return result


def measure_peaks(settings):
  """Measures the matmul and convolution peaks in float32 and bfloat16.

  Returns:
    A dict keyed "matmul_float32", "conv_float32", "matmul_bfloat16" and
    "conv_bfloat16" of `measure_matmul_peak` and `measure_conv_peak` results.
  """
  peaks = {}
  for dtype in (tf.float32, tf.bfloat16):
    logging.info("Measuring the %s matmul and convolution peak", dtype.name)
    peaks[f"matmul_{dtype.name}"] = measure_matmul_peak(
        settings.peak_matmul_size, dtype, settings.peak_seconds)
    peaks[f"conv_{dtype.name}"] = measure_conv_peak(
        settings.peak_conv_batch_size, settings.width, dtype, settings.peak_seconds)
  return peaks


# Input pipeline.


def measure_pipeline(pipeline, warmup_batches, timed_batches):
  """Measures the images/sec that `pipeline.epoch(0)` delivers, with no train step running.

  The first batch waits until the shuffle buffer is full (the whole split, see
  `data.EpochPipeline`), so it is timed separately as `first_batch_seconds`.

  Args:
    pipeline: a `data.EpochPipeline`.
    warmup_batches: untimed batches, at least 1 and fewer than one epoch's batches.
    timed_batches: batches to time. Fewer are timed when the epoch runs out, and
      the result's `timed_batches` is the number timed.

  Returns:
    A dict with `images_per_second`, `first_batch_seconds` and `timed_batches`.
  """
  if not 1 <= warmup_batches < pipeline.steps_per_epoch:
    raise ValueError(
        f"warmup_batches must be in [1, {pipeline.steps_per_epoch}) for an epoch of "
        f"{pipeline.steps_per_epoch} batches, got {warmup_batches}")
  timed_batches = min(timed_batches, pipeline.steps_per_epoch - warmup_batches)
  iterator = iter(pipeline.epoch(0))

  start = time.perf_counter()
  next(iterator)
  first_batch_seconds = time.perf_counter() - start
  for _ in range(warmup_batches - 1):
    next(iterator)

  start = time.perf_counter()
  for _ in range(timed_batches):
    next(iterator)
  seconds = time.perf_counter() - start
  return {
      "images_per_second": timed_batches * pipeline.batch_size / seconds,
      "first_batch_seconds": first_batch_seconds,
      "timed_batches": timed_batches,
  }


# Machine description.


def machine_info(cpuinfo_path="/proc/cpuinfo"):
  """Describes the CPU, GPUs, software versions and load average of this machine."""
  cpu_model = None
  cpu_flags = set()
  try:
    with open(cpuinfo_path, encoding="utf-8") as cpuinfo:
      for line in cpuinfo:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and cpu_model is None:
          cpu_model = value.strip()
        elif key.strip() == "flags":
          cpu_flags.update(value.split())
  except OSError:
    pass
  gpus = tf.config.list_physical_devices("GPU")
  return {
      "cpu_model": cpu_model or platform.processor() or "unknown",
      "logical_cores": os.cpu_count(),
      "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
      "cpu_flags": {flag: flag in cpu_flags for flag in _CPU_FLAGS_REPORTED},
      "cpu_supports_bfloat16": devices.cpu_supports_bfloat16(cpuinfo_path),
      "gpus": [gpu.name for gpu in gpus],
      "tensorflow_version": tf.__version__,
      "keras_version": keras.__version__,
      "python_version": platform.python_version(),
      "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
      "load_average": list(os.getloadavg()),
  }


# The whole benchmark.


def _time_library_mode(settings, mode, batches):
  """Times `gan_lib.train_step` in one mode and returns its result entry and traced step."""
  batch_size = int(batches[0].shape[0])
  precision, jit_compile = resolve_mode(mode)
  logging.info("Timing gan_lib mode %s (precision=%s, jit_compile=%s) at batch size %d",
               mode, precision, jit_compile, batch_size)
  model = train_step.GanModel(noise_dim=settings.noise_dim, width=settings.width,
                              seed=settings.seed)
  step = train_step.make_train_step(model, batch_size, precision=precision,
                                    jit_compile=jit_compile)
  timing = time_train_step(step, batches, settings.warmup_steps, settings.timed_steps,
                           settings.repeats)
  entry = dict(implementation="gan_lib", mode=mode, batch_size=batch_size, precision=precision,
               jit_compile=jit_compile, **timing)
  return entry, step


def _time_baseline_mode(settings, mode, batches):
  """Times the Keras baseline in one of `BASELINE_MODES` and returns its entry and traced step."""
  batch_size = int(batches[0].shape[0])
  precision = BASELINE_MODES[mode]
  logging.info("Timing the Keras baseline in %s at batch size %d", precision, batch_size)
  baseline = keras_baseline.KerasBaselineGan(
      noise_dim=settings.noise_dim, width=settings.width, precision=precision)
  step = baseline.make_train_step(batch_size)
  timing = time_train_step(step, batches, settings.warmup_steps, settings.timed_steps,
                           settings.repeats)
  entry = dict(implementation="keras_baseline", mode=mode, batch_size=batch_size,
               precision=precision, jit_compile=False, **timing)
  return entry, step


def _measure_pipelines(settings, pipeline_factory):
  entries = []
  for batch_size in settings.batch_sizes:
    logging.info("Measuring the input pipeline at batch size %d", batch_size)
    pipeline = pipeline_factory(batch_size)
    entry = measure_pipeline(pipeline, settings.pipeline_warmup_batches,
                             settings.pipeline_batches)
    if entry["timed_batches"] < settings.pipeline_batches:
      logging.warning("Timed %d pipeline batches, not %d, because an epoch at batch size %d "
                      "has only %d", entry["timed_batches"], settings.pipeline_batches,
                      batch_size, pipeline.steps_per_epoch)
    entries.append(dict(batch_size=batch_size, **entry))
  return entries


def _flops_section(settings):
  per_image = 2 * train_step_macs_per_image(settings.noise_dim, settings.width)
  return {
      "method": ("counted by hand from the layer shapes at 2 FLOPs per multiply-accumulate, "
                 "matrix products and convolutions only"),
      "per_image": per_image,
      "per_step": {str(batch_size): per_image * batch_size
                   for batch_size in settings.batch_sizes},
      "layer_forward_macs_per_image": layer_forward_macs(settings.noise_dim, settings.width),
      "graph_count_per_step": {"gan_lib": {}, "keras_baseline": {}},
  }


def run_benchmark(settings, pipeline_factory=None):
  """Runs every measurement that `settings` requests and returns the results.

  The input pipeline and the peaks are measured before the train steps, so a
  missing data set stops the run before the long part.

  Args:
    settings: a `BenchmarkSettings`, validated first.
    pipeline_factory: `fn(batch_size) -> data.EpochPipeline` for the pipeline
      measurement. None reads the prepared TFDS `mnist` train split.

  Returns:
    A JSON-ready dict with `machine`, `settings`, `flops`, `peak`, `train_steps`
    (one entry per implementation, mode and batch size) and `pipeline`.

  Raises:
    BenchmarkSettingsError: on an invalid setting, before any work.
  """
  settings.validate()
  if pipeline_factory is None:
    def pipeline_factory(batch_size):
      return data.EpochPipeline.from_tfds(batch_size, settings.seed, data_dir=settings.data_dir)

  results = {
      "machine": machine_info(),
      "settings": dataclasses.asdict(settings),
      "flops": _flops_section(settings),
      "peak": {},
      "train_steps": [],
      "pipeline": [],
  }
  if not settings.skip_pipeline:
    results["pipeline"] = _measure_pipelines(settings, pipeline_factory)
  if not settings.skip_peak:
    results["peak"] = measure_peaks(settings)

  graph_counts = results["flops"]["graph_count_per_step"]
  for batch_size in settings.batch_sizes:
    batches = make_synthetic_batches(batch_size, seed=settings.seed)
    for mode in settings.modes:
      entry, step = _time_library_mode(settings, mode, batches)
      results["train_steps"].append(entry)
      # Reuses the trace of the timed step, so counting adds no tracing.
      graph_counts["gan_lib"].setdefault(
          str(batch_size), count_graph_flops(step.get_concrete_function(batches[0])))
    if settings.skip_baseline:
      continue
    for mode in settings.baseline_modes:
      entry, step = _time_baseline_mode(settings, mode, batches)
      results["train_steps"].append(entry)
      graph_counts["keras_baseline"].setdefault(
          str(batch_size), count_graph_flops(step.get_concrete_function(batches[0])))

  _add_ratios(results)
  results["machine"]["load_average_at_end"] = list(os.getloadavg())
  return results


def _add_ratios(results):
  """Adds GFLOP/s, fractions of the peaks and speed ratios to each entry, in place."""
  peaks = results["peak"]
  flops_per_image = results["flops"]["per_image"]
  steps = results["train_steps"]
  for entry in steps:
    images_per_second = entry["images_per_second"]["median"]
    entry["gflops_per_second"] = flops_per_image * images_per_second / 1e9
    dtype = "float32" if entry["precision"] == "float32" else "bfloat16"
    for kernel in ("conv", "matmul"):
      peak = peaks.get(f"{kernel}_{dtype}")
      entry[f"fraction_of_{kernel}_peak"] = (
          entry["gflops_per_second"] / peak["gflops_per_second"] if peak else None)
    baselines = {other["mode"]: other["images_per_second"]["median"] for other in steps
                 if other["implementation"] == "keras_baseline"
                 and other["batch_size"] == entry["batch_size"]}
    float32_baseline = baselines.get("keras_float32")
    entry["ratio_to_keras_float32"] = (
        images_per_second / float32_baseline if float32_baseline else None)
    entry["ratio_to_keras_best"] = (
        images_per_second / max(baselines.values()) if baselines else None)

  for pipeline_entry in results["pipeline"]:
    candidates = [entry for entry in steps if entry["implementation"] == "gan_lib"
                  and entry["batch_size"] == pipeline_entry["batch_size"]]
    if not candidates:
      continue
    best = max(candidates, key=lambda entry: entry["images_per_second"]["median"])
    pipeline_entry["best_mode"] = best["mode"]
    pipeline_entry["best_mode_images_per_second"] = best["images_per_second"]["median"]
    pipeline_entry["ratio_to_best_mode"] = (
        pipeline_entry["images_per_second"] / best["images_per_second"]["median"])
    pipeline_entry["meets_target_ratio"] = (
        pipeline_entry["ratio_to_best_mode"] >= PIPELINE_TARGET_RATIO)


def write_results_json(results, path):
  """Writes `results` to `path` as indented JSON, atomically (temporary file, then rename)."""
  io_utils.atomic_write_text(path, json.dumps(results, indent=2, sort_keys=True) + "\n")


# Markdown report.


def _format_spread(spread, digits):
  return (f"{spread['median']:.{digits}f} [{spread['min']:.{digits}f}, "
          f"{spread['max']:.{digits}f}]")


def _format_optional(value, template):
  return "n/a" if value is None else template.format(value)


def _machine_line(machine):
  bfloat16_flags = [flag for flag in ("avx512_bf16", "amx_bf16") if machine["cpu_flags"][flag]]
  return (f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores, "
          f"{', '.join(machine['gpus']) or 'no GPU'}, TensorFlow "
          f"{machine['tensorflow_version']}, Keras {machine['keras_version']}, bfloat16 CPU "
          f"instructions: {', '.join(bfloat16_flags) or 'none'}. Load average (1, 5, 15 min) "
          f"at start: {', '.join(f'{load:.2f}' for load in machine['load_average'])}.")


def _flops_lines(flops):
  lines = [f"FLOPs per train step: {flops['per_image'] / 1e6:.1f} MFLOP per image, "
           f"{flops['method']}."]
  for batch_size, per_step in flops["per_step"].items():
    graph_count = flops["graph_count_per_step"]["gan_lib"].get(batch_size)
    check = ("not checked" if graph_count is None else
             "matches the traced graph" if graph_count == per_step else
             f"the traced graph counts {graph_count / 1e9:.2f} GFLOP")
    lines.append(f"- batch {batch_size}: {per_step / 1e9:.2f} GFLOP ({check})")
  return lines


def _train_step_table(results):
  lines = [
      "| batch | implementation | mode | precision | XLA | steps/s | images/s | vs Keras "
      "float32 | vs Keras best | GFLOP/s | of conv peak | of matmul peak |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for entry in results["train_steps"]:
    lines.append(
        f"| {entry['batch_size']} | {entry['implementation']} | {entry['mode']} "
        f"| {entry['precision']} | {'yes' if entry['jit_compile'] else 'no'} "
        f"| {_format_spread(entry['steps_per_second'], 2)} "
        f"| {_format_spread(entry['images_per_second'], 0)} "
        f"| {_format_optional(entry['ratio_to_keras_float32'], '{:.2f}x')} "
        f"| {_format_optional(entry['ratio_to_keras_best'], '{:.2f}x')} "
        f"| {entry['gflops_per_second']:.1f} "
        f"| {_format_optional(entry['fraction_of_conv_peak'], '{:.0%}')} "
        f"| {_format_optional(entry['fraction_of_matmul_peak'], '{:.0%}')} |")
  return lines


def _peak_table(peaks):
  lines = ["| kernel | dtype | shape | GFLOP/s (best call) | GFLOP/s (median call) | calls |",
           "|---|---|---|---|---|---|"]
  for name, peak in peaks.items():
    kernel, dtype = name.split("_", 1)
    lines.append(f"| {kernel} | {dtype} | {peak['shape']} | {peak['gflops_per_second']:.1f} "
                 f"| {peak['gflops_per_second_median']:.1f} | {peak['calls']} |")
  return lines


def _pipeline_table(pipelines):
  lines = [f"Target: pipeline / step >= {PIPELINE_TARGET_RATIO:g}x, against the fastest "
           "gan_lib mode.",
           "",
           "| batch | pipeline images/s | first batch (s) | timed batches | best step mode "
           "| step images/s | pipeline / step |",
           "|---|---|---|---|---|---|---|"]
  for entry in pipelines:
    lines.append(
        f"| {entry['batch_size']} | {entry['images_per_second']:.0f} "
        f"| {entry['first_batch_seconds']:.2f} | {entry['timed_batches']} "
        f"| {entry.get('best_mode', 'n/a')} "
        f"| {_format_optional(entry.get('best_mode_images_per_second'), '{:.0f}')} "
        f"| {_format_optional(entry.get('ratio_to_best_mode'), '{:.1f}x')} |")
  return lines


def format_markdown(results):
  """Formats `run_benchmark`'s results as Markdown: a machine line, FLOPs and three tables."""
  settings = results["settings"]
  lines = [
      "## Train step benchmark",
      "",
      _machine_line(results["machine"]),
      "",
      f"Timing: warm-up steps: {settings['warmup_steps']}, then {settings['repeats']} runs "
      f"of {settings['timed_steps']} steps each on pre-made batches. Tables show the median "
      f"[min, max] over the runs. Network width {settings['width']}, noise size "
      f"{settings['noise_dim']}.",
      "",
      *_flops_lines(results["flops"]),
      "",
      *_train_step_table(results),
  ]
  if results["peak"]:
    lines += ["", "### Peak yardsticks", "", *_peak_table(results["peak"])]
  if results["pipeline"]:
    lines += ["", "### Input pipeline alone (`EpochPipeline.epoch(0)`, no train step)", "",
              *_pipeline_table(results["pipeline"])]
  return "\n".join(lines) + "\n"
