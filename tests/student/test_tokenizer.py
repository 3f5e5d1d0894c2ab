"""Tests for student/tokenizer.py: student-space vocabularies, the language -> teacher rule,
encode(), save/load of a self-contained export, the export wiring and rebuild command, and
parity with the ids the scoring job writes, on bundled text."""

import collections
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from student import config as config_lib
from student import export as export_lib
from student import tokenizer as tokenizer_lib
from student.tokenizer import StudentTokenizer, TeacherSpec, TokenizerError
from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.examples import segmentation
from teacher_scoring.examples.tokenization import SPECIAL_TOKENS, TeacherTokenizer, clean_text
from tests.conftest import (DEMO_LANGUAGES, REPO_ROOT, demo_lines, trained_vocab, udhr_lines)
from vocab.train_wordpiece import train_wordpiece
from vocab.union import StudentVocab

# Teachers over real WordPiece vocabularies of the bundled text: two for English (cased,
# uncased), one for German, one for Chinese (uncased).
TEACHERS = {"en_a": ("en", False, 1200), "en_b": ("en", True, 900), "de_a": ("de", False, 1000),
            "zh_a": ("zh", True, 3000)}


def _teacher_vocab(name):
    language, lower_case, size = TEACHERS[name]
    return trained_vocab(language, size, lower_case)


@pytest.fixture(scope="module")
def union(tmp_path_factory):
    """The student vocab folder of the three teachers."""
    folder = tmp_path_factory.mktemp("vocab")
    StudentVocab.build({name: _teacher_vocab(name) for name in TEACHERS}).save(str(folder))
    return str(folder)


def _manifest(language, counts, lower_case=None, teachers_sha=None, teacher_languages=None):
    """A manifest of one language: counts = teacher -> examples (per-teacher counts)."""
    lower_case = lower_case or {}
    names = list(counts) or list(teacher_languages or {})
    teachers = {name: manifest_lib.TeacherEntry(
        vocab_sha256=(teachers_sha or {}).get(name, ""), vocab_size=10,
        languages=(teacher_languages or {}).get(name, [language]),
        lower_case=lower_case.get(name, TEACHERS.get(name, ("", False))[1]))
        for name in names}
    entry = manifest_lib.LanguageEntry(
        examples=sum(counts.values()) or 7, masked_tokens=1, shards=["x.tfrecord"],
        teachers={name: manifest_lib.TeacherCounts(examples=n) for name, n in counts.items()})
    return manifest_lib.Manifest(
        seq_length=64, max_predictions_per_seq=10, top_k=8, logits_dtype="float32",
        has_teacher_outputs=True, id_space="student", vocab_sha256="", vocab_size=10,
        teachers=teachers, languages={language: entry}, seed=1)


def _manifests(**languages):
    return {language: (_manifest(language, counts), f"{language}/manifest.json")
            for language, counts in languages.items()}


@pytest.fixture(scope="module")
def tokenizer(union):
    return StudentTokenizer.build(union, manifests=_manifests(en={"en_a": 30, "en_b": 50},
                                                              de={"de_a": 20}, zh={"zh_a": 9}))


# ------------------------------------------------------------------ student-space vocabularies


def test_student_space_vocab_keeps_the_teachers_tokens_at_student_ids(union, tokenizer):
    vocab = StudentVocab.load(union)
    for name in TEACHERS:
        lines = tokenizer.student_space_vocab(name)
        assert len(lines) == vocab.size and tuple(lines[:5]) == SPECIAL_TOKENS
        mapping = vocab.maps[name]
        image = set(mapping[mapping >= 0].tolist()) | set(range(5))
        for i, line in enumerate(lines):
            if i in image:
                assert line == vocab.tokens[i]
            else:
                assert line == f"[md-unused-{i}]" and tokenizer_lib.is_placeholder(line)
        # Exactly the teacher's tokens (its [unusedN] aside) are kept.
        teacher_tokens = {t for t in _teacher_vocab(name) if not t.startswith("[unused")}
        assert {line for line in lines if not tokenizer_lib.is_placeholder(line)} == \
            teacher_tokens | set(SPECIAL_TOKENS)


