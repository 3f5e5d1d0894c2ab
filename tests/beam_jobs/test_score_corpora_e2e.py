"""The scoring job end to end on DirectRunner, with real tiny teachers (tests/beam_jobs/conftest):
two teachers for English (HF folder, Google-BERT checkpoint), one for German (tf-models
checkpoint)."""

import collections
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import job_config, output, pipeline
from beam_jobs.build_examples import masking_config
from beam_jobs.teacher_model_handler import TeacherModelHandler
from teacher_scoring.examples import create_examples as create_examples_lib
from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.records import record_schema
from teacher_scoring.teachers import scoring
from teacher_scoring.teachers.loaders import load_teacher
from teacher_scoring.examples.tokenization import TeacherTokenizer
from vocab.union import StudentVocab

pytestmark = pytest.mark.slow

IN_MEMORY = ["--direct_running_mode=in_memory"]
REPO = pathlib.Path(__file__).resolve().parents[2]


def _config(workspace, output_dir, **changes):
    return job_config.from_dict(workspace.config(output_dir, **changes), source="test-config")


def _run(workspace, output_dir, args=IN_MEMORY, overwrite=False, **changes):
    return pipeline.run_job(_config(workspace, output_dir, **changes), args, overwrite=overwrite)


def _records(output_dir, language):
    """Every record of a language, parsed, with the manifest."""
    folder = os.path.join(output_dir, language)
    manifest = manifest_lib.read_manifest(folder)
    spec = manifest.shard_spec
    records = []
    for path in manifest_lib.shard_paths(manifest, folder, language):
        for raw in tf.data.TFRecordDataset(path, compression_type=manifest.compression):
            records.append(record_schema.deserialize(raw.numpy(), spec))
    return manifest, records


def _shard_bytes(output_dir):
    out = {}
    for language in ("en", "de"):
        folder = pathlib.Path(output_dir, language)
        for path in sorted(folder.glob("*.tfrecord*")):
            out[f"{language}/{path.name}"] = path.read_bytes()
    return out


def _teacher_examples(workspace, config, language):
    """The job's examples rebuilt outside Beam: (example_id, teacher) → teacher-space example."""
    teachers = config.teachers_of(language)
    tokenizers = {}
    for name in teachers:
        _, _, _, vocab, lower_case = workspace.teachers[name]
        tokenizers[name] = TeacherTokenizer(vocab, lower_case)
    documents = pathlib.Path(workspace.corpora[language]).read_bytes().split(b"\n")
    examples = create_examples_lib.create_examples(documents, language, tokenizers,
                                                   masking_config(config))
    # Copies without a masked token are dropped by the job (counted as no_masked_token).
    return {(e.example_id, e.teacher): e for e in examples if e.num_predictions > 0}


@pytest.fixture(scope="module")
def best_run(workspace, tmp_path_factory):
    out = tmp_path_factory.mktemp("best") / "scored"
    return out, _run(workspace, out)


@pytest.fixture(scope="module")
def all_run(workspace, tmp_path_factory):
    out = tmp_path_factory.mktemp("all") / "scored"
    return out, _run(workspace, out, copies_mode="all")


