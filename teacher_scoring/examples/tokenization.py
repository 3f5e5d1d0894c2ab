"""A teacher's WordPiece tokenizer, built with tensorflow-text from the teacher's vocab and casing.

A teacher must see exactly the token ids it was trained with. The reference is Hugging Face's
slow (pure Python) `BertTokenizer` with the teacher's `vocab.txt` and casing,
`tokenize_chinese_chars=True`, `strip_accents=None` (called `BertTokenizerLegacy` from
transformers 5 on). Its basic tokenization of one text is:

  1. clean: drop NUL, U+FFFD and every character of a Unicode category `C*` (Cc, Cf, Cn, Co, Cs)
     except tab/newline/carriage return; make whitespace (`\\t\\n\\r`, Zs) a space;
  2. put spaces around CJK ideographs; 3. NFC; 4. split on whitespace (`str.split`);
  5. uncased only: `str.lower()`, NFD, drop the non-spacing marks (Mn);
  6. split on punctuation (all non-alphanumeric ASCII and the Unicode P* categories);
  7. WordPiece, greedy longest match first; a word longer than 100 characters is one [UNK].

How this module reproduces it with `tensorflow_text.FastBertTokenizer`:

  * `clean_text` does steps 1 and 3 (teacher-independent, so every teacher of a language gets
    the same cleaned text and offsets into it); it also makes U+2028/U+2029 (which `str.split`
    treats as whitespace) a space. FastBertTokenizer would otherwise turn control characters
    into word-splitting spaces instead of removing them.
  * FastBertTokenizer's own lower-casing (`lower_case_nfd_strip_accents=True`) is *not* HF's:
    it applies NFKC-style case folding (e.g. `ß`→`ss`, `…`→`...`, `ﬁ`→`fi`, `²`→`2`,
    full-width forms → ASCII). So for an uncased teacher the text is normalised here exactly as
    HF does (`lower()`, NFD, drop Mn: C-speed string operations on whole texts) and
    FastBertTokenizer runs with `lower_case_nfd_strip_accents=False`; piece offsets are mapped
    back from the normalised text to the cleaned text with per-character byte lengths
    (vectorised with numpy).
  * Whitespace, punctuation and CJK splitting of FastBertTokenizer equal HF's on cleaned NFC
    text (checked code point by code point in the tests).
  * HF's limit is 100 *characters* per word; FastBertTokenizer's is in *bytes*. The byte limit is
    set to 400 (no word of at most 100 characters is longer), and words of more than 100
    characters are collapsed to one [UNK] after WordPiece.
  * Vocabulary entries HF can never produce (containing whitespace or control characters, empty,
    or a bare "##") are replaced by unmatchable placeholders for tf-text (ids unchanged):
    FastWordpiece would otherwise match a token such as "a b" across a space.

The reference is HF's basic tokenizer + WordPiece with special-token strings in the text treated
as text (as Google's original BERT pre-processing does, and BertTokenizerFast with
`split_special_tokens=True`). HF's default `tokenize()` instead keeps a whitespace-delimited
literal "[MASK]", "[SEP]", ... as that special token: the one remaining, deliberate difference
(see docs/tokenizer_parity.md).

The batch goes through tf-text in one traced `tf.function` call; tokenize in batches (lists of
texts) of a few hundred or more.

Typical use:

  tokenizer = TeacherTokenizer(read_vocab("vocab.txt"), lower_case=True)
  counts = collections.Counter()
  cleaned = [clean_text(line, counts) for line in lines]
  for tokenized in tokenizer.tokenize_with_offsets(cleaned):
    tokenized.ids, tokenized.starts, tokenized.ends  # byte offsets into the cleaned text
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re
import sys
import unicodedata
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)

# Hugging Face's `WordpieceTokenizer.max_input_chars_per_word`: longer words become one [UNK].
MAX_INPUT_CHARS_PER_WORD = 100
# tf-text's limit is in UTF-8 bytes, applied to the normalised word; 4 bytes a character at most.
_MAX_BYTES_PER_WORD = 4 * MAX_INPUT_CHARS_PER_WORD
_SUFFIX_INDICATOR = "##"


class VocabError(ValueError):
    """A vocabulary file is malformed."""


def read_vocab(path: str) -> list[str]:
    """Reads a WordPiece vocab.txt (one token a line, id = line number).

    Args:
      path: a local or gfile path of the vocab.txt.

    Returns:
      The tokens in id order.

    Raises:
      VocabError: the file is not UTF-8, is empty, has a duplicate token, or lacks one of
        [UNK] [CLS] [SEP] [MASK].
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise VocabError(f"{path}: not UTF-8 ({error})") from error
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.rstrip("\r") for t in tokens]
    if not tokens:
        raise VocabError(f"{path}: empty vocabulary")
    seen = {}
    for i, token in enumerate(tokens):
        if token in seen:
            raise VocabError(f"{path}: token {token!r} appears twice (lines {seen[token] + 1} and "
                             f"{i + 1})")
        seen[token] = i
    missing = [t for t in (UNK, CLS, SEP, MASK) if t not in seen]
    if missing:
        raise VocabError(f"{path}: special token(s) {missing} missing")
    return tokens