def test_placeholders_avoid_student_tokens_and_are_never_produced():
    tokens = list(SPECIAL_TOKENS) + ["a", "[md-unused-8]", "##c", "x", "d"]
    lines = tokenizer_lib.student_space_vocab(tokens, np.array([0, 1, 2, 3, 4, 5, 6, 7, 9],
                                                               np.int32))
    assert lines[:8] + lines[9:] == tokens[:8] + tokens[9:]
    # The placeholder of id 8 would collide with student token 6: it is bracketed again.
    assert lines[8] == "[[md-unused-8]]" and len(set(lines)) == len(lines)
    # Text that spells every placeholder never yields one: '[', '-' and ']' are words of their
    # own for BERT's basic tokenizer.
    student = TeacherTokenizer(lines, lower_case=False)
    text = " ".join(lines) + " " + "".join(lines) + " a[md-unused-8]c"
    ids = student.tokenize([text])[0]
    assert ids and not any(tokenizer_lib.is_placeholder(lines[i]) for i in ids)


@pytest.mark.slow
def test_teacher_then_map_equals_student_space_tokenization_on_all_bundled_text():
    """One union of a cased or uncased teacher per language (both for en, Arabic from
    its UDHR text): every teacher's ids on all bundled text of its language (demo + udhr),
    mapped to the student, equal the student-space tokenizer's."""
    teachers = {}
    for i, language in enumerate(DEMO_LANGUAGES):
        for lower_case in ((False, True) if language == "en" else (bool(i % 2),)):
            size = 3000 if language == "zh" else 1000
            teachers[f"{language}_{int(lower_case)}"] = (
                language, lower_case, trained_vocab(language, size, lower_case))
    teachers["ar_1"] = ("ar", True, train_wordpiece(udhr_lines("ar"), 600, True))
    vocab = StudentVocab.build({name: t[2] for name, t in teachers.items()})
    built = StudentTokenizer.build(vocab, {name: TeacherSpec(name, lower_case, {language: 1})
                                           for name, (language, lower_case, _) in
                                           teachers.items()})
    checked = 0
    for name, (language, lower_case, teacher_vocab) in teachers.items():
        texts = (demo_lines(language) if language != "ar" else []) + udhr_lines(language)
        # Bracketed placeholder look-alikes in the text stay text.
        texts.append("[md-unused-9] [MASK] [unused1] x[md-unused-12]y")
        reference = TeacherTokenizer(teacher_vocab, lower_case).tokenize(texts)
        student = built.for_teacher(name).tokenize(texts)
        mapping = vocab.maps[name]
        for text, teacher_ids, student_ids in zip(texts, reference, student):
            mapped = mapping[np.asarray(teacher_ids, np.int64)]
            assert (mapped >= 0).all()
            np.testing.assert_array_equal(student_ids, mapped, err_msg=f"{name}: {text[:80]}")
            checked += len(student_ids)
    assert checked > 500_000


# ------------------------------------------------------------------ which teacher a language uses


def test_default_teacher_is_the_one_seen_most_ties_in_union_order(union):
    chosen = StudentTokenizer.build(union, manifests=_manifests(
        en={"en_a": 30, "en_b": 50}, de={"de_a": 20}))
    assert chosen.teacher_for("en") == "en_b" and chosen.teacher_for("de") == "de_a"
    assert chosen.languages == ["de", "en"]
    tie = StudentTokenizer.build(union, manifests=_manifests(en={"en_b": 40, "en_a": 40}))
    assert tie.teacher_for("en") == "en_a"      # first in the union (teachers.json order)
    assert tie.teacher_names == ["en_a", "en_b"]
    assert tie.teacher_examples("en_b") == {"en": 40}


def test_override_and_bad_overrides_name_the_setting(union):
    manifests = _manifests(en={"en_a": 30, "en_b": 50}, de={"de_a": 20})
    chosen = StudentTokenizer.build(union, manifests=manifests, teacher_for_language=["en=en_a"])
    assert chosen.teacher_for("en") == "en_a"
    assert chosen.for_language("en").lower_case is False
    with pytest.raises(TokenizerError, match=r"tokenizer.teacher_for_language: teacher 'de_a' "
                                             r"did not tokenize 'en'.*\['en_a', 'en_b'\]"):
        StudentTokenizer.build(union, manifests=manifests, teacher_for_language={"en": "de_a"},
                               overrides_field="tokenizer.teacher_for_language")
    with pytest.raises(TokenizerError, match=r"teacher_for_language: language 'fr' is not one "
                                             r"the student was trained on \(\['de', 'en'\]\)"):
        StudentTokenizer.build(union, manifests=manifests, teacher_for_language=["fr=en_a"])
    with pytest.raises(TokenizerError, match=r"entry 'en' is not LANGUAGE=TEACHER"):
        StudentTokenizer.build(union, manifests=manifests, teacher_for_language=["en"])
    with pytest.raises(TokenizerError, match=r"--fallback_teacher: 'nobody' is not a teacher of "
                                             r"the training shards"):
        StudentTokenizer.build(union, manifests=manifests, fallback_teacher="nobody",
                               fallback_field="--fallback_teacher")


