"""student/export_hf.py: the Hugging Face folder of a trained student, checked with transformers.

The end-to-end fixture builds a real student export: two WordPiece teachers trained on the
bundled text (one cased, one uncased, together serving all ten bundled languages), their union
vocabulary, a tiny student trained for a few steps on scored shards in that vocabulary, and the
export with the student tokenizer. `python -m student.export_hf` then writes the HF folder, and
the tests compare transformers (torch) with the TF student and the project tokenizer.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from student import export_hf
from tests.conftest import REPO_ROOT, UDHR_LANGUAGES, demo_lines, udhr_lines
from tests.student import shard_fixtures

TINY_CONFIG = str(REPO_ROOT / "configs" / "student" / "tiny.yaml")
SEQ_LENGTH, MAX_PREDICTIONS = 32, 6  # tiny.yaml's data shapes
# name -> (lower_case, {language: training copies}). Languages go to the teacher with the most
# copies: cased_a serves ar de en hi zh, uncased_b serves es fi fr it tr.
TEACHERS = {
    "cased_a": (False, {"en": 100, "de": 50, "hi": 50, "zh": 50, "ar": 20, "es": 10}),
    "uncased_b": (True, {"en": 30, "es": 60, "fr": 50, "it": 50, "fi": 50, "tr": 50, "hi": 5}),
}
FALLBACK_TEACHER = "uncased_b"


def bundled_lines(language: str) -> list[str]:
    """Every non-empty line of data/corpora/demo/<lang>.txt and data/corpora/udhr/<lang>.txt."""
    demo = REPO_ROOT / "data" / "corpora" / "demo" / f"{language}.txt"
    return (demo_lines(language) if demo.exists() else []) + udhr_lines(language)


def _run_module(*args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-m", "student.export_hf", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _student_vocab(folder: str) -> str:
    """Trains the teachers' vocabularies and saves their union; returns the vocab folder."""
    from vocab.train_wordpiece import train_wordpiece
    from vocab.union import StudentVocab

    vocabs = {}
    for name, (lower_case, examples) in TEACHERS.items():
        lines = [line for language in examples for line in bundled_lines(language)]
        vocabs[name] = train_wordpiece(lines, 2500, lower_case)
    StudentVocab.build(vocabs).save(folder)
    return folder


def _student_tokenizer(vocab_folder: str):
    from student import tokenizer as tokenizer_lib

    specs = {name: tokenizer_lib.TeacherSpec(name=name, lower_case=lower_case,
                                             examples=dict(examples))
             for name, (lower_case, examples) in TEACHERS.items()}
    return tokenizer_lib.StudentTokenizer.build(vocab_folder, specs,
                                                fallback_teacher=FALLBACK_TEACHER)


