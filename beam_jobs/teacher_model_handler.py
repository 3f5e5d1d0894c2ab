"""A Beam RunInference ModelHandler for one MergeDistill teacher.

`TeacherModelHandler` loads a teacher on the worker (`teacher_scoring.loaders.load_teacher`,
the same call the launcher already made to validate it) and scores batches of masked copies with
`teacher_scoring.scoring.make_score_fn`: top-k ids and logits per masked slot and the teacher's
loss, in the teacher's id space.

Static shapes: every call gets exactly `batch_size` rows ([B, S] inputs, [B, P] slots), so the
tf.function is traced once. A short batch (the end of a bundle) is padded by repeating its last
row; the padded rows' outputs are thrown away (counted as `job/<teacher>/padded_rows`). A row's
outputs do not depend on the other rows of its batch (checked by the determinism test), so the
results do not depend on how the runner batches.

Failures are isolated to the record: a copy that does not fit the shapes or the teacher's
vocabulary is not scored, and if a whole batch raises it is retried one copy at a time; every
copy that still fails comes back as a `ScoringFailure` (the job sends it to the dead-letter
output) instead of failing the batch.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from beam_jobs import metrics
from teacher_scoring import record_schema

_INT_FIELDS = ("input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions",
               "masked_lm_ids")


@dataclasses.dataclass(frozen=True)
class ScoringFailure:
    """Why one copy could not be scored (PredictionResult.inference of a failed copy)."""

    reason: str


@dataclasses.dataclass(frozen=True)
class TeacherScores:
    """One copy's teacher outputs (teacher id space): [P, k] ids and logits, scalar loss."""

    topk_ids: np.ndarray
    topk_logits: np.ndarray
    teacher_loss: float


class LoadedTeacher:
    """What `load_model` returns: the teacher and its compiled scoring function."""

    def __init__(self, teacher, score_fn):
        self.teacher = teacher
        self.score_fn = score_fn
        self.vocab_size = teacher.vocab_size


