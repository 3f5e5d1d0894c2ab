r"""The student vocabulary: the union of all teacher vocabularies, with teacher → student id maps.

MergeDistill's student reads every teacher's examples and predictions, so its vocabulary is the
union of all teacher WordPiece vocabularies (paper, section 3.1, "Step 3: Vocab Mapping"); every
teacher id (input ids, gold ids, top-k prediction ids) is converted to a student id with a dense
per-teacher map.

Layout of the student vocabulary (`StudentVocab.tokens`, id = index):

  * ids 0-4 are fixed: `[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4`
    (`teacher_scoring.examples.tokenization.SPECIAL_TOKENS`), whatever ids the teachers give them;
  * then every other token exactly once, in first-seen order: teachers in the order given, each
    teacher's tokens in its own id order. A token several teachers share keeps the id of its
    first occurrence;
  * `[unusedN]` placeholders (regex `^\[unused\d+\]$`) are never copied; they map to -1.
    Other bracketed tokens a teacher has (e.g. `[BOS]`) are ordinary tokens.

A teacher's map is a dense int32 array `[teacher_vocab_size]`: `map[teacher_id] = student_id`, or
-1 for an `[unusedN]` placeholder. Restricted to the teacher's other ids, it is injective, and
`tokens[map[i]] == teacher_tokens[i]`.

The student vocab folder (`StudentVocab.save` / `StudentVocab.load`, any `tf.io.gfile` path, e.g.
gs://):

  vocab.txt            the student tokens, one a line (BERT vocab.txt format)
  maps/<teacher>.npy   each teacher's map, `.npy` format, int32 [teacher_vocab_size]
  teachers.json        teachers in order: source path, vocab sha256, size, [unusedN] dropped,
                       map sha256; plus the student vocab's sha256 and size
  report.json          sizes, pairwise overlap, tokens each teacher adds / has alone (docs/vocab.md)
  report.md            the same report as Markdown tables

Loading is strict: every file is checked against teachers.json (hashes, lengths, value ranges,
injectivity) and the layout rule is re-derived from the maps, so a corrupted or hand-edited
folder is refused with an error naming the file.

Typical use:

  student_vocab = StudentVocab.from_vocab_files({"en": "teachers/en/vocab.txt",
                                                 "de": "teachers/de/vocab.txt"})
  student_vocab.save("gs://bucket/md/vocab")
  ...
  student_vocab = StudentVocab.load("gs://bucket/md/vocab")
  student_ids = student_vocab.map_ids("de", teacher_ids)        # NumPy, validated
  table = student_vocab.map_tensor("de")                          # tf.constant for tf.gather
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import os
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from teacher_scoring.records.manifest import sha256_of_tokens
from teacher_scoring.examples.tokenization import (CLS, MASK, SEP, SPECIAL_TOKENS, UNK, VocabError,
                                          read_vocab)

FORMAT_VERSION = 1
VOCAB_FILENAME = "vocab.txt"
MAPS_DIRNAME = "maps"
TEACHERS_FILENAME = "teachers.json"
REPORT_JSON_FILENAME = "report.json"
REPORT_MD_FILENAME = "report.md"

# The student's fixed special ids: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
SPECIAL_IDS = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
NUM_SPECIAL = len(SPECIAL_TOKENS)
# Special tokens every teacher must have (teacher_scoring.examples.tokenization.read_vocab requires them).
REQUIRED_TEACHER_TOKENS = (UNK, CLS, SEP, MASK)
NO_STUDENT_ID = -1

_UNUSED_RE = re.compile(r"^\[unused\d+\]$")
_TEACHER_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class StudentVocabError(ValueError):
    """A student vocabulary cannot be built, saved or loaded; the message names the cause."""


def is_unused_token(token: str) -> bool:
    """True for BERT's `[unusedN]` placeholders (not copied into the student vocabulary)."""
    return _UNUSED_RE.match(token) is not None


def check_teacher_name(name: Any) -> str:
    """Returns `name` if it is a safe file name ([A-Za-z0-9_.-]+); raises StudentVocabError."""
    if not isinstance(name, str) or not _TEACHER_NAME_RE.match(name):
        raise StudentVocabError(
            f"teacher name {name!r} is not allowed: use only letters, digits, '_', '.' and '-' "
            f"(it names the file {MAPS_DIRNAME}/<teacher>.npy)")
    return name


