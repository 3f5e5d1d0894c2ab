"""What flows between the last steps of the job: a serialized record with its sort/select keys.

After MapToStudentVocab a copy is a `ScoredRecord`: the serialized tf.train.Example (student id
space, `record_schema.serialize`) plus the few fields the later steps need without parsing it
(language and example id to group `best` copies, the teacher's loss per masked word to select,
teacher, masked-token and real-token counts for the manifest, and the sort key of the
deterministic writer).
"""

from __future__ import annotations

from typing import NamedTuple

from teacher_scoring.examples.create_examples import example_hash


class ScoredRecord(NamedTuple):
    """teacher_loss: the record's (per masked piece); word_loss: per masked word (what `best`
    compares, `ScoredExample.teacher_word_loss`); real_tokens: sum of input_mask."""

    language: str
    example_id: str
    teacher: str
    teacher_loss: float
    masked_tokens: int
    serialized: bytes
    real_tokens: int
    word_loss: float

    @property
    def sort_key(self) -> tuple[str, str]:
        """Records of a shard are written in this order (total with duplicates removed)."""
        return (self.example_id, self.teacher)


def shard_of(record: ScoredRecord, num_shards: int) -> int:
    """The shard of a record: a hash of its example id, independent of the runner and the
    teacher (all copies of an example share a shard, so a shard can count its distinct
    examples; the create_examples CLI shards the same way)."""
    return example_hash(record.example_id) % num_shards


def shard_file_name(language: str, index: int, num_shards: int, compression: str) -> str:
    """`<lang>-SSSSS-of-NNNNN.tfrecord[.gz]` (WORKSPACE.md)."""
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{language}-{index:05d}-of-{num_shards:05d}{suffix}"
