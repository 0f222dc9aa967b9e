"""One test per row of docs/BAD_INPUTS.md: each bad input gets its exact error.

Script rows run the example scripts as subprocesses, the way a user runs them,
with the test's temporary folder as the working directory and relative paths in
the flags. Every script row fails before the script imports TensorFlow. API rows
call the library in this process.

Expected messages write TMP for the test's temporary folder and PORT for the
closed local port of the PostgreSQL row. `test_doc_table_matches_cases` checks
that the table and the cases below list the same ids, statuses and messages.
"""

import ast
import concurrent.futures
import dataclasses
import gzip
import os
import pickle
import re
import socket
import subprocess
import sys
import time
from typing import Callable, Optional

import numpy as np
import pytest
import tensorflow as tf

import metrics
from gan_lib import config
from gan_lib import mnist_prep
from gan_lib import search
from metrics import classifier as classifier_lib
from metrics import evaluator as evaluator_lib
from metrics import validation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "BAD_INPUTS.md")
# A script that gets past its flag checks would start real work. The bound stops
# such a run, and it is far above the 1 to 2 s that a rejected flag takes.
SCRIPT_TIMEOUT_SECONDS = 60
ABSL_HINT = "Pass --helpshort or --helpfull to see help on flags."
SPLIT_EXPECTED = ("expected train, test or all, optionally sliced as in test[:1000] or joined "
                  "as in train[:50%]+test")
HYPERPARAMETERS = "batch_size, learning_rate, noise_dim, beta1, epochs, max_steps"


# ---------------------------------------------------------------------------
# Files that the cases set up
# ---------------------------------------------------------------------------


def _touch(*names):
  """Returns a setup function that creates empty files `names` in the temporary folder."""
  def setup(tmp_path):
    for name in names:
      (tmp_path / name).write_bytes(b"")
  return setup


def _folders(*names):
  """Returns a setup function that creates folders `names` in the temporary folder."""
  def setup(tmp_path):
    for name in names:
      (tmp_path / name).mkdir(parents=True)
  return setup


def _text_file(name, text):
  def setup(tmp_path):
    (tmp_path / name).write_text(text)
  return setup


def _saved_model_layout(tmp_path):
  """Creates gen/saved_model.pb, enough for evaluate.py's layout check, which runs before loading."""
  (tmp_path / "gen").mkdir()
  (tmp_path / "gen" / "saved_model.pb").write_bytes(b"")


def _idx_header(magic, dims):
  return b"".join(value.to_bytes(4, "big") for value in (magic, *dims))


def _write_idx_folder(tmp_path, train_images):
  """Writes an IDX folder TMP/idx whose train image file is `train_images` and the rest valid."""
  folder = tmp_path / "idx"
  folder.mkdir()
  (folder / "train-images-idx3-ubyte").write_bytes(train_images)
  (folder / "train-labels-idx1-ubyte").write_bytes(_idx_header(2049, [4]) + bytes(4))
  (folder / "t10k-images-idx3-ubyte").write_bytes(_idx_header(2051, [4, 28, 28]) + bytes(4 * 784))
  (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx_header(2049, [4]) + bytes(4))
  return folder


def _write_npz(path, train_images):
  np.savez(path, x_train=train_images, y_train=np.zeros(len(train_images), np.uint8),
           x_test=np.zeros((4, 28, 28), np.uint8), y_test=np.zeros(4, np.uint8))
  return path


class _EvalOnLoad:
  """An object whose pickle calls builtins.eval("1 + 1") when loaded."""

  def __reduce__(self):
    return (eval, ("1 + 1",))


def _features(rows, columns=8, seed=0):
  return np.random.default_rng(seed).normal(size=(rows, columns))


# ---------------------------------------------------------------------------
# Script rows
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScriptCase:
  """A script run with bad flags.

  Attributes:
    id: the test id and the doc row's id.
    script: file name in examples/.
    flags: command line flags.
    status: the expected exit status.
    message: the expected first line of stderr, with TMP for the temporary folder.
      Status 2 errors are that one line. absl's flag parser (status 1) adds
      ABSL_HINT as a second line.
    setup: fn(tmp_path) that creates the files the flags name.
  """

  id: str
  script: str
  flags: tuple
  status: int
  message: str
  setup: Optional[Callable] = None