def test_unknown_language_lists_the_known_ones_and_fallback_serves_it(union, tokenizer):
    with pytest.raises(ValueError, match=r"language 'fi' is not one the student was trained on; "
                                         r"known languages: de, en, zh"):
        tokenizer.teacher_for("fi")
    with pytest.raises(TokenizerError, match="known languages: de, en, zh"):
        tokenizer.encode(["Hei maailma"], "fi", 8)
    with_fallback = StudentTokenizer.build(
        union, manifests=_manifests(en={"en_a": 30, "en_b": 50}, de={"de_a": 20}),
        fallback_teacher="en_a")
    assert with_fallback.teacher_for("fi") == "en_a"
    assert with_fallback.encode(["Hei maailma"], "fi", 16)["input_word_ids"][0, 0] == 2
    assert with_fallback.languages == ["de", "en"]       # the fallback serves, it adds none


def test_teachers_from_manifests_gold_only_and_inconsistencies(union):
    # Gold-only shards: no per-teacher counts; the teacher that lists the language tokenized it.
    gold = _manifest("de", {}, teacher_languages={"de_a": ["de"]})
    specs = tokenizer_lib.teacher_specs_from_manifests({"de": (gold, "de/manifest.json")})
    assert specs == {"de_a": TeacherSpec("de_a", False, {"de": 7}, "")}
    ambiguous = _manifest("de", {}, teacher_languages={"de_a": ["de"], "en_a": ["de"]})
    with pytest.raises(TokenizerError, match=r"de/manifest.json: languages.de names no teacher "
                                             r"with counts, and 2 teachers"):
        tokenizer_lib.teacher_specs_from_manifests({"de": (ambiguous, "de/manifest.json")})
    uncased = _manifest("de", {"en_a": 3}, lower_case={"en_a": True})
    with pytest.raises(TokenizerError, match=r"de.json: teacher 'en_a' has lower_case=True.*"
                                             r"en.json says lower_case=False"):
        tokenizer_lib.teacher_specs_from_manifests({
            "en": (_manifest("en", {"en_a": 3}), "en.json"), "de": (uncased, "de.json")})
    with pytest.raises(TokenizerError, match=r"x.json: has no language 'fr'"):
        tokenizer_lib.teacher_specs_from_manifests({"fr": (gold, "x.json")})
    # A teacher the union does not know, or whose vocab hash differs from the union's.
    with pytest.raises(TokenizerError, match=r"teacher 'ghost' tokenized the training shards but "
                                             r"the student vocab has no map for it"):
        StudentTokenizer.build(union, {"ghost": TeacherSpec("ghost", False, {"en": 1})})
    with pytest.raises(TokenizerError, match=r"teacher 'en_a': the shards were made with a "
                                             r"vocabulary of sha256 abc"):
        StudentTokenizer.build(union, {"en_a": TeacherSpec("en_a", False, {"en": 1}, "abc")})


# ------------------------------------------------------------------ encode / tokenize