def _config(vocab_size: int, *overrides):
    from student import config as config_lib

    return config_lib.load_config(TINY_CONFIG, [
        f"model.encoder.bert_v2.vocab_size={vocab_size}", *overrides])


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A trained tiny student (hidden 32, unfactorised embedding) exported with its tokenizer,
    and its Hugging Face folder written by the command. Returns a dict of paths and objects."""
    from student import experiment
    from student import export as export_lib

    root = tmp_path_factory.mktemp("export_hf")
    vocab_folder = _student_vocab(str(root / "vocab"))
    tokenizer = _student_tokenizer(vocab_folder)
    shards = str(root / "shards_en")
    shard_fixtures.write_shards(shards, {"en": 40}, vocab_folder, SEQ_LENGTH, MAX_PREDICTIONS)
    config = _config(tokenizer.vocab_size, "model.encoder.bert_v2.embedding_size=32",
                     "train.steps=3,train.steps_per_loop=3,train.checkpoint_interval=3")
    data = experiment.prepare_data(config, vocab_folder, {"en": shards})
    trainer = experiment.build_trainer(config, data, str(root / "run"))
    trainer.train()
    export_dir = str(root / "run" / "export")
    export_lib.export(trainer.model, config, data.vocab.path, export_dir, 3, tokenizer=tokenizer)

    output_dir = str(root / "hf")
    run = _run_module("--export_dir", export_dir, "--output_dir", output_dir)
    assert run.returncode == 0, run.stderr[-5000:]
    return dict(root=root, vocab=vocab_folder, tokenizer=tokenizer, export_dir=export_dir,
                output_dir=output_dir, model=trainer.model, config=config, stdout=run.stdout)


def relative_error(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


# ------------------------------------------------------------------------------ model


@pytest.mark.slow
def test_bert_for_masked_lm_loads_every_weight_and_matches_the_tf_logits(student):
    import tensorflow as tf
    import torch
    import transformers

    model, info = transformers.BertForMaskedLM.from_pretrained(student["output_dir"],
                                                               output_loading_info=True)
    assert info == {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(),
                    "error_msgs": []}
    model.eval()
    config = model.config
    assert (config.hidden_act, config.layer_norm_eps, config.type_vocab_size,
            config.max_position_embeddings, config.vocab_size, config.hidden_size) == \
        ("gelu_new", 1e-12, 2, 64, student["tokenizer"].vocab_size, 32)
    assert model.cls.predictions.decoder.weight.data_ptr() == \
        model.bert.embeddings.word_embeddings.weight.data_ptr()

    # Real ids: bundled text of four languages through their own tokenizers, padded to the
    # longest; two sentence pairs give token type ids 1.
    rows = []  # (input_ids, token_type_ids)
    for language in ("en", "hi", "zh", "fr"):
        hf_tokenizer = transformers.AutoTokenizer.from_pretrained(
            os.path.join(student["output_dir"], "tokenizers", language))
        lines = bundled_lines(language)
        encoded = hf_tokenizer([lines[0][:40], lines[1]], truncation=True,
                               max_length=SEQ_LENGTH)
        rows += zip(encoded["input_ids"], encoded["token_type_ids"])
        if language in ("en", "zh"):
            pair = hf_tokenizer(lines[2][:30], lines[3][:30], truncation=True,
                                max_length=SEQ_LENGTH)
            rows.append((pair["input_ids"], pair["token_type_ids"]))
    length = max(len(row) for row, _ in rows)
    ids = np.zeros([len(rows), length], np.int32)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, (row, row_types) in enumerate(rows):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
        types[i, :len(row)] = row_types
    assert mask.sum() < mask.size and types.sum() > 0  # padding and second segments present

    serve = tf.saved_model.load(os.path.join(student["export_dir"], "saved_model")
                                ).signatures["serving_default"]
    positions = np.tile(np.arange(length, dtype=np.int32), [len(rows), 1])
    want = serve(input_word_ids=tf.constant(ids), input_mask=tf.constant(mask),
                 input_type_ids=tf.constant(types),
                 masked_lm_positions=tf.constant(positions))["mlm_logits"].numpy()
    with torch.no_grad():
        got = model(input_ids=torch.tensor(ids, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long),
                    token_type_ids=torch.tensor(types, dtype=torch.long)).logits.numpy()
    real = mask.astype(bool)
    error = relative_error(got[real], want[real])
    print(f"\nlogits parity: relative error {error:.3e} over {int(real.sum())} positions x "
          f"{want.shape[-1]} ids (max |logit| {np.abs(want[real]).max():.3f})")
    assert error <= 1e-4


# ------------------------------------------------------------------------------ tokenizers


def _tokenizer_folders(output_dir: str) -> dict:
    with open(os.path.join(output_dir, export_hf.LANGUAGES_FILE), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.slow
def test_every_language_tokenizer_gives_the_student_ids_on_all_bundled_text(student):
    import transformers

    tokenizer = student["tokenizer"]
    described = _tokenizer_folders(student["output_dir"])
    assert sorted(described["languages"]) == sorted(UDHR_LANGUAGES) == tokenizer.languages
    assert {lang: entry["teacher"] for lang, entry in described["languages"].items()} == {
        **{lang: "cased_a" for lang in ("ar", "de", "en", "hi", "zh")},
        **{lang: "uncased_b" for lang in ("es", "fi", "fr", "it", "tr")}}
    compared = 0
    for language, entry in described["languages"].items():
        hf_tokenizer = transformers.AutoTokenizer.from_pretrained(
            os.path.join(student["output_dir"], entry["tokenizer"]))
        assert hf_tokenizer.is_fast
        assert (hf_tokenizer.pad_token_id, hf_tokenizer.unk_token_id, hf_tokenizer.cls_token_id,
                hf_tokenizer.sep_token_id, hf_tokenizer.mask_token_id) == (0, 1, 2, 3, 4)
        assert hf_tokenizer.model_max_length == SEQ_LENGTH
        lines = bundled_lines(language)
        want = [t.ids.tolist() for t in tokenizer.tokenize(lines, language)]
        got = hf_tokenizer(lines, add_special_tokens=False)["input_ids"]
        differ = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
        assert not differ, (language, len(differ), lines[differ[0]][:200])
        # [CLS] ... [SEP], truncation to S and padding: the model batch of the project.
        batch = tokenizer.encode(lines, language, SEQ_LENGTH)
        hf_batch = hf_tokenizer(lines, padding="max_length", truncation=True,
                                max_length=SEQ_LENGTH, return_tensors="np")
        np.testing.assert_array_equal(hf_batch["input_ids"], batch["input_word_ids"])
        np.testing.assert_array_equal(hf_batch["attention_mask"], batch["input_mask"])
        np.testing.assert_array_equal(hf_batch["token_type_ids"], batch["input_type_ids"])
        compared += sum(len(ids) for ids in want)
    print(f"\nid parity: {compared:,} pieces over {len(described['languages'])} languages")


@pytest.mark.slow
def test_each_teachers_tokenizer_matches_on_every_language_cased_and_uncased(student):
    """Every teacher's HF tokenizer (cased and uncased) against the project tokenizer of that
    teacher, on the bundled text of the languages it does not serve (the test above covers the
    ones it serves): every language is checked both cased and uncased (uncased Hindi loses its
    nonspacing vowel signs but keeps the spacing ones, Mc)."""
    import transformers

    from teacher_scoring.examples import tokenization
    tokenizer = student["tokenizer"]
    described = _tokenizer_folders(student["output_dir"])
    folder_of = {}
    for entry in described["languages"].values():
        folder_of.setdefault(entry["teacher"], entry["tokenizer"])
    assert sorted(folder_of) == sorted(TEACHERS)
    for teacher, folder in folder_of.items():
        hf_tokenizer = transformers.AutoTokenizer.from_pretrained(
            os.path.join(student["output_dir"], folder))
        project = tokenizer.for_teacher(teacher)
        with open(os.path.join(student["output_dir"], folder, "tokenizer_config.json"),
                  encoding="utf-8") as f:
            assert json.load(f)["do_lower_case"] is TEACHERS[teacher][0]
        for language in UDHR_LANGUAGES:
            if described["languages"][language]["teacher"] == teacher:
                continue
            lines = bundled_lines(language)
            want = [t.ids.tolist() for t in project.tokenize_with_offsets(
                [tokenization.clean_text(line) for line in lines])]
            got = hf_tokenizer(lines, add_special_tokens=False)["input_ids"]
            differ = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
            assert not differ, (teacher, language, len(differ), lines[differ[0]][:200])


@pytest.mark.slow
def test_root_tokenizer_is_the_fallback_teachers_and_the_card_lists_the_languages(student):
    import transformers

    output_dir = student["output_dir"]
    described = _tokenizer_folders(output_dir)
    assert described["default_teacher"] == FALLBACK_TEACHER == described["fallback_teacher"]
    root = transformers.AutoTokenizer.from_pretrained(output_dir)
    lines = bundled_lines("tr")
    want = [t.ids.tolist() for t in student["tokenizer"].tokenize(lines, "tr")]
    assert root(lines, add_special_tokens=False)["input_ids"] == want
    # A literal [MASK] is the mask token (fill-mask), between [CLS] and [SEP].
    ids = root("Merhaba [MASK] dünya")["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3 and ids.count(4) == 1

    card = open(os.path.join(output_dir, "README.md"), encoding="utf-8").read()
    assert student["tokenizer"].vocab_sha256 in card
    assert "BertForMaskedLM.from_pretrained" in card
    for language, entry in described["languages"].items():
        assert f"| {language} | `tokenizers/{language}` | {entry['teacher']} |" in card
    for teacher, (lower_case, _) in TEACHERS.items():
        assert f"| {teacher} | {'uncased' if lower_case else 'cased'} |" in card
    assert "tokenizers/" in student["stdout"]


# ------------------------------------------------------------------------------ fill-mask


def _student_tokens(export_dir: str) -> list[str]:
    from teacher_scoring.examples.tokenization import read_vocab

    return read_vocab(os.path.join(export_dir, "vocab.txt"))


@pytest.mark.slow
def test_fill_mask_pipeline_shows_the_languages_own_tokens_never_a_placeholder(student,
                                                                               tmp_path):
    """A student made to prefer a token that es's tokenizer (teacher uncased_b) lacks: its
    output bias at that id is raised by 100, so the union model predicts it at every position.
    transformers' pipeline("fill-mask") on the root model with the es tokenizer then shows the
    placeholder `[md-unused-<id>]`; on `languages/es` (the fix) it shows only tokens of es's
    tokenizer, ranked and scored as the student's softmax restricted to them."""
    import tensorflow as tf
    import torch
    import transformers

    from student import tokenizer as tokenizer_lib

    export_dir = str(tmp_path / "export")
    shutil.copytree(student["export_dir"], export_dir)
    student_tokens = _student_tokens(export_dir)
    es_vocab = export_hf.hf_vocab(student["tokenizer"].student_space_vocab("uncased_b"))
    # A cased_a-only word piece (not '##'), so the union model's favourite is a real token that
    # es's tokenizer prints as a placeholder.
    target = next(i for i, (line, token) in enumerate(zip(es_vocab, student_tokens))
                  if line != token and token.isalpha() and len(token) > 3)
    assert tokenizer_lib.is_placeholder(es_vocab[target])
    prefix = tf.train.latest_checkpoint(os.path.join(export_dir, "checkpoint"))
    pretrainer = export_hf.load_pretrainer(export_hf.read_student_config(export_dir), prefix)
    bias = pretrainer.masked_lm.bias
    bias.assign(tf.tensor_scatter_nd_add(bias, [[target]], [100.0]))
    tf.train.Checkpoint(**pretrainer.checkpoint_items).write(prefix)
    output_dir = str(tmp_path / "hf")
    summary = export_hf.export_hf(export_dir, output_dir)
    assert summary["language_models"]["es"] == os.path.join("languages", "es")
    described = _tokenizer_folders(output_dir)
    assert described["languages"]["es"]["model"] == "languages/es"

    text = "La Declaración Universal de [MASK] Humanos fue adoptada."
    top_k = 10
    es_tokenizer = transformers.AutoTokenizer.from_pretrained(
        os.path.join(output_dir, "tokenizers", "es"))
    root_model = transformers.BertForMaskedLM.from_pretrained(output_dir).eval()
    without_fix = transformers.pipeline("fill-mask", model=root_model, tokenizer=es_tokenizer,
                                        top_k=top_k)(text)
    # The constructed case: without the per-language model the placeholder wins.
    assert without_fix[0]["token"] == target
    assert without_fix[0]["token_str"] == es_vocab[target]
    assert without_fix[0]["token_str"].startswith("[md-unused-")

    fill = transformers.pipeline("fill-mask", model=os.path.join(output_dir, "languages", "es"),
                                 top_k=top_k)
    predictions = fill(text)
    producible = export_hf.producible_ids(es_vocab, student_tokens)
    assert len(predictions) == top_k
    for prediction in predictions:
        assert producible[prediction["token"]], prediction
        assert not tokenizer_lib.is_placeholder(prediction["token_str"].replace(" ", "")), \
            prediction
        assert "md-unused" not in prediction["token_str"] + prediction["sequence"], prediction
        assert es_vocab[prediction["token"]] == student_tokens[prediction["token"]]
    # Exactly the union model's softmax restricted to es's tokens: same ranking, same scores.
    encoded = es_tokenizer(text, return_tensors="pt")
    position = int((encoded["input_ids"][0] == es_tokenizer.mask_token_id).nonzero()[0, 0])
    with torch.no_grad():
        logits = root_model(**encoded).logits[0, position].numpy().astype(np.float64)
    logits[~producible] = -np.inf
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    want = np.argsort(-probabilities)[:top_k]
    assert [p["token"] for p in predictions] == want.tolist()
    np.testing.assert_allclose([p["score"] for p in predictions], probabilities[want],
                               rtol=1e-4, atol=1e-7)
    # And for every other language: its model's top predictions are its own tokens.
    for language, entry in described["languages"].items():
        vocab = export_hf.hf_vocab(student["tokenizer"].student_space_vocab(entry["teacher"]))
        language_fill = transformers.pipeline(
            "fill-mask", model=os.path.join(output_dir, entry["model"]), top_k=top_k)
        for prediction in language_fill(f"{bundled_lines(language)[0][:30]} [MASK] ."):
            assert vocab[prediction["token"]] == student_tokens[prediction["token"]], \
                (language, prediction)


