"""Offline teacher scoring: a batch of masked examples → top-k logits per masked slot + loss.

    score = make_score_fn(teacher, top_k=8, jit_compile=True)
    out = score(batch)   # batch: a dict of the six tf-models pretraining features

Inputs (static shapes B, S, P):
  input_word_ids, input_mask, input_type_ids   int32 [B, S]   teacher token ids
  masked_lm_positions, masked_lm_ids           int32 [B, P]   positions, gold teacher ids
  masked_lm_weights                            float32 [B, P] > 0 for a real slot, 0 for padding

Outputs:
  topk_ids      int32 [B, P, k]    teacher vocabulary ids of the k largest logits, best first
  topk_logits   float32 [B, P, k]  their raw logits (not probabilities: the student chooses the
                                   temperature when it renormalises them)
  teacher_loss  float32 [B]        the teacher's cross-entropy of the gold ids, weighted mean
                                   over the real slots (0 when an example has none)

Padded slots (weight 0) get id 0 and logit 0 and do not enter the loss. A real slot whose gold
id is outside the teacher vocabulary, or whose position is outside [0, S), makes the example's
loss NaN: `record_schema.validate` refuses such a record, so a bad example cannot be written
silently (the check is arithmetic, so it also works under XLA, where assertions cannot run).

The function is a `tf.function` traced once per static input shape; `jit_compile=True` compiles
it with XLA (CPU, GPU or TPU).
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from teacher_scoring.records import record_schema as rs
from teacher_scoring.teachers.teacher import Teacher

TOPK_IDS = "topk_ids"
TOPK_LOGITS = "topk_logits"
TEACHER_LOSS = "teacher_loss"

_INT_INPUTS = (rs.INPUT_WORD_IDS, rs.INPUT_MASK, rs.INPUT_TYPE_IDS, rs.MASKED_LM_POSITIONS,
               rs.MASKED_LM_IDS)
INPUTS = _INT_INPUTS + (rs.MASKED_LM_WEIGHTS,)


class ScoringError(ValueError):
    """A batch does not fit the teacher or the scoring function's contract."""


def _check_batch(batch: Mapping[str, tf.Tensor], teacher: Teacher) -> None:
    """Trace-time checks of keys, dtypes and static shapes."""
    missing = [name for name in INPUTS if name not in batch]
    if missing:
        raise ScoringError(f"teacher {teacher.name!r}: batch lacks {missing}")
    for name in INPUTS:
        want = tf.float32 if name == rs.MASKED_LM_WEIGHTS else tf.int32
        if batch[name].dtype != want:
            raise ScoringError(f"teacher {teacher.name!r}: batch[{name!r}] is "
                               f"{batch[name].dtype.name}, expected {want.name}")
        if batch[name].shape.rank != 2:
            raise ScoringError(f"teacher {teacher.name!r}: batch[{name!r}] has shape "
                               f"{batch[name].shape}, expected rank 2")
    seq_shape = batch[rs.INPUT_WORD_IDS].shape
    for name in (rs.INPUT_MASK, rs.INPUT_TYPE_IDS):
        if not batch[name].shape.is_compatible_with(seq_shape):
            raise ScoringError(f"teacher {teacher.name!r}: batch[{name!r}] has shape "
                               f"{batch[name].shape}, input_word_ids {seq_shape}")
    pred_shape = batch[rs.MASKED_LM_POSITIONS].shape
    for name in (rs.MASKED_LM_IDS, rs.MASKED_LM_WEIGHTS):
        if not batch[name].shape.is_compatible_with(pred_shape):
            raise ScoringError(f"teacher {teacher.name!r}: batch[{name!r}] has shape "
                               f"{batch[name].shape}, masked_lm_positions {pred_shape}")
    seq_length = seq_shape[1]
    if (teacher.max_sequence_length is not None and seq_length is not None
            and seq_length > teacher.max_sequence_length):
        raise ScoringError(f"teacher {teacher.name!r}: sequences of {seq_length} tokens exceed its "
                           f"max_sequence_length={teacher.max_sequence_length}")


def make_score_fn(teacher: Teacher, top_k: int = 8, jit_compile: bool = False):
    """The scoring function of a teacher.

    Args:
      teacher: the Teacher (any architecture).
      top_k: k, the number of logits kept per masked slot.
      jit_compile: compile with XLA.

    Returns:
      A tf.function batch dict → {topk_ids, topk_logits, teacher_loss} (module docstring).

    Raises:
      ScoringError: top_k is not in [1, vocab_size]; at trace time, a batch of wrong keys,
        dtypes or shapes, or longer than the teacher accepts.
    """
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= teacher.vocab_size:
        raise ScoringError(f"teacher {teacher.name!r}: top_k must be an integer in "
                           f"[1, {teacher.vocab_size}], got {top_k!r}")
    vocab_size = teacher.vocab_size

    def score(batch):
        _check_batch(batch, teacher)
        positions = batch[rs.MASKED_LM_POSITIONS]
        gold = batch[rs.MASKED_LM_IDS]
        weights = batch[rs.MASKED_LM_WEIGHTS]
        logits = teacher.mlm_logits(batch[rs.INPUT_WORD_IDS], batch[rs.INPUT_MASK],
                                    batch[rs.INPUT_TYPE_IDS], positions)  # [B, P, V]
        logits = tf.ensure_shape(logits, positions.shape.concatenate([vocab_size]))

        real = weights > 0.0                                               # [B, P]
        topk_logits, topk_ids = tf.math.top_k(logits, k=top_k, sorted=True)
        topk_ids = tf.where(real[:, :, None], topk_ids, tf.zeros_like(topk_ids))
        topk_logits = tf.where(real[:, :, None], topk_logits, tf.zeros_like(topk_logits))

        seq_length = tf.shape(batch[rs.INPUT_WORD_IDS])[1]
        gold_ok = (gold >= 0) & (gold < vocab_size)
        position_ok = (positions >= 0) & (positions < seq_length)
        safe_gold = tf.where(real & gold_ok, gold, tf.zeros_like(gold))
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        gold_log_probs = tf.gather(log_probs, safe_gold, batch_dims=2)    # [B, P]
        real_weights = tf.where(real, weights, tf.zeros_like(weights))
        slot_loss = tf.where(real, -gold_log_probs * weights, tf.zeros_like(weights))
        loss = tf.math.divide_no_nan(
            tf.reduce_sum(slot_loss, axis=1),
            tf.reduce_sum(real_weights, axis=1))                           # [B]
        bad = tf.reduce_any(real & ~(gold_ok & position_ok), axis=1)
        loss = tf.where(bad, tf.fill(tf.shape(loss), float("nan")), loss)
        return {TOPK_IDS: topk_ids, TOPK_LOGITS: topk_logits, TEACHER_LOSS: loss}

    # No autograph: the function has no tensor-dependent Python control flow, and trace-time
    # ScoringErrors then reach the caller as they are.
    return tf.function(score, jit_compile=jit_compile, autograph=False)
