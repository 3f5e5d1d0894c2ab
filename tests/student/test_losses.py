"""KD / MLM losses and the lambda schedule."""

import numpy as np
import pytest
import tensorflow as tf

from student import lambda_schedule
from student import losses


def _log_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _softmax(x, axis=-1):
    return np.exp(_log_softmax(x, axis))


def _batch(seed=0, b=3, p=4, k=5, v=40, invalid=False):
    """Random student logits, gold ids, weights (last slot padding) and teacher top-k."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=[b, p, v]) * 2.0
    gold = rng.integers(0, v, size=[b, p]).astype(np.int32)
    weights = np.ones([b, p], np.float32)
    weights[:, -1] = 0.0
    ids = np.stack([np.stack([rng.choice(v, k, replace=False) for _ in range(p)])
                    for _ in range(b)]).astype(np.int32)
    teacher_logits = (rng.normal(size=[b, p, k]) * 3.0).astype(np.float32)
    if invalid:
        ids[0, 0, [1, 3]] = -1          # two dropped entries in a real slot
        ids[1, 1, :] = -1               # a real slot with no valid entry at all
    return logits, gold, weights, ids, teacher_logits


def _dense_kd_reference(logits, weights, ids, teacher_logits, temperature=1.0):
    """Full-vocabulary cross-entropy -sum_v Q(v) log p(v) with Q's mass on the valid top-k."""
    b, p, v = logits.shape
    total, count = 0.0, 0.0
    for i in range(b):
        for j in range(p):
            valid = ids[i, j] >= 0
            if weights[i, j] <= 0 or not valid.any():
                continue
            dense_teacher = np.full([v], -np.inf)
            dense_teacher[ids[i, j][valid]] = teacher_logits[i, j][valid] / temperature
            q = np.exp(dense_teacher - dense_teacher.max())
            q /= q.sum()
            log_p = _log_softmax(logits[i, j] / temperature)
            total += weights[i, j] * -(q[q > 0] * log_p[q > 0]).sum()
            count += weights[i, j]
    return total / count


def _features(gold, weights, ids, teacher_logits):
    return dict(masked_lm_ids=tf.constant(gold), masked_lm_weights=tf.constant(weights),
                teacher_topk_ids=tf.constant(ids), teacher_topk_logits=tf.constant(teacher_logits))


