"""Tests for teacher_scoring.examples.create_examples: copies per teacher, determinism under reordering
and batching, bad input counted end to end, and the CLI's shards + manifest."""

import collections
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from teacher_scoring.examples import create_examples as ce
from teacher_scoring.records import manifest as mf
from teacher_scoring.records import record_schema as rs
from teacher_scoring.examples import segmentation as sg
from teacher_scoring.examples.masking import MaskingConfig
from teacher_scoring.examples.tokenization import TeacherTokenizer
from tests.conftest import REPO_ROOT, demo_lines, trained_vocab

CONFIG = MaskingConfig(seq_length=64, max_predictions_per_seq=10, seed=12345)
FIELDS = ("input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions",
          "masked_lm_ids", "masked_lm_weights")


@pytest.fixture(scope="module")
def teachers():
    return {"small_uncased": TeacherTokenizer(trained_vocab("en", 1000, lower_case=True), True),
            "big_cased": TeacherTokenizer(trained_vocab("en", 6000, lower_case=False), False)}


@pytest.fixture(scope="module")
def documents():
    return demo_lines("en", 150) + [" ".join(demo_lines("en")[200:230])]


def by_key(examples):
    """(example_id, teacher) → the example's arrays; fails on a duplicate key."""
    out = {}
    for ex in examples:
        key = (ex.example_id, ex.teacher)
        assert key not in out, f"duplicate {key}"
        out[key] = tuple(getattr(ex, field).tolist() for field in FIELDS)
    return out


def test_one_copy_per_teacher_for_every_segment(teachers, documents):
    counts = collections.Counter()
    examples = list(ce.create_examples(documents, "en", teachers, CONFIG, counts))
    copies = collections.defaultdict(list)
    for ex in examples:
        copies[ex.example_id].append(ex.teacher)
        assert ex.language == "en"
        assert ex.input_word_ids.shape == (64,) and ex.teacher_loss is None
    assert all(names == list(teachers) for names in copies.values())
    assert len(copies) == counts[sg.SEGMENTS] > len(documents)  # the long document is split
    assert counts[ce.EXAMPLES] == len(examples) == 2 * counts[sg.SEGMENTS]
    assert counts[ce.MASKED_TOKENS] == sum(ex.num_predictions for ex in examples)
    # Each copy, un-masked, is [CLS] + its teacher's pieces of the segment + [SEP].
    segments = {s.example_id("en"): s for doc in sg.segment_documents(
        documents, teachers, CONFIG.max_tokens) for s in doc}
    for ex in examples:
        tokenizer, pieces = teachers[ex.teacher], segments[ex.example_id].pieces[ex.teacher].ids
        k = ex.num_predictions
        restored = ex.input_word_ids.copy()
        restored[ex.masked_lm_positions[:k]] = ex.masked_lm_ids[:k]
        np.testing.assert_array_equal(
            restored[:len(pieces) + 2], [tokenizer.cls_id, *pieces, tokenizer.sep_id])


def test_same_examples_in_any_order_and_batching(teachers, documents):
    reference = by_key(ce.create_examples(documents, "en", teachers, CONFIG))
    shuffled = list(documents)
    random.Random(0).shuffle(shuffled)
    assert by_key(ce.create_examples(shuffled, "en", teachers, CONFIG, batch_size=7)) == reference
    one_at_a_time = [ex for document in documents
                     for ex in ce.create_examples([document], "en", teachers, CONFIG)]
    assert by_key(one_at_a_time) == reference
    # Bytes in, str in: the same examples.
    as_bytes = [d.encode("utf-8") for d in documents]
    assert by_key(ce.create_examples(as_bytes, "en", teachers, CONFIG)) == reference
    # A different seed: the same segments (ids), different masks.
    other = by_key(ce.create_examples(documents, "en", teachers,
                                      MaskingConfig(64, 10, seed=777)))
    assert other.keys() == reference.keys()
    differ = [other[key][0] != reference[key][0] for key in reference]
    assert np.mean(differ) > 0.9