SCRIPT_CASES = [
    # examples/train_gan.py
    ScriptCase("train_gan-batch-size-zero", "train_gan.py", ("--output_dir=run", "--batch_size=0"),
               2, "error: --batch_size=0 is invalid: expected a whole number >= 1"),
    ScriptCase("train_gan-output-dir-is-file", "train_gan.py", ("--output_dir=taken",), 2,
               "error: --output_dir='taken' is invalid: it is a file, expected a folder",
               _touch("taken")),
    # TrainConfig.validate creates --output_dir before it checks --mnist_source,
    # so the folder exists beforehand here.
    ScriptCase("train_gan-mnist-source-missing", "train_gan.py",
               ("--output_dir=run", "--mnist_source=mnist.npz"), 2,
               "error: --mnist_source='mnist.npz' is invalid: no such file or folder"),
    ScriptCase("train_gan-examples-per-epoch-below-batch", "train_gan.py",
               ("--output_dir=run", "--batch_size=32", "--examples_per_epoch=16"), 2,
               "error: --examples_per_epoch=16 is invalid: expected a whole number >= 32"),
    ScriptCase("train_gan-epochs-not-a-number", "train_gan.py", ("--output_dir=run", "--epochs=ten"),
               1, "FATAL Flags parsing error: flag --epochs=ten: invalid literal for int() with "
               "base 10: 'ten'"),
    ScriptCase("train_gan-unknown-strategy", "train_gan.py", ("--output_dir=run", "--strategy=tpu"),
               1, "FATAL Flags parsing error: flag --strategy=tpu: value should be one of "
               "<default|mirrored|multi_worker>"),
    # examples/evaluate.py
    ScriptCase("evaluate-reference-split-unknown", "evaluate.py",
               ("--generator=gen", "--output_json=out.json", "--reference_split=validation"), 2,
               "error: --reference_split='validation' is invalid: mnist has no split "
               f"'validation'; {SPLIT_EXPECTED}", _saved_model_layout),
    ScriptCase("evaluate-reference-split-malformed", "evaluate.py",
               ("--generator=gen", "--output_json=out.json", "--reference_split=test[:300"), 2,
               "error: --reference_split='test[:300' is invalid: it is not a TFDS split; "
               f"{SPLIT_EXPECTED}", _saved_model_layout),
    ScriptCase("evaluate-generator-missing", "evaluate.py",
               ("--generator=absent", "--output_json=out.json"), 2,
               "error: --generator='absent' is invalid: the path does not exist"),
    ScriptCase("evaluate-generator-not-saved-model", "evaluate.py",
               ("--generator=run", "--output_json=out.json"), 2,
               "error: --generator='run' is invalid: run is neither a SavedModel (no "
               "saved_model.pb) nor a training output folder (no saved_model/saved_model.pb)",
               _folders("run")),
    ScriptCase("evaluate-generator-is-file", "evaluate.py",
               ("--generator=model.pb", "--output_json=out.json"), 2,
               "error: --generator='model.pb' is invalid: it is a file, expected a SavedModel "
               "folder or a training output folder", _touch("model.pb")),
    ScriptCase("evaluate-output-json-folder-missing", "evaluate.py",
               ("--generator=gen", "--output_json=missing/out.json"), 2,
               "error: --output_json='missing/out.json' is invalid: folder TMP/missing does not "
               "exist", _saved_model_layout),
    ScriptCase("evaluate-num-samples-below-10", "evaluate.py",
               ("--generator=gen", "--output_json=out.json", "--num_samples=5"), 2,
               "error: --num_samples=5 is invalid: expected a whole number >= 10",
               _saved_model_layout),
    ScriptCase("evaluate-seed-negative", "evaluate.py",
               ("--generator=gen", "--output_json=out.json", "--seed=-1"), 2,
               "error: --seed=-1 is invalid: expected a whole number >= 0", _saved_model_layout),
    ScriptCase("evaluate-data-dir-is-file", "evaluate.py",
               ("--generator=gen", "--output_json=out.json", "--data_dir=data"), 2,
               "error: --data_dir='data' is invalid: it is a file, expected a folder",
               lambda tmp_path: (_saved_model_layout(tmp_path), _touch("data")(tmp_path))),
    # examples/sweep.py
    ScriptCase("sweep-tpe-without-num-trials", "sweep.py",
               ("--output_dir=sweep", "--method=tpe", "--learning_rate_range=1e-5:1e-3"), 2,
               "error: --num_trials is required with --method=tpe: give the number of trials to "
               "run, a whole number >= 1"),
    ScriptCase("sweep-random-without-num-trials", "sweep.py",
               ("--output_dir=sweep", "--method=random", "--batch_sizes=64,128"), 2,
               "error: --num_trials is required with --method=random: give the number of trials "
               "to run, a whole number >= 1"),
    ScriptCase("sweep-empty-space", "sweep.py", ("--output_dir=sweep",), 2,
               "error: search space is empty: pass --space=FILE or at least one of --batch_sizes, "
               "--learning_rates, --noise_dims, --beta1_values, --epochs_values, "
               "--max_steps_values, --learning_rate_range, --beta1_range"),
    ScriptCase("sweep-range-low-above-high", "sweep.py",
               ("--output_dir=sweep", "--method=random", "--num_trials=2",
                "--learning_rate_range=1e-3:1e-5"), 2,
               "error: search space: the learning_rate range 0.001:1e-05 is invalid: low must be "
               "below high"),
    ScriptCase("sweep-unknown-hyperparameter", "sweep.py",
               ("--output_dir=sweep", "--space=space.json"), 2,
               "error: search space: unknown hyperparameter 'dropout'; expected one of "
               f"{HYPERPARAMETERS}", _text_file("space.json", '{"dropout": [0.1, 0.3]}')),
    ScriptCase("sweep-space-file-missing", "sweep.py", ("--output_dir=sweep", "--space=space.yaml"),
               2, "error: --space='space.yaml' cannot be read: No such file or directory"),
    ScriptCase("sweep-space-file-bad-yaml", "sweep.py", ("--output_dir=sweep", "--space=space.yaml"),
               2, "error: --space='space.yaml' does not parse: expected ',' or ']', but got "
               "'<stream end>' at line 2, column 1 (while parsing a flow sequence at line 1, "
               "column 13)", _text_file("space.yaml", "batch_size: [64, 128\n")),
    ScriptCase("sweep-num-trials-with-grid", "sweep.py",
               ("--output_dir=sweep", "--batch_sizes=64,128", "--num_trials=3"), 2,
               "error: --num_trials=3 is invalid with --method=grid: grid search runs every "
               "combination once"),
    ScriptCase("sweep-output-dir-is-file", "sweep.py", ("--output_dir=taken", "--batch_sizes=64"),
               2, "error: --output_dir='taken' is invalid: it is a file, expected a folder",
               _touch("taken")),
    # examples/benchmark.py
    ScriptCase("benchmark-batch-size-zero", "benchmark.py",
               ("--output_json=benchmark.json", "--batch_sizes=256,0"), 2,
               "error: --batch_sizes='256,0' is invalid: expected whole numbers >= 1, got 0"),
    ScriptCase("benchmark-batch-size-not-a-number", "benchmark.py",
               ("--output_json=benchmark.json", "--batch_sizes=256,big"), 2,
               "error: --batch_sizes='256,big' is invalid: expected whole numbers >= 1, got 'big'"),
    ScriptCase("benchmark-unknown-mode", "benchmark.py",
               ("--output_json=benchmark.json", "--modes=graph,fast"), 2,
               "error: --modes='graph,fast' is invalid: unknown mode 'fast', expected a "
               "comma-separated list of graph, xla, bf16, xla_bf16, auto"),
    ScriptCase("benchmark-unknown-baseline-mode", "benchmark.py",
               ("--output_json=benchmark.json", "--baseline_modes=keras_float16"), 2,
               "error: --baseline_modes='keras_float16' is invalid: expected a comma-separated "
               "list of keras_float32, keras_mixed_bfloat16"),
    ScriptCase("benchmark-peak-seconds-zero", "benchmark.py",
               ("--output_json=benchmark.json", "--peak_seconds=0"), 2,
               "error: --peak_seconds=0.0 is invalid: expected a number of seconds > 0"),
    ScriptCase("benchmark-output-json-is-folder", "benchmark.py", ("--output_json=results",), 2,
               "error: --output_json='results' is invalid: it is a folder, expected a file path",
               _folders("results")),
    # examples/train_classifier.py. Every run names its own --output, so that a
    # check that fails to stop the script cannot replace the shipped weights.
    ScriptCase("train_classifier-epochs-zero", "train_classifier.py",
               ("--output=weights.npz", "--epochs=0"), 2,
               "error: --epochs=0 is invalid: expected a whole number >= 1"),
    ScriptCase("train_classifier-batch-size-above-split", "train_classifier.py",
               ("--output=weights.npz", "--batch_size=60001"), 2,
               "error: --batch_size=60001 is invalid: expected a whole number in [1, 60000], the "
               "size of the train split"),
    ScriptCase("train_classifier-learning-rate-one", "train_classifier.py",
               ("--output=weights.npz", "--learning_rate=1"), 2,
               "error: --learning_rate=1.0 is invalid: expected a number in (0, 1)"),
    ScriptCase("train_classifier-max-shift-nine", "train_classifier.py",
               ("--output=weights.npz", "--max_shift=9"), 2,
               "error: --max_shift=9 is invalid: expected a whole number in [0, 8]"),
    ScriptCase("train_classifier-seed-negative", "train_classifier.py",
               ("--output=weights.npz", "--seed=-1"), 2,
               "error: --seed=-1 is invalid: expected a whole number >= 0"),
    ScriptCase("train_classifier-output-is-folder", "train_classifier.py", ("--output=weights",),
               2, "error: --output='weights' is invalid: it is a folder, expected a file path",
               _folders("weights")),
    ScriptCase("train_classifier-data-dir-is-file", "train_classifier.py",
               ("--output=weights.npz", "--data_dir=data"), 2,
               "error: --data_dir='data' is invalid: it is a file, expected a folder",
               _touch("data")),
]


