"""Documents → teacher-independent segments that fit every teacher of a language.

A document is one corpus line, or a run of lines between blank lines (`documents`: the
`blank_line` format, whose lines arrive joined). Each document is cleaned once
(`tokenization.clean_text`), tokenized once per teacher with byte offsets into the cleaned text,
and cut into segments so that every teacher's pieces of a segment number at most `max_tokens`
(= S - 2, room for [CLS] and [SEP]). Cuts are placed at **common word boundaries**: byte offsets
where every (kept) teacher starts a new word, i.e. a piece that is not a `##` continuation.

Packing: like google-research/bert's create_pretraining_data, which packs consecutive text of a
document up to the target length, segments are greedy: each one is the longest run of words that
fits every teacher, across the document's line boundaries, never across documents. So every
segment of a document but its last is full (up to S - 2 pieces for the teacher that splits the
text finest). `short_seq_prob` (BERT's flag, default 0 here): with that probability a segment's
target length is drawn uniformly from [2, S - 2] instead, to train on short sequences too.
BERT draws one target per document; here it is drawn per segment (from a generator seeded by
(seed, document hash): the same on every worker), so the share of short sequences is
`short_seq_prob` whatever the document lengths. A short target is soft, as in BERT: if no word
boundary fits it, the segment is filled up to the hard limit S - 2. Counted as `short_target`.

Full-sentences packing (`packing: full_sentences`, RoBERTa's FULL-SENTENCES; `pack_documents`):
sequences are filled across document boundaries, in the order the documents come, with one
separator token (each teacher's [SEP]) between two documents' text; a document that does not
fit the open sequence is cut at the last common word boundary that fits and goes on in the next
sequence. Segments then come as `PackedSegment`s (the parts of each document they hold, and the
separators marked in `TeacherPieces.separators`); the default, `within_document`, is BERT's
format described above.

Shared words: every segment also gives each copy's pieces a *shared word* index
(`TeacherPieces.word_index`): the spans between the segment's common word boundaries, the same
text in every copy, which is what `masking.mask_shared_words` masks in every copy alike.

Segment `i` of a document is the same byte span for every teacher, so its copies (one per
teacher) describe the same text and share one `example_id`:

    example_id = f"{language}-{sha256(cleaned document, UTF-8)[:16]}-{i}"

No text is tokenized twice: segments carry slices of the per-document tokenization.

Which pieces a segment holds: teacher t's pieces whose start offset lies in the segment's byte
span [start, end). Every piece therefore lands in exactly one segment, in order.

A "word" longer than `max_tokens` pieces in some teacher (a long URL, a run of digits, a word in
a script the vocab barely covers) has no common word boundary that fits; it is cut at a piece
boundary, preferring a byte offset where every teacher starts a piece, otherwise the start of
the piece that would overflow the tightest teacher (a longer piece of another teacher then stays
whole in the earlier segment). Such cuts are counted as `long_word_split`. Rarely a teacher gets
no piece in a segment that way; that copy is dropped and counted as `empty_segment_copy`.

Bad input is counted, never silently dropped. `counts` is a collections.Counter the caller owns
(a Beam job turns it into metrics); the keys are the constants below:

| key                   | counted once per ...                                                |
|-----------------------|---------------------------------------------------------------------|
| documents             | document read                                                       |
| invalid_utf8          | document with invalid UTF-8 bytes (they are dropped; from clean_text)|
| control_characters    | document with control characters removed (from clean_text)         |
| nfc_normalized        | document that was not NFC (normalised; from clean_text)             |
| empty                 | document that is empty / whitespace after cleaning (dropped)        |
| all_unknown           | (document, teacher) whose pieces are all [UNK] (dropped for it)     |
| no_pieces             | (document, teacher) with no piece although the text is not empty    |
| segments              | segment produced                                                    |
| split_long_document   | document cut into more than one segment                             |
| long_word_split       | cut inside a word (no common word boundary fitted)                  |
| empty_segment_copy    | (segment, teacher) with no piece (that copy is dropped)             |
| short_target          | segment whose target length was drawn short (short_seq_prob)        |
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import weakref
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from teacher_scoring.examples.tokenization import TeacherTokenizer, clean_text

# Counter keys (see the module docstring).
DOCUMENTS = "documents"
INVALID_UTF8 = "invalid_utf8"
CONTROL_CHARACTERS = "control_characters"
EMPTY = "empty"
ALL_UNKNOWN = "all_unknown"
NO_PIECES = "no_pieces"
SEGMENTS = "segments"
SPLIT_LONG_DOCUMENT = "split_long_document"
LONG_WORD_SPLIT = "long_word_split"
EMPTY_SEGMENT_COPY = "empty_segment_copy"
SHORT_TARGET = "short_target"

# Reasons for which input (a document, or one teacher's copy of it) produces no example.
DROP_REASONS = (EMPTY, ALL_UNKNOWN, NO_PIECES, EMPTY_SEGMENT_COPY)

# Packing: `within_document` (BERT's format, the default: a sequence holds text of one document)
# or `full_sentences` (RoBERTa's FULL-SENTENCES: sequences filled across document boundaries,
# a separator token between documents; `pack_documents`).
WITHIN_DOCUMENT = "within_document"
FULL_SENTENCES = "full_sentences"
PACKINGS = (WITHIN_DOCUMENT, FULL_SENTENCES)

# Counter keys of full-sentences packing (see `pack_documents`).
DOCUMENT_SEPARATORS = "document_separators"
CROSS_DOCUMENT_SEGMENTS = "cross_document_segments"
NOT_ALL_TEACHERS = "not_all_teachers"
DUPLICATE_DOCUMENT = "duplicate_document"
# What full-sentences packing drops besides DROP_REASONS.
PACKING_DROP_REASONS = (NOT_ALL_TEACHERS, DUPLICATE_DOCUMENT)


def check_packing(packing: str) -> str:
    if packing not in PACKINGS:
        raise ValueError(f"packing must be one of {list(PACKINGS)}, got {packing!r}")
    return packing


def document_hash(cleaned: str) -> str:
    """First 16 hex digits of the SHA-256 of the cleaned document's UTF-8 bytes."""
    return hashlib.sha256(cleaned.encode("utf-8")).hexdigest()[:16]


