"""The scoring job's configuration: a YAML file in configs/scoring/, loaded strictly.

Example (configs/scoring/demo.yaml has a complete one):

    student_vocab: workspace/vocab          # folder written by python -m vocab.build_union
    output_dir: workspace/scored/demo       # <output_dir>/<lang>/ and <output_dir>/dead_letter/
    seq_length: 128                         # S
    max_predictions_per_seq: 20             # P
    top_k: 8                                # k
    masked_lm_prob: 0.15
    whole_word_masking: true
    seed: 12345
    logits_dtype: float16                   # float32 | float16
    compression: GZIP                       # "" | GZIP
    copies_mode: best                       # all | best (languages with >= 2 teachers)
    inference_batch_size: 64
    document_format: blank_line             # optional: line (default) | blank_line
    short_seq_prob: 0.1                     # optional (0): BERT's short_seq_prob
    compute_dtype: float32                  # optional: float32 (default) | bfloat16 (teachers)
    packing: within_document                # optional: within_document (default) | full_sentences
    canonical_batches: true                 # optional (true): inference batches from the data alone
    languages:
      en: {corpus: ["workspace/corpora/en/*.txt"], num_shards: 16}
      de: {corpus: ["workspace/corpora/de/*.txt"], num_shards: 8}
      lb: {corpus: ["workspace/corpora/lb/*.txt"], num_shards: 2, tokenizer_teacher: mbert}
    teachers:
      bert_en: {format: google_bert_checkpoint, path: workspace/teachers/bert_en, languages: [en]}
      mbert:   {format: hf_folder, path: workspace/teachers/mbert, languages: [en, de]}

Gold-only languages (paper §4.4, footnote 10: a language no teacher covers can still gain from
the others' teachers through the shared student): a language with `tokenizer_teacher: <name>`
is tokenized and masked with that teacher's tokenizer but never scored; its shards hold the gold
part only (`has_teacher_outputs: false` in its manifest), in the student id space. The named
teacher must be one of `teachers` (it scores other languages, so it is loaded anyway; the
gold-only copies never reach its model); a language is either scored (in some teacher's
`languages`) or gold-only, never both.

Every key is checked: an unknown or missing key, or a value of the wrong type or out of range,
raises `JobConfigError` naming the file, the key (dotted path) and the value. Casing is not
configured: it comes from each teacher's checkpoint (teacher.json, HF tokenizer_config.json, ...).

Relative local paths (student_vocab, output_dir, corpus globs, teacher paths) are taken relative
to the working directory the launcher runs in; `gs://...` paths are used as they are.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping

import yaml

from teacher_scoring.records import record_schema
COPIES_MODES = ("all", "best")
DOCUMENT_FORMATS = ("line", "blank_line")   # teacher_scoring.examples.documents.DOCUMENT_FORMATS
PACKINGS = ("within_document", "full_sentences")  # teacher_scoring.examples.segmentation.PACKINGS
COMPRESSIONS = ("", "GZIP")
COMPUTE_DTYPES = ("float32", "bfloat16")   # teacher_scoring.teachers.scoring.COMPUTE_DTYPES
TEACHER_FORMATS = ("auto", "google_bert_checkpoint", "hf_folder", "tfm_checkpoint", "saved_model")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class JobConfigError(ValueError):
    """The job config is malformed or inconsistent; the message names file, key and value."""


@dataclasses.dataclass(frozen=True)
class LanguageConfig:
    """One language: the corpus file globs (in the job's document_format) and its output shard
    count.

    `tokenizer_teacher` is set for a gold-only language: the teacher whose tokenizer makes its
    copies (no teacher scores it).
    """

    corpus: tuple[str, ...]
    num_shards: int
    tokenizer_teacher: str | None = None


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """One teacher checkpoint: its folder format, path, and the languages it scores."""

    format: str
    path: str
    languages: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """A scoring job (see the module docstring for every field)."""

    student_vocab: str
    output_dir: str
    seq_length: int
    max_predictions_per_seq: int
    top_k: int
    masked_lm_prob: float
    whole_word_masking: bool
    seed: int
    logits_dtype: str
    compression: str
    copies_mode: str
    inference_batch_size: int
    languages: Mapping[str, LanguageConfig]
    teachers: Mapping[str, TeacherConfig]
    # Documents tokenized together in one tokenizer call (throughput only; results do not
    # depend on it).
    document_batch_size: int = 64
    # XLA-compile the teachers' scoring functions (jit_compile of make_score_fn): on by default,
    # the faster way on CPU (bench/bench_scoring.py); `false` for a teacher XLA cannot compile.
    jit_compile: bool = True
    # The teachers' compute dtype (scoring.make_score_fn): float32, or bfloat16 (a bfloat16
    # encoder, a float32 MLM head; tf-models BERT teachers only). Off by default: its fidelity
    # and speed are in docs/scoring_job.md (bench/bench_scoring.py).
    compute_dtype: str = "float32"
    # Corpus format (teacher_scoring.examples.documents): `line` (one document a line) or `blank_line`
    # (BERT's format: a blank line between documents; a document's lines are packed).
    document_format: str = "line"
    # BERT's short_seq_prob: a sequence's target length is drawn in [2, S - 2] with this
    # probability (teacher_scoring.examples.segmentation).
    short_seq_prob: float = 0.0
    # `within_document` (BERT's format: a sequence holds one document's text) or
    # `full_sentences` (RoBERTa's: sequences filled across documents, a separator between them;
    # teacher_scoring.examples.segmentation.pack_documents). Recorded in the manifest.
    packing: str = "within_document"
    # Form each teacher's inference batches from the data alone (ScoreWithTeachers: copies
    # grouped by (language, output shard), sorted by example id, cut into batches of
    # inference_batch_size), so that the scores, hence the shard bytes, do not depend on how
    # the runner bundles; `false`: RunInference batches each bundle's copies as they come
    # (no shuffle before scoring; bytes reproducible on one runner and bundling only).
    canonical_batches: bool = True
    source: str = ""

    @property
    def shard_spec(self) -> record_schema.ShardSpec:
        return record_schema.ShardSpec(
            seq_length=self.seq_length, max_predictions_per_seq=self.max_predictions_per_seq,
            top_k=self.top_k, logits_dtype=self.logits_dtype, has_teacher_outputs=True)

    def teachers_of(self, language: str) -> list[str]:
        """The teachers that score `language`, in config order ([] for a gold-only language)."""
        return [name for name, t in self.teachers.items() if language in t.languages]

    def is_gold_only(self, language: str) -> bool:
        """True for a language with a `tokenizer_teacher` (tokenized, never scored)."""
        return self.languages[language].tokenizer_teacher is not None

    @property
    def gold_only_languages(self) -> list[str]:
        return [lang for lang in self.languages if self.is_gold_only(lang)]

    def tokenizers_of(self, language: str) -> list[str]:
        """The teachers whose tokenizers make the copies of `language`: its scoring teachers, or
        its tokenizer_teacher for a gold-only language."""
        if self.is_gold_only(language):
            return [self.languages[language].tokenizer_teacher]
        return self.teachers_of(language)

    def shard_spec_of(self, language: str) -> record_schema.ShardSpec:
        """The ShardSpec of `language`'s records (no teacher outputs for a gold-only one)."""
        return dataclasses.replace(self.shard_spec,
                                   has_teacher_outputs=not self.is_gold_only(language))

    def copies_mode_of(self, language: str) -> str:
        """The manifest copies mode of `language`: `single` with one teacher, else the config's."""
        return self.copies_mode if len(self.teachers_of(language)) > 1 else "single"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what the manifest records in its `config` field)."""
        data = dataclasses.asdict(self)
        data.pop("source")
        data["languages"] = {}
        for name, language in self.languages.items():
            entry = {"corpus": list(language.corpus), "num_shards": language.num_shards}
            if language.tokenizer_teacher is not None:
                entry["tokenizer_teacher"] = language.tokenizer_teacher
            data["languages"][name] = entry
        data["teachers"] = {k: {"format": v.format, "path": v.path,
                                "languages": list(v.languages)}
                            for k, v in self.teachers.items()}
        return data

    def replace(self, **changes) -> "JobConfig":
        """A copy with some top-level fields changed (command-line overrides), re-validated."""
        data = self.to_dict()
        data.update(changes)
        return from_dict(data, source=self.source + " (with overrides)")


# --------------------------------------------------------------------------------- loading


_TOP_LEVEL = {
    "student_vocab": "path", "output_dir": "path", "seq_length": "int",
    "max_predictions_per_seq": "int", "top_k": "int", "masked_lm_prob": "float",
    "whole_word_masking": "bool", "seed": "int", "logits_dtype": "str", "compression": "str",
    "copies_mode": "str", "inference_batch_size": "int", "languages": "map",
    "teachers": "map", "document_batch_size": "int", "jit_compile": "bool",
    "compute_dtype": "str",
    "document_format": "str", "short_seq_prob": "float", "packing": "str",
    "canonical_batches": "bool",
}
_OPTIONAL = {"document_batch_size", "jit_compile", "compute_dtype", "document_format",
             "short_seq_prob",
             "packing", "canonical_batches"}


def _fail(source: str, key: str, message: str):
    raise JobConfigError(f"{source}: {key}: {message}")


def _typed(source: str, key: str, value: Any, kind: str) -> Any:
    """Checks one scalar; YAML ints are accepted where floats are expected."""
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "path": isinstance(value, str) and value.strip() != "",
        "map": isinstance(value, dict),
    }[kind]
    if not ok:
        wanted = {"int": "an integer", "float": "a number", "bool": "true or false",
                  "str": "a string", "path": "a non-empty path string",
                  "map": "a mapping"}[kind]
        _fail(source, key, f"must be {wanted}, got {value!r}")
    return float(value) if kind == "float" else value


def _check_keys(source: str, where: str, data: dict, allowed, required) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        _fail(source, f"{where}{unknown[0]}",
              f"unknown key (allowed: {sorted(allowed)})")
    missing = sorted(set(required) - set(data))
    if missing:
        _fail(source, f"{where}{missing[0]}", "missing")


def _positive(source: str, key: str, value: int) -> int:
    if value <= 0:
        _fail(source, key, f"must be > 0, got {value}")
    return value


def _check_name(source: str, key: str, name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        _fail(source, key, f"{what} name {name!r} must match [A-Za-z0-9_.-]+")
    return name


def from_dict(data: Any, source: str = "<config>") -> JobConfig:
    """Builds a JobConfig from parsed YAML, strictly (see the module docstring)."""
    if not isinstance(data, dict):
        raise JobConfigError(f"{source}: expected a mapping at the top level, got "
                             f"{type(data).__name__}")
    _check_keys(source, "", data, _TOP_LEVEL, set(_TOP_LEVEL) - _OPTIONAL)
    values = {key: _typed(source, key, data[key], kind)
              for key, kind in _TOP_LEVEL.items() if key in data}

    for key in ("seq_length", "max_predictions_per_seq", "top_k", "inference_batch_size",
                "document_batch_size"):
        if key in values:
            _positive(source, key, values[key])
    if values["seq_length"] < 3:
        _fail(source, "seq_length", f"must be >= 3 ([CLS] token [SEP]), got {values['seq_length']}")
    if values["max_predictions_per_seq"] > values["seq_length"] - 2:
        _fail(source, "max_predictions_per_seq",
              f"{values['max_predictions_per_seq']} exceeds seq_length - 2 = "
              f"{values['seq_length'] - 2}")
    if not 0.0 < values["masked_lm_prob"] < 1.0:
        _fail(source, "masked_lm_prob", f"must be in (0, 1), got {values['masked_lm_prob']}")
    if values["seed"] < 0:
        _fail(source, "seed", f"must be >= 0, got {values['seed']}")
    if "short_seq_prob" in values and not 0.0 <= values["short_seq_prob"] <= 1.0:
        _fail(source, "short_seq_prob", f"must be in [0, 1], got {values['short_seq_prob']}")
    if "packing" in values:
        if values["packing"] not in PACKINGS:
            _fail(source, "packing", f"must be one of {list(PACKINGS)}, got {values['packing']!r}")
        if values["packing"] == "full_sentences" and values.get("short_seq_prob", 0.0):
            _fail(source, "short_seq_prob", f"must be 0 with packing 'full_sentences' (it fills "
                                            f"every sequence), got {values['short_seq_prob']}")
    if "compute_dtype" in values and values["compute_dtype"] not in COMPUTE_DTYPES:
        _fail(source, "compute_dtype", f"must be one of {list(COMPUTE_DTYPES)}, got "
                                       f"{values['compute_dtype']!r}")
    if "document_format" in values and values["document_format"] not in DOCUMENT_FORMATS:
        _fail(source, "document_format", f"must be one of {list(DOCUMENT_FORMATS)}, got "
                                         f"{values['document_format']!r}")
    for key, allowed in (("logits_dtype", record_schema.LOGITS_DTYPES),
                         ("compression", COMPRESSIONS), ("copies_mode", COPIES_MODES)):
        if values[key] not in allowed:
            _fail(source, key, f"must be one of {list(allowed)}, got {values[key]!r}")

    languages = {}
    if not values["languages"]:
        _fail(source, "languages", "must name at least one language")
    for lang, entry in values["languages"].items():
        where = f"languages.{lang}"
        _check_name(source, where, lang, "language")
        if not isinstance(entry, dict):
            _fail(source, where, f"must be a mapping with corpus and num_shards, got {entry!r}")
        _check_keys(source, where + ".", entry, ("corpus", "num_shards", "tokenizer_teacher"),
                    ("corpus", "num_shards"))
        corpus = entry["corpus"]
        if isinstance(corpus, str):
            corpus = [corpus]
        if (not isinstance(corpus, list) or not corpus or
                not all(isinstance(g, str) and g.strip() for g in corpus)):
            _fail(source, f"{where}.corpus",
                  f"must be a non-empty list of file globs, got {entry['corpus']!r}")
        num_shards = _positive(source, f"{where}.num_shards",
                               _typed(source, f"{where}.num_shards", entry["num_shards"], "int"))
        tokenizer_teacher = None
        if "tokenizer_teacher" in entry:
            tokenizer_teacher = _check_name(source, f"{where}.tokenizer_teacher",
                                            entry["tokenizer_teacher"], "teacher")
        languages[lang] = LanguageConfig(corpus=tuple(corpus), num_shards=num_shards,
                                         tokenizer_teacher=tokenizer_teacher)

    teachers = {}
    if not values["teachers"]:
        _fail(source, "teachers", "must name at least one teacher")
    for name, entry in values["teachers"].items():
        where = f"teachers.{name}"
        _check_name(source, where, name, "teacher")
        if not isinstance(entry, dict):
            _fail(source, where, f"must be a mapping with format, path and languages, got "
                                 f"{entry!r}")
        _check_keys(source, where + ".", entry, ("format", "path", "languages"),
                    ("path", "languages"))
        fmt = _typed(source, f"{where}.format", entry.get("format", "auto"), "str")
        if fmt not in TEACHER_FORMATS:
            _fail(source, f"{where}.format", f"must be one of {list(TEACHER_FORMATS)}, got {fmt!r}")
        path = _typed(source, f"{where}.path", entry["path"], "path")
        served = entry["languages"]
        if (not isinstance(served, list) or not served or
                not all(isinstance(lang, str) for lang in served)):
            _fail(source, f"{where}.languages",
                  f"must be a non-empty list of language codes, got {served!r}")
        if len(set(served)) != len(served):
            _fail(source, f"{where}.languages", f"lists a language twice: {served}")
        for lang in served:
            if lang not in languages:
                _fail(source, f"{where}.languages",
                      f"language {lang!r} has no corpus under 'languages' "
                      f"(configured: {sorted(languages)})")
        teachers[name] = TeacherConfig(format=fmt, path=path, languages=tuple(served))
    for lang, entry in languages.items():
        scorers = [name for name, t in teachers.items() if lang in t.languages]
        tokenizer_teacher = entry.tokenizer_teacher
        if tokenizer_teacher is not None:
            key = f"languages.{lang}.tokenizer_teacher"
            if tokenizer_teacher not in teachers:
                _fail(source, key, f"names no teacher of this job: {tokenizer_teacher!r} "
                                   f"(teachers: {sorted(teachers)})")
            if scorers:
                _fail(source, key, f"{lang!r} is scored by {scorers}; a language is either "
                                   "distilled (in a teacher's 'languages') or gold-only "
                                   "(tokenizer_teacher), not both")
        elif not scorers:
            _fail(source, f"languages.{lang}", "no teacher serves this language (add it to a "
                                               "teacher's 'languages', or give it a "
                                               "'tokenizer_teacher' to train it on gold labels "
                                               "only)")

    values["languages"] = languages
    values["teachers"] = teachers
    return JobConfig(source=source, **values)


def load_job_config(path: str) -> JobConfig:
    """Reads and validates a job config YAML file (local path or any tf.io.gfile path)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if not tf.io.gfile.exists(path):
        raise JobConfigError(f"{path}: job config file does not exist")
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise JobConfigError(f"{path}: not valid YAML ({error})") from error
    return from_dict(data, source=path)


def resolve_path(path: str) -> str:
    """`path` as the job uses it: URLs (gs://...) unchanged, local paths made absolute."""
    if "://" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))
