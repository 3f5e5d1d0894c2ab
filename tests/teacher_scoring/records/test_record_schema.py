"""Tests for teacher_scoring.records.record_schema: round trips, validation, and tf-models' own loader."""

import numpy as np
import pytest
import tensorflow as tf

from teacher_scoring.records import record_schema as rs
def make_example(spec: rs.ShardSpec, rng: np.random.Generator, n_real: int = 3,
                 example_id: str = "en-0123456789abcdef-0") -> rs.ScoredExample:
    s, p, k = spec.seq_length, spec.max_predictions_per_seq, spec.top_k
    positions = np.zeros(p, np.int32)
    positions[:n_real] = np.sort(rng.choice(np.arange(1, s - 1), n_real, replace=False))
    weights = np.zeros(p, np.float32)
    weights[:n_real] = 1.0
    ids = np.zeros(p, np.int32)
    ids[:n_real] = rng.integers(5, 300_000, n_real)
    topk_ids = np.zeros((p, k), np.int32)
    topk_ids[:n_real] = rng.integers(5, 300_000, (n_real, k))
    topk_logits = np.zeros((p, k), np.float32)
    topk_logits[:n_real] = -np.sort(-rng.normal(0, 4, (n_real, k)), axis=1)
    return rs.ScoredExample(
        input_word_ids=rng.integers(0, 300_000, s).astype(np.int32),
        input_mask=np.ones(s, np.int32),
        input_type_ids=np.zeros(s, np.int32),
        masked_lm_positions=positions,
        masked_lm_ids=ids,
        masked_lm_weights=weights,
        language="en",
        teacher="bert_en",
        example_id=example_id,
        teacher_topk_ids=topk_ids if spec.has_teacher_outputs else None,
        teacher_topk_logits=topk_logits if spec.has_teacher_outputs else None,
        teacher_loss=float(rng.uniform(0, 10)) if spec.has_teacher_outputs else None,
    )


@pytest.mark.parametrize("logits_dtype", ["float32", "float16"])
def test_round_trip_preserves_every_field(logits_dtype):
    spec = rs.ShardSpec(seq_length=32, max_predictions_per_seq=6, top_k=8,
                        logits_dtype=logits_dtype)
    example = make_example(spec, np.random.default_rng(0))
    back = rs.deserialize(rs.serialize(example, spec), spec)
    for field in ("input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions",
                  "masked_lm_ids", "teacher_topk_ids"):
        np.testing.assert_array_equal(getattr(back, field), getattr(example, field), err_msg=field)
        assert getattr(back, field).dtype == np.int32, field
    np.testing.assert_array_equal(back.masked_lm_weights, example.masked_lm_weights)
    assert back.teacher_topk_logits.shape == (6, 8)
    if logits_dtype == "float32":
        np.testing.assert_array_equal(back.teacher_topk_logits, example.teacher_topk_logits)
    else:
        np.testing.assert_array_equal(
            back.teacher_topk_logits,
            example.teacher_topk_logits.astype(np.float16).astype(np.float32))
    assert back.teacher_loss == pytest.approx(example.teacher_loss, rel=1e-6)
    assert (back.language, back.teacher, back.example_id) == ("en", "bert_en", example.example_id)


def test_float16_logits_are_smaller_on_disk():
    rng = np.random.default_rng(1)
    spec32 = rs.ShardSpec(128, 20, 8, "float32")
    spec16 = rs.ShardSpec(128, 20, 8, "float16")
    example = make_example(spec32, rng, n_real=20)
    size32 = len(rs.serialize(example, spec32))
    size16 = len(rs.serialize(example, spec16))
    # 160 logits: 4 bytes each versus 2 bytes each.
    assert size32 - size16 >= 160 * 2 - 8


def test_parse_batch_shapes_and_dtypes():
    spec = rs.ShardSpec(16, 4, 3, "float16")
    rng = np.random.default_rng(2)
    records = [rs.serialize(make_example(spec, rng, example_id=f"en-x-{i}"), spec)
               for i in range(5)]
    batch = rs.parse_batch(tf.constant(records), spec)
    assert batch[rs.INPUT_WORD_IDS].shape == (5, 16)
    assert batch[rs.MASKED_LM_POSITIONS].dtype == tf.int32
    assert batch[rs.TEACHER_TOPK_IDS].shape == (5, 4, 3)
    assert batch[rs.TEACHER_TOPK_LOGITS].shape == (5, 4, 3)
    assert batch[rs.TEACHER_TOPK_LOGITS].dtype == tf.float32
    assert batch[rs.TEACHER_LOSS].shape == (5,)
    assert [x.decode() for x in batch[rs.EXAMPLE_ID].numpy()] == [f"en-x-{i}" for i in range(5)]
    device_batch = rs.parse_batch(tf.constant(records), spec, keep_strings=False)
    assert not {rs.LANGUAGE, rs.TEACHER, rs.EXAMPLE_ID} & set(device_batch)


