"""Step 3 of MergeDistill (paper §3.1, "Vocab Mapping"): teacher ids → student ids.

A scored copy comes out of its teacher in the teacher's id space; `map_to_student` converts its
input ids, gold ids and top-k prediction ids with the teacher's dense map from the student
vocabulary folder (`vocab.union.StudentVocab.maps[teacher]`, -1 = no student id). Every change
is counted (keys below, per teacher); nothing is dropped silently:

| key                      | what happened                                                     |
|--------------------------|-------------------------------------------------------------------|
| topk_entries             | real top-k entries mapped (a real slot's k entries)               |
| topk_no_student_id       | top-k entry without a student id: id -1, logit 0, others kept     |
| input_no_student_id      | real input token without a student id: replaced by [UNK]          |
| gold_no_student_id       | masked slot whose gold token has no student id: slot removed      |
| no_slot_left             | copy whose every slot was removed (the copy is dropped)           |

Only `[unusedN]` placeholders lack a student id (vocab.union), so the last four are rare: a
teacher predicting a placeholder among its top k, or masking's random replacement drawing one.

A gold-only language's copies (job config `tokenizer_teacher`) are never scored: they come here
straight from BuildMaskedExamples, in their tokenizer teacher's id space, and only their input
and gold ids are mapped (`teacher_outputs=False`); they are written without teacher fields.

Padding is normalised to the record schema's conventions: input positions beyond the mask get
[PAD] = 0, padding slots get position 0, gold 0, weight 0, top-k ids 0 and logits 0. Removed
slots are compacted (the remaining positions stay ascending, padding at the end).
"""

from __future__ import annotations

import collections
import dataclasses

import apache_beam as beam
import numpy as np

from beam_jobs import dead_letter as dl
from beam_jobs import metrics
from beam_jobs.records import ScoredRecord
from teacher_scoring.records import record_schema
from teacher_scoring.examples.tokenization import PAD, UNK
from vocab.union import NO_STUDENT_ID, SPECIAL_IDS

TOPK_ENTRIES = "topk_entries"
TOPK_NO_STUDENT_ID = "topk_no_student_id"
INPUT_NO_STUDENT_ID = "input_no_student_id"
GOLD_NO_STUDENT_ID = "gold_no_student_id"
NO_SLOT_LEFT = "no_slot_left"

# Keys that describe input dropped or changed (the manifest's `dropped`).
DROP_REASONS = (TOPK_NO_STUDENT_ID, INPUT_NO_STUDENT_ID, GOLD_NO_STUDENT_ID, NO_SLOT_LEFT)

STUDENT_PAD_ID = SPECIAL_IDS[PAD]
STUDENT_UNK_ID = SPECIAL_IDS[UNK]


class MappingError(ValueError):
    """A copy cannot be mapped (an id outside the teacher's vocabulary, a bad shape)."""


def _lookup(mapping: np.ndarray, ids: np.ndarray, teacher: str, field: str,
            example_id: str) -> np.ndarray:
    ids = np.asarray(ids)
    bad = (ids < 0) | (ids >= mapping.shape[0])
    if np.any(bad):
        raise MappingError(
            f"example {example_id!r} teacher {teacher!r}: {field} holds id "
            f"{int(ids[bad].reshape(-1)[0])} outside the teacher vocabulary "
            f"[0, {mapping.shape[0]})")
    return mapping[ids]


