"""Exporters: what they write is what the loaders (and transformers) read back."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.nlp.modeling import layers, models, networks

from teacher_scoring.teachers import export
from teacher_scoring.teachers.loaders import bert_mlm, load_teacher
from tests.conftest import demo_lines, trained_vocab
from tests.teacher_scoring.teachers.test_teacher_core import (make_inputs, model_inputs, random_bert,
                                                     randomize, relative_error, save_hf_folder,
                                                     torch_logits, torch_masked_lm)


def test_hf_export_is_read_by_transformers(tmp_path):
    import transformers

    vocab = trained_vocab("en", 700, lower_case=False)
    for hidden_act, hf_act in (("gelu", "gelu"), ("gelu_tanh", "gelu_new")):
        model, _ = random_bert(len(vocab), hidden_act=hidden_act, seed=8)
        folder = export.export_hf_folder(model.encoder_network, model.masked_lm, vocab,
                                         str(tmp_path / hidden_act), lower_case=False,
                                         languages=["en"])
        reference = transformers.BertForMaskedLM.from_pretrained(folder).eval()
        assert reference.config.hidden_act == hf_act
        batch = make_inputs(len(vocab), seed=3)
        want = model(model_inputs(batch), training=False)["mlm_logits"].numpy()
        assert relative_error(torch_logits(reference, batch), want) <= 1e-4
    tokenizer = transformers.BertTokenizer.from_pretrained(folder)
    teacher = load_teacher(folder)
    line = demo_lines("en", 1)[0]
    assert tokenizer(line, add_special_tokens=False)["input_ids"] == \
        teacher.tokenizer().tokenize_with_offsets([line])[0].ids.tolist()


def test_conversions_between_formats_keep_the_logits(tmp_path):
    """Hugging Face (torch) → Google checkpoint → tf-models checkpoint → Hugging Face →
    SavedModel."""
    vocab = trained_vocab("es", 700, lower_case=True)
    torch_model = torch_masked_lm(len(vocab), seed=13)
    teacher = load_teacher(save_hf_folder(str(tmp_path / "hf"), torch_model, vocab, True),
                           name="es_bert", languages=["es"])
    batch = make_inputs(len(vocab), seed=6)
    want = torch_logits(torch_model, batch)
    for format_name in ("google_bert_checkpoint", "tfm_checkpoint", "hf_folder", "saved_model"):
        folder = export.export_teacher(teacher, str(tmp_path / format_name), format_name)
        teacher = load_teacher(folder)
        assert teacher.format == format_name
        assert (teacher.name, teacher.lower_case, teacher.languages, teacher.vocab) == \
            ("es_bert", True, ("es",), vocab)
        assert relative_error(teacher.mlm_logits(**model_inputs(batch)).numpy(), want) <= 1e-4
    with pytest.raises(export.ExportError, match="only 'saved_model' can hold it"):
        export.export_teacher(teacher, str(tmp_path / "x"), "hf_folder")


def test_v1_bert_encoder_exports(tmp_path):
    vocab = trained_vocab("en", 700)
    encoder = networks.BertEncoder(vocab_size=len(vocab), hidden_size=32, num_layers=2,
                                   num_attention_heads=4, inner_dim=64, max_sequence_length=64,
                                   type_vocab_size=2, dict_outputs=True)
    model = models.BertPretrainerV2(
        encoder_network=encoder,
        mlm_activation=lambda x: tf_keras.activations.gelu(x, approximate=True))
    batch = model_inputs(make_inputs(len(vocab), seed=2))
    model(batch)
    randomize(model.variables, seed=4)
    want = model(batch, training=False)["mlm_logits"].numpy()
    folder = export.export_google_bert_checkpoint(encoder, model.masked_lm, vocab,
                                                  str(tmp_path / "v1"), lower_case=False)
    np.testing.assert_array_equal(load_teacher(folder).mlm_logits(**batch).numpy(), want)


def test_refusals(tmp_path):
    vocab = trained_vocab("en", 700)
    model, _ = random_bert(len(vocab))
    args = (model.encoder_network, model.masked_lm)
    folder = export.export_hf_folder(*args, vocab, str(tmp_path / "hf"), lower_case=False)
    with pytest.raises(export.ExportError, match="exists and is not empty"):
        export.export_hf_folder(*args, vocab, folder, lower_case=False)
    export.export_hf_folder(*args, vocab, folder, lower_case=True, overwrite=True)
    assert load_teacher(folder).lower_case is True
    with pytest.raises(export.ExportError, match="the vocabulary has 699 tokens but the "
                                                 "embedding table has 700 rows"):
        export.export_google_bert_checkpoint(*args, vocab[:-1], str(tmp_path / "a"),
                                             lower_case=False)
    with pytest.raises(export.ExportError, match="lower_case must be a bool"):
        export.export_tfm_checkpoint(*args, vocab, str(tmp_path / "c"), lower_case="no")
    with pytest.raises(export.ExportError, match="unknown format"):
        export.export_teacher(load_teacher(folder), str(tmp_path / "x"), "onnx")

    def pretrainer(**encoder_kwargs):
        encoder = networks.BertEncoderV2(
            vocab_size=len(vocab), hidden_size=32, num_layers=1, num_attention_heads=4,
            inner_dim=64, inner_activation=bert_mlm.exact_gelu, **encoder_kwargs)
        pre = models.BertPretrainerV2(encoder_network=encoder, mlm_activation=bert_mlm.exact_gelu)
        pre(model_inputs(make_inputs(len(vocab), batch=1, seq_length=8, predictions=2)))
        return encoder, pre.masked_lm

    for kwargs, message in [(dict(norm_first=True), "pre-LayerNorm"),
                            (dict(embedding_width=16), "embedding projection")]:
        with pytest.raises(export.ExportError, match=message):
            export.export_google_bert_checkpoint(*pretrainer(**kwargs), vocab,
                                                 str(tmp_path / "refused"), lower_case=False)
    encoder, _ = pretrainer()
    relu_head = layers.MaskedLM(embedding_table=encoder.get_embedding_table(), activation="relu")
    relu_head(tf.zeros([1, 4, 32]), masked_positions=tf.zeros([1, 2], tf.int32))
    with pytest.raises(export.ExportError, match=r"MLM head activation \(relu\) differs"):
        export.export_hf_folder(encoder, relu_head, vocab, str(tmp_path / "relu"),
                                lower_case=False)
    assert not os.path.exists(str(tmp_path / "refused"))


def test_float16_copy_of_an_hf_folder(tmp_path):
    """The float16 copy is half the weight bytes, loads in the loaders and in transformers, and
    its logits stay within float16 rounding of the float32 folder's."""
    import transformers
    import safetensors.numpy

    vocab = trained_vocab("en", 700, lower_case=True)
    model, _ = random_bert(len(vocab), seed=21)
    full = export.export_hf_folder(model.encoder_network, model.masked_lm, vocab,
                                   str(tmp_path / "fp32"), lower_case=True, languages=["en"],
                                   name="en_bert")
    half = export.export_hf_folder_float16(full, str(tmp_path / "fp16"))
    arrays = safetensors.numpy.load_file(os.path.join(half, "model.safetensors"))
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.float16)}
    assert os.path.getsize(os.path.join(half, "model.safetensors")) < \
        0.55 * os.path.getsize(os.path.join(full, "model.safetensors"))
    assert sorted(os.listdir(half)) == sorted(os.listdir(full))
    batch = make_inputs(len(vocab), seed=5)
    want = load_teacher(full).mlm_logits(**model_inputs(batch)).numpy()
    teacher = load_teacher(half)
    assert (teacher.name, teacher.lower_case, teacher.languages, teacher.vocab) == \
        ("en_bert", True, ("en",), vocab)
    got = teacher.mlm_logits(**model_inputs(batch)).numpy()
    assert 0 < relative_error(got, want) <= 1e-2
    reference = transformers.BertForMaskedLM.from_pretrained(half)
    assert relative_error(torch_logits(reference.float().eval(), batch), got) <= 1e-4
    with pytest.raises(export.ExportError, match="not empty"):
        export.export_hf_folder_float16(full, half)
    with pytest.raises(export.ExportError, match="another folder"):
        export.export_hf_folder_float16(full, full, overwrite=True)
    with pytest.raises(export.ExportError, match="no model.safetensors"):
        export.export_hf_folder_float16(str(tmp_path), str(tmp_path / "x"))
