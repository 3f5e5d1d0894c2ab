"""ScoreWithTeachers: every masked copy through its own teacher with Beam RunInference.

Step 2 of MergeDistill (paper §3.1, "Offline Teacher LM Evaluation"). The copies of all
languages are split by teacher and each teacher gets its own `RunInference` with a
`TeacherModelHandler` (one model per teacher). One RunInference per teacher rather than one
KeyedModelHandler with a KeyModelMapping per teacher: a language with two teachers feeds both
from the same fused bundle, and a keyed handler would cut every mixed batch into two padded
half-batches, while a per-teacher RunInference always batches one teacher's copies (exactly
`inference_batch_size` rows, only a bundle's last batch padded). It also gives each teacher its
own step, metrics namespace and model in the Dataflow UI.

Canonical batches (job config `canonical_batches`, on by default): which copies share a batch,
and at which row, is then decided by the data alone, not by the runner's bundling. A teacher's
copies are keyed by (language, output shard) — the writer's `sha256(example_id) mod
num_shards`, so a group is at most one shard's copies of one teacher, held in a worker's memory
while it is sorted (≈ 7 KB a copy at S = 512) — grouped (a GroupByKey: a shuffle on
Dataflow), each group sorted by (example id, a digest of the copy's content), and cut into
batches of exactly `inference_batch_size` copies (a group's last batch padded as usual); a
Reshuffle spreads the batches over the workers again, and RunInference scores each as it is
(`TeacherModelHandler.with_no_batching()`: the same handler, model loading and counters). Why:
a teacher's outputs for a row can depend, in the last bits, on the other rows of its batch
(docs/scoring_job.md, "Canonical batches": 7 of 469 records apart between the DirectRunner and
Dask for a hidden-128 teacher at S 128); with the batches fixed by the data, the shards are the
same bytes on every runner and bundling. Without it, RunInference batches each bundle's copies
as they arrive (no shuffle before scoring).

Output: the scored copies (teacher id space, teacher fields filled, and `teacher_word_loss`, the
loss per masked word that `best` compares: `loss_per_word`), and dead letters for copies the
handler could not score (`ScoringFailure`) or batches RunInference itself failed on.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Mapping, Optional

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import RunInference

from beam_jobs import dead_letter as dl
from beam_jobs import metrics
from beam_jobs.teacher_model_handler import ScoringFailure, TeacherModelHandler
from teacher_scoring.examples.create_examples import example_hash
from teacher_scoring.records import record_schema

SCORED = "scored"


def loss_per_word(teacher_loss: float, num_predictions: int, num_masked_words) -> float:
    """The teacher's loss per masked word: a word's loss is the sum of the cross-entropies of
    its masked pieces, and the copy's is their mean over the masked words,
    = teacher_loss (mean per piece) * num_predictions / num_masked_words.

    Raises:
      ValueError: no word count (a copy not built by teacher_scoring.examples.masking), or not between 1
        and the number of masked pieces.
    """
    if num_masked_words is None or not 1 <= num_masked_words <= num_predictions:
        raise ValueError(f"masked word count {num_masked_words!r} is not in [1, "
                         f"{num_predictions}] (the number of masked pieces)")
    return float(teacher_loss) * num_predictions / num_masked_words


class _AttachScoresFn(beam.DoFn):
    """PredictionResult → the copy with its teacher outputs, or a dead letter."""

    def __init__(self, teacher: str):
        self._teacher = teacher

    def setup(self):
        self._counters = metrics.Counters()

    def process(self, result):
        example, scores = result.example, result.inference
        if isinstance(scores, ScoringFailure):
            self._counters.inc(example.language, self._teacher,
                               f"{metrics.DEAD_LETTER}/{dl.SCORE}")
            yield beam.pvalue.TaggedOutput(dl.DEAD_LETTER, dl.dead_letter(
                dl.SCORE, example.language, self._teacher, scores.reason, example))
            return
        try:
            word_loss = loss_per_word(scores.teacher_loss, example.num_predictions,
                                      example.num_masked_words)
        except ValueError as error:
            self._counters.inc(example.language, self._teacher,
                               f"{metrics.DEAD_LETTER}/{dl.SCORE}")
            yield beam.pvalue.TaggedOutput(dl.DEAD_LETTER, dl.dead_letter(
                dl.SCORE, example.language, self._teacher,
                f"{example.example_id}: {error}", example))
            return
        self._counters.inc(example.language, self._teacher, metrics.SCORED)
        yield dataclasses.replace(example, teacher=self._teacher,
                                  teacher_topk_ids=scores.topk_ids,
                                  teacher_topk_logits=scores.topk_logits,
                                  teacher_loss=scores.teacher_loss,
                                  teacher_word_loss=word_loss)


def _failed_batch_letters(element, teacher: str):
    """RunInference's own DLQ entries: (batch, exception) → one dead letter per copy."""
    batch, error = element
    if isinstance(error, BaseException):
        error = dl.error_reason(error)
    reason = f"RunInference failed on a batch: {error}"
    counters = metrics.Counters()
    for example in batch:
        counters.inc(example.language, teacher, f"{metrics.DEAD_LETTER}/{dl.SCORE}")
        yield dl.dead_letter(dl.SCORE, example.language, teacher, reason, example)


