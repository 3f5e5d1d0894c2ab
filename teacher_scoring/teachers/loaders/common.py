"""What every teacher loader shares: file checks, vocab and metadata reading, Teacher assembly."""

from __future__ import annotations

import json
import os
import re
from typing import Any, Sequence

from absl import logging
import tensorflow as tf

from teacher_scoring.teachers import teacher as teacher_lib
from teacher_scoring.teachers.loaders import bert_mlm
from teacher_scoring.teachers.loaders.bert_mlm import LoaderError
from teacher_scoring.examples.tokenization import VocabError, read_vocab

VOCAB_TXT = "vocab.txt"


def join(path: str, *names: str) -> str:
    return os.path.join(path, *names)


def check_folder(path: str) -> None:
    """Raises LoaderError unless `path` is an existing directory."""
    if not tf.io.gfile.exists(path):
        raise LoaderError(f"{path}: no such file or directory")
    if not tf.io.gfile.isdir(path):
        raise LoaderError(f"{path}: not a directory (a teacher is a folder)")


def require_files(path: str, names: Sequence[str], format_name: str,
                  layout: str) -> None:
    """Raises LoaderError naming the first missing file of `names` inside `path`."""
    for name in names:
        if not tf.io.gfile.exists(join(path, name)):
            raise LoaderError(f"{join(path, name)}: missing (a {format_name} folder holds "
                              f"{layout})")


def read_json(path: str) -> dict[str, Any]:
    """Reads a JSON object file; errors name the path."""
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            data = json.loads(f.read())
    except json.JSONDecodeError as error:
        raise LoaderError(f"{path}: not valid JSON ({error})") from error
    except tf.errors.NotFoundError as error:
        raise LoaderError(f"{path}: missing") from error
    if not isinstance(data, dict):
        raise LoaderError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_vocab(path: str) -> list[str]:
    """Reads a vocab.txt strictly (teacher_scoring.examples.tokenization.read_vocab)."""
    if not tf.io.gfile.exists(path):
        raise LoaderError(f"{path}: missing")
    try:
        return read_vocab(path)
    except VocabError as error:
        message = str(error)
        raise LoaderError(message if message.startswith(path) else f"{path}: {message}") from error


def load_metadata(path: str) -> teacher_lib.TeacherMetadata:
    """Reads `path` (a teacher.json) if it exists; empty metadata otherwise."""
    if not tf.io.gfile.exists(path):
        return teacher_lib.TeacherMetadata()
    try:
        return teacher_lib.read_teacher_json(path)
    except teacher_lib.TeacherError as error:
        raise LoaderError(str(error)) from error


def warn_if_vocab_looks_cased(vocab: Sequence[str], lower_case: bool, where: str) -> None:
    """Logs a warning when an uncased teacher's vocabulary has many upper-case tokens (its
    tokenizer would never produce them: the casing setting is probably wrong)."""
    if not lower_case:
        return
    tokens = [t for t in vocab if not (t.startswith("[") and t.endswith("]"))]
    cased = sum(1 for t in tokens if t != t.lower())
    if tokens and cased / len(tokens) > 0.05:
        logging.warning(
            "%s: the teacher is uncased (lower_case=true) but %d of its %d vocabulary tokens "
            "have upper-case letters; check the casing setting", where, cased, len(tokens))


# Casing of public checkpoints by their release name, for folders that state no casing.
# Google's own table, google-research/bert tokenization.validate_case_matches_checkpoint:
GOOGLE_LOWER_CASED = ("uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12",
                      "multilingual_L-12_H-768_A-12", "chinese_L-12_H-768_A-12")
GOOGLE_CASED = ("cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16", "multi_cased_L-12_H-768_A-12")
# The other names of Google's releases (google-research/bert README): whole-word-masking
# `wwm_uncased_L-24_H-1024_A-16` / `wwm_cased_L-24_H-1024_A-16` and the 24 small BERTs
# `uncased_L-{2..12}_H-{128..768}_A-{2..12}`.
_GOOGLE_RELEASE = re.compile(r"^(?:wwm_)?(uncased|cased)_L-\d+_H-\d+_A-\d+$")
# The naming convention of Hugging Face hub names and renamed release folders: the word `cased`
# or `uncased` (bert-base-german-cased, bert-base-multilingual-uncased, wwm_uncased_L-24).
_CASE_WORD = re.compile(r"(?<![a-z0-9])(uncased|cased)(?![a-z0-9])")
CASING_HELP = ('add a teacher.json with {"lower_case": true} (uncased: lower-cases and strips '
               'accents) or {"lower_case": false} (cased)')


