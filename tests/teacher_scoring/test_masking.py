"""Tests for teacher_scoring.masking: BERT's masking statistics on real text, layout of the
example, whole-word masking, and per-example determinism."""

import collections
import math

import numpy as np
import pytest

from teacher_scoring import masking, record_schema
from teacher_scoring import segmentation as sg
from teacher_scoring.masking import MaskingConfig
from teacher_scoring.tokenization import TeacherTokenizer
from tests.conftest import demo_lines, trained_vocab

S, P = 128, 20


@pytest.fixture(scope="module")
def corpus():
    """Real segments of demo text in three languages: [(tokenizer, name, example_id, pieces)]."""
    items = []
    for language, lower_case in (("en", True), ("de", False), ("fr", False)):
        tokenizer = TeacherTokenizer(trained_vocab(language, 3000, lower_case), lower_case)
        name = f"bert_{language}"
        for segments in sg.segment_documents(demo_lines(language), {name: tokenizer}, S - 2):
            for segment in segments:
                items.append((tokenizer, name, segment.example_id(language),
                              segment.pieces[name]))
    return items


def mask_all(corpus, config):
    return [masking.mask_segment(p.ids, p.word_starts, tok, config, example_id, name,
                                 example_id[:2])
            for tok, name, example_id, p in corpus]


@pytest.fixture(scope="module")
def masked(corpus):
    return mask_all(corpus, MaskingConfig(S, P, seed=12345))


def four_sigma(n, p):
    return 4 * math.sqrt(n * p * (1 - p))


def test_layout_and_special_tokens_never_masked(corpus, masked):
    for (tok, name, example_id, pieces), ex in zip(corpus, masked):
        n = len(pieces.ids)
        k = ex.num_predictions
        assert ex.input_word_ids.shape == (S,) and ex.input_word_ids.dtype == np.int32
        assert ex.masked_lm_positions.shape == (P,) and ex.masked_lm_weights.dtype == np.float32
        assert ex.input_word_ids[0] == tok.cls_id and ex.input_word_ids[n + 1] == tok.sep_id
        assert np.all(ex.input_word_ids[n + 2:] == tok.pad_id)
        np.testing.assert_array_equal(ex.input_mask, np.arange(S) < n + 2)
        assert not ex.input_type_ids.any()
        positions = ex.masked_lm_positions[:k]
        # Only pieces are masked: never [CLS] (0), [SEP] (n + 1) or padding.
        assert positions.min() >= 1 and positions.max() <= n
        assert np.all(np.diff(positions) > 0)  # sorted, unique
        np.testing.assert_array_equal(ex.masked_lm_weights, np.arange(P) < k)
        assert not ex.masked_lm_positions[k:].any() and not ex.masked_lm_ids[k:].any()
        # Gold ids are the original pieces; unmasked positions keep them.
        np.testing.assert_array_equal(ex.masked_lm_ids[:k], pieces.ids[positions - 1])
        unmasked = np.ones(n, bool)
        unmasked[positions - 1] = False
        np.testing.assert_array_equal(ex.input_word_ids[1:n + 1][unmasked], pieces.ids[unmasked])
        assert (ex.example_id, ex.teacher, ex.language) == (example_id, name, example_id[:2])


def test_number_of_predictions_is_berts(corpus, masked):
    """num_to_predict = min(P, max(1, round(0.15 * real tokens incl. [CLS]/[SEP])))."""
    real = np.array([len(p.ids) + 2 for *_, p in corpus])
    predicted = np.array([ex.num_predictions for ex in masked])
    expected = np.minimum(P, np.maximum(1, np.round(real * 0.15).astype(int)))
    np.testing.assert_array_equal(predicted, expected)
    assert predicted.sum() >= 10_000
    # 15% of the real tokens overall (rounding per sequence leaves < 1 point).
    assert abs(predicted.sum() / real.sum() - 0.15) < 0.01


