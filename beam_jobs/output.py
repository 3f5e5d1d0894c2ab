"""The job's output folder: overwrite protection, a temporary folder, the move into place.

Layout (WORKSPACE.md):

    <output_dir>/<lang>/<lang>-SSSSS-of-NNNNN.tfrecord[.gz]   + manifest.json
    <output_dir>/dead_letter/dead_letter-00000-of-00001.jsonl

The pipeline writes everything into `<output_dir>/.tmp-scoring-<run id>/` (same layout). Only
after the run has succeeded and the manifests are written does `move_into_place` move the files
to their final names: shards first, each language's manifest last (a reader needs the manifest,
so a language folder never looks complete before it is). A failed run leaves nothing in the
language folders; its temporary folder is removed (`remove_tree`).

A folder that already holds shards, a manifest or dead letters is refused unless `overwrite`:
then exactly those files are replaced (the old manifest is removed first) and anything else in
the folder is left alone.
"""

from __future__ import annotations

import datetime
import fnmatch
import logging
import os
import uuid
from typing import Iterable

import tensorflow as tf

from beam_jobs.dead_letter import FILE_PREFIX, FILE_SUFFIX
from teacher_scoring.manifest import MANIFEST_FILENAME

DEAD_LETTER_DIR = "dead_letter"
TMP_PREFIX = ".tmp-scoring-"


class OutputError(ValueError):
    """The output folder cannot be written (holds a previous run's files, or the move failed)."""


def _job_files(folder: str, patterns: Iterable[str]) -> list[str]:
    if not tf.io.gfile.isdir(folder):
        return []
    names = tf.io.gfile.listdir(folder)
    return sorted(n.rstrip("/") for n in names
                  if any(fnmatch.fnmatch(n.rstrip("/"), p) for p in patterns))


def _language_patterns(language: str) -> list[str]:
    return [f"{language}-*-of-*.tfrecord", f"{language}-*-of-*.tfrecord.gz", MANIFEST_FILENAME]


def _dead_letter_patterns() -> list[str]:
    return [f"{FILE_PREFIX}-*-of-*{FILE_SUFFIX}"]


def check_output(output_dir: str, languages: Iterable[str], overwrite: bool) -> None:
    """Refuses (OutputError) an output folder with a previous run's files unless `overwrite`."""
    found = []
    for language in languages:
        folder = os.path.join(output_dir, language)
        found += [os.path.join(folder, n) for n in _job_files(folder, _language_patterns(language))]
    folder = os.path.join(output_dir, DEAD_LETTER_DIR)
    found += [os.path.join(folder, n) for n in _job_files(folder, _dead_letter_patterns())]
    if found and not overwrite:
        raise OutputError(
            f"{output_dir}: already holds the output of a previous run ({len(found)} files, e.g. "
            f"{found[:3]}); pass --overwrite to replace it, or choose another --output_dir")


def make_temp_dir(output_dir: str) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = os.path.join(output_dir, f"{TMP_PREFIX}{stamp}-{uuid.uuid4().hex[:8]}")
    tf.io.gfile.makedirs(path)
    return path


def remove_tree(path: str) -> None:
    try:
        if tf.io.gfile.exists(path):
            tf.io.gfile.rmtree(path)
    except tf.errors.OpError as error:  # best effort: report, do not mask the real failure
        logging.error("could not remove the temporary folder %s: %s", path, error)


def _move(src: str, dst: str) -> None:
    tf.io.gfile.rename(src, dst, overwrite=True)


def move_into_place(tmp_dir: str, output_dir: str, languages: Iterable[str],
                    overwrite: bool) -> None:
    """Moves the finished run from `tmp_dir` to `output_dir` (module docstring)."""
    languages = list(languages)
    check_output(output_dir, languages, overwrite)  # again: another run may have finished meanwhile
    for language in languages:
        src = os.path.join(tmp_dir, language)
        dst = os.path.join(output_dir, language)
        if not tf.io.gfile.exists(os.path.join(src, MANIFEST_FILENAME)):
            raise OutputError(f"{src}: no {MANIFEST_FILENAME}; the run did not finish "
                              f"this language")
        tf.io.gfile.makedirs(dst)
        old = _job_files(dst, _language_patterns(language))
        if MANIFEST_FILENAME in old:
            tf.io.gfile.remove(os.path.join(dst, MANIFEST_FILENAME))
        for name in old:
            if name != MANIFEST_FILENAME:
                tf.io.gfile.remove(os.path.join(dst, name))
        new = _job_files(src, _language_patterns(language))
        for name in new:
            if name != MANIFEST_FILENAME:
                _move(os.path.join(src, name), os.path.join(dst, name))
        _move(os.path.join(src, MANIFEST_FILENAME), os.path.join(dst, MANIFEST_FILENAME))
    src = os.path.join(tmp_dir, DEAD_LETTER_DIR)
    dst = os.path.join(output_dir, DEAD_LETTER_DIR)
    tf.io.gfile.makedirs(dst)
    for name in _job_files(dst, _dead_letter_patterns()):
        tf.io.gfile.remove(os.path.join(dst, name))
    for name in _job_files(src, _dead_letter_patterns()):
        _move(os.path.join(src, name), os.path.join(dst, name))
    remove_tree(tmp_dir)


def dead_letter_files(output_dir: str) -> list[str]:
    folder = os.path.join(output_dir, DEAD_LETTER_DIR)
    return [os.path.join(folder, n) for n in _job_files(folder, _dead_letter_patterns())]
