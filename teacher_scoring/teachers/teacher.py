"""A teacher: a vocabulary, its tokenizer settings, the languages it serves, and an MLM.

`Teacher` is architecture-agnostic. Its model is any callable

    mlm_fn(input_word_ids [B, S] int32, input_mask [B, S] int32, input_type_ids [B, S] int32,
           masked_lm_positions [B, P] int32) -> logits [B, P, V]

(a tf_keras model, a SavedModel signature, ...), V being the size of the teacher's own
vocabulary. Loaders (`teacher_scoring.teachers.loaders.load_teacher`) build Teachers from model folders;
scoring (`teacher_scoring.teachers.scoring.make_score_fn`) only uses this interface.

`teacher.json` is the optional metadata file every folder format may carry (required for the
tf-models checkpoint format, inside `assets/` for SavedModels):

    {"name": "en_bert", "lower_case": true, "languages": ["en"], "max_sequence_length": 512}

All keys are optional; unknown keys are an error. `max_sequence_length` is only read where the
model itself does not say it (SavedModels).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import tensorflow as tf

from teacher_scoring.records import manifest
from teacher_scoring.examples.tokenization import TeacherTokenizer

TEACHER_JSON = "teacher.json"

MLMFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


class TeacherError(ValueError):
    """A teacher is misconfigured (bad name, languages, metadata file, ...)."""


def _check_languages(languages, where: str) -> tuple[str, ...]:
    if isinstance(languages, str):
        raise TeacherError(f"{where}: languages must be a list of language codes, got the string "
                           f"{languages!r}")
    languages = tuple(languages)
    for language in languages:
        if not isinstance(language, str) or not language or language != language.strip():
            raise TeacherError(f"{where}: bad language code {language!r}")
    if len(set(languages)) != len(languages):
        raise TeacherError(f"{where}: duplicate language codes in {list(languages)}")
    return languages


@dataclasses.dataclass(frozen=True)
class TeacherMetadata:
    """The content of teacher.json. None / () means "not stated"."""

    name: str | None = None
    lower_case: bool | None = None
    languages: tuple[str, ...] = ()
    max_sequence_length: int | None = None

    FIELDS = ("name", "lower_case", "languages", "max_sequence_length")

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "TeacherMetadata":
        """Validates a parsed teacher.json (strict: unknown keys and wrong types are errors)."""
        if not isinstance(data, dict):
            raise TeacherError(f"{where}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.FIELDS))
        if unknown:
            raise TeacherError(f"{where}: unknown field(s) {unknown}; known: {list(cls.FIELDS)}")
        name = data.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise TeacherError(f"{where}: 'name' must be a non-empty string, got {name!r}")
        lower_case = data.get("lower_case")
        if lower_case is not None and not isinstance(lower_case, bool):
            raise TeacherError(f"{where}: 'lower_case' must be true or false, got {lower_case!r}")
        languages = data.get("languages", [])
        if not isinstance(languages, list):
            raise TeacherError(f"{where}: 'languages' must be a list, got {languages!r}")
        max_len = data.get("max_sequence_length")
        if max_len is not None and (not isinstance(max_len, int) or isinstance(max_len, bool)
                                    or max_len <= 0):
            raise TeacherError(f"{where}: 'max_sequence_length' must be a positive integer, got "
                               f"{max_len!r}")
        return cls(name=name, lower_case=lower_case,
                   languages=_check_languages(languages, where), max_sequence_length=max_len)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        if self.lower_case is not None:
            out["lower_case"] = self.lower_case
        out["languages"] = list(self.languages)
        if self.max_sequence_length is not None:
            out["max_sequence_length"] = self.max_sequence_length
        return out


def read_teacher_json(path: str) -> TeacherMetadata:
    """Reads a teacher.json file (any tf.io.gfile path)."""
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            data = json.loads(f.read())
    except json.JSONDecodeError as error:
        raise TeacherError(f"{path}: not valid JSON ({error})") from error
    return TeacherMetadata.from_dict(data, path)


def write_teacher_json(path: str, metadata: TeacherMetadata) -> None:
    """Writes `metadata` as teacher.json at `path`."""
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(metadata.to_dict(), indent=2, ensure_ascii=False) + "\n")


def _as_int32(x) -> tf.Tensor:
    """A tensor of int32 ids (NumPy arrays and other integer dtypes accepted)."""
    x = tf.convert_to_tensor(x)
    if x.dtype != tf.int32:
        if not x.dtype.is_integer:
            raise TeacherError(f"model inputs must be integer ids, got {x.dtype.name}")
        x = tf.cast(x, tf.int32)
    return x


class Teacher:
    """A teacher masked LM with its vocabulary and tokenizer settings.

    Args:
      name: the teacher's name (used in records, manifests and vocabulary maps).
      vocab: the teacher's tokens, id = index.
      lower_case: whether the teacher's tokenizer is uncased (lower-case + strip accents).
      languages: the language codes the teacher serves.
      mlm_fn: fn(input_word_ids, input_mask, input_type_ids, masked_lm_positions) -> logits
        [B, P, len(vocab)] (see the module docstring).
      max_sequence_length: the longest input the model accepts (position embeddings), or None
        if unbounded / unknown.
      model: the object behind `mlm_fn` (a tf_keras model, a loaded SavedModel, ...), kept
        alive with the teacher and used by exporters; None for a plain function.
      format: the folder format it was loaded from ("" if built in code).
      path: the folder it was loaded from ("" if built in code).
      config: format-specific architecture description (e.g. a BertMLMConfig), informational.
    """

    def __init__(self, name: str, vocab: Sequence[str], lower_case: bool,
                 languages: Sequence[str], mlm_fn: MLMFn, *,
                 max_sequence_length: int | None = None, model: Any = None, format: str = "",  # pylint: disable=redefined-builtin
                 path: str = "", config: Any = None):
        where = f"teacher {name!r}"
        if not isinstance(name, str) or not name or name != name.strip() or "/" in name:
            raise TeacherError(f"teacher name must be a non-empty string without '/' or "
                               f"surrounding spaces, got {name!r}")
        if not isinstance(lower_case, bool):
            raise TeacherError(f"{where}: lower_case must be a bool, got {lower_case!r}")
        if not callable(mlm_fn):
            raise TeacherError(f"{where}: mlm_fn must be callable, got {mlm_fn!r}")
        self.name = name
        self.vocab = list(vocab)
        self.lower_case = lower_case
        self.languages = _check_languages(languages, where)
        self.max_sequence_length = max_sequence_length
        self.model = model
        self.format = format
        self.path = path
        self.config = config
        self._mlm_fn = mlm_fn
        self._tokenizer = None

    def __repr__(self) -> str:
        return (f"Teacher(name={self.name!r}, vocab_size={self.vocab_size}, "
                f"lower_case={self.lower_case}, languages={list(self.languages)}, "
                f"format={self.format!r}, path={self.path!r})")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def vocab_sha256(self) -> str:
        """SHA-256 of the vocabulary as a vocab.txt (what manifests record)."""
        return manifest.sha256_of_tokens(self.vocab)

    def tokenizer(self) -> TeacherTokenizer:
        """The teacher's WordPiece tokenizer (built once)."""
        if self._tokenizer is None:
            self._tokenizer = TeacherTokenizer(self.vocab, self.lower_case)
        return self._tokenizer

    def mlm_logits(self, input_word_ids, input_mask, input_type_ids,
                   masked_lm_positions) -> tf.Tensor:
        """MLM logits at the masked positions.

        Inputs may be tensors or NumPy arrays of any integer dtype; they are cast to int32.

        Args:
          input_word_ids: int32 [B, S] teacher token ids.
          input_mask: int32 [B, S], 1 for real tokens, 0 for padding.
          input_type_ids: int32 [B, S] segment ids.
          masked_lm_positions: int32 [B, P] positions into the sequence.

        Returns:
          float32 [B, P, vocab_size] raw logits.
        """
        inputs = [_as_int32(x) for x in (input_word_ids, input_mask, input_type_ids,
                                         masked_lm_positions)]
        return tf.cast(self._mlm_fn(*inputs), tf.float32)

    def manifest_entry(self) -> manifest.TeacherEntry:
        """The manifest's description of this teacher."""
        return manifest.TeacherEntry(
            vocab_sha256=self.vocab_sha256, vocab_size=self.vocab_size,
            languages=list(self.languages), lower_case=self.lower_case, format=self.format,
            path=self.path)

    def metadata(self) -> TeacherMetadata:
        """The teacher.json content describing this teacher."""
        return TeacherMetadata(name=self.name, lower_case=self.lower_case,
                               languages=self.languages,
                               max_sequence_length=self.max_sequence_length)


def default_name(path: str) -> str:
    """The default teacher name of a folder: its base name."""
    return os.path.basename(os.path.normpath(path)) or "teacher"
