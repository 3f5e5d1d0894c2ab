"""Tests for teacher_scoring.examples.segmentation: segments fit every teacher, cover every piece exactly
once, share boundaries across teachers, and bad input is counted by reason."""

import collections
import hashlib

import numpy as np
import pytest

from teacher_scoring.examples import segmentation as sg
from teacher_scoring.examples.tokenization import TeacherTokenizer, clean_text
from tests.conftest import demo_lines, trained_vocab, udhr_lines

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def teachers():
    """Two English teachers with very different vocabs: small uncased, large cased."""
    return {"small_uncased": TeacherTokenizer(trained_vocab("en", 1000, lower_case=True), True),
            "big_cased": TeacherTokenizer(trained_vocab("en", 6000, lower_case=False), False)}


def continuation(tokenizer):
    """[vocab_size] bool: the '##' pieces."""
    return np.array([token.startswith("##") for token in tokenizer.vocab])


def full_pieces(tokenizer, document):
    """The whole document's tokenization (the reference every segmentation must preserve)."""
    return tokenizer.tokenize_with_offsets([clean_text(document)])[0]


def common_word_starts(teachers, document):
    """Byte offsets where every teacher starts a word."""
    common = None
    for tokenizer in teachers.values():
        tok = full_pieces(tokenizer, document)
        starts = set(tok.starts[~continuation(tokenizer)[tok.ids]].tolist())
        common = starts if common is None else common & starts
    return np.array(sorted(common))


def check_segments(teachers, document, segments, max_tokens):
    """Every segment fits, the segments concatenated are the document's pieces, spans tile."""
    cleaned = clean_text(document)
    assert [s.index for s in segments] == list(range(len(segments)))
    assert segments[0].start == 0
    assert segments[-1].end == len(cleaned.encode("utf-8"))
    for previous, segment in zip(segments, segments[1:]):
        assert previous.end == segment.start
    for name, tokenizer in teachers.items():
        pieces = [s.pieces[name] for s in segments]
        assert all(1 <= len(p.ids) <= max_tokens for p in pieces), name
        np.testing.assert_array_equal(np.concatenate([p.ids for p in pieces]),
                                      full_pieces(tokenizer, document).ids)
        word_starts = np.concatenate([p.word_starts for p in pieces])
        np.testing.assert_array_equal(word_starts, ~continuation(tokenizer)[
            np.concatenate([p.ids for p in pieces])])


def long_paragraph(n_lines=60):
    return " ".join(demo_lines("en")[:n_lines])


@pytest.mark.parametrize("max_tokens", [126, 30, 7])
def test_segments_fit_and_cover_every_piece(teachers, max_tokens):
    documents = demo_lines("en", 400) + udhr_lines("en") + [long_paragraph()]
    counts = collections.Counter()
    results = sg.segment_documents(documents, teachers, max_tokens, counts)
    assert len(results) == len(documents)
    for document, segments in zip(documents, results):
        check_segments(teachers, document, segments, max_tokens)
    assert counts[sg.SEGMENTS] == sum(len(s) for s in results)
    assert counts[sg.SPLIT_LONG_DOCUMENT] == sum(len(s) > 1 for s in results)
    assert counts[sg.SPLIT_LONG_DOCUMENT] >= 1
    assert counts[sg.EMPTY_SEGMENT_COPY] == 0