def test_shards_parse_and_manifest_counts_equal_records_on_disk(workspace, best_run):
    out, result = best_run
    vocab = StudentVocab.load(str(workspace.vocab_dir))
    assert result.dead_letters == 0
    for language, teachers in (("en", ["en_a", "en_b"]), ("de", ["de_a"])):
        manifest, records = _records(out, language)
        assert manifest == result.manifests[language]
        assert manifest.id_space == "student"
        assert manifest.vocab_sha256 == vocab.sha256 and manifest.vocab_size == vocab.size
        assert manifest.copies_mode == ("best" if language == "en" else "single")
        assert (manifest.seq_length, manifest.max_predictions_per_seq,
                manifest.top_k) == (64, 10, 8)
        assert manifest.compression == "GZIP" and manifest.seed == 1234
        assert sorted(manifest.teachers) == teachers
        entry = manifest.languages[language]
        assert entry.examples == len(records) > 0
        assert entry.masked_tokens == sum(r.num_predictions for r in records)
        assert entry.unique_examples == len({r.example_id for r in records})
        assert entry.real_tokens == sum(int(r.input_mask.sum()) for r in records)
        assert entry.token_utilization == pytest.approx(
            entry.real_tokens / (len(records) * 64), abs=1e-6)
        for teacher in teachers:
            mine = [r for r in records if r.teacher == teacher]
            assert entry.teachers[teacher].examples == len(mine)
            assert entry.teachers[teacher].masked_tokens == sum(r.num_predictions for r in mine)
        # Counters and drops are in the manifest, zeros included.
        assert manifest.counters["documents"] == len(
            [line for line in pathlib.Path(workspace.corpora[language]).read_text().split("\n")
             if line.strip()])
        assert manifest.dropped["invalid_utf8"] == 0
        assert manifest.dropped[f"{teachers[0]}/topk_no_student_id"] >= 0
        assert manifest.config["copies_mode"] == "best"
        for r in records:
            assert r.language == language
            assert r.input_word_ids.max() < vocab.size and r.teacher_topk_ids.max() < vocab.size
            assert r.masked_lm_ids.max() < vocab.size
            assert np.isfinite(r.teacher_loss)


def test_ids_map_back_to_the_teachers_tokens_and_scores(workspace, best_run):
    out, _ = best_run
    config = _config(workspace, out)
    vocab = StudentVocab.load(str(workspace.vocab_dir))
    for language in ("en", "de"):
        _, records = _records(out, language)
        rebuilt = _teacher_examples(workspace, config, language)
        by_teacher = collections.defaultdict(list)
        for record in records:
            by_teacher[record.teacher].append(record)
        for teacher, mine in by_teacher.items():
            path, fmt, langs, teacher_vocab, _ = workspace.teachers[teacher]
            inverse = vocab.inverse_map(teacher)
            loaded = load_teacher(str(path), format=fmt, name=teacher, languages=langs)
            # As the job scores (XLA by default); the batch differs from the job's, so XLA's
            # fusions may round differently: float32 agreement to 1e-4 relative.
            score = scoring.make_score_fn(loaded, top_k=8, jit_compile=config.jit_compile)
            sample = mine[:6]
            originals = [rebuilt[(r.example_id, teacher)] for r in sample]
            batch = {f: np.stack([np.asarray(getattr(e, f)) for e in originals])
                     for f in scoring.INPUTS}
            scores = score(batch)
            for i, (record, original) in enumerate(zip(sample, originals)):
                real = record.input_mask > 0
                np.testing.assert_array_equal(record.input_mask, original.input_mask)
                # Mapping back gives the teacher's own ids, hence its tokens.
                np.testing.assert_array_equal(inverse[record.input_word_ids[real]],
                                              original.input_word_ids[real])
                assert [vocab.tokens[s] for s in record.input_word_ids[real]] == \
                    [teacher_vocab[t] for t in original.input_word_ids[real]]
                n = record.num_predictions
                np.testing.assert_array_equal(record.masked_lm_positions,
                                              original.masked_lm_positions)
                np.testing.assert_array_equal(inverse[record.masked_lm_ids[:n]],
                                              original.masked_lm_ids[:n])
                topk = scores["topk_ids"].numpy()[i, :n]
                mapped = vocab.map_ids(teacher, topk)
                np.testing.assert_array_equal(record.teacher_topk_ids[:n], mapped)
                np.testing.assert_allclose(record.teacher_topk_logits[:n][mapped >= 0],
                                           scores["topk_logits"].numpy()[i, :n][mapped >= 0],
                                           rtol=1e-4, atol=1e-4)
                assert record.teacher_loss == pytest.approx(
                    float(scores["teacher_loss"][i]), rel=1e-4)


