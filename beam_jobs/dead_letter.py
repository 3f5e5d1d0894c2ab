"""The dead-letter output: records that failed a step, with the reason, as JSON lines.

A DoFn that catches an exception on one element emits `dead_letter(...)` to its `DEAD_LETTER`
tagged output (and counts it as `<lang>[/<teacher>]/dead_letter/<stage>`); the job goes on.
`WriteDeadLetters` flattens every step's dead letters into
`<output_dir>/dead_letter/dead_letter-SSSSS-of-NNNNN.jsonl`, one JSON object a line:

    {"stage": "build_examples", "language": "en", "teacher": null,
     "reason": "ValueError: ...", "element": {...}}

`element` is what the step received: a document as text (invalid UTF-8 bytes shown as \\xNN
escapes), or a masked copy with its ids as lists.
"""

from __future__ import annotations

import json
import os
from typing import Any

import apache_beam as beam
import numpy as np

from teacher_scoring.records import record_schema
DEAD_LETTER = "dead_letter"
FILE_PREFIX = "dead_letter"
FILE_SUFFIX = ".jsonl"

# Stages (the `stage` field and the counter suffix).
BUILD_EXAMPLES = "build_examples"
SCORE = "score"
MAP_TO_STUDENT = "map_to_student"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, record_schema.ScoredExample):
        return {name: _jsonable(getattr(value, name))
                for name in value.__dataclass_fields__}  # pylint: disable=no-member
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def error_reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def dead_letter(stage: str, language: str | None, teacher: str | None, reason: str,
                element: Any) -> dict:
    """A dead-letter entry (a JSON-serializable dict)."""
    return {"stage": stage, "language": language, "teacher": teacher, "reason": reason,
            "element": _jsonable(element)}


def to_json_line(entry: dict) -> str:
    return json.dumps(entry, ensure_ascii=False, sort_keys=True, allow_nan=True)


class WriteDeadLetters(beam.PTransform):
    """Writes dead-letter dicts as JSON lines under `directory` (one file; empty if none)."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, dead_letters):
        return (dead_letters
                | "ToJson" >> beam.Map(to_json_line)
                | "Write" >> beam.io.WriteToText(
                    os.path.join(self._directory, FILE_PREFIX), file_name_suffix=FILE_SUFFIX,
                    num_shards=1, shard_name_template="-SSSSS-of-NNNNN"))
