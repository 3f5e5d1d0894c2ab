"""The scoring job end to end with `packing: full_sentences` (tests/beam_jobs/conftest's tiny
teachers and demo corpora, one paragraph a line, so documents are short and sequences hold
several of them): the manifest records the packing; the records are the library's
full-sentences examples of each packing group in hash order (separators in place, never masked);
utilization beats within-document packing; the shards are byte-identical under another
runner parallelism; and the student refuses them unless its config says full_sentences."""

import collections
import dataclasses
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import job_config, pipeline
from beam_jobs.build_examples import masking_config, packing_key
from student import config as student_config
from student import shard_sources
from teacher_scoring.examples import create_examples as create_examples_lib
from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.records import record_schema
from teacher_scoring.examples.tokenization import TeacherTokenizer
from vocab.union import StudentVocab

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[2]


def _config(workspace, output_dir, **changes):
    return job_config.from_dict(workspace.config(output_dir, **changes), source="test-config")


def _records(output_dir, language):
    folder = os.path.join(output_dir, language)
    manifest = manifest_lib.read_manifest(folder)
    records = []
    for path in manifest_lib.shard_paths(manifest, folder, language):
        for raw in tf.data.TFRecordDataset(path, compression_type=manifest.compression):
            records.append(record_schema.deserialize(raw.numpy(), manifest.shard_spec))
    return manifest, records


def _tokenizers(workspace, config, language):
    return {name: TeacherTokenizer(workspace.teachers[name][3], workspace.teachers[name][4])
            for name in config.teachers_of(language)}


def _expected(workspace, config, language, packing):
    """The job's examples rebuilt outside Beam: each packing group's documents in hash order."""
    documents = pathlib.Path(workspace.corpora[language]).read_bytes().split(b"\n")[:-1]
    masking = masking_config(config)
    if packing == "within_document":
        groups = [documents]
    else:
        keyed = collections.defaultdict(list)
        for document in documents:
            group, value = packing_key(document, config.languages[language].num_shards)
            keyed[group].append(value)
        groups = [[d for _, d in sorted(values)] for values in keyed.values()]
    examples = [e for group in groups for e in create_examples_lib.create_examples(
        group, language, _tokenizers(workspace, config, language),
        dataclasses.replace(masking, packing=packing))]
    return {(e.example_id, e.teacher): e for e in examples if e.num_predictions > 0}


@pytest.fixture(scope="module")
def packed_run(workspace, tmp_path_factory):
    out = tmp_path_factory.mktemp("full_sentences") / "scored"
    config = _config(workspace, out, packing="full_sentences", copies_mode="all")
    return out, config, pipeline.run_job(config, ["--direct_running_mode=in_memory"])


def test_records_are_the_full_sentences_examples_and_the_manifest_says_so(workspace,
                                                                         packed_run):
    out, config, result = packed_run
    vocab = StudentVocab.load(str(workspace.vocab_dir))
    sep = vocab.tokens.index("[SEP]")
    assert result.dead_letters == 0
    for language in ("en", "de"):
        manifest, records = _records(out, language)
        assert manifest == result.manifests[language]
        assert manifest.packing == "full_sentences"
        assert manifest.config["packing"] == "full_sentences"
        expected = _expected(workspace, config, language, "full_sentences")
        assert sorted((r.example_id, r.teacher) for r in records) == sorted(expected)
        separators = 0
        for record in records:
            original = expected[(record.example_id, record.teacher)]
            inverse = vocab.inverse_map(record.teacher)
            real = record.input_mask > 0
            np.testing.assert_array_equal(record.input_mask, original.input_mask)
            np.testing.assert_array_equal(inverse[record.input_word_ids[real]],
                                          original.input_word_ids[real])
            np.testing.assert_array_equal(record.masked_lm_positions,
                                          original.masked_lm_positions)
            n = record.num_predictions
            assert not np.any(record.masked_lm_ids[:n] == sep)     # never a separator
            # [CLS] ... [SEP]: every other [SEP] is a document separator.
            separators += int(np.sum(record.input_word_ids[real] == sep)) - 1
        teachers = len(config.teachers_of(language))
        assert separators == teachers * manifest.counters["document_separators"] > 0
        assert manifest.counters["cross_document_segments"] > 0
        assert manifest.dropped["duplicate_document"] == 0
        assert manifest.dropped["not_all_teachers"] == 0
        # Every copy of an example masks the same number of words (the same words, tested
        # in tests/teacher_scoring/examples/test_packing.py).
        by_id = collections.defaultdict(set)
        for original in (expected[(r.example_id, r.teacher)] for r in records):
            by_id[original.example_id].add(original.num_masked_words)
        assert all(len(v) == 1 for v in by_id.values())
        # Packing across documents fills the sequences: utilization above within-document
        # packing of the same corpus (one paragraph a document).
        within = _expected(workspace, config, language, "within_document").values()
        within_utilization = sum(int(e.input_mask.sum()) for e in within) / (
            len(within) * config.seq_length)
        entry = manifest.languages[language]
        assert entry.token_utilization > within_utilization + 0.2
        assert entry.token_utilization > 0.9


def test_same_shards_under_multi_processing(workspace, packed_run, tmp_path):
    out, config, _ = packed_run
    again = tmp_path / "again"
    pipeline.run_job(config.replace(output_dir=str(again)),
                     ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    for language in ("en", "de"):
        first = sorted(pathlib.Path(out, language).glob("*.tfrecord*"))
        second = sorted(pathlib.Path(again, language).glob("*.tfrecord*"))
        assert [p.name for p in first] == [p.name for p in second] and first
        for a, b in zip(first, second):
            assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between runs"


def test_student_refuses_the_shards_unless_its_config_says_full_sentences(workspace,
                                                                         packed_run):
    out, _, _ = packed_run
    tiny = str(REPO / "configs" / "student" / "tiny.yaml")
    shards = {"en": str(out / "en")}
    for overrides, refused in (([], True), (["data.packing=full_sentences"], False)):
        config = student_config.load_config(tiny, [
            "data.seq_length=64", "data.max_predictions_per_seq=10",
            "model.encoder.bert_v2.max_position_embeddings=64",
            "model.encoder.bert_v2.vocab_size=0", *overrides])
        vocab = shard_sources.read_student_vocab(str(workspace.vocab_dir), config)
        if refused:
            with pytest.raises(manifest_lib.ManifestError,
                               match=r"en/manifest\.json: field 'packing' is 'full_sentences' "
                                     r"but config field 'data.packing' is 'within_document'"):
                shard_sources.open_sources(shards, config.data, vocab, use_teacher=True)
        else:
            sources = shard_sources.open_sources(shards, config.data, vocab, use_teacher=True)
            assert sources[0].manifest.packing == "full_sentences"
