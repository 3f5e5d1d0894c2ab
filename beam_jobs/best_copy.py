"""SelectBestCopy: in `best` mode keep, per example, the copy with the lowest loss per word.

Paper §3.1: a language with several teachers gets one copy of every example per teacher
(`all`), or only the copy whose teacher is most confident about the gold tokens (`best`).

Copies of one example share the `example_id` (segmentation makes it teacher-independent) and
mask the same words (`masking.mask_shared_words`: the words are chosen once per example on the
spans every teacher's tokenization agrees on, and every copy masks all pieces of those words).
They are compared by the teacher's **loss per masked word** (`ScoredRecord.word_loss`): a
word's loss is the sum of the cross-entropies of its pieces, a copy's score the mean over its
masked words. Summing over a word's pieces makes a teacher that splits a word into more, easier
pieces pay for all of them, and the same words make the copies comparable: the choice reflects
which teacher predicts the text better, not how it segments it or which words it drew. (As all
copies have the same masked words, this is the copy with the lowest summed cross-entropy.)

Ties (equal loss) go to the teacher whose name sorts first, so the choice never depends on the
order the runner delivers the copies in. Languages with one teacher, and `all` mode, pass
through.
"""

from __future__ import annotations

from typing import Iterable

import apache_beam as beam

from beam_jobs import metrics
from beam_jobs.records import ScoredRecord


def best_of(copies: Iterable[ScoredRecord]) -> tuple[ScoredRecord, list[ScoredRecord]]:
    """(the kept copy, the others) by (word_loss, teacher, serialized bytes)."""
    ordered = sorted(copies, key=lambda r: (r.word_loss, r.teacher, r.serialized))
    return ordered[0], ordered[1:]


class _SelectFn(beam.DoFn):

    def setup(self):
        self._counters = metrics.Counters()

    def process(self, element):
        (language, _), copies = element
        kept, others = best_of(copies)
        if not others:
            self._counters.inc(language, kept.teacher, metrics.BEST_ONLY_COPY)
        self._counters.inc(language, kept.teacher, metrics.BEST_KEPT)
        for other in others:
            if other.teacher == kept.teacher:
                # The same document twice: identical copies, one is kept by WriteShards anyway.
                self._counters.inc(language, other.teacher, metrics.DUPLICATE_COPIES)
            else:
                self._counters.inc(language, other.teacher, metrics.BEST_DISCARDED)
        yield kept


class SelectBestCopy(beam.PTransform):
    """PCollection[ScoredRecord] → the same, one copy per example for `best_languages`.

    Args:
      best_languages: languages in `best` mode (those with >= 2 teachers when the job's
        copies_mode is `best`); records of other languages are passed through unchanged.
    """

    def __init__(self, best_languages: Iterable[str]):
        super().__init__()
        self._best = frozenset(best_languages)

    def expand(self, records):
        if not self._best:
            return records
        best = self._best
        selected, passed = (
            records | "SplitByMode" >> beam.Partition(
                lambda r, _: 0 if r.language in best else 1, 2))
        chosen = (selected
                  | "KeyByExample" >> beam.Map(lambda r: ((r.language, r.example_id), r))
                  | "GroupCopies" >> beam.GroupByKey()
                  | "KeepLowestWordLoss" >> beam.ParDo(_SelectFn()))
        return (chosen, passed) | "Merge" >> beam.Flatten()