def test_records_without_teacher_outputs():
    spec = rs.ShardSpec(16, 4, 8, has_teacher_outputs=False)
    example = make_example(spec, np.random.default_rng(3))
    back = rs.deserialize(rs.serialize(example, spec), spec)
    assert back.teacher_topk_ids is None and back.teacher_loss is None
    assert back.num_predictions == 3


@pytest.mark.parametrize("field,value,message", [
    ("input_word_ids", np.zeros(15, np.int32), "input_word_ids"),
    ("masked_lm_weights", np.zeros(5, np.float32), "masked_lm_weights"),
    ("teacher_topk_ids", np.zeros((4, 2), np.int32), "teacher_topk_ids"),
    ("teacher_topk_logits", None, "teacher_topk_logits"),
    ("teacher_loss", float("nan"), "teacher_loss"),
    ("masked_lm_positions", np.array([1, 2, 16, 0]), "out of range"),
    ("language", "", "language"),
])
def test_validation_names_the_field(field, value, message):
    spec = rs.ShardSpec(16, 4, 3)
    example = make_example(spec, np.random.default_rng(4))
    setattr(example, field, value)
    with pytest.raises(rs.RecordError, match=message):
        rs.serialize(example, spec)


def test_bad_specs_are_refused():
    with pytest.raises(rs.RecordError, match="logits_dtype"):
        rs.ShardSpec(16, 4, 3, "bfloat16")
    with pytest.raises(rs.RecordError, match="max_predictions_per_seq"):
        rs.ShardSpec(4, 8, 3)
    with pytest.raises(rs.RecordError, match="top_k"):
        rs.ShardSpec(16, 4, 0)


def test_a_record_of_another_spec_is_an_error():
    written = rs.ShardSpec(16, 4, 3)
    record = rs.serialize(make_example(written, np.random.default_rng(5)), written)
    with pytest.raises(rs.RecordError, match="does not match the schema"):
        rs.deserialize(record, rs.ShardSpec(32, 4, 3))