def test_mask_random_keep_proportions(corpus, masked):
    """80% [MASK] / 10% random token / 10% unchanged, within 4-sigma binomial bounds, over
    more than 10,000 masked positions; random tokens are never special."""
    outcome = collections.Counter()
    random_ids = collections.defaultdict(set)
    pool_sizes = []
    for (tok, name, *_), ex in zip(corpus, masked):
        k = ex.num_predictions
        placed = ex.input_word_ids[ex.masked_lm_positions[:k]]
        gold = ex.masked_lm_ids[:k]
        is_mask = placed == tok.mask_id
        is_kept = ~is_mask & (placed == gold)
        is_random = ~is_mask & ~is_kept
        outcome["mask"] += int(is_mask.sum())
        outcome["kept"] += int(is_kept.sum())
        outcome["random"] += int(is_random.sum())
        for token_id in placed[is_random].tolist():
            assert token_id not in tok.special_ids and 0 <= token_id < tok.vocab_size
            assert not (tok.vocab[token_id].startswith("[") and tok.vocab[token_id].endswith("]"))
            random_ids[name].add(token_id)
        pool_sizes.append(len(masking.random_token_pool(tok)))
    n = sum(outcome.values())
    assert n >= 10_000
    # A random token equal to the gold one looks "kept": probability 0.1 / |pool|.
    collide = 0.1 / min(pool_sizes)
    for key, p in (("mask", 0.8), ("random", 0.1 - collide), ("kept", 0.1 + collide)):
        assert abs(outcome[key] - n * p) < four_sigma(n, p), (key, outcome[key], n)
    # Random replacements are spread over the vocabulary, not a few ids.
    for name, ids in random_ids.items():
        assert len(ids) > 200, name


