"""Compare the metrics with tensorflow-gan 2.1.0 on the same random inputs.

tensorflow-gan 2.1.0 imports only on TensorFlow 2.15 and older with numpy < 2, so
this file skips on the main environment. `.ci/tfgan_env.sh` builds a TensorFlow
2.15.1 environment and runs it there with REQUIRE_TFGAN=1, which turns a failed
import into an error instead of a skip.
"""

import os

import numpy as np
import pytest

if os.environ.get("REQUIRE_TFGAN") == "1":
    import tensorflow_gan as tfgan
else:
    try:
        tfgan = pytest.importorskip(
            "tensorflow_gan",
            reason="tensorflow-gan needs TensorFlow 2.15; .ci/run runs this file in a second environment",
            exc_type=ImportError,
        )
    except AttributeError as error:
        # On newer TensorFlow the import can fail inside tensorflow-probability with an
        # AttributeError. tensorflow-probability 0.23 on TensorFlow 2.21 raises
        # "module 'keras._tf_keras.keras' has no attribute '__internal__'".
        pytest.skip(f"tensorflow-gan failed to import on this TensorFlow: {error}", allow_module_level=True)

import tensorflow as tf  # noqa: E402 (only after the skip above)

import metrics  # noqa: E402

RELATIVE_TOLERANCE = 1e-4
SEEDS = [0, 1, 2]


def make_activation_pair(seed, num_samples=300, num_features=16, dtype=np.float64):
    """Return two [num_samples, num_features] sets with different means and covariances."""
    generator = np.random.default_rng(seed)
    real = generator.normal(size=(num_samples, num_features))
    mixing = np.eye(num_features) + 0.3 * generator.normal(size=(num_features, num_features))
    generated = generator.normal(size=(num_samples, num_features)) @ mixing + 0.2
    return real.astype(dtype), generated.astype(dtype)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_frechet_distance_matches_tfgan(seed, dtype):
    real, generated = make_activation_pair(seed, dtype=dtype)

    expected = tfgan.eval.frechet_classifier_distance_from_activations(tf.constant(real), tf.constant(generated))
    actual_from_arrays = metrics.frechet_distance(real, generated)
    actual_from_tensors = metrics.frechet_distance(tf.constant(real), tf.constant(generated))

    assert actual_from_arrays == pytest.approx(float(expected), rel=RELATIVE_TOLERANCE)
    assert actual_from_tensors == actual_from_arrays


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_classes", [2, 10])
def test_inception_score_matches_tfgan(seed, num_classes):
    generator = np.random.default_rng(seed)
    logits = 3.0 * generator.normal(size=(500, num_classes))

    expected = tfgan.eval.classifier_score_from_logits(tf.constant(logits))
    actual_mean, actual_std = metrics.inception_score(tf.constant(logits), num_splits=1)

    assert actual_mean == pytest.approx(float(expected), rel=RELATIVE_TOLERANCE)
    assert actual_std == 0.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_samples", [50, 300])
def test_kernel_distance_matches_tfgan_single_block(seed, num_samples):
    real, generated = make_activation_pair(seed, num_samples=num_samples)

    # max_block_size equal to the set size makes tensorflow-gan use a single block.
    expected_mean, expected_std = tfgan.eval.kernel_classifier_distance_and_std_from_activations(
        tf.constant(real), tf.constant(generated), max_block_size=num_samples
    )
    actual_mean, actual_std = metrics.kernel_distance(
        tf.constant(real), tf.constant(generated), num_subsets=1, max_subset_size=num_samples
    )

    assert actual_mean == pytest.approx(float(expected_mean), rel=RELATIVE_TOLERANCE)
    # tensorflow-gan returns NaN as its standard error for a single block.
    assert np.isnan(float(expected_std))
    assert actual_std == 0.0
