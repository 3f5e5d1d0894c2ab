"""Manifests checked against the student run; corrupt shards found and skipped."""

import os

import pytest

from student import config as config_lib
from student import shard_sources
from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.examples import tokenization
from tests.student import shard_fixtures
from tests.student.conftest import TINY_CONFIG, make_shards


def _config(*overrides):
    return config_lib.load_config(TINY_CONFIG, list(overrides))


def _open(shards, vocab_dir, use_teacher=True, config=None):
    config = config or _config()
    vocab = shard_sources.read_student_vocab(vocab_dir, config)
    return shard_sources.open_sources(shards, config.data, vocab, use_teacher)


def test_open_sources_lists_files_and_counts(scored_shards, student_vocab):
    sources = _open(scored_shards, student_vocab)
    assert [s.language for s in sources] == ["en", "de"]
    assert [s.num_examples for s in sources] == [120, 40]
    assert all(len(s.files) == 2 and all(os.path.exists(f) for f in s.files) for s in sources)


@pytest.mark.parametrize("field,value", [
    ("seq_length", 64),
    ("max_predictions_per_seq", 5),
    ("top_k", 4),
    ("logits_dtype", "float16"),
    ("id_space", "teacher"),
    ("vocab_sha256", "f" * 64),
    ("vocab_size", 301),
])
def test_manifest_mismatch_names_file_and_field(tmp_path, student_vocab, field, value):
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 4},
                         manifest_overrides={field: value})
    with pytest.raises(manifest_lib.ManifestError) as info:
        _open({"en": folder}, student_vocab)
    message = str(info.value)
    assert os.path.join(folder, "manifest.json") in message
    assert f"'{field}'" in message and repr(value) in message


def test_schema_version_mismatch_is_refused(tmp_path, student_vocab):
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 4},
                         manifest_overrides={"schema_version": 99})
    with pytest.raises(manifest_lib.ManifestError, match=r"manifest\.json: schema_version 99"):
        _open({"en": folder}, student_vocab)


def test_other_vocab_is_refused(tmp_path, scored_shards):
    other = shard_fixtures.write_vocab(str(tmp_path / "other"), 300)
    with open(os.path.join(other, "vocab.txt"), "a", encoding="utf-8") as f:
        f.write("extra\n")
    config = _config("model.encoder.bert_v2.vocab_size=301")
    with pytest.raises(manifest_lib.ManifestError, match="'vocab_sha256'"):
        _open(scored_shards, other, config=config)


def test_kd_refuses_gold_only_shards_but_plain_mlm_accepts_them(tmp_path, student_vocab):
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 4}, has_teacher_outputs=False,
                         id_space="teacher")
    with pytest.raises(manifest_lib.ManifestError,
                       match=r"manifest\.json: field 'has_teacher_outputs' is False.*lambda > 0"):
        _open({"en": folder}, student_vocab, use_teacher=True)
    sources = _open({"en": folder}, student_vocab, use_teacher=False,
                    config=_config("loss.lambda_schedule=constant,loss.lambda_start=0.0"))
    assert sources[0].manifest.id_space == "teacher"


def test_missing_folder_language_and_shard(tmp_path, student_vocab, scored_shards):
    with pytest.raises(shard_sources.ShardError, match=r"--shards fr=.*nowhere: no such folder"):
        _open({"fr": str(tmp_path / "nowhere")}, student_vocab)
    with pytest.raises(manifest_lib.ManifestError, match="no language 'fr'"):
        _open({"fr": scored_shards["en"]}, student_vocab)
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 4})
    os.remove(os.path.join(folder, "en-00001-of-00002.tfrecord"))
    with pytest.raises(manifest_lib.ManifestError, match="en-00001-of-00002.tfrecord"):
        _open({"en": folder}, student_vocab)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(manifest_lib.ManifestError, match="no manifest here"):
        _open({"en": str(tmp_path / "empty")}, student_vocab)


