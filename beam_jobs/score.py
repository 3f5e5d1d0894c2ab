"""ScoreWithTeachers: every masked copy through its own teacher with Beam RunInference.

Step 2 of MergeDistill (paper §3.1, "Offline Teacher LM Evaluation"). The copies of all
languages are split by teacher and each teacher gets its own `RunInference` with a
`TeacherModelHandler` (one model per teacher). One RunInference per teacher rather than one
KeyedModelHandler with a KeyModelMapping per teacher: a language with two teachers feeds both
from the same fused bundle, and a keyed handler would cut every mixed batch into two padded
half-batches, while a per-teacher RunInference always batches one teacher's copies (exactly
`inference_batch_size` rows, only a bundle's last batch padded). It also gives each teacher its
own step, metrics namespace and model in the Dataflow UI.

Output: the scored copies (teacher id space, teacher fields filled, and `teacher_word_loss`, the
loss per masked word that `best` compares: `loss_per_word`), and dead letters for copies the
handler could not score (`ScoringFailure`) or batches RunInference itself failed on.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from beam_jobs import dead_letter as dl
from beam_jobs import metrics
from beam_jobs.teacher_model_handler import ScoringFailure, TeacherModelHandler

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


class ScoreWithTeachers(beam.PTransform):
    """PCollection[ScoredExample] (all teachers, teacher space) → tagged outputs
    `scored` (copies with teacher outputs) and `dead_letter`.

    Args:
      handlers: teacher name → its TeacherModelHandler.
    """

    def __init__(self, handlers: Mapping[str, TeacherModelHandler]):
        super().__init__()
        self._handlers = dict(handlers)

    def expand(self, examples):
        names = list(self._handlers)
        index = {name: i for i, name in enumerate(names)}
        per_teacher = examples | "ByTeacher" >> beam.Partition(
            lambda e, _: index[e.teacher], len(names))
        scored, letters = [], []
        for name, copies in zip(names, per_teacher):
            results, dlq = (copies
                            | f"RunInference[{name}]" >> RunInference(
                                self._handlers[name]).with_exception_handling())
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
