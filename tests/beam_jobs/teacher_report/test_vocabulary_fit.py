"""Vocabulary fit: hand-computed figures (cased and uncased teachers), merging, and the Beam
transform equal to the in-process computation on the demo report's sample."""

import collections

import pytest

from beam_jobs.teacher_report import vocabulary_fit
from teacher_scoring.examples.tokenization import TeacherTokenizer, clean_text
from tests.beam_jobs.teacher_report.conftest import SAMPLE, examples_outside_beam

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _fit(texts, vocab, lower_case):
    tokenizer = TeacherTokenizer(vocab, lower_case)
    cleaned = [clean_text(t) for t in texts]
    return vocabulary_fit.fit_counts(cleaned, tokenizer.tokenize_with_offsets(cleaned), tokenizer)


def test_fit_counts_hand_computed():
    vocab = SPECIALS + ["hello", "world", "##s", ",", "wor", "##ld"]
    counts = _fit(["hello worlds, über x", "hello  hello"], vocab, lower_case=False)
    # Words: hello | worlds, | über | x  and  hello | hello.
    # Pieces: hello | world ##s , | [UNK] | [UNK]  and  hello | hello.
    assert counts.documents == 2
    assert counts.words == 6
    assert counts.pieces == 8
    assert counts.unk_pieces == 2
    assert counts.unk_words == 2
    assert counts.whole_words == 3                 # the three "hello" (an [UNK] is not whole)
    assert counts.characters == 5 + 7 + 4 + 1 + 10
    assert counts.uncovered_characters == 4 + 1    # "über" and "x"
    assert counts.missing_characters == collections.Counter("übrex")  # "e" only inside hello
    figures = counts.figures()
    assert figures["unk_word_rate"] == pytest.approx(2 / 6)
    assert figures["unk_piece_rate"] == pytest.approx(2 / 8)
    assert figures["fertility"] == pytest.approx(8 / 6)
    assert figures["whole_word_rate"] == pytest.approx(3 / 6)
    assert figures["uncovered_character_rate"] == pytest.approx(5 / 27)


def test_fit_counts_uncased_teacher_and_merge():
    vocab = SPECIALS + ["hello", "uber", "##s"]
    # Uncased: "Über" → "uber" (a whole word); "Hellos" → hello ##s; "ß" stays [UNK].
    counts = _fit(["Hellos Über ß"], vocab, lower_case=True)
    assert (counts.words, counts.pieces, counts.unk_words, counts.whole_words) == (3, 4, 1, 1)
    assert counts.uncovered_characters == 1
    assert counts.missing_characters == collections.Counter("ß")
    merged = vocabulary_fit.FitCounts.from_dict(counts.to_dict()).merge(counts)
    assert merged.words == 6 and merged.missing_characters["ß"] == 2


@pytest.mark.slow
def test_report_sample_and_vocabulary_fit_match_in_process(demo_report):
    report = demo_report["report"]
    for language in ("en", "de"):
        entry = report["languages"][language]
        sample, tokenizers, _ = examples_outside_beam(demo_report, language)
        assert entry["sample"]["paragraphs"] == len(sample) == min(
            SAMPLE, len(demo_report["corpora"][language].read_text().split("\n")) - 2)
        assert entry["sample"]["blank_lines"] == 1     # the empty last line
        cleaned = [clean_text(d) for d in sample]
        for name, tokenizer in tokenizers.items():
            expected = vocabulary_fit.fit_counts(cleaned, tokenizer.tokenize_with_offsets(cleaned),
                                     tokenizer).figures()
            assert entry["vocabulary_fit"][name] == expected, (language, name)
    # The small alphabet of ende_uncased leaves words it cannot spell.
    assert report["languages"]["de"]["vocabulary_fit"]["ende_uncased"]["unk_word_rate"] > 0