def test_parse_shards_flag():
    assert shard_sources.parse_shards_flag(["en=/a", "de = /b"]) == {"en": "/a", "de": "/b"}
    for bad in (["en"], ["=/a"], ["en="]):
        with pytest.raises(shard_sources.ShardError, match="LANGUAGE=FOLDER"):
            shard_sources.parse_shards_flag(bad)
    with pytest.raises(shard_sources.ShardError, match="given twice"):
        shard_sources.parse_shards_flag(["en=/a", "en=/b"])
    with pytest.raises(shard_sources.ShardError, match="no shard folders"):
        shard_sources.parse_shards_flag([])


def test_student_vocab_checks(tmp_path, student_vocab):
    with pytest.raises(config_lib.ConfigError, match=r"vocab\.txt has 300 tokens but config field "
                                                      r"'model\.encoder\.bert_v2\.vocab_size' "
                                                      r"is 299"):
        shard_sources.read_student_vocab(student_vocab,
                                         _config("model.encoder.bert_v2.vocab_size=299"))
    with pytest.raises(shard_sources.ShardError, match="no vocab file"):
        shard_sources.read_student_vocab(str(tmp_path))
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(tokenization.VocabError, match="missing"):
        shard_sources.read_student_vocab(str(tmp_path))
    vocab = shard_sources.read_student_vocab(os.path.join(student_vocab, "vocab.txt"))
    assert vocab.size == 300 and len(vocab.sha256) == 64


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_scan_finds_and_skip_policy_drops_bad_shards(tmp_path, student_vocab, damage):
    en = make_shards(tmp_path / "en", student_vocab, {"en": 20}, shards_per_language=3)
    de = make_shards(tmp_path / "de", student_vocab, {"de": 10})
    bad = os.path.join(en, "en-00001-of-00003.tfrecord")
    if damage == "truncate":
        shard_fixtures.truncate_file(bad)
    else:
        shard_fixtures.corrupt_file(bad)
    config = _config()
    sources = _open({"en": en, "de": de}, student_vocab, config=config)
    spec = shard_sources.reading_spec(config.data, use_teacher=True)
    scans = shard_sources.scan_shards(sources, spec, 300)
    assert [s.path for s in scans if not s.ok] == [bad]
    error = next(s.error for s in scans if not s.ok)
    assert ("truncated" in error) if damage == "truncate" else ("corrupted" in error), error
    kept, skipped = shard_sources.drop_corrupt_shards(sources, spec, 300)
    assert [s.path for s in skipped] == [bad]
    assert bad not in kept[0].files and len(kept[0].files) == 2 and len(kept[1].files) == 2


def test_scan_finds_out_of_range_ids_and_empty_shards(tmp_path, student_vocab):
    big = shard_fixtures.write_vocab(str(tmp_path / "big"), 1000)
    folder = make_shards(tmp_path / "en", big, {"en": 6})
    config = _config()
    manifest = manifest_lib.read_manifest(folder)
    source = shard_sources.LanguageSource("en", folder, manifest,
                                          tuple(manifest_lib.shard_paths(manifest, folder, "en")))
    spec = shard_sources.reading_spec(config.data, use_teacher=True)
    scans = shard_sources.scan_shards([source], spec, vocab_size=300)
    assert all("out of range" in s.error for s in scans)
    open(source.files[0], "wb").close()
    with pytest.raises(shard_sources.ShardError, match="every shard of 'en' is corrupt"):
        shard_sources.drop_corrupt_shards([source], spec, 300)
    assert shard_sources.scan_shards([source], spec, 1000)[0].error == "no records"


GOLD_ONLY_FR = "data.gold_only_languages=[fr]"