def test_all_keeps_every_copy_and_best_the_lowest_loss_one(workspace, best_run, all_run):
    best_out, _ = best_run
    all_out, all_result = all_run
    assert all_result.manifests["en"].copies_mode == "all"
    config = _config(workspace, all_out)
    rebuilt = _teacher_examples(workspace, config, "en")
    _, all_records = _records(all_out, "en")
    assert sorted((r.example_id, r.teacher) for r in all_records) == sorted(rebuilt)
    copies = collections.defaultdict(list)
    for record in all_records:
        copies[record.example_id].append(record)
    assert all(len(c) == 2 for c in copies.values())          # one copy per teacher
    _, best_records = _records(best_out, "en")
    kept = {r.example_id: r for r in best_records}
    assert len(kept) == len(best_records) == len(copies)      # one copy per example
    chosen = collections.Counter()
    for example_id, record in kept.items():
        # The copies mask the same words, so the lowest loss per masked word is the lowest
        # summed cross-entropy: per-piece teacher_loss times the masked pieces.
        lowest = min(copies[example_id],
                     key=lambda r: (r.teacher_loss * r.num_predictions, r.teacher))
        assert record.teacher == lowest.teacher
        assert record.teacher_loss == lowest.teacher_loss
        chosen[record.teacher] += 1
    assert set(chosen) == {"en_a", "en_b"}                    # both teachers win somewhere
    # Both modes count the same distinct examples (what language sampling uses).
    manifest = all_result.manifests["en"]
    assert manifest.languages["en"].unique_examples == len(copies) == len(kept)
    assert manifest.languages["en"].examples == len(all_records) == 2 * len(copies)
    assert manifest.sampling_count("en") == len(copies)
    # German (one teacher) is the same in both modes.
    assert _shard_bytes(best_out)["de/de-00000-of-00001.tfrecord.gz"] == \
        _shard_bytes(all_out)["de/de-00000-of-00001.tfrecord.gz"]


def _blank_line_corpora(workspace, folder):
    """The workspace corpora in BERT's format: runs of 1-6 lines, a blank line between them
    (sometimes two, sometimes with spaces); returns the language config and the documents."""
    languages, documents = {}, {}
    for language, shards in (("en", 2), ("de", 1)):
        lines = [line for line in pathlib.Path(workspace.corpora[language]).read_text(
            encoding="utf-8").split("\n") if line.strip()]
        docs, text, i = [], [], 0
        while i < len(lines):
            n = 1 + (i * 7) % 6
            docs.append(lines[i:i + n])
            text.append("\n".join(lines[i:i + n]))
            i += n
        path = folder / f"{language}.txt"
        separators = ["\n\n", "\n  \n", "\n\n\n"]
        path.write_text("".join(t + separators[j % 3] for j, t in enumerate(text)),
                        encoding="utf-8")
        languages[language] = {"corpus": [str(path)], "num_shards": shards}
        documents[language] = docs
    return languages, documents


def test_blank_line_runs_pack_documents_and_give_byte_identical_shards(workspace, best_run,
                                                                       tmp_path):
    """BERT's blank-line format: a document's lines are packed into full sequences (higher
    token utilization than one line a document), never across documents; and the same
    inputs, config and seed give the same bytes whatever the runner's parallelism (a
    multi-processing run with 2 workers against an in-memory run)."""
    languages, documents = _blank_line_corpora(workspace, tmp_path)
    first_out, again_out = tmp_path / "first", tmp_path / "again"
    first = _run(workspace, first_out, document_format="blank_line", languages=languages)
    _run(workspace, again_out, args=["--direct_running_mode=multi_processing",
                                     "--direct_num_workers=2"],
         document_format="blank_line", languages=languages)
    first_bytes, second_bytes = _shard_bytes(first_out), _shard_bytes(again_out)
    assert sorted(first_bytes) == sorted(second_bytes) and len(first_bytes) == 3
    for name in first_bytes:
        assert first_bytes[name] == second_bytes[name], f"{name} differs between runs"
    line_out, _ = best_run
    for language in ("en", "de"):
        manifest, records = _records(first_out, language)
        line_manifest = manifest_lib.read_manifest(str(line_out / language))
        entry = manifest.languages[language]
        assert manifest.counters["documents"] == len(documents[language])
        assert manifest.counters["lines"] == sum(len(d) for d in documents[language])
        assert entry.real_tokens == sum(int(r.input_mask.sum()) for r in records)
        assert entry.token_utilization > line_manifest.languages[language].token_utilization
        assert first.manifests[language].config["document_format"] == "blank_line"