def test_bad_input_counted_end_to_end(teachers):
    long = " ".join(demo_lines("en")[:40])
    raw = [
        b"",
        b"  \t ",
        b"Invalid \xff\xfe bytes in the middle of a sentence.",
        "Control\x07 characters\x00 and a\u200b zero width space.".encode("utf-8"),
        "ᚠᚢᚦ ᚨᚱᚲ".encode("utf-8"),
        long.encode("utf-8"),
    ]
    counts = collections.Counter()
    examples = list(ce.create_examples(raw, "en", teachers, CONFIG, counts))
    long_segments = len(sg.segment_document(long, teachers, CONFIG.max_tokens))
    assert long_segments > 3
    expected = {"documents": 6, "empty": 2, "invalid_utf8": 1, "control_characters": 1,
                "all_unknown": 2, "split_long_document": 1, "segments": 2 + long_segments,
                "examples": 2 * (2 + long_segments)}
    assert {key: counts[key] for key in expected} == expected
    assert len(examples) == counts["examples"]


def write_input(tmp_path):
    """An input file of demo lines plus bad lines; returns (path, number of lines)."""
    lines = [line.encode("utf-8") for line in demo_lines("en", 300)]
    lines += [b"", b"Broken \xff\xfe bytes, still a sentence.", b"BEL\x07 inside",
              "ᚠᚢᚦ ᚨᚱᚲ".encode("utf-8"), " ".join(demo_lines("en")[300:340]).encode("utf-8")]
    path = tmp_path / "en.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path), len(lines)


def write_vocab(tmp_path, vocab):
    path = tmp_path / "vocab.txt"
    path.write_text("".join(token + "\n" for token in vocab), encoding="utf-8")
    return str(path)


def read_records(output_dir, manifest):
    """Every record of the manifest's shards, parsed with record_schema.parse_batch."""
    spec = manifest.shard_spec
    out = {}
    for name in manifest.languages["en"].shards:
        serialized = [r.numpy() for r in tf.data.TFRecordDataset(os.path.join(output_dir, name))]
        if serialized:
            out[name] = rs.parse_batch(tf.constant(serialized), spec)
    return out


def test_cli_writes_shards_and_manifest_that_match(tmp_path):
    vocab = trained_vocab("en", 2000, lower_case=True)
    vocab_path = write_vocab(tmp_path, vocab)
    input_path, num_lines = write_input(tmp_path)
    output_dir = str(tmp_path / "out")
    command = [sys.executable, "-m", "teacher_scoring.examples.create_examples", "--input", input_path,
               "--language", "en", "--vocab", vocab_path, "--lower_case",
               "--teacher_name", "bert_en", "--seq_length", "64",
               "--max_predictions_per_seq", "10", "--seed", "12345", "--whole_word_masking",
               "--output_dir", output_dir, "--num_shards", "3"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    manifest = mf.read_manifest(output_dir)
    entry = manifest.languages["en"]
    assert entry.shards == [f"en-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert (manifest.id_space, manifest.has_teacher_outputs, manifest.seed) == (
        "teacher", False, 12345)
    assert manifest.vocab_sha256 == mf.sha256_of_file(vocab_path) == mf.sha256_of_tokens(vocab)
    assert manifest.teachers["bert_en"].lower_case is True
    assert manifest.config["whole_word_masking"] is True
    assert manifest.packing == manifest.config["packing"] == sg.WITHIN_DOCUMENT  # the default
    assert manifest.counters["documents"] == num_lines
    assert {k: v for k, v in manifest.dropped.items() if v} == {"empty": 1, "all_unknown": 1}
    assert manifest.counters["invalid_utf8"] == 1
    assert manifest.counters["control_characters"] == 1
    assert manifest.counters["split_long_document"] >= 1

    records = read_records(output_dir, manifest)
    assert len(records) == 3  # every shard got examples
    total = sum(int(r["input_word_ids"].shape[0]) for r in records.values())
    masked = sum(int(tf.reduce_sum(r["masked_lm_weights"])) for r in records.values())
    assert total == entry.examples == entry.teachers["bert_en"].examples
    assert total == manifest.counters["examples"] == manifest.counters["segments"]
    assert masked == entry.masked_tokens == manifest.counters["masked_tokens"]
    ids = set()
    for name, r in records.items():
        assert int(tf.reduce_max(r["input_word_ids"])) < len(vocab)
        for example_id in r["example_id"].numpy():
            example_id = example_id.decode()
            assert entry.shards[ce.shard_index(example_id, 3)] == name
            ids.add(example_id)
        assert set(r["teacher"].numpy().tolist()) == {b"bert_en"}
    assert len(ids) == total

    # A second run into the same folder is refused.
    again = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                           timeout=300)
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_write_shards_refuses_non_empty_dir_and_is_deterministic(tmp_path, documents):
    vocab = trained_vocab("en", 1000, lower_case=True)
    out = str(tmp_path / "out")
    first = ce.write_shards(documents, "en", "t", vocab, True, CONFIG, out, 2)
    shards = {name: (tmp_path / "out" / name).read_bytes() for name in first.languages["en"].shards}
    with pytest.raises(FileExistsError, match="overwrite"):
        ce.write_shards(documents, "en", "t", vocab, True, CONFIG, out, 2)
    (tmp_path / "out" / "manifest.json").unlink()
    with pytest.raises(FileExistsError):  # shards alone are enough to refuse
        ce.write_shards(documents, "en", "t", vocab, True, CONFIG, out, 2)
    second = ce.write_shards(documents, "en", "t", vocab, True, CONFIG, out, 2, overwrite=True)
    assert second == first
    assert {n: (tmp_path / "out" / n).read_bytes() for n in shards} == shards
    # Another order of the input: the same records in each shard (in another order).
    shuffled = list(documents)
    random.Random(1).shuffle(shuffled)
    other = str(tmp_path / "other")
    ce.write_shards(shuffled, "en", "t", vocab, True, CONFIG, other, 2)
    for name in shards:
        a = sorted(r.numpy() for r in tf.data.TFRecordDataset(os.path.join(out, name)))
        b = sorted(r.numpy() for r in tf.data.TFRecordDataset(os.path.join(other, name)))
        assert a == b and a


