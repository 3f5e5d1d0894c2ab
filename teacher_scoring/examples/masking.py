"""One teacher's copy of a segment → one masked example (BERT's masked-LM recipe).

The recipe is google-research/bert's create_pretraining_data.py (`create_masked_lm_predictions`):

  * the sequence is `[CLS] pieces [SEP]`, padded to S with the pad id; input_mask is 1 on the
    real tokens, input_type_ids are all 0 (one segment, no next-sentence pair);
  * num_to_predict = min(P, max(1, round(n_real * masked_lm_prob))), n_real = number of real
    tokens including [CLS] and [SEP] (BERT's `len(tokens)`);
  * candidates are the pieces (never [CLS], [SEP], padding, or the separator between two
    documents of a full-sentences sequence); they are shuffled and taken in
    that order; with whole-word masking a candidate is a word (a non-`##` piece and the `##`
    pieces after it; the first piece of a segment starts a word) and a word that would take the
    count past num_to_predict is skipped, as in BERT;
  * each chosen position becomes [MASK] with probability 1 - random_token_prob - keep_prob
    (0.8), a random token with random_token_prob (0.1), and stays itself with keep_prob (0.1).
    Random tokens are drawn uniformly from the teacher's vocabulary without its special /
    bracketed tokens ([PAD], [UNK], [CLS], [SEP], [MASK], [unusedN], ...);
  * positions are sorted; positions / gold ids / weights are padded to P with 0.

Determinism: every example draws from its own `np.random.Generator`, seeded with a SHA-256 of
(seed, example_id, teacher). The same input and seed therefore give the same examples whatever
the number of workers, the order of the documents, or the batching. Python's `hash()` is salted
per process and is not used. (NumPy documents that a Generator's streams may change between
NumPy versions; record the version with the data, as the create_examples CLI does.)

Why NumPy and not tensorflow-text's `mask_language_model` / `MaskValuesChooser` /
`RandomItemSelector`: those ops draw from TensorFlow's stateful RNGs (op-level seeds and the
global seed), so which positions an example gets depends on what ran before it in that process.
They are not reproducible per example across workers, which the copies of a segment and a
re-run of a Beam job need.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import weakref

import numpy as np

from teacher_scoring.records import record_schema
from teacher_scoring.examples import segmentation
from teacher_scoring.examples.tokenization import TeacherTokenizer


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    """Sequence shape and masking recipe.

    seq_length (S): tokens per example, [CLS] and [SEP] included (so a segment has ≤ S - 2).
    max_predictions_per_seq (P): masked slots per example.
    masked_lm_prob: fraction of the real tokens to predict.
    whole_word_masking: mask whole words (all pieces of a word, or none).
    seed: the job seed; each example's generator is derived from it.
    random_token_prob / keep_prob: of the chosen positions, the fraction replaced by a random
      token / left unchanged (the rest become [MASK]).
    short_seq_prob: probability that a segment's target length is drawn shorter than S - 2
      (BERT's short_seq_prob; used by the segmentation, `segmentation._TargetLengths`).
    packing: `within_document` (BERT's format: a sequence holds one document's text) or
      `full_sentences` (RoBERTa's: sequences filled across documents, a separator between
      them; `segmentation.pack_documents`). full_sentences draws no short targets
      (short_seq_prob must be 0).
    """

    seq_length: int
    max_predictions_per_seq: int
    masked_lm_prob: float = 0.15
    whole_word_masking: bool = False
    seed: int = 12345
    random_token_prob: float = 0.1
    keep_prob: float = 0.1
    short_seq_prob: float = 0.0
    packing: str = segmentation.WITHIN_DOCUMENT

    def __post_init__(self):
        if not isinstance(self.seq_length, (int, np.integer)) or self.seq_length < 3:
            raise ValueError(f"seq_length must be an integer >= 3 ([CLS] piece [SEP]), "
                             f"got {self.seq_length!r}")
        if (not isinstance(self.max_predictions_per_seq, (int, np.integer))
                or not 1 <= self.max_predictions_per_seq <= self.seq_length):
            raise ValueError(f"max_predictions_per_seq must be in [1, seq_length = "
                             f"{self.seq_length}], got {self.max_predictions_per_seq!r}")
        if not 0.0 < self.masked_lm_prob <= 1.0:
            raise ValueError(f"masked_lm_prob must be in (0, 1], got {self.masked_lm_prob!r}")
        if (self.random_token_prob < 0 or self.keep_prob < 0
                or self.random_token_prob + self.keep_prob > 1.0):
            raise ValueError(f"random_token_prob and keep_prob must be >= 0 with a sum <= 1, got "
                             f"{self.random_token_prob!r} and {self.keep_prob!r}")
        if not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob!r}")
        segmentation.check_packing(self.packing)
        if self.packing == segmentation.FULL_SENTENCES and self.short_seq_prob:
            raise ValueError(f"packing 'full_sentences' fills every sequence; short_seq_prob "
                             f"must be 0 with it, got {self.short_seq_prob!r}")

    @property
    def max_tokens(self) -> int:
        """The most pieces a segment may have (S - 2)."""
        return self.seq_length - 2

    @property
    def mask_token_prob(self) -> float:
        return 1.0 - self.random_token_prob - self.keep_prob


def example_rng(seed: int, example_id: str, teacher: str) -> np.random.Generator:
    """The generator of one example's copy: a stable function of (seed, example_id, teacher)."""
    key = f"{int(seed)}\x1f{example_id}\x1f{teacher}".encode("utf-8")
    digest = hashlib.sha256(key).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def shared_rng(seed: int, example_id: str) -> np.random.Generator:
    """The generator of an example's shared masking decisions (which words, and how each is
    replaced): a stable function of (seed, example_id), the same for every teacher's copy (its
    key differs from every key of example_rng)."""
    key = f"{int(seed)}\x1f{example_id}\x1e\x1fshared_words".encode("utf-8")
    digest = hashlib.sha256(key).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


_RANDOM_POOL: "weakref.WeakKeyDictionary[TeacherTokenizer, np.ndarray]" = (
    weakref.WeakKeyDictionary())


def random_token_pool(tokenizer: TeacherTokenizer) -> np.ndarray:
    """[m] int32: the ids a random replacement is drawn from (the vocab minus special and
    bracketed tokens)."""
    pool = _RANDOM_POOL.get(tokenizer)
    if pool is None:
        pool = np.array([i for i in range(tokenizer.vocab_size)
                         if i not in tokenizer.special_ids], np.int32)
        if pool.size == 0:
            raise ValueError("the vocabulary has no ordinary token to draw random tokens from")
        _RANDOM_POOL[tokenizer] = pool
    return pool


def _choose_positions(word_starts: np.ndarray, num_to_predict: int, whole_word: bool,
                      rng: np.random.Generator,
                      separators: np.ndarray | None = None) -> np.ndarray:
    """Indexes into the pieces (0-based, unsorted) to predict.

    Args:
      word_starts: [n] bool, True where a piece starts a word.
      separators: [n] bool, True at document separators (never predicted; each is a word of
        its own: word_starts must be True at it and after it), or None.
    """
    n = len(word_starts)
    if not whole_word:
        if separators is None:
            return rng.permutation(n)[:num_to_predict]
        candidates = np.flatnonzero(~separators)
        return candidates[rng.permutation(len(candidates))[:num_to_predict]]
    word_starts = word_starts.copy()
    word_starts[0] = True
    first = np.flatnonzero(word_starts)               # [num_words] first piece of each word
    sizes = np.diff(np.append(first, n))              # [num_words] pieces per word
    if separators is not None:
        keep = ~separators[first]
        first, sizes = first[keep], sizes[keep]
    chosen = []
    total = 0
    for w in rng.permutation(len(first)).tolist():
        if total >= num_to_predict:
            break
        if total + sizes[w] > num_to_predict:
            continue  # BERT: skip a word that would exceed the budget, try the next one
        chosen.append(np.arange(first[w], first[w] + sizes[w]))
        total += sizes[w]
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def _check_pieces(ids, word_starts, config: MaskingConfig, example_id: str, teacher: str):
    ids = np.asarray(ids, np.int32)
    word_starts = np.asarray(word_starts, bool)
    n, s = len(ids), config.seq_length
    if not 1 <= n <= s - 2:
        raise ValueError(f"{example_id}/{teacher}: {n} pieces do not fit seq_length {s} "
                         f"(need 1 to {s - 2})")
    if word_starts.shape != ids.shape:
        raise ValueError(f"{example_id}/{teacher}: word_starts has shape {word_starts.shape}, "
                         f"ids {ids.shape}")
    return ids, word_starts


def _build_example(ids: np.ndarray, chosen: np.ndarray, replaced: np.ndarray,
                   tokenizer: TeacherTokenizer, config: MaskingConfig, example_id: str,
                   teacher: str, language: str, num_masked_words: int
                   ) -> record_schema.ScoredExample:
    """The example of pieces `ids` [n] whose sorted indexes `chosen` [k] are predicted, their
    input ids replaced by `replaced` [k]."""
    s, p = config.seq_length, config.max_predictions_per_seq
    n, k = len(ids), len(chosen)
    positions = chosen + 1                              # [k] positions in the sequence
    input_word_ids = np.full(s, tokenizer.pad_id, np.int32)
    input_word_ids[0] = tokenizer.cls_id
    input_word_ids[1:n + 1] = ids
    input_word_ids[n + 1] = tokenizer.sep_id
    input_word_ids[positions] = replaced
    input_mask = np.zeros(s, np.int32)
    input_mask[:n + 2] = 1

    masked_lm_positions = np.zeros(p, np.int32)
    masked_lm_positions[:k] = positions
    masked_lm_ids = np.zeros(p, np.int32)
    masked_lm_ids[:k] = ids[chosen]
    masked_lm_weights = np.zeros(p, np.float32)
    masked_lm_weights[:k] = 1.0
    return record_schema.ScoredExample(
        input_word_ids=input_word_ids,
        input_mask=input_mask,
        input_type_ids=np.zeros(s, np.int32),
        masked_lm_positions=masked_lm_positions,
        masked_lm_ids=masked_lm_ids,
        masked_lm_weights=masked_lm_weights,
        language=language,
        teacher=teacher,
        example_id=example_id,
        num_masked_words=int(num_masked_words),
    )


def mask_segment(ids, word_starts, tokenizer: TeacherTokenizer, config: MaskingConfig,
                 example_id: str, teacher: str, language: str,
                 separators=None) -> record_schema.ScoredExample:
    """Builds one masked example from one teacher's pieces of a segment (its own masks: the
    recipe of a language with one teacher).

    Args:
      ids: [n] teacher vocab ids, 1 <= n <= S - 2 (segmentation.TeacherPieces.ids).
      word_starts: [n] bool, True where a piece starts a word (used for whole-word masking).
      tokenizer: the teacher's tokenizer (special ids, vocab for random tokens).
      config: the MaskingConfig.
      example_id, teacher, language: the record's strings; (config.seed, example_id, teacher)
        seeds the generator.
      separators: [n] bool or None: document separators of a full-sentences sequence
        (segmentation.TeacherPieces.separators), never masked (they count as real tokens in
        num_to_predict, as BERT counts its [SEP]s).

    Returns:
      A ScoredExample without teacher fields: input_word_ids / input_mask / input_type_ids
      int32 [S]; masked_lm_positions / masked_lm_ids int32 [P]; masked_lm_weights float32 [P];
      num_masked_words: the number of words (a piece and its `##` pieces) with a masked piece.
    """
    ids, word_starts = _check_pieces(ids, word_starts, config, example_id, teacher)
    rng = example_rng(config.seed, example_id, teacher)
    num_real = len(ids) + 2
    num_to_predict = min(config.max_predictions_per_seq,
                         max(1, int(round(num_real * config.masked_lm_prob))))
    if separators is not None:
        separators = np.asarray(separators, bool)
        if separators.shape != ids.shape:
            raise ValueError(f"{example_id}/{teacher}: separators has shape {separators.shape}, "
                             f"ids {ids.shape}")
    chosen = np.sort(_choose_positions(word_starts, num_to_predict, config.whole_word_masking,
                                       rng, separators))
    gold = ids[chosen]                                  # [k]
    k = len(chosen)
    draws, picks = rng.random((2, k))                   # [k] each
    pool = random_token_pool(tokenizer)
    random_ids = pool[(picks * len(pool)).astype(np.int64)]  # [k] uniform over the pool
    replaced = np.where(draws < config.mask_token_prob, tokenizer.mask_id,
                        np.where(draws < config.mask_token_prob + config.random_token_prob,
                                 random_ids, gold))
    starts = word_starts.copy()
    starts[0] = True
    words = np.cumsum(starts)[chosen]                   # [k] word of each masked piece
    return _build_example(ids, chosen, replaced, tokenizer, config, example_id, teacher,
                          language, len(np.unique(words)))


# Counter keys of shared masking (per example, not per copy).
MASKED_WORDS = "masked_words"
P_LIMITED_WORDS = "p_limited_words"
P_LIMITED_EXAMPLES = "p_limited_examples"

_MASK, _RANDOM, _KEEP = 0, 1, 2


def choose_shared_words(pieces_per_word: np.ndarray, config: MaskingConfig, example_id: str,
                        counts: collections.Counter | None = None,
                        maskable: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The masked words of an example, decided once for all its copies.

    Args:
      pieces_per_word: [C, W] int, the pieces each of the C copies has in each shared word.
      config: masked_lm_prob, P and the seed.
      example_id: with config.seed, seeds the decisions (`shared_rng`; not the teacher).
      counts: gets `masked_words`, `p_limited_words` and `p_limited_examples`.
      maskable: [W] bool or None (all): False for the words never masked (document
        separators); they are left out of W below and skipped in the shuffled order.

    Returns:
      (words [m] int, ascending: the masked shared words; treatment [m] int: 0 [MASK],
      1 random token, 2 unchanged, with probabilities 0.8 / 0.1 / 0.1 by default).

    The rule: num_words = max(1, round(masked_lm_prob * W)); the words are shuffled and taken
    in that order; a word whose pieces would take any copy past P masked pieces is skipped and
    the next one tried (BERT's whole-word rule, applied to every copy at once, so every copy
    keeps the same words); skipped words are counted as `p_limited_words`, and examples that
    end with fewer than num_words words as `p_limited_examples`.
    """
    pieces_per_word = np.asarray(pieces_per_word, np.int64)
    num_copies, num_words_total = pieces_per_word.shape
    p = config.max_predictions_per_seq
    rng = shared_rng(config.seed, example_id)
    num_maskable = num_words_total if maskable is None else int(np.sum(maskable))
    num_words = max(1, int(round(config.masked_lm_prob * num_maskable)))
    chosen = []
    totals = np.zeros(num_copies, np.int64)
    skipped = 0
    for w in rng.permutation(num_words_total).tolist():
        if len(chosen) >= num_words:
            break
        if maskable is not None and not maskable[w]:
            continue
        if np.any(totals + pieces_per_word[:, w] > p):
            skipped += 1
            continue
        chosen.append(w)
        totals += pieces_per_word[:, w]
    words = np.sort(np.asarray(chosen, np.int64))
    draws = rng.random(len(words))
    treatment = np.where(draws < config.mask_token_prob, _MASK,
                         np.where(draws < config.mask_token_prob + config.random_token_prob,
                                  _RANDOM, _KEEP))
    if counts is not None:
        counts[MASKED_WORDS] += len(words)
        if skipped:
            counts[P_LIMITED_WORDS] += skipped
        if len(words) < num_words:
            counts[P_LIMITED_EXAMPLES] += 1
    return words, treatment


def mask_copy(ids, word_index, words: np.ndarray, treatment: np.ndarray,
              tokenizer: TeacherTokenizer, config: MaskingConfig, example_id: str, teacher: str,
              language: str) -> record_schema.ScoredExample:
    """One copy of an example with the shared masked words `words` (choose_shared_words):
    every piece of those words is predicted; a word's treatment applies to all its pieces
    (random replacements are drawn per piece from the copy's own generator, seeded by
    (seed, example_id, teacher), over the teacher's vocabulary).

    Args:
      ids: [n] the copy's pieces; word_index: [n] their shared words
        (segmentation.TeacherPieces.word_index).
    """
    word_index = np.asarray(word_index, np.int64)
    ids, _ = _check_pieces(ids, np.ones(len(word_index), bool), config, example_id, teacher)
    chosen = np.flatnonzero(np.isin(word_index, words))    # [k] ascending piece indexes
    if len(chosen) > config.max_predictions_per_seq:
        raise ValueError(f"{example_id}/{teacher}: {len(chosen)} pieces in the masked words "
                         f"exceed max_predictions_per_seq {config.max_predictions_per_seq}")
    how = treatment[np.searchsorted(words, word_index[chosen])]   # [k]
    rng = example_rng(config.seed, example_id, teacher)
    pool = random_token_pool(tokenizer)
    random_ids = pool[(rng.random(len(chosen)) * len(pool)).astype(np.int64)]
    gold = ids[chosen]
    replaced = np.where(how == _MASK, tokenizer.mask_id, np.where(how == _RANDOM, random_ids, gold))
    return _build_example(ids, chosen, replaced, tokenizer, config, example_id, teacher,
                          language, len(words))


def mask_shared_words(pieces, tokenizers, config: MaskingConfig, example_id: str, language: str,
                      counts: collections.Counter | None = None
                      ) -> dict[str, record_schema.ScoredExample]:
    """Every copy of one segment, masked on the same shared words (a language with several
    teachers: the copies then describe the same text with the same words hidden, so `best` can
    compare the teachers' losses on them).

    Args:
      pieces: teacher name → segmentation.TeacherPieces of the segment (its copies).
      tokenizers: teacher name → TeacherTokenizer.

    Returns:
      teacher name → ScoredExample (same order as `pieces`), each with num_masked_words set.
    """
    names = list(pieces)
    num_words = max(int(pieces[n].word_index[-1]) for n in names) + 1
    per_word = np.stack([np.bincount(np.asarray(pieces[n].word_index, np.int64),
                                     minlength=num_words) for n in names])   # [C, W]
    maskable = None
    separators = pieces[names[0]].separators
    if separators is not None:   # the same shared words are separators in every copy
        maskable = np.ones(num_words, bool)
        maskable[np.asarray(pieces[names[0]].word_index)[separators]] = False
    words, treatment = choose_shared_words(per_word, config, example_id, counts, maskable)
    return {n: mask_copy(pieces[n].ids, pieces[n].word_index, words, treatment, tokenizers[n],
                         config, example_id, n, language) for n in names}
