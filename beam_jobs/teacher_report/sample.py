"""The sample: per language, the `size` non-blank corpus documents with the smallest
SHA-256(seed, document).

A uniform sample without replacement that does not depend on file order, sharding or runner
(Beam's Top.Smallest). All teachers of a language see the same documents.

    SampleDocuments[lang]:  DropBlank → Key → Smallest → Unkey       (Beam)
    sample_documents(...)                                             (its in-process twin)
"""

from __future__ import annotations

import hashlib
import heapq
from typing import Iterable

import apache_beam as beam

from beam_jobs import metrics

# Counter keys (Beam namespace beam_jobs.metrics.NAMESPACE, `<lang>/<key>`).
BLANK_LINES = "report_blank_lines"
SAMPLED = "report_sampled"


def sample_key(seed: int, document: bytes) -> str:
    """The sort key of a corpus line: hex SHA-256 of (seed, line)."""
    return hashlib.sha256(f"{int(seed)}\x1f".encode("utf-8") + bytes(document)).hexdigest()


def is_blank(document: bytes) -> bool:
    return not bytes(document).strip()


def sample_documents(documents: Iterable[bytes], size: int, seed: int) -> list[bytes]:
    """In-process twin of `SampleDocuments`: the `size` non-blank lines with the smallest keys,
    in key order."""
    keyed = ((sample_key(seed, d), bytes(d)) for d in documents if not is_blank(d))
    return [d for _, d in heapq.nsmallest(size, keyed)]


class _CountBlankFn(beam.DoFn):
    """Drops blank lines (counted as `<lang>/report_blank_lines`)."""

    def __init__(self, language: str):
        self._language = language

    def setup(self):
        self._counters = metrics.Counters()

    def process(self, line: bytes):
        if is_blank(line):
            self._counters.inc(self._language, None, BLANK_LINES)
            return
        yield line


def _keyed(line: bytes, seed: int):
    return sample_key(seed, line), line


def _first(pair):
    return pair[0]


def _unkeyed(pairs, counters_language: str):
    metrics.Counters().inc(counters_language, None, SAMPLED, len(pairs))
    return [line for _, line in pairs]


class SampleDocuments(beam.PTransform):
    """PCollection[bytes] (one language's corpus lines) → its sample: the `size` non-blank lines
    with the smallest `sample_key(seed, line)` (see `sample_documents`)."""

    def __init__(self, language: str, size: int, seed: int):
        super().__init__()
        self._language = language
        self._size = size
        self._seed = seed

    def expand(self, lines):
        return (lines
                | "DropBlank" >> beam.ParDo(_CountBlankFn(self._language))
                | "Key" >> beam.Map(_keyed, self._seed)
                | "Smallest" >> beam.combiners.Top.Smallest(self._size, key=_first)
                | "Unkey" >> beam.FlatMap(_unkeyed, self._language))
