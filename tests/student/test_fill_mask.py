"""Tests for student/fill_mask.py: a tiny student exported with its tokenizer fills [MASK]s as
its own forward pass says, from the SavedModel or the checkpoint, and the command prints them."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from student import config as config_lib
from student import export as export_lib
from student import fill_mask
from student import model as model_lib
from student.tokenizer import StudentTokenizer, TeacherSpec, TokenizerError, is_placeholder
from tests.conftest import REPO_ROOT, trained_vocab
from tests.student.conftest import TINY_CONFIG
from vocab.union import StudentVocab


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random student over the union of an English and a German teacher, exported with
    its tokenizer; the vocab folder is deleted afterwards (the export must not need it)."""
    root = tmp_path_factory.mktemp("fill_mask")
    vocab_dir = str(root / "vocab")
    vocab = StudentVocab.build({"en_a": trained_vocab("en", 1200, False),
                                "de_a": trained_vocab("de", 1000, False)})
    vocab.save(vocab_dir)
    tokenizer = StudentTokenizer.build(vocab_dir, {"en_a": TeacherSpec("en_a", False, {"en": 5}),
                                                   "de_a": TeacherSpec("de_a", False, {"de": 5})})
    config = config_lib.load_config(TINY_CONFIG, [f"model.encoder.bert_v2.vocab_size={vocab.size}"])
    tf.keras.utils.set_random_seed(3)
    pretrainer = model_lib.build_pretrainer(config.model, 32, 6)
    export_dir = str(root / "export")
    paths = export_lib.export(pretrainer, config, os.path.join(vocab_dir, "vocab.txt"),
                              export_dir, 1, tokenizer=tokenizer)
    assert paths["tokenizer"] == os.path.join(export_dir, "tokenizer")
    for name in os.listdir(os.path.join(vocab_dir, "maps")):
        os.remove(os.path.join(vocab_dir, "maps", name))
    return export_dir, pretrainer, tokenizer


def _reference(pretrainer, tokenizer, text, language, top_k):
    """Top-k (student token, probability) per mask from the model's own forward pass."""
    lm = tokenizer.for_language(language)
    student_tokens = tokenizer.student_space_vocab("en_a")
    for name in tokenizer.teacher_names:
        student_tokens = [a if not is_placeholder(a) else b for a, b in
                          zip(student_tokens, tokenizer.student_space_vocab(name))]
    ids = [lm.cls_id]
    positions = []
    for i, part in enumerate(text.split("[MASK]")):
        if i:
            positions.append(len(ids))
            ids.append(lm.mask_id)
        ids += lm.tokenize([part])[0]
    ids.append(lm.sep_id)
    inputs = dict(input_word_ids=tf.constant([ids], tf.int32),
                  input_mask=tf.ones([1, len(ids)], tf.int32),
                  input_type_ids=tf.zeros([1, len(ids)], tf.int32),
                  masked_lm_positions=tf.constant([positions], tf.int32))
    probabilities = tf.nn.softmax(pretrainer(inputs, training=False)["mlm_logits"][0]).numpy()
    out = []
    for row in probabilities:
        ranked = row.copy()
        ranked[:5] = -1
        best = np.argsort(-ranked, kind="stable")[:top_k]
        out.append(([student_tokens[i] for i in best], row[best]))
    return out


@pytest.mark.parametrize("model", ["saved_model", "checkpoint"])
def test_fillers_are_the_models_top_k(exported, model):
    export_dir, pretrainer, tokenizer = exported
    filler = fill_mask.MaskFiller(export_dir, model)
    texts = ["Open the [MASK] dialog and click OK.", "[MASK] Datenbank[MASK]"]
    results = filler.fill(texts, ["en", "de"], top_k=4)
    assert [r.teacher for r in results] == ["en_a", "de_a"]
    for text, language, result in zip(texts, ("en", "de"), results):
        reference = _reference(pretrainer, tokenizer, text, language, 4)
        assert len(result.predictions) == len(reference) == text.count("[MASK]")
        for prediction, (tokens, probabilities) in zip(result.predictions, reference):
            assert prediction.tokens == tokens
            np.testing.assert_allclose(prediction.probabilities, probabilities, rtol=1e-4)
            assert all(i >= 5 for i in prediction.ids)          # specials left out
        best = [p.tokens[0] for p in result.predictions]
        expected = text
        for token in best:
            expected = expected.replace("[MASK]", token, 1)
        assert result.filled.replace(" ", "") == expected.replace("##", "").replace(" ", "")
    with_special = filler.fill(texts[:1], "en", top_k=3000, include_special=True)
    assert sum(with_special[0].predictions[0].probabilities) == pytest.approx(1.0, abs=1e-4)


def test_bad_texts_and_languages_are_named(exported):
    export_dir, _, _ = exported
    filler = fill_mask.MaskFiller(export_dir)
    with pytest.raises(fill_mask.FillMaskError, match=r"text 'no mask here' has no \[MASK\]"):
        filler.fill(["Open [MASK].", "no mask here"], "en")
    with pytest.raises(fill_mask.FillMaskError, match=r"text 'x x x.*' is 6[0-9] pieces with "
                                                      r"\[CLS\] and \[SEP\]; the model takes at "
                                                      r"most 64"):
        filler.fill(["x " * 62 + "[MASK]"], "en")
    with pytest.raises(TokenizerError, match=r"language 'fr' is not one the student was trained "
                                             r"on; known languages: de, en"):
        filler.fill(["Ouvrir [MASK]"], "fr")
    with pytest.raises(fill_mask.FillMaskError, match="2 texts but 3 languages"):
        filler.fill(["[MASK]", "[MASK]"], ["en", "de", "en"])


@pytest.mark.slow
def test_command_prints_fillers_and_nothing_else(exported):
    export_dir, _, _ = exported
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    command = [sys.executable, "-m", "student.fill_mask", f"--export_dir={export_dir}",
               "--language=en", "--text=Open the [MASK] dialog.", "--language=de",
               "--text=Die [MASK] ist offen.", "--top_k=3"]
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().split("\n")
    assert lines[0] == "[en] Open the [MASK] dialog." and lines[1].startswith("  -> Open the ")
    assert lines[2].startswith("  [MASK] 1: ") and len(lines[2].split()) == 2 + 2 * 3
    assert lines[3] == "[de] Die [MASK] ist offen." and len(lines) == 6
    assert run.stderr.strip() == ""                     # no TensorFlow / absl chatter

    bad = subprocess.run(command[:5] + ["--text=nothing to fill"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().endswith("error: text 'nothing to fill' has no [MASK]")
