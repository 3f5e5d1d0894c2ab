"""Tests for bench/cpu_accounting.py, bench_scoring's accounting of the job's CPU time
(`CpuSections`, `thread_cpu_seconds`, `shard_digest`). It is loaded by path: bench/ is not a
package, and bench_scoring.py itself defines absl flags that other modules of the suite define
too."""

import importlib.util
import os
import time

import numpy as np

from tests.conftest import REPO_ROOT
from tests.teacher_scoring.records.test_record_schema import make_example


def _bench():
    spec = importlib.util.spec_from_file_location("cpu_accounting_under_test",
                                                  REPO_ROOT / "bench" / "cpu_accounting.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


def _busy(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_sections_count_their_own_cpu_and_are_removed_afterwards():
    from beam_jobs import score
    from teacher_scoring.records import record_schema as rs

    original_serialize = rs.serialize
    original_process = score._CutBatchesFn.process
    spec = rs.ShardSpec(seq_length=32, max_predictions_per_seq=6, top_k=8)
    examples = [make_example(spec, np.random.default_rng(i), example_id=f"de-{i:016x}-0")
                for i in range(5)]
    for example in examples:
        example.language = "de"
    with BENCH.CpuSections() as sections:
        assert rs.serialize is not original_serialize
        serialized = [rs.serialize(e, spec) for e in examples]
        batches = list(score._CutBatchesFn(2).process((("de", 0), examples[::-1])))
        # Nested sections: the outer one gets its own CPU only.
        sections._timed("outer", lambda: (_busy(0.05), sections._timed(
            "inner", lambda: _busy(0.2))))
    assert rs.serialize is original_serialize
    assert score._CutBatchesFn.process is original_process
    assert serialized == [rs.serialize(e, spec) for e in examples]     # the same results
    assert [len(b) for b in batches] == [2, 2, 1]                     # a generator's items
    assert sections.calls["tf.train.Example serialization"] == 5
    assert sections.calls["canonical batches: sort and cut"] == 1
    assert sections.cpu["inner"] >= 0.2 and 0.05 <= sections.cpu["outer"] < 0.2
    table = sections.table(total=sum(sections.cpu.values()) + 1.0)
    assert "not in a section (Beam" in table and ": 1.0" in table.splitlines()[-1]


def test_thread_cpu_of_the_main_thread_and_the_others():
    before = BENCH.thread_cpu_seconds()
    assert os.getpid() in before
    _busy(0.1)
    groups = BENCH.thread_groups(before, BENCH.thread_cpu_seconds())
    assert groups["main thread"] >= 0.05


def test_shard_digest_changes_with_any_byte(tmp_path):
    (tmp_path / "de").mkdir()
    shard = tmp_path / "de" / "de-00000-of-00001.tfrecord.gz"
    shard.write_bytes(b"abc")
    first = BENCH.shard_digest(tmp_path)
    assert first == BENCH.shard_digest(tmp_path)
    shard.write_bytes(b"abd")
    assert BENCH.shard_digest(tmp_path) != first
