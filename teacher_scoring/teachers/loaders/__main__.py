r"""Checks a teacher folder before a job uses it: loads it, prints what it is, and optionally
what it predicts for the [MASK]s of a sentence.

  python -m teacher_scoring.teachers.loaders /models/multi_cased_L-12_H-768_A-12 --languages en,hi \
      --text "Paris is the [MASK] of France."

Exits with status 1 and the loader's message (path and problem) if the folder is bad. Prints
only the answer; `-v 0` (absl's --verbosity) adds the libraries' INFO logs.
"""

from __future__ import annotations

import sys

from absl import app, flags
import numpy as np

from teacher_scoring import cli_logging
from teacher_scoring.teachers.loaders import FORMATS, LoaderError, load_teacher

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", "auto", ("auto",) + FORMATS, "The folder format.")
flags.DEFINE_list("languages", [], "Languages the teacher serves (default: teacher.json's).")
flags.DEFINE_string("text", None, "A sentence with [MASK] tokens to predict.")
flags.DEFINE_integer("top_k", 5, "Predictions shown per [MASK].")


def describe(path: str, format: str = "auto", languages=(), text: str | None = None,  # pylint: disable=redefined-builtin
             top_k: int = 5) -> str:
    """A human-readable summary of a teacher folder (raises LoaderError if it is bad)."""
    teacher = load_teacher(path, format=format, languages=languages)
    lines = [f"teacher      {teacher.name}",
             f"format       {teacher.format}",
             f"vocab        {teacher.vocab_size} tokens",
             f"casing       {'uncased' if teacher.lower_case else 'cased'}",
             f"languages    {', '.join(teacher.languages) or '(none stated)'}",
             f"max length   {teacher.max_sequence_length}"]
    if teacher.config is not None:
        lines.append(f"config       {teacher.config}")
    if text is not None:
        tokenizer = teacher.tokenizer()
        pieces = []
        for i, part in enumerate(text.split("[MASK]")):
            if i:
                pieces.append(tokenizer.mask_id)
            if part.strip():
                pieces.extend(tokenizer.tokenize_with_offsets([part])[0].ids.tolist())
        ids = np.array([[tokenizer.cls_id, *pieces, tokenizer.sep_id]], np.int32)
        positions = np.nonzero(ids[0] == tokenizer.mask_id)[0].astype(np.int32)[None]
        if positions.size == 0:
            lines.append("text         has no [MASK]")
        else:
            logits = teacher.mlm_logits(ids, np.ones_like(ids), np.zeros_like(ids),
                                        positions).numpy()[0]
            for n, row in enumerate(logits):
                best = np.argsort(-row)[:top_k]
                guesses = ", ".join(f"{teacher.vocab[j]} ({row[j]:.2f})" for j in best)
                lines.append(f"[MASK] {n + 1}     {guesses}")
    return "\n".join(lines)


def main(argv):
    cli_logging.quiet_unless_verbose()
    if len(argv) != 2:
        raise app.UsageError("usage: python -m teacher_scoring.teachers.loaders FOLDER [flags]")
    try:
        print(describe(argv[1], FLAGS.format, FLAGS.languages, FLAGS.text, FLAGS.top_k))
    except LoaderError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
