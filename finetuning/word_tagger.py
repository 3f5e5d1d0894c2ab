"""A token-classification model that labels words, from the first piece or from all pieces.

tf-models-official's `BertTokenClassifier` puts a dropout + dense layer on every position's
sequence output; fine-tuning scores a word by its first piece (BERT's choice). `WordTagger` is
the same model with one more choice, the word representation the classifier sees:

  * `first`: the first piece's vector (exactly `BertTokenClassifier`);
  * `mean`: the mean of the vectors of all the word's pieces, placed on the first piece.

Words cut into several pieces are common with small vocabularies (the demo's en teacher cuts
35% of EWT dev words: Washington -> `was ##hing ##ton`), and the mean sees the whole word.
`finetuning.run --word_pooling` chooses; docs/student_usage.md gives the dev measurement.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

WORD_POOLINGS = ("first", "mean")


def mean_over_words(sequence_output: tf.Tensor, word_starts: tf.Tensor) -> tf.Tensor:
    """Each word's mean piece vector, on the position of its first piece.

    Args:
      sequence_output: float [B, L, H].
      word_starts: int32 [B, L], for every position the position of its word's first piece
        (positions outside words point at themselves).

    Returns:
      float [B, L, H]: at a word's first piece the mean over the word's pieces; at a position
      outside words its own vector; zeros at the other pieces of a word (never scored).
    """
    shape = tf.shape(sequence_output)
    batch, length, hidden = shape[0], shape[1], shape[2]
    segments = word_starts + length * tf.range(batch)[:, None]
    flat = tf.reshape(sequence_output, [batch * length, hidden])
    segments = tf.reshape(segments, [batch * length])
    sums = tf.math.unsorted_segment_sum(flat, segments, batch * length)
    counts = tf.math.unsorted_segment_sum(tf.ones([batch * length, 1], flat.dtype), segments,
                                          batch * length)
    return tf.reshape(sums / tf.maximum(counts, 1.0), [batch, length, hidden])


class WordTagger(tf_keras.Model):
    """Encoder + word representation + dropout + dense: logits per position.

    Args:
      network: a tf-models encoder network (dict outputs with `sequence_output` [B, L, H]).
      num_classes: number of labels.
      pooling: one of WORD_POOLINGS.
      dropout_rate: dropout on the word representations (BERT: 0.1).
      initializer: the classifier's kernel initializer.

    Inputs: dict of int32 [B, L] `input_word_ids`, `input_mask`, `input_type_ids` and
    `word_starts` (finetuning.features). Output: float32 logits [B, L, num_classes].
    """

    def __init__(self, network: tf_keras.layers.Layer, num_classes: int, pooling: str = "first",
                 dropout_rate: float = 0.1, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if pooling not in WORD_POOLINGS:
            raise ValueError(f"word pooling {pooling!r}; known: {list(WORD_POOLINGS)}")
        self.encoder = network
        self.pooling = pooling
        self.dropout = tf_keras.layers.Dropout(dropout_rate)
        self.classifier = tf_keras.layers.Dense(num_classes, kernel_initializer=initializer,
                                                name="predictions/transform/logits")

    def call(self, inputs, training=None):  # pylint: disable=arguments-differ
        outputs = self.encoder(dict(input_word_ids=inputs["input_word_ids"],
                                    input_mask=inputs["input_mask"],
                                    input_type_ids=inputs["input_type_ids"]), training=training)
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs[0]
        if self.pooling == "mean":
            sequence = mean_over_words(sequence, inputs["word_starts"])
        return tf.cast(self.classifier(self.dropout(sequence, training=training)), tf.float32)
