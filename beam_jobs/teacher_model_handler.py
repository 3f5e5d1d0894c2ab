"""A Beam RunInference ModelHandler for one MergeDistill teacher.

`TeacherModelHandler` loads a teacher on the worker (`teacher_scoring.teachers.loaders.load_teacher`,
the same call the launcher already made to validate it) and scores batches of masked copies with
`teacher_scoring.teachers.scoring.make_score_fn`: top-k ids and logits per masked slot and the teacher's
loss, in the teacher's id space. A worker in the launcher's process (DirectRunner `in_memory`)
reuses the launcher's teacher and scoring function, already traced at this batch shape
(`beam_jobs.loaded_teachers`); a worker elsewhere builds its own.

Static shapes: every call gets exactly `batch_size` rows ([B, S] inputs, [B, P] slots), so the
tf.function is traced once. A short batch (the end of a bundle) is padded by repeating its last
row; the padded rows' outputs are thrown away (counted as `job/<teacher>/padded_rows`). A row's
outputs do not depend on the other rows of its batch for the tested tiny teachers (the
determinism test), but they can in the last bits for larger ones (docs/scoring_job.md,
"Canonical batches"); the job therefore forms the batches from the data by default
(`canonical_batches`, `score.ScoreWithTeachers`), and hands them to RunInference through
`with_no_batching()`, which scores each given list of copies as one batch.

Failures are isolated to the record: a copy that does not fit the shapes or the teacher's
vocabulary is not scored, and if a whole batch raises it is retried one copy at a time; every
copy that still fails comes back as a `ScoringFailure` (the job sends it to the dead-letter
output) instead of failing the batch.

Scores the shards could not hold are failures too, so the job never writes them: a NaN or
infinite top-k logit of a masked slot or teacher loss (`<lang>/<teacher>/nonfinite_scores`), and,
with `logits_dtype: float16`, a logit that float16 cannot represent (|logit| > 65504 rounds to
inf; `<lang>/<teacher>/float16_overflow`). Both counters go to the manifest's `dropped`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from beam_jobs import loaded_teachers, metrics
from teacher_scoring.records import record_schema

# Counter keys of copies whose scores cannot be written (the manifest's `dropped`).
NONFINITE_SCORES = "nonfinite_scores"
FLOAT16_OVERFLOW = "float16_overflow"
DROP_REASONS = (NONFINITE_SCORES, FLOAT16_OVERFLOW)

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
      compute_dtype: "float32" | "bfloat16" (`scoring.make_score_fn`: a bfloat16 encoder, a
        float32 MLM head; tf-models BERT teachers only).
      logits_dtype: how the shards store the logits ("float32" | "float16"): with float16, a
        copy with a logit beyond float16's range is a failure (module docstring).
    """

    def __init__(self, name: str, path: str, format: str,  # pylint: disable=redefined-builtin
                 languages: Sequence[str],
                 seq_length: int, max_predictions_per_seq: int, top_k: int, batch_size: int,
                 jit_compile: bool = False, logits_dtype: str = "float32",
                 compute_dtype: str = "float32"):
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
        if logits_dtype not in record_schema.LOGITS_DTYPES:
            raise ValueError(f"logits_dtype must be one of {record_schema.LOGITS_DTYPES}, got "
                             f"{logits_dtype!r}")
        self._logits_dtype = logits_dtype
        if compute_dtype not in ("float32", "bfloat16"):   # scoring.COMPUTE_DTYPES (no TF here)
            raise ValueError(f"compute_dtype must be one of ['float32', 'bfloat16'], got "
                             f"{compute_dtype!r}")
        self._compute_dtype = compute_dtype
        self._counters = None
        self._progress = None

    def __repr__(self):
        return f"TeacherModelHandler({self._name!r}, {self._path!r})"

    @property
    def teacher_name(self) -> str:
        return self._name

    @property
    def batch_size(self) -> int:
        """Rows per teacher call (RunInference's batches, or the canonical batches of
        `score.ScoreWithTeachers` given to `with_no_batching()`)."""
        return self._batch_size

    @property
    def scoring_key(self) -> loaded_teachers.ScoringKey:
        """The teacher and scoring function this handler loads (`loaded_teachers`)."""
        return loaded_teachers.ScoringKey(
            loaded_teachers.teacher_key(self._path, self._format, self._name, self._languages),
            self._top_k, self._jit_compile, self._compute_dtype)

    def load_model(self) -> LoadedTeacher:
        # The launcher's teacher and scoring function when this process holds them (in_memory:
        # the launcher checked it with this very function and batch shape), else new ones.
        key = self.scoring_key
        reused = loaded_teachers.held(key)
        teacher, score_fn = loaded_teachers.get(key, keep=False)
        logging.info("%s teacher %s from %s (%d tokens, %s)",
                     "reusing the launcher's" if reused else "loaded", self._name, self._path,
                     teacher.vocab_size, self._compute_dtype)
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

    def _unwritable(self, example: record_schema.ScoredExample,
                    scores: TeacherScores) -> Optional[tuple[str, str]]:
        """(counter key, reason) if the shards cannot hold these scores, else None."""
        return unwritable_scores(example.masked_lm_weights, scores.topk_logits,
                                 scores.teacher_loss, self._logits_dtype)

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
                if isinstance(score, TeacherScores):
                    problem = self._unwritable(batch[i], score)
                    if problem is not None:
                        key, reason = problem
                        self._counters.inc(batch[i].language, self._name, key)
                        score = ScoringFailure(reason)
                results[i] = score
        self._progress.add(len(batch))
        return [PredictionResult(example, result, self._name)
                for example, result in zip(batch, results)]


def unwritable_scores(masked_lm_weights, topk_logits, teacher_loss,
                      logits_dtype: str) -> Optional[tuple[str, str]]:
    """Why a copy's scores cannot be written, as (counter key, reason), or None if they can.

    Args:
      masked_lm_weights: [P] the copy's slot weights (> 0: a masked slot).
      topk_logits: [P, k] its top-k logits; only the masked slots' rows are checked (the
        padding rows are zeroed by the scorer).
      teacher_loss: its scalar teacher loss.
      logits_dtype: the shards' logits dtype ("float16": values must survive the cast).
    """
    real = np.asarray(masked_lm_weights) > 0
    logits = np.asarray(topk_logits, np.float32)[real]
    finite = np.isfinite(logits)
    if not np.all(finite):
        slot = int(np.nonzero(~finite.all(axis=-1))[0][0])
        return NONFINITE_SCORES, (
            f"non-finite teacher logits: {int((~finite).sum())} of the {logits.size} top-k "
            f"logits of the masked slots are NaN or infinite (first in masked slot {slot}: "
            f"{logits[slot].tolist()})")
    if not np.isfinite(teacher_loss):
        return NONFINITE_SCORES, f"non-finite teacher loss {teacher_loss}"
    if logits_dtype == "float16":
        with np.errstate(over="ignore"):
            overflow = ~np.isfinite(logits.astype(np.float16))
        if np.any(overflow):
            largest = float(np.abs(logits).max())
            return FLOAT16_OVERFLOW, (
                f"teacher logit {largest:.6g} overflows float16 (|logit| > 65504 becomes inf; "
                f"{int(overflow.sum())} of the {logits.size} top-k logits of the masked slots): "
                "logits_dtype is float16; use float32 for this teacher's scale")
    return None
