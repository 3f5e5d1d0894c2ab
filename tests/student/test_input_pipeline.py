"""The student's tf.data pipeline: shapes, language smoothing, mixing, determinism."""

import re

import numpy as np
import pytest
import tensorflow as tf

from student import config as config_lib
from student import input_pipeline
from student import shard_sources
from tests.student import shard_fixtures
from tests.student.conftest import TINY_CONFIG, make_shards


def _pipeline(shards, vocab_dir, *overrides, use_teacher=True):
    config = config_lib.load_config(TINY_CONFIG, list(overrides))
    vocab = shard_sources.read_student_vocab(vocab_dir, config)
    sources = shard_sources.open_sources(shards, config.data, vocab, use_teacher)
    return input_pipeline.StudentInputPipeline(sources, config.data, use_teacher)


def test_sampling_weights_follow_exponential_smoothing():
    weights = input_pipeline.sampling_weights([1000, 100, 10], 0.7)
    expected = np.array([1000, 100, 10], float) ** 0.7
    np.testing.assert_allclose(weights, expected / expected.sum())
    np.testing.assert_allclose(input_pipeline.sampling_weights([3, 1], 1.0), [0.75, 0.25])
    np.testing.assert_allclose(input_pipeline.sampling_weights([3, 1], 0.0), [0.5, 0.5])
    assert weights.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        input_pipeline.sampling_weights([3, 0], 0.7)


def test_batches_have_static_int32_shapes_and_no_strings(scored_shards, student_vocab):
    pipeline = _pipeline(scored_shards, student_vocab)
    spec = pipeline.dataset().element_spec
    assert set(spec) == {"input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions",
                         "masked_lm_ids", "masked_lm_weights", "teacher_topk_ids",
                         "teacher_topk_logits", "kd_weight", "language_id"}
    shapes = {name: tuple(s.shape) for name, s in spec.items()}
    assert shapes["input_word_ids"] == (8, 32) and shapes["masked_lm_ids"] == (8, 6)
    assert shapes["teacher_topk_ids"] == (8, 6, 8) and shapes["language_id"] == (8,)
    assert shapes["kd_weight"] == (8,)
    for name, s in spec.items():
        expected = (tf.float32 if name in ("masked_lm_weights", "teacher_topk_logits",
                                           "kd_weight")
                    else tf.int32)
        assert s.dtype == expected, name
    batch = next(iter(pipeline.dataset()))
    assert batch["input_word_ids"].numpy().max() < 300
    assert np.all(batch["kd_weight"].numpy() == 1.0)        # no gold-only language


def test_language_mix_matches_smoothed_weights_and_every_batch_is_mixed(tmp_path,
                                                                        student_vocab):
    shards = {"en": make_shards(tmp_path / "en", student_vocab, {"en": 90}, seed=1),
              "de": make_shards(tmp_path / "de", student_vocab, {"de": 10}, seed=2)}
    pipeline = _pipeline(shards, student_vocab, "data.global_batch_size=32")
    expected = np.array([90.0, 10.0]) ** 0.7
    expected /= expected.sum()  # ~ [0.82, 0.18]; natural sampling would give [0.9, 0.1]
    np.testing.assert_allclose(pipeline.weights, expected)
    counts = np.zeros(2)
    mixed = 0
    for batch in pipeline.dataset().take(120):
        ids = batch["language_id"].numpy()
        mixed += len(set(ids.tolist())) == 2
        counts += np.bincount(ids, minlength=2)
    # Languages are drawn per example: a batch of 32 is all-en with probability 0.82**32 ~ 0.2%.
    assert mixed >= 115, f"only {mixed} of 120 batches mix languages"
    fractions = counts / counts.sum()
    # 3840 draws: the binomial standard deviation is ~0.006.
    np.testing.assert_allclose(fractions, expected, atol=0.025)


def test_deterministic_for_a_seed(scored_shards, student_vocab):
    def first_batches(seed):
        pipeline = _pipeline(scored_shards, student_vocab, f"data.seed={seed}")
        return [b["input_word_ids"].numpy() for b in pipeline.dataset().take(5)]

    a, b, c = first_batches(3), first_batches(3), first_batches(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_float16_logits_and_gzip_shards(tmp_path, student_vocab):
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 16}, logits_dtype="float16",
                         compression="GZIP")
    pipeline = _pipeline({"en": folder}, student_vocab, "data.logits_dtype=float16")
    batch = next(iter(pipeline.dataset()))
    assert batch["teacher_topk_logits"].dtype == tf.float32
    assert np.abs(batch["teacher_topk_logits"].numpy()).max() > 0


def test_plain_mlm_pipeline_has_no_teacher_fields(tmp_path, student_vocab, scored_shards):
    gold = make_shards(tmp_path / "fr", student_vocab, {"fr": 16}, has_teacher_outputs=False)
    pipeline = _pipeline({"en": scored_shards["en"], "fr": gold}, student_vocab,
                         "loss.lambda_schedule=constant,loss.lambda_start=0.0", use_teacher=False)
    batch = next(iter(pipeline.dataset()))
    assert "teacher_topk_ids" not in batch and "teacher_topk_logits" not in batch


def test_input_context_shards_files_and_batches_per_replica(tmp_path, student_vocab):
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 40}, shards_per_language=4)
    pipeline = _pipeline({"en": folder}, student_vocab)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=4)
    batch = next(iter(pipeline.dataset(context)))
    assert batch["input_word_ids"].shape == (2, 32)
    context = tf.distribute.InputContext(num_input_pipelines=8, input_pipeline_id=0,
                                         num_replicas_in_sync=8)
    with pytest.raises(shard_sources.ShardError, match="fewer than the 8 input pipelines"):
        pipeline.dataset(context)


