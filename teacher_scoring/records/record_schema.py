"""The scored-example record: one tf.train.Example per masked sequence.

This is the only module that knows how a scored example is laid out on disk. The scoring job
writes records with `serialize`, the student and every tool read them with `parse_batch` /
`parse_example` / `deserialize`. See WORKSPACE.md ("The record schema") for the field-by-field
description.

Static shapes (what TPUs need): S = seq_length, P = max_predictions_per_seq, k = top_k.

| feature               | dtype on disk            | shape  | id space                        |
|-----------------------|--------------------------|--------|---------------------------------|
| input_word_ids        | int64                    | [S]    | manifest `id_space`             |
| input_mask            | int64                    | [S]    |                                 |
| input_type_ids        | int64                    | [S]    |                                 |
| masked_lm_positions   | int64                    | [P]    | positions into the sequence     |
| masked_lm_ids         | int64                    | [P]    | manifest `id_space` (gold ids)  |
| masked_lm_weights     | float32                  | [P]    | 1.0 real slot, 0.0 padding      |
| teacher_topk_ids      | int64                    | [P*k]  | manifest `id_space`             |
| teacher_topk_logits   | float32, or float16 raw  | [P*k]  | raw logits (not probabilities)  |
| teacher_loss          | float32                  | []     | teacher's mean CE per piece     |
| language              | bytes                    | []     | e.g. b"en"                      |
| teacher               | bytes                    | []     | teacher name                    |
| example_id            | bytes                    | []     | stable across teachers          |

The first six are tf-models-official's v2 pretraining feature names, so
`official.nlp.data.pretrain_dataloader.BertPretrainDataLoader(use_v2_feature_names=True)` reads
the gold part of a shard as it is.

`teacher_loss` is the teacher's cross-entropy on the gold ids, weighted mean over the real slots
(per masked *piece*), in every copies mode. What `best` compares is the loss per masked *word*
(`ScoredExample.teacher_word_loss`, computed by the scoring job, not stored): the copies of an
example mask the same words, so of two copies the one with the lower per-word loss is also the
one with the lower `teacher_loss * (number of real slots)` (summed CE over the same words).

Validity of a top-k entry: entry (p, j) is real iff `masked_lm_weights[p] > 0` and
`teacher_topk_ids[p, j] >= 0`. Writers put id 0 / logit 0 in padding slots (cheap varints) and
`INVALID_ID` (-1) for an entry dropped inside a real slot (e.g. a teacher token with no student
id). With float16 logits the values are stored as the raw little-endian bytes of a float16 array
(one bytes feature), which halves their size; readers always get float32 back. `validate` (hence
every writer) refuses non-finite weights, logits and losses, and, for float16, logits beyond its
range (|x| > 65504 would be stored as inf).

Records written without teacher outputs (`ShardSpec.has_teacher_outputs=False`, plain MLM data
used to pretrain a teacher) omit the three teacher fields.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import tensorflow as tf

SCHEMA_VERSION = 1
INVALID_ID = -1
LOGITS_DTYPES = ("float32", "float16")

# tf-models-official v2 feature names.
INPUT_WORD_IDS = "input_word_ids"
INPUT_MASK = "input_mask"
INPUT_TYPE_IDS = "input_type_ids"
MASKED_LM_POSITIONS = "masked_lm_positions"
MASKED_LM_IDS = "masked_lm_ids"
MASKED_LM_WEIGHTS = "masked_lm_weights"
# MergeDistill fields.
TEACHER_TOPK_IDS = "teacher_topk_ids"
TEACHER_TOPK_LOGITS = "teacher_topk_logits"
TEACHER_LOSS = "teacher_loss"
LANGUAGE = "language"
TEACHER = "teacher"
EXAMPLE_ID = "example_id"


class RecordError(ValueError):
    """A record does not match the schema (wrong shape, dtype or value)."""


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    """The static shapes and storage options shared by every record of a set of shards."""

    seq_length: int
    max_predictions_per_seq: int
    top_k: int = 8
    logits_dtype: str = "float32"
    has_teacher_outputs: bool = True

    def __post_init__(self):
        for name in ("seq_length", "max_predictions_per_seq", "top_k"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise RecordError(f"ShardSpec.{name} must be a positive integer, got {value!r}")
        if self.max_predictions_per_seq > self.seq_length:
            raise RecordError(
                f"ShardSpec.max_predictions_per_seq={self.max_predictions_per_seq} exceeds "
                f"seq_length={self.seq_length}")
        if self.logits_dtype not in LOGITS_DTYPES:
            raise RecordError(
                f"ShardSpec.logits_dtype must be one of {LOGITS_DTYPES}, got {self.logits_dtype!r}")


@dataclasses.dataclass
class ScoredExample:
    """One masked sequence with its teacher scores, as NumPy arrays.

    Shapes: input_word_ids/input_mask/input_type_ids [S] int32; masked_lm_positions/masked_lm_ids
    [P] int32; masked_lm_weights [P] float32; teacher_topk_ids [P, k] int32;
    teacher_topk_logits [P, k] float32; teacher_loss scalar float (mean CE per masked piece).
    """

    input_word_ids: np.ndarray
    input_mask: np.ndarray
    input_type_ids: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    masked_lm_weights: np.ndarray
    language: str
    teacher: str
    example_id: str
    teacher_topk_ids: np.ndarray | None = None
    teacher_topk_logits: np.ndarray | None = None
    teacher_loss: float | None = None
    # In memory only (not a feature on disk): set by masking and by the scoring job.
    # num_masked_words: the words with a masked piece (the shared words of a language with
    #   several teachers: the same number in every copy of an example).
    # teacher_word_loss: the teacher's loss per masked word (sum of the CE of the word's masked
    #   pieces, mean over the masked words = teacher_loss * masked pieces / num_masked_words),
    #   what `best` compares.
    num_masked_words: int | None = None
    teacher_word_loss: float | None = None

    @property
    def num_predictions(self) -> int:
        """Number of real (weight > 0) masked slots."""
        return int(np.count_nonzero(np.asarray(self.masked_lm_weights) > 0))

    def __reduce__(self):
        """Pickles the NumPy fields as one buffer (`_unpickle_scored_example`): a Beam runner
        encodes a copy with pickle wherever it crosses a stage boundary (a GroupByKey, a
        Reshuffle), and nine arrays pickled one by one cost several times as much CPU. The
        copy comes back equal: the same dtypes (byte order included), shapes and values, in
        C-contiguous, aligned, writable arrays; the other fields as they were."""
        arrays, values, chunks, offset = [], [], [], 0
        for name, value in self.__dict__.items():
            if type(value) is np.ndarray and not value.dtype.hasobject:
                pad = -offset % _PICKLE_ALIGNMENT
                if pad:
                    chunks.append(bytes(pad))
                    offset += pad
                arrays.append((name, value.dtype.str, value.shape, value.size, offset))
                chunks.append(value.tobytes())
                offset += value.nbytes
            else:
                values.append((name, value))
        return _unpickle_scored_example, (b"".join(chunks), tuple(arrays), tuple(values))


# Offsets of the arrays in a pickled ScoredExample's buffer are multiples of this.
_PICKLE_ALIGNMENT = 16


def _unpickle_scored_example(buffer: bytes, arrays, values) -> ScoredExample:
    """The ScoredExample `ScoredExample.__reduce__` pickled."""
    data = bytearray(buffer)    # writable arrays, as unpickled NumPy arrays are
    example = ScoredExample.__new__(ScoredExample)
    fields = example.__dict__
    fields.update(values)
    for name, dtype, shape, size, offset in arrays:
        fields[name] = np.frombuffer(data, dtype, size, offset).reshape(shape)
    return example


# The values go to protobuf as Python numbers (`tolist`): it reads NumPy scalars one by one
# several times slower (a float32 array ~5x), and stores the same values either way.
def _int_feature(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(
        value=np.asarray(values).reshape(-1).tolist()))


def _float_feature(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(
        value=np.asarray(values).reshape(-1).tolist()))


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _check_shape(example: ScoredExample, field: str, shape: tuple[int, ...]):
    value = getattr(example, field)
    if value is None:
        raise RecordError(f"example {example.example_id!r}: field {field!r} is missing")
    got = np.shape(value)
    if got != shape:
        raise RecordError(
            f"example {example.example_id!r}: field {field!r} has shape {got}, expected {shape}")


def validate(example: ScoredExample, spec: ShardSpec) -> None:
    """Raises RecordError if `example` does not fit `spec`."""
    s, p, k = spec.seq_length, spec.max_predictions_per_seq, spec.top_k
    for field in (INPUT_WORD_IDS, INPUT_MASK, INPUT_TYPE_IDS):
        _check_shape(example, field, (s,))
    for field in (MASKED_LM_POSITIONS, MASKED_LM_IDS, MASKED_LM_WEIGHTS):
        _check_shape(example, field, (p,))
    positions = np.asarray(example.masked_lm_positions)
    if positions.size and (positions.min() < 0 or positions.max() >= s):
        raise RecordError(
            f"example {example.example_id!r}: masked_lm_positions out of range [0, {s}): "
            f"{positions.tolist()}")
    if not np.all(np.isfinite(np.asarray(example.masked_lm_weights, np.float32))):
        raise RecordError(f"example {example.example_id!r}: masked_lm_weights must be finite, "
                          f"got {np.asarray(example.masked_lm_weights).tolist()}")
    if spec.has_teacher_outputs:
        _check_shape(example, TEACHER_TOPK_IDS, (p, k))
        _check_shape(example, TEACHER_TOPK_LOGITS, (p, k))
        if example.teacher_loss is None or not np.isfinite(example.teacher_loss):
            raise RecordError(
                f"example {example.example_id!r}: teacher_loss must be a finite number, got "
                f"{example.teacher_loss!r}")
        logits = np.asarray(example.teacher_topk_logits, np.float32)
        if not np.all(np.isfinite(logits)):
            raise RecordError(f"example {example.example_id!r}: teacher_topk_logits hold "
                              f"{int((~np.isfinite(logits)).sum())} NaN/infinite value(s)")
        if spec.logits_dtype == "float16":
            with np.errstate(over="ignore"):
                overflow = ~np.isfinite(logits.astype(np.float16))
            if np.any(overflow):
                raise RecordError(
                    f"example {example.example_id!r}: teacher_topk_logits hold "
                    f"{int(overflow.sum())} value(s) beyond float16's range (max |logit| "
                    f"{float(np.abs(logits).max()):.6g} > 65504) and logits_dtype is float16")
    for field in (LANGUAGE, TEACHER, EXAMPLE_ID):
        if not isinstance(getattr(example, field), str) or not getattr(example, field):
            raise RecordError(f"example {example.example_id!r}: {field!r} must be a non-empty str")


def to_tf_example(example: ScoredExample, spec: ShardSpec) -> tf.train.Example:
    """Builds the tf.train.Example for `example` (validated against `spec`)."""
    validate(example, spec)
    features = {
        INPUT_WORD_IDS: _int_feature(example.input_word_ids),
        INPUT_MASK: _int_feature(example.input_mask),
        INPUT_TYPE_IDS: _int_feature(example.input_type_ids),
        MASKED_LM_POSITIONS: _int_feature(example.masked_lm_positions),
        MASKED_LM_IDS: _int_feature(example.masked_lm_ids),
        MASKED_LM_WEIGHTS: _float_feature(np.asarray(example.masked_lm_weights, np.float32)),
        LANGUAGE: _bytes_feature(example.language.encode("utf-8")),
        TEACHER: _bytes_feature(example.teacher.encode("utf-8")),
        EXAMPLE_ID: _bytes_feature(example.example_id.encode("utf-8")),
    }
    if spec.has_teacher_outputs:
        features[TEACHER_TOPK_IDS] = _int_feature(example.teacher_topk_ids)
        logits = np.asarray(example.teacher_topk_logits, np.float32).reshape(-1)
        if spec.logits_dtype == "float16":
            features[TEACHER_TOPK_LOGITS] = _bytes_feature(logits.astype("<f2").tobytes())
        else:
            features[TEACHER_TOPK_LOGITS] = _float_feature(logits)
        features[TEACHER_LOSS] = _float_feature([example.teacher_loss])
    return tf.train.Example(features=tf.train.Features(feature=features))


def serialize(example: ScoredExample, spec: ShardSpec) -> bytes:
    """The serialized tf.train.Example bytes of `example`.

    Deterministic: the feature map is written in a fixed order, so the same example gives the
    same bytes in every process (protobuf's default map order is not stable across processes),
    which is what byte-identical shards need.
    """
    return to_tf_example(example, spec).SerializeToString(deterministic=True)


def feature_spec(spec: ShardSpec) -> dict[str, tf.io.FixedLenFeature]:
    """The `tf.io.parse_example` feature spec of records written with `spec`."""
    s, p, k = spec.seq_length, spec.max_predictions_per_seq, spec.top_k
    features = {
        INPUT_WORD_IDS: tf.io.FixedLenFeature([s], tf.int64),
        INPUT_MASK: tf.io.FixedLenFeature([s], tf.int64),
        INPUT_TYPE_IDS: tf.io.FixedLenFeature([s], tf.int64),
        MASKED_LM_POSITIONS: tf.io.FixedLenFeature([p], tf.int64),
        MASKED_LM_IDS: tf.io.FixedLenFeature([p], tf.int64),
        MASKED_LM_WEIGHTS: tf.io.FixedLenFeature([p], tf.float32),
        LANGUAGE: tf.io.FixedLenFeature([], tf.string),
        TEACHER: tf.io.FixedLenFeature([], tf.string),
        EXAMPLE_ID: tf.io.FixedLenFeature([], tf.string),
    }
    if spec.has_teacher_outputs:
        features[TEACHER_TOPK_IDS] = tf.io.FixedLenFeature([p * k], tf.int64)
        if spec.logits_dtype == "float16":
            features[TEACHER_TOPK_LOGITS] = tf.io.FixedLenFeature([], tf.string)
        else:
            features[TEACHER_TOPK_LOGITS] = tf.io.FixedLenFeature([p * k], tf.float32)
        features[TEACHER_LOSS] = tf.io.FixedLenFeature([], tf.float32)
    return features


def parse_batch(serialized: tf.Tensor, spec: ShardSpec,
                keep_strings: bool = True) -> dict[str, tf.Tensor]:
    """Parses a [batch] string tensor of records into model-ready tensors.

    Returns int32 ids [batch, S] / [batch, P], float32 masked_lm_weights [batch, P],
    teacher_topk_ids int32 [batch, P, k], teacher_topk_logits float32 [batch, P, k] and
    teacher_loss float32 [batch]; with keep_strings, also the language / teacher / example_id
    strings [batch] (drop them on TPU: string tensors cannot go to the device).
    """
    p, k = spec.max_predictions_per_seq, spec.top_k
    parsed = tf.io.parse_example(serialized, feature_spec(spec))
    out = {}
    for name, value in parsed.items():
        if value.dtype == tf.int64:
            value = tf.cast(value, tf.int32)
        out[name] = value
    if spec.has_teacher_outputs:
        out[TEACHER_TOPK_IDS] = tf.reshape(out[TEACHER_TOPK_IDS], [-1, p, k])
        logits = out[TEACHER_TOPK_LOGITS]
        if spec.logits_dtype == "float16":
            logits = tf.io.decode_raw(logits, tf.float16, little_endian=True)
            logits = tf.cast(tf.ensure_shape(logits, [None, p * k]), tf.float32)
        out[TEACHER_TOPK_LOGITS] = tf.reshape(logits, [-1, p, k])
    if not keep_strings:
        for name in (LANGUAGE, TEACHER, EXAMPLE_ID):
            out.pop(name)
    return out


def parse_example(serialized: tf.Tensor, spec: ShardSpec,
                  keep_strings: bool = True) -> dict[str, tf.Tensor]:
    """Parses one serialized record (a scalar string tensor); shapes as parse_batch without batch."""
    batch = parse_batch(tf.reshape(serialized, [1]), spec, keep_strings=keep_strings)
    return {name: value[0] for name, value in batch.items()}


def deserialize(serialized: bytes, spec: ShardSpec) -> ScoredExample:
    """Parses one record into a ScoredExample of NumPy arrays (tools and tests; not a hot path)."""
    try:
        parsed = parse_example(tf.constant(serialized), spec)
    except tf.errors.InvalidArgumentError as error:
        raise RecordError(f"record does not match the schema {spec}: {error.message}") from error
    values = {name: value.numpy() for name, value in parsed.items()}
    return ScoredExample(
        input_word_ids=values[INPUT_WORD_IDS],
        input_mask=values[INPUT_MASK],
        input_type_ids=values[INPUT_TYPE_IDS],
        masked_lm_positions=values[MASKED_LM_POSITIONS],
        masked_lm_ids=values[MASKED_LM_IDS],
        masked_lm_weights=values[MASKED_LM_WEIGHTS],
        language=values[LANGUAGE].decode("utf-8"),
        teacher=values[TEACHER].decode("utf-8"),
        example_id=values[EXAMPLE_ID].decode("utf-8"),
        teacher_topk_ids=values.get(TEACHER_TOPK_IDS),
        teacher_topk_logits=values.get(TEACHER_TOPK_LOGITS),
        teacher_loss=(float(values[TEACHER_LOSS]) if TEACHER_LOSS in values else None),
    )


def spec_from_manifest_fields(fields: Mapping) -> ShardSpec:
    """The ShardSpec described by a manifest's fields (see teacher_scoring.records.manifest)."""
    return ShardSpec(
        seq_length=int(fields["seq_length"]),
        max_predictions_per_seq=int(fields["max_predictions_per_seq"]),
        top_k=int(fields["top_k"]),
        logits_dtype=str(fields["logits_dtype"]),
        has_teacher_outputs=bool(fields["has_teacher_outputs"]),
    )
