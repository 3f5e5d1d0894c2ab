"""Full-sentences packing (segmentation.pack_documents, packing: full_sentences): sequences are
filled across documents with one separator between two documents' text; no text is lost or
duplicated; the same input gives the same sequences; separators are never masked and every
teacher's copy masks the same words."""

import collections

import numpy as np
import pytest

from teacher_scoring.examples import create_examples as ce
from teacher_scoring.examples import segmentation as sg
from teacher_scoring.examples.masking import MaskingConfig
from teacher_scoring.examples.tokenization import TeacherTokenizer, clean_text
from tests.conftest import demo_lines, trained_vocab, udhr_lines

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_TOKENS = 10          # S = 12


@pytest.fixture(scope="module")
def words():
    """A teacher whose every word w0 ... w199 is one piece: lengths are exact."""
    return {"w": TeacherTokenizer(SPECIALS + [f"w{i}" for i in range(200)], False)}


@pytest.fixture(scope="module")
def teachers():
    """Two English teachers with very different vocabs (the finer one fills its sequences)."""
    return {"small_uncased": TeacherTokenizer(trained_vocab("en", 1000, lower_case=True), True),
            "big_cased": TeacherTokenizer(trained_vocab("en", 6000, lower_case=False), False)}


def doc(first, count):
    return " ".join(f"w{i}" for i in range(first, first + count))


def pack(documents, tokenizers, max_tokens=MAX_TOKENS, batch_size=256):
    counts = collections.Counter()
    return list(sg.pack_documents(documents, tokenizers, max_tokens, counts,
                                  batch_size=batch_size)), counts


def texts(segment, tokenizer, name="w"):
    """The sequence's tokens, separators shown as [SEP]."""
    return [tokenizer.vocab[i] for i in segment.pieces[name].ids]


def test_short_documents_share_a_sequence_with_a_separator_between(words):
    tok = words["w"]
    segments, counts = pack([doc(0, 3), doc(10, 4), doc(20, 5)], words)
    assert [texts(s, tok) for s in segments] == [
        ["w0", "w1", "w2", "[SEP]", "w10", "w11", "w12", "w13", "[SEP]", "w20"],
        ["w21", "w22", "w23", "w24"]]
    first = segments[0].pieces["w"]
    np.testing.assert_array_equal(first.separators, [0, 0, 0, 1, 0, 0, 0, 0, 1, 0])
    assert segments[1].pieces["w"].separators is None   # one document's text, no separator
    # The third document's first word ends sequence 0; the rest starts sequence 1, whose
    # example id is that document's (the first sequence that starts in it).
    hashes = [sg.document_hash(clean_text(d)) for d in (doc(0, 3), doc(10, 4), doc(20, 5))]
    assert [p.doc_hash for p in segments[0].parts] == hashes
    assert segments[0].example_id("en") == f"en-{hashes[0]}-0"
    assert segments[1].example_id("en") == f"en-{hashes[2]}-0"
    # Cut at the next word's start byte ("w20 " is 4 bytes).
    assert (segments[0].parts[2].start, segments[0].parts[2].end) == (0, 4)
    assert (segments[1].parts[0].start, segments[1].parts[0].end) == (4, len(doc(20, 5)))
    assert counts[sg.SEGMENTS] == 2 and counts[sg.CROSS_DOCUMENT_SEGMENTS] == 1
    assert counts[sg.DOCUMENT_SEPARATORS] == 2 and counts[sg.SPLIT_LONG_DOCUMENT] == 1


def test_a_document_of_exactly_s_minus_2_pieces_fills_a_sequence_alone(words):
    tok = words["w"]
    segments, counts = pack([doc(0, MAX_TOKENS), doc(50, MAX_TOKENS), doc(100, 2)], words)
    assert [texts(s, tok) for s in segments] == [
        [f"w{i}" for i in range(MAX_TOKENS)], [f"w{i}" for i in range(50, 50 + MAX_TOKENS)],
        ["w100", "w101"]]
    assert all(s.pieces["w"].separators is None for s in segments)   # never a leading [SEP]
    assert counts[sg.DOCUMENT_SEPARATORS] == 0 and counts[sg.SPLIT_LONG_DOCUMENT] == 0
    # A document that fits the open sequence exactly after its separator closes it full.
    segments, _ = pack([doc(0, 4), doc(10, MAX_TOKENS - 5), doc(30, 1)], words)
    assert [len(s.pieces["w"].ids) for s in segments] == [MAX_TOKENS, 1]


