"""ReadCorpus: both corpus formats on DirectRunner, and the blank-line source read whole by any
split of its byte ranges (documents are never cut or duplicated by splitting)."""

import random

import apache_beam as beam
import pytest
from apache_beam.io import source_test_utils
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.read_corpus import ReadCorpus, _BlankLineSource
from teacher_scoring.examples import documents
def _corpus(path, seed=0, num_documents=60):
    """A blank-line corpus with irregular gaps (none to three blank lines, some with spaces or
    CR), CRLF lines, and long and short lines; returns the expected documents."""
    rng = random.Random(seed)
    expected, chunks = [], [b"\n" * rng.randint(0, 2)]
    for d in range(num_documents):
        lines = [(f"doc {d} line {i} " + "w" * rng.randint(0, 200)).encode()
                 for i in range(rng.randint(1, 7))]
        expected.append(b"\n".join(lines))
        chunks.append(b"".join(line + rng.choice([b"\n", b"\r\n"]) for line in lines))
        chunks.append(rng.choice([b"\n", b" \n", b"\r\n\n", b"\n\t\n\n"]))
    path.write_bytes(b"".join(chunks))
    return expected


def test_blank_line_source_reads_every_document_once_under_any_split(tmp_path):
    path = tmp_path / "corpus.txt"
    expected = _corpus(path)
    source = _BlankLineSource(str(path), "en")
    assert source_test_utils.read_from_source(source) == expected
    for size in (1, 13, 100, 1000, 4096):
        splits = [bundle.source for bundle in source.split(desired_bundle_size=size)]
        got = [d for split in splits for d in source_test_utils.read_from_source(split)]
        assert got == expected, f"bundle size {size}"
    # Dynamic work rebalancing: a split at any fraction after any number of records.
    small = tmp_path / "small.txt"
    _corpus(small, seed=1, num_documents=8)
    source_test_utils.assert_split_at_fraction_exhaustive(_BlankLineSource(str(small), "en"))


def test_read_corpus_in_both_formats(tmp_path):
    blank = tmp_path / "blank.txt"
    expected = _corpus(blank, seed=2, num_documents=30)
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"one\ntwo \xff bytes\n\nfour\n")
    with test_pipeline.TestPipeline() as p:
        by_line = p | "Lines" >> ReadCorpus("en", [str(lines)])
        by_blank = p | "Blank" >> ReadCorpus("en", [str(blank), str(lines)], "blank_line")
        assert_that(by_line, equal_to([b"one", b"two \xff bytes", b"", b"four"]), label="line")
        assert_that(by_blank, equal_to(expected + [b"one\ntwo \xff bytes", b"four"]),
                    label="blank")


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="document_format"):
        ReadCorpus("en", ["x"], "sentences")