def test_encode_gives_model_inputs_word_ids_offsets_and_reports_truncation(tokenizer):
    texts = ["Open the  dialog, then click OK.", "", "word " * 40]
    batch = tokenizer.encode(texts, "en", 16)
    lm = tokenizer.for_language("en")
    pieces = lm.tokenize(texts)
    for key in ("input_word_ids", "input_mask", "input_type_ids", "word_ids"):
        assert batch[key].dtype == np.int32 and batch[key].shape == (3, 16)
    n = len(pieces[0])
    assert n <= 14
    np.testing.assert_array_equal(batch["input_word_ids"][0, :n + 2],
                                  [lm.cls_id, *pieces[0], lm.sep_id])
    assert (batch["input_word_ids"][0, n + 2:] == 0).all()
    np.testing.assert_array_equal(batch["input_mask"][0], [1] * (n + 2) + [0] * (14 - n))
    assert not batch["input_type_ids"].any()
    # Word of each piece, and the byte span it comes from (cased teacher: the piece's surface).
    words = texts[0].split()
    word_ids = batch["word_ids"][0, 1:n + 1]
    assert word_ids.tolist() == sorted(word_ids.tolist()) and set(word_ids) == set(range(6))
    assert batch["word_ids"][0, 0] == -1 and batch["word_ids"][0, n + 1] == -1
    data = texts[0].encode()
    for position in range(1, n + 1):
        start, end = batch["piece_starts"][0, position], batch["piece_ends"][0, position]
        surface = data[start:end].decode()
        assert surface in words[batch["word_ids"][0, position]]
        token = lm.vocab[batch["input_word_ids"][0, position]]
        assert token.removeprefix("##") in (surface.lower() if lm.lower_case else surface,
                                            "[UNK]")
    # An empty text is [CLS] [SEP]; a long one is cut to S - 2 pieces and reported.
    np.testing.assert_array_equal(batch["input_word_ids"][1, :3], [2, 3, 0])
    assert batch["num_pieces"].tolist()[1:] == [0, len(pieces[2])] and len(pieces[2]) > 14
    assert batch["truncated"].tolist() == [False, False, True]
    np.testing.assert_array_equal(batch["input_word_ids"][2, 1:15], pieces[2][:14])
    assert batch["input_word_ids"][2, 15] == lm.sep_id
    with pytest.raises(TokenizerError, match="seq_length must be >= 3"):
        tokenizer.encode(["x"], "en", 2)
    with pytest.raises(TypeError, match="list of texts"):
        tokenizer.encode("one text", "en", 8)


def test_pre_split_words_keep_their_indices(tokenizer):
    words = ["Zugriff", "auf", "\u200b", "Datenbanken", "(Base)"]   # U+200B cleans to nothing
    [tokenized] = tokenizer.tokenize_words([words], "de")
    assert tokenized.num_words == 5 and tokenized.words_without_pieces == [2]
    lm = tokenizer.for_language("de")
    expected = []
    for i, word in enumerate(words):
        expected += [i] * len(lm.tokenize([word])[0])
    assert tokenized.word_ids.tolist() == expected
    np.testing.assert_array_equal(tokenized.ids, lm.tokenize([" ".join(words)])[0])
    batch = tokenizer.encode([words, ["Base"]], "de", 32, is_split_into_words=True)
    assert batch["word_ids"][0, 1:len(expected) + 1].tolist() == expected
    with pytest.raises(TypeError, match="list of words per example"):
        tokenizer.tokenize_words(["not split"], "de")


def test_a_batch_equals_one_text_at_a_time(tokenizer):
    """Word ids are computed for the whole batch at once: rows must not leak into each other."""
    texts = ["", "  leading and trailing  ", "Zugriff auf Datenbanken", "\u200b", "eins",
             "ein\tTab und\nZeile", "x" * 120 + " kurz"]
    words = [[], ["", "a"], ["Zugriff", ""], ["\u200b", "auf", "Base"], [""], ["eins"]]
    for batch, single, kind in ((tokenizer.tokenize(texts, "de"),
                                 [tokenizer.tokenize([t], "de")[0] for t in texts], "texts"),
                                (tokenizer.tokenize_words(words, "de"),
                                 [tokenizer.tokenize_words([w], "de")[0] for w in words],
                                 "words")):
        assert len(batch) == len(single)
        for got, want in zip(batch, single):
            assert got.text == want.text and got.num_words == want.num_words, kind
            for field in ("ids", "starts", "ends", "word_ids"):
                np.testing.assert_array_equal(getattr(got, field), getattr(want, field),
                                              err_msg=f"{kind}: {field} of {want.text!r}")
    assert [t.num_words for t in tokenizer.tokenize(texts, "de")] == [
        len(clean_text(t).split()) for t in texts]          # U+200B is removed: no word
    assert [t.num_words for t in tokenizer.tokenize_words(words, "de")] == [len(w)
                                                                            for w in words]
    assert tokenizer.tokenize_words(words, "de")[1].word_ids.tolist() == [1]
    empty = tokenizer.encode([], "de", 8)
    assert empty["input_word_ids"].shape == (0, 8) and empty["truncated"].shape == (0,)