def test_mlm_is_weighted_mean_cross_entropy():
    logits, gold, weights, _, _ = _batch()
    weights[0, 0] = 0.5
    expected = -(np.take_along_axis(_log_softmax(logits), gold[..., None], -1)[..., 0]
                 * weights).sum() / weights.sum()
    total = losses.mlm_loss_sum(tf.constant(logits, tf.float64), gold, weights)
    np.testing.assert_allclose(total.numpy() / weights.sum(), expected, rtol=1e-10)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sparse_kd_equals_dense_reference(temperature):
    logits, gold, weights, ids, teacher_logits = _batch(seed=1)
    values = losses.student_loss(tf.constant(logits, tf.float64),
                                 _features(gold, weights, ids, teacher_logits), lam=1.0,
                                 use_teacher=True, temperature=temperature)
    expected = _dense_kd_reference(logits, weights, ids, teacher_logits, temperature)
    np.testing.assert_allclose(values.kd.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(values.total.numpy(), expected, rtol=1e-6)


def test_temperature_squared_scaling():
    logits, gold, weights, ids, teacher_logits = _batch(seed=2)
    features = _features(gold, weights, ids, teacher_logits)
    plain = losses.student_loss(tf.constant(logits, tf.float64), features, 1.0, True,
                                temperature=3.0)
    scaled = losses.student_loss(tf.constant(logits, tf.float64), features, 1.0, True,
                                 temperature=3.0, scale_by_temperature_squared=True)
    np.testing.assert_allclose(scaled.kd.numpy(), 9.0 * plain.kd.numpy(), rtol=1e-12)


def test_invalid_entries_are_masked_and_renormalised():
    logits, gold, weights, ids, teacher_logits = _batch(seed=3, invalid=True)
    # Garbage in the invalid entries and in padding slots must not matter.
    teacher_logits[0, 0, [1, 3]] = 1e4
    teacher_logits[1, 1, :] = 1e4
    teacher_logits[:, -1, :] = 1e4
    features = _features(gold, weights, ids, teacher_logits)
    values = losses.student_loss(tf.constant(logits, tf.float64), features, 1.0, True)
    expected = _dense_kd_reference(logits, weights, ids, teacher_logits)
    np.testing.assert_allclose(values.kd.numpy(), expected, rtol=1e-6)
    # The slot without any valid entry is not counted; the padding slots neither.
    dens = losses.denominators(features, use_teacher=True)
    assert float(dens.kd) == weights.sum() - 1.0
    assert float(dens.mlm) == weights.sum()
    # Its gradient is exactly zero from the KD term.
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        kd = losses.kd_loss_sum(x, ids, teacher_logits, weights)
    grad = tape.gradient(kd, x).numpy()
    assert np.all(grad[1, 1] == 0) and np.all(grad[:, -1] == 0)
    assert np.all(np.isfinite(grad))


def test_all_invalid_batch_gives_zero_kd_not_nan():
    logits, gold, weights, ids, teacher_logits = _batch(seed=4)
    ids[:] = -1
    values = losses.student_loss(tf.constant(logits, tf.float32),
                                 _features(gold, weights, ids, teacher_logits), 0.5, True)
    assert float(values.kd) == 0.0
    assert np.isfinite(float(values.total))


def test_sparse_multi_target_nll_values_and_gradient():
    rng = np.random.default_rng(9)
    logits = tf.constant(rng.normal(size=[2, 3, 11]) * 2, tf.float64)
    ids = tf.constant(rng.integers(0, 11, size=[2, 3, 4]), tf.int32)
    ids = tf.tensor_scatter_nd_update(ids, [[0, 0, 2]], [int(ids[0, 0, 0])])  # a repeated id
    expected = -np.take_along_axis(_log_softmax(logits.numpy()), ids.numpy(), -1)
    np.testing.assert_allclose(losses.sparse_multi_target_nll(logits, ids), expected,
                               rtol=1e-12)
    upstream = tf.constant(rng.normal(size=[2, 3, 4]), tf.float64)

    def weighted(x):
        return tf.reduce_sum(losses.sparse_multi_target_nll(x, ids) * upstream)

    def reference(x):
        return tf.reduce_sum(-tf.gather(tf.nn.log_softmax(x), ids, batch_dims=2) * upstream)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        fused, dense = weighted(logits), reference(logits)
    np.testing.assert_allclose(tape.gradient(fused, logits), tape.gradient(dense, logits),
                               rtol=1e-10, atol=1e-12)
    theoretical, numerical = tf.test.compute_gradient(weighted, [logits])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-7)


def test_lambda_zero_gives_exactly_the_mlm_loss():
    logits, gold, weights, ids, teacher_logits = _batch(seed=5)
    features = _features(gold, weights, ids, teacher_logits)
    with_kd = losses.student_loss(tf.constant(logits, tf.float32), features, 0.0, True)
    mlm_only = losses.student_loss(tf.constant(logits, tf.float32), features, 0.0, False)
    mlm = losses.mlm_loss_sum(tf.constant(logits, tf.float32), gold, weights) / weights.sum()
    assert float(with_kd.total) == float(with_kd.mlm)
    assert float(mlm_only.total) == float(mlm_only.mlm)
    np.testing.assert_allclose(float(with_kd.total), float(mlm), rtol=1e-6)
    np.testing.assert_allclose(float(mlm_only.total), float(mlm), rtol=1e-6)
    assert float(with_kd.kd) > 0


def test_total_mixes_with_lambda():
    logits, gold, weights, ids, teacher_logits = _batch(seed=6)
    values = losses.student_loss(tf.constant(logits, tf.float64),
                                 _features(gold, weights, ids, teacher_logits), 0.3, True)
    np.testing.assert_allclose(float(values.total),
                               0.3 * float(values.kd) + 0.7 * float(values.mlm), rtol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 1.5])