# ---------------------------------------------------------------------------------------------
# Unicode tables. They come from Python's `unicodedata`, which is what HF's tokenizer uses, so
# parity holds for the Python version running (Unicode 14.0 for Python 3.11).


def codepoint_ranges(codepoints: Iterable[int]) -> list[tuple[int, int]]:
    """The distinct code points as sorted inclusive runs [(lo, hi), ...]."""
    ranges: list[list[int]] = []
    for cp in sorted(set(codepoints)):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return [(lo, hi) for lo, hi in ranges]


def _char_class(codepoints: Iterable[int]) -> str:
    """A Python regex character class matching exactly `codepoints`."""
    return "[" + "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}"
                         for lo, hi in codepoint_ranges(codepoints)) + "]"


_ASTRAL = re.compile(r"[\U00010000-\U0010ffff]")


class _CharSet:
    """Fast regex substitution of a set of code points.

    Python's `re` checks a class of BMP characters with a bitmap, but a class with astral ranges
    range by range (5x slower than everything else here), so the two are separate patterns and
    the astral one only runs on texts that have astral characters.
    """

    def __init__(self, codepoints: Iterable[int]):
        codepoints = set(codepoints)
        self._bmp = re.compile(_char_class(c for c in codepoints if c < 0x10000))
        astral = [c for c in codepoints if c >= 0x10000]
        self._astral = re.compile(_char_class(astral)) if astral else None

    def subn(self, replacement: str, text: str) -> tuple[str, int]:
        text, n = self._bmp.subn(replacement, text)
        if self._astral is not None and _ASTRAL.search(text):
            text, n_astral = self._astral.subn(replacement, text)
            n += n_astral
        return text, n

    def sub(self, replacement: str, text: str) -> str:
        return self.subn(replacement, text)[0]


@dataclasses.dataclass(frozen=True)
class _UnicodeTables:
    removed: _CharSet           # characters HF's clean-up deletes
    whitespace: _CharSet        # characters that become a space (other than the space itself)
    nonspacing_marks: _CharSet  # category Mn, dropped by accent stripping


@functools.lru_cache(maxsize=None)
def _unicode_tables() -> _UnicodeTables:
    """Scans every code point once (about 0.5 s, on first use)."""
    removed, whitespace, marks = [0, 0xFFFD], [ord("\t"), ord("\n"), ord("\r")], []
    for cp in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(cp))
        if category[0] == "C":
            if cp not in whitespace:
                removed.append(cp)
        elif category in ("Zs", "Zl", "Zp") and cp != 0x20:
            # Zs: HF's _is_whitespace; Zl/Zp: kept by HF's clean-up but split on by str.split.
            whitespace.append(cp)
        elif category == "Mn":
            marks.append(cp)
    return _UnicodeTables(_CharSet(removed), _CharSet(whitespace), _CharSet(marks))


