"""Offline scoring: top-k ids/logits, padded slots, teacher loss, XLA, float16 storage."""

import numpy as np
import pytest
import tensorflow as tf

from teacher_scoring.records import record_schema as rs
from teacher_scoring.teachers import scoring
from teacher_scoring.teachers.loaders import bert_mlm
from teacher_scoring.teachers.teacher import Teacher
from tests.conftest import trained_vocab
from tests.teacher_scoring.teachers.test_teacher_core import make_inputs, model_inputs, random_bert

K = 8
F16_RELATIVE_ERROR = 2.0 ** -11  # half a float16 ulp, relative (10-bit mantissa)


@pytest.fixture(scope="module")
def teacher():
    vocab = trained_vocab("en", 800)
    model, config = random_bert(len(vocab), seed=21)
    return Teacher("en", vocab, False, ["en"],
                   bert_mlm.mlm_logits_fn(model.encoder_network, model.masked_lm),
                   max_sequence_length=config.max_position_embeddings, model=model)


@pytest.fixture(scope="module")
def batch(teacher):
    batch = make_inputs(teacher.vocab_size, batch=4, seq_length=24, predictions=6, seed=5)
    batch["masked_lm_weights"][0, :3] = [0.5, 2.0, 1.0]  # non-uniform weights
    batch["masked_lm_weights"][3] = 0.0                   # an example without real slots
    return batch


def as_tensors(batch):
    return {k: tf.constant(v) for k, v in batch.items()}