def make_example_id(language: str, doc_hash: str, segment_index: int) -> str:
    """The teacher-independent id of segment `segment_index` of a document."""
    return f"{language}-{doc_hash}-{segment_index}"


@dataclasses.dataclass(frozen=True)
class TeacherPieces:
    """One teacher's pieces of one segment.

    ids: [n] int32 teacher vocab ids, 1 <= n <= max_tokens.
    word_starts: [n] bool, True where a piece starts a word (not a `##` continuation).
    word_index: [n] int32, non-decreasing from 0: the segment's *shared word* each piece
      belongs to. Shared word w is the same byte span in every copy of the segment (the spans
      between the segment's common word boundaries), so masking word w masks the same text in
      every copy (`masking.mask_shared_words`).
    """

    ids: np.ndarray
    word_starts: np.ndarray
    word_index: np.ndarray
    # [n] bool, True at the separator tokens between documents of a full-sentences sequence
    # (`pack_documents`); None: no separator (a sequence of one document's text). A separator
    # is its own shared word and is never masked.
    separators: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Segment:
    """Segment `index` of a document: byte span [start, end) of the cleaned document, and the
    pieces of every teacher that kept the document (teacher name → TeacherPieces)."""

    doc_hash: str
    index: int
    start: int
    end: int
    pieces: dict[str, TeacherPieces]

    def example_id(self, language: str) -> str:
        return make_example_id(language, self.doc_hash, self.index)


_WORD_START_CACHE: "weakref.WeakKeyDictionary[TeacherTokenizer, np.ndarray]" = (
    weakref.WeakKeyDictionary())


