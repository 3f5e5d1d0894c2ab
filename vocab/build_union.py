r"""Builds the student vocabulary (the union of the teachers' vocab.txt files) and its id maps.

Writes the student vocab folder described in `vocab.union` and docs/vocab.md (vocab.txt,
maps/<teacher>.npy, teachers.json, report.json, report.md) and prints the report summary.
Teachers are taken in the order of the --teacher flags; that order fixes the student ids.

Usage:
  python -m vocab.build_union \
      --teacher en=/data/md/teachers/bert_en/vocab.txt \
      --teacher de=/data/md/teachers/bert_de/vocab.txt \
      --output gs://my-bucket/md/vocab [--overwrite]
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
import tensorflow as tf

from teacher_scoring import cli_logging
from vocab.union import StudentVocab, StudentVocabError, check_teacher_name

FLAGS = flags.FLAGS


def parse_teacher_spec(spec: str) -> tuple[str, str]:
    """Parses one `--teacher NAME=PATH` value.

    Returns:
      (name, path).

    Raises:
      StudentVocabError: naming the spec when '=' is missing, the name is empty or unsafe, or
        the path is empty or does not exist.
    """
    if "=" not in spec:
        raise StudentVocabError(f"--teacher {spec!r}: expected NAME=PATH (e.g. "
                                f"en=teachers/bert_en/vocab.txt), found no '='")
    name, path = spec.split("=", 1)
    name, path = name.strip(), path.strip()
    if not name:
        raise StudentVocabError(f"--teacher {spec!r}: the teacher name before '=' is empty")
    try:
        check_teacher_name(name)
    except StudentVocabError as error:
        raise StudentVocabError(f"--teacher {spec!r}: {error}") from error
    if not path:
        raise StudentVocabError(f"--teacher {spec!r}: the vocab path after '=' is empty")
    if not tf.io.gfile.exists(path):
        raise StudentVocabError(f"--teacher {spec!r}: vocab file {path!r} does not exist")
    if tf.io.gfile.isdir(path):
        raise StudentVocabError(f"--teacher {spec!r}: {path!r} is a folder; give its vocab.txt")
    return name, path


def run(teacher_specs: list[str], output: str, overwrite: bool = False) -> StudentVocab:
    """Parses the specs, builds the union and saves it to `output`.

    Args:
      teacher_specs: `NAME=PATH` strings in union order.
      output: the student vocab folder to write (local or gs://).
      overwrite: replace the files of an existing non-empty `output`.

    Returns:
      The saved StudentVocab.

    Raises:
      StudentVocabError: bad specs (naming them), duplicate names, unreadable vocabularies, or a
        non-empty `output` without `overwrite` (checked before any vocabulary is read).
    """
    if not teacher_specs:
        raise StudentVocabError("give at least one --teacher NAME=PATH")
    pairs = [parse_teacher_spec(spec) for spec in teacher_specs]
    seen: dict[str, str] = {}
    for spec, (name, _) in zip(teacher_specs, pairs):
        if name in seen:
            raise StudentVocabError(f"--teacher {spec!r}: teacher name {name!r} is already used "
                                    f"by --teacher {seen[name]!r}")
        seen[name] = spec
    if not overwrite and tf.io.gfile.isdir(output) and tf.io.gfile.listdir(output):
        raise StudentVocabError(f"--output {output}: folder is not empty; pass --overwrite to "
                                f"replace the student vocab there")
    student_vocab = StudentVocab.from_vocab_files(pairs)
    student_vocab.save(output, overwrite=overwrite)
    logging.info("Wrote the student vocab (%d tokens) to %s", student_vocab.size, output)
    return student_vocab


def define_flags() -> None:
    """Defines this CLI's flags (called under __main__ only, so importing the module is free)."""
    flags.DEFINE_multi_string(
        "teacher", None, "NAME=PATH of a teacher's vocab.txt; repeat, in union order. NAME "
        "must match [A-Za-z0-9_.-]+ (it names maps/NAME.npy).")
    flags.DEFINE_string("output", None, "Student vocab folder to write (local or gs://).")
    flags.DEFINE_bool("overwrite", False, "Replace the student vocab files in a non-empty "
                      "--output folder.")
    flags.mark_flags_as_required(["teacher", "output"])


def main(argv):
    cli_logging.quiet_unless_verbose()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        student_vocab = run(FLAGS.teacher, FLAGS.output, FLAGS.overwrite)
    except StudentVocabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(student_vocab.summary())
    print(f"wrote {FLAGS.output}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