def test_iterator_position_is_checkpointable(tmp_path, scored_shards, student_vocab):
    pipeline = _pipeline(scored_shards, student_vocab)
    iterator = iter(pipeline.dataset())
    for _ in range(3):
        next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    path = checkpoint.write(str(tmp_path / "it"))
    expected = [next(iterator)["input_word_ids"].numpy() for _ in range(3)]
    fresh = iter(pipeline.dataset())
    tf.train.Checkpoint(iterator=fresh).read(path).assert_consumed()
    got = [next(fresh)["input_word_ids"].numpy() for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(expected, got))


def test_gold_only_examples_mix_inside_batches_with_dummy_teacher_fields(tmp_path,
                                                                         student_vocab):
    shards = {"en": make_shards(tmp_path / "en", student_vocab, {"en": 30}, seed=3),
              "fr": make_shards(tmp_path / "fr", student_vocab, {"fr": 30}, seed=4,
                                has_teacher_outputs=False)}
    pipeline = _pipeline(shards, student_vocab, "data.gold_only_languages=[fr]",
                         "data.global_batch_size=16")
    assert pipeline.mixed
    np.testing.assert_allclose(pipeline.weights, [0.5, 0.5])   # n ** alpha, as for any language
    mixed = 0
    for batch in pipeline.dataset().take(10):
        language = batch["language_id"].numpy()
        gold_rows = language == 1
        mixed += 0 < gold_rows.sum() < len(language)
        np.testing.assert_array_equal(batch["kd_weight"].numpy(), np.where(gold_rows, 0.0, 1.0))
        assert np.all(batch["teacher_topk_ids"].numpy()[gold_rows] == 0)
        assert np.all(batch["teacher_topk_logits"].numpy()[gold_rows] == 0)
        weights = batch["masked_lm_weights"].numpy()
        assert np.all(weights.sum(-1) > 0)                  # every row is a real example
        # Distilled rows keep their teacher predictions (random fixture ids >= 5 or -1).
        topk = batch["teacher_topk_ids"].numpy()[~gold_rows]
        real = weights[~gold_rows] > 0
        assert np.all((topk[real] >= 5) | (topk[real] == -1))
        # Gold-only rows are parsed, not zero-filled: [MASK] at their masked positions.
        positions = batch["masked_lm_positions"].numpy()[gold_rows]
        inputs = batch["input_word_ids"].numpy()[gold_rows]
        first = np.take_along_axis(inputs, positions[:, :1], 1)
        assert np.all(first == 4)
    assert mixed >= 8


def test_a_distilled_folder_whose_records_lack_the_teacher_fields_is_refused(tmp_path,
                                                                            student_vocab):
    """Declared distilled (its manifest has teacher outputs) but written without them."""
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 8}, has_teacher_outputs=False,
                         manifest_overrides={"has_teacher_outputs": True})
    pipeline = _pipeline({"en": folder}, student_vocab)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Feature: teacher_.* is required"):
        next(iter(pipeline.dataset()))
    bad = pipeline.locate_corrupt_shards()
    assert sorted(s.path for s in bad) == sorted(pipeline.all_files)
    assert all(re.search("Feature: teacher_.* is required", s.error) for s in bad), bad


def test_nan_teacher_logits_stop_the_stream(tmp_path, student_vocab):
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 8})
    bad = f"{folder}/en-00001-of-00002.tfrecord"
    shard_fixtures.set_teacher_logits(bad, float("inf"), records={0})
    pipeline = _pipeline({"en": folder}, student_vocab, "data.global_batch_size=4")
    with pytest.raises(tf.errors.InvalidArgumentError, match="no_nan_or_inf"):
        for _ in pipeline.dataset().take(4):
            pass
    assert [(s.path, s.error) for s in pipeline.locate_corrupt_shards()] == [
        (bad, "NaN or infinite values: 48 in teacher_topk_logits")]


def _as_copies_mode(folder, copies_mode, unique_examples):
    """Rewrites a fixture folder's manifest as written by the scoring job in `copies_mode`."""
    from teacher_scoring.records import manifest as manifest_lib
    manifest = manifest_lib.read_manifest(folder)
    manifest.copies_mode = copies_mode
    for entry in manifest.languages.values():
        entry.unique_examples = unique_examples
    manifest_lib.write_manifest(manifest, folder)


def test_sampling_counts_distinct_examples_not_copies(tmp_path, student_vocab):
    """`all` shards hold one copy per teacher: 90 records of 45 examples weigh like 45, so an
    `all` run and a `best` run of the same text sample the same language mixture."""
    all_en = make_shards(tmp_path / "all_en", student_vocab, {"en": 90}, seed=1)
    _as_copies_mode(all_en, "all", 45)
    best_en = make_shards(tmp_path / "best_en", student_vocab, {"en": 45}, seed=2)
    _as_copies_mode(best_en, "best", 45)
    de = make_shards(tmp_path / "de", student_vocab, {"de": 10}, seed=3)
    expected = np.array([45.0, 10.0]) ** 0.7
    expected /= expected.sum()
    for en in (all_en, best_en):
        pipeline = _pipeline({"en": en, "de": de}, student_vocab)
        assert [s.num_unique_examples for s in pipeline.sources] == [45, 10]
        np.testing.assert_allclose(pipeline.weights, expected)
    assert pipeline.sources[0].num_examples == 45
