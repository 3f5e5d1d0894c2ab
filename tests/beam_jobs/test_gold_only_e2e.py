"""The scoring job with a gold-only language, after a killed run, and with a teacher whose
logits are NaN or beyond float16 (DirectRunner, real tiny teachers of tests/beam_jobs/conftest).

Gold-only: English is scored by `en_a`; German has no teacher and is tokenized with `en_a`'s
tokenizer (paper §4.4, footnote 10); the student reads the output as a distilled + gold-only mix
(training on such a mix: tests/student/test_trainer.py; evaluation: tests/student/
test_evaluate.py).
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import job_config, output, pipeline
from beam_jobs.teacher_model_handler import LoadedTeacher, TeacherModelHandler
from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.records import record_schema
from teacher_scoring.teachers import scoring
from teacher_scoring.teachers.teacher import Teacher
from teacher_scoring.examples.tokenization import TeacherTokenizer
from vocab.union import StudentVocab

pytestmark = pytest.mark.slow

IN_MEMORY = ["--direct_running_mode=in_memory"]
REPO = pathlib.Path(__file__).resolve().parents[2]


def _gold_only_config(workspace, output_dir, **changes) -> dict:
    data = workspace.config(output_dir, **changes)
    data["languages"]["de"]["tokenizer_teacher"] = "en_a"
    data["languages"]["en"]["num_shards"] = 1
    data["teachers"] = {"en_a": data["teachers"]["en_a"]}
    return data


def _records(output_dir, language):
    folder = os.path.join(output_dir, language)
    manifest = manifest_lib.read_manifest(folder)
    records = []
    for path in manifest_lib.shard_paths(manifest, folder, language):
        for raw in tf.data.TFRecordDataset(path, compression_type=manifest.compression):
            records.append(record_schema.deserialize(raw.numpy(), manifest.shard_spec))
    return manifest, records


def _kill_once_the_temp_dir_exists(config_path, output_dir, timeout=600):
    """Starts the launcher, SIGKILLs it as soon as its temporary folder appears."""
    process = subprocess.Popen(
        [sys.executable, "-m", "beam_jobs.score_corpora", f"--config={config_path}",
         *IN_MEMORY], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            found = list(pathlib.Path(output_dir).glob(output.TMP_PREFIX + "*"))
            if found:
                process.kill()
                process.wait()
                return str(found[0])
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    raise AssertionError(f"the launcher made no temporary folder (exit code {process.poll()})")


@pytest.fixture(scope="module")
def gold_run(workspace, tmp_path_factory):
    """A killed run, then a complete run into the same output folder."""
    root = tmp_path_factory.mktemp("gold_only")
    out = root / "scored"
    data = _gold_only_config(workspace, out)
    config_path = root / "job.yaml"
    config_path.write_text(json.dumps(data))
    killed = _kill_once_the_temp_dir_exists(config_path, out)
    assert os.path.isdir(killed)
    result = pipeline.run_job(job_config.from_dict(data, source="gold.yaml"), IN_MEMORY)
    return out, result, killed


def test_the_next_run_removes_the_temp_dir_of_a_killed_run(gold_run):
    out, result, killed = gold_run
    assert not os.path.exists(killed)
    assert [path for path, _ in result.temp_dirs.removed] == [killed]
    assert "is no longer running" in result.temp_dirs.removed[0][1]
    assert result.temp_dirs.kept == []
    assert not list(pathlib.Path(out).glob(output.TMP_PREFIX + "*"))


def test_gold_only_language_is_tokenized_by_its_teacher_but_never_scored(workspace, gold_run):
    out, result, _ = gold_run
    vocab = StudentVocab.load(str(workspace.vocab_dir))
    en, en_records = _records(out, "en")
    de, de_records = _records(out, "de")
    assert en.has_teacher_outputs and not de.has_teacher_outputs
    assert de.id_space == "student" and de.vocab_sha256 == vocab.sha256
    assert sorted(de.teachers) == ["en_a"] and de.copies_mode == "single"
    assert de.config["languages"]["de"]["tokenizer_teacher"] == "en_a"
    entry = de.languages["de"]
    assert entry.examples == len(de_records) > 20
    assert entry.teachers["en_a"].examples == len(de_records)
    assert entry.masked_tokens == sum(r.num_predictions for r in de_records)
    # Written without teacher fields: the gold part only.
    assert all(r.teacher == "en_a" and r.teacher_topk_ids is None for r in de_records)
    # Counted like any language, without a scoring stage.
    assert de.counters["en_a/examples"] == de.counters["en_a/mapped"] == len(de_records)
    assert de.counters["en_a/written"] == len(de_records)
    assert not any("scored" in key or key.startswith("job/") for key in de.counters)
    assert de.dropped["en_a/dead_letter/map_to_student"] == 0
    assert "en_a/dead_letter/score" not in de.dropped and "dead_letter/build_examples" in de.dropped
    assert en.dropped["en_a/nonfinite_scores"] == en.dropped["en_a/float16_overflow"] == 0
    # The teacher's model scored the English copies only.
    counters = result.counters
    assert "de/en_a/scored" not in counters
    assert counters["en/en_a/scored"] == len(en_records)
    batch = workspace.config("x")["inference_batch_size"]
    assert counters["job/en_a/batches"] * batch - counters["job/en_a/padded_rows"] == \
        len(en_records)
    # German copies are en_a's tokenization of the German text: every restored sequence is a
    # run of that tokenization, and lives in en_a's vocabulary.
    _, _, _, en_a_vocab, lower_case = workspace.teachers["en_a"]
    tokenizer = TeacherTokenizer(en_a_vocab, lower_case)
    lines = [line for line in pathlib.Path(workspace.corpora["de"]).read_text().split("\n")
             if line.strip()]
    corpus_tokens = " " + " ".join(
        " ".join(en_a_vocab[i] for i in ids) for ids in tokenizer.tokenize(lines)) + " "
    inverse = vocab.inverse_map("en_a")
    for record in de_records:
        ids = record.input_word_ids.copy()
        n = record.num_predictions
        ids[record.masked_lm_positions[:n]] = record.masked_lm_ids[:n]
        real = record.input_mask > 0
        teacher_ids = inverse[ids[real]]
        assert np.all(teacher_ids >= 0)
        tokens = [en_a_vocab[i] for i in teacher_ids[1:-1]]
        assert f" {' '.join(tokens)} " in corpus_tokens


def test_the_student_reads_the_mix_with_zero_kd_weight_for_the_gold_only_language(workspace,
                                                                                   gold_run):
    from student import config as config_lib
    from student import experiment
    from student import input_pipeline

    out, _, _ = gold_run
    shards = {"en": str(out / "en"), "de": str(out / "de")}
    overrides = ["model.encoder.bert_v2.vocab_size=0,data.seq_length=64,"
                 "data.max_predictions_per_seq=10,data.global_batch_size=32"]
    config = config_lib.load_config(str(REPO / "configs/student/tiny.yaml"), overrides)
    with pytest.raises(manifest_lib.ManifestError, match="declare 'de' in data.gold_only"):
        experiment.prepare_data(config, str(workspace.vocab_dir), shards)
    config = config_lib.load_config(str(REPO / "configs/student/tiny.yaml"),
                                    overrides + ["data.gold_only_languages=[de]"])
    data = experiment.prepare_data(config, str(workspace.vocab_dir), shards)
    assert [s.gold_only for s in data.sources] == [False, True]
    pipeline = input_pipeline.StudentInputPipeline(data.sources, config.data, True)
    batch = next(iter(pipeline.dataset()))
    german = batch["language_id"].numpy() == 1
    assert 0 < german.sum() < len(german)
    np.testing.assert_array_equal(batch["kd_weight"].numpy(), np.where(german, 0.0, 1.0))
    assert np.all(batch["teacher_topk_ids"].numpy()[german] == 0)
    assert np.all(batch["teacher_topk_ids"].numpy()[~german].max(axis=(1, 2)) > 0)


def _faulty(teacher: Teacher) -> Teacher:
    """`teacher`, with NaN logits for copies whose first token id is 1 mod 3, and logits 1e5
    times larger (beyond float16) for those 2 mod 3."""

    def mlm_fn(input_word_ids, input_mask, input_type_ids, masked_lm_positions):
        logits = teacher.mlm_logits(input_word_ids, input_mask, input_type_ids,
                                    masked_lm_positions)
        kind = input_word_ids[:, 1] % 3
        scale = tf.gather(tf.constant([1.0, float("nan"), 1e5]), kind)
        return logits * scale[:, None, None]

    return Teacher(teacher.name, teacher.vocab, teacher.lower_case, teacher.languages, mlm_fn,
                   max_sequence_length=teacher.max_sequence_length)


def test_nan_and_float16_overflowing_scores_go_to_the_dead_letters(workspace, tmp_path,
                                                                   monkeypatch):
    data = _gold_only_config(workspace, tmp_path / "out", logits_dtype="float16")
    data["languages"] = {"en": data["languages"]["en"]}
    job = pipeline.prepare_job(job_config.from_dict(data, source="faulty.yaml"))
    real_load = TeacherModelHandler.load_model

    def load_faulty(self):
        loaded = real_load(self)
        teacher = _faulty(loaded.teacher)
        return LoadedTeacher(teacher, scoring.make_score_fn(teacher, top_k=8))

    monkeypatch.setattr(TeacherModelHandler, "load_model", load_faulty)
    result = pipeline.run_job(job.config, IN_MEMORY, job=job)
    letters = [json.loads(line) for path in output.dead_letter_files(str(tmp_path / "out"))
               for line in open(path, encoding="utf-8")]
    reasons = [letter["reason"] for letter in letters]
    nan = [r for r in reasons if r.startswith("non-finite teacher logits")]
    overflow = [r for r in reasons if "overflows float16" in r]
    assert nan and overflow and len(nan) + len(overflow) == len(letters)
    kinds = {letter["element"]["input_word_ids"][1] % 3 for letter in letters}
    assert kinds == {1, 2}
    manifest, records = _records(tmp_path / "out", "en")
    assert manifest.dropped["en_a/nonfinite_scores"] == len(nan)
    assert manifest.dropped["en_a/float16_overflow"] == len(overflow)
    assert manifest.dropped["en_a/dead_letter/score"] == len(letters) == result.dead_letters
    assert records and all(np.all(np.isfinite(r.teacher_topk_logits)) for r in records)
    assert manifest.counters["en_a/examples"] == len(records) + len(letters)


def test_a_teacher_whose_logits_never_fit_float16_is_refused_before_the_run(workspace, tmp_path,
                                                                          monkeypatch):
    from teacher_scoring.teachers import loaders
    real_load = loaders.load_teacher

    def load_huge(*args, **kwargs):
        teacher = real_load(*args, **kwargs)

        def mlm_fn(*inputs):
            return teacher.mlm_logits(*inputs) * 1e6

        return Teacher(teacher.name, teacher.vocab, teacher.lower_case, teacher.languages,
                       mlm_fn, max_sequence_length=teacher.max_sequence_length)

    monkeypatch.setattr(loaders, "load_teacher", load_huge)
    data = _gold_only_config(workspace, tmp_path / "out", logits_dtype="float16")
    with pytest.raises(pipeline.JobSetupError,
                       match=r"teachers\.en_a .*its scores cannot be written: teacher logit .* "
                             r"overflows float16"):
        pipeline.prepare_job(job_config.from_dict(data, source="huge.yaml"))
    data["logits_dtype"] = "float32"
    pipeline.prepare_job(job_config.from_dict(data, source="huge.yaml"))
