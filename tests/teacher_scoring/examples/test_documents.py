"""Tests for teacher_scoring.examples.documents: the two corpus formats, blank-line rules, the size cap."""

import collections

import pytest

from teacher_scoring.examples import documents
def lines_of(data: bytes):
    return data.splitlines(keepends=True)


def test_line_format_one_document_a_line_empty_lines_included():
    data = b"first doc\n\nthird doc\r\nlast without break"
    assert list(documents.iter_documents(lines_of(data), "line")) == [
        b"first doc", b"", b"third doc", b"last without break"]


def test_blank_line_format_groups_runs_of_lines():
    data = (b"\n  \n"                        # blank lines before the first document
            b"a1\na2\n"
            b"\n"
            b"b1\n"
            b" \t\r\n\n\x0c\n"                 # several blank lines (whitespace only): one gap
            b"c1\r\nc2\nc3")                   # CRLF, no final line break
    assert list(documents.iter_documents(lines_of(data), "blank_line")) == [
        b"a1\na2", b"b1", b"c1\nc2\nc3"]
    assert list(documents.iter_documents([], "blank_line")) == []
    assert list(documents.iter_documents(lines_of(b"\n\n \n"), "blank_line")) == []


def test_a_document_over_the_size_cap_is_cut_at_a_line_and_counted():
    data = b"".join(b"line %d of a long document\n" % i for i in range(100)) + b"\nnext\n"
    counts = collections.Counter()
    out = list(documents.iter_documents(lines_of(data), "blank_line", counts,
                                        max_document_bytes=500))
    assert out[-1] == b"next"
    assert b"\n".join(out[:-1]) == data.rstrip(b"\n").rsplit(b"\n\n", 1)[0]
    assert all(len(d) <= 500 + 40 for d in out[:-1]) and len(out) > 5
    assert counts[documents.LONG_DOCUMENT_CUT] == len(out) - 2


def test_blank_line_documents_reports_offsets_and_skips_a_document_begun_earlier():
    data = b"tail of an earlier doc\nstill it\n\nnew doc\nline 2\n\n\nthird\n"
    offsets, offset = [], 0
    for line in lines_of(data):
        offsets.append((offset, line))
        offset += len(line)
    got = list(documents.blank_line_documents(offsets, previous_blank=False))
    assert got == [(data.index(b"new doc"), b"new doc\nline 2", False),
                   (data.index(b"third"), b"third", False)]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="document_format"):
        list(documents.iter_documents([b"x\n"], "paragraphs"))