@pytest.mark.slow
def test_language_models_differ_from_the_root_model_only_in_the_masked_output_bias(student):
    import safetensors.numpy

    output_dir = student["output_dir"]
    root = safetensors.numpy.load_file(os.path.join(output_dir, "model.safetensors"))
    student_tokens = _student_tokens(student["export_dir"])
    described = _tokenizer_folders(output_dir)
    inodes = {}
    with open(os.path.join(output_dir, "config.json"), encoding="utf-8") as f:
        root_config = json.load(f)
    for language, entry in described["languages"].items():
        folder = os.path.join(output_dir, entry["model"])
        assert entry["model"] == f"languages/{language}"
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            assert json.load(f) == root_config
        # Its tokenizer is the language's (same files as tokenizers/<lang>).
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
            assert open(os.path.join(folder, name), "rb").read() == open(
                os.path.join(output_dir, entry["tokenizer"], name), "rb").read()
        weights = safetensors.numpy.load_file(os.path.join(folder, "model.safetensors"))
        assert sorted(weights) == sorted(root)
        for name, value in root.items():
            if name != export_hf.OUTPUT_BIAS:
                np.testing.assert_array_equal(weights[name], value, err_msg=name)
        vocab = export_hf.hf_vocab(student["tokenizer"].student_space_vocab(entry["teacher"]))
        producible = export_hf.producible_ids(vocab, student_tokens)
        assert producible[:5].all() and 0 < producible.sum() < len(producible)
        bias = weights[export_hf.OUTPUT_BIAS]
        np.testing.assert_array_equal(bias[producible], root[export_hf.OUTPUT_BIAS][producible])
        assert np.all(bias[~producible] == export_hf.MASKED_BIAS)
        inodes.setdefault(entry["teacher"], set()).add(
            os.stat(os.path.join(folder, "model.safetensors")).st_ino)
    # One weights file per teacher (hard links on this file system).
    assert {teacher: len(nodes) for teacher, nodes in inodes.items()} == \
        {"cased_a": 1, "uncased_b": 1}
    card = open(os.path.join(output_dir, "README.md"), encoding="utf-8").read()
    assert 'pipeline("fill-mask", model="PATH/languages/' in card