def clean_text(raw: str | bytes, counts: collections.Counter | None = None) -> str:
    """Decodes and cleans one paragraph as BERT does, and NFC-normalises it; counts the changes.

    This is HF `BasicTokenizer`'s text clean-up plus its NFC step, which apply to every teacher
    alike, so the cleaned text (and byte offsets into it) is shared by all teachers.

    Args:
      raw: the paragraph, `str` or UTF-8 `bytes`.
      counts: if given, incremented once per paragraph for each reason that applies:
        'invalid_utf8' (undecodable bytes dropped), 'control_characters' (NUL, U+FFFD or a
        control/format/unassigned/private-use/surrogate character removed), 'nfc_normalized'
        (the text was not in NFC). Empty input counts nothing (callers count empty documents).

    Returns:
      The cleaned text: no character of a `C*` category, NUL or U+FFFD; every whitespace
      character (tab, newline, Zs, U+2028, U+2029) made a plain space; NFC.
    """
    if counts is None:
        counts = collections.Counter()
    if isinstance(raw, (bytes, bytearray)):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            text = bytes(raw).decode("utf-8", errors="ignore")
            counts["invalid_utf8"] += 1
    elif isinstance(raw, str):
        text = raw
    else:
        raise TypeError(f"clean_text takes str or bytes, got {type(raw).__name__}")
    # isprintable() is False for every C* and non-space Z* character: a fast path for the
    # common case of clean text.
    if not text.isprintable():
        tables = _unicode_tables()
        text, removed = tables.removed.subn("", text)
        if removed:
            counts["control_characters"] += 1
        text = tables.whitespace.sub(" ", text)
    elif "\ufffd" in text:
        text = text.replace("\ufffd", "")
        counts["control_characters"] += 1
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
        counts["nfc_normalized"] += 1
    return text


def lower_strip_accents(text: str) -> str:
    """HF's uncased normalisation of cleaned NFC text: `lower()`, NFD, drop Mn characters."""
    if text.isascii():
        return text.lower()
    return _unicode_tables().nonspacing_marks.sub("", unicodedata.normalize("NFD", text.lower()))


# UTF-8 length of `lower_strip_accents(chr(cp))` for every code point, filled in lazily (-1 =
# not computed yet). Lower-casing, NFD and mark removal act character by character (the only
# context-dependent rule, Greek final sigma, does not change a length), so a text's normalised
# bytes are the concatenation of its characters' normalised bytes.
_NORMALIZED_UTF8_LENGTH = np.full(sys.maxunicode + 1, -1, dtype=np.int16)


def _normalized_utf8_lengths(codepoints: np.ndarray) -> np.ndarray:
    lengths = _NORMALIZED_UTF8_LENGTH[codepoints]
    missing = lengths < 0
    if missing.any():
        for cp in np.unique(codepoints[missing]).tolist():
            _NORMALIZED_UTF8_LENGTH[cp] = len(lower_strip_accents(chr(cp)).encode("utf-8"))
        lengths = _NORMALIZED_UTF8_LENGTH[codepoints]
    return lengths.astype(np.int64)


def _utf8_lengths(codepoints: np.ndarray) -> np.ndarray:
    return (1 + (codepoints >= 0x80).astype(np.int64) + (codepoints >= 0x800)
            + (codepoints >= 0x10000))


def _producible(token: str) -> bool:
    """Whether HF's tokenizer can ever output `token` (it has no whitespace or control chars)."""
    if not token or token == _SUFFIX_INDICATOR:
        return False
    return token.isprintable() and not any(c.isspace() for c in token)


@dataclasses.dataclass(frozen=True)
class TokenizedText:
    """Token ids of one text with their byte offsets into the cleaned text.

    Piece `i` covers the cleaned text's UTF-8 bytes `[starts[i], ends[i])`. For a cased teacher
    that is exactly the piece's surface; for an uncased one it is the source of the lower-cased,
    accent-stripped piece (a character that normalises to several pieces' characters, e.g. `ǆ`,
    is covered by each of them; marks the normalisation drops belong to the preceding piece).
    Offsets are non-decreasing. A word of more than 100 characters is one [UNK] spanning it.
    """

    ids: np.ndarray     # [n] int32, teacher vocab ids
    starts: np.ndarray  # [n] int64, byte offset of each piece's start
    ends: np.ndarray    # [n] int64, byte offset of each piece's end

    def __len__(self) -> int:
        return len(self.ids)