def reference_loss(logits, gold, weights):
    """Weighted mean cross-entropy per example, in float64 NumPy."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_probs, gold[:, :, None].astype(np.int64), -1)[:, :, 0]
    w = np.where(weights > 0, weights, 0.0).astype(np.float64)
    total = w.sum(1)
    return np.where(total > 0, (ce * w).sum(1) / np.where(total > 0, total, 1.0), 0.0)


def test_topk_padding_and_loss(teacher, batch):
    out = scoring.make_score_fn(teacher, top_k=K)(as_tensors(batch))
    assert out["topk_ids"].dtype == tf.int32 and out["topk_ids"].shape == (4, 6, K)
    assert out["topk_logits"].dtype == tf.float32 and out["topk_logits"].shape == (4, 6, K)
    assert out["teacher_loss"].dtype == tf.float32 and out["teacher_loss"].shape == (4,)

    full = teacher.mlm_logits(**model_inputs(batch))                       # [B, P, V]
    want_values, want_ids = tf.math.top_k(full, k=K)
    real = batch["masked_lm_weights"] > 0
    assert real.sum() > 0 and (~real).sum() > 0
    np.testing.assert_array_equal(out["topk_ids"].numpy()[real], want_ids.numpy()[real])
    np.testing.assert_allclose(out["topk_logits"].numpy()[real], want_values.numpy()[real],
                               rtol=1e-6, atol=1e-6)
    # Raw logits (not probabilities), best first.
    assert np.all(np.diff(out["topk_logits"].numpy()[real], axis=-1) <= 0)
    assert np.any(out["topk_logits"].numpy()[real] > 1.0)
    # Padded slots are zeroed.
    assert np.all(out["topk_ids"].numpy()[~real] == 0)
    assert np.all(out["topk_logits"].numpy()[~real] == 0.0)

    loss = reference_loss(full.numpy(), batch["masked_lm_ids"], batch["masked_lm_weights"])
    np.testing.assert_allclose(out["teacher_loss"].numpy(), loss, rtol=1e-5)
    assert out["teacher_loss"].numpy()[3] == 0.0


def test_padded_slots_do_not_enter_the_loss(teacher, batch):
    score = scoring.make_score_fn(teacher, top_k=K)
    changed = {k: v.copy() for k, v in batch.items()}
    padded = changed["masked_lm_weights"] == 0
    changed["masked_lm_ids"][padded] = 17  # another gold id in every padded slot
    changed["masked_lm_weights"][padded] = -1.0  # negative weight: also not a real slot
    a, b = score(as_tensors(batch)), score(as_tensors(changed))
    np.testing.assert_array_equal(a["teacher_loss"].numpy(), b["teacher_loss"].numpy())
    np.testing.assert_array_equal(a["topk_ids"].numpy(), b["topk_ids"].numpy())


def test_jit_compile_matches(teacher, batch):
    plain = scoring.make_score_fn(teacher, top_k=K)(as_tensors(batch))
    compiled = scoring.make_score_fn(teacher, top_k=K, jit_compile=True)(as_tensors(batch))
    np.testing.assert_array_equal(compiled["topk_ids"].numpy(), plain["topk_ids"].numpy())
    np.testing.assert_allclose(compiled["topk_logits"].numpy(), plain["topk_logits"].numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(compiled["teacher_loss"].numpy(), plain["teacher_loss"].numpy(),
                               rtol=1e-5)


def test_bad_slots_make_the_loss_nan(teacher, batch):
    score = scoring.make_score_fn(teacher, top_k=K, jit_compile=True)
    bad = {k: v.copy() for k, v in batch.items()}
    bad["masked_lm_ids"][1, 0] = teacher.vocab_size      # gold id outside the vocabulary
    bad["masked_lm_ids"][2, 0] = -1
    loss = score(as_tensors(bad))["teacher_loss"].numpy()
    assert np.isnan(loss[1]) and np.isnan(loss[2])
    assert np.isfinite(loss[0]) and loss[3] == 0.0


def test_contract_errors(teacher, batch):
    with pytest.raises(scoring.ScoringError, match="top_k must be an integer"):
        scoring.make_score_fn(teacher, top_k=teacher.vocab_size + 1)
    score = scoring.make_score_fn(teacher, top_k=K)
    missing = as_tensors(batch)
    del missing["masked_lm_weights"]
    with pytest.raises(scoring.ScoringError, match=r"batch lacks \['masked_lm_weights'\]"):
        score(missing)
    wrong = as_tensors(batch)
    wrong["input_mask"] = tf.cast(wrong["input_mask"], tf.int64)
    with pytest.raises(scoring.ScoringError, match="is int64, expected int32"):
        score(wrong)
    long = make_inputs(teacher.vocab_size, batch=1, seq_length=80, predictions=4)
    with pytest.raises(scoring.ScoringError, match="exceed its max_sequence_length=64"):
        score(as_tensors(long))


def _round_trip(topk_ids, topk_logits, batch, i, logits_dtype):
    spec = rs.ShardSpec(seq_length=batch["input_word_ids"].shape[1],
                        max_predictions_per_seq=batch["masked_lm_ids"].shape[1], top_k=K,
                        logits_dtype=logits_dtype)
    example = rs.ScoredExample(
        **{k: batch[k][i] for k in ("input_word_ids", "input_mask", "input_type_ids",
                                    "masked_lm_positions", "masked_lm_ids",
                                    "masked_lm_weights")},
        language="en", teacher="en", example_id=f"en-{i}", teacher_topk_ids=topk_ids[i],
        teacher_topk_logits=topk_logits[i], teacher_loss=1.0)
    return rs.deserialize(rs.serialize(example, spec), spec)


def _softmax(x, temperature):
    z = x / temperature
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def test_float16_storage_precision(teacher, batch):
    """float16 logits through the record schema: relative error <= 2^-11, and the renormalised
    top-k distribution p (softmax of logits / T) moves by at most p * (exp(2D/T) - 1), D being
    the largest absolute logit error (see docs/teachers.md)."""
    out = scoring.make_score_fn(teacher, top_k=K)(as_tensors(batch))
    ids, logits = out["topk_ids"].numpy(), out["topk_logits"].numpy()
    rng = np.random.default_rng(0)
    # Also logits over a BERT-like range of magnitudes (top-k logits of real MLMs: ~-5..30).
    wide = logits.copy()
    real = batch["masked_lm_weights"] > 0
    wide[real] = np.sort(rng.uniform(-5.0, 30.0, wide[real].shape), axis=-1)[:, ::-1]
    for values in (logits, wide):
        for i in range(batch["input_word_ids"].shape[0]):
            f32 = _round_trip(ids, values, batch, i, "float32")
            f16 = _round_trip(ids, values, batch, i, "float16")
            np.testing.assert_array_equal(f16.teacher_topk_ids, ids[i])
            np.testing.assert_array_equal(f32.teacher_topk_logits, values[i])
            assert f16.teacher_topk_logits.dtype == np.float32
            stored, exact = f16.teacher_topk_logits, values[i].astype(np.float64)
            assert np.all(np.abs(stored - exact) <= F16_RELATIVE_ERROR * np.abs(exact) + 2.0**-25)
            rows = real[i]
            if not rows.any():
                continue
            d = np.abs(stored - exact)[rows].max()
            for temperature in (1.0, 2.0):
                p = _softmax(exact[rows], temperature)
                q = _softmax(stored[rows].astype(np.float64), temperature)
                assert np.all(np.abs(q - p) <= p * np.expm1(2 * d / temperature) + 1e-12)
                assert np.abs(q - p).max() <= 0.016 / temperature  # |z| <= 32 → D <= 2^-7