def _word_start_mask(tokenizer: TeacherTokenizer) -> np.ndarray:
    """[vocab_size] bool: True for ids that start a word (not '##' continuations)."""
    mask = _WORD_START_CACHE.get(tokenizer)
    if mask is None:
        mask = np.array([not t.startswith("##") for t in tokenizer.vocab], bool)
        _WORD_START_CACHE[tokenizer] = mask
    return mask


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique of an already sorted array (cheaper)."""
    if len(values) < 2:
        return values
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def _cut_points(starts: list[np.ndarray], word_starts: list[np.ndarray], end: int,
                max_tokens: int, counts: collections.Counter,
                targets: "_TargetLengths | None" = None) -> list[list[int]]:
    """Greedy segmentation of one document given every kept teacher's pieces.

    Args:
      starts: per teacher, [n_t] int64 byte offsets of the pieces (non-decreasing; a character
        that expands to several pieces gives them one start).
      word_starts: per teacher, [n_t] bool.
      end: a byte offset greater than every piece start (the document's end).
      max_tokens: the most pieces a teacher may have in one segment (hard limit).
      targets: the document's target lengths (short_seq_prob); None: always max_tokens.

    Returns:
      One entry per segment: [cut byte offset, then per teacher the piece index after the
      segment]. Segment k of teacher t holds pieces [previous index, this index).
    """
    num_teachers = len(starts)
    totals = [len(s) for s in starts]
    first_target = targets.next() if targets is not None else max_tokens
    if max(totals) <= first_target:
        return [[end] + totals]  # the usual case: the whole document is one segment
    # Candidate cuts: common word boundaries, plus the end of the document.
    common_words = _sorted_unique(starts[0][word_starts[0]])
    common_pieces = _sorted_unique(starts[0])
    for t in range(1, num_teachers):
        common_words = np.intersect1d(common_words, _sorted_unique(starts[t][word_starts[t]]),
                                      assume_unique=True)
        common_pieces = np.intersect1d(common_pieces, _sorted_unique(starts[t]),
                                       assume_unique=True)
    candidates = np.append(common_words[common_words < end], end)
    # pieces_before[t][j]: how many of teacher t's pieces start before candidates[j].
    pieces_before = [np.searchsorted(s, candidates, side="left") for s in starts]

    cuts = []
    position = [0] * num_teachers  # next unassigned piece, per teacher
    cut = -1                        # byte offset where the current segment starts
    target = first_target
    while True:
        remaining = [t for t in range(num_teachers) if position[t] < totals[t]]
        if not remaining:
            return cuts
        if cuts and targets is not None:
            target = targets.next()
        next_starts = [int(starts[t][position[t]]) for t in remaining]
        # The longest segment: the last candidate that gives every teacher a piece and that
        # keeps every teacher within the target length (a shorter target is soft, as in BERT:
        # if no word boundary fits it, the hard limit max_tokens applies).
        first = np.searchsorted(candidates, max(cut, max(next_starts)), side="right")
        last = min(np.searchsorted(pieces_before[t], position[t] + target, side="right") - 1
                   for t in range(num_teachers))
        if last < first and target < max_tokens:
            last = min(np.searchsorted(pieces_before[t], position[t] + max_tokens,
                                       side="right") - 1 for t in range(num_teachers))
        overflowing = [t for t in remaining if position[t] + max_tokens < totals[t]]
        if last >= first:
            new_cut = int(candidates[last])
        elif not overflowing:
            # Only pieces carried over from a degenerate cut at the document's end remain.
            new_cut = end
        else:
            # No common word boundary fits: cut inside a word, at a piece boundary.
            counts[LONG_WORD_SPLIT] += 1
            limit = min(int(starts[t][position[t] + max_tokens]) for t in overflowing)
            i = np.searchsorted(common_pieces, limit, side="right") - 1
            if i >= 0 and common_pieces[i] > max(cut, max(next_starts)):
                new_cut = int(common_pieces[i])  # every teacher starts a piece here
            elif limit > max(cut, min(next_starts)):
                new_cut = limit  # a piece start of the tightest teacher
            else:
                # Degenerate: more than max_tokens pieces share one start offset (a character
                # that expands to many pieces). Cut after it; the cap below takes max_tokens
                # of them and leaves the rest to the next segment.
                later = [s[np.searchsorted(s, max(cut, limit), side="right")]
                         for s in starts if s[-1] > max(cut, limit)]
                new_cut = int(min(later)) if later else end
        entry = [new_cut]
        for t in range(num_teachers):
            upto = int(np.searchsorted(starts[t], new_cut, side="left"))
            position[t] = min(max(upto, position[t]), position[t] + max_tokens)
            entry.append(position[t])
        cuts.append(entry)
        cut = new_cut


class _TargetLengths:
    """The target lengths of one document's segments, drawn in order: `max_tokens`, or with
    probability `short_seq_prob` a length uniform in [2, max_tokens] (BERT's
    `target_seq_length = rng.randint(2, max_num_tokens)`), from a generator seeded by
    (seed, document hash), so a document gets the same segments on every worker."""

    def __init__(self, max_tokens: int, short_seq_prob: float, seed: int, doc_hash: str,
                 counts: collections.Counter):
        key = f"{int(seed)}\x1f{doc_hash}\x1fshort_seq".encode("utf-8")
        self._rng = np.random.default_rng(
            int.from_bytes(hashlib.sha256(key).digest()[:16], "little"))
        self._max_tokens = max_tokens
        self._prob = short_seq_prob
        self._counts = counts

    def next(self) -> int:
        if self._max_tokens > 2 and self._rng.random() < self._prob:
            self._counts[SHORT_TARGET] += 1
            return int(self._rng.integers(2, self._max_tokens + 1))
        return self._max_tokens


def _shared_word_index(starts: list[np.ndarray], word_starts: list[np.ndarray]
                       ) -> list[np.ndarray]:
    """Per copy of one segment, [n_t] int32: the index of the *shared word* of every piece.

    Shared words are the spans between the segment's common word boundaries: byte offsets
    where every copy starts a word, after every copy's first piece (so that every copy has at
    least one piece in every shared word). Word w of every copy is therefore the same text.
    With one copy, they are that copy's own words (its first piece starts word 0).

    Args:
      starts: per copy, [n_t] byte offsets of its pieces in the segment.
      word_starts: per copy, [n_t] bool.
    """
    if len(starts) == 1:
        ws = word_starts[0].copy()
        ws[0] = True
        return [(np.cumsum(ws) - 1).astype(np.int32)]
    first = max(int(s[0]) for s in starts)
    common = None
    for s, w in zip(starts, word_starts):
        offsets = _sorted_unique(s[w])
        common = offsets if common is None else np.intersect1d(common, offsets,
                                                                 assume_unique=True)
    boundaries = common[common > first]
    return [np.searchsorted(boundaries, s, side="right").astype(np.int32) for s in starts]


@dataclasses.dataclass(frozen=True)
class _TokenizedDocument:
    """One cleaned document tokenized by every teacher that kept it (teachers in config order;
    starts / word_starts / ids per kept teacher)."""

    text: str
    doc_hash: str
    num_bytes: int
    end: int                      # a byte offset past every piece start (the document's end)
    teachers: list[str]
    starts: list[np.ndarray]      # [n_t] int64 byte offsets
    word_starts: list[np.ndarray]  # [n_t] bool
    ids: list[np.ndarray]         # [n_t] int32


def _tokenize_documents(documents: Sequence[str | bytes],
                        tokenizers: Mapping[str, TeacherTokenizer],
                        counts: collections.Counter) -> list["_TokenizedDocument | None"]:
    """Cleans and tokenizes a batch of documents (one tokenizer call per teacher), counting
    `documents`, cleaning changes, `empty`, `no_pieces` and `all_unknown`. None for a document
    no teacher kept."""
    cleaned = []
    for document in documents:
        counts[DOCUMENTS] += 1
        text = clean_text(document, counts)
        if not text.strip():
            counts[EMPTY] += 1
            text = ""
        cleaned.append(text)
    kept = [i for i, text in enumerate(cleaned) if text]
    names = list(tokenizers)
    tokenized = {name: tokenizers[name].tokenize_with_offsets([cleaned[i] for i in kept])
                 for name in names}
    results: list[_TokenizedDocument | None] = [None] * len(cleaned)
    for row, i in enumerate(kept):
        text = cleaned[i]
        teachers, starts, word_starts, ids = [], [], [], []
        for name in names:
            tok = tokenized[name][row]
            if len(tok.ids) == 0:
                counts[NO_PIECES] += 1
                continue
            if np.all(tok.ids == tokenizers[name].unk_id):
                counts[ALL_UNKNOWN] += 1
                continue
            teachers.append(name)
            ids.append(np.asarray(tok.ids, np.int32))
            starts.append(np.asarray(tok.starts, np.int64))
            word_starts.append(_word_start_mask(tokenizers[name])[tok.ids])
        if not teachers:
            continue
        num_bytes = len(text.encode("utf-8"))
        end = max(num_bytes, max(int(s[-1]) for s in starts) + 1)
        results[i] = _TokenizedDocument(text, document_hash(text), num_bytes, end, teachers,
                                        starts, word_starts, ids)
    return results


def segment_documents(documents: Sequence[str | bytes], tokenizers: Mapping[str, TeacherTokenizer],
                      max_tokens: int,
                      counts: collections.Counter | None = None, short_seq_prob: float = 0.0,
                      seed: int = 0) -> list[list[Segment]]:
    """Segments a batch of documents (one tokenizer call per teacher for the whole batch).

    Args:
      documents: raw documents, bytes (preferred: invalid UTF-8 is counted) or str.
      tokenizers: teacher name → TeacherTokenizer, the language's teachers.
      max_tokens: the most pieces any teacher may have in a segment (S - 2).
      counts: a Counter to add the counts to (see the module docstring).
      short_seq_prob: probability that a segment's target length is drawn shorter (BERT's
        short_seq_prob; module docstring). 0: every segment is filled up to max_tokens.
      seed: with the document's hash, seeds the draws of short target lengths.

    Returns:
      One list of Segments per document (empty for a dropped document).
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
    if not tokenizers:
        raise ValueError("segment_documents needs at least one tokenizer")
    if counts is None:
        counts = collections.Counter()
    results: list[list[Segment]] = [[] for _ in documents]
    for i, doc in enumerate(_tokenize_documents(documents, tokenizers, counts)):
        if doc is None:
            continue
        text, teachers, starts, word_starts, ids = (doc.text, doc.teachers, doc.starts,
                                                    doc.word_starts, doc.ids)
        num_bytes, end, doc_hash = doc.num_bytes, doc.end, doc.doc_hash
        targets = (_TargetLengths(max_tokens, short_seq_prob, seed, doc_hash, counts)
                   if short_seq_prob > 0 else None)
        cuts = _cut_points(starts, word_starts, end, max_tokens, counts, targets)
        segments = []
        before = [0] * len(teachers)
        segment_start = 0
        for cut, *after in cuts:
            present = []
            for t in range(len(teachers)):
                if before[t] == after[t]:
                    counts[EMPTY_SEGMENT_COPY] += 1
                else:
                    present.append(t)
            word_index = _shared_word_index(
                [starts[t][before[t]:after[t]] for t in present],
                [word_starts[t][before[t]:after[t]] for t in present]) if present else []
            pieces = {teachers[t]: TeacherPieces(ids[t][before[t]:after[t]],
                                                 word_starts[t][before[t]:after[t]], words)
                      for t, words in zip(present, word_index)}
            segments.append(Segment(doc_hash, len(segments), segment_start, min(cut, num_bytes),
                                    pieces))
            before = after
            segment_start = min(cut, num_bytes)
        counts[SEGMENTS] += len(segments)
        if len(segments) > 1:
            counts[SPLIT_LONG_DOCUMENT] += 1
        results[i] = segments
    return results