@pytest.mark.slow
def test_nolanguage_models_writes_no_language_folders(student, tmp_path):
    summary = export_hf.export_hf(student["export_dir"], str(tmp_path / "hf"),
                                  language_models=False)
    assert summary["language_models"] == {}
    assert not (tmp_path / "hf" / "languages").exists()
    described = _tokenizer_folders(str(tmp_path / "hf"))
    assert all("model" not in entry for entry in described["languages"].values())
    assert "--nolanguage_models" in (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")


def test_language_output_bias_masks_exactly_the_ids_the_tokenizer_cannot_produce():
    student_tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "casa", "house", "##s"]
    vocab = student_tokens[:5] + ["casa", "[md-unused-6]", "##s"]
    producible = export_hf.producible_ids(vocab, student_tokens)
    assert producible.tolist() == [True] * 6 + [False, True]
    bias = np.arange(8, dtype=np.float32)
    np.testing.assert_array_equal(export_hf.language_output_bias(bias, producible),
                                  [0, 1, 2, 3, 4, 5, export_hf.MASKED_BIAS, 7])
    with pytest.raises(export_hf.ExportHFError, match="7 lines but the student vocabulary 8"):
        export_hf.producible_ids(vocab[:7], student_tokens)


# ------------------------------------------------------------------------------ refusals


