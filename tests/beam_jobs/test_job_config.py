"""The job config loader is strict: every error names the file, the key and the value."""

import pathlib

import pytest
import yaml

from beam_jobs import job_config
from beam_jobs.job_config import JobConfigError, load_job_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def _valid() -> dict:
    return {
        "student_vocab": "ws/vocab",
        "output_dir": "ws/scored/run1",
        "seq_length": 64,
        "max_predictions_per_seq": 10,
        "top_k": 8,
        "masked_lm_prob": 0.15,
        "whole_word_masking": True,
        "seed": 7,
        "logits_dtype": "float16",
        "compression": "GZIP",
        "copies_mode": "best",
        "inference_batch_size": 16,
        "languages": {"en": {"corpus": ["c/en/*.txt"], "num_shards": 2},
                      "de": {"corpus": "c/de.txt", "num_shards": 1}},
        "teachers": {"t_en": {"format": "hf_folder", "path": "t/en", "languages": ["en"]},
                     "t_multi": {"path": "t/multi", "languages": ["en", "de"]}},
    }


def _write(tmp_path, data) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_valid_config_loads(tmp_path):
    config = load_job_config(_write(tmp_path, _valid()))
    assert config.seq_length == 64 and config.masked_lm_prob == 0.15
    assert config.languages["de"].corpus == ("c/de.txt",)
    assert config.teachers["t_multi"].format == "auto"
    assert config.teachers_of("en") == ["t_en", "t_multi"]
    assert config.copies_mode_of("en") == "best"
    assert config.copies_mode_of("de") == "single"
    assert config.shard_spec.logits_dtype == "float16"
    assert config.document_batch_size == 64 and config.jit_compile is True
    assert config.document_format == "line" and config.short_seq_prob == 0.0
    assert config.canonical_batches is True      # the default (docs/scoring_job.md)
    # Round trip through to_dict (what the manifest records).
    again = job_config.from_dict(config.to_dict(), source="again")
    assert again.to_dict() == config.to_dict()


def test_overrides_revalidate(tmp_path):
    config = load_job_config(_write(tmp_path, _valid()))
    assert config.replace(output_dir="elsewhere").output_dir == "elsewhere"
    with pytest.raises(JobConfigError, match="copies_mode"):
        config.replace(copies_mode="some")


@pytest.mark.parametrize("mutate, key, message", [
    (lambda d: d.update(sequence_length=3), "sequence_length", "unknown key"),
    (lambda d: d.pop("seed"), "seed", "missing"),
    (lambda d: d.update(seq_length="128"), "seq_length", "must be an integer"),
    (lambda d: d.update(whole_word_masking="yes"), "whole_word_masking", "true or false"),
    (lambda d: d.update(top_k=0), "top_k", "must be > 0"),
    (lambda d: d.update(max_predictions_per_seq=63), "max_predictions_per_seq", "exceeds"),
    (lambda d: d.update(masked_lm_prob=1.5), "masked_lm_prob", r"\(0, 1\)"),
    (lambda d: d.update(logits_dtype="bfloat16"), "logits_dtype", "bfloat16"),
    (lambda d: d.update(compression="ZLIB"), "compression", "ZLIB"),
    (lambda d: d.update(copies_mode="some"), "copies_mode", "some"),
    (lambda d: d.update(document_format="sentences"), "document_format", "sentences"),
    (lambda d: d.update(short_seq_prob=1.2), "short_seq_prob", r"\[0, 1\]"),
    (lambda d: d.update(short_seq_prob="often"), "short_seq_prob", "must be a number"),
    (lambda d: d.update(canonical_batches="yes"), "canonical_batches", "true or false, got 'yes'"),
    (lambda d: d.update(canonical_batches=1), "canonical_batches", "true or false, got 1"),
    (lambda d: d["languages"]["en"].update(shards=3), "languages.en.shards", "unknown key"),
    (lambda d: d["languages"]["en"].update(num_shards=0), "languages.en.num_shards", "> 0"),
    (lambda d: d["languages"]["en"].update(corpus=[]), "languages.en.corpus", "non-empty"),
    (lambda d: d["teachers"]["t_en"].update(lower_case=True), "teachers.t_en.lower_case",
     "unknown key"),
    (lambda d: d["teachers"]["t_en"].update(format="pytorch"), "teachers.t_en.format", "pytorch"),
    (lambda d: d["teachers"]["t_en"].update(languages=["fr"]), "teachers.t_en.languages",
     "'fr' has no corpus"),
    (lambda d: d["teachers"]["t_multi"].update(languages=["en"]), "languages.de",
     "no teacher serves"),
    (lambda d: d["teachers"].update({"bad/name": {"path": "x", "languages": ["en"]}}),
     "teachers.bad/name", "must match"),
])
def test_errors_name_file_key_and_value(tmp_path, mutate, key, message):
    data = _valid()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(JobConfigError) as info:
        load_job_config(path)
    text = str(info.value)
    assert text.startswith(path + ": "), text
    assert f": {key}: " in text, text
    assert __import__("re").search(message, text), text


