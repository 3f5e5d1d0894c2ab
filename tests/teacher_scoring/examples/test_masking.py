"""Tests for teacher_scoring.examples.masking: BERT's masking statistics on real text, layout of the
example, whole-word masking, and per-example determinism."""

import collections
import math

import numpy as np
import pytest

from teacher_scoring.examples import masking

from teacher_scoring.records import record_schema
from teacher_scoring.examples import segmentation as sg
from teacher_scoring.examples.masking import MaskingConfig
from teacher_scoring.examples.tokenization import TeacherTokenizer
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
    (dict(seq_length=128, max_predictions_per_seq=20, short_seq_prob=1.5), "short_seq_prob"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskingConfig(**kwargs)


@pytest.fixture(scope="module")
def two_teachers():
    return {"small_uncased": TeacherTokenizer(trained_vocab("en", 1000, True), True),
            "big_cased": TeacherTokenizer(trained_vocab("en", 6000, False), False)}


@pytest.fixture(scope="module")
def shared(two_teachers):
    """Shared-word masking of real segments: [(segment, {teacher: example})], and the counts."""
    config = MaskingConfig(S, P, seed=99)
    counts = collections.Counter()
    documents = ["\n".join(demo_lines("en")[i:i + 12]) for i in range(0, 2400, 12)]
    items = []
    for segments in sg.segment_documents(documents, two_teachers, S - 2):
        for segment in segments:
            example_id = segment.example_id("en")
            items.append((segment, masking.mask_shared_words(
                segment.pieces, two_teachers, config, example_id, "en", counts)))
    return items, counts


def masked_words(pieces, example):
    """The shared words of `example`'s masked pieces, and whether all their pieces are masked."""
    k = example.num_predictions
    chosen = example.masked_lm_positions[:k] - 1
    words = np.unique(pieces.word_index[chosen])
    complete = np.isin(pieces.word_index, words).sum() == k
    return words.tolist(), complete


def test_shared_masks_hide_the_same_words_in_every_copy(shared, two_teachers):
    items, counts = shared
    total_words = total_masked = 0
    p_limited = 0
    for segment, copies in items:
        assert list(copies) == list(segment.pieces)
        words = {}
        for name, example in copies.items():
            pieces = segment.pieces[name]
            words[name], complete = masked_words(pieces, example)
            assert complete, "a masked word is only partly masked"
            assert example.num_predictions <= P
            assert example.num_masked_words == len(words[name])
            # Gold ids are the copy's own pieces; the layout is BERT's.
            k = example.num_predictions
            np.testing.assert_array_equal(example.masked_lm_ids[:k],
                                          pieces.ids[example.masked_lm_positions[:k] - 1])
            assert example.input_word_ids[0] == two_teachers[name].cls_id
        assert words["small_uncased"] == words["big_cased"]
        num_words = int(segment.pieces["big_cased"].word_index[-1]) + 1
        target = max(1, round(0.15 * num_words))
        assert len(words["big_cased"]) <= target
        p_limited += len(words["big_cased"]) < target
        total_words += num_words
        total_masked += len(words["big_cased"])
    assert len(items) > 300
    assert counts[masking.MASKED_WORDS] == total_masked
    assert counts[masking.P_LIMITED_EXAMPLES] == p_limited
    # 15% of the shared words (minus what P forbids and per-example rounding).
    assert 0.12 < total_masked / total_words < 0.16


def test_shared_masks_replace_a_word_the_same_way_in_every_copy(shared, two_teachers):
    """A word is [MASK] in every copy, or unchanged in every copy, or random in every copy;
    80 / 10 / 10 over the words (4 sigma)."""
    items, _ = shared
    outcome = collections.Counter()
    for segment, copies in items:
        how = {}
        for name, example in copies.items():
            tokenizer, pieces = two_teachers[name], segment.pieces[name]
            k = example.num_predictions
            placed = example.input_word_ids[example.masked_lm_positions[:k]]
            gold = example.masked_lm_ids[:k]
            words = pieces.word_index[example.masked_lm_positions[:k] - 1]
            for w in np.unique(words):
                in_word = words == w
                if np.all(placed[in_word] == tokenizer.mask_id):
                    kind = "mask"
                elif np.all(placed[in_word] == gold[in_word]):
                    kind = "kept"
                else:
                    kind = "random"
                    assert not np.any(placed[in_word] == tokenizer.mask_id)
                how.setdefault(int(w), set()).add(kind)
        for kinds in how.values():
            assert len(kinds) == 1 or kinds == {"random", "kept"}  # a random id can equal gold
            outcome["random" if "random" in kinds else kinds.pop()] += 1
    n = sum(outcome.values())
    assert n > 2000
    for key, p in (("mask", 0.8), ("random", 0.1), ("kept", 0.1)):
        assert abs(outcome[key] - n * p) < four_sigma(n, p) + 2, (key, outcome, n)


def test_shared_masks_depend_on_seed_and_example_not_on_teacher_names(shared, two_teachers):
    items, _ = shared
    segment, copies = items[5]
    config = MaskingConfig(S, P, seed=99)
    renamed = {"a": segment.pieces["small_uncased"], "b": segment.pieces["big_cased"]}
    again = masking.mask_shared_words(renamed, {"a": two_teachers["small_uncased"],
                                                "b": two_teachers["big_cased"]},
                                      config, segment.example_id("en"), "en")
    np.testing.assert_array_equal(again["a"].masked_lm_positions,
                                  copies["small_uncased"].masked_lm_positions)
    differ = 0
    for segment, copies in items[:100]:
        other = masking.mask_shared_words(segment.pieces, two_teachers,
                                          MaskingConfig(S, P, seed=100),
                                          segment.example_id("en"), "en")
        differ += not np.array_equal(other["big_cased"].masked_lm_positions,
                                     copies["big_cased"].masked_lm_positions)
    assert differ > 90


def test_p_limit_skips_a_word_in_every_copy():
    """A word whose pieces would take any copy past P is skipped (and counted) and the next
    word tried, so all copies keep the same words."""
    config = MaskingConfig(seq_length=64, max_predictions_per_seq=4, masked_lm_prob=0.5)
    # 2 copies x 6 words: word 2 has 5 pieces in copy 1 (more than P alone).
    per_word = np.array([[1, 1, 1, 1, 1, 1],
                         [1, 1, 5, 1, 2, 1]])
    seen_skip = False
    for i in range(200):
        counts = collections.Counter()
        words, treatment = masking.choose_shared_words(per_word, config, f"x-{i}", counts)
        assert 2 not in words.tolist()
        assert np.all(per_word[:, words].sum(axis=1) <= 4)
        assert len(words) == len(treatment) <= 3          # round(0.5 * 6)
        assert counts[masking.MASKED_WORDS] == len(words)
        if counts[masking.P_LIMITED_WORDS]:
            seen_skip = True
        assert counts[masking.P_LIMITED_EXAMPLES] == (len(words) < 3)
    assert seen_skip
    # No word fits: nothing is masked (the job drops such copies as no_masked_token).
    counts = collections.Counter()
    words, _ = masking.choose_shared_words(np.array([[5], [6]]), config, "y", counts)
    assert len(words) == 0 and counts[masking.P_LIMITED_EXAMPLES] == 1


def test_single_teacher_word_count():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##x", "##y"]
    tokenizer = TeacherTokenizer(vocab, lower_case=False)
    ids = np.array([5, 7, 8, 6, 6, 7])
    starts = np.array([True, False, False, True, True, False])
    config = MaskingConfig(64, 10, masked_lm_prob=0.99, whole_word_masking=True)
    ex = masking.mask_segment(ids, starts, tokenizer, config, "w-0", "t", "xx")
    assert ex.num_predictions == 6 and ex.num_masked_words == 3
