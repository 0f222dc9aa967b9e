"""Tests of metrics.evaluator on the real MNIST test split and small generators.

Most tests compare against the reference split "test[:1000]" to stay fast. The
tests named test_real_data_* use the whole real test split.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import metrics
from gan_lib import mnist_prep
from gan_lib import training
from metrics import classifier as classifier_lib
from metrics import evaluator as evaluator_lib
from metrics.statistics import InceptionScoreStatistics
from tiny_generator import TinyGenerator

SMALL_REFERENCE = "test[:1000]"
SCALAR_KEYS = ("inception_score", "inception_score_std", "frechet_distance", "kernel_distance",
               "kernel_distance_std", "precision", "recall", "num_samples")
RESULT_KEYS = set(SCALAR_KEYS) | {"class_coverage", "seconds"}


@pytest.fixture(scope="module")
def real_mnist_test_split():
    """The real MNIST test split (10,000 uint8 images and labels), prepared offline if needed."""
    mnist_prep.ensure_mnist(None)
    return classifier_lib.load_mnist_split("test")


@pytest.fixture(scope="module")
def classifier():
    return classifier_lib.load_classifier()


@pytest.fixture(scope="module")
def shared_cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("reference_stats"))


def _make_evaluator(classifier, cache_dir, **kwargs):
    # Ten kernel distance subsets keep each evaluation under a second.
    settings = dict(reference_split=SMALL_REFERENCE, max_kernel_samples=500, kernel_num_subsets=10)
    settings.update(kwargs)
    return evaluator_lib.Evaluator(classifier=classifier, cache_dir=cache_dir, **settings)


def _assert_same_results(first, second):
    for key in SCALAR_KEYS:
        assert first[key] == second[key], key
    np.testing.assert_array_equal(first["class_coverage"]["counts"], second["class_coverage"]["counts"])


class RepeatedImageGenerator(tf.Module):
    """Returns the same image for every noise vector."""

    def __init__(self, image, noise_dim=3):
        super().__init__()
        self.image = tf.constant(image[np.newaxis], tf.float32)
        self.noise_dim = noise_dim

    def __call__(self, noise, training=False):
        del training
        return tf.tile(self.image, [tf.shape(noise)[0], 1, 1, 1])


def test_results_have_every_metric(real_mnist_test_split, classifier, shared_cache_dir):
    images, _ = real_mnist_test_split
    results = _make_evaluator(classifier, shared_cache_dir).evaluate_images(images[1000:1200])
    assert set(results) == RESULT_KEYS
    assert results["num_samples"] == 200
    assert results["seconds"] > 0.0
    assert results["class_coverage"]["num_samples"] == 200
    for key in SCALAR_KEYS:
        assert np.isfinite(results[key]), key


@pytest.mark.parametrize("batch_size", [7, 500, 600])
def test_batch_size_does_not_change_results(real_mnist_test_split, classifier, shared_cache_dir, batch_size):
    images, _ = real_mnist_test_split
    subset = images[2000:2600]
    baseline = _make_evaluator(classifier, shared_cache_dir, batch_size=250).evaluate_images(subset)
    results = _make_evaluator(classifier, shared_cache_dir, batch_size=batch_size).evaluate_images(subset)
    _assert_same_results(results, baseline)


def test_dataset_input_matches_array_input(real_mnist_test_split, classifier, shared_cache_dir):
    images, labels = real_mnist_test_split
    subset, subset_labels = images[2000:2300], labels[2000:2300]
    evaluator = _make_evaluator(classifier, shared_cache_dir, batch_size=64)
    from_array = evaluator.evaluate_images(subset)
    from_tensor = evaluator.evaluate_images(tf.constant(subset))
    from_images = evaluator.evaluate_images(tf.data.Dataset.from_tensor_slices(subset))
    from_pairs = evaluator.evaluate_images(tf.data.Dataset.from_tensor_slices((subset, subset_labels)))
    from_dicts = evaluator.evaluate_images(tf.data.Dataset.from_tensor_slices({"image": subset}))
    from_batches = evaluator.evaluate_images(tf.data.Dataset.from_tensor_slices(subset).batch(33))
    for results in (from_tensor, from_images, from_pairs, from_dicts, from_batches):
        _assert_same_results(results, from_array)


def test_num_samples_limits_dataset(real_mnist_test_split, classifier, shared_cache_dir):
    images, _ = real_mnist_test_split
    evaluator = _make_evaluator(classifier, shared_cache_dir, batch_size=64)
    limited = evaluator.evaluate_images(tf.data.Dataset.from_tensor_slices(images[:500]).repeat(), num_samples=150)
    direct = evaluator.evaluate_images(images[:150])
    _assert_same_results(limited, direct)


def test_fewer_images_than_one_batch(real_mnist_test_split, classifier, shared_cache_dir):
    images, _ = real_mnist_test_split
    results = _make_evaluator(classifier, shared_cache_dir, batch_size=500).evaluate_images(images[:40])
    assert results["num_samples"] == 40
    for key in SCALAR_KEYS:
        assert np.isfinite(results[key]), key


def test_too_few_images_raise(real_mnist_test_split, classifier, shared_cache_dir):
    images, _ = real_mnist_test_split
    evaluator = _make_evaluator(classifier, shared_cache_dir)
    with pytest.raises(ValueError, match="at least 10 images"):
        evaluator.evaluate_images(images[:5])
    with pytest.raises(ValueError, match="num_samples must be >= 10"):
        evaluator.evaluate_generator(TinyGenerator(), 9)


def test_results_equal_direct_metric_calls(real_mnist_test_split, classifier, shared_cache_dir):
    images, _ = real_mnist_test_split
    evaluator = _make_evaluator(classifier, shared_cache_dir, max_kernel_samples=1000, batch_size=128, seed=3)
    generated = images[1000:1300]
    results = evaluator.evaluate_images(generated)

    batch_classifier = classifier_lib.FixedBatchClassifier(classifier, evaluator_lib.CLASSIFIER_BATCH_SIZE)
    real_logits, real_features = batch_classifier.classify_all(metrics.check_images(images[:1000]))
    logits, features = batch_classifier.classify_all(metrics.check_images(generated))
    del real_logits
    shuffled_logits = logits[np.random.default_rng(3).permutation(300)]
    expected_score, expected_score_std = metrics.inception_score(shuffled_logits, num_splits=10)
    expected_kid, expected_kid_std = metrics.kernel_distance(real_features, features, num_subsets=10, seed=3)
    expected_precision_recall = metrics.precision_recall(real_features, features)

    assert results["inception_score"] == pytest.approx(expected_score, rel=1e-12)
    assert results["inception_score_std"] == pytest.approx(expected_score_std, rel=1e-9)
    # Streaming statistics over batches of 250 round differently from one pass.
    assert results["frechet_distance"] == pytest.approx(metrics.frechet_distance(real_features, features), rel=1e-6)
    assert results["kernel_distance"] == pytest.approx(expected_kid, rel=1e-9)
    assert results["kernel_distance_std"] == pytest.approx(expected_kid_std, rel=1e-9)
    assert results["precision"] == expected_precision_recall["precision"]
    assert results["recall"] == expected_precision_recall["recall"]
    np.testing.assert_array_equal(results["class_coverage"]["counts"], metrics.class_coverage(logits)["counts"])


def test_feature_sample_ignores_batch_split():
    features = np.random.default_rng(0).normal(size=(1000, 4))
    logits = np.zeros((1000, 10))
    whole = evaluator_lib.FeatureAccumulator(max_kernel_samples=50, seed=1)
    whole.add(logits, features)
    pieces = evaluator_lib.FeatureAccumulator(max_kernel_samples=50, seed=1)
    for start in range(0, 1000, 7):
        pieces.add(logits[start:start + 7], features[start:start + 7])
    assert whole.kernel_features.shape == (50, 4)
    np.testing.assert_array_equal(whole.kernel_features, pieces.kernel_features)
    other_seed = evaluator_lib.FeatureAccumulator(max_kernel_samples=50, seed=2)
    other_seed.add(logits, features)
    assert not np.array_equal(other_seed.kernel_features, whole.kernel_features)


def test_feature_sample_is_spread_over_input():
    count = 20_000
    accumulator = evaluator_lib.FeatureAccumulator(max_kernel_samples=2000, seed=0)
    positions = np.arange(count, dtype=np.float64)[:, np.newaxis]
    accumulator.add(np.zeros((count, 10)), positions)
    sampled = accumulator.kernel_features[:, 0]
    assert len(np.unique(sampled)) == 2000
    # A uniform sample puts about 1000 of 2000 in each half; 4 standard deviations is 90.
    assert abs(np.count_nonzero(sampled < count / 2) - 1000) < 90


def test_real_data_test_split_against_test_reference(real_mnist_test_split, classifier, shared_cache_dir):
    images, _ = real_mnist_test_split
    evaluator = _make_evaluator(classifier, shared_cache_dir, reference_split="test", max_kernel_samples=2000)
    results = evaluator.evaluate_images(images)
    assert results["num_samples"] == 10_000
    assert results["frechet_distance"] < 1e-6
    assert results["inception_score"] > 9.5
    assert results["inception_score"] <= 10.0
    assert results["precision"] == 1.0
    assert results["recall"] == 1.0
    assert results["class_coverage"]["num_classes_present"] == 10


def test_real_data_sorted_by_class_keeps_inception_score(real_mnist_test_split, classifier, shared_cache_dir):
    images, labels = real_mnist_test_split
    order = np.argsort(labels[:1000], kind="stable")
    evaluator = _make_evaluator(classifier, shared_cache_dir)
    sorted_results = evaluator.evaluate_images(images[:1000][order])
    assert sorted_results["inception_score"] > 8.0


def test_repeated_digit_generator_covers_one_class(real_mnist_test_split, classifier, shared_cache_dir):
    images, labels = real_mnist_test_split
    generator = RepeatedImageGenerator(metrics.check_images(images[:1])[0])
    results = _make_evaluator(classifier, shared_cache_dir, batch_size=64).evaluate_generator(generator, 200)
    coverage = results["class_coverage"]
    assert coverage["num_classes_present"] == 1
    assert coverage["most_frequent_class"] == labels[0]
    assert coverage["most_frequent_fraction"] == 1.0
    assert results["inception_score"] == pytest.approx(1.0, abs=1e-6)
    assert results["frechet_distance"] > 10.0 * _make_evaluator(
        classifier, shared_cache_dir).evaluate_images(images[1000:1200])["frechet_distance"]


def test_generator_noise_does_not_depend_on_batch_size(classifier, shared_cache_dir):
    generator = TinyGenerator()
    small_batches = _make_evaluator(classifier, shared_cache_dir, batch_size=7).evaluate_generator(generator, 60, seed=4)
    one_batch = _make_evaluator(classifier, shared_cache_dir, batch_size=500).evaluate_generator(generator, 60, seed=4)
    other_seed = _make_evaluator(classifier, shared_cache_dir, batch_size=500).evaluate_generator(generator, 60, seed=5)
    # The generator's own float32 rounding may differ with the batch shape.
    for key in ("inception_score", "frechet_distance"):
        assert small_batches[key] == pytest.approx(one_batch[key], rel=1e-4), key
    assert other_seed["frechet_distance"] != one_batch["frechet_distance"]


def test_generator_without_noise_dim_raises(classifier, shared_cache_dir):
    evaluator = _make_evaluator(classifier, shared_cache_dir)
    with pytest.raises(ValueError, match="noise_dim is required"):
        evaluator.evaluate_generator(lambda noise: noise, 20)


def test_plain_function_generator(classifier, shared_cache_dir):
    generator = TinyGenerator()
    evaluator = _make_evaluator(classifier, shared_cache_dir)
    from_module = evaluator.evaluate_generator(generator, 30)
    from_function = evaluator.evaluate_generator(lambda noise: {"images": generator(noise)}, 30, noise_dim=4)
    assert from_function["frechet_distance"] == pytest.approx(from_module["frechet_distance"], rel=1e-5)


def test_evaluate_saved_model_and_output_folder(tmp_path, classifier, shared_cache_dir):
    generator = TinyGenerator()
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    training.export_generator(generator, str(output_dir / "saved_model"))
    (output_dir / "config.json").write_text(json.dumps({"noise_dim": 4}))
    evaluator = _make_evaluator(classifier, shared_cache_dir, batch_size=16)

    from_module = evaluator.evaluate_generator(generator, 40, seed=2)
    from_saved_model = evaluator.evaluate_saved_model(str(output_dir / "saved_model"), 40, seed=2)
    from_folder = evaluator.evaluate_path(str(output_dir), 40, seed=2)
    from_saved_model_path = evaluator.evaluate_path(str(output_dir / "saved_model"), 40, seed=2)
    for results in (from_saved_model, from_folder, from_saved_model_path):
        assert results["num_samples"] == 40
        assert results["frechet_distance"] == pytest.approx(from_module["frechet_distance"], rel=1e-5)
        assert results["inception_score"] == pytest.approx(from_module["inception_score"], rel=1e-5)


def test_output_folder_with_other_noise_dim_raises(tmp_path):
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    training.export_generator(TinyGenerator(noise_dim=4), str(output_dir / "saved_model"))
    (output_dir / "config.json").write_text(json.dumps({"noise_dim": 100}))
    with pytest.raises(evaluator_lib.InvalidGeneratorError, match="noise_dim 100"):
        evaluator_lib.load_generator_from_path(str(output_dir))


@pytest.mark.parametrize("layout", ["missing", "empty_folder", "file", "bad_saved_model"])
def test_invalid_generator_path_raises(tmp_path, layout):
    path = tmp_path / "generator"
    if layout == "empty_folder":
        path.mkdir()
    elif layout == "file":
        path.write_text("not a model")
    elif layout == "bad_saved_model":
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"\x00garbage")
    with pytest.raises(evaluator_lib.InvalidGeneratorError) as error:
        evaluator_lib.load_generator_from_path(str(path))
    assert str(path) in str(error.value)


@pytest.mark.parametrize("make_images,message", [
    (lambda images: images.astype(np.float32), r"range \[-1, 1\]"),
    (lambda images: images.astype(np.float32) / 255.0, r"no negative pixel"),
    (lambda images: np.where(images > 128, np.nan, -1.0).astype(np.float32), r"NaN"),
    (lambda images: images.astype(np.int32), r"dtype int32"),
])
def test_invalid_images_raise(real_mnist_test_split, classifier, shared_cache_dir, make_images, message):
    images, _ = real_mnist_test_split
    bad_images = make_images(images[:50])
    evaluator = _make_evaluator(classifier, shared_cache_dir)
    with pytest.raises(ValueError, match=message):
        evaluator.evaluate_images(bad_images)
    with pytest.raises(ValueError, match=message):
        evaluator.evaluate_images(tf.data.Dataset.from_tensor_slices(bad_images).batch(16))


def test_generator_with_invalid_images_raises(classifier, shared_cache_dir):
    evaluator = _make_evaluator(classifier, shared_cache_dir)
    with pytest.raises(ValueError, match=r"range \[-1, 1\]"):
        evaluator.evaluate_generator(lambda noise: tf.ones([noise.shape[0], 28, 28, 1]) * 255.0, 20, noise_dim=2)


def _cache_files(cache_dir):
    return sorted(name for name in os.listdir(cache_dir) if name.endswith(".npz"))


def test_cache_reused_when_valid(tmp_path, classifier):
    cache_dir = str(tmp_path)
    first = _make_evaluator(classifier, cache_dir, reference_split="test[:300]").real_reference_statistics()
    second = _make_evaluator(classifier, cache_dir, reference_split="test[:300]").real_reference_statistics()
    assert not first.from_cache
    assert second.from_cache
    assert len(_cache_files(cache_dir)) == 1
    assert second.count == 300
    np.testing.assert_array_equal(first.mean, second.mean)
    np.testing.assert_array_equal(first.covariance, second.covariance)
    np.testing.assert_array_equal(first.kernel_features, second.kernel_features)


def test_cache_recomputed_when_weights_change(tmp_path, classifier):
    cache_dir = str(tmp_path)
    original = _make_evaluator(classifier, cache_dir, reference_split="test[:300]").real_reference_statistics()
    changed_classifier = classifier_lib.load_classifier()
    changed_classifier.logits.b.assign_add(tf.ones([10]))
    changed = _make_evaluator(changed_classifier, cache_dir, reference_split="test[:300]").real_reference_statistics()
    assert not changed.from_cache
    assert changed.key["classifier_sha256"] != original.key["classifier_sha256"]
    assert len(_cache_files(cache_dir)) == 2


def test_cache_recomputed_when_data_change(tmp_path, classifier, monkeypatch):
    cache_dir = str(tmp_path)
    original = _make_evaluator(classifier, cache_dir, reference_split="test[:300]").real_reference_statistics()
    load_images = evaluator_lib.load_reference_images

    def load_changed_images(split, data_dir=None):
        images = load_images(split, data_dir).copy()
        images[0, 14, 14, 0] ^= 0xFF
        return images

    monkeypatch.setattr(evaluator_lib, "load_reference_images", load_changed_images)
    changed = _make_evaluator(classifier, cache_dir, reference_split="test[:300]").real_reference_statistics()
    assert not changed.from_cache
    assert changed.key["images_sha256"] != original.key["images_sha256"]
    assert changed.key["num_examples"] == original.key["num_examples"]


def test_cache_key_includes_split_and_sample_size(tmp_path, classifier):
    cache_dir = str(tmp_path)
    _make_evaluator(classifier, cache_dir, reference_split="test[:300]").real_reference_statistics()
    other_split = _make_evaluator(classifier, cache_dir, reference_split="test[:200]").real_reference_statistics()
    other_size = _make_evaluator(
        classifier, cache_dir, reference_split="test[:300]", max_kernel_samples=100).real_reference_statistics()
    assert not other_split.from_cache
    assert not other_size.from_cache
    assert other_size.kernel_features.shape[0] == 100
    assert len(_cache_files(cache_dir)) == 3


def test_corrupt_cache_file_is_recomputed(tmp_path, classifier):
    cache_dir = str(tmp_path)
    _make_evaluator(classifier, cache_dir, reference_split="test[:300]").real_reference_statistics()
    (name,) = _cache_files(cache_dir)
    path = os.path.join(cache_dir, name)
    with open(path, "r+b") as cache_file:
        cache_file.truncate(100)
    recomputed = _make_evaluator(classifier, cache_dir, reference_split="test[:300]").real_reference_statistics()
    assert not recomputed.from_cache
    reread = _make_evaluator(classifier, cache_dir, reference_split="test[:300]").real_reference_statistics()
    assert reread.from_cache


def _split_ids_by_permutation(num_samples, seed, num_splits=10):
    """The split of each image when metrics.inception_score cuts the shuffled logits."""
    permutation = np.random.default_rng(seed).permutation(num_samples)
    split_ids = np.empty(num_samples, dtype=np.int64)
    for split in range(num_splits):
        positions = slice(split * num_samples // num_splits, (split + 1) * num_samples // num_splits)
        split_ids[permutation[positions]] = split
    return split_ids


@pytest.mark.parametrize("num_samples", [10, 11, 1003])
def test_inception_score_split_ids_follow_shuffle(num_samples):
    split_ids = evaluator_lib.inception_score_split_ids(num_samples, seed=3)
    np.testing.assert_array_equal(split_ids, _split_ids_by_permutation(num_samples, 3))
    assert not split_ids.flags.writeable


@pytest.mark.parametrize("logit_scale", [0.01, 3.0, 1000.0])
def test_inception_score_statistics_match_direct_call(logit_scale):
    # A scale of 1000 makes most probabilities underflow to 0 in float64.
    generator = np.random.default_rng(0)
    logits = generator.normal(size=(1003, 10)) * logit_scale
    split_ids = _split_ids_by_permutation(1003, 5)
    shuffled = logits[np.random.default_rng(5).permutation(1003)]
    expected_mean, expected_std = metrics.inception_score(shuffled, num_splits=10)

    statistics = InceptionScoreStatistics(num_splits=10, num_classes=10)
    # Batches out of input order, as replicas might deliver them.
    for start in (750, 0, 500, 1000, 250):
        statistics.update(logits[start:start + 250], split_ids[start:start + 250])
    mean, std = statistics.score()

    np.testing.assert_array_equal(statistics.counts, np.bincount(split_ids, minlength=10))
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert std == pytest.approx(expected_std, rel=1e-9, abs=1e-15)


def test_inception_score_statistics_merge_equals_one_pass():
    logits = np.random.default_rng(1).normal(size=(400, 10)) * 4.0
    split_ids = np.arange(400) % 4
    whole = InceptionScoreStatistics(4, 10).update(logits, split_ids)
    first = InceptionScoreStatistics(4, 10).update(logits[:150], split_ids[:150])
    second = InceptionScoreStatistics(4, 10).update(logits[150:], split_ids[150:])
    merged = first.merge(second)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    np.testing.assert_allclose(merged.probability_sums, whole.probability_sums, rtol=1e-13)
    assert merged.score()[0] == pytest.approx(whole.score()[0], rel=1e-13)
    rebuilt = InceptionScoreStatistics.from_sums(whole.counts, whole.probability_sums, whole.negative_entropy_sums)
    assert rebuilt.score() == whole.score()


def test_inception_score_statistics_reject_bad_input():
    statistics = InceptionScoreStatistics(num_splits=3, num_classes=10)
    with pytest.raises(ValueError, match=r"split_ids must be in \[0, 3\), but range from 0 to 3"):
        statistics.update(np.zeros((4, 10)), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"split_ids must be integers of shape \[4\]"):
        statistics.update(np.zeros((4, 10)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="logits must have 10 classes"):
        statistics.update(np.zeros((4, 9)), np.array([0, 1, 2, 0]))
    statistics.update(np.zeros((2, 10)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"every split needs at least 1 image, but the splits have \[1, 1, 0\]"):
        statistics.score()
    with pytest.raises(ValueError, match="other has 4 splits"):
        statistics.merge(InceptionScoreStatistics(num_splits=4, num_classes=10))


def test_streamed_inception_score_equals_deferred():
    generator = np.random.default_rng(2)
    logits = generator.normal(size=(620, 10)) * 3.0
    features = generator.normal(size=(620, 6))
    streamed = evaluator_lib.FeatureAccumulator(max_kernel_samples=50, seed=4, num_samples=620)
    kept = evaluator_lib.FeatureAccumulator(max_kernel_samples=50, seed=4)
    for start in range(0, 620, 250):
        streamed.add(logits[start:start + 250], features[start:start + 250])
        kept.add(logits[start:start + 250], features[start:start + 250])
    # Both sum the same batches in the same order, so they agree to the bit.
    assert streamed.inception_score() == kept.inception_score()
    expected = metrics.inception_score(logits.astype(np.float32)[np.random.default_rng(4).permutation(620)])
    assert streamed.inception_score()[0] == pytest.approx(expected[0], rel=1e-12)
    expected_coverage = metrics.class_coverage(logits.astype(np.float32))
    for coverage in (streamed.class_coverage(), kept.class_coverage()):
        np.testing.assert_array_equal(coverage["counts"], expected_coverage["counts"])
        assert coverage["kl_from_uniform"] == expected_coverage["kl_from_uniform"]
        assert coverage["num_samples"] == 620


def test_accumulator_rejects_images_past_count():
    accumulator = evaluator_lib.FeatureAccumulator(max_kernel_samples=10, seed=0, num_samples=20)
    accumulator.add(np.zeros((15, 10)), np.zeros((15, 3)))
    with pytest.raises(ValueError, match="the Inception Score needs all 20 images, but 15 were added"):
        accumulator.inception_score()
    with pytest.raises(ValueError, match="cannot add 6 images to 15: the accumulator was created for num_samples=20"):
        accumulator.add(np.zeros((6, 10)), np.zeros((6, 3)))
