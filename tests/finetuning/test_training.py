"""Fine-tuning one model: tf-models optimizer/schedule, the tagging loss, batching, best dev epoch
and the test score of that epoch's model."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from finetuning import data, features, training
from teacher_scoring.examples.tokenization import TeacherTokenizer
from tests.conftest import trained_vocab
from tests.finetuning.fixtures import EWT, random_bert_mlm


def test_optimizer_is_tf_models_adamw_and_the_schedule_is_berts():
    hparams = training.Hyperparameters(learning_rate=1e-3, warmup_ratio=0.1)
    config = training.optimization_config(hparams)
    assert config.optimizer.type == "adamw"
    assert config.optimizer.adamw.weight_decay_rate == 0.01
    assert config.optimizer.adamw.exclude_from_weight_decay == ["LayerNorm", "layer_norm", "bias"]
    schedule = training.RunSchedule()
    optimizer = training.build_optimizer(hparams, schedule)
    assert optimizer.learning_rate is schedule
    # The values of tf-models' LinearWarmup around PolynomialDecay (BERT's schedule): the rate
    # rises linearly to the decay's value at the end of warm-up, then decays linearly to 0.
    schedule.set(1e-3, warmup_steps=20, total_steps=200, schedule="linear")
    rates = [float(schedule(step)) for step in (0, 10, 20, 110, 200, 250)]
    assert rates == pytest.approx([0.0, 0.5 * 1e-3 * 180 / 200, 1e-3 * 180 / 200,
                                   1e-3 * 90 / 200, 0.0, 0.0], abs=1e-9)
    tf_models = training.optimization.OptimizerFactory(training.optimization.OptimizationConfig({
        "optimizer": {"type": "adamw"},
        "learning_rate": {"type": "polynomial", "polynomial": {
            "initial_learning_rate": 1e-3, "decay_steps": 200, "end_learning_rate": 0.0,
            "power": 1.0}},
        "warmup": {"type": "linear", "linear": {"warmup_steps": 20}}})).build_learning_rate()
    assert rates[:5] == pytest.approx([float(tf_models(s)) for s in (0, 10, 20, 110, 200)],
                                      abs=1e-9)
    # Constant after the warm-up; other numbers without a new schedule object.
    schedule.set(3e-4, warmup_steps=0, total_steps=100, schedule="constant")
    assert [float(schedule(step)) for step in (0, 50, 100)] == pytest.approx([3e-4] * 3)


def test_hyperparameters_are_checked():
    for field, value in (("batch_size", 0), ("learning_rate", 0.0), ("warmup_ratio", 1.0),
                         ("dropout", -0.1), ("max_epochs", 0), ("patience", 0),
                         ("weight_decay", -1.0), ("schedule", "cosine"),
                         ("word_pooling", "last")):
        with pytest.raises(ValueError, match=field):
            training.Hyperparameters(**{field: value}).validate()


def test_tagging_loss_ignores_unlabelled_positions():
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=[2, 5, 4]), tf.float32)
    labels = tf.constant([[-1, 2, -1, 0, -1], [-1, 3, 3, -1, -1]])
    log_probs = tf.nn.log_softmax(logits).numpy()
    want = -np.mean([log_probs[0, 1, 2], log_probs[0, 3, 0], log_probs[1, 1, 3],
                     log_probs[1, 2, 3]])
    assert float(training.tagging_loss(labels, logits)) == pytest.approx(want, rel=1e-5)
    assert float(training.tagging_loss(tf.fill([1, 3], -1), logits[:1, :3])) == 0.0


def _features(lengths, s=32):
    n = len(lengths)
    lengths = np.array(lengths, np.int32)
    return features.Features(
        input_word_ids=np.arange(n * s, dtype=np.int32).reshape(n, s),
        input_mask=(np.arange(s)[None, :] < lengths[:, None]).astype(np.int32),
        input_type_ids=np.zeros([n, s], np.int32), labels=np.zeros([n, s], np.int32),
        lengths=lengths, example_index=np.arange(n, dtype=np.int32), num_examples=n, stats={},
        word_starts=np.tile(np.arange(s, dtype=np.int32), [n, 1]))


def test_batches_pad_to_the_longest_row_rounded_to_8():
    feats = _features([3, 9, 4, 17, 2])
    order = [np.array([0, 2]), np.array([1, 3]), np.array([4])]
    shapes = [(inputs["input_word_ids"].shape.as_list(), rows.tolist())
              for inputs, _, rows in training.batches(feats, order)]
    assert shapes == [([2, 8], [0, 2]), ([2, 24], [1, 3]), ([1, 8], [4])]
    # XLA: the short batch is padded with label-less copies of its first row.
    (inputs, labels, rows), = training.batches(feats, [np.array([4])], pad_rows_to=3)
    assert inputs["input_word_ids"].shape.as_list() == [3, 8] and rows.tolist() == [4]
    assert labels.numpy()[1:].tolist() == [[-1] * 8] * 2 and labels.numpy()[0, 0] == 0


def test_training_order_buckets_by_length_and_covers_every_row_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 64, size=1000)
    order = training.training_order(lengths, 32, np.random.default_rng(1))
    rows = np.concatenate(order)
    assert sorted(rows.tolist()) == list(range(1000))
    assert [len(b) for b in order[:-1]] == [32] * (len(order) - 1) and len(order[-1]) == 8
    # Rows of a batch have similar lengths: far less padding than random batches.
    def padding(batches):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)
    shuffled = np.random.default_rng(1).permutation(1000)
    random_batches = [shuffled[i:i + 32] for i in range(0, 1000, 32)]
    assert padding(order) < 0.25 * padding(random_batches)
    # Another epoch (the generator moves on) gives other batches; the same seed the same ones.
    again = training.training_order(lengths, 32, np.random.default_rng(1))
    assert all((a == b).all() for a, b in zip(order, again))
    assert training.evaluation_order(np.array([5, 3, 9, 1]), 3)[0].tolist() == [3, 1, 0]


@pytest.fixture(scope="module")
def pos_features():
    read = data.read_conllu(str(EWT))
    labels = data.tagging_labels(read, iob2=False)
    tokenizer = TeacherTokenizer(trained_vocab("en", 800, lower_case=True), True)
    train = features.featurize_tagging(read.sentences[40:120], labels, tokenizer, 32)
    dev = features.featurize_tagging(read.sentences[:40], labels, tokenizer, 32)
    return labels, tokenizer, train, dev, read.sentences[:40]


def test_best_dev_epoch_is_kept_and_its_model_scores_the_test_set(pos_features):
    labels, tokenizer, train, dev, dev_sentences = pos_features
    pretrained = random_bert_mlm(tokenizer.vocab_size).encoder_network
    gold = [list(s.labels) for s in dev_sentences]
    dev_predictions = []
    fake_dev_scores = iter([0.2, 0.9, 0.4, 0.5])  # epoch 2 is the best

    def score_dev(predicted):
        dev_predictions.append(predicted)
        assert [len(p) for p in predicted] == [len(g) for g in gold]
        return dict(score=next(fake_dev_scores), metric="accuracy")

    test_predictions = []

    def score_test(predicted):
        test_predictions.append(predicted)
        return dict(score=0.123, metric="accuracy")

    lines = []
    hparams = training.Hyperparameters(batch_size=16, learning_rate=3e-3, max_epochs=4,
                                       patience=4)
    tuner = training.FineTuner(lambda: pretrained, "pos", len(labels), hparams)
    result = training.fine_tune(tuner, train, dev, score_dev, hparams, seed=1, test=dev,
                                score_test=score_test,
                                score_train=lambda p: dict(score=0.5, metric="accuracy"),
                                log=lines.append)
    assert result["best_epoch"] == 2 and result["dev"]["score"] == 0.9
    assert result["test"]["score"] == 0.123 and result["train"]["score"] == 0.5
    assert result["steps"] == 4 * int(np.ceil(len(train) / 16))
    assert [e["dev_score"] for e in result["epochs"]] == [0.2, 0.9, 0.4, 0.5]
    assert len(lines) == 4 and lines[1].startswith("lr 0.003 epoch 2/4: loss ")
    assert "(best 90.00 @ 2)" in lines[3]
    # Stopped by the cap, but the best epoch is not among the last `patience` (4 of 4): it
    # counts as converged only because patience == max_epochs here.
    assert result["stopped"] == "max_epochs" and not result["converged"]
    # The test set (here the dev set again) was predicted by the model of epoch 2, which
    # differs from the last epoch's.
    assert test_predictions == [dev_predictions[1]]
    assert dev_predictions[1] != dev_predictions[3]


def test_patience_stops_a_run_and_the_cap_flags_one_still_improving(pos_features):
    labels, tokenizer, train, dev, _ = pos_features
    pretrained = random_bert_mlm(tokenizer.vocab_size).encoder_network
    hparams = training.Hyperparameters(batch_size=32, learning_rate=1e-3, max_epochs=6,
                                       patience=2)
    tuner = training.FineTuner(lambda: pretrained, "pos", len(labels), hparams)

    def scripted(scores):
        values = iter(scores)
        return lambda predicted: dict(score=next(values), metric="accuracy")

    # Best at epoch 2, no gain at 3 and 4: stopped by patience after epoch 4.
    stopped = training.fine_tune(tuner, train, dev, scripted([0.5, 0.7, 0.7, 0.6]), hparams,
                                 seed=1, log=lambda _: None)
    assert (stopped["epochs_trained"], stopped["best_epoch"]) == (4, 2)
    assert stopped["stopped"] == "patience" and stopped["converged"]
    # Still improving at the cap: not converged.
    capped = training.fine_tune(tuner, train, dev, scripted([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
                                hparams, seed=1, log=lambda _: None)
    assert (capped["epochs_trained"], capped["best_epoch"]) == (6, 6)
    assert capped["stopped"] == "max_epochs" and not capped["converged"]
    # At the cap with the best epoch `patience` epochs back: converged.
    flat = training.fine_tune(tuner, train, dev, scripted([0.1, 0.2, 0.3, 0.6, 0.5, 0.5]),
                              hparams, seed=1, log=lambda _: None)
    assert flat["epochs_trained"] == 6 and flat["converged"]


def test_patience_counts_once_dev_has_risen_above_its_first_epoch(pos_features):
    labels, tokenizer, train, dev, _ = pos_features
    pretrained = random_bert_mlm(tokenizer.vocab_size).encoder_network

    def scripted(scores):
        values = iter(scores)
        return lambda predicted: dict(score=next(values), metric="f1")

    def fine_tune(scores, **overrides):
        hparams = training.Hyperparameters(batch_size=32, learning_rate=1e-3, max_epochs=7,
                                           patience=2, **overrides)
        tuner = training.FineTuner(lambda: pretrained, "ner", len(labels), hparams)
        return training.fine_tune(tuner, train, dev, scripted(scores), hparams, seed=1,
                                  log=lambda _: None)

    # NER-like: F1 0 for four epochs (O everywhere), then it finds entities.
    late = [0.0, 0.0, 0.0, 0.0, 0.3, 0.4, 0.4]
    waited = fine_tune(late)
    assert (waited["epochs_trained"], waited["best_epoch"]) == (7, 6)
    assert waited["rose"] and waited["dev"]["score"] == 0.4
    # The old rule stops at F1 0 after `patience` epochs: the defect this rule removes.
    early = fine_tune(late, patience_after_rise=False)
    assert (early["epochs_trained"], early["best_epoch"], early["stopped"]) == (3, 1, "patience")
    assert early["dev"]["score"] == 0.0 and not early["rose"]
    # Once dev has risen, patience counts from the best epoch as before.
    rose = fine_tune([0.1, 0.5, 0.5, 0.4, 0.9, 0.9, 0.9])
    assert (rose["epochs_trained"], rose["best_epoch"], rose["stopped"]) == (4, 2, "patience")
    assert rose["converged"]
    # Never rose: it trains to the cap and is not converged.
    stuck = fine_tune([0.0] * 7)
    assert (stuck["epochs_trained"], stuck["stopped"]) == (7, "max_epochs")
    assert not stuck["rose"] and not stuck["converged"]


def test_a_reused_fine_tuner_gives_each_seed_the_result_of_a_fresh_one(pos_features):
    labels, tokenizer, train, dev, _ = pos_features
    pretrained = random_bert_mlm(tokenizer.vocab_size, seed=2).encoder_network
    hparams = training.Hyperparameters(batch_size=16, learning_rate=3e-3, max_epochs=2,
                                       patience=2)

    def run(tuner, seed, **kwargs):
        result = training.fine_tune(tuner, train, dev, lambda p: dict(score=0.0, metric="a"),
                                    dataclasses.replace(hparams, **kwargs), seed=seed,
                                    log=lambda _: None)
        return [e["loss"] for e in result["epochs"]]

    shared = training.FineTuner(lambda: training_encoder(pretrained), "pos", len(labels),
                                hparams)
    first = run(shared, 1)
    other_rate = run(shared, 2, learning_rate=1e-3)
    again = run(shared, 1)
    assert again == first  # weights, head, optimizer, schedule and dropout all reset
    fresh = training.FineTuner(lambda: training_encoder(pretrained), "pos", len(labels),
                               hparams)
    assert run(fresh, 2, learning_rate=1e-3) == other_rate
    assert run(fresh, 3) != first
    # A random encoder (the scratch control) differs from the pretrained one, per seed.
    random_1 = shared.random_encoder_weights(1)
    assert any(not np.allclose(a, b) for a, b in zip(random_1, shared.pretrained))
    assert all(np.array_equal(a, b) for a, b in zip(random_1, shared.random_encoder_weights(1)))
    with pytest.raises(ValueError, match="traced model depends on"):
        shared.reset(1, dataclasses.replace(hparams, dropout=0.2), 10)


def training_encoder(pretrained):
    """A trainable copy with dropout (what finetuning.encoders.fresh_encoder gives)."""
    from finetuning import encoders
    return encoders.with_dropout(pretrained, 0.1)


def test_mean_pooling_and_xla_train(pos_features):
    labels, tokenizer, train, dev, dev_sentences = pos_features
    pretrained = random_bert_mlm(tokenizer.vocab_size, seed=3).encoder_network
    gold = [[labels.index(l) for l in s.labels] for s in dev_sentences]

    def score(predicted):
        pairs = [(p, g) for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs)]
        return dict(score=float(np.mean([p == g for p, g in pairs])), metric="accuracy")

    for pooling, jit in (("mean", False), ("first", True)):
        hparams = training.Hyperparameters(batch_size=16, learning_rate=3e-3, max_epochs=3,
                                           patience=3, word_pooling=pooling, jit_compile=jit)
        tuner = training.FineTuner(lambda: training_encoder(pretrained), "pos", len(labels),
                                   hparams)
        result = training.fine_tune(tuner, train, dev, score, hparams, seed=1,
                                    log=lambda _: None)
        assert result["epochs"][-1]["loss"] < result["epochs"][0]["loss"]
        assert result["dev"]["score"] > 0.3, (pooling, jit, result)


def test_classification_model_trains(pos_features):
    _, tokenizer, _, _, _ = pos_features
    texts = [("pos" if i % 2 else "neg", ("great film " if i % 2 else "bad film ") * (1 + i % 3))
             for i in range(48)]
    examples = [data.TextExample(text, label, i + 1) for i, (label, text) in enumerate(texts)]
    feats = features.featurize_classification(examples, ["neg", "pos"], tokenizer, 16)

    def score(predicted):
        return dict(score=float(np.mean(np.array(predicted) == feats.labels)), metric="accuracy")

    pretrained = random_bert_mlm(tokenizer.vocab_size, seed=4).encoder_network
    hparams = training.Hyperparameters(batch_size=8, learning_rate=3e-3, max_epochs=8,
                                       patience=8)
    tuner = training.FineTuner(lambda: pretrained, "classification", 2, hparams)
    result = training.fine_tune(tuner, feats, feats, score, hparams, seed=0, log=lambda _: None)
    assert result["dev"]["score"] >= 0.9  # majority: 0.5
    with pytest.raises(ValueError, match="unknown task type 'qa'"):
        training.build_model("qa", pretrained, 2, 0.1)