def test_documents_longer_than_s_are_cut_into_full_sequences_and_continue(words):
    tok = words["w"]
    segments, counts = pack([doc(0, 25), doc(100, 7)], words)
    assert [texts(s, tok) for s in segments] == [
        [f"w{i}" for i in range(0, 10)], [f"w{i}" for i in range(10, 20)],
        [f"w{i}" for i in range(20, 25)] + ["[SEP]", "w100", "w101", "w102", "w103"],
        ["w104", "w105", "w106"]]
    hash0 = sg.document_hash(doc(0, 25))
    assert [s.index for s in segments[:3]] == [0, 1, 2]
    assert {s.doc_hash for s in segments[:3]} == {hash0}
    assert counts[sg.SPLIT_LONG_DOCUMENT] == 2


def test_no_open_slot_is_left_for_a_separator_alone(words):
    # 9 pieces open: a separator would fill the 10th and leave no room for text.
    segments, _ = pack([doc(0, MAX_TOKENS - 1), doc(50, 3)], words)
    assert [len(s.pieces["w"].ids) for s in segments] == [MAX_TOKENS - 1, 3]
    assert all(s.pieces["w"].separators is None for s in segments)


def check_no_text_lost_or_duplicated(documents, tokenizers, segments, max_tokens):
    cleaned = [clean_text(d) for d in documents]
    spans = collections.defaultdict(list)
    for segment in segments:
        for part in segment.parts:
            spans[part.doc_hash].append((part.start, part.end))
        for name, tokenizer in tokenizers.items():
            pieces = segment.pieces[name]
            assert 1 <= len(pieces.ids) <= max_tokens
            separators = (pieces.separators if pieces.separators is not None
                          else np.zeros(len(pieces.ids), bool))
            # One separator between two parts, never first or last, never two in a row.
            assert separators.sum() == len(segment.parts) - 1
            assert not separators[0] and not separators[-1]
            assert not np.any(separators[1:] & separators[:-1])
            np.testing.assert_array_equal(pieces.ids[separators], tokenizer.sep_id)
    for name, tokenizer in tokenizers.items():
        stream = np.concatenate([
            s.pieces[name].ids[~s.pieces[name].separators] if s.pieces[name].separators
            is not None else s.pieces[name].ids for s in segments])
        reference = np.concatenate([tokenizer.tokenize_with_offsets([c])[0].ids
                                    for c in cleaned])
        np.testing.assert_array_equal(stream, reference)   # every piece once, in order
    assert len(spans) == len(cleaned)
    for text in cleaned:
        tiles = spans[sg.document_hash(text)]
        assert tiles[0][0] == 0 and tiles[-1][1] == len(text.encode("utf-8"))
        assert all(a[1] == b[0] for a, b in zip(tiles, tiles[1:]))


def demo_documents(lines, seed=0, most=12):
    rng = np.random.default_rng(seed)
    documents, i = [], 0
    while i < len(lines):
        k = int(rng.integers(1, most))
        documents.append("\n".join(lines[i:i + k]))
        i += k
    return documents


@pytest.mark.parametrize("max_tokens", [126, 30, 7])
def test_no_text_lost_or_duplicated_with_two_teachers(teachers, max_tokens):
    documents = demo_documents(demo_lines("en", 300)) + udhr_lines("en", 20)
    segments, counts = pack(documents, teachers, max_tokens, batch_size=16)
    check_no_text_lost_or_duplicated(documents, teachers, segments, max_tokens)
    ids = [s.example_id("en") for s in segments]
    assert len(set(ids)) == len(ids)
    assert counts[sg.SEGMENTS] == len(segments)
    assert counts[sg.CROSS_DOCUMENT_SEGMENTS] == sum(len(s.parts) > 1 for s in segments) > 0
    assert counts[sg.DOCUMENT_SEPARATORS] == sum(len(s.parts) - 1 for s in segments)
    # The teacher that splits finest fills every sequence but the last within one word.
    finest = [max(len(s.pieces[n].ids) for n in teachers) for s in segments]
    assert np.mean(finest[:-1]) >= max_tokens - 2
    # Shared words: a separator is a word of its own, the same index in every copy.
    for segment in segments:
        copies = list(segment.pieces.values())
        for pieces in copies:
            if pieces.separators is not None:
                sep_words = pieces.word_index[pieces.separators]
                np.testing.assert_array_equal(sep_words, copies[0].word_index[
                    copies[0].separators])
                assert np.sum(np.isin(pieces.word_index, sep_words)) == len(sep_words)
        assert len({int(p.word_index[-1]) for p in copies}) == 1


def test_same_input_same_sequences_whatever_the_batch_size(teachers):
    documents = demo_documents(demo_lines("en", 200), seed=1)
    reference, _ = pack(documents, teachers, 62, batch_size=256)
    for batch_size in (1, 7):
        again, _ = pack(documents, teachers, 62, batch_size=batch_size)
        assert [(s.doc_hash, s.index, s.parts) for s in again] == [
            (s.doc_hash, s.index, s.parts) for s in reference]
        for a, b in zip(again, reference):
            for name in teachers:
                np.testing.assert_array_equal(a.pieces[name].ids, b.pieces[name].ids)
                np.testing.assert_array_equal(a.pieces[name].word_index,
                                              b.pieces[name].word_index)


