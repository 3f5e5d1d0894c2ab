"""Beam metrics of the scoring job: counter names, counting from DoFns, reading them back.

Every counter lives in the namespace `mergedistill` and is named by where it happened:

    <lang>/<key>              per language (documents, empty, invalid_utf8, segments, ...)
    <lang>/<teacher>/<key>    per language and teacher (examples, masked_tokens, dead letters,
                              top-k entries without a student id, best copies kept, ...)
    job/<teacher>/<key>       per teacher, all languages (inference batches, padded rows)

The launcher queries them after the run (committed values where the runner has them), logs
them, and writes each language's `<lang>/...` counters, plus the `job/<teacher>/...` counters of
its teachers, into that language's manifest: keys naming dropped or changed input go to
`dropped`, all others to `counters` (prefix `<lang>/` removed).
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Iterable, Mapping

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

NAMESPACE = "mergedistill"
JOB = "job"

# Counter keys that are the job's own (besides those of the segmentation / masking / mapping
# modules).
EXAMPLES = "examples"              # copies built (before scoring), per language and teacher
MASKED_TOKENS = "masked_tokens"    # masked slots of those copies
SCORED = "scored"                  # copies scored by the teacher
MAPPED = "mapped"                  # copies mapped to the student space and serialized
DEAD_LETTER = "dead_letter"        # dead_letter/<stage>: records sent to the dead-letter output
BEST_KEPT = "best_copy_kept"       # `best` mode: this teacher's copy had the lowest loss
BEST_DISCARDED = "best_copy_discarded"
BEST_ONLY_COPY = "best_only_one_copy"  # `best` mode: example with a single copy (others dropped)
DUPLICATE_COPIES = "duplicate_copies"  # same (example_id, teacher) twice: a repeated document
WRITTEN = "written"                # records written to shards
BATCHES = "batches"
PADDED_ROWS = "padded_rows"


def counter_name(language: str | None, teacher: str | None, key: str) -> str:
    parts = [language if language is not None else JOB]
    if teacher is not None:
        parts.append(teacher)
    parts.append(key)
    return "/".join(parts)


class Counters:
    """Lazily created Beam counters for use inside a DoFn (cheap repeated increments)."""

    def __init__(self):
        self._counters = {}

    def inc(self, language: str | None, teacher: str | None, key: str, n: int = 1) -> None:
        if not n:
            return
        name = counter_name(language, teacher, key)
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(NAMESPACE, name)
        counter.inc(int(n))

    def add(self, language: str | None, teacher: str | None,
            counts: Mapping[str, int]) -> None:
        for key, n in counts.items():
            self.inc(language, teacher, key, n)


def query_counters(result) -> dict[str, int]:
    """The job's counters from a PipelineResult: committed values where supported, else
    attempted (some runners only report attempted metrics)."""
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    out: dict[str, int] = collections.defaultdict(int)
    for entry in query["counters"]:
        value = entry.committed
        if value is None:
            value = entry.attempted
        out[entry.key.metric.name] += int(value or 0)
    return dict(sorted(out.items()))


def language_counters(counters: Mapping[str, int], language: str, teachers: Iterable[str],
                      drop_reasons: Iterable[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Splits the counters relevant to `language` into (dropped, other), keys without the
    `<lang>/` prefix; `job/<teacher>/...` counters of its teachers are kept whole."""
    drop_reasons = set(drop_reasons)
    teachers = set(teachers)
    dropped, other = {}, {}
    prefix = language + "/"
    for name, value in sorted(counters.items()):
        if name.startswith(prefix):
            key = name[len(prefix):]
        elif name.startswith(JOB + "/") and name.split("/")[1] in teachers:
            key = name
        else:
            continue
        parts = key.split("/")
        if parts[-1] in drop_reasons or DEAD_LETTER in parts:
            dropped[key] = value
        else:
            other[key] = value
    return dropped, other


def log_counters(counters: Mapping[str, int], title: str) -> None:
    logging.info("%s (%d counters)", title, len(counters))
    for name, value in counters.items():
        logging.info("  %-60s %d", name, value)


class ProgressLog:
    """Logs a throughput line at most every `interval` seconds (worker-side progress)."""

    def __init__(self, what: str, interval: float = 30.0):
        self._what = what
        self._interval = interval
        self._start = None
        self._last = 0.0
        self._count = 0

    def add(self, n: int) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = self._last = now
        self._count += n
        if now - self._last >= self._interval:
            self._last = now
            elapsed = max(now - self._start, 1e-9)
            logging.info("%s: %d so far, %.1f/s", self._what, self._count,
                         self._count / elapsed)