def _run_script(tmp_path, script, *flags):
  environment = dict(os.environ, PYTHONPATH=REPO, XDG_CACHE_HOME=str(tmp_path / "cache"))
  return subprocess.run([sys.executable, os.path.join(REPO, "examples", script), *flags],
                        capture_output=True, text=True, cwd=tmp_path, env=environment,
                        timeout=SCRIPT_TIMEOUT_SECONDS, check=False)


def _replace_tmp(text, tmp_path):
  for path in {os.path.realpath(tmp_path), str(tmp_path)}:
    text = text.replace(path, "TMP")
  return text


@pytest.fixture(scope="module")
def script_results(request, tmp_path_factory):
  """Runs the selected script cases, as many at once as there are CPUs.

  Returns:
    {case id: (temporary folder, its file names before the run, CompletedProcess,
    or TimeoutExpired if the script ran past SCRIPT_TIMEOUT_SECONDS)}.
  """
  cases = [item.callspec.params["case"] for item in request.session.items
           if getattr(item, "originalname", None) == "test_script_rejects"]
  prepared = []
  for case in cases:
    folder = tmp_path_factory.mktemp(case.id)
    if case.setup is not None:
      case.setup(folder)
    prepared.append((case, folder, sorted(os.listdir(folder))))

  def run(entry):
    case, folder, before = entry
    try:
      result = _run_script(folder, case.script, *case.flags)
    except subprocess.TimeoutExpired as timeout:
      # Kept as the result, so that only this case's test fails.
      result = timeout
    return case.id, (folder, before, result)

  # Each run is a separate Python process, so threads run them in parallel.
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    return dict(pool.map(run, prepared))