class TeacherModelHandler(ModelHandler[record_schema.ScoredExample, PredictionResult,
                                       LoadedTeacher]):
    """ModelHandler: ScoredExample (teacher space, no teacher outputs) → TeacherScores.

    Args:
      name: the teacher's name (records, maps, metrics).
      path, format, languages: passed to `load_teacher`.
      seq_length, max_predictions_per_seq, top_k: S, P, k.
      batch_size: rows per call (RunInference batches of exactly this size, last one padded).
      jit_compile: XLA-compile the scoring function.
    """

    def __init__(self, name: str, path: str, format: str,  # pylint: disable=redefined-builtin
                 languages: Sequence[str],
                 seq_length: int, max_predictions_per_seq: int, top_k: int, batch_size: int,
                 jit_compile: bool = False):
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self._name = name
        self._path = path
        self._format = format
        self._languages = tuple(languages)
        self._seq_length = seq_length
        self._max_predictions = max_predictions_per_seq
        self._top_k = top_k
        self._batch_size = batch_size
        self._jit_compile = jit_compile
        self._counters = None
        self._progress = None

    def __repr__(self):
        return f"TeacherModelHandler({self._name!r}, {self._path!r})"

    @property
    def teacher_name(self) -> str:
        return self._name

    def load_model(self) -> LoadedTeacher:
        # Imported here: the launcher process does not need TF models to build the graph.
        from teacher_scoring import scoring  # pylint: disable=import-outside-toplevel
        from teacher_scoring.loaders import load_teacher  # pylint: disable=import-outside-toplevel

        teacher = load_teacher(self._path, format=self._format, name=self._name,
                               languages=self._languages)
        score_fn = scoring.make_score_fn(teacher, top_k=self._top_k,
                                         jit_compile=self._jit_compile)
        logging.info("loaded teacher %s from %s (%d tokens)", self._name, self._path,
                     teacher.vocab_size)
        return LoadedTeacher(teacher, score_fn)

    def get_metrics_namespace(self) -> str:
        return f"RunInference_{self._name}"

    def get_num_bytes(self, batch: Sequence[record_schema.ScoredExample]) -> int:
        return sum(int(np.asarray(getattr(e, f)).nbytes) for e in batch for f in _INT_FIELDS)

    # ---------------------------------------------------------------------------- inference

    def _check(self, example: record_schema.ScoredExample, vocab_size: int) -> Optional[str]:
        s, p = self._seq_length, self._max_predictions
        for field, shape in (("input_word_ids", (s,)), ("input_mask", (s,)),
                             ("input_type_ids", (s,)), ("masked_lm_positions", (p,)),
                             ("masked_lm_ids", (p,)), ("masked_lm_weights", (p,))):
            got = np.shape(getattr(example, field))
            if got != shape:
                return f"{field} has shape {got}, expected {shape}"
        for field in ("input_word_ids", "masked_lm_ids"):
            ids = np.asarray(getattr(example, field))
            if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
                return (f"{field} holds ids outside the teacher vocabulary [0, {vocab_size}): "
                        f"min {ids.min()}, max {ids.max()}")
        positions = np.asarray(example.masked_lm_positions)
        if positions.min() < 0 or positions.max() >= s:
            return f"masked_lm_positions outside [0, {s})"
        if not np.any(np.asarray(example.masked_lm_weights) > 0):
            return "no masked slot (all masked_lm_weights are 0)"
        return None

    def _score(self, examples: Sequence[record_schema.ScoredExample],
               model: LoadedTeacher) -> list[TeacherScores]:
        n = len(examples)
        rows = list(examples) + [examples[-1]] * (self._batch_size - n)
        batch = {field: np.stack([np.asarray(getattr(e, field), np.int32) for e in rows])
                 for field in _INT_FIELDS}
        batch["masked_lm_weights"] = np.stack(
            [np.asarray(e.masked_lm_weights, np.float32) for e in rows])
        out = model.score_fn(batch)
        topk_ids = np.asarray(out["topk_ids"])
        topk_logits = np.asarray(out["topk_logits"])
        loss = np.asarray(out["teacher_loss"])
        want = (self._batch_size, self._max_predictions, self._top_k)
        if topk_ids.shape != want or topk_logits.shape != want or loss.shape != want[:1]:
            raise ValueError(f"teacher {self._name!r} scoring returned shapes {topk_ids.shape}, "
                             f"{topk_logits.shape}, {loss.shape}; expected {want}")
        self._counters.inc(None, self._name, metrics.BATCHES)
        self._counters.inc(None, self._name, metrics.PADDED_ROWS, self._batch_size - n)
        return [TeacherScores(topk_ids[i].astype(np.int32), topk_logits[i].astype(np.float32),
                              float(loss[i])) for i in range(n)]

    def run_inference(self, batch: Sequence[record_schema.ScoredExample], model: LoadedTeacher,
                      inference_args: Optional[dict[str, Any]] = None
                      ) -> Iterable[PredictionResult]:
        if self._counters is None:
            self._counters = metrics.Counters()
            self._progress = metrics.ProgressLog(f"teacher {self._name}: sequences scored")
        results: list[Any] = [None] * len(batch)
        valid = []
        for i, example in enumerate(batch):
            problem = self._check(example, model.vocab_size)
            if problem is None:
                valid.append(i)
            else:
                results[i] = ScoringFailure(f"invalid copy: {problem}")
        for start in range(0, len(valid), self._batch_size):
            chunk = valid[start:start + self._batch_size]
            try:
                scores = self._score([batch[i] for i in chunk], model)
            except Exception as error:  # pylint: disable=broad-except
                if len(chunk) == 1:
                    results[chunk[0]] = ScoringFailure(f"{type(error).__name__}: {error}")
                    continue
                logging.warning("teacher %s: a batch of %d failed (%s); scoring its copies one "
                                "by one", self._name, len(chunk), error)
                scores = []
                for i in chunk:
                    try:
                        scores.extend(self._score([batch[i]], model))
                    except Exception as single_error:  # pylint: disable=broad-except
                        scores.append(ScoringFailure(
                            f"{type(single_error).__name__}: {single_error}"))
            for i, score in zip(chunk, scores):
                if isinstance(score, TeacherScores) and not np.isfinite(score.teacher_loss):
                    score = ScoringFailure(f"non-finite teacher loss {score.teacher_loss}")
                results[i] = score
        self._progress.add(len(batch))
        return [PredictionResult(example, result, self._name)
                for example, result in zip(batch, results)]
