"""ReadCorpus: one language's corpus files → its documents, as raw bytes.

A corpus line is one document (WORKSPACE.md). Lines are read with `BytesCoder`, not decoded:
decoding is the cleaning step's job (`tokenization.clean_text`), which drops invalid UTF-8 bytes
and counts the document as `invalid_utf8` instead of failing the job on a bad byte. Lines read
are counted as `<lang>/lines`.
"""

from __future__ import annotations

from typing import Sequence

import apache_beam as beam
import tensorflow as tf

from beam_jobs import metrics

LINES = "lines"


class CorpusError(ValueError):
    """A corpus glob matches no file."""


def check_corpus(language: str, globs: Sequence[str], where: str = "config") -> list[str]:
    """The files `globs` match (sorted); raises CorpusError naming the language and the glob
    that matches nothing. The launcher calls this before building the pipeline."""
    files = []
    for pattern in globs:
        matched = sorted(tf.io.gfile.glob(pattern))
        matched = [m for m in matched if not tf.io.gfile.isdir(m)]
        if not matched:
            raise CorpusError(f"{where}: languages.{language}.corpus: {pattern!r} matches no file")
        files.extend(matched)
    return sorted(set(files))


class _CountLines(beam.DoFn):

    def __init__(self, language: str):
        self._language = language

    def setup(self):
        self._counters = metrics.Counters()

    def process(self, line: bytes):
        self._counters.inc(self._language, None, LINES)
        yield line


class ReadCorpus(beam.PTransform):
    """PBegin → PCollection[bytes]: every line of every file the globs match."""

    def __init__(self, language: str, globs: Sequence[str]):
        super().__init__()
        self._language = language
        self._globs = list(globs)

    def expand(self, pbegin):
        reads = [pbegin | f"Read[{i}]" >> beam.io.ReadFromText(
                     pattern, coder=beam.coders.BytesCoder(), strip_trailing_newlines=True)
                 for i, pattern in enumerate(self._globs)]
        lines = reads[0] if len(reads) == 1 else reads | "FlattenFiles" >> beam.Flatten()
        return lines | "CountLines" >> beam.ParDo(_CountLines(self._language))
