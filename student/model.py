"""The student network: tf-models-official BertEncoderV2 + MaskedLM head over the union vocab.

Built with tf_keras (Keras 2), as tf-models-official is. The encoder comes from
`official.nlp.configs.encoders.build_encoder` (type `bert_v2`); `embedding_size` in its config
factorises the word embeddings into [vocab, E] x [E, hidden] (Lan et al. 2019), which is how
Student_MuRIL's 289k-token vocabulary stays near 160M parameters. The head is tf-models'
`BertPretrainerV2` MaskedLM layer, whose output matrix is tied to the word embeddings.

Inputs (dict): input_word_ids, input_mask, input_type_ids int32 [batch, S];
masked_lm_positions int32 [batch, P].
Outputs (dict): mlm_logits float32 [batch, P, vocab]; sequence_output [batch, S, hidden];
pooled_output [batch, hidden].
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from official.modeling import tf_utils
from official.nlp.configs import encoders
from official.nlp.modeling import models

from student import config as config_lib


def build_encoder(model_config: config_lib.ModelConfig) -> tf_keras.layers.Layer:
    """A BertEncoderV2 from the tf-models encoder config (type must be bert_v2)."""
    if model_config.encoder.type != "bert_v2":
        raise config_lib.ConfigError(
            f"config: field 'model.encoder.type' = {model_config.encoder.type!r}: the student "
            "is a BertEncoderV2; use 'bert_v2'")
    return encoders.build_encoder(model_config.encoder)


def build_pretrainer(model_config: config_lib.ModelConfig,
                     seq_length: int = 2, max_predictions_per_seq: int = 1
                     ) -> models.BertPretrainerV2:
    """The encoder plus MaskedLM head, with every weight created.

    Args:
      model_config: the `model` section of the student config.
      seq_length, max_predictions_per_seq: shapes of the dummy batch used to build the head
        (any small values; the model takes any S <= max_position_embeddings and any P).

    Returns:
      A tf-models `BertPretrainerV2`; `.encoder_network` and `.masked_lm` are what the export
      checkpoint holds (`checkpoint_items`).
    """
    if model_config.encoder.get().vocab_size <= 0:
        raise config_lib.ConfigError(
            "config: field 'model.encoder.bert_v2.vocab_size' is "
            f"{model_config.encoder.get().vocab_size}; set it (or resolve it from vocab.txt "
            "with config.resolve_vocab_size) before building the model")
    encoder = build_encoder(model_config)
    pretrainer = models.BertPretrainerV2(
        encoder_network=encoder,
        mlm_activation=tf_utils.get_activation(model_config.mlm_activation),
        mlm_initializer=tf_keras.initializers.TruncatedNormal(
            stddev=model_config.mlm_initializer_range),
        name="student")
    pretrainer(dummy_inputs(1, seq_length, max_predictions_per_seq), training=False)
    return pretrainer


def dummy_inputs(batch_size: int, seq_length: int, max_predictions_per_seq: int
                 ) -> dict[str, tf.Tensor]:
    """All-zero model inputs of the given static shapes (int32)."""
    ids = tf.zeros([batch_size, seq_length], tf.int32)
    return dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=ids,
                masked_lm_positions=tf.zeros([batch_size, max_predictions_per_seq], tf.int32))


def model_inputs(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The four model inputs picked out of a batch of features."""
    return {name: features[name] for name in
            ("input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions")}


def count_parameters(model: tf_keras.layers.Layer) -> int:
    """Number of scalar weights (trainable and not) of a built model."""
    return int(sum(int(tf.size(w)) for w in model.weights))


def count_parameters_from_config(encoder_config) -> dict[str, int]:
    """Analytic parameter counts of a BertEncoderV2 + MaskedLM (no model is built).

    Returns a dict with `encoder` (embeddings, transformer layers, pooler), `mlm_head` (transform
    dense + LayerNorm + output bias; the output matrix is tied) and `total`.
    """
    v, h = encoder_config.vocab_size, encoder_config.hidden_size
    e = encoder_config.embedding_size or h
    s, t = encoder_config.max_position_embeddings, encoder_config.type_vocab_size
    i, n = encoder_config.intermediate_size, encoder_config.num_layers
    embeddings = v * e + s * e + t * e + 2 * e + (e * h + h if e != h else 0)
    layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
    pooler = h * h + h
    encoder = embeddings + n * layer + pooler
    head = h * e + e + 2 * e + v
    return {"encoder": encoder, "mlm_head": head, "total": encoder + head}
