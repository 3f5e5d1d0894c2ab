"""Format (c), tf-models TF2 checkpoints with their encoder config: round trips and checks."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import yaml
from official.modeling import tf_utils
from official.nlp.configs import encoders
from official.nlp.modeling import models

from teacher_scoring.teachers import export
from teacher_scoring.teachers.loaders import LoaderError, bert_mlm, load_teacher
from tests.conftest import trained_vocab
from tests.teacher_scoring.teachers.test_teacher_core import (make_inputs, model_inputs, randomize,
                                                     random_bert)

ENCODER = dict(hidden_size=32, num_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=64, type_vocab_size=2)


def tfm_pretrainer(encoder_type: str, vocab_size: int, seed: int = 0):
    """A BertPretrainerV2 built the way tf-models' masked-LM task builds it, random weights."""
    config = encoders.EncoderConfig(type=encoder_type)
    setattr(config, encoder_type, encoders.BertEncoderConfig(vocab_size=vocab_size, **ENCODER))
    model = models.BertPretrainerV2(
        encoder_network=encoders.build_encoder(config),
        mlm_activation=tf_utils.get_activation("gelu"),
        mlm_initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))
    model(model_inputs(make_inputs(vocab_size, batch=1, seq_length=8, predictions=2)))
    randomize(model.variables, seed)
    return model, config


def logits(model, batch):
    return model(batch, training=False)["mlm_logits"].numpy()


@pytest.mark.parametrize("encoder_type", ["bert_v2", "bert"])
def test_export_round_trip_same_logits(tmp_path, encoder_type):
    vocab = trained_vocab("fr", 700)
    model, _ = tfm_pretrainer(encoder_type, len(vocab), seed=1)
    folder = export.export_tfm_checkpoint(model.encoder_network, model.masked_lm, vocab,
                                          str(tmp_path / "fr"), lower_case=False,
                                          languages=["fr"], name="fr_tfm")
    assert sorted(os.listdir(folder)) == ["ckpt.data-00000-of-00001", "ckpt.index",
                                          "encoder_config.yaml", "teacher.json", "vocab.txt"]
    with open(os.path.join(folder, "encoder_config.yaml")) as f:
        written = yaml.safe_load(f)
    assert written["type"] == encoder_type
    assert written[encoder_type]["hidden_activation"] == "gelu"
    teacher = load_teacher(folder)
    assert teacher.format == "tfm_checkpoint"
    assert (teacher.name, teacher.lower_case, teacher.languages) == ("fr_tfm", False, ("fr",))
    batch = model_inputs(make_inputs(len(vocab), seed=2))
    np.testing.assert_array_equal(teacher.mlm_logits(**batch).numpy(), logits(model, batch))


def test_exact_gelu_round_trip(tmp_path):
    vocab = trained_vocab("fr", 700)
    model, _ = random_bert(len(vocab), hidden_act="gelu", seed=4)
    folder = export.export_tfm_checkpoint(model.encoder_network, model.masked_lm, vocab,
                                          str(tmp_path / "exact"), lower_case=True)
    with open(os.path.join(folder, "encoder_config.yaml")) as f:
        assert yaml.safe_load(f)["bert_v2"]["hidden_activation"] == bert_mlm.TFM_EXACT_GELU
    teacher = load_teacher(folder)
    assert bert_mlm.activation_name(teacher.model.masked_lm.activation) == "gelu"
    batch = model_inputs(make_inputs(len(vocab), seed=5))
    np.testing.assert_array_equal(teacher.mlm_logits(**batch).numpy(), logits(model, batch))


def test_trainer_checkpoint_and_config_forms(tmp_path):
    """A tf-models trainer checkpoint (Checkpoint(model=...), CheckpointManager naming), with a
    PretrainerConfig (JSON) or bare BertEncoderConfig fields (YAML) as the config."""
    vocab = trained_vocab("fr", 700, lower_case=True)
    model, config = tfm_pretrainer("bert", len(vocab), seed=6)
    folder = str(tmp_path / "trainer")
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), folder, max_to_keep=2)
    manager.save(checkpoint_number=100)
    randomize(model.variables, seed=7)  # the latest checkpoint must win
    manager.save(checkpoint_number=200)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("".join(t + "\n" for t in vocab))
    with open(os.path.join(folder, "teacher.json"), "w") as f:
        json.dump({"lower_case": True, "languages": ["fr"]}, f)
    with open(os.path.join(folder, "encoder_config.json"), "w") as f:
        json.dump({"encoder": config.as_dict(), "mlm_activation": "gelu"}, f)
    batch = model_inputs(make_inputs(len(vocab), seed=8))
    want = logits(model, batch)
    np.testing.assert_array_equal(load_teacher(folder).mlm_logits(**batch).numpy(), want)

    os.remove(os.path.join(folder, "encoder_config.json"))
    with open(os.path.join(folder, "encoder_config.yaml"), "w") as f:
        yaml.safe_dump(config.bert.as_dict(), f)  # bare fields: tf-models' default type "bert"
    np.testing.assert_array_equal(load_teacher(folder).mlm_logits(**batch).numpy(), want)


def test_head_required_and_checks(tmp_path):
    vocab = trained_vocab("fr", 700)
    model, config = tfm_pretrainer("bert_v2", len(vocab))
    folder = export.export_tfm_checkpoint(model.encoder_network, model.masked_lm, vocab,
                                          str(tmp_path / "fr"), lower_case=False)
    # Encoder only: no MLM head.
    tf.train.Checkpoint(encoder=model.encoder_network).write(os.path.join(folder, "ckpt"))
    with pytest.raises(LoaderError, match=r"MLM head \(masked_lm\) is missing"):
        load_teacher(folder)
    load_teacher(folder, allow_random_mlm_head=True)

    # teacher.json must give the casing.
    with open(os.path.join(folder, "teacher.json"), "w") as f:
        json.dump({"languages": ["fr"]}, f)
    with pytest.raises(LoaderError, match="'lower_case' is required"):
        load_teacher(folder, allow_random_mlm_head=True)
    with open(os.path.join(folder, "teacher.json"), "w") as f:
        json.dump({"lower_case": False}, f)

    # Unknown config field, unsupported encoder type, wrong encoder type for the checkpoint.
    path = os.path.join(folder, "encoder_config.yaml")
    for data, message in [
            ({"type": "bert_v2", "bert_v2": {**ENCODER, "vocab_size": len(vocab), "hiden": 3}},
             "not a tf-models EncoderConfig"),
            ({"type": "albert", "albert": {"vocab_size": len(vocab)}}, "'albert' is not supported"),
            ({"type": "bert_v2", "bert_v2": {**ENCODER, "vocab_size": len(vocab),
                                             "num_layers": 3}},
             "num_layers=3 does not match the weights"),
            ({"type": "bert_v2", "bert_v2": {**ENCODER, "vocab_size": len(vocab),
                                             "intermediate_size": 48}},
             "intermediate_size=48 does not match the weights"),
            ({"type": "bert_v2", "bert_v2": {**ENCODER, "vocab_size": len(vocab),
                                             "type_vocab_size": 3}},
             "the checkpoint does not match the config"),  # caught by the restore
            ({"type": "bert_v2", "bert_v2": {**ENCODER, "vocab_size": len(vocab),
                                             "hidden_size": 64, "num_attention_heads": 4}},
             "config hidden_size=64 does not match the weights")]:
        with open(path, "w") as f:
            yaml.safe_dump(data, f)
        with pytest.raises(LoaderError, match=message) as error:
            load_teacher(folder, allow_random_mlm_head=True)
        assert folder in str(error.value)
