"""Resolves the `auto` settings of precision and XLA for the device at hand."""

import tensorflow as tf

# CPU flags (from /proc/cpuinfo) of instructions that run bfloat16 matrix products
# natively. Without them, oneDNN emulates bfloat16 and it is slower than float32.
_BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def has_gpu():
  """Returns whether TensorFlow lists at least one physical GPU."""
  return bool(tf.config.list_physical_devices("GPU"))


def cpu_supports_bfloat16(cpuinfo_path="/proc/cpuinfo"):
  """Returns whether the CPU has native bfloat16 instructions (False if unknown)."""
  try:
    with open(cpuinfo_path, encoding="utf-8") as cpuinfo:
      flags = set()
      for line in cpuinfo:
        if line.startswith("flags"):
          flags.update(line.split(":", 1)[1].split())
  except OSError:
    return False
  return any(flag in flags for flag in _BFLOAT16_CPU_FLAGS)


def gpu_supports_bfloat16():
  """Returns whether every visible GPU has compute capability 8.0 or newer."""
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus:
    return False
  for gpu in gpus:
    capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
    if capability is None or capability < (8, 0):
      return False
  return True


def resolve_precision(precision):
  """Maps "auto" to "mixed_bfloat16" where the device runs it natively, else "float32"."""
  if precision != "auto":
    return precision
  if has_gpu():
    return "mixed_bfloat16" if gpu_supports_bfloat16() else "float32"
  return "mixed_bfloat16" if cpu_supports_bfloat16() else "float32"


def resolve_jit_compile(jit_compile):
  """Maps "true"/"false" to booleans and "auto" to True on GPUs only.

  On the 2-core CPU of BUILD_NOTES.md, XLA made the train step slower, so "auto"
  leaves it off on CPUs.
  """
  if jit_compile == "auto":
    return has_gpu()
  return jit_compile == "true"