def test_boundaries_are_common_word_starts_and_segments_are_greedy(teachers):
    max_tokens = 30
    document = long_paragraph()
    counts = collections.Counter()
    segments = sg.segment_document(document, teachers, max_tokens, counts)
    assert len(segments) > 10 and counts[sg.LONG_WORD_SPLIT] == 0
    common = common_word_starts(teachers, document)
    cleaned = clean_text(document).encode("utf-8")
    for segment in segments[1:]:
        assert segment.start in common
    for segment in segments:
        # A segment's text tokenized on its own gives exactly its pieces, for every teacher: the
        # cut never falls inside a word of any teacher.
        text = cleaned[segment.start:segment.end].decode("utf-8")
        for name, tokenizer in teachers.items():
            np.testing.assert_array_equal(tokenizer.tokenize_with_offsets([text])[0].ids,
                                          segment.pieces[name].ids)
    for segment, following in zip(segments, segments[1:]):
        # Greedy: the next common word would not fit some teacher.
        next_word_end = common[common > following.start]
        next_word_end = next_word_end[0] if len(next_word_end) else len(cleaned)
        longer = cleaned[segment.start:next_word_end].decode("utf-8")
        assert any(len(tokenizer.tokenize_with_offsets([longer])[0].ids) > max_tokens
                   for tokenizer in teachers.values())


def test_identical_boundaries_for_two_very_different_vocabs(teachers):
    documents = demo_lines("en", 300) + [long_paragraph(30)]
    both = sg.segment_documents(documents, teachers, 20)
    for name in teachers:
        alone = sg.segment_documents(documents, {name: teachers[name]}, 20)
        for segments, own in zip(both, alone):
            # Each teacher alone may cut differently; together they cut identically, and every
            # segment has both copies.
            assert all(set(s.pieces) == set(teachers) for s in segments)
            assert sum(len(s.pieces[name].ids) for s in segments) == sum(
                len(s.pieces[name].ids) for s in own)
    spans = [[(s.start, s.end) for s in segments] for segments in both]
    swapped = sg.segment_documents(documents, dict(reversed(list(teachers.items()))), 20)
    assert spans == [[(s.start, s.end) for s in segments] for segments in swapped]


def test_example_id_is_the_cleaned_document_hash_and_teacher_independent(teachers):
    document = "Hello\x00 world, this is a test."
    segments = sg.segment_document(document, teachers, 126)
    digest = hashlib.sha256(clean_text(document).encode("utf-8")).hexdigest()[:16]
    assert segments[0].example_id("en") == f"en-{digest}-0"
    # Cleaning happens first: the control character does not change the id.
    assert sg.segment_document("Hello world, this is a test.", teachers, 126)[0].example_id(
        "en") == f"en-{digest}-0"
    long_ids = [s.example_id("de") for s in sg.segment_document(long_paragraph(), teachers, 30)]
    assert len(set(long_ids)) == len(long_ids)
    assert all(i.startswith("de-") and i.endswith(f"-{n}") for n, i in enumerate(long_ids))


def test_word_longer_than_max_tokens_is_cut_at_a_piece_boundary(teachers):
    word = "abcdefghij" * 9  # 90 characters: WordPiece splits it (HF's [UNK] limit is 100)
    document = f"A {word} word."
    max_tokens = 5
    counts = collections.Counter()
    segments = sg.segment_document(document, teachers, max_tokens, counts)
    check_segments(teachers, document, segments, max_tokens)
    assert counts[sg.LONG_WORD_SPLIT] >= 1
    assert counts[sg.SPLIT_LONG_DOCUMENT] == 1
    # Some segment starts inside the word: its first piece is a ## continuation.
    assert any(not s.pieces[name].word_starts[0] for s in segments for name in teachers)


def test_a_character_that_expands_to_more_pieces_than_fit():
    """Uncased NFD splits a Hangul syllable into 3 jamo pieces with one start offset; with
    max_tokens=2 no cut at a byte offset can separate them. Nothing is lost or duplicated."""
    jamo = TeacherTokenizer(SPECIALS + ["ᄒ", "##ᅡ", "##ᆫ", "##ᄒ"], lower_case=True)
    syllable = TeacherTokenizer(SPECIALS + ["한", "##한"], lower_case=False)
    teachers = {"jamo": jamo, "syllable": syllable}
    document = "한한한 한"
    counts = collections.Counter()
    segments = sg.segment_document(document, teachers, 2, counts)
    for name, tokenizer in teachers.items():
        pieces = [s.pieces[name].ids for s in segments if name in s.pieces]
        assert all(1 <= len(p) <= 2 for p in pieces)
        np.testing.assert_array_equal(np.concatenate(pieces), full_pieces(tokenizer, document).ids)
    assert counts[sg.SEGMENTS] == len(segments)
    assert counts[sg.EMPTY_SEGMENT_COPY] == sum(len(teachers) - len(s.pieces) for s in segments)