# ------------------------------------------------------------------ save / load, self-contained


def _export_folder(root, union, tokenizer):
    export = pathlib.Path(root) / "export"
    export.mkdir(parents=True)
    shutil.copy(os.path.join(union, "vocab.txt"), export / "vocab.txt")
    tokenizer.save(str(export / "tokenizer"))
    return export


def test_saved_tokenizer_is_self_contained(tmp_path, union, tokenizer):
    export = _export_folder(tmp_path / "a", union, tokenizer)
    config = json.loads((export / "tokenizer" / "student_tokenizer.json").read_text())
    assert config["format_version"] == 1 and config["languages"] == {
        "de": "de_a", "en": "en_b", "zh": "zh_a"}
    assert config["fallback_teacher"] is None
    assert config["teachers"]["en_b"]["lower_case"] is True
    assert config["teachers"]["en_b"]["examples"] == {"en": 50}
    assert config["vocab_sha256"] == manifest_lib.sha256_of_file(str(export / "vocab.txt"))
    assert sorted(os.listdir(export / "tokenizer")) == [
        "de_a.vocab.txt", "en_a.vocab.txt", "en_b.vocab.txt", "student_tokenizer.json",
        "zh_a.vocab.txt"]
    # Moved elsewhere, with no vocab folder and no teacher around: same ids.
    moved = tmp_path / "moved"
    shutil.copytree(export, moved)
    texts = udhr_lines("en", 20) + udhr_lines("de", 20)
    loaded = StudentTokenizer.load(str(moved))
    assert StudentTokenizer.load(str(moved / "tokenizer")).languages == ["de", "en", "zh"]
    for language in ("en", "de"):
        expected = tokenizer.encode(texts, language, 64)
        got = loaded.encode(texts, language, 64)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
    assert loaded.student_space_vocab("en_a") == tokenizer.student_space_vocab("en_a")


def test_load_refuses_damaged_folders(tmp_path, union, tokenizer):
    export = _export_folder(tmp_path, union, tokenizer)
    folder = export / "tokenizer"
    json_path = folder / "student_tokenizer.json"
    original = json_path.read_text()

    vocab_file = folder / "de_a.vocab.txt"
    vocab_text = vocab_file.read_text()
    lines = vocab_text.split("\n")
    lines[7] = "changed"
    vocab_file.write_text("\n".join(lines))
    with pytest.raises(TokenizerError, match=r"de_a.vocab.txt: sha256 differs from field "
                                             r"'vocab_file_sha256'"):
        StudentTokenizer.load(str(export))
    data = json.loads(original)
    data["teachers"]["de_a"]["vocab_file_sha256"] = manifest_lib.sha256_of_file(str(vocab_file))
    json_path.write_text(json.dumps(data))
    with pytest.raises(TokenizerError, match=r"line 8 is 'changed', neither the student token"):
        StudentTokenizer.load(str(export))
    vocab_file.write_text(vocab_text)

    json_path.write_text(original.replace('"format_version": 1', '"format_version": 2'))
    with pytest.raises(TokenizerError, match=r"field 'format_version' is 2"):
        StudentTokenizer.load(str(export))
    data = json.loads(original)
    data["languages"]["fr"] = "nobody"
    json_path.write_text(json.dumps(data))
    with pytest.raises(TokenizerError, match=r"student_tokenizer.json: language 'fr' uses teacher "
                                             r"'nobody'"):
        StudentTokenizer.load(str(export))
    data = json.loads(original)
    del data["fallback_teacher"]
    json_path.write_text(json.dumps(data))
    with pytest.raises(TokenizerError, match=r"missing field\(s\) \['fallback_teacher'\]"):
        StudentTokenizer.load(str(export))
    json_path.unlink()
    with pytest.raises(TokenizerError, match=r"no student_tokenizer.json.*python -m "
                                             r"student.tokenizer"):
        StudentTokenizer.load(str(export))


# ------------------------------------------------------------------ the export wiring


