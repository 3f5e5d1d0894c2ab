"""WriteShards: deterministic, byte-reproducible TFRecord shards per language.

Why not `beam.io.WriteToTFRecord`: with `num_shards` it assigns records to shards round-robin
from a random start (`apache_beam.io.iobase._RoundRobinKeyFn`) and writes each shard in the
order its GroupByKey delivers, which depends on bundling; two runs over the same input give
different files. MergeDistill needs reproducible shards (same inputs, config and seed → the same
bytes), so this writer:

  1. puts each record in shard `sha256(example_id) mod num_shards` (records.shard_of: every
     copy of an example in the same shard),
  2. groups by (language, shard) — every shard of every language exists, even an empty one,
  3. sorts a shard's records by (example_id, teacher), drops exact repeats of that key (a
     document that occurs twice in the corpus; counted as `duplicate_copies`),
  4. writes them with `tf.io.TFRecordWriter` (GZIP or none) to `<name>.inprogress-<uuid>` and
     renames that to `<name>` when complete, so a retried bundle never leaves a partial file.

Sorting by example id (a hash of the document) also spreads every document's segments and
the corpus order over the shard: a cheap global shuffle for the student's reader.

Each written shard yields a `ShardInfo` (file name, records, distinct example ids, masked tokens,
real tokens = sum of input_mask, per teacher); the
transform writes them all to `<directory>/shard_index.json`, from which the launcher builds
the manifests. Memory: a worker holds one shard's serialized records while sorting; choose
`num_shards` so a shard stays well below a worker's memory (e.g. <= 1 GB).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Iterable, Mapping

import apache_beam as beam
import tensorflow as tf

from beam_jobs import metrics
from beam_jobs.records import ScoredRecord, shard_file_name, shard_of

SHARD_INDEX = "shard_index.json"


def write_records(path: str, serialized: Iterable[bytes], compression: str) -> None:
    """Writes TFRecords to `path` atomically (temp file + rename)."""
    tmp = f"{path}.inprogress-{uuid.uuid4().hex}"
    options = tf.io.TFRecordOptions(compression_type=compression or "")
    try:
        with tf.io.TFRecordWriter(tmp, options=options) as writer:
            for record in serialized:
                writer.write(record)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


class _WriteShardFn(beam.DoFn):

    def __init__(self, directory: str, num_shards: Mapping[str, int], compression: str):
        self._directory = directory
        self._num_shards = dict(num_shards)
        self._compression = compression

    def setup(self):
        self._counters = metrics.Counters()

    def process(self, element):
        (language, index), values = element
        records = sorted((r for r in values if r is not None),
                         key=lambda r: (r.sort_key, r.serialized))
        unique: list[ScoredRecord] = []
        for record in records:
            if unique and unique[-1].sort_key == record.sort_key:
                self._counters.inc(language, record.teacher, metrics.DUPLICATE_COPIES)
                continue
            unique.append(record)
        name = shard_file_name(language, index, self._num_shards[language], self._compression)
        folder = os.path.join(self._directory, language)
        tf.io.gfile.makedirs(folder)
        write_records(os.path.join(folder, name), (r.serialized for r in unique),
                      self._compression)
        teachers: dict[str, dict[str, int]] = {}
        for record in unique:
            entry = teachers.setdefault(record.teacher,
                                        {"examples": 0, "masked_tokens": 0, "real_tokens": 0})
            entry["examples"] += 1
            entry["masked_tokens"] += record.masked_tokens
            entry["real_tokens"] += record.real_tokens
            self._counters.inc(language, record.teacher, metrics.WRITTEN)
        yield {"language": language, "index": index, "file": name,
               "examples": len(unique),
               # Sorted by example id, and every copy of an example is in this shard.
               "unique_examples": sum(1 for i, r in enumerate(unique)
                                      if i == 0 or unique[i - 1].example_id != r.example_id),
               "masked_tokens": sum(r.masked_tokens for r in unique),
               "real_tokens": sum(r.real_tokens for r in unique),
               "teachers": dict(sorted(teachers.items()))}


def _write_index(infos: list[dict], path: str) -> None:
    infos = sorted(infos, key=lambda i: (i["language"], i["index"]))
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(infos, indent=1, sort_keys=True))


def read_shard_index(directory: str) -> list[dict]:
    with tf.io.gfile.GFile(os.path.join(directory, SHARD_INDEX), "r") as f:
        return json.loads(f.read())


class WriteShards(beam.PTransform):
    """PCollection[ScoredRecord] → `<directory>/<lang>/<lang>-SSSSS-of-NNNNN.tfrecord[.gz]`.

    Args:
      directory: where to write (the job's temporary folder; the launcher moves the shards into
        place after the run succeeded).
      num_shards: language → number of shards.
      compression: "" or "GZIP".

    Returns the PCollection of ShardInfo dicts (also written to `<directory>/shard_index.json`).
    """

    def __init__(self, directory: str, num_shards: Mapping[str, int], compression: str):
        super().__init__()
        self._directory = directory
        self._num_shards = dict(num_shards)
        self._compression = compression

    def expand(self, records):
        num_shards = self._num_shards
        keyed = records | "KeyByShard" >> beam.Map(
            lambda r: ((r.language, shard_of(r, num_shards[r.language])), r))
        # One marker per shard so that empty shards are written too.
        markers = (records.pipeline
                   | "AllShards" >> beam.Create(
                       [((lang, i), None) for lang, n in sorted(num_shards.items())
                        for i in range(n)]))
        infos = ((keyed, markers)
                 | "WithEmptyShards" >> beam.Flatten()
                 | "GroupByShard" >> beam.GroupByKey()
                 | "SortAndWrite" >> beam.ParDo(
                     _WriteShardFn(self._directory, num_shards, self._compression)))
        index_path = os.path.join(self._directory, SHARD_INDEX)
        _ = (infos
             | "CollectShardInfos" >> beam.combiners.ToList()
             | "WriteShardIndex" >> beam.Map(_write_index, index_path))
        return infos