def test_bad_input_is_counted_by_reason(teachers):
    long = long_paragraph()
    documents = [
        b"",                                         # empty
        "   \t  ",                                   # empty after cleaning
        b"Caf\xc3\xa9 \xff\xfeis open today.",       # invalid UTF-8 (dropped, counted)
        "Tab\there, NUL\x00 and BEL\x07 inside.",    # control characters (removed, counted)
        "ᚠᚢᚦ ᚨᚱᚲ ᛏᛒ",                             # only unknown characters: both teachers
        "ÀÉÎ",                                       # all [UNK] for the cased teacher only
        long,                                        # far longer than S: split, nothing lost
        "A normal short paragraph.",
    ]
    # Preconditions on the vocabularies, so a failure below means the segmenter.
    for tokenizer in teachers.values():
        assert set(full_pieces(tokenizer, documents[4]).ids.tolist()) == {tokenizer.unk_id}
    assert set(full_pieces(teachers["big_cased"], "ÀÉÎ").ids.tolist()) == {
        teachers["big_cased"].unk_id}
    assert teachers["small_uncased"].unk_id not in full_pieces(teachers["small_uncased"],
                                                               "ÀÉÎ").ids

    counts = collections.Counter()
    results = sg.segment_documents(documents, teachers, 30, counts)
    assert [len(r) for r in results[:6]] == [0, 0, 1, 1, 0, 1]
    assert set(results[5][0].pieces) == {"small_uncased"}
    check_segments(teachers, long, results[6], 30)
    n_long = len(results[6])
    assert n_long > 5
    expected = {
        sg.DOCUMENTS: 8, sg.EMPTY: 2, sg.INVALID_UTF8: 1, sg.CONTROL_CHARACTERS: 1,
        sg.ALL_UNKNOWN: 3, sg.NO_PIECES: 0, sg.SPLIT_LONG_DOCUMENT: 1,
        sg.SEGMENTS: 4 + n_long, sg.LONG_WORD_SPLIT: 0, sg.EMPTY_SEGMENT_COPY: 0,
    }
    assert {key: counts[key] for key in expected} == expected
    # The invalid bytes are dropped from the text, the rest is kept.
    assert results[2][0].pieces["small_uncased"].ids.tolist() == teachers[
        "small_uncased"].tokenize_with_offsets(["Café is open today."])[0].ids.tolist()


def test_a_text_with_no_pieces_is_counted():
    # Uncased normalisation drops the combining marks; nothing is left to tokenize.
    tokenizer = TeacherTokenizer(trained_vocab("en", 1000, lower_case=True), True)
    counts = collections.Counter()
    assert sg.segment_document("\u0301\u0301", {"t": tokenizer}, 10, counts) == []
    assert counts[sg.NO_PIECES] == 1 and counts[sg.EMPTY] == 0


def test_batching_does_not_change_segments(teachers):
    documents = demo_lines("en", 50) + [long_paragraph(20), ""]
    batched = sg.segment_documents(documents, teachers, 25)
    streamed = list(sg.iter_segments(iter(documents), teachers, 25, batch_size=7))
    one_by_one = [sg.segment_document(d, teachers, 25) for d in documents[:8]]
    for a, b in zip(batched, streamed):
        assert [(s.example_id("en"), s.start, s.end) for s in a] == [
            (s.example_id("en"), s.start, s.end) for s in b]
        for sa, sb in zip(a, b):
            for name in teachers:
                np.testing.assert_array_equal(sa.pieces[name].ids, sb.pieces[name].ids)
    assert [[s.end for s in r] for r in one_by_one] == [[s.end for s in r] for r in batched[:8]]


