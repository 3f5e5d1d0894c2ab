"""A teacher's WordPiece tokenizer, built with tensorflow-text from the teacher's vocab and casing.

`TeacherTokenizer` wraps `tensorflow_text.FastBertTokenizer` (BERT's basic tokenization: split on
whitespace and punctuation, split CJK characters; optional lower-casing with NFD accent
stripping; then WordPiece). Text is first cleaned by `clean_text` exactly as Hugging Face's
BertTokenizer cleans it (control characters dropped, whitespace characters made spaces), which
also lets us count what was removed.
"""

from __future__ import annotations

import collections
import dataclasses
import unicodedata

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)


class VocabError(ValueError):
    """A vocabulary file is malformed."""


def read_vocab(path: str) -> list[str]:
    """Reads a WordPiece vocab.txt (one token a line, id = line number)."""
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


def _is_control(char: str) -> bool:
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_whitespace(char: str) -> bool:
    if char in " \t\n\r":
        return True
    return unicodedata.category(char) == "Zs"


def clean_text(raw, counts: collections.Counter | None = None) -> str:
    """Decodes and cleans one paragraph as BERT does; counts what it changed.

    Invalid UTF-8 bytes are dropped (counted as 'invalid_utf8'); NUL, U+FFFD and control
    characters are removed ('control_characters'); other whitespace becomes a space.
    """
    if counts is None:
        counts = collections.Counter()
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            counts["invalid_utf8"] += 1
    else:
        text = raw
    out = []
    removed = 0
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            removed += 1
            continue
        out.append(" " if _is_whitespace(char) else char)
    if removed:
        counts["control_characters"] += 1
    return "".join(out)


@dataclasses.dataclass(frozen=True)
class TokenizedText:
    """Token ids of one text with their byte offsets into the cleaned text."""

    ids: np.ndarray     # [n] int32, teacher vocab ids
    starts: np.ndarray  # [n] int64, byte offset of each piece's start
    ends: np.ndarray    # [n] int64, byte offset of each piece's end


class TeacherTokenizer:
    """WordPiece tokenization with a teacher's own vocabulary and casing.

    Args:
      vocab: the teacher's tokens (id = index).
      lower_case: BERT-uncased behaviour (lower-case, NFD, strip accents) when True; cased when
        False.
    """

    def __init__(self, vocab: list[str], lower_case: bool):
        self.vocab = list(vocab)
        self.lower_case = bool(lower_case)
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
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
        self._tokenizer = tf_text.FastBertTokenizer(
            vocab=self.vocab, lower_case_nfd_strip_accents=self.lower_case,
            token_out_type=tf.int32, unknown_token=UNK)

    @classmethod
    def from_vocab_file(cls, path: str, lower_case: bool) -> "TeacherTokenizer":
        return cls(read_vocab(path), lower_case)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def tokenize_with_offsets(self, texts: list[str]) -> list[TokenizedText]:
        """Tokenizes already-cleaned texts; returns ids with byte offsets, one entry a text."""
        if not texts:
            return []
        ids, starts, ends = self._tokenizer.tokenize_with_offsets(tf.constant(texts))
        out = []
        row_splits = ids.row_splits.numpy()
        flat_ids, flat_starts, flat_ends = (ids.flat_values.numpy(), starts.flat_values.numpy(),
                                            ends.flat_values.numpy())
        for i in range(len(texts)):
            a, b = row_splits[i], row_splits[i + 1]
            out.append(TokenizedText(flat_ids[a:b], flat_starts[a:b], flat_ends[a:b]))
        return out

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Cleans and tokenizes texts; one list of teacher ids a text."""
        cleaned = [clean_text(t) for t in texts]
        return [t.ids.tolist() for t in self.tokenize_with_offsets(cleaned)]

    def is_continuation(self, token_id: int) -> bool:
        return self.vocab[token_id].startswith("##")