def lower_case_from_release_name(path: str) -> tuple[bool, str] | None:
    """The casing a folder's name states, or None when the name does not say.

    Rules, in order: Google's table of its release names (`GOOGLE_LOWER_CASED`, `GOOGLE_CASED`:
    `multilingual_L-12_H-768_A-12` and `chinese_L-12_H-768_A-12` are lower-cased although their
    names do not say it); Google's release pattern `[wwm_]uncased|cased_L-<n>_H-<n>_A-<n>`; a
    name holding exactly one of the words `uncased` / `cased` (hub names such as
    `bert-base-german-cased`). A name holding both words says nothing.

    Args:
      path: the teacher folder (local or gs://); only its base name is read.

    Returns:
      (lower_case, the rule that decided) or None.
    """
    base = os.path.basename(os.path.normpath(path))
    if base in GOOGLE_LOWER_CASED or base in GOOGLE_CASED:
        return base in GOOGLE_LOWER_CASED, f"Google release name {base}"
    match = _GOOGLE_RELEASE.match(base)
    if match:
        return match.group(1) == "uncased", f"Google release name {base}"
    words = set(_CASE_WORD.findall(base.lower()))
    if len(words) == 1:
        word = words.pop()
        return word == "uncased", f"the word '{word}' in the folder name {base}"
    return None


def resolve_identity(path: str, metadata: teacher_lib.TeacherMetadata, name: str | None,
                     languages: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """The teacher's name and languages: arguments first, then teacher.json, then defaults."""
    resolved_name = name or metadata.name or teacher_lib.default_name(path)
    resolved_languages = tuple(languages) if languages else metadata.languages
    return resolved_name, resolved_languages


def make_teacher(path: str, format_name: str, vocab: list[str], lower_case: bool,
                 metadata: teacher_lib.TeacherMetadata, name: str | None,
                 languages: Sequence[str], mlm_fn, **kwargs) -> teacher_lib.Teacher:
    """Builds the Teacher; configuration errors become LoaderErrors naming `path`."""
    resolved_name, resolved_languages = resolve_identity(path, metadata, name, languages)
    warn_if_vocab_looks_cased(vocab, lower_case, path)
    try:
        return teacher_lib.Teacher(resolved_name, vocab, lower_case, resolved_languages, mlm_fn,
                                   format=format_name, path=path, **kwargs)
    except teacher_lib.TeacherError as error:
        raise LoaderError(f"{path}: {error}") from error


def read_bert_folder(path: str, config_file: str, parse_config, format_name: str, layout: str):
    """Checks a BERT folder (Google or Hugging Face) and reads what both layouts hold.

    Returns (config: bert_mlm.BertConfig, config_path, vocab, metadata from teacher.json).
    """
    check_folder(path)
    require_files(path, [config_file, VOCAB_TXT], format_name, layout)
    config_path = os.path.join(path, config_file)
    config = parse_config(read_json(config_path), config_path)
    vocab = load_vocab(os.path.join(path, VOCAB_TXT))
    metadata = load_metadata(os.path.join(path, teacher_lib.TEACHER_JSON))
    return config, config_path, vocab, metadata


def teacher_from_google_weights(path: str, format_name: str, config, weights, has_head: bool,
                                vocab: list[str], lower_case: bool,
                                metadata: teacher_lib.TeacherMetadata, name: str | None,
                                languages: Sequence[str]) -> teacher_lib.Teacher:
    """Builds the tf-models BERT MLM, assigns Google-named weights and wraps it as a Teacher."""
    model = bert_mlm.build_bert_mlm(config)
    bert_mlm.assign_google_weights(model, config, weights, with_head=has_head)
    return make_teacher(
        path, format_name, vocab, lower_case, metadata, name, languages,
        bert_mlm.mlm_logits_fn(model.encoder_network, model.masked_lm),
        max_sequence_length=config.max_position_embeddings, model=model, config=config)