@pytest.mark.slow
def test_factorised_embedding_is_refused_before_anything_is_written(student, tmp_path):
    """Student_MuRIL's kind of student: tiny.yaml's embedding_size 16 under hidden size 32."""
    from student import export as export_lib
    from student import model as model_lib

    config = _config(student["tokenizer"].vocab_size)
    assert config.model.encoder.bert_v2.embedding_size == 16
    export_dir = str(tmp_path / "export")
    export_lib.export(model_lib.build_pretrainer(config.model), config,
                      os.path.join(student["vocab"], "vocab.txt"), export_dir, 0,
                      tokenizer=student["tokenizer"])
    output_dir = tmp_path / "hf"
    run = _run_module("--export_dir", export_dir, "--output_dir", str(output_dir))
    assert run.returncode == 1
    assert (f"{os.path.join(export_dir, 'params.yaml')}: field "
            "'model.encoder.bert_v2.embedding_size' = 16 (hidden_size 32)") in run.stderr
    assert "cannot represent" in run.stderr
    assert not output_dir.exists()
    assert os.listdir(tmp_path) == ["export"]  # no staging folder left behind


@pytest.mark.slow
@pytest.mark.parametrize("missing", [
    "params.yaml", "vocab.txt", "checkpoint/checkpoint", "tokenizer/student_tokenizer.json",
    "tokenizer/uncased_b.vocab.txt"])