def test_duplicates_and_documents_not_every_teacher_keeps_are_dropped_and_counted(words):
    other = {"w": words["w"], "x": TeacherTokenizer(SPECIALS + ["x0", "x1"], False)}
    documents = [doc(0, 3) + " x0", doc(0, 3) + " x0", "x1 x0", doc(10, 2)]
    segments, counts = pack(documents, other)
    # doc(10, 2) is all [UNK] for teacher x: its copies would not hold the same text.
    assert counts[sg.DUPLICATE_DOCUMENT] == 1 and counts[sg.NOT_ALL_TEACHERS] == 2
    assert counts[sg.ALL_UNKNOWN] == 2     # "x1 x0" for w, doc(10, 2) for x
    assert [texts(s, other["x"], "x") for s in segments] == [
        ["[UNK]", "[UNK]", "[UNK]", "x0"]]


def test_full_sentences_examples_never_mask_a_separator_and_copies_share_masks(teachers):
    documents = demo_documents(demo_lines("en", 200), seed=2)
    config = MaskingConfig(seq_length=64, max_predictions_per_seq=10, seed=3,
                           packing="full_sentences")
    examples = list(ce.create_examples(documents, "en", teachers, config, batch_size=9))
    by_id = collections.defaultdict(dict)
    for example in examples:
        by_id[example.example_id][example.teacher] = example
    assert all(len(copies) == 2 for copies in by_id.values())
    segments = {s.example_id("en"): s for s in pack(documents, teachers, 62)[0]}
    assert set(segments) == set(by_id)
    separators_seen = 0
    for example_id, copies in by_id.items():
        masked_words = []
        for name, example in copies.items():
            pieces = segments[example_id].pieces[name]
            n = len(pieces.ids)
            assert example.input_mask.sum() == n + 2
            positions = example.masked_lm_positions[example.masked_lm_weights > 0]
            assert len(positions) >= 1
            if pieces.separators is not None:
                separators_seen += pieces.separators.sum()
                sep_positions = np.flatnonzero(pieces.separators) + 1
                assert not np.isin(positions, sep_positions).any()
                # The separators stay in the input: [SEP] at every document boundary.
                np.testing.assert_array_equal(example.input_word_ids[sep_positions],
                                              teachers[name].sep_id)
            masked_words.append(np.unique(pieces.word_index[positions - 1]).tolist())
        assert masked_words[0] == masked_words[1]      # the same words in every copy
    assert separators_seen > 0
    again = list(ce.create_examples(documents, "en", teachers, config, batch_size=256))
    for a, b in zip(examples, again):
        np.testing.assert_array_equal(a.input_word_ids, b.input_word_ids)
        np.testing.assert_array_equal(a.masked_lm_positions, b.masked_lm_positions)


@pytest.mark.parametrize("whole_word", [False, True])
def test_one_teacher_masking_skips_separators(words, whole_word):
    # Sequences of many separators: one-word documents, so masking meets them everywhere.
    documents = [f"w{i}" for i in range(120)]
    config = MaskingConfig(seq_length=MAX_TOKENS + 2, max_predictions_per_seq=5, seed=7,
                           masked_lm_prob=0.4, whole_word_masking=whole_word,
                           packing="full_sentences")
    examples = list(ce.create_examples(documents, "en", words, config))
    # Five words and four separators a sequence (a tenth piece would be a separator alone).
    assert len(examples) == 24
    sep = words["w"].sep_id
    for example in examples:
        real = int(example.input_mask.sum())
        assert real == 11
        positions = example.masked_lm_positions[example.masked_lm_weights > 0]
        assert len(positions) == 4        # min(P, round(0.4 x 11)), all of them words
        assert not np.any(example.masked_lm_ids[:len(positions)] == sep)
        gold = example.input_word_ids.copy()
        gold[positions] = example.masked_lm_ids[:len(positions)]
        body = gold[1:real - 1]
        assert np.all(body[1::2] == sep) and not np.any(body[0::2] == sep)
        np.testing.assert_array_equal(example.input_word_ids[1:real - 1][1::2], sep)


def test_full_sentences_refuses_short_seq_prob_and_unknown_packing():
    with pytest.raises(ValueError, match="short_seq_prob must be 0 with it, got 0.1"):
        MaskingConfig(seq_length=64, max_predictions_per_seq=10, short_seq_prob=0.1,
                      packing="full_sentences")
    with pytest.raises(ValueError, match="packing must be one of .*'roberta'"):
        MaskingConfig(seq_length=64, max_predictions_per_seq=10, packing="roberta")
    with pytest.raises(ValueError, match="max_tokens must be >= 3"):
        list(sg.pack_documents(["a b"], {"w": TeacherTokenizer(SPECIALS + ["a", "b"], False)},
                               2))