def array_sha256(array: np.ndarray) -> str:
    """Hex SHA-256 of a map's values as little-endian int32 bytes."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<i4").tobytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class TeacherInfo:
    """One teacher of the union, as recorded in teachers.json.

    Attributes:
      name: the teacher's name (a safe file name).
      path: where its vocab.txt was read from ("" if the tokens were given directly).
      vocab_sha256: `sha256_of_tokens(teacher_tokens)`, the hash of its vocab.txt bytes.
      size: the teacher's vocabulary size (= length of its map).
      unused_dropped: how many `[unusedN]` placeholders it has (mapped to -1).
      map_sha256: `array_sha256(map)`, to detect a corrupted maps/<name>.npy.
    """

    name: str
    path: str
    vocab_sha256: str
    size: int
    unused_dropped: int
    map_sha256: str


def _validate_teacher_tokens(name: str, tokens: Sequence[str]) -> list[str]:
    """Checks one teacher's token list; returns it as a list. Errors name the teacher."""
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise StudentVocabError(
            f"teacher {name!r}: expected a list of tokens, got {type(tokens).__name__}")
    tokens = list(tokens)
    if not tokens:
        raise StudentVocabError(f"teacher {name!r}: empty vocabulary")
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if not isinstance(token, str):
            raise StudentVocabError(
                f"teacher {name!r}: token at id {i} is {type(token).__name__}, not str")
        if "\n" in token or "\r" in token:
            raise StudentVocabError(
                f"teacher {name!r}: token at id {i} ({token!r}) contains a line break and cannot "
                f"be written to {VOCAB_FILENAME}")
        if token in seen:
            raise StudentVocabError(
                f"teacher {name!r}: token {token!r} appears twice (ids {seen[token]} and {i})")
        seen[token] = i
    missing = [t for t in REQUIRED_TEACHER_TOKENS if t not in seen]
    if missing:
        raise StudentVocabError(f"teacher {name!r}: special token(s) {missing} missing")
    return tokens


def _teacher_items(teachers) -> list[tuple[str, Sequence[str]]]:
    """Normalises a mapping or a sequence of (name, tokens) pairs; refuses bad/duplicate names."""
    if isinstance(teachers, Mapping):
        items = list(teachers.items())
    else:
        items = []
        for item in teachers:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise StudentVocabError(
                    f"teachers must be a mapping name -> tokens or (name, tokens) pairs, got "
                    f"{type(item).__name__}")
            items.append((item[0], item[1]))
    if not items:
        raise StudentVocabError("no teachers given: the union needs at least one vocabulary")
    seen = set()
    for name, _ in items:
        check_teacher_name(name)
        if name in seen:
            raise StudentVocabError(f"teacher name {name!r} is given twice")
        seen.add(name)
    return items


def _union(items: Sequence[tuple[str, list[str]]]):
    """The layout rule. Returns (student tokens, {name: int32 map}, {name: unused count})."""
    tokens = list(SPECIAL_TOKENS)
    token_to_id = dict(SPECIAL_IDS)
    maps: dict[str, np.ndarray] = {}
    unused: dict[str, int] = {}
    for name, teacher_tokens in items:
        mapping = np.full([len(teacher_tokens)], NO_STUDENT_ID, dtype=np.int32)
        dropped = 0
        for teacher_id, token in enumerate(teacher_tokens):
            if _UNUSED_RE.match(token):
                dropped += 1
                continue
            student_id = token_to_id.get(token)
            if student_id is None:
                student_id = len(tokens)
                tokens.append(token)
                token_to_id[token] = student_id
            mapping[teacher_id] = student_id
        mapping.setflags(write=False)
        maps[name] = mapping
        unused[name] = dropped
    return tokens, maps, unused