def test_tf_models_pretraining_loader_reads_a_shard(tmp_path):
    """tf-models-official's own BERT pretraining loader parses the gold part of our records."""
    from official.nlp.data import pretrain_dataloader

    spec = rs.ShardSpec(24, 5, 8, "float16")
    rng = np.random.default_rng(6)
    examples = [make_example(spec, rng, example_id=f"en-y-{i}") for i in range(6)]
    path = str(tmp_path / "en-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            writer.write(rs.serialize(example, spec))
    config = pretrain_dataloader.BertPretrainDataConfig(
        input_path=path, seq_length=24, max_predictions_per_seq=5,
        use_next_sentence_label=False, use_v2_feature_names=True, global_batch_size=3,
        is_training=False)
    batches = list(pretrain_dataloader.BertPretrainDataLoader(config).load().take(2))
    assert len(batches) == 2
    got_ids = np.concatenate([b["input_word_ids"].numpy() for b in batches])
    np.testing.assert_array_equal(got_ids, np.stack([e.input_word_ids for e in examples]))
    got_positions = np.concatenate([b["masked_lm_positions"].numpy() for b in batches])
    np.testing.assert_array_equal(got_positions,
                                  np.stack([e.masked_lm_positions for e in examples]))
    got_weights = np.concatenate([b["masked_lm_weights"].numpy() for b in batches])
    np.testing.assert_array_equal(got_weights, np.stack([e.masked_lm_weights for e in examples]))


@pytest.mark.parametrize("logits_dtype,value,message", [
    ("float32", np.nan, "NaN/infinite"),
    ("float16", np.inf, "NaN/infinite"),
    ("float16", 70000.0, "beyond float16's range"),
])
def test_writers_never_write_non_finite_or_overflowing_logits(logits_dtype, value, message):
    spec = rs.ShardSpec(16, 4, 3, logits_dtype)
    example = make_example(spec, np.random.default_rng(5))
    example.teacher_topk_logits[0, 1] = value
    with pytest.raises(rs.RecordError, match=message):
        rs.serialize(example, spec)
    example.teacher_topk_logits[0, 1] = 65504.0            # float16's largest value is fine
    back = rs.deserialize(rs.serialize(example, spec), spec)
    assert back.teacher_topk_logits[0, 1] == 65504.0
    example.masked_lm_weights[0] = np.nan
    with pytest.raises(rs.RecordError, match="masked_lm_weights must be finite"):
        rs.serialize(example, spec)


def _numpy_valued_serialize(example: rs.ScoredExample, spec: rs.ShardSpec) -> bytes:
    """serialize as it was before the values went to protobuf as Python numbers: NumPy arrays
    handed to Int64List / FloatList as they are."""
    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(
            value=np.asarray(values).reshape(-1)))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(
            value=np.asarray(values).reshape(-1)))

    def one_bytes(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {
        rs.INPUT_WORD_IDS: ints(example.input_word_ids), rs.INPUT_MASK: ints(example.input_mask),
        rs.INPUT_TYPE_IDS: ints(example.input_type_ids),
        rs.MASKED_LM_POSITIONS: ints(example.masked_lm_positions),
        rs.MASKED_LM_IDS: ints(example.masked_lm_ids),
        rs.MASKED_LM_WEIGHTS: floats(np.asarray(example.masked_lm_weights, np.float32)),
        rs.LANGUAGE: one_bytes(example.language.encode()),
        rs.TEACHER: one_bytes(example.teacher.encode()),
        rs.EXAMPLE_ID: one_bytes(example.example_id.encode())}
    if spec.has_teacher_outputs:
        features[rs.TEACHER_TOPK_IDS] = ints(example.teacher_topk_ids)
        logits = np.asarray(example.teacher_topk_logits, np.float32).reshape(-1)
        features[rs.TEACHER_TOPK_LOGITS] = (one_bytes(logits.astype("<f2").tobytes())
                                            if spec.logits_dtype == "float16" else floats(logits))
        features[rs.TEACHER_LOSS] = floats([example.teacher_loss])
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(
        deterministic=True)


@pytest.mark.parametrize("logits_dtype,has_teacher_outputs",
                         [("float32", True), ("float16", True), ("float32", False)])
def test_serialize_gives_the_bytes_of_numpy_valued_protobufs(logits_dtype,
                                                             has_teacher_outputs):
    spec = rs.ShardSpec(seq_length=32, max_predictions_per_seq=6, top_k=8,
                        logits_dtype=logits_dtype, has_teacher_outputs=has_teacher_outputs)
    rng = np.random.default_rng(7)
    for i in range(50):
        example = make_example(spec, rng, n_real=1 + i % 6)
        if has_teacher_outputs:
            example.teacher_topk_ids[0, -2:] = rs.INVALID_ID          # negative ids: 10-byte varints
            example.teacher_topk_logits[0] *= 1e3 if i % 2 else 1e-30  # large and tiny floats
            example.teacher_loss = float(rng.normal()) * 10 ** (i % 7 - 3)  # a float64, rounded
        example.masked_lm_weights[0] = 0.1 * (1 + i % 10)
        assert rs.serialize(example, spec) == _numpy_valued_serialize(example, spec)


def test_pickled_examples_come_back_equal_with_writable_arrays():
    import pickle

    spec = rs.ShardSpec(seq_length=32, max_predictions_per_seq=6, top_k=8)
    example = make_example(spec, np.random.default_rng(3))
    example.num_masked_words = 2
    example.teacher_word_loss = 1.25
    # Byte order, another dtype, a non-contiguous view and a 0-d array survive too.
    example.input_type_ids = np.arange(32, dtype=">i8")
    example.input_mask = np.ones((32, 2), np.int32)[:, 0]
    example.masked_lm_weights = example.masked_lm_weights.astype(np.float64)
    example.teacher_loss = np.float32(2.5)
    example.language = np.array("en", dtype=object)   # object arrays: pickled as they are
    pickled = pickle.dumps(example, protocol=pickle.HIGHEST_PROTOCOL)
    assert b"_unpickle_scored_example" in pickled     # the arrays in one buffer
    back = pickle.loads(pickled)
    assert type(back) is rs.ScoredExample
    for field in example.__dict__:
        original, copy = getattr(example, field), getattr(back, field)
        if isinstance(original, np.ndarray):
            assert copy.dtype == original.dtype and copy.shape == original.shape, field
            np.testing.assert_array_equal(copy, original, err_msg=field)
            if original.dtype != object:
                assert copy.flags.writeable and copy.flags.c_contiguous and copy.flags.aligned
        else:
            assert copy == original and type(copy) is type(original), field
    back.input_word_ids[0] = -5                      # its own memory, apart from each field's
    assert example.input_word_ids[0] != -5 and back.input_mask[0] == 1
    # Teacher fields left out (a copy before scoring) stay None.
    bare = make_example(rs.ShardSpec(32, 6, 8, has_teacher_outputs=False),
                        np.random.default_rng(4))
    again = pickle.loads(pickle.dumps(bare))
    assert again.teacher_topk_ids is None and again.teacher_loss is None
    np.testing.assert_array_equal(again.input_word_ids, bare.input_word_ids)
