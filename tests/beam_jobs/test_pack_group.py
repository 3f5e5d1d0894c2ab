"""Full-sentences packing inside the scoring job's BuildMaskedExamples (no pipeline): packing
groups and their order do not depend on how the documents arrive, and a document that makes
packing raise goes to the dead letters while the rest of its group is packed without it."""

import collections

import apache_beam as beam
import pytest

from beam_jobs import build_examples
from beam_jobs import dead_letter as dl
from teacher_scoring.examples import create_examples as create_examples_lib
from teacher_scoring.examples.masking import MaskingConfig
from teacher_scoring.examples.tokenization import TeacherTokenizer, clean_text
from teacher_scoring.examples import segmentation
from tests.conftest import demo_lines, trained_vocab

CONFIG = MaskingConfig(seq_length=32, max_predictions_per_seq=5, seed=3,
                       packing="full_sentences")


@pytest.fixture(scope="module")
def teacher():
    return build_examples.TeacherSpec("t", tuple(trained_vocab("en", 800, True)), True)


def _fn(teacher):
    fn = build_examples._PackGroupFn("en", [teacher], CONFIG, batch_size=4)
    fn.setup()
    return fn


def _group(documents, num_groups=3):
    groups = collections.defaultdict(list)
    for document in documents:
        key, value = build_examples.packing_key(document, num_groups)
        groups[key].append(value)
    return groups


def test_packing_key_is_the_cleaned_documents_hash():
    document = "Hello\u00a0world\x00".encode("utf-8")
    key, (doc_hash, raw) = build_examples.packing_key(document, 7)
    assert doc_hash == segmentation.document_hash(clean_text(document)) == \
        segmentation.document_hash("Hello world")
    assert key == int(doc_hash, 16) % 7 and raw == document


def test_a_group_gives_the_same_examples_in_any_arrival_order(teacher):
    documents = [line.encode("utf-8") for line in demo_lines("en", 60)]
    groups = _group(documents)
    assert len(groups) == 3
    for key, values in groups.items():
        first = list(_fn(teacher).process((key, values)))
        again = list(_fn(teacher).process((key, list(reversed(values)))))
        assert [e.example_id for e in first] == [e.example_id for e in again]
        assert all((a.input_word_ids == b.input_word_ids).all() and
                   (a.masked_lm_positions == b.masked_lm_positions).all()
                   for a, b in zip(first, again))
        tokenizer = {"t": TeacherTokenizer(list(teacher.vocab), True)}
        expected = list(create_examples_lib.create_examples(
            [d for _, d in sorted(values)], "en", tokenizer, CONFIG))
        assert [e.example_id for e in first] == [e.example_id for e in expected
                                                 if e.num_predictions]


def test_a_document_that_raises_goes_to_the_dead_letters(teacher, monkeypatch):
    documents = [line.encode("utf-8") for line in demo_lines("en", 40)]
    bad = b"BOOM " + documents[0]
    key, values = next(iter(_group(documents + [bad], num_groups=1).items()))
    real = create_examples_lib.create_examples

    def flaky(docs, *args, **kwargs):
        docs = list(docs)
        if any(d.startswith(b"BOOM") for d in docs):
            raise RuntimeError("injected failure")
        return real(docs, *args, **kwargs)

    monkeypatch.setattr(create_examples_lib, "create_examples", flaky)
    out = list(_fn(teacher).process((key, values)))
    letters = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    examples = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert len(letters) == 1
    assert letters[0]["stage"] == dl.BUILD_EXAMPLES and "injected failure" in letters[0]["reason"]
    assert all(o.tag == dl.DEAD_LETTER for o in out if isinstance(o, beam.pvalue.TaggedOutput))
    tokenizer = {"t": TeacherTokenizer(list(teacher.vocab), True)}
    expected = [e for e in real([d for _, d in sorted(values) if d != bad], "en",
                                tokenizer, CONFIG) if e.num_predictions]
    assert [e.example_id for e in examples] == [e.example_id for e in expected]