def compute_report(tokens: Sequence[str], maps: Mapping[str, np.ndarray]) -> dict:
    """The union report, derived from the student tokens and the maps alone (so `load` can
    recompute and compare it).

    Token sets compared across teachers are *content* tokens: a teacher's tokens that have a
    student id other than the five fixed specials (so neither `[unusedN]` placeholders nor
    [PAD]/[UNK]/[CLS]/[SEP]/[MASK]).

    Args:
      tokens: the student tokens, id order.
      maps: teacher name → int32 map `[teacher_vocab_size]`, in the teachers' order.

    Returns:
      A JSON-serialisable dict (fields described in docs/vocab.md).
    """
    names = list(maps)
    content = {}
    for name in names:
        ids = np.asarray(maps[name])
        content[name] = set(ids[ids >= NUM_SPECIAL].tolist())
    teachers = []
    earlier: set = set()
    for name in names:
        ids = np.asarray(maps[name])
        mine = content[name]
        others = set().union(*(content[o] for o in names if o != name))
        added = sorted(mine - earlier)
        earlier |= mine
        kept = ids[ids >= 0]
        teachers.append({
            "name": name,
            "size": int(ids.shape[0]),
            "unused_dropped": int(np.sum(ids == NO_STUDENT_ID)),
            "specials": [tokens[i] for i in sorted(set(kept.tolist())) if i < NUM_SPECIAL],
            "content_tokens": len(mine),
            "bracketed_kept": sum(1 for i in mine
                                  if tokens[i].startswith("[") and tokens[i].endswith("]")
                                  and len(tokens[i]) > 2),
            "added": len(added),
            "added_student_ids": [added[0], added[-1]] if added else [],
            "unique": len(mine - others),
        })
    pairwise = []
    for a_index, a in enumerate(names):
        for b in names[a_index + 1:]:
            shared = len(content[a] & content[b])
            union = len(content[a] | content[b])
            pairwise.append({"a": a, "b": b, "shared": shared,
                             "jaccard": round(shared / union, 6) if union else 0.0})
    shared_by_all = set.intersection(*(content[n] for n in names)) if names else set()
    return {
        "format_version": FORMAT_VERSION,
        "student_size": len(tokens),
        "student_vocab_sha256": sha256_of_tokens(list(tokens)),
        "special_tokens": dict(SPECIAL_IDS),
        "teachers": teachers,
        "pairwise": pairwise,
        "shared_by_all": len(shared_by_all),
    }


def report_markdown(report: dict) -> str:
    """Renders `compute_report`'s dict as Markdown (report.md)."""
    lines = [
        "# Student vocabulary report",
        "",
        f"- student vocabulary: **{report['student_size']}** tokens "
        f"(sha256 `{report['student_vocab_sha256']}`)",
        "- fixed ids: " + ", ".join(f"{t}={i}" for t, i in report["special_tokens"].items()),
        f"- content tokens shared by all {len(report['teachers'])} teachers: "
        f"{report['shared_by_all']}",
        "",
        "## Teachers (in union order)",
        "",
        "| teacher | size | [unusedN] dropped | specials | content tokens | adds (new ids) | "
        "student ids added | unique to it |",
        "|---|---:|---:|---|---:|---:|---|---:|",
    ]
    for t in report["teachers"]:
        id_range = ("{}-{}".format(*t["added_student_ids"]) if t["added_student_ids"] else "-")
        lines.append(
            f"| {t['name']} | {t['size']} | {t['unused_dropped']} | {' '.join(t['specials'])} | "
            f"{t['content_tokens']} | {t['added']} | {id_range} | {t['unique']} |")
    lines += ["", "## Pairwise overlap (content tokens)", ""]
    if report["pairwise"]:
        lines += ["| teacher a | teacher b | shared | Jaccard |", "|---|---|---:|---:|"]
        for p in report["pairwise"]:
            lines.append(f"| {p['a']} | {p['b']} | {p['shared']} | {p['jaccard']:.4f} |")
    else:
        lines.append("(one teacher: no pairs)")
    lines += [
        "",
        "Content tokens: a teacher's tokens other than [unusedN] and the five fixed specials. "
        "'adds' counts the tokens no earlier teacher had (they get new student ids, in the "
        "teacher's id order); 'unique' counts the tokens no other teacher has.",
        "",
    ]
    return "\n".join(lines)


def _read_json(path: str) -> Any:
    if not tf.io.gfile.exists(path):
        raise StudentVocabError(f"{path}: missing (is this a student vocab folder? "
                                f"write one with python -m vocab.build_union)")
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise StudentVocabError(f"{path}: not valid JSON ({error})") from error