def test_positions_are_uniform_over_the_pieces(corpus, masked):
    """Every piece is equally likely to be chosen: the share of masks in the first half of the
    pieces matches its expectation (4-sigma), and the first/last piece are chosen as often as
    the others."""
    first_half = expected_half = 0.0
    first_piece = expected_first = 0.0
    total = 0
    for (*_, pieces), ex in zip(corpus, masked):
        n, k = len(pieces.ids), ex.num_predictions
        positions = ex.masked_lm_positions[:k]
        first_half += np.sum(positions <= n // 2)
        expected_half += k * (n // 2) / n
        first_piece += np.sum((positions == 1) | (positions == n))
        expected_first += min(2, n) * k / n
        total += k
    assert abs(first_half - expected_half) < four_sigma(total, 0.5)
    assert abs(first_piece - expected_first) < 4 * math.sqrt(expected_first) + 1


def test_whole_word_masking_masks_whole_words_only(corpus):
    config = MaskingConfig(S, P, whole_word_masking=True, seed=7)
    examples = mask_all(corpus, config)
    multi_piece_words = 0
    total = 0
    for (*_, pieces), ex in zip(corpus, examples):
        n, k = len(pieces.ids), ex.num_predictions
        budget = min(P, max(1, round((n + 2) * 0.15)))
        assert 1 <= k <= budget
        masked = np.zeros(n, bool)
        masked[ex.masked_lm_positions[:k] - 1] = True
        starts = pieces.word_starts.copy()
        starts[0] = True
        word = np.cumsum(starts) - 1
        for w in np.unique(word[masked]):
            in_word = word == w
            assert masked[in_word].all(), "a word is only partly masked"
            multi_piece_words += int(in_word.sum() > 1)
        total += k
    assert multi_piece_words > 500
    assert total >= 10_000


def test_whole_word_masking_follows_bert_budget_rule():
    """A word that would exceed num_to_predict is skipped and smaller words are still taken."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##x", "##y", "##z"]
    tokenizer = TeacherTokenizer(vocab, lower_case=False)
    # Word 1: a ##x ##y ##z (4 pieces); then 8 one-piece words. 12 pieces + 2 = 14 real tokens,
    # 15% → 2 predictions: the 4-piece word never fits.
    ids = np.array([5, 7, 8, 9] + [6] * 8)
    starts = np.array([True, False, False, False] + [True] * 8)
    config = MaskingConfig(16, 10, whole_word_masking=True)
    for i in range(50):
        ex = masking.mask_segment(ids, starts, tokenizer, config, f"t-{i}", "t", "xx")
        assert ex.num_predictions == 2
        assert ex.masked_lm_positions[:2].min() >= 5


def test_deterministic_per_example(corpus, masked):
    config = MaskingConfig(S, P, seed=12345)
    subset = corpus[::7]
    again = mask_all(list(reversed(subset)), config)[::-1]
    for a, b in zip(masked[::7], again):
        for field in ("input_word_ids", "masked_lm_positions", "masked_lm_ids",
                      "masked_lm_weights"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    other_seed = mask_all(subset, MaskingConfig(S, P, seed=54321))
    differ = [not np.array_equal(a.input_word_ids, b.input_word_ids)
              for a, b in zip(masked[::7], other_seed)]
    assert np.mean(differ) > 0.9
    # The teacher name is part of the seed: two copies of one segment mask independently.
    tok, name, example_id, pieces = corpus[0]
    copies = [masking.mask_segment(pieces.ids, pieces.word_starts, tok, config, example_id,
                                   teacher, "en") for teacher in ("t1", "t2")]
    assert not np.array_equal(copies[0].input_word_ids, copies[1].input_word_ids)


def test_seed_derivation_is_stable():
    """The per-example seed is a SHA-256, not Python's salted hash(): fixed numbers forever
    (for a given NumPy: PCG64 doubles have not changed since NumPy 1.17)."""
    value = masking.example_rng(12345, "en-0123456789abcdef-0", "bert_en").random()
    assert value == masking.example_rng(12345, "en-0123456789abcdef-0", "bert_en").random()
    assert value != masking.example_rng(12346, "en-0123456789abcdef-0", "bert_en").random()
    assert value == 0.8385768793862948


def test_short_and_full_segments():
    tokenizer = TeacherTokenizer(trained_vocab("en", 1000, True), True)
    config = MaskingConfig(8, 3)
    one = masking.mask_segment([100], [True], tokenizer, config, "x-0", "t", "en")
    assert one.num_predictions == 1 and one.masked_lm_positions[0] == 1
    full = masking.mask_segment(np.arange(100, 106), np.ones(6, bool), tokenizer, config,
                                "x-1", "t", "en")
    assert full.input_word_ids[7] == tokenizer.sep_id and full.input_mask.all()
    assert full.num_predictions == 1  # round(8 * 0.15) = 1
    capped = masking.mask_segment(np.arange(100, 226), np.ones(126, bool), tokenizer,
                                  MaskingConfig(128, 5), "x-2", "t", "en")
    assert capped.num_predictions == 5
    with pytest.raises(ValueError, match="do not fit"):
        masking.mask_segment(np.arange(100, 107), np.ones(7, bool), tokenizer, config, "x", "t",
                             "en")
    with pytest.raises(ValueError, match="do not fit"):
        masking.mask_segment([], [], tokenizer, config, "x", "t", "en")


def test_serializes_as_plain_mlm_record(corpus, masked):
    spec = record_schema.ShardSpec(S, P, has_teacher_outputs=False)
    for ex in masked[:20]:
        back = record_schema.deserialize(record_schema.serialize(ex, spec), spec)
        np.testing.assert_array_equal(back.input_word_ids, ex.input_word_ids)
        np.testing.assert_array_equal(back.masked_lm_positions, ex.masked_lm_positions)
        assert back.example_id == ex.example_id and back.teacher_loss is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(seq_length=2, max_predictions_per_seq=1), "seq_length"),
    (dict(seq_length=128, max_predictions_per_seq=0), "max_predictions_per_seq"),
    (dict(seq_length=128, max_predictions_per_seq=129), "max_predictions_per_seq"),
    (dict(seq_length=128, max_predictions_per_seq=20, masked_lm_prob=0.0), "masked_lm_prob"),
    (dict(seq_length=128, max_predictions_per_seq=20, random_token_prob=0.6, keep_prob=0.6),
     "random_token_prob"),
    (dict(seq_length=128, max_predictions_per_seq=20, seed="x"), "seed"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskingConfig(**kwargs)