def test_gradients_match_finite_differences(temperature):
    logits, gold, weights, ids, teacher_logits = _batch(seed=7, b=2, p=3, k=4, v=9, invalid=True)
    ids[0, 1, 0] = gold[0, 1]  # the gold id among the teacher's
    features = _features(gold, weights, ids, teacher_logits)

    def total(x):
        return losses.student_loss(x, features, 0.6, True, temperature=temperature,
                                   scale_by_temperature_squared=True).total

    theoretical, numerical = tf.test.compute_gradient(total, [tf.constant(logits, tf.float64)])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-7)
    assert np.abs(theoretical[0]).max() > 1e-3


def test_global_denominators_make_split_batches_sum_to_the_whole():
    logits, gold, weights, ids, teacher_logits = _batch(seed=8, b=4, invalid=True)
    weights[3, :] = 0.0  # a replica's half can have a different number of real slots
    full = losses.student_loss(tf.constant(logits, tf.float64),
                               _features(gold, weights, ids, teacher_logits), 0.4, True)
    whole = losses.denominators(_features(gold, weights, ids, teacher_logits), True)
    parts = [losses.student_loss(tf.constant(logits[s], tf.float64),
                                 _features(gold[s], weights[s], ids[s], teacher_logits[s]), 0.4,
                                 True, global_denominators=whole)
             for s in (slice(0, 2), slice(2, 4))]
    for name in ("total", "kd", "mlm"):
        np.testing.assert_allclose(sum(float(getattr(p, name)) for p in parts),
                                   float(getattr(full, name)), rtol=1e-12)


def _mixed_batch(seed=10, b=4):
    """A batch whose rows 1 and 3 are gold-only: dummy teacher fields (ids 0, logits 0) and
    kd_weight 0, as the input pipeline builds them."""
    logits, gold, weights, ids, teacher_logits = _batch(seed=seed, b=b, invalid=True)
    kd_weight = np.array([1.0, 0.0, 1.0, 0.0][:b], np.float32)
    gold_rows = kd_weight == 0
    ids[gold_rows] = 0
    teacher_logits[gold_rows] = 0.0
    features = _features(gold, weights, ids, teacher_logits)
    features["kd_weight"] = tf.constant(kd_weight)
    return logits, gold, weights, ids, teacher_logits, kd_weight, features


def _mlm_rows(logits, gold, weights):
    """Plain NumPy: sum_p w_bp * -log softmax(z_bp)[gold_bp], per row."""
    nll = -np.take_along_axis(_log_softmax(logits), gold[..., None], -1)[..., 0]
    return (nll * weights).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_gold_only_examples_have_exactly_zero_kd_and_full_mlm_weight(temperature):
    logits, gold, weights, ids, teacher_logits, kd_weight, features = _mixed_batch()
    lam = 0.7
    values = losses.student_loss(tf.constant(logits, tf.float64), features, lam, True,
                                 temperature=temperature)
    distilled = kd_weight == 1
    # KD: the mean over the distilled rows' slots only, as if the gold-only rows were absent.
    expected_kd = _dense_kd_reference(logits[distilled], weights[distilled], ids[distilled],
                                      teacher_logits[distilled], temperature)
    np.testing.assert_allclose(float(values.kd), expected_kd, rtol=1e-10)
    dens = losses.denominators(features, use_teacher=True)
    assert float(dens.kd) == float(losses.denominators(
        _features(gold[distilled], weights[distilled], ids[distilled],
                  teacher_logits[distilled]), True).kd)
    assert float(dens.mlm) == weights.sum()            # MLM: every example, normalised together
    rows = _mlm_rows(logits, gold, weights)
    np.testing.assert_allclose(float(values.mlm), rows.sum() / weights.sum(), rtol=1e-10)
    # Distilled rows: lambda KD + (1 - lambda) MLM; gold-only rows: MLM with weight 1.
    expected_total = (lam * expected_kd
                      + ((1 - lam * kd_weight.astype(np.float64)) * rows).sum() / weights.sum())
    np.testing.assert_allclose(float(values.total), expected_total, rtol=1e-10)

    # The KD term's value and gradient on the gold-only rows are exactly zero.
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        kd_sum = losses.kd_loss_sum(x, ids, teacher_logits, weights, temperature,
                                    kd_weight=kd_weight)
    grad = tape.gradient(kd_sum, x).numpy()
    assert np.all(grad[~distilled] == 0.0) and np.abs(grad[distilled]).max() > 0
    only_gold = losses.kd_loss_sum(tf.constant(logits[~distilled]), ids[~distilled],
                                   teacher_logits[~distilled], weights[~distilled],
                                   temperature, kd_weight=kd_weight[~distilled])
    assert float(only_gold) == 0.0
    # The total's gradient on a gold-only row is the plain MLM gradient with weight 1.
    with tf.GradientTape() as tape:
        total = losses.student_loss(x, features, lam, True, temperature=temperature).total
    grad = tape.gradient(total, x).numpy()
    with tf.GradientTape() as tape:
        mlm_sum = losses.mlm_loss_sum(x, gold, weights)
    mlm_grad = tape.gradient(mlm_sum, x).numpy() / weights.sum()
    np.testing.assert_allclose(grad[~distilled], mlm_grad[~distilled], rtol=1e-10, atol=1e-15)