def test_an_export_missing_a_piece_is_refused_naming_it(student, tmp_path, missing):
    export_dir = str(tmp_path / "export")
    shutil.copytree(student["export_dir"], export_dir)
    os.remove(os.path.join(export_dir, missing))
    output_dir = str(tmp_path / "hf")
    with pytest.raises(export_hf.ExportHFError) as error:
        export_hf.export_hf(export_dir, output_dir)
    assert os.path.join(export_dir, missing) in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ["export"]


@pytest.mark.slow
def test_an_existing_output_folder_is_replaced_only_with_overwrite(student, tmp_path):
    output_dir = tmp_path / "hf"
    output_dir.mkdir()
    (output_dir / "notes.txt").write_text("mine")
    with pytest.raises(export_hf.ExportHFError, match="exists and is not empty .*--overwrite"):
        export_hf.export_hf(student["export_dir"], str(output_dir))
    with pytest.raises(export_hf.ExportHFError, match="not a previous Hugging Face export"):
        export_hf.export_hf(student["export_dir"], str(output_dir), overwrite=True)
    assert os.listdir(output_dir) == ["notes.txt"]

    shutil.rmtree(output_dir)
    shutil.copytree(student["output_dir"], output_dir)
    (output_dir / "tokenizers" / "xx").mkdir()  # a stale folder of an earlier export
    with pytest.raises(export_hf.ExportHFError, match="exists and is not empty"):
        export_hf.export_hf(student["export_dir"], str(output_dir))
    summary = export_hf.export_hf(student["export_dir"], str(output_dir), overwrite=True)
    assert summary["step"] == 3 and sorted(summary["languages"]) == sorted(UDHR_LANGUAGES)
    assert not (output_dir / "tokenizers" / "xx").exists()
    assert sorted(os.listdir(tmp_path)) == ["hf"]
    for name in ("model.safetensors", "tokenizer.json", "languages.json"):
        assert (output_dir / name).read_bytes() == \
            open(os.path.join(student["output_dir"], name), "rb").read(), name