def test_failures_go_to_dead_letters_and_the_job_goes_on(workspace, tmp_path, monkeypatch):
    corpus = tmp_path / "en.txt"
    lines = pathlib.Path(workspace.corpora["en"]).read_bytes().split(b"\n")[:40]
    poison = b"This POISON document makes the example builder raise."
    invalid = "Ein ung\u00fcltiges Byte ".encode() + b"\xff\xfe" + b" steht in dieser Zeile."
    # One word of more than P = 10 pieces: no shared word fits P, nothing is masked.
    nothing_masked = b"Zxqwvbnmkjhgfdsapoiuytrewqzx"
    corpus.write_bytes(b"\n".join(lines[:10] + [poison] + lines[10:20] + [invalid] + lines[20:]
                                  + [nothing_masked]))
    # The copy of the first document that en_b scores fails in the teacher step.
    config = _config(workspace, tmp_path / "out", copies_mode="all",
                     languages={"en": {"corpus": [str(corpus)], "num_shards": 1}},
                     teachers={k: v for k, v in workspace.config("x")["teachers"].items()
                               if k != "de_a"})
    tokenizers = {n: TeacherTokenizer(workspace.teachers[n][3], workspace.teachers[n][4])
                  for n in ("en_a", "en_b")}
    victim = next(iter(create_examples_lib.create_examples(
        [lines[0]], "en", tokenizers, masking_config(config)))).example_id

    real_create = create_examples_lib.create_examples

    def flaky_create(documents, *args, **kwargs):
        if any(b"POISON" in d for d in documents):
            raise ValueError("injected: cannot build examples from this document")
        return real_create(documents, *args, **kwargs)

    real_score = TeacherModelHandler._score

    def flaky_score(self, examples, model):
        if self.teacher_name == "en_b" and any(e.example_id == victim for e in examples):
            raise RuntimeError("injected: teacher failed on this copy")
        return real_score(self, examples, model)

    monkeypatch.setattr(create_examples_lib, "create_examples", flaky_create)
    monkeypatch.setattr(TeacherModelHandler, "_score", flaky_score)
    result = pipeline.run_job(config, IN_MEMORY)

    letters = [json.loads(line) for path in output.dead_letter_files(str(tmp_path / "out"))
               for line in open(path, encoding="utf-8")]
    by_stage = {entry["stage"]: entry for entry in letters}
    assert len(letters) == 2 and set(by_stage) == {"build_examples", "score"}
    assert "injected: cannot build" in by_stage["build_examples"]["reason"]
    assert by_stage["build_examples"]["element"] == poison.decode()
    assert by_stage["build_examples"]["language"] == "en"
    assert "injected: teacher failed" in by_stage["score"]["reason"]
    assert by_stage["score"]["teacher"] == "en_b"
    assert by_stage["score"]["element"]["example_id"] == victim
    manifest, records = _records(tmp_path / "out", "en")
    assert manifest.dropped["dead_letter/build_examples"] == 1
    assert manifest.dropped["en_b/dead_letter/score"] == 1
    assert manifest.dropped["invalid_utf8"] == 1
    assert manifest.dropped["en_a/no_masked_token"] == manifest.dropped["en_b/no_masked_token"] == 1
    assert manifest.counters["p_limited_examples"] >= 1
    assert result.dead_letters == 2
    # Everything else was written: every copy but the failed one, the invalid-UTF-8 line too.
    keys = {(r.example_id, r.teacher) for r in records}
    assert (victim, "en_a") in keys and (victim, "en_b") not in keys
    assert manifest.counters["documents"] == 42      # the poisoned document is not counted
    assert manifest.languages["en"].teachers["en_a"].examples == \
        manifest.languages["en"].teachers["en_b"].examples + 1