class TeacherTokenizer:
    """WordPiece tokenization with a teacher's own vocabulary and casing.

    Token ids equal Hugging Face's slow `BertTokenizer(vocab_file, do_lower_case=lower_case,
    tokenize_chinese_chars=True, strip_accents=None)` on the same text, special-token strings in
    the text being text; see the module docstring for how.

    Args:
      vocab: the teacher's tokens (id = index); must contain [UNK] [CLS] [SEP] [MASK].
      lower_case: BERT-uncased behaviour (`lower()`, NFD, strip accents) when True; cased when
        False.

    Raises:
      VocabError: a special token is missing or a token appears twice.
    """

    def __init__(self, vocab: Sequence[str], lower_case: bool):
        self.vocab = list(vocab)
        self.lower_case = bool(lower_case)
        self.token_to_id = {}
        for i, token in enumerate(self.vocab):
            if token in self.token_to_id:
                raise VocabError(f"token {token!r} appears twice (ids {self.token_to_id[token]} "
                                 f"and {i})")
            self.token_to_id[token] = i
        for token in (UNK, CLS, SEP, MASK):
            if token not in self.token_to_id:
                raise VocabError(f"vocabulary has no {token}")
        self.unk_id = self.token_to_id[UNK]
        self.cls_id = self.token_to_id[CLS]
        self.sep_id = self.token_to_id[SEP]
        self.mask_id = self.token_to_id[MASK]
        self.pad_id = self.token_to_id.get(PAD, 0)
        self.special_ids = frozenset(
            i for i, t in enumerate(self.vocab)
            if t in SPECIAL_TOKENS or (t.startswith("[") and t.endswith("]")))
        # continuation_mask[id]: the piece continues a word ("##..."); word_chars[id]: how many
        # characters of the normalised word it covers (0 for tokens that never occur in a word).
        self.continuation_mask = np.array([t.startswith(_SUFFIX_INDICATOR) for t in self.vocab],
                                          dtype=bool)
        self._word_chars = np.array(
            [len(t) - len(_SUFFIX_INDICATOR) if t.startswith(_SUFFIX_INDICATOR) else len(t)
             for t in self.vocab], dtype=np.int64)
        self._word_chars[list(self.special_ids)] = 0
        tf_vocab = []
        for i, token in enumerate(self.vocab):
            if not _producible(token):
                token = f"[unmatchable-{i}]"
                while token in self.token_to_id:
                    token = f"[{token}]"
            tf_vocab.append(token)
        self._tokenizer = tf_text.FastBertTokenizer(
            vocab=tf_vocab, suffix_indicator=_SUFFIX_INDICATOR,
            max_bytes_per_word=_MAX_BYTES_PER_WORD, token_out_type=tf.int32, unknown_token=UNK,
            lower_case_nfd_strip_accents=False)
        # One graph for every batch: eager tf-text calls cost ~25 ms each, a traced call ~1 ms.
        self._tokenize_batch = tf.function(
            self._tokenize_graph, input_signature=[tf.TensorSpec([None], tf.string)])

    @classmethod
    def from_vocab_file(cls, path: str, lower_case: bool) -> "TeacherTokenizer":
        """Builds the tokenizer from a vocab.txt (see `read_vocab`)."""
        return cls(read_vocab(path), lower_case)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def normalize(self, cleaned_texts: Sequence[str]) -> list[str]:
        """The texts as WordPiece sees them: cleaned texts, lower-cased and accent-stripped if
        the teacher is uncased."""
        if not self.lower_case:
            return list(cleaned_texts)
        return [lower_strip_accents(t) for t in cleaned_texts]

    def tokenize_with_offsets(self, cleaned_texts: Sequence[str]) -> list[TokenizedText]:
        """Tokenizes a batch of texts already cleaned by `clean_text`, in one tf-text call.

        Args:
          cleaned_texts: `clean_text` outputs (other text is tokenized as is, which differs from
            HF where it has control characters or is not NFC).

        Returns:
          One `TokenizedText` a text: ids with byte offsets into the cleaned text.
        """
        cleaned_texts = list(cleaned_texts)
        if not cleaned_texts:
            return []
        normalized = self.normalize(cleaned_texts)
        flat_ids, flat_starts, flat_ends, row_splits = (
            t.numpy() for t in self._tokenize_batch(tf.constant(normalized, dtype=tf.string)))
        if self.lower_case and not all(t.isascii() for t in cleaned_texts):
            flat_starts, flat_ends = _map_offsets_to_source(
                cleaned_texts, normalized, row_splits, flat_starts, flat_ends)
        flat_ids, flat_starts, flat_ends, row_splits = self._collapse_long_words(
            flat_ids, flat_starts, flat_ends, row_splits)
        return [TokenizedText(flat_ids[a:b], flat_starts[a:b], flat_ends[a:b])
                for a, b in zip(row_splits[:-1], row_splits[1:])]

    def tokenize(self, texts: Sequence[str | bytes]) -> list[list[int]]:
        """Cleans (see `clean_text`) and tokenizes raw texts; one list of teacher ids a text."""
        cleaned = [clean_text(t) for t in texts]
        return [t.ids.tolist() for t in self.tokenize_with_offsets(cleaned)]

    def is_continuation(self, token_id: int) -> bool:
        """Whether the piece continues the previous piece's word (a "##" token)."""
        return bool(self.continuation_mask[token_id])

    def _tokenize_graph(self, texts: tf.Tensor):
        ids, starts, ends = self._tokenizer.tokenize_with_offsets(texts)
        return (ids.flat_values, tf.cast(starts.flat_values, tf.int64),
                tf.cast(ends.flat_values, tf.int64), ids.row_splits)

    def _collapse_long_words(self, ids, starts, ends, row_splits):
        """Replaces the pieces of every word longer than 100 characters by one [UNK] (as HF)."""
        if len(ids) == 0:
            return ids, starts, ends, row_splits
        word_start = ~self.continuation_mask[ids]
        word_of_piece = np.cumsum(word_start) - 1
        word_chars = np.bincount(word_of_piece, weights=self._word_chars[ids])
        long_words = word_chars > MAX_INPUT_CHARS_PER_WORD
        if not long_words.any():
            return ids, starts, ends, row_splits
        first_piece = np.flatnonzero(word_start)
        last_piece = np.append(first_piece[1:], len(ids)) - 1
        ids, ends = ids.copy(), ends.copy()
        ids[first_piece[long_words]] = self.unk_id
        ends[first_piece[long_words]] = ends[last_piece[long_words]]
        keep = word_start | ~long_words[word_of_piece]
        row_of_piece = np.repeat(np.arange(len(row_splits) - 1), np.diff(row_splits))
        lengths = np.bincount(row_of_piece[keep], minlength=len(row_splits) - 1)
        row_splits = np.concatenate([[0], np.cumsum(lengths)]).astype(row_splits.dtype)
        return ids[keep], starts[keep], ends[keep], row_splits


