"""Corpus files → documents, in the two formats users have.

| format       | a document is                                  | typical source                      |
|--------------|------------------------------------------------|-------------------------------------|
| `line`       | one line                                       | one paragraph or article a line     |
| `blank_line` | a run of non-blank lines; blank lines separate | google-research/bert's input format: |
|              | documents                                      | one sentence or paragraph a line    |

A blank line is empty or holds only ASCII whitespace (space, tab, CR, VT, FF); a run of several
blank lines is one separator, and blank lines before the first or after the last document are
ignored. In `blank_line` format a document's lines are joined with "\\n" (the cleaning step turns
it into a space), so the segmenter packs consecutive lines of one document into full sequences
(`teacher_scoring.examples.segmentation`), never across documents.

Everything is bytes: decoding is the cleaning step's job (invalid UTF-8 is counted there, not
fatal). A `blank_line` document longer than `MAX_DOCUMENT_BYTES` (a file in `line` format read
as `blank_line`, or a file without blank lines) is cut at the first line boundary past that size
and counted as `long_document_cut`, so a worker never holds more than about that much of one
document; the pieces are documents of their own (they get their own example ids).

The same grouping runs in the sequential reader below (the create_examples CLI, tests) and in
the Beam job's splittable source (`beam_jobs.read_corpus`), which gives every byte range of a
file the documents that *start* in it, so a document is read whole by exactly one reader.
"""

from __future__ import annotations

import collections
from typing import Iterable, Iterator

LINE = "line"
BLANK_LINE = "blank_line"
DOCUMENT_FORMATS = (LINE, BLANK_LINE)

# A blank_line document is cut at a line boundary once it holds this many bytes.
MAX_DOCUMENT_BYTES = 1 << 20

# Counter key: a blank_line document cut because it exceeded MAX_DOCUMENT_BYTES.
LONG_DOCUMENT_CUT = "long_document_cut"

_BLANK = b" \t\r\n\x0b\x0c"


def check_format(document_format: str) -> str:
    if document_format not in DOCUMENT_FORMATS:
        raise ValueError(f"document_format must be one of {list(DOCUMENT_FORMATS)}, got "
                         f"{document_format!r}")
    return document_format


def is_blank(line: bytes) -> bool:
    """True for a line that is empty or only ASCII whitespace (its line break included)."""
    return not line.strip(_BLANK)


def strip_line_break(line: bytes) -> bytes:
    """The line without its trailing "\\n" or "\\r\\n"."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def blank_line_documents(lines: Iterable[tuple[int, bytes]], previous_blank: bool = True,
                         max_document_bytes: int = MAX_DOCUMENT_BYTES
                         ) -> Iterator[tuple[int, bytes, bool]]:
    """Groups lines into blank_line documents.

    Args:
      lines: (byte offset of the line in its file, the line with its line break), in file order.
      previous_blank: whether the line before the first one given is blank (True at the start
        of a file). When False, lines up to the next blank line continue a document that
        started earlier: they are skipped (the reader of that document reads them).
      max_document_bytes: cut a longer document at a line boundary (module docstring).

    Yields:
      (offset of the document's first line, the document's lines joined with "\\n", cut):
      `cut` is True for the second and later pieces of a document cut for its size (they
      belong to the same start offset).
    """
    start, parts, size, continued = -1, [], 0, False
    skipping = not previous_blank
    for offset, line in lines:
        if is_blank(line):
            if parts:
                yield start, b"\n".join(parts), continued
            start, parts, size, continued, skipping = -1, [], 0, False, False
            continue
        if skipping:
            continue
        if not parts and start < 0:
            start = offset
        parts.append(strip_line_break(line))
        size += len(line)
        if size >= max_document_bytes:
            yield start, b"\n".join(parts), continued
            parts, size, continued = [], 0, True
    if parts:
        yield start, b"\n".join(parts), continued


def _lines_with_offsets(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    offset = 0
    for line in lines:
        yield offset, line
        offset += len(line)


def iter_documents(lines: Iterable[bytes], document_format: str,
                   counts: collections.Counter | None = None,
                   max_document_bytes: int = MAX_DOCUMENT_BYTES) -> Iterator[bytes]:
    """The documents of one file's lines (bytes with their line breaks, as a binary file
    iterates), in order.

    `line`: every line is a document (empty lines too: the segmenter counts them as `empty`).
    `blank_line`: see the module docstring; cuts are counted in `counts[LONG_DOCUMENT_CUT]`.
    """
    check_format(document_format)
    if document_format == LINE:
        for line in lines:
            yield strip_line_break(line)
        return
    for _, document, cut in blank_line_documents(_lines_with_offsets(lines),
                                                 max_document_bytes=max_document_bytes):
        if cut and counts is not None:
            counts[LONG_DOCUMENT_CUT] += 1
        yield document