def test_a_bad_teacher_fails_before_any_data_is_read(workspace, tmp_path):
    broken = tmp_path / "broken_teacher"
    path = pathlib.Path(workspace.teachers["en_a"][0])
    broken.mkdir()
    for item in path.iterdir():
        data = item.read_bytes()
        if item.name == "model.safetensors":
            data = data[:len(data) // 2]                      # a truncated download
        (broken / item.name).write_bytes(data)
    data = workspace.config(tmp_path / "out")
    data["teachers"]["en_a"]["path"] = str(broken)
    with pytest.raises(pipeline.JobSetupError) as info:
        pipeline.run_job(job_config.from_dict(data, source="cfg.yaml"), IN_MEMORY)
    message = str(info.value)
    assert "teachers.en_a" in message and str(broken) in message
    assert not (tmp_path / "out").exists()                   # nothing started
    # A teacher whose vocabulary is not the one the student vocab was built from.
    data = workspace.config(tmp_path / "out")
    data["teachers"]["en_a"]["path"] = str(workspace.teachers["en_b"][0])
    data["teachers"]["en_a"]["format"] = "auto"
    with pytest.raises(pipeline.JobSetupError, match=r"teachers\.en_a.*vocabulary sha256"):
        pipeline.prepare_job(job_config.from_dict(data, source="cfg.yaml"))


def test_overwrite_protection_and_no_partial_output(workspace, best_run, tmp_path, monkeypatch):
    out, _ = best_run
    with pytest.raises(pipeline.JobSetupError, match="--overwrite"):
        pipeline.prepare_job(_config(workspace, out))
    # A failing run (a shard write raises) leaves the previous output untouched and no
    # temporary folder behind.
    before = _shard_bytes(out)
    from beam_jobs import write_shards
    real_write = write_shards.write_records

    def failing_write(path, serialized, compression):
        if path.endswith("en-00001-of-00002.tfrecord.gz"):
            raise OSError("injected: disk full")
        return real_write(path, serialized, compression)

    monkeypatch.setattr(write_shards, "write_records", failing_write)
    fresh = tmp_path / "fresh"
    with pytest.raises(Exception, match="disk full"):
        _run(workspace, fresh)
    assert not list(fresh.glob("*/*.tfrecord*")) and not list(fresh.glob(".tmp-scoring-*"))
    with pytest.raises(Exception, match="disk full"):
        _run(workspace, out, overwrite=True)
    assert _shard_bytes(out) == before
    assert not list(pathlib.Path(out).glob(".tmp-scoring-*"))


def test_launcher_runs_with_flags_and_overwrites(workspace, tmp_path):
    config_path = workspace.write_config(tmp_path / "job.yaml", tmp_path / "unused",
                                         copies_mode="all")
    out = tmp_path / "cli_out"
    (out / "de").mkdir(parents=True)
    (out / "de" / "notes.txt").write_text("not the job's")
    command = [sys.executable, "-m", "beam_jobs.score_corpora", f"--config={config_path}",
               f"--output_dir={out}", "--direct_running_mode=in_memory"]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "en: " in first.stdout and "dead letters: 0" in first.stdout
    refused = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    again = subprocess.run(command + ["--overwrite"], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "de" / "notes.txt").read_text() == "not the job's"
    assert manifest_lib.read_manifest(str(out / "en")).copies_mode == "all"
