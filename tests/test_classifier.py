"""Tests of the evaluation classifier and its weights file."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from gan_lib import mnist_prep
from metrics import classifier as classifier_lib


@pytest.fixture(scope="module")
def real_mnist_test_split():
    """The real MNIST test split (10,000 uint8 images and labels), prepared offline if needed."""
    mnist_prep.ensure_mnist(None)
    return classifier_lib.load_mnist_split("test")


@pytest.fixture(scope="module")
def shipped_classifier():
    return classifier_lib.load_classifier()


def _random_images(count, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(count, 28, 28, 1)).astype(np.float32)


def _saved_arrays(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _header(arrays):
    return json.loads(arrays["header"].tobytes().decode("utf-8"))


def _write_arrays(path, arrays):
    np.savez(path, **arrays)


def test_call_returns_logits_and_features():
    classifier = classifier_lib.MnistClassifier()
    logits, features = classifier(_random_images(5))
    assert logits.shape == (5, 10)
    assert features.shape == (5, classifier.hidden_size)
    assert logits.dtype == tf.float32
    assert features.dtype == tf.float32
    assert np.all(features.numpy() >= 0.0)


def test_dropout_changes_logits_not_features():
    classifier = classifier_lib.MnistClassifier()
    images = _random_images(8)
    logits, features = classifier(images)
    dropped_logits, dropped_features = classifier(images, training=True, dropout_seed=tf.constant([1, 2]))
    np.testing.assert_array_equal(features.numpy(), dropped_features.numpy())
    assert not np.allclose(logits.numpy(), dropped_logits.numpy())


def test_training_without_dropout_seed_raises():
    classifier = classifier_lib.MnistClassifier()
    with pytest.raises(ValueError, match="dropout_seed"):
        classifier(_random_images(2), training=True)


def test_invalid_constructor_arguments_raise():
    with pytest.raises(ValueError, match="conv_channels"):
        classifier_lib.MnistClassifier(conv_channels=())
    with pytest.raises(ValueError, match="hidden_size"):
        classifier_lib.MnistClassifier(hidden_size=0)
    with pytest.raises(ValueError, match="dropout_rate"):
        classifier_lib.MnistClassifier(dropout_rate=1.0)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    path = str(tmp_path / "weights.npz")
    original = classifier_lib.MnistClassifier(seed=1)
    classifier_lib.save_classifier_weights(original, path)
    restored = classifier_lib.MnistClassifier(seed=2)
    classifier_lib.load_classifier_weights(restored, path)

    images = _random_images(16)
    original_logits, original_features = original(images)
    restored_logits, restored_features = restored(images)
    np.testing.assert_array_equal(original_logits.numpy(), restored_logits.numpy())
    np.testing.assert_array_equal(original_features.numpy(), restored_features.numpy())
    assert classifier_lib.weights_fingerprint(original) == classifier_lib.weights_fingerprint(restored)


def test_load_classifier_reads_given_path(tmp_path):
    path = str(tmp_path / "weights.npz")
    original = classifier_lib.MnistClassifier(seed=3)
    classifier_lib.save_classifier_weights(original, path)
    loaded = classifier_lib.load_classifier(path)
    assert classifier_lib.weights_fingerprint(loaded) == classifier_lib.weights_fingerprint(original)


def test_save_replaces_file_without_leftovers(tmp_path):
    path = tmp_path / "nested" / "weights.npz"
    classifier_lib.save_classifier_weights(classifier_lib.MnistClassifier(seed=1), str(path))
    classifier_lib.save_classifier_weights(classifier_lib.MnistClassifier(seed=2), str(path))
    assert os.listdir(path.parent) == ["weights.npz"]
    loaded = classifier_lib.load_classifier(str(path))
    expected = classifier_lib.weights_fingerprint(classifier_lib.MnistClassifier(seed=2))
    assert classifier_lib.weights_fingerprint(loaded) == expected


def test_weights_file_stores_header_with_architecture(tmp_path):
    path = str(tmp_path / "weights.npz")
    classifier = classifier_lib.MnistClassifier()
    classifier_lib.save_classifier_weights(classifier, path)
    header = _header(_saved_arrays(path))
    assert header["format_version"] == classifier_lib.WEIGHTS_FORMAT_VERSION
    assert header["architecture"] == classifier.architecture
    assert header["variables"]["hidden.w"] == list(classifier.hidden.w.shape)


def test_missing_weights_file_raises(tmp_path):
    path = str(tmp_path / "absent.npz")
    with pytest.raises(classifier_lib.WeightsFileError, match="not found") as error:
        classifier_lib.load_classifier(path)
    assert path in str(error.value)


def test_truncated_weights_file_raises(tmp_path):
    path = tmp_path / "weights.npz"
    classifier_lib.save_classifier_weights(classifier_lib.MnistClassifier(), str(path))
    content = path.read_bytes()
    path.write_bytes(content[:len(content) // 2])
    with pytest.raises(classifier_lib.WeightsFileError, match="truncated or corrupt") as error:
        classifier_lib.load_classifier(str(path))
    assert str(path) in str(error.value)


def test_garbage_weights_file_raises(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(classifier_lib.WeightsFileError, match="truncated or corrupt"):
        classifier_lib.load_classifier(str(path))


def test_single_npy_array_file_raises(tmp_path):
    path = tmp_path / "weights.npz"
    with open(path, "wb") as stream:
        np.save(stream, np.zeros(3, np.float32))
    with pytest.raises(classifier_lib.WeightsFileError, match="single array"):
        classifier_lib.load_classifier(str(path))


def test_other_architecture_raises(tmp_path):
    path = str(tmp_path / "weights.npz")
    classifier_lib.save_classifier_weights(classifier_lib.MnistClassifier(conv_channels=(8, 16, 16)), path)
    with pytest.raises(classifier_lib.WeightsFileError, match="saved for architecture") as error:
        classifier_lib.load_classifier(path)
    assert path in str(error.value)
    assert "[8, 16, 16]" in str(error.value)


def test_wrong_array_shape_raises(tmp_path):
    path = str(tmp_path / "weights.npz")
    classifier_lib.save_classifier_weights(classifier_lib.MnistClassifier(), path)
    arrays = _saved_arrays(path)
    arrays["hidden.w"] = arrays["hidden.w"][:-1]
    _write_arrays(path, arrays)
    classifier = classifier_lib.MnistClassifier(seed=7)
    before = classifier_lib.weights_fingerprint(classifier)
    with pytest.raises(classifier_lib.WeightsFileError, match="'hidden.w' of shape") as error:
        classifier_lib.load_classifier_weights(classifier, path)
    assert path in str(error.value)
    assert classifier_lib.weights_fingerprint(classifier) == before


@pytest.mark.parametrize("change,message", [
    ("drop_array", "missing the array 'logits.b'"),
    ("extra_array", "unexpected arrays"),
    ("float64_array", "dtype float64"),
    ("nan_array", "NaN or Inf"),
    ("format_version", "format version 99"),
    ("drop_header", "no 'header' entry"),
    ("bad_header", "invalid header"),
])
def test_inconsistent_weights_file_raises(tmp_path, change, message):
    path = str(tmp_path / "weights.npz")
    classifier_lib.save_classifier_weights(classifier_lib.MnistClassifier(), path)
    arrays = _saved_arrays(path)
    if change == "drop_array":
        del arrays["logits.b"]
    elif change == "extra_array":
        arrays["extra.w"] = np.zeros(3, np.float32)
    elif change == "float64_array":
        arrays["logits.b"] = arrays["logits.b"].astype(np.float64)
    elif change == "nan_array":
        arrays["logits.b"][0] = np.nan
    elif change == "format_version":
        header = _header(arrays)
        header["format_version"] = 99
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    elif change == "drop_header":
        del arrays["header"]
    elif change == "bad_header":
        arrays["header"] = np.frombuffer(b"{not json", dtype=np.uint8)
    _write_arrays(path, arrays)
    with pytest.raises(classifier_lib.WeightsFileError, match=message):
        classifier_lib.load_classifier(path)


def test_shipped_weights_are_small_and_load():
    assert os.path.getsize(classifier_lib.DEFAULT_WEIGHTS_PATH) < 5 * 2**20
    classifier = classifier_lib.load_classifier()
    assert classifier.architecture == classifier_lib.MnistClassifier().architecture


def test_fixed_batch_classifier_pads_and_drops_padding():
    classifier = classifier_lib.MnistClassifier()
    batch_classifier = classifier_lib.FixedBatchClassifier(classifier, batch_size=8)
    images = _random_images(19)
    logits, features = batch_classifier.classify_all(images)
    assert logits.shape == (19, 10)
    assert features.shape == (19, classifier.hidden_size)
    direct_logits, direct_features = classifier(images)
    np.testing.assert_allclose(logits, direct_logits.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(features, direct_features.numpy(), rtol=1e-5, atol=1e-5)
    assert batch_classifier._function.experimental_get_tracing_count() == 1


def test_fixed_batch_classifier_rejects_oversized_batch():
    batch_classifier = classifier_lib.FixedBatchClassifier(classifier_lib.MnistClassifier(), batch_size=4)
    with pytest.raises(ValueError, match="expected 1 to 4 images, got 5"):
        batch_classifier(_random_images(5))


def test_real_data_shipped_classifier_test_accuracy(real_mnist_test_split, shipped_classifier):
    images, labels = real_mnist_test_split
    assert images.shape == (10_000, 28, 28, 1)
    batch_classifier = classifier_lib.FixedBatchClassifier(shipped_classifier)
    logits, _ = batch_classifier.classify_all(images.astype(np.float32) / 127.5 - 1.0)
    accuracy = np.mean(np.argmax(logits, axis=1) == labels)
    assert accuracy >= 0.993