def test_all_distilled_kd_weight_changes_nothing():
    logits, gold, weights, ids, teacher_logits = _batch(seed=11, invalid=True)
    plain = _features(gold, weights, ids, teacher_logits)
    weighted = dict(plain, kd_weight=tf.ones([logits.shape[0]], tf.float32))
    for temperature in (1.0, 2.0):
        a = losses.student_loss(tf.constant(logits, tf.float64), plain, 0.4, True,
                                temperature=temperature)
        b = losses.student_loss(tf.constant(logits, tf.float64), weighted, 0.4, True,
                                temperature=temperature)
        for name in ("total", "kd", "mlm"):
            assert float(getattr(a, name)) == pytest.approx(float(getattr(b, name)), rel=1e-14)


def test_mixed_batches_split_across_replicas_sum_to_the_whole():
    logits, gold, weights, ids, teacher_logits, kd_weight, features = _mixed_batch(seed=12)
    full = losses.student_loss(tf.constant(logits, tf.float64), features, 0.6, True)
    whole = losses.denominators(features, True)
    parts = []
    for rows in (slice(0, 1), slice(1, 4)):   # a replica may hold only distilled rows
        part = _features(gold[rows], weights[rows], ids[rows], teacher_logits[rows])
        part["kd_weight"] = tf.constant(kd_weight[rows])
        parts.append(losses.student_loss(tf.constant(logits[rows], tf.float64), part, 0.6, True,
                                         global_denominators=whole))
    for name in ("total", "kd", "mlm"):
        np.testing.assert_allclose(sum(float(getattr(p, name)) for p in parts),
                                   float(getattr(full, name)), rtol=1e-12)


def test_linear_lambda_schedule_anneals_one_to_zero():
    schedule = lambda_schedule.LambdaSchedule("linear", 1.0, 0.0, anneal_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 20)]
    assert values == [1.0, 0.5, 0.0, 0.0]
    assert not schedule.always_zero


def test_constant_lambda_schedule():
    schedule = lambda_schedule.LambdaSchedule("constant", 0.25, end=0.9)
    assert float(schedule(0)) == float(schedule(10**6)) == 0.25
    assert lambda_schedule.LambdaSchedule("constant", 0.0).always_zero
    with pytest.raises(ValueError, match="anneal_steps"):
        lambda_schedule.LambdaSchedule("linear", 1.0, 0.0, anneal_steps=0)
    with pytest.raises(ValueError, match="schedule"):
        lambda_schedule.LambdaSchedule("cosine", 1.0)
