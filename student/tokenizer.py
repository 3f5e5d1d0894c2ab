r"""The student's tokenizer: raw text + its language -> the student ids it was trained on.

The student never had a tokenizer of its own: the scoring job tokenized each language with that
language's teacher (its vocab.txt and casing, `teacher_scoring.examples.tokenization.TeacherTokenizer`)
and mapped the teacher ids to student ids (`vocab/union.py`'s `maps/<teacher>.npy`). At inference
the same two steps must be repeated. This module does them in one: for every teacher it writes a
*student-space vocabulary*, a list of `vocab_size` tokens where line `i` is

  * the student token `i` if the teacher's vocabulary has it (`i` is in the image of the
    teacher's map; the five specials [PAD] [UNK] [CLS] [SEP] [MASK] are always at 0-4), or
  * an unmatchable placeholder `[md-unused-<i>]` otherwise.

WordPiece never produces a placeholder: BERT's basic tokenization splits every punctuation
character ('[', '-', ']') into a word of its own, so no word contains one. The WordPiece token set
is therefore exactly the teacher's, and greedy longest-match over the same set picks the same
pieces, now numbered in the student's ids: `TeacherTokenizer(student_space_vocab, lower_case)`
equals "teacher tokenizer, then map" (tested on all bundled text, cased and uncased). The same
file is a valid BERT `vocab.txt`, so a Hugging Face `BertTokenizer` over it yields student ids too.

Which teacher a language uses:
  * the teacher whose copies of that language the student saw most: the largest per-teacher
    `examples` count of the language in its training-shard manifest (`copies_mode: best` keeps
    the best copy of each segment, so this is the teacher that won most segments); ties go to the
    teacher that comes first in the union vocabulary (teachers.json order);
  * unless configured: `tokenizer.teacher_for_language: [LANG=TEACHER, ...]` in the student
    config (the teacher must be one that tokenized that language's training shards);
  * a language with gold-only shards (no teacher outputs) uses the teacher that tokenized it,
    which its manifest names;
  * a language the student was not trained on uses `tokenizer.fallback_teacher` if set; else it
    is an error listing the known languages.

On disk (`export/tokenizer/`, written by `student/export.py`; self-contained, no teacher folder
is needed):

  student_tokenizer.json
    {"format_version": 1,
     "vocab_size": N,                       # lines of the student vocab.txt
     "vocab_sha256": "...",                 # sha256 of the student vocab.txt bytes
     "teachers": {NAME: {"lower_case": bool,
                         "vocab_file": "NAME.vocab.txt",
                         "vocab_file_sha256": "...",      # of that file's bytes
                         "teacher_vocab_sha256": "...",   # the teacher's own vocab.txt
                         "languages": [LANG, ...],        # training languages it tokenized
                         "examples": {LANG: count}}},     # its copies in the training shards
     "languages": {LANG: NAME},             # the teacher each language uses
     "fallback_teacher": NAME or null}
  NAME.vocab.txt                            the teacher's student-space vocabulary (N lines)

Typical use:

  tokenizer = StudentTokenizer.load("students/kd/export")
  batch = tokenizer.encode(["Hola mundo"], language="es", seq_length=128)
  batch["input_word_ids"], batch["input_mask"], batch["input_type_ids"]   # int32 [1, 128]
  batch["word_ids"]        # int32 [1, 128]: whitespace word of each piece, -1 on [CLS]/[SEP]/pad

Rebuild the tokenizer of an existing export:

  python -m student.tokenizer --export_dir students/kd/export --student_vocab vocab \
      --shards en=scored/train/en --shards de=scored/train/de \
      [--teacher_for_language de=teacher_de] [--fallback_teacher teacher_en]
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from typing import Mapping, Sequence

import numpy as np

from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.examples import tokenization
from teacher_scoring.examples.tokenization import SPECIAL_TOKENS

FORMAT_VERSION = 1
TOKENIZER_DIRNAME = "tokenizer"
CONFIG_FILENAME = "student_tokenizer.json"
VOCAB_FILE_SUFFIX = ".vocab.txt"
STUDENT_VOCAB_FILENAME = "vocab.txt"
PLACEHOLDER_PREFIX = "[md-unused-"
_PLACEHOLDER_RE = re.compile(r"^\[+md-unused-\d+\]+$")
_TEACHER_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

# Keys of `StudentTokenizer.encode`'s result.
INPUT_WORD_IDS = "input_word_ids"
INPUT_MASK = "input_mask"
INPUT_TYPE_IDS = "input_type_ids"
WORD_IDS = "word_ids"
PIECE_STARTS = "piece_starts"
PIECE_ENDS = "piece_ends"
NUM_PIECES = "num_pieces"
TRUNCATED = "truncated"
MODEL_INPUTS = (INPUT_WORD_IDS, INPUT_MASK, INPUT_TYPE_IDS)


class TokenizerError(ValueError):
    """The tokenizer cannot be built, saved, loaded or used; the message names the cause."""


def is_placeholder(token: str) -> bool:
    """Whether `token` is a student-space placeholder (`[md-unused-<i>]`, maybe re-bracketed)."""
    return _PLACEHOLDER_RE.match(token) is not None


def student_space_vocab(student_tokens: Sequence[str], mapping: np.ndarray) -> list[str]:
    """A teacher's vocabulary renumbered in the student's ids.

    Args:
      student_tokens: the student vocab (id = index); ids 0-4 are the five special tokens.
      mapping: the teacher's int32 map [teacher_vocab_size] (teacher id -> student id, -1: none).

    Returns:
      `len(student_tokens)` tokens: the student token where the teacher has it (or it is one of
      the five specials), a unique `[md-unused-<i>]` placeholder (bracketed again while it would
      collide with a student token) elsewhere.
    """
    if tuple(student_tokens[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
        raise TokenizerError(f"the student vocab must start with {list(SPECIAL_TOKENS)}, got "
                             f"{list(student_tokens[:len(SPECIAL_TOKENS)])}")
    mapping = np.asarray(mapping)
    present = np.zeros([len(student_tokens)], bool)
    ids = mapping[mapping >= 0]
    if ids.size and ids.max() >= len(student_tokens):
        raise TokenizerError(f"the map sends a teacher id to student id {int(ids.max())}, outside "
                             f"the student vocab of {len(student_tokens)} tokens")
    present[ids] = True
    present[:len(SPECIAL_TOKENS)] = True
    existing = set(student_tokens)
    out = []
    for i, token in enumerate(student_tokens):
        if present[i]:
            out.append(token)
            continue
        placeholder = f"{PLACEHOLDER_PREFIX}{i}]"
        while placeholder in existing:
            placeholder = f"[{placeholder}]"
        out.append(placeholder)
    return out


# --------------------------------------------------------------------------- what to serve


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    """A teacher as the tokenizer needs it: casing and what it tokenized for the student.

    Attributes:
      name: the teacher's name in the union vocabulary (maps/<name>.npy).
      lower_case: BERT-uncased behaviour.
      examples: language -> examples (copies) of that language it tokenized in the training
        shards.
      teacher_vocab_sha256: sha256 of the teacher's own vocab.txt ("" if unknown).
    """

    name: str
    lower_case: bool
    examples: dict[str, int]
    teacher_vocab_sha256: str = ""


def teacher_specs_from_manifests(manifests: Mapping[str, object]) -> dict[str, TeacherSpec]:
    """The teachers of a run's training shards, from their manifests.

    Args:
      manifests: language -> its shard folder (str) or a `(Manifest, where)` pair, as
        `--shards LANG=DIR` gives them.

    Returns:
      Teacher name -> TeacherSpec, with the per-language example counts of every manifest (the
      language entry's per-teacher `examples`; a language entry without per-teacher counts,
      e.g. gold-only shards, counts all its examples for the one teacher whose `languages`
      include it).

    Raises:
      TokenizerError: naming the manifest, when a language is missing from it, no teacher (or
        several, without counts) tokenized it, or a teacher's casing / vocab hash differs between
        manifests.
    """
    lower_case: dict[str, bool] = {}
    vocab_sha: dict[str, str] = {}
    seen_in: dict[str, str] = {}
    examples: dict[str, dict[str, int]] = {}
    for language, value in manifests.items():
        if isinstance(value, str):
            manifest, where = (manifest_lib.read_manifest(value),
                               manifest_lib.manifest_path(value))
        else:
            manifest, where = value
        if language not in manifest.languages:
            raise TokenizerError(f"{where}: has no language {language!r} "
                                 f"(it has {sorted(manifest.languages)})")
        entry = manifest.languages[language]
        counts = {name: c.examples for name, c in entry.teachers.items()}
        if not counts:
            candidates = sorted(name for name, t in manifest.teachers.items()
                                if language in t.languages)
            if len(candidates) != 1:
                raise TokenizerError(
                    f"{where}: languages.{language} names no teacher with counts, and "
                    f"{len(candidates)} teachers list {language!r} in their languages "
                    f"({candidates}); cannot tell which teacher tokenized it")
            counts = {candidates[0]: entry.examples}
        for name, count in counts.items():
            teacher = manifest.teachers[name]
            if name in lower_case and (lower_case[name] != teacher.lower_case or
                                       vocab_sha[name] != teacher.vocab_sha256):
                raise TokenizerError(
                    f"{where}: teacher {name!r} has lower_case={teacher.lower_case}, vocab "
                    f"sha256 {teacher.vocab_sha256} but {seen_in[name]} says "
                    f"lower_case={lower_case[name]}, vocab sha256 {vocab_sha[name]}")
            lower_case[name] = teacher.lower_case
            vocab_sha[name] = teacher.vocab_sha256
            seen_in.setdefault(name, where)
            examples.setdefault(name, {})
            examples[name][language] = examples[name].get(language, 0) + int(count)
    return {name: TeacherSpec(name=name, lower_case=lower_case[name], examples=examples[name],
                              teacher_vocab_sha256=vocab_sha[name])
            for name in lower_case}


def parse_language_teacher_pairs(values: Sequence[str], field: str) -> dict[str, str]:
    """`["es=beto", "en=bert_en"]` -> {"es": "beto", "en": "bert_en"}; errors name `field`."""
    pairs: dict[str, str] = {}
    for value in values or ():
        if not isinstance(value, str):
            raise TokenizerError(f"{field}: entry {value!r} is not a LANGUAGE=TEACHER string")
        language, sep, teacher = value.partition("=")
        language, teacher = language.strip(), teacher.strip()
        if not sep or not language or not teacher:
            raise TokenizerError(f"{field}: entry {value!r} is not LANGUAGE=TEACHER "
                                 "(e.g. es=beto)")
        if language in pairs:
            raise TokenizerError(f"{field}: language {language!r} is given twice")
        pairs[language] = teacher
    return pairs


def choose_teachers(specs: Mapping[str, TeacherSpec], teacher_order: Sequence[str],
                    teacher_for_language: Mapping[str, str] | None = None,
                    overrides_field: str = "teacher_for_language") -> dict[str, str]:
    """The teacher each training language uses (the rule of the module docstring).

    Args:
      specs: the teachers of the training shards.
      teacher_order: every teacher name in union order (tie-break).
      teacher_for_language: language -> teacher overrides.
      overrides_field: how errors name the overrides (a config field or a flag).

    Raises:
      TokenizerError: an override names a language the student was not trained on, or a teacher
        that did not tokenize that language.
    """
    rank = {name: i for i, name in enumerate(teacher_order)}
    by_language: dict[str, dict[str, int]] = {}
    for spec in specs.values():
        for language, count in spec.examples.items():
            by_language.setdefault(language, {})[spec.name] = count
    chosen = {}
    for language in sorted(by_language):
        counts = by_language[language]
        chosen[language] = min(counts, key=lambda name: (-counts[name],
                                                         rank.get(name, len(rank)), name))
    for language, teacher in (teacher_for_language or {}).items():
        if language not in by_language:
            raise TokenizerError(
                f"{overrides_field}: language {language!r} is not one the student was trained on "
                f"({sorted(by_language)}); a new language takes the fallback teacher")
        if teacher not in by_language[language]:
            raise TokenizerError(
                f"{overrides_field}: teacher {teacher!r} did not tokenize {language!r} in the "
                f"training shards; its teachers are {sorted(by_language[language])}")
        chosen[language] = teacher
    return chosen


# --------------------------------------------------------------------------- tokenized text


@dataclasses.dataclass(frozen=True)
class TokenizedWords:
    """One text in student ids, with the word and byte span each piece comes from.

    Attributes:
      ids: [n] int32 student ids.
      starts, ends: [n] int64 byte offsets of each piece into `text` (see
        `tokenization.TokenizedText`).
      word_ids: [n] int32 index of the word each piece belongs to: the whitespace-delimited word
        of `text` for raw text, the given word for pre-split words.
      text: the cleaned text the offsets refer to (`tokenization.clean_text` of the input, which
        is the input itself for NFC text without control characters; for pre-split words, the
        cleaned words joined by single spaces).
      num_words: the number of words (a word may have no piece, e.g. one made only of control
        characters; see `words_without_pieces`).
    """

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    word_ids: np.ndarray
    text: str
    num_words: int

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def words_without_pieces(self) -> list[int]:
        """Indices of words that produced no piece."""
        has = np.zeros([self.num_words], bool)
        has[self.word_ids] = True
        return np.flatnonzero(~has).tolist()


@dataclasses.dataclass(frozen=True)
class _FlatBatch:
    """A batch's pieces concatenated (row r is [row_splits[r], row_splits[r + 1]))."""

    ids: np.ndarray         # [N] int32
    starts: np.ndarray      # [N] int64, byte offsets into the row's text
    ends: np.ndarray        # [N] int64
    word_ids: np.ndarray    # [N] int32, word index within the row
    row_splits: np.ndarray  # [B + 1] int64
    num_words: np.ndarray   # [B] int64
    texts: list[str]

    def row(self, r: int) -> TokenizedWords:
        a, b = self.row_splits[r], self.row_splits[r + 1]
        return TokenizedWords(ids=self.ids[a:b], starts=self.starts[a:b], ends=self.ends[a:b],
                              word_ids=self.word_ids[a:b], text=self.texts[r],
                              num_words=int(self.num_words[r]))