def test_rejects_bad_arguments(teachers):
    with pytest.raises(ValueError, match="max_tokens"):
        sg.segment_document("text", teachers, 0)
    with pytest.raises(ValueError, match="tokenizer"):
        sg.segment_document("text", {}, 10)


def test_random_mixed_script_text_never_loses_a_piece(teachers):
    """Fixed-seed fuzzing: random mixes of scripts, accents, control characters, expanding
    characters and over-long words; random teacher subsets; max_tokens 1..12."""
    jamo = TeacherTokenizer(SPECIALS + ["ᄒ", "##ᅡ", "##ᆫ", "##ᄒ", "a", "##a", "b", "##b"],
                            lower_case=True)
    pool_teachers = dict(teachers, jamo=jamo)
    alphabet = list("abcdefgh ijklmn opq    ÀÉÎéü.,'!-ǅⅫ한中文字\u0301\x00\t") + [
        "the ", "tion", "xyz" * 40, "https://example.org/a/b?c=d", "  "]
    rng = np.random.default_rng(0)
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=rng.integers(0, 60)))
        names = list(rng.choice(list(pool_teachers), size=rng.integers(1, 4), replace=False))
        subset = {name: pool_teachers[name] for name in names}
        max_tokens = int(rng.integers(1, 13))
        segments = sg.segment_document(text, subset, max_tokens)
        assert all(a.end == b.start for a, b in zip(segments, segments[1:]))
        cleaned = clean_text(text)
        for name, tokenizer in subset.items():
            full = tokenizer.tokenize_with_offsets([cleaned])[0].ids if cleaned.strip() else []
            got = [s.pieces[name].ids for s in segments if name in s.pieces]
            assert all(1 <= len(g) <= max_tokens for g in got)
            if len(full) == 0 or np.all(np.asarray(full) == tokenizer.unk_id):
                assert not got
            else:
                np.testing.assert_array_equal(np.concatenate(got), full, err_msg=repr(text))


def piece_starts(tokenizer, document, segments, name):
    """Per segment, the byte offsets of teacher `name`'s pieces (from the whole document's
    tokenization: segments hold consecutive slices of it)."""
    starts = full_pieces(tokenizer, document).starts
    out, i = [], 0
    for segment in segments:
        n = len(segment.pieces[name].ids)
        out.append(starts[i:i + n])
        i += n
    return out


def test_lines_of_a_document_are_packed_up_to_max_tokens(teachers):
    """A blank_line document arrives as its lines joined with "\\n": segments run across line
    boundaries and every segment but the last is full (the next word would not fit)."""
    lines = demo_lines("en")[:80]
    document = "\n".join(lines)
    max_tokens = 62
    segments = sg.segment_document(document, teachers, max_tokens)
    check_segments(teachers, document, segments, max_tokens)
    cleaned = clean_text(document).encode("utf-8")
    # Most lines are short: most segments hold text of several lines.
    assert clean_text(document) == " ".join(lines)
    line_starts = np.cumsum([0] + [len(line.encode("utf-8")) + 1 for line in lines[:-1]])
    crossing = [s for s in segments if np.any((line_starts > s.start) & (line_starts < s.end))]
    assert len(crossing) >= 0.75 * len(segments)
    common = common_word_starts(teachers, document)
    for segment in segments[:-1]:
        following = common[common > segment.end]
        end = following[0] if len(following) else len(cleaned)
        longer = cleaned[segment.start:end].decode("utf-8")
        assert any(len(t.tokenize_with_offsets([longer])[0].ids) > max_tokens
                   for t in teachers.values())
    tightest = [max(len(s.pieces[n].ids) for n in teachers) for s in segments[:-1]]
    assert np.mean(tightest) > 0.9 * max_tokens