def map_to_student(example: record_schema.ScoredExample, mapping: np.ndarray,
                   counts: collections.Counter | None = None,
                   teacher_outputs: bool = True) -> record_schema.ScoredExample | None:
    """Maps a scored copy from its teacher's id space to the student's.

    Args:
      example: a ScoredExample with teacher outputs, ids in `example.teacher`'s space.
      mapping: the teacher's int32 map [teacher_vocab_size] (-1: no student id).
      counts: a Counter the keys of the module docstring are added to.
      teacher_outputs: False for a gold-only copy (no top-k fields: only input and gold ids
        are mapped, and the result has no teacher fields either).

    Returns:
      A new ScoredExample in the student id space, or None if no masked slot is left (counted
      as `no_slot_left`).

    Raises:
      MappingError: an id outside the teacher's vocabulary (the copy is bad, not the map).
    """
    if counts is None:
        counts = collections.Counter()
    teacher, eid = example.teacher, example.example_id
    input_mask = np.asarray(example.input_mask)
    real = input_mask > 0
    weights = np.asarray(example.masked_lm_weights, np.float32)
    p = weights.shape[0]
    if teacher_outputs:
        if example.teacher_topk_ids is None or example.teacher_topk_logits is None:
            raise MappingError(f"example {eid!r} teacher {teacher!r}: no teacher outputs (a "
                               "copy of a scored language must be scored before mapping)")
        topk_ids = np.asarray(example.teacher_topk_ids)
        topk_logits = np.asarray(example.teacher_topk_logits, np.float32)
        k = topk_ids.shape[-1]
        if topk_ids.shape != (p, k) or topk_logits.shape != (p, k):
            raise MappingError(f"example {eid!r} teacher {teacher!r}: top-k shapes "
                               f"{topk_ids.shape} / {topk_logits.shape} do not match {p} slots")

    input_ids = np.where(real, np.asarray(example.input_word_ids), 0)
    student_inputs = _lookup(mapping, input_ids, teacher, "input_word_ids", eid)
    missing_inputs = real & (student_inputs == NO_STUDENT_ID)
    if np.any(missing_inputs):
        counts[INPUT_NO_STUDENT_ID] += int(missing_inputs.sum())
    student_inputs = np.where(missing_inputs, STUDENT_UNK_ID, student_inputs)
    student_inputs = np.where(real, student_inputs, STUDENT_PAD_ID).astype(np.int32)

    slots = np.nonzero(weights > 0)[0]
    gold = _lookup(mapping, np.asarray(example.masked_lm_ids)[slots], teacher, "masked_lm_ids",
                   eid)
    keep = gold != NO_STUDENT_ID
    if not np.all(keep):
        counts[GOLD_NO_STUDENT_ID] += int((~keep).sum())
    slots, gold = slots[keep], gold[keep]
    if slots.size == 0:
        counts[NO_SLOT_LEFT] += 1
        return None

    n = slots.size
    positions = np.zeros([p], np.int32)
    gold_ids = np.zeros([p], np.int32)
    out_weights = np.zeros([p], np.float32)
    positions[:n] = np.asarray(example.masked_lm_positions)[slots]
    gold_ids[:n] = gold
    out_weights[:n] = weights[slots]
    mapped = dataclasses.replace(
        example,
        input_word_ids=student_inputs,
        input_mask=input_mask.astype(np.int32),
        input_type_ids=np.where(real, np.asarray(example.input_type_ids), 0).astype(np.int32),
        masked_lm_positions=positions,
        masked_lm_ids=gold_ids,
        masked_lm_weights=out_weights)
    if not teacher_outputs:
        return dataclasses.replace(mapped, teacher_topk_ids=None, teacher_topk_logits=None,
                                   teacher_loss=None)

    real_topk = topk_ids[slots]
    if np.any(real_topk < 0):
        # The scorer never returns negative ids for a real slot; a -1 here means the copy was
        # already mapped once (an upstream bug), which must not pass silently.
        raise MappingError(f"example {eid!r} teacher {teacher!r}: negative top-k id in a real "
                           f"slot before mapping")
    student_topk = _lookup(mapping, real_topk, teacher, "teacher_topk_ids", eid)
    dropped = student_topk == NO_STUDENT_ID
    counts[TOPK_ENTRIES] += int(student_topk.size)
    if np.any(dropped):
        counts[TOPK_NO_STUDENT_ID] += int(dropped.sum())

    out_topk = np.zeros([p, k], np.int32)
    out_logits = np.zeros([p, k], np.float32)
    out_topk[:n] = student_topk
    out_logits[:n] = np.where(dropped, 0.0, topk_logits[slots])
    return dataclasses.replace(mapped, teacher_topk_ids=out_topk, teacher_topk_logits=out_logits)


class _MapFn(beam.DoFn):
    """ScoredExample (teacher space) → ScoredRecord (student space, serialized)."""

    def __init__(self, maps, spec: record_schema.ShardSpec, gold_only_languages=()):
        self._maps = {name: np.asarray(m, np.int32) for name, m in maps.items()}
        self._spec = spec
        self._gold_spec = dataclasses.replace(spec, has_teacher_outputs=False)
        self._gold_only = frozenset(gold_only_languages)

    def setup(self):
        self._counters = metrics.Counters()

    def process(self, example):
        counts = collections.Counter()
        gold_only = example.language in self._gold_only
        try:
            mapped = map_to_student(example, self._maps[example.teacher], counts,
                                    teacher_outputs=not gold_only)
            record = None
            if mapped is not None:
                record = ScoredRecord(
                    language=mapped.language, example_id=mapped.example_id,
                    teacher=mapped.teacher,
                    teacher_loss=0.0 if gold_only else float(mapped.teacher_loss),
                    masked_tokens=mapped.num_predictions,
                    serialized=record_schema.serialize(
                        mapped, self._gold_spec if gold_only else self._spec),
                    real_tokens=int(np.sum(mapped.input_mask)),
                    word_loss=0.0 if gold_only else float(mapped.teacher_word_loss))
        except Exception as error:  # pylint: disable=broad-except
            self._counters.inc(example.language, example.teacher,
                               f"{metrics.DEAD_LETTER}/{dl.MAP_TO_STUDENT}")
            yield beam.pvalue.TaggedOutput(dl.DEAD_LETTER, dl.dead_letter(
                dl.MAP_TO_STUDENT, example.language, example.teacher, dl.error_reason(error),
                example))
            return
        self._counters.add(example.language, example.teacher, counts)
        if record is not None:
            self._counters.inc(example.language, example.teacher, metrics.MAPPED)
            yield record


class MapToStudentVocab(beam.PTransform):
    """PCollection[ScoredExample] (teacher space, scored) → tagged outputs `records`
    (ScoredRecord, student space) and `dead_letter`.

    Args:
      maps: teacher name → int32 map [teacher_vocab_size] (StudentVocab.maps).
      spec: the ShardSpec the records are serialized (and validated) with.
      gold_only_languages: languages whose copies are not scored (mapped and written without
        teacher fields).
    """

    RECORDS = "records"

    def __init__(self, maps, spec: record_schema.ShardSpec, gold_only_languages=()):
        super().__init__()
        self._maps = maps
        self._spec = spec
        self._gold_only = tuple(gold_only_languages)

    def expand(self, scored):
        outputs = scored | "MapIds" >> beam.ParDo(
            _MapFn(self._maps, self._spec, self._gold_only)).with_outputs(
                dl.DEAD_LETTER, main=self.RECORDS)
        return {self.RECORDS: outputs[self.RECORDS], dl.DEAD_LETTER: outputs[dl.DEAD_LETTER]}
