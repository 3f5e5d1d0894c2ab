"""SelectBestCopy and the deterministic shard writer on synthetic records (no teachers)."""

import json
import os
import random

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.best_copy import SelectBestCopy, best_of
from beam_jobs.records import ScoredRecord, shard_file_name, shard_of
from beam_jobs.write_shards import SHARD_INDEX, WriteShards, read_shard_index


def _record(lang, eid, teacher, loss, masked=3, real_tokens=10, word_loss=None):
    payload = f"{lang}|{eid}|{teacher}|{loss}".encode()
    return ScoredRecord(lang, eid, teacher, loss, masked, payload, real_tokens,
                        loss if word_loss is None else word_loss)


def test_best_of_lowest_word_loss_then_teacher_name():
    a, b = _record("en", "x", "b", 1.0), _record("en", "x", "a", 1.0)
    c = _record("en", "x", "c", .5)
    assert best_of([a, b, c])[0] is c
    assert best_of([a, b])[0] is b
    assert best_of([b, a])[0] is b
    # The per-word loss decides, not the per-piece teacher_loss: a teacher that splits the
    # masked words into more, easier pieces has a lower per-piece mean but pays per word.
    fine = _record("en", "y", "fine", 0.9, masked=6, word_loss=0.9 * 6 / 3)
    coarse = _record("en", "y", "coarse", 1.2, masked=3, word_loss=1.2 * 3 / 3)
    assert best_of([fine, coarse])[0] is coarse


def test_select_best_copy_keeps_one_copy_per_example_in_best_languages():
    records = [
        _record("en", "e1", "t1", 2.0), _record("en", "e1", "t2", 1.0),
        _record("en", "e2", "t1", 0.5), _record("en", "e2", "t2", 0.7),
        _record("en", "e3", "t2", 3.0),                       # t1 dropped this copy
        _record("de", "d1", "t2", 9.0), _record("de", "d1", "t3", 1.0),  # `all` language
    ]
    with test_pipeline.TestPipeline() as p:
        out = (p | beam.Create(records) | SelectBestCopy(["en"])
               | beam.Map(lambda r: (r.language, r.example_id, r.teacher)))
        assert_that(out, equal_to([("en", "e1", "t2"), ("en", "e2", "t1"), ("en", "e3", "t2"),
                                   ("de", "d1", "t2"), ("de", "d1", "t3")]))


def _run_writer(records, directory, num_shards, compression):
    with test_pipeline.TestPipeline() as p:
        _ = p | beam.Create(records, reshuffle=True) | WriteShards(directory, num_shards,
                                                                   compression)


def _read(path, compression):
    return list(tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator())


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_shards_are_sorted_complete_and_byte_identical(tmp_path, compression):
    records = [_record("en", f"en-{i:04d}-0", t, i * .1) for i in range(60) for t in ("t1", "t2")]
    records += [_record("de", f"de-{i:04d}-0", "t2", 1.0, masked=2) for i in range(3)]
    duplicate = records[5]
    num_shards = {"en": 3, "de": 5}   # de: 3 records over 5 shards, some shards empty
    outputs = []
    for run in range(2):
        shuffled = list(records) + [duplicate]
        random.Random(run).shuffle(shuffled)
        directory = str(tmp_path / f"run{run}")
        _run_writer(shuffled, directory, num_shards, compression)
        outputs.append(directory)

    for lang, n in num_shards.items():
        names = sorted(os.listdir(os.path.join(outputs[0], lang)))
        assert names == [shard_file_name(lang, i, n, compression) for i in range(n)]
        for name in names:
            a = open(os.path.join(outputs[0], lang, name), "rb").read()
            b = open(os.path.join(outputs[1], lang, name), "rb").read()
            assert a == b, f"{lang}/{name} differs between runs"

    # Every record once (the duplicate removed), in its hash shard, sorted by (id, teacher).
    for lang, n in num_shards.items():
        expected = sorted((r for r in records if r.language == lang), key=lambda r: r.sort_key)
        got = []
        for i in range(n):
            shard = _read(os.path.join(outputs[0], lang, shard_file_name(lang, i, n, compression)),
                          compression)
            want = [r.serialized for r in expected if shard_of(r, n) == i]
            assert shard == want
            got.extend(shard)
        assert len(got) == len(expected)

    index = read_shard_index(outputs[0])
    assert [(i["language"], i["index"]) for i in index] == (
        [("de", i) for i in range(5)] + [("en", i) for i in range(3)])
    assert sum(i["examples"] for i in index if i["language"] == "en") == 120
    assert sum(i["teachers"].get("t1", {}).get("examples", 0) for i in index) == 60
    assert sum(i["masked_tokens"] for i in index if i["language"] == "de") == 6
    # Copies of an example share a shard: distinct examples and real tokens add up per shard.
    assert sum(i["unique_examples"] for i in index if i["language"] == "en") == 60
    assert sum(i["unique_examples"] for i in index if i["language"] == "de") == 3
    assert sum(i["real_tokens"] for i in index) == 10 * 123
    assert sum(i["teachers"].get("t2", {}).get("real_tokens", 0) for i in index) == 10 * 63
    assert json.loads(open(os.path.join(outputs[0], SHARD_INDEX)).read()) == index
    assert not [n for _, _, files in os.walk(outputs[0]) for n in files if "inprogress" in n]


def test_loss_per_word_sums_a_words_pieces_and_averages_over_words():
    from beam_jobs.score import loss_per_word
    # 6 masked pieces in 3 words, mean CE 1.0 per piece: 6.0 in total, 2.0 per word.
    assert loss_per_word(1.0, 6, 3) == pytest.approx(2.0)
    assert loss_per_word(0.5, 4, 4) == pytest.approx(0.5)   # one piece a word: per piece
    for words in (None, 0, 7):
        with pytest.raises(ValueError, match="masked word count"):
            loss_per_word(1.0, 6, words)