@pytest.mark.parametrize("case", SCRIPT_CASES, ids=[case.id for case in SCRIPT_CASES])
def test_script_rejects(script_results, case):
  folder, before, result = script_results[case.id]

  assert not isinstance(result, subprocess.TimeoutExpired), (
      f"the script ran for {SCRIPT_TIMEOUT_SECONDS} s, past its flag checks")
  assert result.returncode == case.status, result.stderr[-2000:]
  lines = _replace_tmp(result.stderr, folder).strip().splitlines()
  expected_lines = [case.message] if case.status == 2 else [case.message, ABSL_HINT]
  assert lines == expected_lines
  assert sorted(os.listdir(folder)) == before, "a rejected run created files"


# ---------------------------------------------------------------------------
# API rows
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Context:
  """What an API case's call gets: the temporary folder, the closed port and monkeypatch."""

  tmp_path: object
  port: int
  monkeypatch: object


@dataclasses.dataclass(frozen=True)
class ApiCase:
  """A library call with a bad input.

  Attributes:
    id: the test id and the doc row's id.
    call: fn(Context) that creates its files and makes the bad call.
    error: the name of the exception class raised.
    message: the exact message, with TMP and PORT; None when `pattern` is given.
    pattern: a regular expression the whole message matches, for messages
      that quote another library's text.
    leaves_no: a path under TMP that the failed call must not create.
  """

  id: str
  call: Callable
  error: str
  message: Optional[str] = None
  pattern: Optional[str] = None
  leaves_no: Optional[str] = None


def _train_config(context, **fields):
  return config.TrainConfig(output_dir=str(context.tmp_path / "run"), **fields).validate()


def _idx_case(train_images):
  def call(context):
    folder = _write_idx_folder(context.tmp_path, train_images)
    mnist_prep.prepare_mnist(folder, context.tmp_path / "data")
  return call


def _prepare_file(name, content):
  """Returns a call that writes TMP/name (bytes, or fn(path) that writes it) and prepares from it."""
  def call(context):
    path = context.tmp_path / name
    if callable(content):
      content(path)
    else:
      path.write_bytes(content)
    mnist_prep.prepare_mnist(path, context.tmp_path / "data")
  return call