def segment_document(document: str | bytes, tokenizers: Mapping[str, TeacherTokenizer],
                     max_tokens: int, counts: collections.Counter | None = None,
                     short_seq_prob: float = 0.0, seed: int = 0) -> list[Segment]:
    """Segments one document; see `segment_documents` (prefer it for throughput)."""
    return segment_documents([document], tokenizers, max_tokens, counts, short_seq_prob,
                             seed)[0]


def iter_segments(documents: Iterable[str | bytes], tokenizers: Mapping[str, TeacherTokenizer],
                  max_tokens: int, counts: collections.Counter | None = None,
                  batch_size: int = 256, short_seq_prob: float = 0.0,
                  seed: int = 0) -> Iterable[list[Segment]]:
    """Yields each document's segments, in input order, tokenizing `batch_size` documents at a
    time (results do not depend on `batch_size`)."""
    batch = []
    for document in documents:
        batch.append(document)
        if len(batch) == batch_size:
            yield from segment_documents(batch, tokenizers, max_tokens, counts, short_seq_prob,
                                         seed)
            batch = []
    if batch:
        yield from segment_documents(batch, tokenizers, max_tokens, counts, short_seq_prob, seed)


# ------------------------------------------------------------------ full-sentences packing


@dataclasses.dataclass(frozen=True)
class SegmentPart:
    """The text of one document in a packed sequence: byte span [start, end) of the cleaned
    document whose hash is `doc_hash`."""

    doc_hash: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class PackedSegment:
    """A full-sentences sequence: the text of one or more documents (`parts`, in order), one
    separator token between two parts in every copy (`TeacherPieces.separators`).

    `doc_hash` / `index`: the document the sequence starts in, and how many sequences started
    in that document before this one; they make the example id
    `<language>-<doc_hash>-<index>`, the same for every teacher's copy."""

    doc_hash: str
    index: int
    parts: tuple[SegmentPart, ...]
    pieces: dict[str, TeacherPieces]

    def example_id(self, language: str) -> str:
        return make_example_id(language, self.doc_hash, self.index)


