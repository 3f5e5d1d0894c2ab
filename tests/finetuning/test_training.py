"""Fine-tuning one model: tf-models optimizer/schedule, the tagging loss, batching, best dev epoch
and the test score of that epoch's model."""

import numpy as np
import pytest
import tensorflow as tf

from finetuning import data, features, training
from teacher_scoring.examples.tokenization import TeacherTokenizer
from tests.conftest import trained_vocab
from tests.finetuning.fixtures import EWT, random_bert_mlm


def test_optimizer_is_adamw_with_linear_warmup_and_decay():
    hparams = training.Hyperparameters(learning_rate=1e-3, warmup_ratio=0.1)
    config = training.optimization_config(hparams, total_steps=200)
    assert config.optimizer.type == "adamw"
    assert config.optimizer.adamw.weight_decay_rate == 0.01
    assert config.optimizer.adamw.exclude_from_weight_decay == ["LayerNorm", "layer_norm", "bias"]
    assert config.warmup.linear.warmup_steps == 20
    optimizer = training.build_optimizer(hparams, 200)
    # tf-models LinearWarmup around PolynomialDecay (BERT's schedule): the rate rises linearly
    # to the decay's value at the end of warm-up, then decays linearly to 0 over all steps.
    schedule = optimizer.learning_rate
    rates = [float(schedule(step)) for step in (0, 10, 20, 110, 200)]
    assert rates == pytest.approx([0.0, 0.5 * 1e-3 * 180 / 200, 1e-3 * 180 / 200,
                                   1e-3 * 90 / 200, 0.0], abs=1e-9)
    no_warmup = training.optimization_config(training.Hyperparameters(warmup_ratio=0.0), 50)
    assert no_warmup.warmup.type is None


def test_hyperparameters_are_checked():
    for field, value in (("batch_size", 0), ("learning_rate", 0.0), ("warmup_ratio", 1.0),
                         ("dropout", -0.1), ("epochs", 0), ("weight_decay", -1.0)):
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


def test_batches_pad_to_the_longest_row_rounded_to_8():
    n, s = 5, 32
    lengths = np.array([3, 9, 4, 17, 2], np.int32)
    feats = features.Features(
        input_word_ids=np.arange(n * s, dtype=np.int32).reshape(n, s),
        input_mask=(np.arange(s)[None, :] < lengths[:, None]).astype(np.int32),
        input_type_ids=np.zeros([n, s], np.int32), labels=np.zeros([n, s], np.int32),
        lengths=lengths, example_index=np.arange(n, dtype=np.int32), num_examples=n, stats={})
    shapes = [(inputs["input_word_ids"].shape.as_list(), rows.tolist())
              for inputs, _, rows in training.batches(feats, np.array([0, 2, 1, 3, 4]), 2)]
    assert shapes == [([2, 8], [0, 2]), ([2, 24], [1, 3]), ([1, 8], [4])]


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
    result = training.fine_tune(
        lambda: pretrained, "pos", len(labels), train, dev, score_dev,
        training.Hyperparameters(batch_size=16, learning_rate=3e-3, epochs=4), seed=1,
        test=dev, score_test=score_test, log=lines.append)
    assert result["best_epoch"] == 2 and result["dev"]["score"] == 0.9
    assert result["test"]["score"] == 0.123
    assert result["steps"] == 4 * int(np.ceil(len(train) / 16))
    assert [e["dev_score"] for e in result["epochs"]] == [0.2, 0.9, 0.4, 0.5]
    assert len(lines) == 4 and lines[1].startswith("epoch 2/4: loss ")
    assert "(best 90.00 @ 2)" in lines[3]
    # The test set (here the dev set again) was predicted by the model of epoch 2, which
    # differs from the last epoch's.
    assert test_predictions == [dev_predictions[1]]
    assert dev_predictions[1] != dev_predictions[3]


def test_classification_model_trains(pos_features):
    _, tokenizer, _, _, _ = pos_features
    texts = [("pos" if i % 2 else "neg", ("great film " if i % 2 else "bad film ") * (1 + i % 3))
             for i in range(48)]
    examples = [data.TextExample(text, label, i + 1) for i, (label, text) in enumerate(texts)]
    feats = features.featurize_classification(examples, ["neg", "pos"], tokenizer, 16)

    def score(predicted):
        return dict(score=float(np.mean(np.array(predicted) == feats.labels)), metric="accuracy")

    pretrained = random_bert_mlm(tokenizer.vocab_size, seed=4).encoder_network
    result = training.fine_tune(lambda: pretrained, "classification", 2, feats, feats, score,
                                training.Hyperparameters(batch_size=8, learning_rate=3e-3,
                                                         epochs=8), seed=0, log=lambda _: None)
    assert result["dev"]["score"] >= 0.9  # majority: 0.5
    with pytest.raises(ValueError, match="unknown task type 'qa'"):
        training.build_model("qa", pretrained, 2, 0.1)