def test_short_seq_prob_draws_shorter_targets_deterministically(teachers):
    document = "\n".join(demo_lines("en")[:150])
    max_tokens = 126
    full = sg.segment_document(document, teachers, max_tokens)
    counts = collections.Counter()
    short = sg.segment_document(document, teachers, max_tokens, counts, short_seq_prob=1.0,
                                seed=3)
    check_segments(teachers, document, short, max_tokens)
    assert counts[sg.SHORT_TARGET] == len(short) > 2 * len(full)
    # Targets uniform in [2, max_tokens]: the mean length is about half of the full ones'.
    lengths = [max(len(s.pieces[n].ids) for n in teachers) for s in short[:-1]]
    assert np.mean(lengths) < 0.7 * max_tokens
    # Seeded by (seed, document): the same with any batching; another seed, other cuts.
    again = sg.segment_documents(["other", document], teachers, max_tokens,
                                 short_seq_prob=1.0, seed=3)[1]
    assert [(s.start, s.end) for s in again] == [(s.start, s.end) for s in short]
    other = sg.segment_document(document, teachers, max_tokens, short_seq_prob=1.0, seed=4)
    assert [(s.start, s.end) for s in other] != [(s.start, s.end) for s in short]
    # With p = 0.25, about a quarter of the targets are short (4 sigma).
    counts = collections.Counter()
    documents = ["\n".join(demo_lines("en")[i:i + 20]) for i in range(0, 1600, 20)]
    results = sg.segment_documents(documents, teachers, max_tokens, counts,
                                   short_seq_prob=0.25, seed=5)
    n = counts[sg.SEGMENTS]
    assert n == sum(len(r) for r in results) > 150
    assert abs(counts[sg.SHORT_TARGET] - 0.25 * n) < 4 * np.sqrt(n * 0.25 * 0.75)
    with pytest.raises(ValueError, match="short_seq_prob"):
        sg.segment_document(document, teachers, max_tokens, short_seq_prob=1.5)


def test_a_short_target_is_soft_when_no_word_fits(teachers):
    """A target of 2 pieces cannot hold a 5-piece word: the segment grows to the hard limit
    instead of cutting inside the word."""
    word = "abcdefghij" * 2
    document = " ".join([word] * 6)
    counts = collections.Counter()
    segments = sg.segment_document(document, teachers, 40, counts, short_seq_prob=1.0, seed=0)
    check_segments(teachers, document, segments, 40)
    assert counts[sg.LONG_WORD_SPLIT] == 0
    assert all(s.pieces[n].word_starts[0] for s in segments for n in teachers)


def test_shared_words_are_the_same_text_in_every_copy(teachers):
    documents = demo_lines("en", 200) + ["\n".join(demo_lines("en")[300:360])]
    for document, segments in zip(documents,
                                  sg.segment_documents(documents, teachers, 30)):
        starts = {n: piece_starts(t, document, segments, n) for n, t in teachers.items()}
        for k, segment in enumerate(segments):
            words = {}
            for name in teachers:
                index = segment.pieces[name].word_index
                assert index[0] == 0 and np.all(np.diff(index) >= 0)
                assert np.all(np.diff(index) <= 1)          # no empty shared word
                first = np.flatnonzero(np.diff(index)) + 1   # first piece of words 1, 2, ...
                # Words 1, 2, ... start at the same byte in every copy, at a word start.
                assert segment.pieces[name].word_starts[first].all()
                words[name] = starts[name][k][first].tolist()
            assert len({tuple(w) for w in words.values()}) == 1, (document, k)
    # One teacher: its own words.
    one = {"big_cased": teachers["big_cased"]}
    for segments in sg.segment_documents(documents[:50], one, 30):
        for segment in segments:
            pieces = segment.pieces["big_cased"]
            np.testing.assert_array_equal(pieces.word_index,
                                          np.cumsum(pieces.word_starts | (
                                              np.arange(len(pieces.ids)) == 0)) - 1)
