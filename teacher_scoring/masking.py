"""One teacher's copy of a segment → one masked example (BERT's masked-LM recipe).

The recipe is google-research/bert's create_pretraining_data.py (`create_masked_lm_predictions`):

  * the sequence is `[CLS] pieces [SEP]`, padded to S with the pad id; input_mask is 1 on the
    real tokens, input_type_ids are all 0 (one segment, no next-sentence pair);
  * num_to_predict = min(P, max(1, round(n_real * masked_lm_prob))), n_real = number of real
    tokens including [CLS] and [SEP] (BERT's `len(tokens)`);
  * candidates are the pieces (never [CLS], [SEP] or padding); they are shuffled and taken in
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

import dataclasses
import hashlib
import weakref

import numpy as np

from teacher_scoring import record_schema
from teacher_scoring.tokenization import TeacherTokenizer


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
    """

    seq_length: int
    max_predictions_per_seq: int
    masked_lm_prob: float = 0.15
    whole_word_masking: bool = False
    seed: int = 12345
    random_token_prob: float = 0.1
    keep_prob: float = 0.1

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
                      rng: np.random.Generator) -> np.ndarray:
    """Indexes into the pieces (0-based, unsorted) to predict.

    Args:
      word_starts: [n] bool, True where a piece starts a word.
    """
    n = len(word_starts)
    if not whole_word:
        return rng.permutation(n)[:num_to_predict]
    word_starts = word_starts.copy()
    word_starts[0] = True
    first = np.flatnonzero(word_starts)               # [num_words] first piece of each word
    sizes = np.diff(np.append(first, n))              # [num_words] pieces per word
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


def mask_segment(ids, word_starts, tokenizer: TeacherTokenizer, config: MaskingConfig,
                 example_id: str, teacher: str, language: str) -> record_schema.ScoredExample:
    """Builds one masked example from one teacher's pieces of a segment.

    Args:
      ids: [n] teacher vocab ids, 1 <= n <= S - 2 (segmentation.TeacherPieces.ids).
      word_starts: [n] bool, True where a piece starts a word (used for whole-word masking).
      tokenizer: the teacher's tokenizer (special ids, vocab for random tokens).
      config: the MaskingConfig.
      example_id, teacher, language: the record's strings; (config.seed, example_id, teacher)
        seeds the generator.

    Returns:
      A ScoredExample without teacher fields: input_word_ids / input_mask / input_type_ids
      int32 [S]; masked_lm_positions / masked_lm_ids int32 [P]; masked_lm_weights float32 [P].
    """
    ids = np.asarray(ids, np.int32)
    word_starts = np.asarray(word_starts, bool)
    n = len(ids)
    s, p = config.seq_length, config.max_predictions_per_seq
    if not 1 <= n <= s - 2:
        raise ValueError(f"{example_id}/{teacher}: {n} pieces do not fit seq_length {s} "
                         f"(need 1 to {s - 2})")
    if word_starts.shape != ids.shape:
        raise ValueError(f"{example_id}/{teacher}: word_starts has shape {word_starts.shape}, "
                         f"ids {ids.shape}")
    rng = example_rng(config.seed, example_id, teacher)

    num_real = n + 2
    num_to_predict = min(p, max(1, int(round(num_real * config.masked_lm_prob))))
    chosen = np.sort(_choose_positions(word_starts, num_to_predict, config.whole_word_masking,
                                       rng))
    positions = chosen + 1                              # [k] positions in the sequence
    gold = ids[chosen]                                  # [k]
    k = len(positions)
    draws, picks = rng.random((2, k))                   # [k] each
    pool = random_token_pool(tokenizer)
    random_ids = pool[(picks * len(pool)).astype(np.int64)]  # [k] uniform over the pool
    replaced = np.where(draws < config.mask_token_prob, tokenizer.mask_id,
                        np.where(draws < config.mask_token_prob + config.random_token_prob,
                                 random_ids, gold))

    input_word_ids = np.full(s, tokenizer.pad_id, np.int32)
    input_word_ids[0] = tokenizer.cls_id
    input_word_ids[1:n + 1] = ids
    input_word_ids[n + 1] = tokenizer.sep_id
    input_word_ids[positions] = replaced
    input_mask = np.zeros(s, np.int32)
    input_mask[:num_real] = 1

    masked_lm_positions = np.zeros(p, np.int32)
    masked_lm_positions[:k] = positions
    masked_lm_ids = np.zeros(p, np.int32)
    masked_lm_ids[:k] = gold
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
    )