def _first_chunk(doc: _TokenizedDocument, budget: list[int]) -> tuple[int, list[int]] | None:
    """The longest prefix of `doc` that ends at a common word boundary and gives every teacher
    t at least one piece and at most budget[t]: (cut byte offset, per teacher the pieces
    before it), or None if not even the first word fits."""
    common = None
    for s, w in zip(doc.starts, doc.word_starts):
        offsets = _sorted_unique(s[w])
        common = offsets if common is None else np.intersect1d(common, offsets,
                                                                 assume_unique=True)
    first = max(int(s[0]) for s in doc.starts)
    candidates = common[(common > first) & (common < doc.end)]
    if not len(candidates):
        return None
    fits = np.ones(len(candidates), bool)
    for s, b in zip(doc.starts, budget):
        fits &= np.searchsorted(s, candidates, side="left") <= b
    if not fits[0]:
        return None
    cut = int(candidates[np.flatnonzero(fits)[-1]])  # pieces before a cut only grow with it
    return cut, [int(np.searchsorted(s, cut, side="left")) for s in doc.starts]


class _Packer:
    """Fills sequences of up to `max_tokens` pieces per teacher with consecutive documents:
    a document that fits the open sequence (after one separator) goes in whole; otherwise the
    longest prefix that fits (cut at a common word boundary) ends the open sequence and the
    rest of the document is segmented as in `within_document` packing, its last segment left
    open for the next document."""

    def __init__(self, names: list[str], sep_ids: list[int], max_tokens: int,
                 counts: collections.Counter):
        self._names = names
        self._sep_ids = sep_ids
        self._max_tokens = max_tokens
        self._counts = counts
        self._open: list[tuple[SegmentPart, list[np.ndarray], list[np.ndarray],
                               list[np.ndarray]]] = []  # (part, starts, word_starts, ids)
        self._used = [0] * len(names)
        self._start: tuple[str, int] = ("", 0)

    def _append(self, doc: _TokenizedDocument, start: int, end: int, lo: list[int],
                hi: list[int]) -> None:
        if self._open:
            self._used = [u + 1 for u in self._used]  # the separator
        else:
            self._start = (doc.doc_hash, 0)
        self._open.append((SegmentPart(doc.doc_hash, start, min(end, doc.num_bytes)),
                           [s[a:b] for s, a, b in zip(doc.starts, lo, hi)],
                           [w[a:b] for w, a, b in zip(doc.word_starts, lo, hi)],
                           [i[a:b] for i, a, b in zip(doc.ids, lo, hi)]))
        self._used = [u + b - a for u, a, b in zip(self._used, lo, hi)]

    def close(self) -> list[PackedSegment]:
        """The open sequence (if any), finished."""
        if not self._open:
            return []
        parts = self._open
        pieces = {}
        num_teachers = len(self._names)
        words = [_shared_word_index([p[1][t] for t in range(num_teachers)],
                                    [p[2][t] for t in range(num_teachers)]) for p in parts]
        for t, name in enumerate(self._names):
            ids, word_starts, word_index, separators = [], [], [], []
            offset = 0
            for k, (_, _, part_word_starts, part_ids) in enumerate(parts):
                if k:
                    ids.append(np.array([self._sep_ids[t]], np.int32))
                    word_starts.append(np.ones(1, bool))
                    word_index.append(np.array([offset], np.int32))
                    separators.append(np.ones(1, bool))
                    offset += 1
                starts_word = part_word_starts[t].copy()
                starts_word[0] = True  # a part starts a word (also after a cut inside one)
                ids.append(part_ids[t])
                word_starts.append(starts_word)
                word_index.append(words[k][t] + offset)
                separators.append(np.zeros(len(part_ids[t]), bool))
                offset += int(words[k][t][-1]) + 1
            pieces[name] = TeacherPieces(
                np.concatenate(ids), np.concatenate(word_starts),
                np.concatenate(word_index).astype(np.int32),
                np.concatenate(separators) if len(parts) > 1 else None)
        self._counts[SEGMENTS] += 1
        if len(parts) > 1:
            self._counts[CROSS_DOCUMENT_SEGMENTS] += 1
            self._counts[DOCUMENT_SEPARATORS] += len(parts) - 1
        segment = PackedSegment(self._start[0], self._start[1],
                                tuple(p[0] for p in parts), pieces)
        self._open, self._used = [], [0] * num_teachers
        return [segment]

    def add(self, doc: _TokenizedDocument) -> list[PackedSegment]:
        """Packs one document (kept by every teacher, in `names` order); returns the sequences
        it finished."""
        num_teachers = len(self._names)
        totals = [len(i) for i in doc.ids]
        done: list[PackedSegment] = []
        position, start = [0] * num_teachers, 0
        if self._open:
            budget = [self._max_tokens - u - 1 for u in self._used]
            if all(n <= b for n, b in zip(totals, budget)):
                self._append(doc, 0, doc.end, position, totals)
                return done
            chunk = _first_chunk(doc, budget) if min(budget) >= 1 else None
            if chunk is not None:
                start, position = chunk
                self._append(doc, 0, start, [0] * num_teachers, position)
                self._counts[SPLIT_LONG_DOCUMENT] += 1
            done += self.close()
        rest_starts = [s[p:] for s, p in zip(doc.starts, position)]
        rest_word_starts = [w[p:] for w, p in zip(doc.word_starts, position)]
        cuts = _cut_points(rest_starts, rest_word_starts, doc.end, self._max_tokens,
                           self._counts)
        if len(cuts) > 1 and not start:
            self._counts[SPLIT_LONG_DOCUMENT] += 1
        degenerate = False
        before = list(position)
        bounds = []
        for cut, *after in cuts:
            after = [p + a for p, a in zip(position, after)]
            degenerate |= any(a == b for a, b in zip(after, before))
            bounds.append((cut, before, after))
            before = after
        segment_start = start
        for k, (cut, lo, hi) in enumerate(bounds):
            if degenerate:
                # A teacher has no piece in some segment (a character that expands to more
                # than max_tokens pieces): the document's segments stay on their own, the empty
                # copies dropped as in within_document packing.
                present = [t for t in range(num_teachers) if lo[t] < hi[t]]
                self._counts[EMPTY_SEGMENT_COPY] += num_teachers - len(present)
                words = _shared_word_index([doc.starts[t][lo[t]:hi[t]] for t in present],
                                           [doc.word_starts[t][lo[t]:hi[t]] for t in present])
                pieces = {self._names[t]: TeacherPieces(doc.ids[t][lo[t]:hi[t]],
                                                        doc.word_starts[t][lo[t]:hi[t]], w)
                          for t, w in zip(present, words)}
                done.append(PackedSegment(doc.doc_hash, k, (SegmentPart(
                    doc.doc_hash, segment_start, min(cut, doc.num_bytes)),), pieces))
                self._counts[SEGMENTS] += 1
            else:
                self._append(doc, segment_start, cut, lo, hi)
                self._start = (doc.doc_hash, k)
                if k < len(bounds) - 1:
                    done += self.close()
            segment_start = min(cut, doc.num_bytes)
        return done


