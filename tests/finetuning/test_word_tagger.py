"""WordTagger: the mean over a word's pieces lands on its first piece; `first` is tf-models'
BertTokenClassifier."""

import numpy as np
import pytest
import tensorflow as tf

from finetuning import word_tagger
from tests.finetuning.fixtures import random_bert_mlm


def test_mean_over_words_by_hand():
    rng = np.random.default_rng(0)
    sequence = rng.normal(size=[2, 6, 3]).astype(np.float32)
    # Row 0: [CLS] w0 w1 w1 [SEP] pad ; row 1: [CLS] w0 w0 w0 w1 [SEP]
    starts = np.array([[0, 1, 2, 2, 4, 5], [0, 1, 1, 1, 4, 5]], np.int32)
    out = word_tagger.mean_over_words(tf.constant(sequence), tf.constant(starts)).numpy()
    np.testing.assert_allclose(out[0, 1], sequence[0, 1], rtol=1e-6)
    np.testing.assert_allclose(out[0, 2], sequence[0, 2:4].mean(0), rtol=1e-6)
    np.testing.assert_allclose(out[0, 3], 0.0)  # a later piece: never scored
    np.testing.assert_allclose(out[1, 1], sequence[1, 1:4].mean(0), rtol=1e-6)
    np.testing.assert_allclose(out[1, 4], sequence[1, 4], rtol=1e-6)
    np.testing.assert_allclose(out[:, 0], sequence[:, 0], rtol=1e-6)  # [CLS] is its own


def test_first_pooling_is_the_token_classifier_and_mean_differs():
    from official.nlp.modeling import models
    encoder = random_bert_mlm(50).encoder_network
    ids = tf.constant([[1, 5, 6, 7, 2]], tf.int32)
    inputs = dict(input_word_ids=ids, input_mask=tf.ones_like(ids),
                  input_type_ids=tf.zeros_like(ids),
                  word_starts=tf.constant([[0, 1, 1, 3, 4]], tf.int32))
    first = word_tagger.WordTagger(encoder, 4, pooling="first")
    logits = first(inputs, training=False)
    reference = models.BertTokenClassifier(network=encoder, num_classes=4, output="logits")
    reference({k: v for k, v in inputs.items() if k != "word_starts"})
    reference.classifier.set_weights(first.classifier.get_weights())
    want = reference({k: v for k, v in inputs.items() if k != "word_starts"}, training=False)
    want = want["logits"] if isinstance(want, dict) else want
    np.testing.assert_allclose(logits.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    mean = word_tagger.WordTagger(encoder, 4, pooling="mean")
    mean(inputs)
    mean.classifier.set_weights(first.classifier.get_weights())
    pooled = mean(inputs, training=False).numpy()
    assert not np.allclose(pooled[0, 1], logits.numpy()[0, 1])  # word 1 has two pieces
    np.testing.assert_allclose(pooled[0, 3], logits.numpy()[0, 3], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="word pooling 'last'"):
        word_tagger.WordTagger(encoder, 4, pooling="last")
