"""The student network (tf-models BertEncoderV2 + MaskedLM, tf_keras)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.nlp.modeling import networks

from student import config as config_lib
from student import model as model_lib
from tests.conftest import REPO_ROOT

TINY = str(REPO_ROOT / "configs" / "student" / "tiny.yaml")


def test_tiny_pretrainer_shapes_and_factorised_embeddings():
    config = config_lib.load_config(TINY)
    pretrainer = model_lib.build_pretrainer(config.model)
    assert isinstance(pretrainer, tf_keras.Model)
    assert isinstance(pretrainer.encoder_network, networks.BertEncoderV2)
    encoder = config.encoder
    # embedding_size 16 < hidden 32: [V, 16] table plus a [16, 32] projection.
    assert pretrainer.encoder_network.get_embedding_table().shape == (encoder.vocab_size, 16)
    outputs = pretrainer(model_lib.dummy_inputs(3, 32, 6), training=False)
    assert outputs["mlm_logits"].shape == (3, 6, encoder.vocab_size)
    assert outputs["sequence_output"].shape == (3, 32, encoder.hidden_size)
    assert outputs["pooled_output"].shape == (3, encoder.hidden_size)
    assert (model_lib.count_parameters(pretrainer)
            == model_lib.count_parameters_from_config(encoder)["total"])


def test_output_matrix_is_tied_to_the_word_embeddings():
    config = config_lib.load_config(TINY, "model.encoder.bert_v2.dropout_rate=0.0,"
                                          "model.encoder.bert_v2.attention_dropout_rate=0.0")
    pretrainer = model_lib.build_pretrainer(config.model)
    inputs = model_lib.dummy_inputs(2, 8, 3)
    table = pretrainer.encoder_network.get_embedding_table()
    before = pretrainer(inputs, training=False)["mlm_logits"].numpy()
    table.assign_add(tf.ones_like(table))
    after = pretrainer(inputs, training=False)["mlm_logits"].numpy()
    assert not np.allclose(before, after)


def test_unresolved_vocab_size_is_refused():
    config = config_lib.load_config(str(REPO_ROOT / "configs" / "student" / "demo.yaml"))
    with pytest.raises(config_lib.ConfigError, match="vocab_size"):
        model_lib.build_pretrainer(config.model)
