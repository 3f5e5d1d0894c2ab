"""The manifest (manifest.json) that comes with every set of scored shards.

A manifest says what the shards beside it hold, so that a reader can refuse a mismatch before it
spends any accelerator time: schema version, static shapes (S, P, k), logits dtype, compression,
the id space of every id field and the hash of that vocabulary, the teachers (names, vocab
hashes, languages), per-language and per-teacher example / masked-token counts, the shard files,
the seed and the copies mode, and every dropped input counted by reason.

Loading is strict: an unknown or missing field, or a value of the wrong type, is an error naming
the file and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import tensorflow as tf

from teacher_scoring.records import record_schema
MANIFEST_FILENAME = "manifest.json"
ID_SPACES = ("student", "teacher")
COPIES_MODES = ("all", "best", "single")
# How text was packed into sequences (teacher_scoring.examples.segmentation.PACKINGS):
# `within_document` (BERT's format; every manifest written before the field) or
# `full_sentences` (RoBERTa's: across documents, a separator token between them).
PACKINGS = ("within_document", "full_sentences")


class ManifestError(ValueError):
    """A manifest is malformed, or does not match what its reader expects."""


def sha256_of_file(path: str) -> str:
    """Hex SHA-256 of a file (local path or any tf.io.gfile path, e.g. gs://)."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_tokens(tokens: list[str]) -> str:
    """Hex SHA-256 of a vocabulary, as the bytes of its vocab.txt (one token a line, '\\n' after each)."""
    return hashlib.sha256("".join(t + "\n" for t in tokens).encode("utf-8")).hexdigest()


@dataclasses.dataclass
class TeacherEntry:
    """A teacher that scored (or tokenized) the shards."""

    vocab_sha256: str
    vocab_size: int
    languages: list[str]
    lower_case: bool
    format: str = ""
    path: str = ""


@dataclasses.dataclass
class TeacherCounts:
    """What one teacher contributed to one language (real_tokens: sum of input_mask over its
    records; None in manifests written before it was recorded)."""

    examples: int = 0
    masked_tokens: int = 0
    real_tokens: int | None = None


def token_utilization(real_tokens: int, examples: int, seq_length: int) -> float:
    """Real positions / all positions: sum of input_mask / (examples * S), rounded to 6 places
    (0 for no examples)."""
    if examples <= 0:
        return 0.0
    return round(real_tokens / (examples * seq_length), 6)


@dataclasses.dataclass
class LanguageEntry:
    """One language's shards and counts. `shards` are file names relative to the manifest.

    examples: records (copies) on disk; unique_examples: distinct example ids among them (the
    count language sampling uses: in `all` mode every example has a copy per teacher);
    real_tokens: sum of input_mask over the records; token_utilization:
    real_tokens / (examples * seq_length). The last three are written by every writer since
    they were introduced; a manifest without them (None) is still read (see `sampling_count`).
    """

    examples: int
    masked_tokens: int
    shards: list[str]
    teachers: dict[str, TeacherCounts] = dataclasses.field(default_factory=dict)
    unique_examples: int | None = None
    real_tokens: int | None = None
    token_utilization: float | None = None


@dataclasses.dataclass
class Manifest:
    """The content of manifest.json (field-by-field description in WORKSPACE.md)."""

    seq_length: int
    max_predictions_per_seq: int
    top_k: int
    logits_dtype: str
    has_teacher_outputs: bool
    id_space: str
    vocab_sha256: str
    vocab_size: int
    teachers: dict[str, TeacherEntry]
    languages: dict[str, LanguageEntry]
    seed: int
    copies_mode: str = "single"
    compression: str = ""
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    counters: dict[str, int] = dataclasses.field(default_factory=dict)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    schema_version: int = record_schema.SCHEMA_VERSION
    packing: str = "within_document"

    @property
    def shard_spec(self) -> record_schema.ShardSpec:
        return record_schema.ShardSpec(
            seq_length=self.seq_length,
            max_predictions_per_seq=self.max_predictions_per_seq,
            top_k=self.top_k,
            logits_dtype=self.logits_dtype,
            has_teacher_outputs=self.has_teacher_outputs,
        )

    def validate(self, where: str = "manifest") -> None:
        """Raises ManifestError naming `where` and the field on any inconsistency."""
        if self.schema_version != record_schema.SCHEMA_VERSION:
            raise ManifestError(
                f"{where}: schema_version {self.schema_version} is not supported by this code "
                f"(it reads version {record_schema.SCHEMA_VERSION})")
        try:
            self.shard_spec  # pylint: disable=pointless-statement
        except record_schema.RecordError as error:
            raise ManifestError(f"{where}: {error}") from error
        if self.id_space not in ID_SPACES:
            raise ManifestError(f"{where}: field 'id_space' must be one of {ID_SPACES}, "
                                f"got {self.id_space!r}")
        if self.copies_mode not in COPIES_MODES:
            raise ManifestError(f"{where}: field 'copies_mode' must be one of {COPIES_MODES}, "
                                f"got {self.copies_mode!r}")
        if self.packing not in PACKINGS:
            raise ManifestError(f"{where}: field 'packing' must be one of {PACKINGS}, "
                                f"got {self.packing!r}")
        if self.compression not in ("", "GZIP"):
            raise ManifestError(f"{where}: field 'compression' must be '' or 'GZIP', "
                                f"got {self.compression!r}")
        for lang, entry in self.languages.items():
            for teacher in entry.teachers:
                if teacher not in self.teachers:
                    raise ManifestError(
                        f"{where}: languages.{lang}.teachers names {teacher!r}, which is not in "
                        f"'teachers' ({sorted(self.teachers)})")
            if entry.examples < 0 or entry.masked_tokens < 0:
                raise ManifestError(f"{where}: languages.{lang} has negative counts")
            if entry.unique_examples is not None and not (
                    0 <= entry.unique_examples <= entry.examples
                    and (entry.unique_examples > 0 or entry.examples == 0)):
                raise ManifestError(
                    f"{where}: languages.{lang}.unique_examples {entry.unique_examples} must be "
                    f"in [1, examples = {entry.examples}] (0 only without examples)")
            if (entry.real_tokens is None) != (entry.token_utilization is None):
                raise ManifestError(f"{where}: languages.{lang}: real_tokens and "
                                    f"token_utilization go together (one is missing)")
            if entry.real_tokens is not None:
                if not 0 <= entry.real_tokens <= entry.examples * self.seq_length:
                    raise ManifestError(
                        f"{where}: languages.{lang}.real_tokens {entry.real_tokens} is not in "
                        f"[0, examples * seq_length = {entry.examples * self.seq_length}]")
                expected = token_utilization(entry.real_tokens, entry.examples, self.seq_length)
                if abs(entry.token_utilization - expected) > 1e-6:
                    raise ManifestError(
                        f"{where}: languages.{lang}.token_utilization {entry.token_utilization} "
                        f"is not real_tokens / (examples * seq_length) = {expected}")

    def sampling_count(self, language: str, where: str = "manifest") -> int:
        """The number of distinct examples of `language` (what n^alpha sampling counts):
        `unique_examples`, or for a manifest written before that field, `examples` when every
        example has one record (copies mode `single` or `best`). An `all` manifest without it
        is refused: its examples count every teacher's copy."""
        entry = self.languages[language]
        if entry.unique_examples is not None:
            return entry.unique_examples
        if self.copies_mode == "all":
            raise ManifestError(
                f"{where}: languages.{language} has copies_mode 'all' but no unique_examples "
                f"(written by an older scoring job); its 'examples' counts every teacher's copy. "
                f"Re-run the scoring job to get the count of distinct examples")
        return entry.examples

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict, where: str = "manifest") -> "Manifest":
        manifest = _build(cls, data, where)
        manifest.validate(where)
        return manifest


