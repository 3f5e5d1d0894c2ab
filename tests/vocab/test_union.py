"""Tests for vocab.union.StudentVocab on real vocabularies.

Teachers: WordPiece vocabularies trained on the bundled demo text (en uncased, de cased, zh cased)
and the real bert-base-uncased vocab.txt (30522 tokens, 994 [unusedN]); see conftest.py.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tensorflow as tf

from teacher_scoring.records.manifest import sha256_of_tokens
from teacher_scoring.examples.tokenization import SPECIAL_TOKENS, read_vocab
from tests.conftest import trained_vocab
from tests.vocab.conftest import BERT_NAME
from vocab import union
from vocab.union import StudentVocab, StudentVocabError

UNUSED = re.compile(r"^\[unused\d+\]$")


def kept(tokens):
    return [t for t in tokens if not UNUSED.match(t)]


def expected_union_order(teachers) -> list[str]:
    """The documented order, written out independently of the implementation."""
    out = list(SPECIAL_TOKENS)
    seen = set(out)
    for tokens in teachers.values():
        for token in tokens:
            if UNUSED.match(token) or token in seen:
                continue
            seen.add(token)
            out.append(token)
    return out


@pytest.fixture(scope="module")
def student(teachers) -> StudentVocab:
    return StudentVocab.build(teachers)


# ------------------------------------------------------------------------------ the union


def test_size_is_exactly_the_set_union(teachers, student):
    all_kept = set()
    for tokens in teachers.values():
        all_kept |= set(kept(tokens))
    assert set(SPECIAL_TOKENS) <= all_kept  # every teacher here has all five specials
    assert student.size == len(all_kept) == len(student.tokens)
    assert set(student.tokens) == all_kept
    assert len(set(student.tokens)) == student.size  # each token once
    # The real bert-base-uncased vocab is in, with its placeholders dropped.
    assert sum(1 for t in teachers[BERT_NAME] if UNUSED.match(t)) == 994
    assert not any(UNUSED.match(t) for t in student.tokens)


def test_special_ids_are_fixed(teachers, student):
    assert student.tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert union.SPECIAL_IDS == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    for name, tokens in teachers.items():
        for special, student_id in union.SPECIAL_IDS.items():
            assert student.maps[name][tokens.index(special)] == student_id, (name, special)
    # bert-base-uncased keeps its specials at 0 and 100-103; they land on 0-4 regardless.
    bert = teachers[BERT_NAME]
    assert (bert.index("[UNK]"), bert.index("[CLS]"), bert.index("[MASK]")) == (100, 101, 103)
    assert student.map_ids(BERT_NAME, np.array([0, 100, 101, 102, 103])).tolist() == [0, 1, 2, 3, 4]


def test_order_is_deterministic_and_follows_the_documented_rule(teachers, student):
    again = StudentVocab.build(dict(teachers))
    assert again.tokens == student.tokens
    assert again.sha256 == student.sha256
    for name in teachers:
        np.testing.assert_array_equal(again.maps[name], student.maps[name])
    assert student.tokens == expected_union_order(teachers)
    assert student.teacher_names == list(teachers)
    # Teachers in another order: the same set of tokens, another order.
    reordered = dict(reversed(list(teachers.items())))
    other = StudentVocab.build(reordered)
    assert other.tokens == expected_union_order(reordered)
    assert set(other.tokens) == set(student.tokens) and other.tokens != student.tokens
    assert other.sha256 != student.sha256


def test_each_teacher_adds_a_contiguous_block_in_its_own_id_order(teachers, student):
    next_id = 5
    for name, tokens in teachers.items():
        mapping = student.maps[name]
        new_ids = [int(s) for s in mapping if s >= next_id]
        assert new_ids == list(range(next_id, next_id + len(new_ids))), name
        next_id += len(new_ids)
    assert next_id == student.size


def test_maps_are_bijections_that_reproduce_every_teacher_token(teachers, student):
    tokens = student.tokens
    for name, teacher_tokens in teachers.items():
        mapping = student.maps[name]
        assert mapping.dtype == np.int32 and mapping.shape == (len(teacher_tokens),)
        assert not mapping.flags.writeable
        is_unused = np.array([bool(UNUSED.match(t)) for t in teacher_tokens])
        assert np.all(mapping[is_unused] == -1)
        assert np.all(mapping[~is_unused] >= 0)
        mapped = mapping[~is_unused]
        assert len(set(mapped.tolist())) == mapped.shape[0], f"{name}: map not injective"
        back = [tokens[s] for s in mapped.tolist()]
        assert back == kept(teacher_tokens), f"{name}: mapping back changed a token"
        # Onto: the image is exactly the student ids of the teacher's tokens.
        by_token = {t: i for i, t in enumerate(tokens)}
        assert set(mapped.tolist()) == {by_token[t] for t in kept(teacher_tokens)}
        assert student.teachers[name].unused_dropped == int(is_unused.sum())
    assert student.teachers[BERT_NAME].unused_dropped == 994


def test_inverse_map(teachers, student):
    for name, teacher_tokens in teachers.items():
        inverse = student.inverse_map(name)
        assert inverse.shape == (student.size,) and inverse.dtype == np.int32
        present = np.nonzero(inverse >= 0)[0]
        assert len(present) == len(kept(teacher_tokens))
        for student_id in present[:: max(1, len(present) // 200)]:
            assert teacher_tokens[inverse[student_id]] == student.tokens[student_id]
        np.testing.assert_array_equal(student.maps[name][inverse[present]], present)


def test_bracketed_tokens_are_ordinary_and_pad_is_optional():
    base = trained_vocab("fi", 2000, False)
    custom = [t for t in base if t != "[PAD]"]
    custom[10:10] = ["[BOS]", "[unused0]", "[unused17]", "[UNUSED3]", "[unused]"]
    student = StudentVocab.build({"fi": custom})
    assert student.tokens[:5] == list(SPECIAL_TOKENS)  # [PAD] is in the student anyway
    assert student.size == len(kept(custom)) + 1
    mapping = student.maps["fi"]
    assert mapping[custom.index("[unused0]")] == -1 and mapping[custom.index("[unused17]")] == -1
    for token in ("[BOS]", "[UNUSED3]", "[unused]"):
        assert student.tokens[mapping[custom.index(token)]] == token
        assert mapping[custom.index(token)] >= 5
    assert student.teachers["fi"].unused_dropped == 2
    assert student.report["teachers"][0]["bracketed_kept"] == 3
    assert student.report["teachers"][0]["specials"] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert union.is_unused_token("[unused993]") and not union.is_unused_token("[unused]")


# --------------------------------------------------------------------------- mapping ids


def test_map_ids_is_vectorised_and_matches_the_map(teachers, student):
    rng = np.random.default_rng(0)
    for name, teacher_tokens in teachers.items():
        ids = rng.integers(0, len(teacher_tokens), size=(3, 4, 8))
        got = student.map_ids(name, ids)
        assert got.shape == (3, 4, 8) and got.dtype == np.int32
        want = np.vectorize(lambda i, n=name: student.maps[n][i])(ids)
        np.testing.assert_array_equal(got, want)
    # Real text: a teacher's tokenization mapped to student ids spells the same tokens.
    from teacher_scoring.examples.tokenization import TeacherTokenizer
    tokenizer = TeacherTokenizer(teachers["de"], lower_case=False)
    teacher_ids = np.array(tokenizer.tokenize(["Alle Menschen sind frei und gleich."])[0])
    student_ids = student.map_ids("de", teacher_ids)
    assert [student.tokens[i] for i in student_ids] == [teachers["de"][i] for i in teacher_ids]


def test_map_ids_refuses_out_of_range_ids_naming_teacher_and_id(student):
    size = student.teachers["zh"].size
    with pytest.raises(StudentVocabError, match=rf"teacher 'zh': id {size} at index \(1, 0\)"):
        student.map_ids("zh", np.array([[0, 1], [size, 2]]))
    with pytest.raises(StudentVocabError, match=r"teacher 'de': id -1 at index \(2,\)"):
        student.map_ids("de", np.array([5, 6, -1]))
    with pytest.raises(StudentVocabError, match="ids must be integers"):
        student.map_ids("de", np.array([1.0]))
    with pytest.raises(StudentVocabError, match=r"unknown teacher 'xx'.*'en', 'de'"):
        student.map_ids("xx", np.array([1]))
    got = student.map_ids("de", np.array([[-1, 4], [2, -1]]), passthrough_negative=True)
    assert got.tolist() == [[-1, 4], [2, -1]]
    bert_unused = 1  # [unused0]
    assert student.map_ids(BERT_NAME, np.array([bert_unused])).tolist() == [-1]


def test_tf_accessors_match_numpy(teachers, student):
    fresh = StudentVocab.build({"zh": teachers["zh"]})

    @tf.function
    def first_use_in_graph(x):
        return fresh.map_ids_tf("zh", x)

    zh_ids = np.arange(0, 2000, 7)
    np.testing.assert_array_equal(first_use_in_graph(tf.constant(zh_ids)).numpy(),
                                  fresh.map_ids("zh", zh_ids))
    np.testing.assert_array_equal(fresh.map_tensor("zh").numpy(), fresh.maps["zh"])  # eager

    table = student.map_tensor(BERT_NAME)
    assert table.dtype == tf.int32 and table.shape == (30522,)
    ids = np.random.default_rng(1).integers(0, 30522, size=(2, 16)).astype(np.int64)
    np.testing.assert_array_equal(tf.gather(table, ids).numpy(), student.map_ids(BERT_NAME, ids))

    @tf.function
    def mapped(x):
        return student.map_ids_tf(BERT_NAME, x, passthrough_negative=True)

    padded = ids.copy()
    padded[:, -3:] = -1
    np.testing.assert_array_equal(mapped(tf.constant(padded)).numpy(),
                                  student.map_ids(BERT_NAME, padded, passthrough_negative=True))
    with pytest.raises(tf.errors.InvalidArgumentError, match="teacher 'en'"):
        student.map_ids_tf("en", tf.constant([1, 2000]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="teacher 'en': negative id"):
        student.map_ids_tf("en", tf.constant([-1]))


# ----------------------------------------------------------------------------- the report


def test_report_counts_match_sets_computed_independently(teachers, student):
    report = student.report
    assert report["student_size"] == student.size
    assert report["student_vocab_sha256"] == student.sha256 == sha256_of_tokens(student.tokens)
    content = {name: set(kept(tokens)) - set(SPECIAL_TOKENS) for name, tokens in teachers.items()}
    names = list(teachers)
    earlier = set()
    for entry, name in zip(report["teachers"], names):
        assert entry["name"] == name
        assert entry["size"] == len(teachers[name])
        assert entry["content_tokens"] == len(content[name])
        assert entry["added"] == len(content[name] - earlier)
        others = set().union(*(content[o] for o in names if o != name))
        assert entry["unique"] == len(content[name] - others)
        earlier |= content[name]
    assert 5 + sum(t["added"] for t in report["teachers"]) == student.size
    assert len(report["pairwise"]) == 6
    for pair in report["pairwise"]:
        a, b = content[pair["a"]], content[pair["b"]]
        assert pair["shared"] == len(a & b)
        assert pair["jaccard"] == pytest.approx(len(a & b) / len(a | b), abs=1e-6)
    assert report["shared_by_all"] == len(set.intersection(*content.values()))
    markdown = union.report_markdown(report)
    for name in names:
        assert f"| {name} |" in markdown


# ------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", ["", "a/b", "../up", "en de", "ü", "x:y", 3])
def test_unsafe_teacher_names_are_refused(name, teachers):
    with pytest.raises(StudentVocabError, match="is not allowed"):
        StudentVocab.build({name: teachers["en"]})


def test_duplicate_teacher_names_are_refused(teachers):
    with pytest.raises(StudentVocabError, match="'en' is given twice"):
        StudentVocab.build([("en", teachers["en"]), ("en", teachers["de"])])
    with pytest.raises(StudentVocabError, match="no teachers"):
        StudentVocab.build({})


def test_bad_teacher_vocabularies_are_refused_naming_the_teacher(teachers):
    en = teachers["en"]
    with pytest.raises(StudentVocabError, match=r"teacher 'en': special token\(s\) \['\[MASK\]'\]"):
        StudentVocab.build({"de": teachers["de"], "en": [t for t in en if t != "[MASK]"]})
    with pytest.raises(StudentVocabError, match="teacher 'en': token 'the' appears twice"):
        StudentVocab.build({"en": en + ["the"]})
    with pytest.raises(StudentVocabError, match="teacher 'en': token at id 2000.*line break"):
        StudentVocab.build({"en": en + ["a\nb"]})
    with pytest.raises(StudentVocabError, match="teacher 'en': expected a list of tokens"):
        StudentVocab.build({"en": "[UNK]"})


def test_check_teacher_vocab(teachers, student, tmp_path):
    student.check_teacher_vocab("de", teachers["de"])
    with pytest.raises(StudentVocabError, match="teacher 'de': vocabulary sha256"):
        student.check_teacher_vocab("de", teachers["de"][:-1])
    # A loaded folder cannot know a permutation of shared tokens in a map (the map defines the
    # teacher's tokens); checking against the teacher's own vocab catches it.
    swapped = list(teachers["zh"])
    swapped[5], swapped[6] = swapped[6], swapped[5]
    with pytest.raises(StudentVocabError, match="teacher 'zh': vocabulary sha256"):
        student.check_teacher_vocab("zh", swapped)


# ------------------------------------------------------------------------------ save/load


def test_save_load_round_trip(teacher_files, tmp_path):
    student = StudentVocab.from_vocab_files(teacher_files)
    out = tmp_path / "vocab"
    student.save(str(out))
    assert sorted(p.name for p in out.iterdir()) == [
        "maps", "report.json", "report.md", "teachers.json", "vocab.txt"]
    assert sorted(p.name for p in (out / "maps").iterdir()) == [
        f"{name}.npy" for name in sorted(teacher_files)]
    assert read_vocab(str(out / "vocab.txt")) == student.tokens
    np.testing.assert_array_equal(np.load(out / "maps" / "bert_uncased.npy"),
                                  student.maps[BERT_NAME])

    loaded = StudentVocab.load(str(out))
    assert loaded.tokens == student.tokens
    assert loaded.sha256 == student.sha256 == sha256_of_tokens(student.tokens)
    assert loaded.teacher_names == list(teacher_files)
    for name in teacher_files:
        np.testing.assert_array_equal(loaded.maps[name], student.maps[name])
    assert loaded.teachers == student.teachers
    assert loaded.report == student.report

    teachers_json = json.loads((out / "teachers.json").read_text())
    assert teachers_json["student_vocab_sha256"] == student.sha256
    bert = teachers_json["teachers"][3]
    assert bert["name"] == BERT_NAME and bert["path"] == teacher_files[BERT_NAME]
    assert bert["size"] == 30522 and bert["unused_dropped"] == 994
    assert bert["vocab_sha256"] == sha256_of_tokens(read_vocab(teacher_files[BERT_NAME]))
    assert json.loads((out / "report.json").read_text()) == student.report
    assert "bert_uncased" in (out / "report.md").read_text()


@pytest.fixture()
def saved(teachers, tmp_path):
    out = tmp_path / "vocab"
    StudentVocab.build({n: teachers[n] for n in ("en", "de", "zh")}).save(str(out))
    return out


def test_load_refuses_a_corrupted_map_naming_the_file(saved):
    path = saved / "maps" / "de.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(StudentVocabError, match=r"maps/de\.npy: not a valid \.npy map"):
        StudentVocab.load(str(saved))


def test_load_refuses_a_missing_map_naming_the_file(saved):
    (saved / "maps" / "zh.npy").unlink()
    with pytest.raises(StudentVocabError, match=r"maps/zh\.npy: map file missing"):
        StudentVocab.load(str(saved))


def test_load_refuses_an_edited_map_naming_the_file(saved):
    path = saved / "maps" / "en.npy"
    mapping = np.load(path)
    mapping[7], mapping[8] = mapping[8], mapping[7]  # still a valid, injective map
    np.save(path, mapping)
    with pytest.raises(StudentVocabError, match=r"maps/en\.npy: sha256 .* differs"):
        StudentVocab.load(str(saved))
    np.save(path, mapping[:-1])
    with pytest.raises(StudentVocabError, match=r"maps/en\.npy: has 1999 entries but teacher "
                                                r"'en' has 2000"):
        StudentVocab.load(str(saved))
    np.save(path, mapping.astype(np.int64))
    with pytest.raises(StudentVocabError, match=r"maps/en\.npy: expected a 1-D int32 array"):
        StudentVocab.load(str(saved))


def test_load_refuses_inconsistent_maps_even_with_matching_hashes(saved):
    # A map edited consistently with teachers.json (hash updated) still breaks the layout rule:
    # the student ids zh adds must follow zh's own id order.
    path = saved / "maps" / "zh.npy"
    mapping = np.load(path)
    first_added = int(json.loads((saved / "report.json").read_text())
                      ["teachers"][2]["added_student_ids"][0])
    i, j = int(np.nonzero(mapping == first_added)[0][0]), int(
        np.nonzero(mapping == first_added + 1)[0][0])
    mapping[i], mapping[j] = mapping[j], mapping[i]
    np.save(path, mapping)
    teachers_json = json.loads((saved / "teachers.json").read_text())
    teachers_json["teachers"][2]["map_sha256"] = union.array_sha256(mapping)
    (saved / "teachers.json").write_text(json.dumps(teachers_json))
    with pytest.raises(StudentVocabError, match=r"vocab\.txt: does not follow the union order "
                                                r"of the maps .*first difference at student id"):
        StudentVocab.load(str(saved))


def test_load_refuses_an_edited_vocab_naming_the_file(saved):
    path = saved / "vocab.txt"
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[10], lines[11] = lines[11], lines[10]
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(StudentVocabError, match=r"vocab\.txt: sha256 .* does not match .*"
                                                r"teachers\.json"):
        StudentVocab.load(str(saved))


def test_load_refuses_bad_metadata_naming_the_file(saved):
    report = json.loads((saved / "report.json").read_text())
    report["teachers"][1]["added"] += 1
    (saved / "report.json").write_text(json.dumps(report))
    with pytest.raises(StudentVocabError, match=r"report\.json: field 'teachers' does not match"):
        StudentVocab.load(str(saved))

    teachers_json = json.loads((saved / "teachers.json").read_text())
    teachers_json["teachers"][0]["sizee"] = 1
    (saved / "teachers.json").write_text(json.dumps(teachers_json))
    with pytest.raises(StudentVocabError, match=r"teachers\.json: teachers\[0\]: unknown field"):
        StudentVocab.load(str(saved))
    (saved / "teachers.json").unlink()
    with pytest.raises(StudentVocabError, match=r"teachers\.json: missing"):
        StudentVocab.load(str(saved))


def test_load_refuses_a_stray_map(saved):
    np.save(saved / "maps" / "fr.npy", np.zeros([3], np.int32))
    with pytest.raises(StudentVocabError, match=r"maps/fr\.npy: map of a teacher that .*"
                                                r"does not list"):
        StudentVocab.load(str(saved))


def test_save_refuses_a_non_empty_folder_unless_overwrite(saved, teachers):
    other = StudentVocab.build({"en": teachers["en"], "de": teachers["de"]})
    with pytest.raises(StudentVocabError, match="output folder is not empty"):
        other.save(str(saved))
    (saved / "keep.txt").write_text("mine")
    other.save(str(saved), overwrite=True)
    assert not (saved / "maps" / "zh.npy").exists()  # the old union's stale map is gone
    assert (saved / "keep.txt").read_text() == "mine"
    loaded = StudentVocab.load(str(saved))
    assert loaded.teacher_names == ["en", "de"] and loaded.tokens == other.tokens


def test_check_teacher_vocab_catches_a_permuted_map_that_loads(saved, teachers):
    # Swapping two shared tokens in a later teacher's map (hash updated) is self-consistent, so
    # load accepts it; checking against the teacher's own vocab refuses it.
    path = saved / "maps" / "zh.npy"
    mapping = np.load(path)
    assert mapping[5] < 5 + 1995 and mapping[6] < 5 + 1995  # '!' and '"', shared with en
    mapping[5], mapping[6] = mapping[6], mapping[5]
    np.save(path, mapping)
    teachers_json = json.loads((saved / "teachers.json").read_text())
    teachers_json["teachers"][2]["map_sha256"] = union.array_sha256(mapping)
    (saved / "teachers.json").write_text(json.dumps(teachers_json))
    loaded = StudentVocab.load(str(saved))
    loaded.check_teacher_vocab("en", teachers["en"])
    with pytest.raises(StudentVocabError, match=r"teacher 'zh': maps/zh\.npy sends id 5"):
        loaded.check_teacher_vocab("zh", teachers["zh"])