def test_prepare_tokenizer_checks_the_config_section(union, tmp_path):
    vocab_path = os.path.join(union, "vocab.txt")
    manifests = _manifests(en={"en_a": 30, "en_b": 50}, de={"de_a": 20})
    config = config_lib.load_config(params_override=[
        "tokenizer.teacher_for_language=[en=en_a],tokenizer.fallback_teacher=de_a"])
    tokenizer, reason = export_lib.prepare_tokenizer(config, vocab_path, manifests)
    assert reason == "" and tokenizer.teacher_for("en") == "en_a"
    assert tokenizer.teacher_for("fi") == "de_a"

    bad = config_lib.load_config(params_override=["tokenizer.teacher_for_language=[xx=en_a]"])
    with pytest.raises(TokenizerError, match=r"config field 'tokenizer.teacher_for_language': "
                                             r"language 'xx'"):
        export_lib.prepare_tokenizer(bad, vocab_path, manifests)
    bad = config_lib.load_config(params_override=["tokenizer.fallback_teacher=nobody"])
    with pytest.raises(TokenizerError, match=r"config field 'tokenizer.fallback_teacher': "
                                             r"'nobody'"):
        export_lib.prepare_tokenizer(bad, vocab_path, manifests)
    with pytest.raises(config_lib.ConfigError, match=r"field 'tokenizer.teacher_for_language' = "
                                                     r"'en': each entry must be LANG=TEACHER"):
        config_lib.load_config(params_override=["tokenizer.teacher_for_language=[en]"])

    # A bare vocab.txt (no maps): no tokenizer, and the reason says why; settings are refused.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(vocab_path, bare / "vocab.txt")
    tokenizer, reason = export_lib.prepare_tokenizer(config_lib.load_config(),
                                                     str(bare / "vocab.txt"), manifests)
    assert tokenizer is None and "has no teachers.json" in reason
    with pytest.raises(config_lib.ConfigError, match=r"field 'tokenizer.teacher_for_language' = "
                                                     r"\['en=en_a'\]: no tokenizer can be built "
                                                     r"\(.*bare has no teachers.json"):
        export_lib.prepare_tokenizer(config, str(bare / "vocab.txt"), manifests)


# ------------------------------------------------------------------ parity with the scoring job


def _job_examples(language, tokenizers, vocab, documents):
    """The scoring job's examples of `documents` in student ids: its segmentation and masking
    (`create_examples`, what beam_jobs.build_examples runs) and its id mapping
    (`vocab_mapping.map_to_student`). tests/beam_jobs/test_score_corpora_e2e.py checks that the
    job's shards hold exactly these. Top-k fields are placeholders (no teacher model runs)."""
    from beam_jobs import vocab_mapping  # pylint: disable=import-outside-toplevel
    from teacher_scoring.examples import create_examples  # pylint: disable=import-outside-toplevel
    from teacher_scoring.examples.masking import MaskingConfig  # pylint: disable=import-outside-toplevel

    config = MaskingConfig(seq_length=64, max_predictions_per_seq=10, whole_word_masking=True,
                           seed=1234)
    out = []
    for example in create_examples.create_examples(documents, language, tokenizers, config):
        if example.num_predictions == 0:
            # The job drops a copy without a masked token (no_masked_token); kept here in
            # student ids so that a document's segments can be put back together.
            real = np.asarray(example.input_mask) > 0
            example.input_word_ids = np.where(real, vocab.maps[example.teacher][np.asarray(
                example.input_word_ids)], 0)
            out.append(example)
            continue
        example.teacher_topk_ids = np.zeros([10, 8], np.int32)
        example.teacher_topk_logits = np.zeros([10, 8], np.float32)
        example.teacher_loss = 0.0
        mapped = vocab_mapping.map_to_student(example, vocab.maps[example.teacher])
        assert mapped is not None
        out.append(mapped)
    return out