def test_canonical_batches_is_read_and_recorded(tmp_path):
    data = _valid()
    data["canonical_batches"] = False
    config = load_job_config(_write(tmp_path, data))
    assert config.canonical_batches is False
    assert config.to_dict()["canonical_batches"] is False     # the manifest's `config`
    assert job_config.from_dict(config.to_dict(), "again").canonical_batches is False
    assert config.replace(canonical_batches=True).canonical_batches is True


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(JobConfigError, match="does not exist"):
        load_job_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("languages: [unclosed")
    with pytest.raises(JobConfigError, match="not valid YAML"):
        load_job_config(str(bad))


def test_bundled_configs_load():
    paths = sorted((REPO / "configs" / "scoring").glob("*.yaml"))
    assert paths, "configs/scoring/ holds no job config"
    for path in paths:
        load_job_config(str(path))


def test_teacher_formats_are_the_loaders_formats():
    from teacher_scoring.teachers.loaders import FORMATS
    assert set(job_config.TEACHER_FORMATS) == set(FORMATS) | {"auto"}


def _with_gold_only() -> dict:
    data = _valid()
    data["languages"]["lb"] = {"corpus": ["c/lb.txt"], "num_shards": 1,
                               "tokenizer_teacher": "t_multi"}
    return data


def test_gold_only_language_with_a_tokenizer_teacher(tmp_path):
    config = load_job_config(_write(tmp_path, _with_gold_only()))
    assert config.is_gold_only("lb") and not config.is_gold_only("en")
    assert config.gold_only_languages == ["lb"]
    assert config.teachers_of("lb") == [] and config.tokenizers_of("lb") == ["t_multi"]
    assert config.tokenizers_of("en") == ["t_en", "t_multi"]
    assert config.copies_mode_of("lb") == "single"
    assert config.shard_spec_of("lb").has_teacher_outputs is False
    assert config.shard_spec_of("en").has_teacher_outputs is True
    # The named teacher does not list lb; the manifest's config records the field.
    assert "lb" not in config.teachers["t_multi"].languages
    assert config.to_dict()["languages"]["lb"]["tokenizer_teacher"] == "t_multi"
    assert "tokenizer_teacher" not in config.to_dict()["languages"]["en"]
    assert job_config.from_dict(config.to_dict(), "again").to_dict() == config.to_dict()


@pytest.mark.parametrize("mutate, key, message", [
    (lambda d: d["languages"]["lb"].update(tokenizer_teacher="t_fr"),
     "languages.lb.tokenizer_teacher", r"names no teacher of this job: 't_fr' \(teachers: "),
    (lambda d: d["languages"]["lb"].update(tokenizer_teacher=["t_en"]),
     "languages.lb.tokenizer_teacher", "must match"),
    (lambda d: d["languages"]["de"].update(tokenizer_teacher="t_en"),
     "languages.de.tokenizer_teacher", r"'de' is scored by \['t_multi'\].*not both"),
    (lambda d: d["languages"]["lb"].pop("tokenizer_teacher"), "languages.lb",
     "no teacher serves this language.*tokenizer_teacher"),
    (lambda d: d["languages"]["lb"].update(gold_only=True), "languages.lb.gold_only",
     "unknown key"),
])
def test_gold_only_errors_name_the_field(tmp_path, mutate, key, message):
    data = _with_gold_only()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(JobConfigError) as info:
        load_job_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {key}: "), text
    assert __import__("re").search(message, text), text
