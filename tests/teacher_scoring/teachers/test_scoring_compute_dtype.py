"""Scoring in bfloat16 (a bfloat16 encoder, a float32 MLM head) and the trace counter."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from teacher_scoring.teachers import scoring
from teacher_scoring.teachers.loaders import bert_mlm
from teacher_scoring.teachers.teacher import Teacher
from tests.conftest import trained_vocab
from tests.teacher_scoring.teachers.test_teacher_core import make_inputs, random_bert

K = 8


@pytest.fixture(scope="module")
def teacher():
    vocab = trained_vocab("en", 800)
    model, config = random_bert(len(vocab), seed=23)
    return Teacher("bf16_test", vocab, False, ["en"],
                   bert_mlm.mlm_logits_fn(model.encoder_network, model.masked_lm),
                   max_sequence_length=config.max_position_embeddings, model=model,
                   config=config)


@pytest.fixture(scope="module")
def batch(teacher):
    batch = make_inputs(teacher.vocab_size, batch=4, seq_length=24, predictions=6, seed=7)
    batch["masked_lm_weights"][3] = 0.0                   # an example without real slots
    return batch


@pytest.mark.parametrize("jit_compile", [False, True])
def test_bfloat16_scores_are_close_to_float32_and_really_bfloat16(teacher, batch, jit_compile):
    f32 = scoring.make_score_fn(teacher, top_k=K, jit_compile=jit_compile)(batch)
    bf16 = scoring.make_score_fn(teacher, top_k=K, jit_compile=jit_compile,
                                 compute_dtype="bfloat16")(batch)
    for key in (scoring.TOPK_IDS, scoring.TOPK_LOGITS, scoring.TEACHER_LOSS):
        assert bf16[key].dtype == f32[key].dtype and bf16[key].shape == f32[key].shape
    real = batch["masked_lm_weights"] > 0
    a, b = f32[scoring.TOPK_LOGITS].numpy(), bf16[scoring.TOPK_LOGITS].numpy()
    # Computed in bfloat16 (8-bit mantissa): not the float32 numbers ...
    assert not np.array_equal(a[real], b[real])
    # ... but close to them: the logits' spread is O(1..10), bfloat16 rounds at 2^-8 relative.
    scale = np.abs(a[real]).max()
    assert np.abs(a[real] - b[real]).max() <= 0.05 * scale
    top1 = (f32[scoring.TOPK_IDS].numpy()[real][:, 0] == bf16[scoring.TOPK_IDS].numpy()[real][:, 0])
    assert top1.mean() >= 0.8
    np.testing.assert_allclose(bf16[scoring.TEACHER_LOSS].numpy(),
                               f32[scoring.TEACHER_LOSS].numpy(), rtol=0.05, atol=0.02)
    # Padded slots keep the contract (id 0, logit 0), and the global policy is untouched.
    assert np.all(bf16[scoring.TOPK_IDS].numpy()[~real] == 0)
    assert np.all(b[~real] == 0)
    assert tf_keras.mixed_precision.global_policy().name == "float32"


def test_bfloat16_encoder_is_a_bfloat16_copy_with_the_same_weights(teacher):
    rebuilt = scoring.bfloat16_teacher(teacher)
    encoder, masked_lm = rebuilt.model
    assert encoder.compute_dtype == "bfloat16" and encoder is not teacher.model.encoder_network
    assert masked_lm is teacher.model.masked_lm
    for mine, theirs in zip(encoder.weights, teacher.model.encoder_network.weights):
        assert mine.dtype == tf.float32
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert rebuilt.vocab == teacher.vocab and rebuilt.name == teacher.name


def test_bfloat16_needs_a_tf_models_bert_teacher(teacher):
    plain = Teacher("plain", teacher.vocab, False, ["en"],
                    lambda ids, mask, types, positions: tf.zeros(
                        [tf.shape(ids)[0], tf.shape(positions)[1], len(teacher.vocab)]))
    with pytest.raises(scoring.ScoringError,
                       match=r"teacher 'plain' .*compute_dtype bfloat16 needs a tf-models BERT "
                             r"teacher.*Use compute_dtype: float32"):
        scoring.make_score_fn(plain, top_k=K, compute_dtype="bfloat16")
    # float32 is fine for it.
    scoring.make_score_fn(plain, top_k=K)


@pytest.mark.parametrize("bad", ["float16", "bf16", "", None, 16])
def test_unknown_compute_dtype_is_refused_by_name(teacher, bad):
    with pytest.raises(scoring.ScoringError,
                       match=r"compute_dtype must be one of \['float32', 'bfloat16'\], got "
                             + repr(bad).replace("'", "'")):
        scoring.make_score_fn(teacher, top_k=K, compute_dtype=bad)


def test_traces_are_counted_per_teacher_and_shape(teacher, batch):
    score = scoring.make_score_fn(teacher, top_k=K)
    before, before_all = scoring.traces("bf16_test"), scoring.traces()
    score(batch)
    score(batch)
    assert scoring.traces("bf16_test") == before + 1
    smaller = {k: v[:2] for k, v in batch.items()}
    score(smaller)
    score(smaller)
    assert scoring.traces("bf16_test") == before + 2
    assert scoring.traces() == before_all + 2
    assert score.experimental_get_tracing_count() == 2
    assert scoring.traces("no_such_teacher") == 0