def test_ids_equal_the_student_ids_of_the_scoring_jobs_examples(union):
    """For every language and teacher (en: a cased and an uncased teacher; de; zh), the student
    ids the scoring job's code wrote, unmasked positions as they are and masked ones restored
    from their gold ids, are, segment after segment, the tokenizer's ids of the document."""
    vocab = StudentVocab.load(union)
    built = StudentTokenizer.build(union, manifests=_manifests(
        en={"en_a": 30, "en_b": 50}, de={"de_a": 20}, zh={"zh_a": 10}))
    checked = collections.Counter()
    for language in ("en", "de", "zh"):
        names = [name for name, spec in TEACHERS.items() if spec[0] == language]
        tokenizers = {name: TeacherTokenizer(_teacher_vocab(name), TEACHERS[name][1])
                      for name in names}
        documents = [line.encode() for line in demo_lines(language, 250) + udhr_lines(language)]
        cleaned = {segmentation.document_hash(clean_text(d)): clean_text(d) for d in documents}
        pieces = collections.defaultdict(dict)       # (doc hash, teacher) -> segment -> ids
        unmasked = masked = 0
        for example in _job_examples(language, tokenizers, vocab, documents):
            _, doc_hash, index = example.example_id.rsplit("-", 2)
            n = int(example.input_mask.sum()) - 2
            ids = np.asarray(example.input_word_ids[1:n + 1]).copy()
            slots = np.asarray(example.masked_lm_weights) > 0
            positions = np.asarray(example.masked_lm_positions)[slots] - 1
            ids[positions] = np.asarray(example.masked_lm_ids)[slots]   # the original pieces
            pieces[(doc_hash, example.teacher)][int(index)] = ids
            unmasked += n - len(positions)
            masked += len(positions)
        for name in names:
            hashes = sorted(h for (h, teacher) in pieces if teacher == name)
            expected = built.for_teacher(name).tokenize_with_offsets([cleaned[h] for h in hashes])
            for doc_hash, tokenized in zip(hashes, expected):
                segments = pieces[(doc_hash, name)]
                assert sorted(segments) == list(range(len(segments)))
                np.testing.assert_array_equal(
                    np.concatenate([segments[i] for i in range(len(segments))]), tokenized.ids,
                    err_msg=f"{name}: {cleaned[doc_hash][:80]}")
                checked[(language, name)] += 1
        assert unmasked > 4 * masked > 0                 # BERT masks ~15%
    # Every teacher, documents of several segments included.
    assert set(checked) == {(TEACHERS[name][0], name) for name in TEACHERS}
    assert min(checked.values()) > 250
    # A language's own tokenizer is its default teacher's (en: en_b, seen most).
    text = udhr_lines("en", 3)
    assert [t.ids.tolist() for t in built.tokenize(text, "en")] == \
        built.for_teacher("en_b").tokenize(text)


def _write_manifests(root, union):
    """Training-shard manifests of en (two teachers) and de on disk (the union's sha256)."""
    sha = StudentVocab.load(union).sha256
    folders = {}
    for language, counts in (("en", {"en_a": 30, "en_b": 50}), ("de", {"de_a": 20})):
        manifest = _manifest(language, counts)
        manifest.vocab_sha256 = sha
        folders[language] = str(pathlib.Path(root) / language)
        manifest_lib.write_manifest(manifest, folders[language])
    return folders


@pytest.mark.slow
def test_rebuilding_the_tokenizer_of_an_export(tmp_path, union, tokenizer):
    shards = _write_manifests(tmp_path / "shards", union)
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(os.path.join(union, "vocab.txt"), export / "vocab.txt")
    # Other shards (another student vocab) or an export of another vocab are refused.
    other = tmp_path / "other"
    shutil.copytree(shards["de"], other)
    data = json.loads((other / "manifest.json").read_text())
    data["vocab_sha256"] = "f" * 64
    (other / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(TokenizerError, match=rf"{other}/manifest.json: field 'vocab_sha256' is "
                                             rf"f+, the student vocab's is"):
        tokenizer_lib.build_for_export(str(export), union, {"de": str(other)})
    with pytest.raises(TokenizerError, match=r"--export_dir .*: no vocab.txt"):
        tokenizer_lib.build_for_export(str(tmp_path), union, shards)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = str(REPO_ROOT)
    command = [sys.executable, "-m", "student.tokenizer", f"--export_dir={export}",
               f"--student_vocab={union}", f"--shards=en={shards['en']}",
               f"--shards=de={shards['de']}", "--teacher_for_language=en=en_a",
               "--fallback_teacher=de_a"]
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "en: en_a (cased, 30 training copies)" in run.stdout
    assert "de: de_a (cased, 20 training copies)" in run.stdout
    rebuilt = StudentTokenizer.load(str(export))
    assert rebuilt.teacher_for("en") == "en_a" and rebuilt.teacher_for("xx") == "de_a"
    texts = udhr_lines("de", 10)
    np.testing.assert_array_equal(rebuilt.encode(texts, "de", 64)["input_word_ids"],
                                  tokenizer.encode(texts, "de", 64)["input_word_ids"])