def test_read_documents_keeps_every_line_as_bytes(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"one\n\nthr\xffee\nlast without newline")
    (tmp_path / "b.txt").write_bytes(b"b1\n")
    lines = list(ce.read_documents([str(tmp_path / "*.txt")]))
    assert lines == [b"one", b"", b"thr\xffee", b"last without newline", b"b1"]
    with pytest.raises(FileNotFoundError, match="matches no file"):
        list(ce.read_documents([str(tmp_path / "*.csv")]))


def test_blank_line_documents_are_packed_never_crossed_and_utilization_is_recorded(tmp_path):
    """BERT's format through the CLI's path (read_documents → write_shards): every document's
    sequences hold exactly its own pieces, in order, each full but the last; the manifest's
    real tokens, utilization and distinct examples equal the records on disk."""
    lines = demo_lines("en", 400)
    documents = [lines[i:i + 1 + i % 23] for i in range(0, 400, 25)]
    path = tmp_path / "en.txt"
    path.write_text("\n\n".join("\n".join(d) for d in documents) + "\n", encoding="utf-8")
    vocab = trained_vocab("en", 1000, lower_case=True)
    tokenizer = TeacherTokenizer(vocab, True)
    config = MaskingConfig(seq_length=64, max_predictions_per_seq=10, seed=1)
    out = str(tmp_path / "out")
    manifest = ce.write_shards(ce.read_documents([str(path)], "blank_line"), "en", "t", vocab,
                               True, config, out, 3)
    records = read_records(out, manifest)
    rows = collections.defaultdict(dict)   # doc hash → segment index → unmasked pieces
    real = 0
    for r in records.values():
        for i, example_id in enumerate(r["example_id"].numpy()):
            _, doc_hash, index = example_id.decode().split("-")
            ids = r["input_word_ids"][i].numpy()
            k = int(tf.reduce_sum(r["masked_lm_weights"][i]))
            ids[r["masked_lm_positions"][i][:k].numpy()] = r["masked_lm_ids"][i][:k].numpy()
            n = int(tf.reduce_sum(r["input_mask"][i]))
            real += n
            rows[doc_hash][int(index)] = ids[1:n - 1]
    assert len(rows) == len(documents)
    for document in documents:
        text = "\n".join(document)
        doc_hash = sg.document_hash(tf.compat.as_str(" ".join(document)))
        segments = [rows[doc_hash][i] for i in range(len(rows[doc_hash]))]
        np.testing.assert_array_equal(np.concatenate(segments),
                                      tokenizer.tokenize_with_offsets([text])[0].ids)
        assert all(len(s) > 62 - 12 for s in segments[:-1])   # full up to a word (< 12 pieces)
    entry = manifest.languages["en"]
    total = sum(int(r["input_word_ids"].shape[0]) for r in records.values())
    assert entry.examples == total and entry.unique_examples == total
    assert entry.real_tokens == entry.teachers["t"].real_tokens == real
    assert entry.token_utilization == pytest.approx(real / (total * 64), abs=1e-6)
    assert entry.token_utilization > 0.85
    # One paragraph a document (line format): many short sequences, far lower utilization.
    line_manifest = ce.write_shards(ce.read_documents([str(path)], "line"), "en", "t", vocab,
                                    True, config, str(tmp_path / "lines"), 3)
    assert line_manifest.languages["en"].token_utilization < entry.token_utilization - 0.2


