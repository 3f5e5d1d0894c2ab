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

The function is a `tf.function` traced once per static input shape (`traces()` counts the
traces of every scoring function of this process, per teacher); `jit_compile=True` compiles it
with XLA (CPU, GPU or TPU).

`compute_dtype="bfloat16"` runs the teacher's encoder in bfloat16 (tf_keras `mixed_bfloat16`:
float32 weights, bfloat16 matrix products and activations) and keeps the MLM head (transform,
LayerNorm, the product with the vocabulary, top-k and loss) in float32, so the ranking of the
top-k and the logits come from float32 arithmetic on a bfloat16 encoder output
(`bfloat16_teacher`). Only tf-models BERT teachers (the `google_bert_checkpoint`, `hf_folder`
and `tfm_checkpoint` formats) can be rebuilt so; any other teacher is a ScoringError. The
fidelity and speed against float32 are measured by bench/bench_scoring.py (docs/scoring_job.md).
"""

from __future__ import annotations

import collections
import threading
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
COMPUTE_DTYPES = ("float32", "bfloat16")

# Traces of scoring functions in this process, per teacher name (a trace runs the Python body of
# `score`; under XLA each one is also a compilation).
_TRACES: collections.Counter = collections.Counter()
_TRACES_LOCK = threading.Lock()
# tf_keras's dtype policy is process-global: models are rebuilt under it one at a time.
_POLICY_LOCK = threading.Lock()


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


def traces(teacher_name: str | None = None) -> int:
    """How many times scoring functions were traced in this process (for one teacher's name,
    or all)."""
    with _TRACES_LOCK:
        return _TRACES[teacher_name] if teacher_name is not None else sum(_TRACES.values())


def bfloat16_teacher(teacher: Teacher) -> Teacher:
    """The teacher with its encoder rebuilt under tf_keras's `mixed_bfloat16` policy (the same
    float32 weights; bfloat16 products and activations) and its float32 MLM head.

    Raises:
      ScoringError: the teacher is not a tf-models BERT masked LM (a model with
        `encoder_network` and `masked_lm`, and a BertMLMConfig), e.g. a SavedModel teacher.
    """
    import tf_keras  # pylint: disable=import-outside-toplevel
    from teacher_scoring.teachers.loaders import bert_mlm  # pylint: disable=import-outside-toplevel

    model = teacher.model
    if (not isinstance(teacher.config, bert_mlm.BertMLMConfig)
            or not hasattr(model, "encoder_network") or not hasattr(model, "masked_lm")):
        raise ScoringError(
            f"teacher {teacher.name!r} ({teacher.format or 'built in code'}, {teacher.path!r}): "
            "compute_dtype bfloat16 needs a tf-models BERT teacher (formats "
            "google_bert_checkpoint, hf_folder, tfm_checkpoint) whose encoder can be rebuilt in "
            f"bfloat16; this one is {type(model).__name__}. Use compute_dtype: float32")
    with _POLICY_LOCK:
        previous = tf_keras.mixed_precision.global_policy()
        tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            copy = bert_mlm.build_bert_mlm(teacher.config)
        finally:
            tf_keras.mixed_precision.set_global_policy(previous)
    source, target = model.encoder_network.weights, copy.encoder_network.weights
    shapes = [tuple(w.shape) for w in source]
    if shapes != [tuple(w.shape) for w in target]:
        raise ScoringError(f"teacher {teacher.name!r}: its encoder's variables {shapes[:4]}... "
                           "do not match a BERT encoder built from its config; cannot rebuild it "
                           "in bfloat16 (use compute_dtype: float32)")
    copy.encoder_network.set_weights(model.encoder_network.get_weights())
    encoder = copy.encoder_network
    masked_lm = model.masked_lm     # float32, its decoder is the float32 embedding table

    def mlm_fn(input_word_ids, input_mask, input_type_ids, masked_lm_positions):
        outputs = encoder(dict(input_word_ids=input_word_ids, input_mask=input_mask,
                               input_type_ids=input_type_ids), training=False)
        sequence_output = (outputs["sequence_output"] if isinstance(outputs, dict)
                           else outputs[0])
        return masked_lm(tf.cast(sequence_output, tf.float32),
                         masked_positions=masked_lm_positions, training=False)

    return Teacher(teacher.name, teacher.vocab, teacher.lower_case, teacher.languages, mlm_fn,
                   max_sequence_length=teacher.max_sequence_length, model=(encoder, masked_lm),
                   format=teacher.format, path=teacher.path, config=teacher.config)


def make_score_fn(teacher: Teacher, top_k: int = 8, jit_compile: bool = False,
                  compute_dtype: str = "float32"):
    """The scoring function of a teacher.

    Args:
      teacher: the Teacher (any architecture).
      top_k: k, the number of logits kept per masked slot.
      jit_compile: compile with XLA.
      compute_dtype: "float32", or "bfloat16" for a tf-models BERT teacher (module docstring).

    Returns:
      A tf.function batch dict → {topk_ids, topk_logits, teacher_loss} (module docstring).

    Raises:
      ScoringError: top_k is not in [1, vocab_size]; compute_dtype is not one of
        COMPUTE_DTYPES, or bfloat16 for a teacher that cannot be rebuilt in it; at trace time,
        a batch of wrong keys, dtypes or shapes, or longer than the teacher accepts.
    """
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= teacher.vocab_size:
        raise ScoringError(f"teacher {teacher.name!r}: top_k must be an integer in "
                           f"[1, {teacher.vocab_size}], got {top_k!r}")
    if compute_dtype not in COMPUTE_DTYPES:
        raise ScoringError(f"teacher {teacher.name!r}: compute_dtype must be one of "
                           f"{list(COMPUTE_DTYPES)}, got {compute_dtype!r}")
    if compute_dtype == "bfloat16":
        teacher = bfloat16_teacher(teacher)
    vocab_size = teacher.vocab_size
    name = teacher.name

    def score(batch):
        with _TRACES_LOCK:
            _TRACES[name] += 1
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