def _map_offsets_to_source(cleaned_texts, normalized, row_splits, starts, ends):
    """Maps byte offsets in the normalised texts back to byte offsets in the cleaned texts.

    All texts of the batch are handled at once on their concatenation: each character has a
    source byte length and a normalised byte length; a piece starts at the (last) character whose
    normalised bytes contain its start, and ends where the next character with normalised bytes
    begins (so dropped marks stay with the preceding piece), clipped to its text.
    """
    codepoints = np.frombuffer("".join(cleaned_texts).encode("utf-32-le"), dtype=np.uint32)
    source_lengths = _utf8_lengths(codepoints)
    normalized_lengths = _normalized_utf8_lengths(codepoints)
    source_cum = np.concatenate([[0], np.cumsum(source_lengths)])
    normalized_cum = np.concatenate([[0], np.cumsum(normalized_lengths)])
    row_chars = np.concatenate([[0], np.cumsum([len(t) for t in cleaned_texts])])
    row_source_base = source_cum[row_chars]
    row_normalized_base = normalized_cum[row_chars]
    expected = np.array([len(t.encode("utf-8")) for t in normalized])
    if not np.array_equal(np.diff(row_normalized_base), expected):
        bad = int(np.flatnonzero(np.diff(row_normalized_base) != expected)[0])
        raise RuntimeError(f"character-wise normalisation disagrees with the text's for "
                           f"{cleaned_texts[bad]!r}; offsets cannot be mapped")
    kept = np.flatnonzero(normalized_lengths > 0)
    kept_normalized = np.append(normalized_cum[kept], normalized_cum[-1])
    kept_source = np.append(source_cum[kept], source_cum[-1])
    row_of_piece = np.repeat(np.arange(len(cleaned_texts)), np.diff(row_splits))
    normalized_base = row_normalized_base[row_of_piece]
    source_base = row_source_base[row_of_piece]
    new_starts = kept_source[np.searchsorted(kept_normalized, starts + normalized_base,
                                             side="right") - 1] - source_base
    new_ends = kept_source[np.searchsorted(kept_normalized, ends + normalized_base,
                                           side="left")] - source_base
    new_ends = np.minimum(new_ends, np.diff(row_source_base)[row_of_piece])
    return new_starts, new_ends