def _write_text(path: str, text: str) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _require(data: dict, key: str, kind: type, where: str) -> Any:
    if not isinstance(data, dict):
        raise StudentVocabError(f"{where}: expected an object, got {type(data).__name__}")
    if key not in data:
        raise StudentVocabError(f"{where}: field '{key}' is missing")
    value = data[key]
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise StudentVocabError(
            f"{where}: field '{key}' must be {kind.__name__}, got {value!r}")
    return value


def _check_fields(data: dict, allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise StudentVocabError(f"{where}: unknown field(s) {unknown}")


def _save_npy(path: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.int32), allow_pickle=False)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _load_npy(path: str) -> np.ndarray:
    if not tf.io.gfile.exists(path):
        raise StudentVocabError(f"{path}: map file missing")
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise StudentVocabError(f"{path}: not a valid .npy map ({error})") from error


class StudentVocab:
    """The student vocabulary (union of the teachers') and the teacher → student id maps.

    Build one with `StudentVocab.build(teachers)` or `StudentVocab.from_vocab_files(paths)`;
    persist it with `save(dir)` and read it back with `StudentVocab.load(dir)`. Instances are
    immutable (maps are read-only arrays).
    """

    def __init__(self, tokens: Sequence[str], maps: Mapping[str, np.ndarray],
                 teachers: Mapping[str, TeacherInfo]):
        """Use `build`, `from_vocab_files` or `load`; this constructor does not check the layout."""
        self._tokens = list(tokens)
        self._maps = collections.OrderedDict(maps)
        self._teachers = collections.OrderedDict(teachers)
        self._sha256 = sha256_of_tokens(self._tokens)
        self._report = compute_report(self._tokens, self._maps)
        self._map_tensors: dict[str, tf.Tensor] = {}

    # ----------------------------------------------------------------------------- building

    @classmethod
    def build(cls, teachers, sources: Mapping[str, str] | None = None) -> "StudentVocab":
        """Builds the union of the teachers' vocabularies.

        Args:
          teachers: teacher name → token list (id = index), ordered: a dict, or a sequence of
            (name, tokens) pairs (duplicate names are refused). Names must match
            [A-Za-z0-9_.-]+. Every teacher needs [UNK], [CLS], [SEP] and [MASK]; [PAD] is
            optional.
          sources: optional teacher name → path of its vocab.txt, recorded in teachers.json.

        Returns:
          The StudentVocab; the layout rule is in the module docstring.

        Raises:
          StudentVocabError: naming the teacher and the problem.
        """
        items = [(name, _validate_teacher_tokens(name, tokens))
                 for name, tokens in _teacher_items(teachers)]
        sources = dict(sources or {})
        unknown = sorted(set(sources) - {name for name, _ in items})
        if unknown:
            raise StudentVocabError(f"sources name teacher(s) {unknown} that are not given")
        tokens, maps, unused = _union(items)
        infos = collections.OrderedDict()
        for name, teacher_tokens in items:
            infos[name] = TeacherInfo(
                name=name, path=str(sources.get(name, "")),
                vocab_sha256=sha256_of_tokens(teacher_tokens), size=len(teacher_tokens),
                unused_dropped=unused[name], map_sha256=array_sha256(maps[name]))
        return cls(tokens, maps, infos)

    @classmethod
    def from_vocab_files(cls, paths) -> "StudentVocab":
        """Reads each teacher's vocab.txt (strictly, with `read_vocab`) and builds the union.

        Args:
          paths: teacher name → vocab.txt path (any tf.io.gfile path), ordered; or a sequence of
            (name, path) pairs.
        """
        items = [(name, os.fspath(path)) for name, path in _teacher_items(paths)]
        teachers = []
        for name, path in items:
            if not tf.io.gfile.exists(path):
                raise StudentVocabError(f"teacher {name!r}: vocab file {path!r} does not exist")
            try:
                teachers.append((name, read_vocab(path)))
            except VocabError as error:
                raise StudentVocabError(f"teacher {name!r}: {error}") from error
        return cls.build(teachers, sources={name: path for name, path in items})

    # ---------------------------------------------------------------------------- properties

    @property
    def tokens(self) -> list[str]:
        """The student tokens, id = index (a copy)."""
        return list(self._tokens)

    @property
    def size(self) -> int:
        """Number of student tokens."""
        return len(self._tokens)

    @property
    def sha256(self) -> str:
        """`sha256_of_tokens(tokens)`: the hash of vocab.txt (what manifests record)."""
        return self._sha256

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """Teacher name → read-only int32 map `[teacher_vocab_size]` (-1: no student id)."""
        return dict(self._maps)

    @property
    def teacher_names(self) -> list[str]:
        """Teacher names in union order."""
        return list(self._maps)

    @property
    def teachers(self) -> dict[str, TeacherInfo]:
        """Teacher name → TeacherInfo (path, vocab sha256, size, unused dropped, map sha256)."""
        return dict(self._teachers)

    @property
    def report(self) -> dict:
        """The report (see `compute_report`), as written to report.json."""
        return json.loads(json.dumps(self._report))

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (f"StudentVocab(size={self.size}, teachers={self.teacher_names}, "
                f"sha256={self.sha256[:12]}...)")

    # ------------------------------------------------------------------------------ mapping

    def _map(self, teacher: str) -> np.ndarray:
        try:
            return self._maps[teacher]
        except KeyError:
            raise StudentVocabError(
                f"unknown teacher {teacher!r}; this student vocab has {self.teacher_names}"
            ) from None

    def map_ids(self, teacher: str, ids, passthrough_negative: bool = False) -> np.ndarray:
        """Maps teacher ids to student ids (vectorised).

        Args:
          teacher: the teacher's name.
          ids: integer array of any shape, e.g. `[batch, seq_length]` input ids or
            `[batch, P, k]` top-k ids, in the teacher's id space.
          passthrough_negative: if True, negative ids (padding such as an absent top-k entry)
            map to -1 instead of being an error.

        Returns:
          int32 array, same shape: the student ids; -1 where the teacher id is an `[unusedN]`
          placeholder (or a negative id passed through).

        Raises:
          StudentVocabError: an id outside [0, teacher_vocab_size), naming the teacher and id.
        """
        mapping = self._map(teacher)
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise StudentVocabError(
                f"teacher {teacher!r}: ids must be integers, got dtype {ids.dtype}")
        valid = ids < mapping.shape[0]
        valid &= (ids >= 0) | passthrough_negative
        if not np.all(valid):
            bad_index = tuple(int(i) for i in np.unravel_index(np.argmax(~valid), ids.shape))
            raise StudentVocabError(
                f"teacher {teacher!r}: id {int(ids[bad_index])} at index {bad_index} is outside "
                f"its vocabulary [0, {mapping.shape[0]})")
        if passthrough_negative:
            return np.where(ids >= 0, mapping[np.maximum(ids, 0)],
                            NO_STUDENT_ID).astype(np.int32)
        return mapping[ids]

    def map_tensor(self, teacher: str) -> tf.Tensor:
        """The teacher's map as a `tf.constant` int32 `[teacher_vocab_size]` (cached), for
        `tf.gather(table, teacher_ids)` inside tf.data / tf.function / Beam DoFns."""
        if teacher not in self._map_tensors:
            mapping = self._map(teacher)
            with tf.init_scope():  # an eager constant, even when first asked inside tf.function
                self._map_tensors[teacher] = tf.constant(mapping, dtype=tf.int32)
        return self._map_tensors[teacher]

    def map_ids_tf(self, teacher: str, ids: tf.Tensor,
                   passthrough_negative: bool = False) -> tf.Tensor:
        """TensorFlow version of `map_ids` (graph-friendly).

        Args:
          teacher: the teacher's name.
          ids: int32/int64 tensor of any shape in the teacher's id space.
          passthrough_negative: if True, negative ids map to -1.

        Returns:
          int32 tensor, same shape, student ids (-1: none).

        Out-of-range ids fail a `tf.debugging` assertion naming the teacher (XLA/TPU compiles
        assertions away; validate on the host there).
        """
        table = self.map_tensor(teacher)
        ids = tf.convert_to_tensor(ids)
        size = tf.cast(tf.shape(table)[0], ids.dtype)
        checks = [tf.debugging.assert_less(
            ids, size, message=f"teacher {teacher!r}: id outside its vocabulary")]
        if not passthrough_negative:
            checks.append(tf.debugging.assert_non_negative(
                ids, message=f"teacher {teacher!r}: negative id"))
        with tf.control_dependencies(checks):
            safe = tf.maximum(ids, tf.zeros_like(ids))
            mapped = tf.gather(table, safe)
        if passthrough_negative:
            mapped = tf.where(ids >= 0, mapped, tf.fill(tf.shape(mapped), NO_STUDENT_ID))
        return mapped

    def inverse_map(self, teacher: str) -> np.ndarray:
        """int32 `[student_size]`: student id → the teacher's id for that token, -1 if the
        teacher lacks the token."""
        mapping = self._map(teacher)
        inverse = np.full([self.size], NO_STUDENT_ID, dtype=np.int32)
        teacher_ids = np.nonzero(mapping >= 0)[0].astype(np.int32)
        inverse[mapping[teacher_ids]] = teacher_ids
        return inverse

    def check_teacher_vocab(self, teacher: str, tokens: Sequence[str]) -> None:
        """Raises StudentVocabError unless `tokens` is the vocabulary `teacher` was built from
        (same sha256) and its map sends every token to the same student token (-1 exactly for
        `[unusedN]`). Call it before mapping a teacher's ids, e.g. in a scoring job: a folder on
        its own cannot prove that a map matches the teacher's tokens."""
        mapping = self._map(teacher)  # raises on an unknown teacher, naming the known ones
        info = self._teachers[teacher]
        tokens = list(tokens)
        got = sha256_of_tokens(tokens)
        if got != info.vocab_sha256:
            raise StudentVocabError(
                f"teacher {teacher!r}: vocabulary sha256 {got} ({len(tokens)} tokens) differs from "
                f"the one the student vocab was built from {info.vocab_sha256} "
                f"({info.size} tokens, {info.path or 'no path recorded'})")
        for teacher_id, (token, student_id) in enumerate(zip(tokens, mapping.tolist())):
            want = NO_STUDENT_ID if _UNUSED_RE.match(token) else token
            have = NO_STUDENT_ID if student_id < 0 else self._tokens[student_id]
            if want != have:
                raise StudentVocabError(
                    f"teacher {teacher!r}: {MAPS_DIRNAME}/{teacher}.npy sends id {teacher_id} "
                    f"({token!r}) to student id {student_id} ({have!r})")

    def summary(self) -> str:
        """A few lines for a terminal: sizes, what each teacher adds, pairwise Jaccard."""
        report = self._report
        lines = [f"student vocab: {self.size} tokens, sha256 {self.sha256}"]
        for t in report["teachers"]:
            lines.append(
                f"  {t['name']}: {t['size']} tokens, {t['unused_dropped']} [unusedN] dropped, "
                f"adds {t['added']}, unique {t['unique']}")
        for p in report["pairwise"]:
            lines.append(f"  overlap {p['a']}/{p['b']}: {p['shared']} shared, "
                         f"Jaccard {p['jaccard']:.4f}")
        return "\n".join(lines)

    # ---------------------------------------------------------------------------- save/load

    def save(self, directory: str, overwrite: bool = False) -> None:
        """Writes the student vocab folder (layout in the module docstring).

        Args:
          directory: local path or any tf.io.gfile path (gs://...).
          overwrite: if False, a non-empty `directory` is refused; if True, this class's own
            files there (vocab.txt, teachers.json, report.*, maps/*.npy) are replaced and other
            files are left alone.
        """
        if tf.io.gfile.isdir(directory):
            existing = tf.io.gfile.listdir(directory)
            if existing and not overwrite:
                raise StudentVocabError(
                    f"{directory}: output folder is not empty ({len(existing)} entries, e.g. "
                    f"{sorted(existing)[:3]}); pass --overwrite (overwrite=True) to replace it")
            for name in (TEACHERS_FILENAME, VOCAB_FILENAME, REPORT_JSON_FILENAME,
                         REPORT_MD_FILENAME):
                path = os.path.join(directory, name)
                if tf.io.gfile.exists(path):
                    tf.io.gfile.remove(path)
            maps_dir = os.path.join(directory, MAPS_DIRNAME)
            if tf.io.gfile.isdir(maps_dir):
                for name in tf.io.gfile.listdir(maps_dir):
                    if name.endswith(".npy"):
                        tf.io.gfile.remove(os.path.join(maps_dir, name))
        elif tf.io.gfile.exists(directory):
            raise StudentVocabError(f"{directory}: exists and is not a folder")
        maps_dir = os.path.join(directory, MAPS_DIRNAME)
        tf.io.gfile.makedirs(maps_dir)
        for name, mapping in self._maps.items():
            _save_npy(os.path.join(maps_dir, f"{name}.npy"), mapping)
        _write_text(os.path.join(directory, VOCAB_FILENAME),
                    "".join(token + "\n" for token in self._tokens))
        _write_text(os.path.join(directory, REPORT_JSON_FILENAME),
                    json.dumps(self._report, indent=2, ensure_ascii=False) + "\n")
        _write_text(os.path.join(directory, REPORT_MD_FILENAME), report_markdown(self._report))
        teachers_json = {
            "format_version": FORMAT_VERSION,
            "student_vocab_sha256": self.sha256,
            "student_size": self.size,
            "teachers": [dataclasses.asdict(info) for info in self._teachers.values()],
        }
        # Written last: a folder without teachers.json is an incomplete write.
        _write_text(os.path.join(directory, TEACHERS_FILENAME),
                    json.dumps(teachers_json, indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, directory: str) -> "StudentVocab":
        """Reads a student vocab folder written by `save`, strictly.

        Checks: teachers.json fields; vocab.txt's sha256 and size against teachers.json and
        report.json; the fixed special ids; every maps/<teacher>.npy (present, int32, 1-D,
        length = teacher size, sha256, values in [-1, student_size), injective, -1 count =
        unused_dropped); no stray maps; the layout rule re-derived from the maps; report.json
        equal to the report recomputed from the files.

        Raises:
          StudentVocabError: naming the file (and field) at fault.
        """
        teachers_path = os.path.join(directory, TEACHERS_FILENAME)
        data = _read_json(teachers_path)
        _check_fields(data, ("format_version", "student_vocab_sha256", "student_size",
                             "teachers"), teachers_path)
        version = _require(data, "format_version", int, teachers_path)
        if version != FORMAT_VERSION:
            raise StudentVocabError(f"{teachers_path}: field 'format_version' is {version}; this "
                                    f"code reads version {FORMAT_VERSION}")
        want_sha = _require(data, "student_vocab_sha256", str, teachers_path)
        want_size = _require(data, "student_size", int, teachers_path)
        entries = _require(data, "teachers", list, teachers_path)
        if not entries:
            raise StudentVocabError(f"{teachers_path}: field 'teachers' is empty")
        infos: collections.OrderedDict[str, TeacherInfo] = collections.OrderedDict()
        kinds = {f.name: f.type for f in dataclasses.fields(TeacherInfo)}
        for index, entry in enumerate(entries):
            where = f"{teachers_path}: teachers[{index}]"
            if not isinstance(entry, dict):
                raise StudentVocabError(f"{where}: expected an object, got {entry!r}")
            _check_fields(entry, kinds, where)
            values = {key: _require(entry, key, {"str": str, "int": int}[str(kind)], where)
                      for key, kind in kinds.items()}
            try:
                check_teacher_name(values["name"])
            except StudentVocabError as error:
                raise StudentVocabError(f"{where}: {error}") from error
            if values["name"] in infos:
                raise StudentVocabError(f"{where}: teacher {values['name']!r} is listed twice")
            infos[values["name"]] = TeacherInfo(**values)

        vocab_path = os.path.join(directory, VOCAB_FILENAME)
        if not tf.io.gfile.exists(vocab_path):
            raise StudentVocabError(f"{vocab_path}: missing")
        try:
            tokens = read_vocab(vocab_path)
        except VocabError as error:
            raise StudentVocabError(str(error)) from error
        got_sha = sha256_of_tokens(tokens)
        if got_sha != want_sha or len(tokens) != want_size:
            raise StudentVocabError(
                f"{vocab_path}: sha256 {got_sha} ({len(tokens)} tokens) does not match "
                f"{teachers_path} (student_vocab_sha256 {want_sha}, student_size {want_size})")
        if tuple(tokens[:NUM_SPECIAL]) != SPECIAL_TOKENS:
            raise StudentVocabError(f"{vocab_path}: ids 0-{NUM_SPECIAL - 1} must be "
                                    f"{list(SPECIAL_TOKENS)}, got {tokens[:NUM_SPECIAL]}")

        maps_dir = os.path.join(directory, MAPS_DIRNAME)
        maps = collections.OrderedDict()
        for name, info in infos.items():
            path = os.path.join(maps_dir, f"{name}.npy")
            mapping = _load_npy(path)
            _check_map(mapping, info, len(tokens), path)
            mapping.setflags(write=False)
            maps[name] = mapping
        if tf.io.gfile.isdir(maps_dir):
            stray = sorted(n for n in tf.io.gfile.listdir(maps_dir)
                           if n.endswith(".npy") and n[:-len(".npy")] not in infos)
            if stray:
                raise StudentVocabError(
                    f"{os.path.join(maps_dir, stray[0])}: map of a teacher that "
                    f"{teachers_path} does not list (stray: {stray})")

        # The layout rule, re-derived: rebuilding from the teachers' tokens as the maps give
        # them (placeholders where a map says -1) must reproduce vocab.txt and every map.
        rebuilt_items = []
        for name, mapping in maps.items():
            teacher_tokens = [tokens[s] if s >= 0 else f"[unused{i}]"
                              for i, s in enumerate(mapping.tolist())]
            rebuilt_items.append((name, teacher_tokens))
        try:
            rebuilt_tokens, rebuilt_maps, _ = _union(
                [(n, _validate_teacher_tokens(n, t)) for n, t in rebuilt_items])
        except StudentVocabError as error:
            raise StudentVocabError(f"{maps_dir}: maps are inconsistent with {vocab_path} "
                                    f"({error})") from error
        if rebuilt_tokens != tokens:
            first = next((i for i, (a, b) in enumerate(zip(rebuilt_tokens, tokens)) if a != b),
                         min(len(rebuilt_tokens), len(tokens)))
            raise StudentVocabError(
                f"{vocab_path}: does not follow the union order of the maps in {maps_dir} "
                f"(first difference at student id {first})")
        for name, mapping in maps.items():
            if not np.array_equal(rebuilt_maps[name], mapping):
                raise StudentVocabError(
                    f"{os.path.join(maps_dir, name + '.npy')}: not the map the union order gives")

        vocab = cls(tokens, maps, infos)
        report_path = os.path.join(directory, REPORT_JSON_FILENAME)
        saved_report = _read_json(report_path)
        if not isinstance(saved_report, dict):
            raise StudentVocabError(f"{report_path}: expected an object")
        if saved_report.get("student_vocab_sha256") != got_sha:
            raise StudentVocabError(
                f"{report_path}: field 'student_vocab_sha256' is "
                f"{saved_report.get('student_vocab_sha256')!r} but {vocab_path} has {got_sha}")
        expected = vocab.report
        for key in sorted(set(expected) | set(saved_report)):
            if saved_report.get(key) != expected.get(key):
                raise StudentVocabError(
                    f"{report_path}: field '{key}' does not match the report recomputed from "
                    f"{vocab_path} and {maps_dir}")
        return vocab


def _check_map(mapping: np.ndarray, info: TeacherInfo, student_size: int, path: str) -> None:
    """Validates one loaded map against its teachers.json entry; errors name `path`."""
    if mapping.dtype != np.int32 or mapping.ndim != 1:
        raise StudentVocabError(f"{path}: expected a 1-D int32 array, got {mapping.dtype} "
                                f"with shape {mapping.shape}")
    if mapping.shape[0] != info.size:
        raise StudentVocabError(f"{path}: has {mapping.shape[0]} entries but teacher "
                                f"{info.name!r} has {info.size} tokens ({TEACHERS_FILENAME})")
    if array_sha256(mapping) != info.map_sha256:
        raise StudentVocabError(f"{path}: sha256 {array_sha256(mapping)} differs from "
                                f"map_sha256 {info.map_sha256} in {TEACHERS_FILENAME}")
    if mapping.size and (mapping.min() < NO_STUDENT_ID or mapping.max() >= student_size):
        raise StudentVocabError(f"{path}: values must be in [-1, {student_size}), got "
                                f"[{mapping.min()}, {mapping.max()}]")
    unused = int(np.sum(mapping == NO_STUDENT_ID))
    if unused != info.unused_dropped:
        raise StudentVocabError(f"{path}: {unused} entries are -1 but {TEACHERS_FILENAME} says "
                                f"{info.unused_dropped} [unusedN] tokens were dropped")
    mapped = mapping[mapping >= 0]
    if np.unique(mapped).shape[0] != mapped.shape[0]:
        raise StudentVocabError(f"{path}: two teacher ids map to the same student id")
