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

A killed launcher cannot remove its temporary folder. Each one therefore holds `run.json`
(launcher host, pid, start time), and the next run into the same output folder removes the
stale ones (`remove_stale_temp_dirs`; only names `.tmp-scoring-*`): a folder whose launcher ran
on this host and is no longer running, or, when that cannot be checked (another host, no
readable run.json), one started more than `STALE_AFTER_SECONDS` (7 days) ago. Others are kept
and reported (a run into the same folder may still be going on).
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import json
import logging
import os
import socket
import uuid
from typing import Iterable

import tensorflow as tf

from beam_jobs.dead_letter import FILE_PREFIX, FILE_SUFFIX
from teacher_scoring.records.manifest import MANIFEST_FILENAME

DEAD_LETTER_DIR = "dead_letter"
TMP_PREFIX = ".tmp-scoring-"
RUN_INFO = "run.json"
STALE_AFTER_SECONDS = 7 * 24 * 3600
_STAMP_FORMAT = "%Y%m%d-%H%M%S"


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
    """Creates `<output_dir>/.tmp-scoring-<UTC time>-<id>/` with its run.json."""
    now = datetime.datetime.now(datetime.timezone.utc)
    path = os.path.join(output_dir, f"{TMP_PREFIX}{now.strftime(_STAMP_FORMAT)}-"
                                    f"{uuid.uuid4().hex[:8]}")
    tf.io.gfile.makedirs(path)
    with tf.io.gfile.GFile(os.path.join(path, RUN_INFO), "w") as f:
        f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                            "started": now.isoformat()}))
    return path


@dataclasses.dataclass
class TempDirCleanup:
    """What `remove_stale_temp_dirs` did: folders removed and kept, each with the reason."""

    removed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    kept: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _started_at(name: str, info: dict | None) -> datetime.datetime | None:
    if info is not None:
        try:
            started = datetime.datetime.fromisoformat(str(info["started"]))
            if started.tzinfo is not None:
                return started
        except (KeyError, ValueError):
            pass
    stamp = name[len(TMP_PREFIX):len(TMP_PREFIX) + 15]
    try:
        return datetime.datetime.strptime(stamp, _STAMP_FORMAT).replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def _read_run_info(path: str) -> dict | None:
    try:
        with tf.io.gfile.GFile(os.path.join(path, RUN_INFO), "r") as f:
            info = json.loads(f.read())
    except (tf.errors.OpError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def stale_reason(path: str, now: datetime.datetime | None = None,
                 stale_after_seconds: float = STALE_AFTER_SECONDS) -> tuple[bool, str]:
    """(stale?, why) for one temporary folder (module docstring)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    name = os.path.basename(path.rstrip("/"))
    info = _read_run_info(path)
    host, pid = (info.get("host"), info.get("pid")) if info else (None, None)
    if host == socket.gethostname() and isinstance(pid, int) and not isinstance(pid, bool):
        if _pid_running(pid):
            return False, f"its launcher (pid {pid} on this host) is still running"
        return True, f"its launcher (pid {pid} on this host) is no longer running"
    started = _started_at(name, info)
    where = (f"launched on {host}" if host else f"no readable {RUN_INFO}")
    if started is None:
        return False, f"{where}, start time unknown"
    age = (now - started).total_seconds()
    if age > stale_after_seconds:
        return True, f"{where}, started {age / 3600:.1f} h ago"
    return False, (f"{where}, started {age / 3600:.1f} h ago (removed after "
                   f"{stale_after_seconds / 3600:.0f} h)")


def remove_stale_temp_dirs(output_dir: str, now: datetime.datetime | None = None,
                           stale_after_seconds: float = STALE_AFTER_SECONDS) -> TempDirCleanup:
    """Removes the stale `.tmp-scoring-*` folders of killed runs in `output_dir` (module
    docstring); logs and returns what was removed and what was kept."""
    cleanup = TempDirCleanup()
    if not tf.io.gfile.isdir(output_dir):
        return cleanup
    for name in sorted(n.rstrip("/") for n in tf.io.gfile.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        if not name.startswith(TMP_PREFIX) or not tf.io.gfile.isdir(path):
            continue
        stale, reason = stale_reason(path, now, stale_after_seconds)
        if stale:
            tf.io.gfile.rmtree(path)
            cleanup.removed.append((path, reason))
            logging.warning("removed the temporary folder of a killed scoring run: %s (%s)",
                            path, reason)
        else:
            cleanup.kept.append((path, reason))
            logging.warning("kept the temporary folder %s (%s); remove it by hand if no "
                            "run is using it", path, reason)
    return cleanup


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