# The fields that make a copy what its teacher scores (teacher space), in a fixed order.
_CONTENT_FIELDS = ("input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions",
                   "masked_lm_ids", "masked_lm_weights")


def canonical_group(example: record_schema.ScoredExample,
                    num_shards: Mapping[str, int]) -> tuple[str, int]:
    """The canonical-batching group of a copy: (language, the output shard of its example id),
    the writer's `records.shard_of`."""
    return example.language, example_hash(example.example_id) % num_shards.get(
        example.language, 1)


def canonical_order(example: record_schema.ScoredExample) -> tuple:
    """The order of a group's copies: example id, then a digest of the copy's content (copies
    of a repeated document share an id; the digest orders them whatever the input order, and
    identical copies are interchangeable)."""
    digest = hashlib.sha256()
    for field in _CONTENT_FIELDS:
        digest.update(np.ascontiguousarray(getattr(example, field)).tobytes())
    return example.language, example.example_id, digest.digest()


def _keyed_by_group(example, num_shards):
    return canonical_group(example, num_shards), example


class _CutBatchesFn(beam.DoFn):
    """(group, copies) → the group's copies in `canonical_order`, in lists of `batch_size`
    (the last one shorter; the handler pads it)."""

    def __init__(self, batch_size: int):
        self._batch_size = batch_size

    def process(self, element):
        _, copies = element
        ordered = sorted(copies, key=canonical_order)
        for start in range(0, len(ordered), self._batch_size):
            yield ordered[start:start + self._batch_size]


class ScoreWithTeachers(beam.PTransform):
    """PCollection[ScoredExample] (all teachers, teacher space) → tagged outputs
    `scored` (copies with teacher outputs) and `dead_letter`.

    Args:
      handlers: teacher name → its TeacherModelHandler.
      canonical_batches: language → its output shard count, to form the batches from the
        data alone (module docstring); None: RunInference batches each bundle's copies.
    """

    def __init__(self, handlers: Mapping[str, TeacherModelHandler],
                 canonical_batches: Optional[Mapping[str, int]] = None):
        super().__init__()
        self._handlers = dict(handlers)
        self._canonical = None if canonical_batches is None else dict(canonical_batches)

    def expand(self, examples):
        names = list(self._handlers)
        index = {name: i for i, name in enumerate(names)}
        per_teacher = examples | "ByTeacher" >> beam.Partition(
            lambda e, _: index[e.teacher], len(names))
        scored, letters = [], []
        for name, copies in zip(names, per_teacher):
            handler = self._handlers[name]
            if self._canonical is not None:
                copies = (copies
                          | f"KeyByGroup[{name}]" >> beam.Map(_keyed_by_group,
                                                              self._canonical)
                          | f"GroupForBatches[{name}]" >> beam.GroupByKey()
                          | f"CutBatches[{name}]" >> beam.ParDo(
                              _CutBatchesFn(handler.batch_size))
                          | f"SpreadBatches[{name}]" >> beam.Reshuffle())
                handler = handler.with_no_batching()
            results, dlq = (copies
                            | f"RunInference[{name}]" >> RunInference(
                                handler).with_exception_handling())
            attached = results | f"AttachScores[{name}]" >> beam.ParDo(
                _AttachScoresFn(name)).with_outputs(dl.DEAD_LETTER, main=SCORED)
            scored.append(attached[SCORED])
            letters.append(attached[dl.DEAD_LETTER])
            letters.append(dlq.failed_inferences
                           | f"FailedBatches[{name}]" >> beam.FlatMap(_failed_batch_letters,
                                                                       name))
        return {
            SCORED: scored | "FlattenScored" >> beam.Flatten(),
            dl.DEAD_LETTER: letters | "FlattenDeadLetters" >> beam.Flatten(),
        }
