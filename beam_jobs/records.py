"""What flows between the last steps of the job: a serialized record with its sort/select keys.

After MapToStudentVocab a copy is a `ScoredRecord`: the serialized tf.train.Example (student id
space, `record_schema.serialize`) plus the few fields the later steps need without parsing it
(language and example id to group `best` copies, teacher loss to select, teacher and masked-token
count for the manifest, and the sort key of the deterministic writer).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple


class ScoredRecord(NamedTuple):
    language: str
    example_id: str
    teacher: str
    teacher_loss: float
    masked_tokens: int
    serialized: bytes

    @property
    def sort_key(self) -> tuple[str, str]:
        """Records of a shard are written in this order (total with duplicates removed)."""
        return (self.example_id, self.teacher)


def shard_of(record: ScoredRecord, num_shards: int) -> int:
    """The shard of a record: a hash of (example id, teacher), independent of the runner."""
    digest = hashlib.sha256(f"{record.example_id}\t{record.teacher}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def shard_file_name(language: str, index: int, num_shards: int, compression: str) -> str:
    """`<lang>-SSSSS-of-NNNNN.tfrecord[.gz]` (WORKSPACE.md)."""
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{language}-{index:05d}-of-{num_shards:05d}{suffix}"
