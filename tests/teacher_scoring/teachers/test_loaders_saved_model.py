"""Format (d), SavedModels with the `mlm` signature: round trips (any architecture) and checks."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from teacher_scoring.teachers import export
from teacher_scoring.teachers.loaders import LoaderError, load_teacher
from teacher_scoring.teachers.teacher import Teacher
from tests.conftest import trained_vocab
from tests.teacher_scoring.teachers.test_teacher_core import make_inputs, model_inputs, random_bert


def bert_teacher(vocab, lower_case=False):
    model, config = random_bert(len(vocab), seed=3)
    from teacher_scoring.teachers.loaders import bert_mlm
    return Teacher("es_bert", vocab, lower_case, ["es"],
                   bert_mlm.mlm_logits_fn(model.encoder_network, model.masked_lm),
                   max_sequence_length=config.max_position_embeddings, model=model)


class BagOfWordsMLM(tf.Module):
    """A teacher that is not a BERT: logits = mean context embedding · output embeddings."""

    def __init__(self, vocab_size, width=16):
        super().__init__()
        rng = np.random.default_rng(0)
        self.embeddings = tf.Variable(rng.normal(0, 1, [vocab_size, width]).astype(np.float32))
        self.output = tf.Variable(rng.normal(0, 1, [vocab_size, width]).astype(np.float32))

    def __call__(self, input_word_ids, input_mask, input_type_ids, masked_lm_positions):
        del input_type_ids
        mask = tf.cast(input_mask, tf.float32)[:, :, None]
        context = tf.reduce_sum(tf.gather(self.embeddings, input_word_ids) * mask, axis=1)
        context = context / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)       # [B, W]
        logits = tf.matmul(context, self.output, transpose_b=True)             # [B, V]
        return tf.tile(logits[:, None, :], [1, tf.shape(masked_lm_positions)[1], 1])


def test_round_trip_bert(tmp_path):
    vocab = trained_vocab("es", 700)
    teacher = bert_teacher(vocab)
    folder = export.export_saved_model(teacher, str(tmp_path / "sm"))
    assert sorted(os.listdir(os.path.join(folder, "assets"))) == ["teacher.json", "vocab.txt"]
    loaded = load_teacher(folder)
    assert loaded.format == "saved_model"
    assert (loaded.name, loaded.lower_case, loaded.languages, loaded.max_sequence_length) == \
        ("es_bert", False, ("es",), 64)
    assert loaded.vocab == vocab
    batch = model_inputs(make_inputs(len(vocab), seed=1))
    np.testing.assert_allclose(loaded.mlm_logits(**batch).numpy(),
                               teacher.mlm_logits(**batch).numpy(), rtol=0, atol=1e-5)
    signature = loaded.model.signatures["mlm"]
    assert sorted(signature.structured_input_signature[1]) == sorted(
        ["input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions"])


def test_round_trip_any_architecture_and_vocab_beside(tmp_path):
    vocab = trained_vocab("es", 700, lower_case=True)
    module = BagOfWordsMLM(len(vocab))
    teacher = Teacher("es_bow", vocab, True, ["es"], module, model=module)
    folder = export.export_saved_model(teacher, str(tmp_path / "bow"))
    shutil.move(os.path.join(folder, "assets", "vocab.txt"), os.path.join(folder, "vocab.txt"))
    loaded = load_teacher(folder, name="renamed", languages=["es", "ca"])
    assert (loaded.name, loaded.languages, loaded.lower_case) == ("renamed", ("es", "ca"), True)
    assert loaded.max_sequence_length is None
    batch = model_inputs(make_inputs(len(vocab), seed=2))
    np.testing.assert_allclose(loaded.mlm_logits(**batch).numpy(),
                               teacher.mlm_logits(**batch).numpy(), rtol=1e-6, atol=1e-6)
    # A loaded SavedModel teacher can be exported again.
    again = load_teacher(export.export_saved_model(loaded, str(tmp_path / "again")))
    np.testing.assert_allclose(again.mlm_logits(**batch).numpy(),
                               teacher.mlm_logits(**batch).numpy(), rtol=1e-6, atol=1e-6)


def test_signature_and_assets_checked(tmp_path):
    vocab = trained_vocab("es", 700)
    module = BagOfWordsMLM(len(vocab))
    folder = export.export_saved_model(Teacher("bow", vocab, False, [], module, model=module),
                                       str(tmp_path / "bow"))
    metadata = os.path.join(folder, "assets", "teacher.json")
    with open(metadata, "w") as f:
        json.dump({"languages": ["es"]}, f)
    with pytest.raises(LoaderError, match="'lower_case' is required"):
        load_teacher(folder)
    os.remove(metadata)
    with pytest.raises(LoaderError, match="assets/teacher.json: missing"):
        load_teacher(folder)
    with open(metadata, "w") as f:
        json.dump({"lower_case": False}, f)
    with open(os.path.join(folder, "assets", "vocab.txt"), "a") as f:
        f.write("extra_token\n")
    with pytest.raises(LoaderError, match=f"has {len(vocab) + 1} tokens but signature 'mlm' "
                                          f"returns {len(vocab)} logits"):
        load_teacher(folder)

    # A SavedModel without the signature.
    plain = tf.Module()
    plain.v = tf.Variable(1.0)
    plain.f = tf.function(lambda x: {"y": x * plain.v},
                          input_signature=[tf.TensorSpec([None], tf.float32)])
    other = str(tmp_path / "other")
    tf.saved_model.save(plain, other, signatures={"serving_default": plain.f})
    shutil.copytree(os.path.join(folder, "assets"), os.path.join(other, "assets"),
                    dirs_exist_ok=True)
    with pytest.raises(LoaderError, match=r"no signature 'mlm' \(signatures: \['serving_default'\]"):
        load_teacher(other)
    tf.saved_model.save(plain, other, signatures={"mlm": plain.f})
    with pytest.raises(LoaderError, match="signature 'mlm' takes"):
        load_teacher(other)