# ------------------------------------------------------------------------------ units


def test_hf_tokenizer_keeps_the_nfc_step_that_transformers_bert_tokenizer_drops(tmp_path):
    """Non-NFC Hindi (udhr hi has decomposed nukta letters): the exported tokenizer.json gives
    the project's ids; transformers' BertTokenizer (no NFC in its normalizer) does not."""
    import transformers

    from teacher_scoring.examples import tokenization
    from vocab.train_wordpiece import train_wordpiece

    lines = udhr_lines("hi")
    vocab = train_wordpiece(lines, 1500, lower_case=False)
    folder = str(tmp_path / "hi")
    export_hf.write_tokenizer(folder, vocab, lower_case=False, model_max_length=128)
    project = tokenization.TeacherTokenizer(vocab, lower_case=False)
    want = [t.ids.tolist() for t in project.tokenize_with_offsets(
        [tokenization.clean_text(line) for line in lines])]
    exported = transformers.AutoTokenizer.from_pretrained(folder)
    assert exported(lines, add_special_tokens=False)["input_ids"] == want
    plain = transformers.BertTokenizer(os.path.join(folder, "vocab.txt"), do_lower_case=False)
    assert plain(lines, add_special_tokens=False)["input_ids"] != want


@pytest.mark.parametrize("lower_case", [False, True], ids=["cased", "uncased"])
def test_hf_tokenizer_equals_the_project_tokenizer_on_every_code_point(tmp_path, lower_case):
    """Words a<c>b for every BMP code point c and every 61st astral one (the sweep of
    docs/tokenizer_parity.md), and the edge cases of the tokenizer tests (removed and
    whitespace characters, punctuation, CJK, casing, accents, long words). The exported
    tokenizer.json takes its character classes from Python's unicodedata, as the project does;
    transformers' BertTokenizer (Rust tables, no NFC) differs on many of these texts."""
    import transformers

    from teacher_scoring.examples import tokenization
    from teacher_scoring.examples import tokenizer_parity
    from tests.teacher_scoring.examples.test_tokenization import EDGE_CASES

    texts = tokenizer_parity.code_point_probe_texts(astral_step=61)
    texts += EDGE_CASES + ["ΑΣ'Α ΑΣ' Α'Σ ʰΣ AʰΣ ΣΑΣ ΆΣ 1Σ"]  # more final-sigma contexts
    vocab = tokenizer_parity.char_vocab(texts)
    folder = str(tmp_path / "chars")
    export_hf.write_tokenizer(folder, vocab, lower_case, model_max_length=512)
    want = tokenization.TeacherTokenizer(vocab, lower_case).tokenize(texts)
    exported = transformers.AutoTokenizer.from_pretrained(folder)
    got = exported(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    differ = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    assert not differ, (len(differ), texts[differ[0]][:100])
    plain = transformers.BertTokenizer(os.path.join(folder, "vocab.txt"),
                                       do_lower_case=lower_case)
    plain_ids = plain(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert any(a != b for a, b in zip(plain_ids, want))  # 62 (uncased) / 67 (cased) texts


def test_default_teacher_rule():
    languages = {"en": "a", "de": "b", "fr": "b", "es": "c", "it": "c"}
    assert export_hf.default_teacher(languages, None) == "b"  # most languages, tie by name
    assert export_hf.default_teacher(languages, "a") == "a"  # the fallback teacher wins
