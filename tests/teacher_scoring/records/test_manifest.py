"""Tests for teacher_scoring.records.manifest: strict loading, validation, mismatch messages."""

import json

import pytest

from teacher_scoring.records import manifest as mf
from teacher_scoring.records import record_schema as rs
def make_manifest(**overrides) -> mf.Manifest:
    fields = dict(
        seq_length=128, max_predictions_per_seq=20, top_k=8, logits_dtype="float32",
        has_teacher_outputs=True, id_space="student", vocab_sha256="ab" * 32, vocab_size=1000,
        teachers={"bert_en": mf.TeacherEntry(vocab_sha256="cd" * 32, vocab_size=600,
                                             languages=["en"], lower_case=True,
                                             format="hf", path="/t/en")},
        languages={"en": mf.LanguageEntry(examples=10, masked_tokens=150,
                                          shards=["en-00000-of-00001.tfrecord"],
                                          teachers={"bert_en": mf.TeacherCounts(10, 150)})},
        seed=12345, copies_mode="all", dropped={"empty": 2})
    fields.update(overrides)
    return mf.Manifest(**fields)


def test_write_read_round_trip(tmp_path):
    manifest = make_manifest()
    path = mf.write_manifest(manifest, str(tmp_path))
    assert path.endswith("manifest.json")
    back = mf.read_manifest(str(tmp_path))
    assert back == manifest
    assert back.shard_spec == rs.ShardSpec(128, 20, 8, "float32", True)
    assert back.languages["en"].teachers["bert_en"].masked_tokens == 150


def test_unknown_field_names_file_and_field(tmp_path):
    data = json.loads(make_manifest().to_json())
    data["languages"]["en"]["exampels"] = 3
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(mf.ManifestError, match=r"manifest.json.*languages.*en.*exampels"):
        mf.read_manifest(str(path))


def test_missing_and_mistyped_fields(tmp_path):
    data = json.loads(make_manifest().to_json())
    del data["top_k"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(mf.ManifestError, match="'top_k' is missing"):
        mf.read_manifest(str(tmp_path))
    data = json.loads(make_manifest().to_json())
    data["seq_length"] = "128"
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(mf.ManifestError, match="'seq_length' must be int"):
        mf.read_manifest(str(tmp_path))


def test_invalid_json_and_missing_manifest(tmp_path):
    with pytest.raises(mf.ManifestError, match="no manifest here"):
        mf.read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(mf.ManifestError, match="not valid JSON"):
        mf.read_manifest(str(tmp_path))


@pytest.mark.parametrize("overrides,message", [
    (dict(schema_version=99), "schema_version 99"),
    (dict(id_space="teacher_en"), "id_space"),
    (dict(copies_mode="some"), "copies_mode"),
    (dict(logits_dtype="int8"), "logits_dtype"),
    (dict(compression="ZLIB"), "compression"),
])
def test_validation(overrides, message):
    with pytest.raises(mf.ManifestError, match=message):
        make_manifest(**overrides).validate("x/manifest.json")


def test_language_naming_an_unknown_teacher_is_refused():
    manifest = make_manifest()
    manifest.languages["en"].teachers["mbert"] = mf.TeacherCounts(1, 1)
    with pytest.raises(mf.ManifestError, match="mbert"):
        manifest.validate()


def test_check_matches_names_field_and_values():
    manifest = make_manifest()
    mf.check_matches(manifest, "shards/en/manifest.json", seq_length=128, top_k=8)
    with pytest.raises(mf.ManifestError,
                       match=r"shards/en/manifest.json: field 'seq_length' is 128 but the "
                             r"reader expects 512"):
        mf.check_matches(manifest, "shards/en/manifest.json", seq_length=512)


def test_shard_paths_checks_files_exist(tmp_path):
    manifest = make_manifest()
    with pytest.raises(mf.ManifestError, match="missing"):
        mf.shard_paths(manifest, str(tmp_path), "en")
    (tmp_path / "en-00000-of-00001.tfrecord").write_bytes(b"")
    assert mf.shard_paths(manifest, str(tmp_path), "en") == [
        str(tmp_path / "en-00000-of-00001.tfrecord")]
    with pytest.raises(mf.ManifestError, match="no language 'de'"):
        mf.shard_paths(manifest, str(tmp_path), "de")


def test_vocab_hashes_agree(tmp_path):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "héllo", "##s"]
    path = tmp_path / "vocab.txt"
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    assert mf.sha256_of_file(str(path)) == mf.sha256_of_tokens(tokens)


def counted_entry(**overrides) -> mf.LanguageEntry:
    """A language entry with the counts every writer now records (20 copies of 10 examples,
    S = 128)."""
    fields = dict(examples=20, masked_tokens=300, shards=["en-00000-of-00001.tfrecord"],
                  teachers={"bert_en": mf.TeacherCounts(20, 300, 2000)}, unique_examples=10,
                  real_tokens=2000, token_utilization=mf.token_utilization(2000, 20, 128))
    fields.update(overrides)
    return mf.LanguageEntry(**fields)


def test_utilization_and_distinct_examples_round_trip(tmp_path):
    manifest = make_manifest(languages={"en": counted_entry()})
    assert manifest.languages["en"].token_utilization == 0.78125     # 2000 / (20 * 128)
    mf.write_manifest(manifest, str(tmp_path))
    back = mf.read_manifest(str(tmp_path))
    assert back == manifest
    assert back.sampling_count("en") == 10
    assert mf.token_utilization(0, 0, 128) == 0.0


def test_manifests_without_the_new_counts_still_load(tmp_path):
    """Written before unique_examples / real_tokens / token_utilization: they read as None;
    sampling uses `examples` unless the copies mode is `all` (copies, not examples)."""
    data = json.loads(make_manifest(copies_mode="best").to_json())
    for field in ("unique_examples", "real_tokens", "token_utilization"):
        del data["languages"]["en"][field]
    del data["languages"]["en"]["teachers"]["bert_en"]["real_tokens"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    back = mf.read_manifest(str(tmp_path))
    assert back.languages["en"].unique_examples is None
    assert back.sampling_count("en") == 10
    back.copies_mode = "all"
    with pytest.raises(mf.ManifestError, match="unique_examples"):
        back.sampling_count("en", "x/manifest.json")


@pytest.mark.parametrize("overrides,message", [
    (dict(unique_examples=21), "unique_examples 21"),
    (dict(unique_examples=0), "unique_examples 0"),
    (dict(token_utilization=0.9), "token_utilization 0.9 is not"),
    (dict(real_tokens=20 * 128 + 1, token_utilization=1.0), "real_tokens 2561"),
    (dict(token_utilization=None), "go together"),
])
def test_inconsistent_counts_are_refused(overrides, message):
    manifest = make_manifest(languages={"en": counted_entry(**overrides)})
    with pytest.raises(mf.ManifestError, match=message):
        manifest.validate("x/manifest.json")


def test_token_utilization_must_be_a_number(tmp_path):
    data = json.loads(make_manifest(languages={"en": counted_entry()}).to_json())
    data["languages"]["en"]["token_utilization"] = "high"
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(mf.ManifestError, match="token_utilization' must be float"):
        mf.read_manifest(str(tmp_path))
