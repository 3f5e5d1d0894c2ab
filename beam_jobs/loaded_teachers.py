"""The teachers this process holds for a scoring job, with their scoring functions.

Under the DirectRunner's `in_memory` mode (the launcher's default) the RunInference workers run
in the launcher's process. `pipeline.prepare_job` loads each teacher and makes its scoring
function with the workers' settings here (`get`, kept), and scores its check batch with it at
the workers' shape; `TeacherModelHandler.load_model` then finds both (`get`, not kept): one
teacher build and one scoring trace (one XLA compilation) per teacher per process. A worker in
another process (multi_processing, Dataflow) finds nothing and builds its own, which it does
not keep (Beam's RunInference holds the model for it).

Keys are everything that determines an entry: the teacher's (path, format, name, languages),
and for its scoring function also (top_k, jit_compile, compute_dtype). Entries live from
`prepare_job` to the end of `run_job` (`release`); the files at a path must not change while
they are held.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple, Sequence


class TeacherKey(NamedTuple):
    """What `load_teacher` is called with."""

    path: str
    format: str
    name: str
    languages: tuple[str, ...]


class ScoringKey(NamedTuple):
    """A teacher and what `scoring.make_score_fn` is called with."""

    teacher: TeacherKey
    top_k: int
    jit_compile: bool
    compute_dtype: str


def teacher_key(path: str, format: str, name: str,  # pylint: disable=redefined-builtin
                languages: Sequence[str]) -> TeacherKey:
    return TeacherKey(str(path), str(format), str(name), tuple(languages))


_LOCK = threading.Lock()
_TEACHERS: dict[TeacherKey, Any] = {}
_SCORE_FNS: dict[ScoringKey, Any] = {}


def teacher(key: TeacherKey, keep: bool = True):
    """The held teacher of `key`, else a new one from `load_teacher` (held if `keep`).

    Raises what `load_teacher` raises."""
    from teacher_scoring.teachers.loaders import load_teacher  # pylint: disable=import-outside-toplevel

    with _LOCK:
        found = _TEACHERS.get(key)
    if found is not None:
        return found
    loaded = load_teacher(key.path, format=key.format, name=key.name, languages=key.languages)
    if not keep:
        return loaded
    with _LOCK:
        return _TEACHERS.setdefault(key, loaded)


def get(key: ScoringKey, keep: bool = True) -> tuple[Any, Any]:
    """(teacher, scoring function) of `key`: the held ones, else new ones (`load_teacher`,
    `scoring.make_score_fn`), held if `keep`.

    Raises what `load_teacher` and `make_score_fn` raise."""
    from teacher_scoring.teachers import scoring  # pylint: disable=import-outside-toplevel

    loaded = teacher(key.teacher, keep)
    with _LOCK:
        found = _SCORE_FNS.get(key)
    if found is not None:
        return loaded, found
    score_fn = scoring.make_score_fn(loaded, top_k=key.top_k, jit_compile=key.jit_compile,
                                     compute_dtype=key.compute_dtype)
    if not keep:
        return loaded, score_fn
    with _LOCK:
        return loaded, _SCORE_FNS.setdefault(key, score_fn)


def held(key: TeacherKey | ScoringKey) -> bool:
    """Whether this process holds the entry of `key`."""
    with _LOCK:
        return key in (_SCORE_FNS if isinstance(key, ScoringKey) else _TEACHERS)


def release(key: TeacherKey) -> None:
    """Drops the teacher of `key` and its scoring functions (nothing if not held)."""
    with _LOCK:
        _TEACHERS.pop(key, None)
        for scoring_key in [k for k in _SCORE_FNS if k.teacher == key]:
            del _SCORE_FNS[scoring_key]


def clear() -> None:
    """Drops every entry."""
    with _LOCK:
        _TEACHERS.clear()
        _SCORE_FNS.clear()
