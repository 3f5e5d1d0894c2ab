r"""Trains a teacher-style WordPiece vocabulary (BERT's vocab.txt format) from text.

Uses the `tokenizers` package's WordPiece trainer with BERT's normalisation and
pre-tokenisation (whitespace/punctuation split, CJK characters split, optional lower-casing with
accent stripping), so the vocabulary fits `teacher_scoring.examples.tokenization.TeacherTokenizer` with
the same casing.

The output puts the special tokens first, at BERT's conventional ids: [PAD]=0, [UNK]=1, [CLS]=2,
[SEP]=3, [MASK]=4; then the learned tokens.

The alphabet (the single characters every word can fall back to) is chosen by coverage, not
by a fixed count: every character seen at least --alphabet_min_count times, then, if
--alphabet_coverage < 1, only the most frequent ones that cover that fraction of all character
occurrences. A fixed cap (the trainer's `limit_alphabet`, 1,000 by default in `tokenizers`) would
leave most CJK characters as [UNK]: 1,000 of the 6,238 distinct characters of the zh train corpus.

Usage:
  python -m vocab.train_wordpiece --input 'data/corpora/demo/en.txt' --vocab_size 8000 \
      --lower_case --output /tmp/en_vocab.txt
"""

from __future__ import annotations

import collections
import glob

from absl import app, flags, logging
import tensorflow as tf

from teacher_scoring.examples.tokenization import SPECIAL_TOKENS, clean_text

FLAGS = flags.FLAGS


def choose_alphabet(char_counts: collections.Counter, min_count: int = 2,
                    coverage: float = 1.0) -> list[str]:
    """The characters of the alphabet, most frequent first (ties by character).

    Args:
      char_counts: occurrences of each character in the normalised text (whitespace excluded).
      min_count: a character seen fewer times is left out (it becomes [UNK] unless a merge
        covers it); 1 keeps every character.
      coverage: of the characters left, keep the most frequent ones until they cover this
        fraction of all occurrences (1.0: all of them).

    Raises:
      ValueError: min_count < 1 or coverage outside (0, 1].
    """
    if min_count < 1:
        raise ValueError(f"alphabet min_count must be >= 1, got {min_count}")
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"alphabet coverage must be in (0, 1], got {coverage}")
    ranked = sorted(char_counts.items(), key=lambda item: (-item[1], item[0]))
    total = sum(char_counts.values())
    alphabet, covered = [], 0
    for char, count in ranked:
        if count < min_count or (coverage < 1.0 and covered >= coverage * total):
            break
        alphabet.append(char)
        covered += count
    return alphabet


def train_wordpiece(lines, vocab_size: int, lower_case: bool, min_frequency: int = 2,
                    alphabet_min_count: int = 2, alphabet_coverage: float = 1.0,
                    limit_alphabet: int | None = None) -> list[str]:
    """Learns a WordPiece vocabulary of at most `vocab_size` tokens from an iterable of lines.

    Args:
      lines: raw text lines (str or bytes), one paragraph each; cleaned with `clean_text`.
      vocab_size: the maximum number of tokens, special tokens included.
      lower_case: uncased vocabulary (lower-case and strip accents) when True.
      min_frequency: minimum count of a learned merge.
      alphabet_min_count, alphabet_coverage: how the alphabet is chosen (`choose_alphabet`).
      limit_alphabet: if given, at most this many characters of that alphabet are kept (the
        most frequent).

    Returns:
      The tokens in id order: [PAD], [UNK], [CLS], [SEP], [MASK] at ids 0-4, then the
      learned tokens (characters, their '##' forms, then merges).

    Raises:
      ValueError: `vocab_size` is too small for the special tokens, or for the alphabet the
        trainer always keeps (every kept character and its '##' form); the message says how
        many tokens that alphabet needs and how large it is.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lower_case,
        lowercase=lower_case)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cleaned = [clean_text(line) for line in lines]
    char_counts = collections.Counter()
    for line in cleaned:
        char_counts.update(char for char in tokenizer.normalizer.normalize_str(line)
                           if not char.isspace())
    alphabet = choose_alphabet(char_counts, alphabet_min_count, alphabet_coverage)
    if limit_alphabet is not None:
        alphabet = alphabet[:limit_alphabet]
    # The chosen characters are the trainer's initial alphabet and its limit: it keeps exactly
    # them (initial characters are never dropped) and no other.
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, limit_alphabet=len(alphabet),
        initial_alphabet=alphabet, special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##", show_progress=False)
    tokenizer.train_from_iterator(cleaned, trainer=trainer)
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    tokens = [token for token, _ in by_id]
    specials = list(SPECIAL_TOKENS)
    rest = [t for t in tokens if t not in SPECIAL_TOKENS]
    result = specials + rest
    if len(result) > vocab_size:
        # The trainer keeps every character of the (limited) alphabet and its '##' form even
        # when that exceeds vocab_size; refuse rather than return more than was asked for.
        raise ValueError(
            f"vocab_size {vocab_size} is too small for this text: the alphabet alone needs "
            f"{len(result)} tokens (specials, {len(alphabet)} characters and their '##' "
            f"forms); raise vocab_size, or shrink the alphabet with a higher alphabet_min_count "
            f"(now {alphabet_min_count}), a lower alphabet_coverage (now {alphabet_coverage}) "
            f"or limit_alphabet (now {limit_alphabet})")
    return result


def read_lines(patterns: list[str]):
    """Yields the non-empty lines of every file matching the glob patterns (gfile paths too)."""
    files = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern)) or sorted(glob.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"--input {pattern!r} matches no file")
        files.extend(matched)
    for path in files:
        with tf.io.gfile.GFile(path, "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", errors="replace").strip()
                if line:
                    yield line


def write_vocab(tokens: list[str], path: str) -> None:
    """Writes tokens one a line (id = line number)."""
    with tf.io.gfile.GFile(path, "w") as f:
        for token in tokens:
            f.write(token + "\n")


def main(argv):
    del argv
    tokens = train_wordpiece(read_lines(FLAGS.input), FLAGS.vocab_size, FLAGS.lower_case,
                             min_frequency=FLAGS.min_frequency,
                             alphabet_min_count=FLAGS.alphabet_min_count,
                             alphabet_coverage=FLAGS.alphabet_coverage,
                             limit_alphabet=FLAGS.limit_alphabet)
    write_vocab(tokens, FLAGS.output)
    logging.info("Wrote %d tokens to %s", len(tokens), FLAGS.output)
    print(f"wrote {len(tokens)} tokens to {FLAGS.output}")


if __name__ == "__main__":
    flags.DEFINE_multi_string("input", None, "Text file glob(s), one paragraph a line.")
    flags.DEFINE_integer("vocab_size", 8000, "Target vocabulary size (special tokens included).")
    flags.DEFINE_bool("lower_case", False, "Uncased vocabulary (lower-case, strip accents).")
    flags.DEFINE_integer("min_frequency", 2, "Minimum count of a learned token.")
    flags.DEFINE_integer("alphabet_min_count", 2,
                         "The alphabet keeps every character seen at least this many times.")
    flags.DEFINE_float("alphabet_coverage", 1.0,
                       "Then only the most frequent characters covering this fraction of all "
                       "character occurrences (1.0: no further cut).")
    flags.DEFINE_integer("limit_alphabet", None,
                         "Optional cap on the number of alphabet characters (most frequent).")
    flags.DEFINE_string("output", None, "Path of the vocab.txt to write.")
    flags.mark_flags_as_required(["input", "output"])
    app.run(main)