def cli(args, timeout=300):
    """Runs the create_examples CLI with `args`; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "teacher_scoring.examples.create_examples",
                           *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                          timeout=timeout)


def test_cli_full_sentences_packing_fills_sequences_across_lines_and_is_recorded(tmp_path):
    """--packing=full_sentences on the demo text (one line a document): sequences run across
    lines with [SEP] between two lines' text, nearly all full (all but a word's pieces); the
    manifest says full_sentences, as the scoring job's do (what data.packing is checked
    against)."""
    vocab = trained_vocab("en", 2000, lower_case=True)
    tokenizer = TeacherTokenizer(vocab, True)
    output_dir = str(tmp_path / "out")
    seq_length = 32
    run = cli(["--input", str(REPO_ROOT / "data" / "corpora" / "demo" / "en.txt"),
               "--language", "en", "--vocab", write_vocab(tmp_path, vocab), "--lower_case",
               "--teacher_name", "bert_en", "--seq_length", str(seq_length),
               "--max_predictions_per_seq", "5", "--packing", "full_sentences",
               "--output_dir", output_dir, "--num_shards", "2"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "packing full_sentences" in run.stdout

    manifest = mf.read_manifest(output_dir)
    assert manifest.packing == sg.FULL_SENTENCES
    assert manifest.config["packing"] == sg.FULL_SENTENCES
    assert manifest.config["short_seq_prob"] == 0.0
    assert {"duplicate_document", "not_all_teachers"} <= set(manifest.dropped)
    entry = manifest.languages["en"]
    lengths, separators = [], 0
    for r in read_records(output_dir, manifest).values():
        mask = r["input_mask"].numpy()
        lengths += mask.sum(axis=1).tolist()
        ids = r["input_word_ids"].numpy()
        for i in range(len(ids)):  # un-mask, then count the [SEP]s inside the sequence
            k = int(np.sum(r["masked_lm_weights"][i]))
            ids[i][r["masked_lm_positions"][i][:k].numpy()] = r["masked_lm_ids"][i][:k].numpy()
            separators += int(np.sum(ids[i][1:int(mask[i].sum()) - 1] == tokenizer.sep_id))
    lengths = np.array(lengths)
    assert len(lengths) == entry.examples == manifest.counters["segments"]
    assert np.mean(lengths == seq_length) > 0.75       # within_document: about 0.2 here
    assert np.sort(lengths)[1:].min() > seq_length - 12  # full up to a word, but the last
    assert entry.token_utilization > 0.98
    assert manifest.counters["cross_document_segments"] > entry.examples / 2
    assert separators == manifest.counters["document_separators"] > 0


def test_cli_refuses_full_sentences_with_short_seq_prob(tmp_path):
    output_dir = tmp_path / "out"
    run = cli(["--input", str(REPO_ROOT / "data" / "corpora" / "demo" / "en.txt"),
               "--language", "en", "--vocab", write_vocab(tmp_path, ["[PAD]", "[UNK]"]),
               "--teacher_name", "bert_en", "--packing", "full_sentences",
               "--short_seq_prob", "0.1", "--output_dir", str(output_dir)])
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert ("error: packing 'full_sentences' fills every sequence; short_seq_prob must be 0 "
            "with it, got 0.1") in run.stderr
    assert not output_dir.exists()  # refused before anything was written
    # The refusal is the library's own (MaskingConfig), whoever calls it.
    with pytest.raises(ValueError, match="short_seq_prob must be 0"):
        MaskingConfig(64, 10, short_seq_prob=0.1, packing=sg.FULL_SENTENCES)
