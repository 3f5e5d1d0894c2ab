"""The student's losses: MLM on gold ids, KD against the teachers' stored top-k, and their mix.

Notation: B batch, P masked slots per sequence, V student vocab, k stored teacher entries.

MLM (paper Eq. 1 / A.1): weighted mean over masked slots of -log p_s(gold)
    L_MLM = sum_{b,p} w_bp * -log softmax(z_bp)[gold_bp] / sum_{b,p} w_bp

KD (paper Eq. 2 / A.1) from offline top-k: the teacher distribution of slot (b, p) is the softmax
of its k stored logits divided by T, renormalised over the *valid* entries only (entry j is valid
iff w_bp > 0 and teacher_topk_ids[b, p, j] >= 0). The student's log-probabilities are the
full-vocabulary log_softmax(z / T) taken at the teacher ids, so the term is exactly the
cross-entropy of Eq. 2 whenever the teacher's mass lies in its top-k:
    q_bpj = softmax_{j valid}(t_bpj / T)
    L_KD  = [T^2 if scaled] * sum_{b,p} w_bp * -sum_j q_bpj log softmax(z_bp / T)[id_bpj]
            / sum_{b,p} w_bp * has_valid_bp
A slot with no valid entry contributes nothing (neither to the sum nor to the count). T = 1 and
no scaling reproduce the paper; T^2 scaling (Hinton et al. 2015) keeps the gradient magnitude of
the KD term independent of T.

Total: L = lambda * L_KD + (1 - lambda) * L_MLM (see lambda_schedule.py for lambda).

Gold-only examples (languages without a teacher, paper §4.4): the optional per-example KD weight
t_b (feature `kd_weight` [B]: 1 distilled, 0 gold-only) multiplies the KD slot weights, so a
gold-only example contributes exactly nothing to the KD sum or to its denominator (like a slot
without a valid teacher entry), and its MLM term gets weight 1 instead of (1 - lambda):
    L = lambda * L_KD + sum_{b,p} (1 - lambda * t_b) w_bp * nll_bp / sum_{b,p} w_bp
      = lambda * L_KD + (1 - lambda) * L_MLM + lambda * L_MLM,gold-only
where L_MLM,gold-only is the gold-only rows' share of the MLM sum over the same denominator.
Why weight 1: the KD/MLM mix is teacher annealing (Clark et al. 2019), i.e. a cross-entropy
against lambda * teacher + (1 - lambda) * gold; with no teacher distribution the target is the
gold token alone. Footnote 10 expects the teacher-less language to improve through the shared
space while it trains on its own gold data; weighting that data by (1 - lambda) would give it no
gradient at step 0 (lambda starts at 1) and half its signal over the anneal. With t_b = 1 for
every example (or no kd_weight feature) L is exactly the formula above.

Cost: the log-probabilities at the gold id and the k teacher ids come from one softmax over the
vocabulary with a custom gradient (`sparse_multi_target_nll`), so KD + MLM costs about what MLM
alone costs.

Every loss is written as numerator / denominator. The denominators depend only on the batch, so
under a distribution strategy the trainer all-reduces them first and each replica divides its own
numerator by the global denominator: the summed per-replica losses and gradients are then exactly
those of the whole global batch.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

# Logit given to invalid teacher entries before the softmax (finite: keeps gradients NaN-free).
_MASKED_LOGIT = -1e9


def _float(x: tf.Tensor) -> tf.Tensor:
    """float32, or float64 kept as is (numerical gradient checks)."""
    x = tf.convert_to_tensor(x)
    return x if x.dtype == tf.float64 else tf.cast(x, tf.float32)


class Denominators(NamedTuple):
    """Per-batch normalisers (float32 scalars)."""

    mlm: tf.Tensor  # sum of masked_lm_weights
    kd: tf.Tensor   # sum of masked_lm_weights over slots with >= 1 valid teacher entry


class LossValues(NamedTuple):
    """Loss values of one batch (float32 scalars)."""

    total: tf.Tensor
    kd: tf.Tensor
    mlm: tf.Tensor


def sparse_multi_target_nll(logits: tf.Tensor, target_ids: tf.Tensor) -> tf.Tensor:
    """-log softmax(logits)[id] for several ids a row, from one softmax over the vocabulary.

    Args:
      logits: float [..., V].
      target_ids: int32 [..., M], each in [0, V) (callers clip invalid ids and mask them).

    Returns:
      nll [..., M] with nll[..., j] = logsumexp(logits) - logits[target_ids[..., j]].

    Forward: one softmax over the vocabulary; logsumexp(z) = max(z) - log(max(softmax(z)))
    (exact, and max softmax >= 1/V never underflows). Gradient, from the kept softmax:
        d/dz sum_j g_j nll_j = softmax(z) * sum_j g_j - sum_j g_j onehot(id_j)
    (one scale and one sparse scatter). MLM alone (M = 1) and KD + MLM (M = 1 + k) thus cost
    about the same; on CPU this is also several times faster than TF's fused
    SparseSoftmaxCrossEntropyWithLogits kernel (see bench/bench_student.py).
    """
    logits = _float(logits)
    vocab_size = tf.shape(logits)[-1]
    num_targets = tf.shape(target_ids)[-1]
    flat_logits = tf.reshape(logits, [-1, vocab_size])
    flat_ids = tf.reshape(tf.cast(target_ids, tf.int32), [-1, num_targets])

    @tf.custom_gradient
    def nll_fn(z):
        probs = tf.nn.softmax(z, axis=-1)                                  # [N, V]
        log_normalizer = (tf.reduce_max(z, axis=-1)
                          - tf.math.log(tf.reduce_max(probs, axis=-1)))    # [N]
        nll = log_normalizer[:, None] - tf.gather(z, flat_ids, batch_dims=1)

        def grad(upstream):                                                # [N, M]
            rows = tf.broadcast_to(tf.range(tf.shape(z)[0])[:, None], tf.shape(flat_ids))
            indices = tf.stack([tf.reshape(rows, [-1]), tf.reshape(flat_ids, [-1])], axis=-1)
            scaled = probs * tf.reduce_sum(upstream, axis=-1, keepdims=True)
            return tf.tensor_scatter_nd_sub(scaled, indices, tf.reshape(upstream, [-1]))

        return nll, grad

    nll = nll_fn(flat_logits)
    return tf.reshape(nll, tf.shape(target_ids))


KD_WEIGHT = "kd_weight"  # per-example KD weight [B]: 1 distilled, 0 gold-only


def valid_teacher_entries(teacher_topk_ids: tf.Tensor, masked_lm_weights: tf.Tensor) -> tf.Tensor:
    """bool [B, P, k]: entry (b, p, j) is real iff w_bp > 0 and id >= 0."""
    return tf.logical_and(teacher_topk_ids >= 0, (masked_lm_weights > 0)[..., None])


def kd_slot_weights(teacher_topk_ids: tf.Tensor, masked_lm_weights: tf.Tensor,
                    kd_weight: tf.Tensor | None = None) -> tf.Tensor:
    """float32 [B, P]: w_bp * t_b for slots with at least one valid teacher entry, else 0.

    kd_weight: optional float [B] per-example KD weight t_b (None: 1 for every example).
    """
    has_valid = tf.reduce_any(valid_teacher_entries(teacher_topk_ids, masked_lm_weights), -1)
    slot_weights = tf.where(has_valid, tf.cast(masked_lm_weights, tf.float32), 0.0)
    if kd_weight is not None:
        slot_weights = slot_weights * tf.cast(kd_weight, tf.float32)[:, None]
    return slot_weights


def denominators(features: dict[str, tf.Tensor], use_teacher: bool) -> Denominators:
    """The loss denominators of a batch of features (see the module docstring)."""
    weights = tf.cast(features["masked_lm_weights"], tf.float32)
    mlm = tf.reduce_sum(weights)
    if use_teacher:
        kd = tf.reduce_sum(kd_slot_weights(features["teacher_topk_ids"], weights,
                                           features.get(KD_WEIGHT)))
    else:
        kd = tf.zeros([], tf.float32)
    return Denominators(mlm=mlm, kd=kd)


def _mlm_row_sums(logits: tf.Tensor, masked_lm_ids: tf.Tensor,
                  masked_lm_weights: tf.Tensor) -> tf.Tensor:
    """[B]: sum_p w_bp * -log softmax(logits_bp)[gold_bp] (see mlm_loss_sum)."""
    logits = _float(logits)
    vocab_size = tf.shape(logits)[-1]
    ids = tf.clip_by_value(tf.cast(masked_lm_ids, tf.int32), 0, vocab_size - 1)
    nll = sparse_multi_target_nll(logits, ids[..., None])[..., 0]
    return tf.reduce_sum(nll * tf.cast(masked_lm_weights, logits.dtype), axis=-1)


def mlm_loss_sum(logits: tf.Tensor, masked_lm_ids: tf.Tensor,
                 masked_lm_weights: tf.Tensor) -> tf.Tensor:
    """sum_{b,p} w_bp * -log softmax(logits_bp)[gold_bp].

    Args:
      logits: float [B, P, V] student logits at the masked positions.
      masked_lm_ids: int32 [B, P] gold ids (any value where the weight is 0).
      masked_lm_weights: float32 [B, P], 0 for padding slots.

    Returns:
      float32 scalar.
    """
    return tf.reduce_sum(_mlm_row_sums(logits, masked_lm_ids, masked_lm_weights))


def kd_loss_sum(logits: tf.Tensor, teacher_topk_ids: tf.Tensor, teacher_topk_logits: tf.Tensor,
                masked_lm_weights: tf.Tensor, temperature: float = 1.0,
                scale_by_temperature_squared: bool = False,
                kd_weight: tf.Tensor | None = None) -> tf.Tensor:
    """sum_{b,p} t_b w_bp * CE(teacher top-k distribution, student distribution) (scaled by T^2).

    Args:
      logits: float [B, P, V] student logits at the masked positions.
      teacher_topk_ids: int32 [B, P, k] student-vocab ids of the teacher's top-k (-1 = invalid).
      teacher_topk_logits: float32 [B, P, k] the teacher's raw logits of those ids.
      masked_lm_weights: float32 [B, P], 0 for padding slots.
      temperature: T > 0; both teacher and student logits are divided by T.
      scale_by_temperature_squared: multiply by T^2.
      kd_weight: optional float [B] per-example weight t_b (0: gold-only example, whose term and
        gradient are then exactly 0); None = 1.

    Returns:
      float32 scalar. The teacher side gets no gradient.
    """
    logits = _float(logits)
    vocab_size = tf.shape(logits)[-1]
    ids = tf.clip_by_value(tf.cast(teacher_topk_ids, tf.int32), 0, vocab_size - 1)
    nll = sparse_multi_target_nll(logits / temperature, ids)   # [B, P, k]
    return _kd_sum_from_nll(nll, teacher_topk_ids, teacher_topk_logits, masked_lm_weights,
                            temperature, scale_by_temperature_squared, kd_weight)


def teacher_distribution(teacher_topk_ids: tf.Tensor, teacher_topk_logits: tf.Tensor,
                         masked_lm_weights: tf.Tensor, temperature: float = 1.0,
                         dtype=tf.float32) -> tf.Tensor:
    """[B, P, k]: softmax of the valid stored logits / T (0 on invalid entries and padding)."""
    valid = valid_teacher_entries(teacher_topk_ids, masked_lm_weights)
    teacher = tf.stop_gradient(tf.cast(teacher_topk_logits, dtype)) / temperature
    teacher = tf.where(valid, teacher, tf.constant(_MASKED_LOGIT, dtype))
    return tf.nn.softmax(teacher, axis=-1) * tf.cast(valid, dtype)


def _kd_sum_from_nll(nll, teacher_topk_ids, teacher_topk_logits, masked_lm_weights,
                     temperature, scale_by_temperature_squared, kd_weight=None):
    """sum_{b,p} t_b w_bp sum_j q_bpj nll_bpj, given the student's nll [B, P, k] at the teacher
    ids."""
    dtype = nll.dtype
    weights = tf.cast(masked_lm_weights, dtype)
    probs = teacher_distribution(teacher_topk_ids, teacher_topk_logits, weights, temperature,
                                 dtype)
    per_slot = tf.reduce_sum(probs * nll, axis=-1)                 # [B, P]
    slot_weights = tf.cast(kd_slot_weights(teacher_topk_ids, weights, kd_weight), dtype)
    # tf.where, not a product: a zero weight must give an exact 0 whatever the slot's value.
    per_slot = tf.where(slot_weights > 0, per_slot, tf.zeros_like(per_slot))
    total = tf.reduce_sum(per_slot * slot_weights)
    if scale_by_temperature_squared:
        total = total * (temperature ** 2)
    return total


def combine(kd: tf.Tensor, mlm: tf.Tensor, lam: tf.Tensor) -> tf.Tensor:
    """lambda * kd + (1 - lambda) * mlm (lambda = 0 gives mlm exactly)."""
    lam = tf.cast(lam, mlm.dtype) if tf.is_tensor(lam) else tf.constant(lam, mlm.dtype)
    return lam * kd + (1.0 - lam) * mlm


def student_loss(logits: tf.Tensor, features: dict[str, tf.Tensor], lam: tf.Tensor,
                 use_teacher: bool, temperature: float = 1.0,
                 scale_by_temperature_squared: bool = False,
                 global_denominators: Denominators | None = None) -> LossValues:
    """Total, KD and MLM loss of a batch.

    Args:
      logits: float [B, P, V] student logits.
      features: the batch (masked_lm_ids, masked_lm_weights and, with use_teacher,
        teacher_topk_ids / teacher_topk_logits and optionally kd_weight [B]: 0 marks a gold-only
        example, whose KD term is 0 and whose MLM term weighs 1 instead of 1 - lambda).
      lam: float scalar lambda.
      use_teacher: compute the KD term (False: KD = 0, total = (1 - lambda) * MLM, i.e. the
        trainer passes lambda = 0 for plain MLM).
      temperature, scale_by_temperature_squared: see kd_loss_sum.
      global_denominators: normalisers of the whole global batch (under a strategy); None =
        this batch's own.

    Returns:
      LossValues(total, kd, mlm), float32 scalars (float64 for float64 logits); kd is the mean
      over the distilled slots, mlm the mean over all slots (module docstring for total).
    """
    if global_denominators is None:
        global_denominators = denominators(features, use_teacher)
    logits = _float(logits)
    dtype = logits.dtype
    weights = features["masked_lm_weights"]
    kd_weight = features.get(KD_WEIGHT) if use_teacher else None
    gold_only_mlm_sum = None
    if use_teacher and temperature == 1.0:
        # One pass over the vocabulary for the gold id and the k teacher ids together.
        vocab_size = tf.shape(logits)[-1]
        gold = tf.clip_by_value(tf.cast(features["masked_lm_ids"], tf.int32), 0, vocab_size - 1)
        teacher_ids = tf.clip_by_value(tf.cast(features["teacher_topk_ids"], tf.int32), 0,
                                       vocab_size - 1)
        nll = sparse_multi_target_nll(logits, tf.concat([gold[..., None], teacher_ids], -1))
        mlm_rows = tf.reduce_sum(nll[..., 0] * tf.cast(weights, dtype), axis=-1)      # [B]
        kd_sum = _kd_sum_from_nll(nll[..., 1:], features["teacher_topk_ids"],
                                  features["teacher_topk_logits"], weights, temperature,
                                  scale_by_temperature_squared, kd_weight)
    else:
        mlm_rows = _mlm_row_sums(logits, features["masked_lm_ids"], weights)
        if use_teacher:
            kd_sum = kd_loss_sum(logits, features["teacher_topk_ids"],
                                 features["teacher_topk_logits"], weights, temperature,
                                 scale_by_temperature_squared, kd_weight)
    mlm_sum = tf.reduce_sum(mlm_rows)
    if kd_weight is not None:
        gold_only_mlm_sum = tf.reduce_sum(mlm_rows * (1.0 - tf.cast(kd_weight, dtype)))
    mlm_denominator = tf.cast(global_denominators.mlm, dtype)
    mlm = tf.math.divide_no_nan(mlm_sum, mlm_denominator)
    if use_teacher:
        kd = tf.math.divide_no_nan(kd_sum, tf.cast(global_denominators.kd, dtype))
    else:
        kd = tf.zeros([], dtype)
    total = combine(kd, mlm, lam)
    if gold_only_mlm_sum is not None:
        # Gold-only rows: MLM weight (1 - lambda) + lambda = 1 (module docstring).
        lam = tf.cast(lam, dtype) if tf.is_tensor(lam) else tf.constant(lam, dtype)
        total = total + lam * tf.math.divide_no_nan(gold_only_mlm_sum, mlm_denominator)
    return LossValues(total=total, kd=kd, mlm=mlm)