def pack_documents(documents: Iterable[str | bytes], tokenizers: Mapping[str, TeacherTokenizer],
                   max_tokens: int, counts: collections.Counter | None = None,
                   batch_size: int = 256) -> Iterator[PackedSegment]:
    """Full-sentences packing (RoBERTa's FULL-SENTENCES): yields sequences filled with the
    documents' text in the order given, across document boundaries, one separator token (each
    teacher's [SEP]) between two documents' text in a sequence.

    Every sequence has at most `max_tokens` pieces (separators included) for every teacher; all
    but the last (and, rarely, a sequence cut where the next word did not fit) are full for the
    teacher that splits the text finest. Cuts inside a document are at word boundaries common to
    every teacher (as in `within_document` packing), so a sequence is the same text in every
    teacher's copy and its shared words (`TeacherPieces.word_index`) are that text's; each
    separator is a shared word of its own, marked in `TeacherPieces.separators`, never masked.

    The result depends on the order of `documents` (the scoring job sorts each packing group by
    document hash, `beam_jobs.build_examples`), not on `batch_size`. A document that only some
    teachers keep (`all_unknown` / `no_pieces` for another) is dropped for all
    (`not_all_teachers`: its copies would not hold the same text), and a document whose cleaned
    text already came (same hash) is dropped as `duplicate_document` (its example ids would
    collide). Counts: segmentation's keys (`segments` = sequences, `split_long_document` =
    documents spread over several sequences) plus `cross_document_segments`,
    `document_separators`, `not_all_teachers` and `duplicate_document`.
    """
    if max_tokens < 3:
        raise ValueError(f"max_tokens must be >= 3 for full-sentences packing (a piece, a "
                         f"separator, a piece), got {max_tokens}")
    if not tokenizers:
        raise ValueError("pack_documents needs at least one tokenizer")
    if counts is None:
        counts = collections.Counter()
    names = list(tokenizers)
    packer = _Packer(names, [tokenizers[n].sep_id for n in names], max_tokens, counts)
    seen: set[str] = set()
    batch: list[str | bytes] = []

    def flush():
        out = []
        for doc in _tokenize_documents(batch, tokenizers, counts):
            if doc is None:
                continue
            if len(doc.teachers) < len(names):
                counts[NOT_ALL_TEACHERS] += 1
                continue
            if doc.doc_hash in seen:
                counts[DUPLICATE_DOCUMENT] += 1
                continue
            seen.add(doc.doc_hash)
            out += packer.add(doc)
        batch.clear()
        return out

    for document in documents:
        batch.append(document)
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()
    yield from packer.close()
