"""Teacher, teacher.json metadata, activations and the Google-name mapping.

Also holds the small builders the other teacher tests share (tiny random BERTs in TF and in
torch, inputs with padding).
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.nlp.modeling import networks

from teacher_scoring.records import manifest
from teacher_scoring.teachers.loaders import bert_mlm
from teacher_scoring.teachers.teacher import (Teacher, TeacherError, TeacherMetadata, read_teacher_json,
                                     write_teacher_json)
from teacher_scoring.examples.tokenization import TeacherTokenizer
from tests.conftest import demo_lines, trained_vocab

# ---------------------------------------------------------------------------------------------
# Shared builders.

TINY = dict(hidden_size=32, num_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)


def tiny_config(vocab_size: int, hidden_act: str = "gelu", **overrides) -> bert_mlm.BertMLMConfig:
    return bert_mlm.BertMLMConfig(vocab_size=vocab_size, hidden_act=hidden_act,
                                  **{**TINY, **overrides})


def randomize(variables, seed: int = 0, scale: float = 0.2) -> None:
    """Gives every variable random values (LayerNorm scales around 1), so that every weight
    matters in a parity test (fresh inits have zero biases and unit LayerNorm scales)."""
    rng = np.random.default_rng(seed)
    for var in variables:
        shape = tuple(var.shape)
        if "gamma" in var.name:
            value = 1.0 + rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, scale, shape)
        var.assign(value.astype(np.float32))


def random_bert(vocab_size: int, hidden_act: str = "gelu", seed: int = 0, **overrides):
    """A tiny tf-models BertPretrainerV2 with random weights, and its config."""
    config = tiny_config(vocab_size, hidden_act, **overrides)
    model = bert_mlm.build_bert_mlm(config)
    randomize(model.variables, seed)
    return model, config


def make_inputs(vocab_size: int, batch: int = 3, seq_length: int = 16, predictions: int = 5,
                seed: int = 0) -> dict:
    """Random MLM inputs with padding (shorter examples), two segments and padded slots."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, [batch, seq_length]).astype(np.int32)
    lengths = [seq_length - 5 * i for i in range(batch)]
    mask = np.zeros([batch, seq_length], np.int32)
    types = np.zeros([batch, seq_length], np.int32)
    positions = np.zeros([batch, predictions], np.int32)
    weights = np.zeros([batch, predictions], np.float32)
    gold = np.zeros([batch, predictions], np.int32)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
        ids[i, length:] = 0
        ids[i, 0] = 2
        types[i, length // 2:length] = 1
        real = min(predictions - i, length - 2)
        positions[i, :real] = np.sort(rng.choice(np.arange(1, length - 1), real, replace=False))
        weights[i, :real] = 1.0
        gold[i, :real] = rng.integers(5, vocab_size, real)
    return dict(input_word_ids=ids, input_mask=mask, input_type_ids=types,
                masked_lm_positions=positions, masked_lm_ids=gold, masked_lm_weights=weights)


def model_inputs(batch: dict) -> dict:
    """The four model inputs of a batch, as tensors."""
    return {k: tf.constant(batch[k]) for k in ("input_word_ids", "input_mask", "input_type_ids",
                                               "masked_lm_positions")}


def relative_error(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def torch_masked_lm(vocab_size: int, hidden_act: str = "gelu", seed: int = 0, **overrides):
    """A tiny transformers BertForMaskedLM with every parameter random (CPU, eval mode)."""
    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=TINY["hidden_size"],
        num_hidden_layers=TINY["num_layers"], num_attention_heads=TINY["num_attention_heads"],
        intermediate_size=TINY["intermediate_size"],
        max_position_embeddings=TINY["max_position_embeddings"], hidden_act=hidden_act,
        **overrides)
    torch.manual_seed(seed)
    model = transformers.BertForMaskedLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm.weight" in name:
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            else:
                param.copy_(0.2 * torch.randn_like(param))
    return model


def save_hf_folder(folder: str, model, vocab, lower_case=None) -> str:
    """save_pretrained (safetensors) + vocab.txt (+ tokenizer_config.json unless lower_case is
    None)."""
    model.save_pretrained(folder, safe_serialization=True)
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    if lower_case is not None:
        with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump({"do_lower_case": lower_case, "tokenizer_class": "BertTokenizer"}, f)
    return folder


def torch_logits(model, batch: dict) -> np.ndarray:
    """BertForMaskedLM logits gathered at the masked positions: [B, P, V]."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor(batch["input_word_ids"], dtype=torch.long),
                    attention_mask=torch.tensor(batch["input_mask"], dtype=torch.long),
                    token_type_ids=torch.tensor(batch["input_type_ids"], dtype=torch.long))
    logits = out.logits.numpy()
    return np.take_along_axis(logits, batch["masked_lm_positions"][:, :, None].astype(np.int64),
                              axis=1)


# ---------------------------------------------------------------------------------------------
# Teacher.


def _constant_mlm(vocab_size, dtype=tf.float16):
    def fn(input_word_ids, input_mask, input_type_ids, masked_lm_positions):
        del input_mask, input_type_ids
        shape = tf.concat([tf.shape(masked_lm_positions), [vocab_size]], 0)
        return tf.cast(tf.fill(shape, 0.5), dtype) + tf.cast(input_word_ids[0, 0] * 0, dtype)
    return fn


def test_teacher_interface():
    vocab = trained_vocab("en", 600, lower_case=True)
    teacher = Teacher("en_small", vocab, True, ["en"], _constant_mlm(len(vocab)),
                      max_sequence_length=128)
    assert teacher.vocab_size == len(vocab)
    assert teacher.languages == ("en",)
    tokenizer = teacher.tokenizer()
    assert isinstance(tokenizer, TeacherTokenizer)
    assert tokenizer.lower_case is True
    assert teacher.tokenizer() is tokenizer
    text = demo_lines("en", 1)[0]
    assert tokenizer.tokenize_with_offsets([text])[0].ids.tolist() == \
        TeacherTokenizer(vocab, True).tokenize_with_offsets([text])[0].ids.tolist()
    batch = model_inputs(make_inputs(len(vocab)))
    logits = teacher.mlm_logits(**batch)
    assert logits.dtype == tf.float32 and logits.shape == (3, 5, len(vocab))
    entry = teacher.manifest_entry()
    assert entry.vocab_sha256 == manifest.sha256_of_tokens(vocab)
    assert (entry.vocab_size, entry.languages, entry.lower_case) == (len(vocab), ["en"], True)
    assert "en_small" in repr(teacher)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name=""), "teacher name"),
    (dict(name="a/b"), "teacher name"),
    (dict(languages="en"), "list of language codes"),
    (dict(languages=["en", "en"]), "duplicate"),
    (dict(languages=[""]), "bad language code"),
    (dict(lower_case=1), "lower_case must be a bool"),
    (dict(mlm_fn=None), "mlm_fn must be callable"),
])
def test_teacher_rejects_bad_settings(kwargs, message):
    vocab = trained_vocab("en", 600, lower_case=True)
    args = dict(name="t", vocab=vocab, lower_case=True, languages=["en"],
                mlm_fn=_constant_mlm(len(vocab)))
    args.update(kwargs)
    with pytest.raises(TeacherError, match=message):
        Teacher(**args)


def test_teacher_json_round_trip_and_strictness(tmp_path):
    path = str(tmp_path / "teacher.json")
    metadata = TeacherMetadata(name="hi_muril", lower_case=False, languages=("hi", "en"),
                               max_sequence_length=512)
    write_teacher_json(path, metadata)
    assert read_teacher_json(path) == metadata
    assert read_teacher_json(path).to_dict() == {"name": "hi_muril", "lower_case": False,
                                                 "languages": ["hi", "en"],
                                                 "max_sequence_length": 512}
    for bad, message in [({"casing": "lower"}, "unknown field"),
                         ({"lower_case": "yes"}, "true or false"),
                         ({"languages": "en"}, "must be a list"),
                         ({"max_sequence_length": 0}, "positive integer"),
                         ([1], "JSON object")]:
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(TeacherError, match=message) as error:
            read_teacher_json(str(tmp_path / "bad.json"))
        assert str(tmp_path / "bad.json") in str(error.value)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(TeacherError, match="not valid JSON"):
        read_teacher_json(str(tmp_path / "broken.json"))


# ---------------------------------------------------------------------------------------------
# Activations and the Google-name mapping.


def test_activation_name_tells_exact_from_approximate_gelu():
    assert bert_mlm.activation_name(bert_mlm.exact_gelu) == "gelu"
    assert bert_mlm.activation_name(lambda x: tf_keras.activations.gelu(x, approximate=True)) \
        == "gelu_tanh"
    assert bert_mlm.activation_name(tf_keras.activations.gelu) == "gelu"  # Keras default: erf
    assert bert_mlm.activation_name("relu") == "relu"
    assert bert_mlm.activation_name(None) == "linear"
    from official.modeling import tf_utils
    assert bert_mlm.activation_name(tf_utils.get_activation("gelu")) == "gelu_tanh"
    assert bert_mlm.activation_name(tf_utils.get_activation(bert_mlm.TFM_EXACT_GELU)) == "gelu"
    with pytest.raises(ValueError, match="none of"):
        bert_mlm.activation_name(lambda x: 2.0 * x)


@pytest.mark.parametrize("encoder_cls", [networks.BertEncoderV2, networks.BertEncoder])
def test_google_names_map_onto_every_encoder_variable(encoder_cls):
    """Every Google-BERT name (through tf-models' converter table) finds exactly one variable of
    the right size, and together they cover all of the encoder's and the head's variables."""
    config = tiny_config(300)
    kwargs = dict(dict_outputs=True) if encoder_cls is networks.BertEncoder else {}
    encoder = encoder_cls(vocab_size=300, hidden_size=32, num_layers=2, num_attention_heads=4,
                          inner_dim=64, max_sequence_length=64, type_vocab_size=2,
                          inner_activation=bert_mlm.exact_gelu, **kwargs)
    from official.nlp.modeling import models
    model = models.BertPretrainerV2(encoder_network=encoder, mlm_activation=bert_mlm.exact_gelu)
    model(model_inputs(make_inputs(300, batch=1, seq_length=8, predictions=2)))
    assert bert_mlm.config_from_model(encoder, model.masked_lm) == config
    mapping = bert_mlm.google_to_model_variables(encoder, model.masked_lm, config)
    assert set(mapping) == set(bert_mlm.google_variable_shapes(config))
    used = {id(var) for var, _ in mapping.values()}
    assert used == {id(var) for var in model.variables}
    var, shape = mapping["bert/encoder/layer_1/attention/self/query/kernel"]
    assert shape == (32, 32) and tuple(var.shape) == (32, 4, 8)
    var, shape = mapping["bert/encoder/layer_1/attention/output/dense/kernel"]
    assert shape == (32, 32) and tuple(var.shape) == (4, 8, 32)