def _build(cls, data: Any, where: str):
    """Builds dataclass `cls` from `data` strictly: unknown or missing fields are errors."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {unknown}")
    kwargs = {}
    for name, field in fields.items():
        path = f"{where}: field '{name}'"
        if name not in data:
            if (field.default is dataclasses.MISSING and
                    field.default_factory is dataclasses.MISSING):  # type: ignore[misc]
                raise ManifestError(f"{path} is missing")
            continue
        kwargs[name] = _coerce(field.type, data[name], path)
    return cls(**kwargs)


_NESTED = {"TeacherEntry": TeacherEntry, "LanguageEntry": LanguageEntry,
           "TeacherCounts": TeacherCounts}


def _coerce(type_name: str, value: Any, path: str):
    type_name = str(type_name)
    if type_name in _NESTED:
        return _build(_NESTED[type_name], value, path)
    if type_name.startswith("dict[str, "):
        inner = type_name[len("dict[str, "):-1]
        if not isinstance(value, dict):
            raise ManifestError(f"{path} must be an object, got {value!r}")
        return {str(k): _coerce(inner, v, f"{path}.{k}") for k, v in value.items()}
    if type_name == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ManifestError(f"{path} must be a list of strings, got {value!r}")
        return value
    if type_name.endswith(" | None"):
        return None if value is None else _coerce(type_name[:-len(" | None")], value, path)
    if type_name == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ManifestError(f"{path} must be float, got {value!r}")
        return float(value)
    expected = {"int": int, "str": str, "bool": bool}.get(type_name)
    if expected is not None:
        ok = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
        if not ok:
            raise ManifestError(f"{path} must be {type_name}, got {value!r}")
    return value


def manifest_path(shard_dir: str) -> str:
    return os.path.join(shard_dir, MANIFEST_FILENAME)


def write_manifest(manifest: Manifest, shard_dir: str) -> str:
    """Validates and writes `shard_dir`/manifest.json (atomically via a temp file); returns its path."""
    manifest.validate(manifest_path(shard_dir))
    path = manifest_path(shard_dir)
    tmp = path + ".tmp"
    tf.io.gfile.makedirs(shard_dir)
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(manifest.to_json())
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path


def read_manifest(path_or_dir: str) -> Manifest:
    """Reads and validates a manifest (a manifest.json path, or the folder that holds one)."""
    path = path_or_dir
    if tf.io.gfile.isdir(path_or_dir):
        path = manifest_path(path_or_dir)
    if not tf.io.gfile.exists(path):
        raise ManifestError(f"{path}: no manifest here (every set of shards needs one)")
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: not valid JSON ({error})") from error
    return Manifest.from_dict(data, where=path)


def shard_paths(manifest: Manifest, shard_dir: str, language: str) -> list[str]:
    """Absolute paths of `language`'s shards; a listed shard that is missing is an error."""
    if language not in manifest.languages:
        raise ManifestError(f"{manifest_path(shard_dir)}: no language {language!r} "
                            f"(has {sorted(manifest.languages)})")
    paths = [os.path.join(shard_dir, name) for name in manifest.languages[language].shards]
    missing = [p for p in paths if not tf.io.gfile.exists(p)]
    if missing:
        raise ManifestError(f"{manifest_path(shard_dir)}: shard(s) listed for {language!r} are "
                            f"missing: {missing}")
    return paths


def check_matches(manifest: Manifest, where: str, **expected) -> None:
    """Refuses a manifest whose fields differ from `expected` (e.g. seq_length=128,
    vocab_sha256=...), naming the file, the field, and both values."""
    for field, want in expected.items():
        got = getattr(manifest, field)
        if got != want:
            raise ManifestError(
                f"{where}: field '{field}' is {got!r} but the reader expects {want!r}")
