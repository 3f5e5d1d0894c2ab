"""Encoders for fine-tuning: teachers of every BERT format, student exports, their tokenizers,
dropout, and the refusals."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from finetuning import encoders
from student import tokenizer as tokenizer_lib
from teacher_scoring.teachers import export as teacher_export
from teacher_scoring.teachers.loaders import load_teacher
from tests.conftest import demo_lines
from tests.finetuning import fixtures


def _inputs(vocab_size: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, [2, 12]).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    return dict(input_word_ids=tf.constant(ids), input_mask=tf.constant(mask),
                input_type_ids=tf.zeros_like(ids))


def _sequence_output(encoder, inputs, training=False) -> np.ndarray:
    return encoder(inputs, training=training)["sequence_output"].numpy()


@pytest.mark.parametrize("format_name,hidden_act", [("tfm_checkpoint", "gelu"),
                                                    ("google_bert_checkpoint", "gelu_tanh"),
                                                    ("hf_folder", "gelu_tanh")])
def test_teacher_encoder_of_every_bert_format(tmp_path, format_name, hidden_act):
    folder = fixtures.make_teacher(tmp_path / format_name, "en", format_name, vocab_size=500,
                                   hidden_act=hidden_act)
    teacher = load_teacher(folder)
    loaded = encoders.load_teacher_encoder(None, folder)
    assert (loaded.name, loaded.kind, loaded.max_seq_length) == ("en_tiny", "teacher", 128)
    assert format_name in loaded.description and "uncased" in loaded.description
    line = demo_lines("en", 1)[0]
    assert loaded.tokenizer.tokenize([line]) == teacher.tokenizer().tokenize([line])
    inputs = _inputs(teacher.vocab_size)
    want = _sequence_output(teacher.model.encoder_network, inputs)
    # A fresh copy has the pretrained weights (same outputs without dropout) ...
    np.testing.assert_allclose(_sequence_output(loaded.fresh_encoder(0.0), inputs), want,
                               rtol=1e-5, atol=1e-5)
    # ... and the fine-tuning dropout, active in training only; the original is untouched.
    fresh = loaded.fresh_encoder(0.1)
    assert fresh.get_config()["output_dropout"] == 0.1
    assert fresh.get_config()["attention_dropout"] == 0.1
    np.testing.assert_allclose(_sequence_output(fresh, inputs), want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(_sequence_output(fresh, inputs, training=True), want, atol=1e-3)
    fresh.weights[0].assign(tf.zeros_like(fresh.weights[0]))
    np.testing.assert_allclose(_sequence_output(loaded.encoder, inputs), want, rtol=1e-6)


def test_saved_model_teacher_is_refused(tmp_path, teacher_folders):
    folder = teacher_export.export_saved_model(load_teacher(teacher_folders["en"]),
                                               str(tmp_path / "sm"))
    with pytest.raises(encoders.EncoderError,
                       match=r"saved_model teacher exposes only the `mlm` function.*cannot be "
                             r"fine-tuned.*checkpoint format"):
        encoders.load_teacher_encoder(None, folder)


def test_student_encoder_and_tokenizer(student_export):
    export_dir, pretrainer = student_export
    loaded = encoders.load_student_encoder("kd", export_dir, "tr")
    assert (loaded.name, loaded.kind, loaded.max_seq_length) == ("kd", "student", 128)
    inputs = _inputs(loaded.encoder.get_config()["vocab_size"], seed=1)
    np.testing.assert_allclose(_sequence_output(loaded.encoder, inputs),
                               _sequence_output(pretrainer.encoder_network, inputs),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_sequence_output(loaded.fresh_encoder(0.1), inputs),
                               _sequence_output(pretrainer.encoder_network, inputs),
                               rtol=1e-5, atol=1e-5)
    # The tokenizer of the task language: the tr teacher's (cased) pieces in student ids.
    want = tokenizer_lib.StudentTokenizer.load(export_dir).for_language("tr")
    line = demo_lines("tr", 1)[0]
    assert loaded.tokenizer.tokenize([line]) == want.tokenize([line])
    assert loaded.tokenizer.lower_case is False
    assert encoders.load_student_encoder("kd", export_dir, "en").tokenizer.lower_case is True


def test_student_export_errors(tmp_path, student_export):
    export_dir, _ = student_export
    with pytest.raises(encoders.EncoderError, match=r"no tokenizer for language 'fi'.*en.*tr"):
        encoders.load_student_encoder("kd", export_dir, "fi")
    broken = tmp_path / "export"
    shutil.copytree(export_dir, broken)
    config = broken / encoders.STUDENT_ENCODER_CONFIG
    config.write_text(config.read_text().replace("num_layers: 2", "num_layers: 3"))
    with pytest.raises(encoders.EncoderError, match="does not match the config"):
        encoders.load_student_encoder("kd", str(broken), "en")
    config.write_text("type: bert_v2\nbert_v2: {no_such_field: 1}\n")
    with pytest.raises(encoders.EncoderError, match="not a tf-models EncoderConfig"):
        encoders.load_student_encoder("kd", str(broken), "en")
    os.remove(config)
    with pytest.raises(encoders.EncoderError, match=r"encoder_config.yaml: missing \(a student "
                                                    r"export folder"):
        encoders.load_student_encoder("kd", str(broken), "en")
    shutil.copy(os.path.join(export_dir, encoders.STUDENT_ENCODER_CONFIG), config)
    shutil.rmtree(broken / "checkpoint")
    with pytest.raises(encoders.EncoderError, match="checkpoint: no checkpoint"):
        encoders.load_student_encoder("kd", str(broken), "en")
    shutil.copytree(os.path.join(export_dir, "checkpoint"), broken / "checkpoint")
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(encoders.EncoderError, match="no tokenizer for language 'en'"):
        encoders.load_student_encoder("kd", str(broken), "en")