def test_declared_gold_only_folder_trains_beside_distilled_ones(tmp_path, student_vocab,
                                                                 scored_shards):
    fr = make_shards(tmp_path / "fr", student_vocab, {"fr": 8}, has_teacher_outputs=False,
                     top_k=4)        # k of a gold-only folder is not checked: it has no top-k
    shards = {"en": scored_shards["en"], "fr": fr}
    # Not declared: refused under lambda > 0, with the way out in the message.
    with pytest.raises(manifest_lib.ManifestError,
                       match=r"fr/manifest\.json: field 'has_teacher_outputs' is False.*"
                             r"declare 'fr' in data\.gold_only_languages"):
        _open(shards, student_vocab)
    sources = _open(shards, student_vocab, config=_config(GOLD_ONLY_FR))
    assert [(s.language, s.gold_only) for s in sources] == [("en", False), ("fr", True)]
    spec = shard_sources.reading_spec(_config().data, use_teacher=True)
    assert shard_sources.source_spec(sources[1], spec).has_teacher_outputs is False
    assert shard_sources.source_spec(sources[0], spec) == spec
    scans = shard_sources.scan_shards(sources, spec, 300)
    assert all(scan.ok for scan in scans), scans
    # lambda = 0: nothing is distilled, the declaration only checks the folder's kind.
    plain = _open(shards, student_vocab, use_teacher=False, config=_config(
        GOLD_ONLY_FR, "loss.lambda_schedule=constant,loss.lambda_start=0.0"))
    assert not any(s.gold_only for s in plain)


def test_gold_only_declaration_is_checked(tmp_path, student_vocab, scored_shards):
    fr = make_shards(tmp_path / "fr", student_vocab, {"fr": 8}, has_teacher_outputs=False)
    # A declared language whose folder has teacher outputs.
    with pytest.raises(manifest_lib.ManifestError,
                       match=r"manifest\.json: field 'has_teacher_outputs' is True but config "
                             r"field 'data\.gold_only_languages' declares 'en' gold-only"):
        _open({"en": scored_shards["en"], "fr": fr}, student_vocab,
              config=_config("data.gold_only_languages=[fr,en]"))
    # A declared language without a folder.
    with pytest.raises(shard_sources.ShardError,
                       match=r"'data\.gold_only_languages' names 'fr', which has no --shards"):
        _open({"en": scored_shards["en"]}, student_vocab, config=_config(GOLD_ONLY_FR))
    # Only gold-only languages under lambda > 0: nothing to distil.
    with pytest.raises(shard_sources.ShardError, match="every language is gold-only"):
        _open({"fr": fr}, student_vocab, config=_config(GOLD_ONLY_FR))
    # A gold-only folder must still be in the student's id space and vocabulary.
    teacher_space = make_shards(tmp_path / "fr_teacher", student_vocab, {"fr": 4},
                                has_teacher_outputs=False, id_space="teacher")
    with pytest.raises(manifest_lib.ManifestError, match="'id_space' is 'teacher'"):
        _open({"en": scored_shards["en"], "fr": teacher_space}, student_vocab,
              config=_config(GOLD_ONLY_FR))


def test_scan_finds_nan_teacher_logits_and_skip_leaves_the_shard_out(tmp_path, student_vocab):
    en = make_shards(tmp_path / "en", student_vocab, {"en": 12}, shards_per_language=3)
    bad = os.path.join(en, "en-00002-of-00003.tfrecord")
    assert shard_fixtures.set_teacher_logits(bad, float("nan"), records={1}) == 1
    config = _config()
    sources = _open({"en": en}, student_vocab, config=config)
    spec = shard_sources.reading_spec(config.data, use_teacher=True)
    scans = shard_sources.scan_shards(sources, spec, 300)
    assert [s.path for s in scans if not s.ok] == [bad]
    error = next(s.error for s in scans if not s.ok)
    assert error == "NaN or infinite values: 48 in teacher_topk_logits", error  # P * k = 6 * 8
    kept, skipped = shard_sources.drop_corrupt_shards(sources, spec, 300)
    assert [s.path for s in skipped] == [bad] and bad not in kept[0].files


def test_an_all_manifest_without_distinct_examples_is_refused(tmp_path, student_vocab):
    """A manifest of copies mode `all` written before `unique_examples` existed counts every
    teacher's copy: sampling cannot use it, and says why. `single` / `best` ones (one record
    an example) still work with their `examples`."""
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 6})
    manifest = manifest_lib.read_manifest(folder)
    assert manifest.languages["en"].unique_examples is None
    assert _open({"en": folder}, student_vocab)[0].num_unique_examples == 6
    manifest.copies_mode = "all"
    manifest_lib.write_manifest(manifest, folder)
    with pytest.raises(manifest_lib.ManifestError, match=r"manifest\.json.*unique_examples"):
        _open({"en": folder}, student_vocab)