def _truncated_pickle():
  arrays = ((np.zeros((4, 784), np.float32), np.zeros(4, np.int64)),) * 3
  content = pickle.dumps(arrays, protocol=4)
  return gzip.compress(content[:len(content) // 2])


def _weights_file(content):
  """Returns a call that writes TMP/weights.npz and loads the classifier from it."""
  def call(context):
    path = context.tmp_path / "weights.npz"
    if callable(content):
      content(path)
    else:
      path.write_bytes(content)
    classifier_lib.load_classifier(str(path))
  return call


def _truncated_weights(path):
  content = open(classifier_lib.DEFAULT_WEIGHTS_PATH, "rb").read()
  path.write_bytes(content[:len(content) // 2])


def _weights_with_wrong_shape(path):
  with np.load(classifier_lib.DEFAULT_WEIGHTS_PATH) as archive:
    arrays = {name: archive[name] for name in archive.files}
  arrays["logits.w"] = np.zeros((128, 5), np.float32)
  np.savez(path, **arrays)


def _evaluate_images(images):
  def call(context):
    evaluator = evaluator_lib.Evaluator(cache_dir=str(context.tmp_path / "cache"))
    evaluator.evaluate_images(images)
  return call


def _evaluate_too_few_images(context):
  # The error comes after the reference statistics, so a mock supplies 40
  # random reference images in place of the MNIST test split.
  reference = np.random.default_rng(1).integers(0, 256, size=(40, 28, 28, 1), dtype=np.uint8)
  context.monkeypatch.setattr(evaluator_lib, "load_reference_images",
                              lambda split, data_dir=None: reference)
  evaluator = evaluator_lib.Evaluator(cache_dir=str(context.tmp_path / "cache"))
  evaluator.evaluate_images(np.zeros((5, 28, 28), np.uint8))


def _load_generator(setup):
  """Returns a call that runs setup(TMP/model), then loads a generator from TMP/model."""
  def call(context):
    path = context.tmp_path / "model"
    if setup is not None:
      setup(path)
    evaluator_lib.load_generator_from_path(str(path))
  return call


def _corrupt_saved_model(path):
  path.mkdir()
  (path / "saved_model.pb").write_bytes(b"not a protocol buffer")


def _search_settings(context, **fields):
  return search.SearchSettings(output_dir=str(context.tmp_path / "sweep"),
                               train=config.TrainConfig(output_dir=""), **fields)


def _prepare_search(**fields):
  def call(context):
    fields_with_port = {name: value.replace("PORT", str(context.port)).replace(
        "TMP", str(context.tmp_path)) for name, value in fields.items()}
    settings = _search_settings(context, **fields_with_port)
    search.prepare_search(settings, search.SearchSpace({"batch_size": [64, 128]}))
  return call


API_CASES = [
    # gan_lib.config.TrainConfig
    ApiCase("config-batch-size-zero", lambda c: _train_config(c, batch_size=0), "ConfigError",
            "--batch_size=0 is invalid: expected a whole number >= 1"),
    ApiCase("config-batch-size-float", lambda c: _train_config(c, batch_size=64.0), "ConfigError",
            "--batch_size=64.0 is invalid: expected a whole number >= 1"),
    ApiCase("config-learning-rate-nan", lambda c: _train_config(c, learning_rate=float("nan")),
            "ConfigError", "--learning_rate=nan is invalid: expected a number in (0, 1)"),
    ApiCase("config-precision-unknown", lambda c: _train_config(c, precision="float16"),
            "ConfigError",
            "--precision='float16' is invalid: expected one of auto, float32, mixed_bfloat16"),
    ApiCase("config-eval-samples-below-10", lambda c: _train_config(c, eval_samples=5),
            "ConfigError", "--eval_samples=5 is invalid: expected a whole number >= 10"),
    # gan_lib.mnist_prep
    ApiCase("mnist_prep-idx-truncated",
            _idx_case(_idx_header(2051, [60000, 28, 28]) + bytes(100)), "MnistSourceError",
            "TMP/idx/train-images-idx3-ubyte: truncated. The IDX header declares 60000 images "
            "(47040000 bytes), but the file has 100 data bytes.", leaves_no="data"),
    ApiCase("mnist_prep-idx-wrong-magic", _idx_case(_idx_header(2049, [4, 28, 28]) + bytes(3136)),
            "MnistSourceError",
            "TMP/idx/train-images-idx3-ubyte: invalid IDX magic number 2049 (0x00000801). "
            "Expected 2051 for an IDX image file of unsigned bytes.", leaves_no="data"),
    ApiCase("mnist_prep-idx-wrong-image-size",
            _idx_case(_idx_header(2051, [4, 32, 32]) + bytes(4096)), "MnistSourceError",
            "TMP/idx/train-images-idx3-ubyte: IDX header declares images of 32x32 pixels. "
            "Expected 28x28.", leaves_no="data"),
    ApiCase("mnist_prep-idx-gzip-truncated",
            _idx_case(gzip.compress(_idx_header(2051, [4, 28, 28]) + bytes(3136))[:30]),
            "MnistSourceError",
            "TMP/idx/train-images-idx3-ubyte: read failed (Compressed file ended before the "
            "end-of-stream marker was reached). The file is truncated or corrupt, so download it "
            "again.", leaves_no="data"),
    ApiCase("mnist_prep-npz-wrong-shape",
            _prepare_file("mnist.npz", lambda path: _write_npz(path, np.zeros((4, 32, 32), np.uint8))),
            "MnistSourceError",
            "TMP/mnist.npz (x_train): images have shape (4, 32, 32). Expected [N, 28, 28] or "
            "[N, 784].", leaves_no="data"),
    ApiCase("mnist_prep-npz-not-zip", _prepare_file("mnist.npz", b"GARBAGE!" * 64),
            "MnistSourceError",
            "TMP/mnist.npz: cannot read as a .npz archive (it starts with b'GARB', not the zip "
            "signature b'PK\\x03\\x04'). Expected Keras' mnist.npz, a NumPy .npz archive with "
            "arrays x_train, y_train, x_test, y_test.", leaves_no="data"),
    ApiCase("mnist_prep-npz-wrong-counts",
            _prepare_file("mnist.npz", lambda path: _write_npz(path, np.zeros((4, 28, 28), np.uint8))),
            "MnistSourceError",
            "TMP/mnist.npz: the train split has 4 examples, expected 60000. The file is "
            "incomplete or not MNIST. Pass expected=None to accept a different number of "
            "examples.", leaves_no="data"),
    ApiCase("mnist_prep-pickle-unsafe-global",
            _prepare_file("mnist.pkl.gz", gzip.compress(pickle.dumps(_EvalOnLoad(), protocol=4))),
            "UnsafePickleError",
            "TMP/mnist.pkl.gz: rejected pickle global builtins.eval. Only numpy array "
            "reconstruction (numpy.core.multiarray._reconstruct, "
            "numpy._core.multiarray._reconstruct, numpy.ndarray, numpy.dtype) is allowed, so this "
            "file is not a plain MNIST pickle.", leaves_no="data"),
    ApiCase("mnist_prep-pickle-truncated", _prepare_file("mnist.pkl.gz", _truncated_pickle()),
            "MnistSourceError",
            "TMP/mnist.pkl.gz: invalid or truncated pickle data (UnpicklingError: pickle data was "
            "truncated). Download the file again.", leaves_no="data"),
    ApiCase("mnist_prep-pickle-not-a-tuple",
            _prepare_file("mnist.pkl.gz", gzip.compress(pickle.dumps({"train": np.zeros(3)}, protocol=4))),
            "MnistSourceError",
            "TMP/mnist.pkl.gz: the pickle contains dict of length 1. Expected a tuple (train, "
            "validation, test), each a pair (images, labels) of float images [N, 784] and integer "
            "labels [N].", leaves_no="data"),
    ApiCase("mnist_prep-unsupported-file-name", _prepare_file("mnist.csv", b"0,0,0\n"),
            "MnistSourceError",
            "TMP/mnist.csv: unsupported file name. Expected a folder with the MNIST IDX files or a "
            "file ending in .npz, .pkl.gz, .pkl or .whl.", leaves_no="data"),
    # metrics functions
    ApiCase("metrics-frechet-rank-1",
            lambda c: metrics.frechet_distance(np.zeros(8), _features(50)), "ValueError",
            "real_activations must have rank 2 with shape [num_samples, num_features], but has "
            "shape (8,) (rank 1)."),
    ApiCase("metrics-frechet-nan",
            lambda c: metrics.frechet_distance(_features(50), np.full((50, 8), np.nan)),
            "ValueError",
            "generated_activations must contain only finite values, but contains 400 NaN and 0 "
            "Inf entries."),
    ApiCase("metrics-frechet-feature-mismatch",
            lambda c: metrics.frechet_distance(_features(50), _features(50, columns=6)),
            "ValueError",
            "real_activations and generated_activations must have the same number of features, "
            "but have shapes (50, 8) and (50, 6)."),
    ApiCase("metrics-frechet-one-sample",
            lambda c: metrics.frechet_distance(_features(1), _features(50)), "ValueError",
            "real_activations must have at least 2 samples (rows), but has shape (1, 8)."),
    ApiCase("metrics-frechet-ragged-list",
            lambda c: metrics.frechet_distance([[1.0, 2.0], [3.0]], _features(50, columns=2)),
            "ValueError",
            "real_activations must be an array of shape [num_samples, num_features], but numpy "
            "could not convert it: setting an array element with a sequence. The requested array "
            "has an inhomogeneous shape after 1 dimensions. The detected shape was (2,) + "
            "inhomogeneous part."),
    ApiCase("metrics-inception-score-bool-logits",
            lambda c: metrics.inception_score(np.zeros((20, 10), bool)), "ValueError",
            "logits must have an integer or floating-point dtype, but has dtype bool."),
    ApiCase("metrics-inception-score-too-few-samples",
            lambda c: metrics.inception_score(_features(5, columns=10), num_splits=10),
            "ValueError",
            "num_splits must be in [1, N] = [1, 5] so that no split is empty, but is 10."),
    ApiCase("metrics-kernel-distance-subset-size-one",
            lambda c: metrics.kernel_distance(_features(50), _features(50), max_subset_size=1),
            "ValueError", "max_subset_size must be >= 2, but is 1."),
    ApiCase("metrics-precision-recall-k-too-large",
            lambda c: metrics.precision_recall(_features(3), _features(50), k=3), "ValueError",
            "k must be less than the size of each set so that every point has k other points, but "
            "k is 3 and the smaller set has 3 samples."),
    ApiCase("metrics-class-coverage-label-out-of-range",
            lambda c: metrics.class_coverage(np.array([0, 1, 12])), "ValueError",
            "class labels must be in [0, num_classes) = [0, 10), but range from 0 to 12."),
    ApiCase("metrics-check-mnist-split-unknown",
            lambda c: validation.check_mnist_split("validation"), "ValueError",
            f"reference_split='validation' is invalid: mnist has no split 'validation'; "
            f"{SPLIT_EXPECTED}"),
    # metrics.evaluator.Evaluator
    ApiCase("evaluator-images-wrong-shape", _evaluate_images(np.zeros((20, 32, 32), np.float32)),
            "ValueError",
            "images must have shape [N, 28, 28] or [N, 28, 28, 1], but have shape (20, 32, 32)."),
    ApiCase("evaluator-images-nan", _evaluate_images(np.full((20, 28, 28), np.nan, np.float32)),
            "ValueError",
            "images must contain only finite values, but contains 15680 NaN and 0 Inf entries."),
    ApiCase("evaluator-images-int32", _evaluate_images(np.zeros((20, 28, 28), np.int32)),
            "ValueError",
            "images must be uint8 in [0, 255] or floating point in [-1, 1], but have dtype int32. "
            "Convert them to one of these explicitly."),
    ApiCase("evaluator-images-float-0-255",
            _evaluate_images(np.full((20, 28, 28), 255.0, np.float32)), "ValueError",
            "images must be in the range [-1, 1], but have min 255.0 and max 255.0. For float "
            "images in [0, 255], use x / 127.5 - 1."),
    ApiCase("evaluator-images-float-0-1", _evaluate_images(np.full((20, 28, 28), 0.5, np.float32)),
            "ValueError",
            "images have no negative pixel (min 0.5, max 0.5), so they look like they are in the "
            "range [0, 1], but the expected range is [-1, 1], where the MNIST background is -1. "
            "Use x * 2 - 1."),
    ApiCase("evaluator-too-few-images", _evaluate_too_few_images, "ValueError",
            "at least 10 images are needed to compute every metric, but got 5"),
    ApiCase("evaluator-batch-size-zero",
            lambda c: evaluator_lib.Evaluator(batch_size=0, cache_dir=str(c.tmp_path)),
            "ValueError", "batch_size must be >= 1, but is 0."),
    # The classifier weights file
    ApiCase("classifier-weights-missing",
            lambda c: classifier_lib.load_classifier(str(c.tmp_path / "absent.npz")),
            "WeightsFileError",
            "classifier weights file TMP/absent.npz not found. Pass the path of a file written by "
            "examples/train_classifier.py, or reinstall the package to restore the shipped one."),
    ApiCase("classifier-weights-missing-in-evaluator",
            lambda c: evaluator_lib.Evaluator(classifier=str(c.tmp_path / "absent.npz")),
            "WeightsFileError",
            "classifier weights file TMP/absent.npz not found. Pass the path of a file written by "
            "examples/train_classifier.py, or reinstall the package to restore the shipped one."),
    ApiCase("classifier-weights-is-folder",
            lambda c: classifier_lib.load_classifier(str(c.tmp_path)), "WeightsFileError",
            "classifier weights file TMP is a folder. Pass the path of the .npz file written by "
            "examples/train_classifier.py."),
    ApiCase("classifier-weights-empty", _weights_file(b""), "WeightsFileError",
            "classifier weights file TMP/weights.npz is empty."),
    ApiCase("classifier-weights-not-zip", _weights_file(b"GARBAGE!" * 64), "WeightsFileError",
            "classifier weights file TMP/weights.npz is truncated or corrupt: it starts with "
            "b'GARB', not the zip signature b'PK\\x03\\x04' of an .npz archive. Pass a file "
            "written by examples/train_classifier.py."),
    ApiCase("classifier-weights-truncated", _weights_file(_truncated_weights), "WeightsFileError",
            "classifier weights file TMP/weights.npz is truncated or corrupt and could not be "
            "read: BadZipFile: File is not a zip file"),
    ApiCase("classifier-weights-wrong-shape", _weights_file(_weights_with_wrong_shape),
            "WeightsFileError",
            "classifier weights file TMP/weights.npz has array 'logits.w' of shape [128, 5], but "
            "the classifier expects [128, 10]."),
    # SavedModel paths
    ApiCase("saved-model-missing", _load_generator(None), "InvalidGeneratorError",
            "TMP/model does not exist"),
    ApiCase("saved-model-not-a-saved-model", _load_generator(lambda path: path.mkdir()),
            "InvalidGeneratorError",
            "TMP/model is neither a SavedModel (no saved_model.pb) nor a training output folder "
            "(no saved_model/saved_model.pb)"),
    ApiCase("saved-model-corrupt", _load_generator(_corrupt_saved_model), "InvalidGeneratorError",
            pattern=r"TMP/model could not be loaded as a SavedModel: .*TMP/model/saved_model\.pb.*"),
    ApiCase("saved-model-no-serving-signature",
            _load_generator(lambda path: tf.saved_model.save(tf.Module(), str(path))),
            "InvalidGeneratorError", "SavedModel TMP/model has no serving_default signature; it has []"),
    # gan_lib.search: search specs and storage
    ApiCase("search-space-empty", lambda c: search.SearchSpace({}), "SearchError",
            "search space is empty: give at least one hyperparameter to search, from "
            f"{HYPERPARAMETERS}"),
    ApiCase("search-range-low-above-high",
            lambda c: search.SearchSpace({}, {"learning_rate": (1e-3, 1e-5)}), "SearchError",
            "search space: the learning_rate range 0.001:1e-05 is invalid: low must be below high"),
    ApiCase("search-unknown-hyperparameter",
            lambda c: search.SearchSpace({"dropout": [0.1, 0.3]}), "SearchError",
            f"search space: unknown hyperparameter 'dropout'; expected one of {HYPERPARAMETERS}"),
    ApiCase("search-tpe-without-num-trials",
            lambda c: _search_settings(c, method="tpe").validate(
                search.SearchSpace({}, {"learning_rate": (1e-5, 1e-3)})), "SearchError",
            "--num_trials=None is invalid: --method=tpe requires --num_trials, a whole number >= 1"),
    ApiCase("search-storage-postgres-unreachable",
            _prepare_search(storage="postgresql://gan_lib@127.0.0.1:PORT/gan_lib"), "SearchError",
            pattern=r"--storage=postgresql\+psycopg2://gan_lib@127\.0\.0\.1:PORT/gan_lib is "
            r"unreachable: connection to server at \"127\.0\.0\.1\", port PORT failed: Connection "
            r"refused; check that the server runs and that the host, port, user, password and "
            r"database are right", leaves_no="sweep/trials"),
    ApiCase("search-storage-sqlite-missing-folder",
            _prepare_search(storage="sqlite:///TMP/missing/study.db"), "SearchError",
            "--storage: the folder TMP/missing of the SQLite database does not exist; create it "
            "or choose another path", leaves_no="missing"),
]


@pytest.fixture(scope="module")
def closed_port():
  """A 127.0.0.1 port that is bound but never listens, so a connection to it is refused."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
    bound.bind(("127.0.0.1", 0))
    yield bound.getsockname()[1]


def _replace_port(text, port):
  return re.sub(rf"(?<!\d){port}(?!\d)", "PORT", text)


@pytest.mark.parametrize("case", API_CASES, ids=[case.id for case in API_CASES])
def test_api_rejects(tmp_path, monkeypatch, closed_port, case):
  context = Context(tmp_path=tmp_path, port=closed_port, monkeypatch=monkeypatch)
  started = time.monotonic()

  with pytest.raises(Exception) as raised:
    case.call(context)

  assert type(raised.value).__name__ == case.error, repr(raised.value)
  message = _replace_port(_replace_tmp(str(raised.value), tmp_path), closed_port)
  if case.pattern is None:
    assert message == case.message
  else:
    assert re.fullmatch(case.pattern, message), message
  if case.leaves_no is not None:
    assert not (tmp_path / case.leaves_no).exists()
  # A refused local connection and every check here take well under this.
  assert time.monotonic() - started < 30


# ---------------------------------------------------------------------------
# The doc table and the cases stay in step
# ---------------------------------------------------------------------------


def _doc_rows():
  """Returns {test id: (function, status or exception, message)} from the table in the doc."""
  rows = {}
  with open(DOC, encoding="utf-8") as doc:
    for line in doc:
      if not line.startswith("| `test_"):
        continue
      cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
      assert len(cells) == 5, line
      match = re.fullmatch(r"`(test_\w+)\[([\w.-]+)\]`", cells[0])
      assert match, cells[0]
      function, case_id = match.groups()
      assert case_id not in rows, f"{case_id} has two rows"
      rows[case_id] = (function, cells[3].strip("`"), _code_span_text(cells[4]))
  return rows


def _code_span_text(cell):
  """Returns the text of a cell that is one code span, `x` or `` x ``."""
  match = re.fullmatch(r"(`+) ?(.*?) ?\1", cell)
  assert match, cell
  return match.group(2)


def test_doc_table_matches_cases():
  rows = _doc_rows()
  expected = {}
  for case in SCRIPT_CASES:
    expected[case.id] = ("test_script_rejects", str(case.status), case.message)
  for case in API_CASES:
    expected[case.id] = ("test_api_rejects", case.error, case.message or case.pattern)

  assert sorted(set(expected) - set(rows)) == [], "cases without a doc row"
  assert sorted(set(rows) - set(expected)) == [], "doc rows without a test"
  for case_id, (function, status, message) in rows.items():
    expected_function, expected_status, expected_message = expected[case_id]
    assert function == expected_function, case_id
    assert status == expected_status, case_id
    if any(case.id == case_id and case.pattern for case in API_CASES):
      assert re.fullmatch(expected_message, message), case_id
    else:
      assert message == expected_message, case_id
  assert len(rows) >= 30


def test_benchmark_script_modes_match_library():
  # examples/benchmark.py repeats these names so that it can check its flags
  # before importing TensorFlow.
  from gan_lib import benchmark  # pylint: disable=g-import-not-at-top
  with open(os.path.join(REPO, "examples", "benchmark.py"), encoding="utf-8") as script:
    tree = ast.parse(script.read())
  constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
               if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
               and node.targets[0].id in ("_MODES", "_BASELINE_MODES")}
  assert constants["_MODES"] == benchmark.MODES
  assert constants["_BASELINE_MODES"] == tuple(benchmark.BASELINE_MODES)


def test_train_classifier_default_output_is_shipped_weights(tmp_path):
  # examples/train_classifier.py computes its default --output without
  # importing metrics.classifier, which imports TensorFlow.
  result = _run_script(tmp_path, "train_classifier.py", "--helpshort")
  # absl wraps the help text at spaces, so lines are joined first.
  help_text = " ".join(result.stdout.split())
  assert f"(default: '{classifier_lib.DEFAULT_WEIGHTS_PATH}')" in help_text, result.stderr[-2000:]