def _flatten(tokenized: Sequence) -> tuple[np.ndarray, ...]:
    """Per-text TokenizedTexts -> concatenated ids, starts, ends and row splits."""
    lengths = np.array([len(t.ids) for t in tokenized], np.int64)
    row_splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if row_splits[-1] == 0:
        empty = np.zeros([0], np.int64)
        return empty.astype(np.int32), empty, empty, row_splits
    ids = np.concatenate([t.ids for t in tokenized]).astype(np.int32)
    starts = np.concatenate([t.starts for t in tokenized]).astype(np.int64)
    ends = np.concatenate([t.ends for t in tokenized]).astype(np.int64)
    return ids, starts, ends, row_splits


def _word_ids_of(texts: Sequence[str], word_start_bytes: Sequence[np.ndarray] | None,
                 starts: np.ndarray, row_splits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Word index of every piece, for the whole batch at once.

    Args:
      texts: the cleaned texts (only whitespace: the plain space).
      word_start_bytes: per text, the byte offsets where its words start; None: the
        whitespace-delimited words of the text.
      starts: [N] piece byte offsets (within their text); row_splits: [B + 1].

    Returns:
      (word_ids [N] int32, num_words [B] int64).
    """
    if not texts:
        return np.zeros([0], np.int32), np.zeros([0], np.int64)
    lengths = np.array([len(t.encode("utf-8")) for t in texts], np.int64)
    text_base = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
    if word_start_bytes is None:
        # The texts joined by spaces; a word starts at a non-space byte after a space.
        data = np.frombuffer(" ".join(texts).encode("utf-8"), np.uint8)
        is_space = data == 0x20
        begins = ~is_space & np.concatenate([[True], is_space[:-1]])
        global_starts = np.flatnonzero(begins).astype(np.int64)
    else:
        global_starts = np.concatenate(
            [base + np.asarray(w, np.int64) for base, w in zip(text_base, word_start_bytes)]
            + [np.zeros([0], np.int64)])
    words_before = np.searchsorted(global_starts, text_base, side="left")
    num_words = np.diff(np.append(words_before, len(global_starts))).astype(np.int64)
    row_of_piece = np.repeat(np.arange(len(texts)), np.diff(row_splits))
    global_piece = starts + text_base[row_of_piece]
    word_ids = (np.searchsorted(global_starts, global_piece, side="right") - 1
                - words_before[row_of_piece])
    return word_ids.astype(np.int32), num_words


# --------------------------------------------------------------------------- the tokenizer


@dataclasses.dataclass
class _Teacher:
    name: str
    lower_case: bool
    vocab: list[str]
    teacher_vocab_sha256: str
    examples: dict[str, int]

    @property
    def languages(self) -> list[str]:
        return sorted(self.examples)


class StudentTokenizer:
    """Raw text of a language -> student ids, as the student saw that language in training.

    Build it with `build` (from the student vocab folder and the training manifests) or `load`
    (from an export). See the module docstring for the rule and the files.
    """

    def __init__(self, vocab_size: int, vocab_sha256: str, teachers: Sequence[_Teacher],
                 languages: Mapping[str, str], fallback_teacher: str | None = None):
        self.vocab_size = int(vocab_size)
        self.vocab_sha256 = vocab_sha256
        self._teachers = {t.name: t for t in teachers}
        self._languages = dict(sorted(languages.items()))
        self.fallback_teacher = fallback_teacher or None
        self._tokenizers: dict[str, tokenization.TeacherTokenizer] = {}
        for teacher in self._teachers.values():
            if not _TEACHER_NAME_RE.match(teacher.name):
                raise TokenizerError(f"teacher name {teacher.name!r} is not a safe file name "
                                     "([A-Za-z0-9_.-]+)")
            if len(teacher.vocab) != self.vocab_size:
                raise TokenizerError(f"teacher {teacher.name!r}: student-space vocabulary has "
                                     f"{len(teacher.vocab)} tokens, expected {self.vocab_size}")
        for language, name in self._languages.items():
            if name not in self._teachers:
                raise TokenizerError(f"language {language!r} uses teacher {name!r}, which the "
                                     f"tokenizer does not have ({sorted(self._teachers)})")
        if self.fallback_teacher is not None and self.fallback_teacher not in self._teachers:
            raise TokenizerError(f"fallback teacher {self.fallback_teacher!r} is not one of the "
                                 f"tokenizer's teachers ({sorted(self._teachers)})")

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, student_vocab, teachers: Mapping[str, TeacherSpec] | None = None, *,
              manifests: Mapping[str, object] | None = None,
              teacher_for_language: Mapping[str, str] | Sequence[str] | None = None,
              fallback_teacher: str | None = None,
              overrides_field: str = "teacher_for_language",
              fallback_field: str = "fallback_teacher") -> "StudentTokenizer":
        """Builds the tokenizer of a student.

        Args:
          student_vocab: the student vocab folder (`vocab.union.StudentVocab.save`; a path to
            the folder or to its vocab.txt) or a loaded `StudentVocab`.
          teachers: the training teachers (name -> TeacherSpec); or give `manifests`.
          manifests: language -> training shard folder or (Manifest, where); see
            `teacher_specs_from_manifests`.
          teacher_for_language: overrides, a mapping or `LANG=TEACHER` strings.
          fallback_teacher: the teacher of languages the student was not trained on (None: an
            unknown language is an error). Must be one of the training teachers.
          overrides_field, fallback_field: how errors name those two settings.

        Raises:
          TokenizerError: naming the setting or file at fault.
        """
        from vocab import union  # pylint: disable=import-outside-toplevel

        if (teachers is None) == (manifests is None):
            raise TypeError("give exactly one of `teachers` and `manifests`")
        if teachers is None:
            teachers = teacher_specs_from_manifests(manifests)
        if not teachers:
            raise TokenizerError("no teacher: the tokenizer needs the teachers of the training "
                                 "shards")
        if isinstance(student_vocab, union.StudentVocab):
            vocab = student_vocab
        else:
            folder = str(student_vocab)
            if os.path.basename(folder) == STUDENT_VOCAB_FILENAME and not _isdir(folder):
                folder = os.path.dirname(folder)
            try:
                vocab = union.StudentVocab.load(folder)
            except union.StudentVocabError as error:
                raise TokenizerError(f"student vocab folder {folder}: {error}") from error
        if teacher_for_language is not None and not isinstance(teacher_for_language, Mapping):
            teacher_for_language = parse_language_teacher_pairs(teacher_for_language,
                                                                overrides_field)
        for name, spec in teachers.items():
            if name not in vocab.maps:
                raise TokenizerError(
                    f"teacher {name!r} tokenized the training shards but the student vocab has "
                    f"no map for it (its teachers: {vocab.teacher_names})")
            want = vocab.teachers[name].vocab_sha256
            if spec.teacher_vocab_sha256 and spec.teacher_vocab_sha256 != want:
                raise TokenizerError(
                    f"teacher {name!r}: the shards were made with a vocabulary of sha256 "
                    f"{spec.teacher_vocab_sha256} but the student vocab's map is for {want}")
        if fallback_teacher and fallback_teacher not in teachers:
            raise TokenizerError(
                f"{fallback_field}: {fallback_teacher!r} is not a teacher of the training shards "
                f"({sorted(teachers)}); its casing is unknown")
        languages = choose_teachers(teachers, vocab.teacher_names, teacher_for_language,
                                    overrides_field)
        tokens = vocab.tokens
        built = [_Teacher(name=name, lower_case=bool(spec.lower_case),
                          vocab=student_space_vocab(tokens, vocab.maps[name]),
                          teacher_vocab_sha256=vocab.teachers[name].vocab_sha256,
                          examples=dict(sorted(spec.examples.items())))
                 for name, spec in sorted(teachers.items(),
                                          key=lambda item: vocab.teacher_names.index(item[0]))]
        return cls(len(tokens), vocab.sha256, built, languages, fallback_teacher or None)

    # ------------------------------------------------------------------ save / load

    def config_dict(self) -> dict:
        """The content of student_tokenizer.json."""
        teachers = {}
        for name, teacher in self._teachers.items():
            teachers[name] = {
                "lower_case": teacher.lower_case,
                "vocab_file": name + VOCAB_FILE_SUFFIX,
                "vocab_file_sha256": manifest_lib.sha256_of_tokens(teacher.vocab),
                "teacher_vocab_sha256": teacher.teacher_vocab_sha256,
                "languages": teacher.languages,
                "examples": dict(teacher.examples),
            }
        return {"format_version": FORMAT_VERSION, "vocab_size": self.vocab_size,
                "vocab_sha256": self.vocab_sha256, "teachers": teachers,
                "languages": dict(self._languages), "fallback_teacher": self.fallback_teacher}

    def save(self, directory: str) -> str:
        """Writes student_tokenizer.json and the vocab files into `directory` (created if
        needed; other files there are left alone); returns the json's path."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        tf.io.gfile.makedirs(directory)
        for name, teacher in self._teachers.items():
            with tf.io.gfile.GFile(os.path.join(directory, name + VOCAB_FILE_SUFFIX), "w") as f:
                f.write("".join(token + "\n" for token in teacher.vocab))
        path = os.path.join(directory, CONFIG_FILENAME)
        with tf.io.gfile.GFile(path, "w") as f:  # last: the json marks a complete folder
            f.write(json.dumps(self.config_dict(), indent=2, sort_keys=True,
                               ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: str) -> "StudentTokenizer":
        """Loads a tokenizer from an export folder (its `tokenizer/`) or a tokenizer folder.

        Checks every field, every vocab file (sha256, size, specials at 0-4) and, when the
        student vocab.txt is found beside the tokenizer folder (an export), that its sha256 is
        `vocab_sha256` and that every vocab file line is that student token or a placeholder.

        Raises:
          TokenizerError: naming the file and the field at fault.
        """
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        directory = path
        if not tf.io.gfile.exists(os.path.join(directory, CONFIG_FILENAME)) and \
                tf.io.gfile.exists(os.path.join(path, TOKENIZER_DIRNAME, CONFIG_FILENAME)):
            directory = os.path.join(path, TOKENIZER_DIRNAME)
        config_path = os.path.join(directory, CONFIG_FILENAME)
        if not tf.io.gfile.exists(config_path):
            raise TokenizerError(
                f"{path}: no {CONFIG_FILENAME} here nor in {TOKENIZER_DIRNAME}/ (an export made "
                "before the tokenizer existed: rebuild it with python -m student.tokenizer)")
        with tf.io.gfile.GFile(config_path, "r") as f:
            text = f.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise TokenizerError(f"{config_path}: not valid JSON ({error})") from error
        fields = {"format_version": int, "vocab_size": int, "vocab_sha256": str,
                  "teachers": dict, "languages": dict, "fallback_teacher": (str, type(None))}
        _check_object(data, fields, config_path)
        if data["format_version"] != FORMAT_VERSION:
            raise TokenizerError(f"{config_path}: field 'format_version' is "
                                 f"{data['format_version']}; this code reads {FORMAT_VERSION}")
        student_tokens = None
        student_vocab_path = os.path.join(os.path.dirname(directory.rstrip("/")),
                                          STUDENT_VOCAB_FILENAME)
        if tf.io.gfile.exists(student_vocab_path):
            student_tokens = tokenization.read_vocab(student_vocab_path)
            got = manifest_lib.sha256_of_tokens(student_tokens)
            if got != data["vocab_sha256"] or len(student_tokens) != data["vocab_size"]:
                raise TokenizerError(
                    f"{config_path}: field 'vocab_sha256' / 'vocab_size' ({data['vocab_sha256']}, "
                    f"{data['vocab_size']}) do not match {student_vocab_path} ({got}, "
                    f"{len(student_tokens)} tokens)")
        teacher_fields = {"lower_case": bool, "vocab_file": str, "vocab_file_sha256": str,
                          "teacher_vocab_sha256": str, "languages": list, "examples": dict}
        teachers = []
        for name, entry in data["teachers"].items():
            where = f"{config_path}: teachers.{name}"
            _check_object(entry, teacher_fields, where)
            vocab_path = os.path.join(directory, entry["vocab_file"])
            if not tf.io.gfile.exists(vocab_path):
                raise TokenizerError(f"{where}: field 'vocab_file': {vocab_path} is missing")
            try:
                vocab = tokenization.read_vocab(vocab_path)
            except tokenization.VocabError as error:
                raise TokenizerError(f"{where}: {error}") from error
            if manifest_lib.sha256_of_tokens(vocab) != entry["vocab_file_sha256"]:
                raise TokenizerError(f"{vocab_path}: sha256 differs from field "
                                     f"'vocab_file_sha256' of {where} (file changed?)")
            if len(vocab) != data["vocab_size"]:
                raise TokenizerError(f"{vocab_path}: has {len(vocab)} tokens, vocab_size is "
                                     f"{data['vocab_size']}")
            if tuple(vocab[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
                raise TokenizerError(f"{vocab_path}: ids 0-4 must be {list(SPECIAL_TOKENS)}")
            if student_tokens is not None:
                bad = next((i for i, (a, b) in enumerate(zip(vocab, student_tokens))
                            if a != b and not is_placeholder(a)), None)
                if bad is not None:
                    raise TokenizerError(
                        f"{vocab_path}: line {bad + 1} is {vocab[bad]!r}, neither the student "
                        f"token {student_tokens[bad]!r} nor a placeholder")
            examples = entry["examples"]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                       for v in examples.values()):
                raise TokenizerError(f"{where}: field 'examples' must map languages to counts")
            if sorted(entry["languages"]) != sorted(examples):
                raise TokenizerError(f"{where}: field 'languages' {entry['languages']} differs "
                                     f"from the languages of 'examples' {sorted(examples)}")
            teachers.append(_Teacher(name=name, lower_case=entry["lower_case"], vocab=vocab,
                                     teacher_vocab_sha256=entry["teacher_vocab_sha256"],
                                     examples=dict(examples)))
        try:
            return cls(data["vocab_size"], data["vocab_sha256"], teachers, data["languages"],
                       data["fallback_teacher"])
        except TokenizerError as error:
            raise TokenizerError(f"{config_path}: {error}") from error

    # ------------------------------------------------------------------ queries

    @property
    def languages(self) -> list[str]:
        """The languages the student was trained on (sorted)."""
        return list(self._languages)

    @property
    def teacher_names(self) -> list[str]:
        return list(self._teachers)

    @property
    def teacher_for_language(self) -> dict[str, str]:
        """language -> teacher, for every trained language."""
        return dict(self._languages)

    def teacher_for(self, language: str) -> str:
        """The teacher whose tokenizer `language` uses (the fallback for other languages).

        Raises:
          TokenizerError (a ValueError): unknown language and no fallback teacher; the message
            lists the known languages.
        """
        if language in self._languages:
            return self._languages[language]
        if self.fallback_teacher is not None:
            return self.fallback_teacher
        raise TokenizerError(
            f"language {language!r} is not one the student was trained on; known languages: "
            f"{', '.join(self.languages)} (set tokenizer.fallback_teacher to tokenize others)")

    def _teacher(self, name: str) -> _Teacher:
        if name not in self._teachers:
            raise TokenizerError(f"unknown teacher {name!r}; the tokenizer has "
                                 f"{sorted(self._teachers)}")
        return self._teachers[name]

    def lower_case(self, teacher: str) -> bool:
        return self._teacher(teacher).lower_case

    def student_space_vocab(self, teacher: str) -> list[str]:
        """The teacher's student-space vocabulary (a BERT vocab.txt's lines, student ids)."""
        return list(self._teacher(teacher).vocab)

    def teacher_examples(self, teacher: str) -> dict[str, int]:
        """language -> copies of it the teacher tokenized in the training shards."""
        return dict(self._teacher(teacher).examples)

    def for_teacher(self, teacher: str) -> tokenization.TeacherTokenizer:
        """A `TeacherTokenizer` over the teacher's student-space vocabulary (built once)."""
        if teacher not in self._tokenizers:
            spec = self._teacher(teacher)
            self._tokenizers[teacher] = tokenization.TeacherTokenizer(spec.vocab, spec.lower_case)
        return self._tokenizers[teacher]

    def for_language(self, language: str) -> tokenization.TeacherTokenizer:
        """The `TeacherTokenizer` of `language`, yielding student ids (`.tokenize`,
        `.tokenize_with_offsets`, `.cls_id`, `.sep_id`, `.pad_id`, `.mask_id`, `.unk_id`)."""
        return self.for_teacher(self.teacher_for(language))

    # ------------------------------------------------------------------ tokenizing

    def _tokenize_flat(self, texts: Sequence[str | bytes], language: str) -> _FlatBatch:
        tokenizer = self.for_language(language)
        cleaned = [tokenization.clean_text(t) for t in texts]
        ids, starts, ends, row_splits = _flatten(tokenizer.tokenize_with_offsets(cleaned))
        word_ids, num_words = _word_ids_of(cleaned, None, starts, row_splits)
        return _FlatBatch(ids, starts, ends, word_ids, row_splits, num_words, cleaned)

    def _tokenize_words_flat(self, words_batch: Sequence[Sequence[str]], language: str
                             ) -> _FlatBatch:
        tokenizer = self.for_language(language)
        joined, word_starts = [], []
        for words in words_batch:
            if isinstance(words, (str, bytes)):
                raise TypeError("tokenize_words takes a list of words per example, got a "
                                f"{type(words).__name__}; use tokenize() for raw text")
            cleaned = [tokenization.clean_text(w) for w in words]
            lengths = np.array([len(w.encode("utf-8")) for w in cleaned], np.int64)
            word_starts.append(np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
                               if len(cleaned) else np.zeros([0], np.int64))
            joined.append(" ".join(cleaned))
        ids, starts, ends, row_splits = _flatten(tokenizer.tokenize_with_offsets(joined))
        word_ids, num_words = _word_ids_of(joined, word_starts, starts, row_splits)
        return _FlatBatch(ids, starts, ends, word_ids, row_splits, num_words, joined)

    def tokenize(self, texts: Sequence[str | bytes], language: str) -> list[TokenizedWords]:
        """Cleans and tokenizes raw texts (one tf-text call for the batch).

        Returns:
          One TokenizedWords a text; `word_ids` index its whitespace-delimited words.
        """
        flat = self._tokenize_flat(texts, language)
        return [flat.row(r) for r in range(len(flat.texts))]

    def tokenize_words(self, words_batch: Sequence[Sequence[str]], language: str
                       ) -> list[TokenizedWords]:
        """Tokenizes pre-split words (e.g. a CoNLL-U sentence's forms), one list per example.

        Each word is cleaned on its own and the cleaned words are joined by single spaces, so a
        piece never straddles two words; `word_ids` index the given words. A word that cleans to
        nothing gets no piece (see `TokenizedWords.words_without_pieces`).
        """
        flat = self._tokenize_words_flat(words_batch, language)
        return [flat.row(r) for r in range(len(flat.texts))]

    def encode(self, texts, language: str, seq_length: int,
               is_split_into_words: bool = False) -> dict[str, np.ndarray]:
        """A padded model batch: `[CLS] pieces [SEP]` then [PAD], in student ids.

        Args:
          texts: raw texts, or (is_split_into_words) one list of words per example.
          language: the texts' language (see `teacher_for`).
          seq_length: S, the sequence length with [CLS] and [SEP] (>= 3).
          is_split_into_words: texts are pre-split words (see `tokenize_words`).

        Returns:
          A dict of NumPy arrays, B = len(texts):
            input_word_ids, input_mask, input_type_ids: int32 [B, S] (the model's inputs; type
              ids all 0);
            word_ids: int32 [B, S], the word of each piece, -1 on [CLS], [SEP] and padding;
            piece_starts, piece_ends: int64 [B, S], each piece's byte span in the cleaned text
              (`tokenize`), -1 elsewhere;
            num_pieces: int32 [B], pieces of each text before truncation;
            truncated: bool [B], True where the text had more than S - 2 pieces and only the
              first S - 2 were kept (window longer inputs yourself with `tokenize`).
        """
        if seq_length < 3:
            raise TokenizerError(f"seq_length must be >= 3 ([CLS], a piece, [SEP]), got "
                                 f"{seq_length}")
        if isinstance(texts, (str, bytes)):
            raise TypeError("encode takes a list of texts, got a single "
                            f"{type(texts).__name__}")
        flat = (self._tokenize_words_flat(texts, language) if is_split_into_words
                else self._tokenize_flat(texts, language))
        tokenizer = self.for_language(language)
        batch, room = len(flat.texts), seq_length - 2
        num_pieces = np.diff(flat.row_splits)
        kept = np.minimum(num_pieces, room)
        # Pieces kept: the first `kept[r]` of every row; their row and column in the batch.
        position = np.arange(len(flat.ids)) - np.repeat(flat.row_splits[:-1], num_pieces)
        keep = position < np.repeat(kept, num_pieces)
        rows = np.repeat(np.arange(batch), num_pieces)[keep]
        columns = position[keep] + 1
        ids = np.full([batch, seq_length], tokenizer.pad_id, np.int32)
        ids[:, 0] = tokenizer.cls_id
        ids[rows, columns] = flat.ids[keep]
        ids[np.arange(batch), kept + 1] = tokenizer.sep_id
        mask = (np.arange(seq_length)[None, :] < (kept + 2)[:, None]).astype(np.int32)
        word_ids = np.full([batch, seq_length], -1, np.int32)
        word_ids[rows, columns] = flat.word_ids[keep]
        starts = np.full([batch, seq_length], -1, np.int64)
        starts[rows, columns] = flat.starts[keep]
        ends = np.full([batch, seq_length], -1, np.int64)
        ends[rows, columns] = flat.ends[keep]
        return {INPUT_WORD_IDS: ids, INPUT_MASK: mask,
                INPUT_TYPE_IDS: np.zeros([batch, seq_length], np.int32), WORD_IDS: word_ids,
                PIECE_STARTS: starts, PIECE_ENDS: ends,
                NUM_PIECES: num_pieces.astype(np.int32), TRUNCATED: num_pieces > room}

    def __repr__(self) -> str:
        languages = ", ".join(f"{lang}->{name}" for lang, name in self._languages.items())
        fallback = f", fallback {self.fallback_teacher}" if self.fallback_teacher else ""
        return f"StudentTokenizer({self.vocab_size} ids; {languages}{fallback})"


def _isdir(path: str) -> bool:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.io.gfile.isdir(path)


def _check_object(data, fields: Mapping[str, type | tuple], where: str) -> None:
    """Strict JSON object check: exactly `fields`, each of its type (bool is not an int)."""
    if not isinstance(data, dict):
        raise TokenizerError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(fields))
    missing = sorted(set(fields) - set(data))
    if unknown or missing:
        raise TokenizerError(f"{where}: unknown field(s) {unknown}, missing field(s) {missing}")
    for name, kind in fields.items():
        value = data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            raise TokenizerError(f"{where}: field '{name}' has the wrong type ({value!r})")


# --------------------------------------------------------------------------- command line


def build_for_export(export_dir: str, student_vocab: str, shards: Mapping[str, str],
                     teacher_for_language=None, fallback_teacher: str | None = None
                     ) -> StudentTokenizer:
    """(Re)builds and saves `export_dir/tokenizer` (the CLI's work; checks that the export, the
    vocab folder and the manifests share one student vocab)."""
    tokenizer = StudentTokenizer.build(student_vocab, manifests=dict(shards),
                                       teacher_for_language=teacher_for_language,
                                       fallback_teacher=fallback_teacher,
                                       overrides_field="--teacher_for_language",
                                       fallback_field="--fallback_teacher")
    for language, folder in shards.items():
        manifest = manifest_lib.read_manifest(folder)
        if manifest.vocab_sha256 != tokenizer.vocab_sha256:
            raise TokenizerError(f"{manifest_lib.manifest_path(folder)}: field 'vocab_sha256' is "
                                 f"{manifest.vocab_sha256}, the student vocab's is "
                                 f"{tokenizer.vocab_sha256}")
    export_vocab = os.path.join(export_dir, STUDENT_VOCAB_FILENAME)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not tf.io.gfile.exists(export_vocab):
        raise TokenizerError(f"--export_dir {export_dir}: no {STUDENT_VOCAB_FILENAME} (not a "
                             "student export)")
    got = manifest_lib.sha256_of_file(export_vocab)
    if got != tokenizer.vocab_sha256:
        raise TokenizerError(f"{export_vocab}: sha256 {got} differs from the student vocab's "
                             f"{tokenizer.vocab_sha256}")
    tokenizer.save(os.path.join(export_dir, TOKENIZER_DIRNAME))
    return tokenizer


def _tokenizer_section_of(export_dir: str) -> dict:
    """The `tokenizer` section of the export's params.yaml ({} if absent)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel

    path = os.path.join(export_dir, "params.yaml")
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path, "r") as f:
        data = yaml.safe_load(f.read()) or {}
    return data.get("tokenizer") or {}


def main(argv) -> int:
    from absl import flags  # pylint: disable=import-outside-toplevel
    from student import shard_sources  # pylint: disable=import-outside-toplevel

    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    section = _tokenizer_section_of(FLAGS.export_dir)
    overrides = (FLAGS.teacher_for_language if FLAGS.teacher_for_language is not None
                 else section.get("teacher_for_language") or [])
    fallback = (FLAGS.fallback_teacher if FLAGS.fallback_teacher is not None
                else section.get("fallback_teacher") or None)
    try:
        shards = shard_sources.parse_shards_flag(FLAGS.shards)
        tokenizer = build_for_export(FLAGS.export_dir, FLAGS.student_vocab, shards, overrides,
                                     fallback or None)
    except (TokenizerError, manifest_lib.ManifestError, shard_sources.ShardError,
            tokenization.VocabError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {os.path.join(FLAGS.export_dir, TOKENIZER_DIRNAME)}: {tokenizer}")
    for language, teacher in tokenizer.teacher_for_language.items():
        counts = tokenizer.teacher_examples(teacher)
        print(f"  {language}: {teacher} ({'uncased' if tokenizer.lower_case(teacher) else 'cased'}"
              f", {counts.get(language, 0)} training copies)")
    return 0


def _define_flags() -> None:
    from absl import flags  # pylint: disable=import-outside-toplevel

    flags.DEFINE_string("export_dir", None, "The student export (model_dir/export).")
    flags.DEFINE_string("student_vocab", None, "The student vocab folder (vocab.txt, maps/, "
                        "teachers.json) the student was trained with.")
    flags.DEFINE_multi_string("shards", [], "LANGUAGE=FOLDER of the training shards (their "
                              "manifest.json); repeat per language, as for student/train.py.")
    flags.DEFINE_list("teacher_for_language", None, "LANG=TEACHER overrides of the default "
                      "teacher of a language (default: the export's params.yaml tokenizer "
                      "section).")
    flags.DEFINE_string("fallback_teacher", None, "Teacher for languages the student was not "
                        "trained on ('' = none; default: the export's params.yaml).")
    flags.mark_flags_as_required(["export_dir", "student_vocab", "shards"])


if __name__ == "__main__":
    from absl import app  # pylint: disable=import-outside-toplevel
    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
