"""ReadCorpus: one language's corpus files → its documents, as raw bytes.

Two corpus formats (`teacher_scoring.examples.documents`, the job config's `document_format`):

* `line`: a line is a document. Read with Beam's `ReadFromText` (splittable by byte ranges).
* `blank_line`: google-research/bert's input format, one sentence or paragraph a line and a
  blank line between documents. A document spans lines, so a line reader cannot be used; it is
  read with `_BlankLineSource`, a splittable `FileBasedSource`: the runner cuts every file into
  byte ranges (initial splitting and Dataflow's dynamic work rebalancing), and the reader of a
  range yields the documents whose first line *starts* in it, reading past the range's end to
  finish the last one. Where a document starts does not depend on the ranges (the first
  non-blank line after a blank line, or the file's first non-blank line), so every document is
  read whole, exactly once, whatever the splitting; a reader that starts inside a document
  looks back at the line before its first line to know whether that line begins a document.
  Memory: one document at a time (cut at `documents.MAX_DOCUMENT_BYTES`), so multi-GB files
  stream through many workers in parallel. Compressed files (.gz, ...) are not splittable:
  one reader per file, still streaming.

Lines are read as bytes, not decoded: decoding is the cleaning step's job
(`tokenization.clean_text`), which drops invalid UTF-8 bytes and counts the document as
`invalid_utf8` instead of failing the job on a bad byte. Counted: `<lang>/lines` (lines read;
in `blank_line` format the documents' non-blank lines) and `<lang>/long_document_cut`.
"""

from __future__ import annotations

from typing import Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.io import filebasedsource

from beam_jobs import metrics
from teacher_scoring.examples import documents as documents_lib
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


def _line_before_is_blank(file, line_start: int, chunk: int = 4096) -> bool:
    """Whether the line that ends just before byte `line_start` (a line start > 0) is blank:
    reads backwards from its end until a line break (blank) or a non-whitespace byte (not)."""
    end = line_start - 1                      # the "\n" that ends the previous line
    while end > 0:
        begin = max(0, end - chunk)
        file.seek(begin)
        data = file.read(end - begin)
        for byte in reversed(data):
            if byte == 0x0A:
                return True
            if byte not in b" \t\r\x0b\x0c":
                return False
        end = begin
    return True                               # the file's first line, all whitespace


def _lines_from(file, offset: int):
    """(offset, line) from `offset` (the file positioned there) to the end of the file."""
    while True:
        line = file.readline()
        if not line:
            return
        yield offset, line
        offset += len(line)


class _BlankLineSource(filebasedsource.FileBasedSource):
    """Documents of blank-line-separated files; splittable (module docstring)."""

    def __init__(self, pattern: str, language: str,
                 max_document_bytes: int = documents_lib.MAX_DOCUMENT_BYTES):
        super().__init__(pattern, splittable=True)
        self._language = language
        self._max_document_bytes = max_document_bytes

    def read_records(self, file_name, range_tracker):
        counters = metrics.Counters()
        start = range_tracker.start_position()
        with self.open_file(file_name) as file:
            previous_blank = True
            first_line = 0
            if start > 0:
                file.seek(start - 1)
                rest = file.readline()            # the end of the line holding byte start - 1
                if not rest.endswith(b"\n"):
                    return                        # no line starts in [start, end of file)
                first_line = start - 1 + len(rest)
                previous_blank = _line_before_is_blank(file, first_line)
                file.seek(first_line)
            for offset, document, cut in documents_lib.blank_line_documents(
                    _lines_from(file, first_line), previous_blank, self._max_document_bytes):
                if cut:
                    counters.inc(self._language, None, documents_lib.LONG_DOCUMENT_CUT)
                elif not range_tracker.try_claim(offset):
                    return
                yield document

    def default_output_coder(self):
        return beam.coders.BytesCoder()


class _CountLines(beam.DoFn):

    def __init__(self, language: str, document_format: str):
        self._language = language
        self._multi_line = document_format == documents_lib.BLANK_LINE

    def setup(self):
        self._counters = metrics.Counters()

    def process(self, document: bytes):
        lines = document.count(b"\n") + 1 if self._multi_line else 1
        self._counters.inc(self._language, None, LINES, lines)
        yield document


class ReadCorpus(beam.PTransform):
    """PBegin → PCollection[bytes]: the documents of every file the globs match.

    Args:
      language: the corpus language (counter names).
      globs: file globs (any Beam filesystem: local, gs://, ...).
      document_format: `line` or `blank_line` (teacher_scoring.examples.documents).
    """

    def __init__(self, language: str, globs: Sequence[str],
                 document_format: str = documents_lib.LINE):
        super().__init__()
        self._language = language
        self._globs = list(globs)
        self._format = documents_lib.check_format(document_format)

    def _read(self, pattern: str):
        if self._format == documents_lib.LINE:
            return beam.io.ReadFromText(pattern, coder=beam.coders.BytesCoder(),
                                        strip_trailing_newlines=True)
        return beam.io.Read(_BlankLineSource(pattern, self._language))

    def expand(self, pbegin):
        reads = [pbegin | f"Read[{i}]" >> self._read(pattern)
                 for i, pattern in enumerate(self._globs)]
        documents = reads[0] if len(reads) == 1 else reads | "FlattenFiles" >> beam.Flatten()
        return documents | "CountLines" >> beam.ParDo(
            _CountLines(self._language, self._format))

