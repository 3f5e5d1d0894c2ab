"""Masked-LM figures: a copy's words and counts, two copies' agreement (and copies that masked
different words), a language's figures with paired intervals and win rates, and end to end the
same masked words in both copies and figures equal to `make_score_fn` run in process."""

import collections

import numpy as np
import pytest

from beam_jobs.teacher_report import masked_lm
from teacher_scoring.records.record_schema import ScoredExample
from tests.beam_jobs.teacher_report.conftest import K, SAMPLE, examples_outside_beam

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _copy(teacher, pieces, masked, topk, loss, num_words, s=16, p=6):
    """A scored copy of `pieces` (ids) with slots at indexes `masked` (0-based piece indexes),
    top-k rows `topk` and per-piece loss `loss`."""
    ids = np.zeros(s, np.int32)
    ids[1:len(pieces) + 1] = pieces
    positions = np.zeros(p, np.int32)
    gold = np.zeros(p, np.int32)
    weights = np.zeros(p, np.float32)
    topk_ids = np.zeros((p, len(topk[0])), np.int32)
    for slot, (index, row) in enumerate(zip(masked, topk)):
        positions[slot], gold[slot], weights[slot] = index + 1, pieces[index], 1.0
        topk_ids[slot] = row
    return ScoredExample(
        input_word_ids=ids, input_mask=(ids > 0).astype(np.int32),
        input_type_ids=np.zeros(s, np.int32), masked_lm_positions=positions,
        masked_lm_ids=gold, masked_lm_weights=weights, language="en", teacher=teacher,
        example_id="en-x-0", teacher_topk_ids=topk_ids,
        teacher_topk_logits=np.zeros(topk_ids.shape, np.float32), teacher_loss=loss,
        num_masked_words=num_words, teacher_word_loss=loss * len(masked) / num_words)


# Teacher a (cased): 5 The 6 cat 7 ##s 8 sat 9 dog 1 [UNK]; teacher b (uncased): 5 the 6 cats
# 7 sat 8 dog.
VOCAB_A = SPECIALS + ["The", "cat", "##s", "sat", "dog"]
VOCAB_B = SPECIALS + ["the", "cats", "sat", "dog"]


def _vocabs():
    Spec = collections.namedtuple("Spec", "name vocab lower_case")
    return masked_lm.TeacherVocabs([Spec("a", tuple(VOCAB_A), False),
                                    Spec("b", tuple(VOCAB_B), True)])


def test_copy_stats_groups_words_and_counts():
    vocabs = _vocabs()
    # "The cats sat": a = The cat ##s sat (masked: cat ##s, sat), b = the cats sat (cats, sat).
    a = _copy("a", [5, 6, 7, 8], [1, 2, 3], [[6, 9], [7, 5], [9, 8]], 2.0, 2)
    stats = masked_lm.copy_stats(a, vocabs)
    assert stats["pieces"] == 3 and stats["correct"] == 2          # cat, ##s right; sat wrong
    assert stats["word_groups"] == 2 and stats["words_correct"] == 1
    assert stats["words"] == 2
    assert stats["loss_sum"] == pytest.approx(6.0)
    assert stats["word_loss"] == pytest.approx(3.0)
    assert stats["word_text"] == ["cats", "sat"]


def test_pair_agreement_same_words_and_predictions():
    vocabs = _vocabs()
    a = _copy("a", [5, 6, 7, 8], [0, 3], [[5, 9], [8, 9]], 1.0, 2)       # The, sat
    b = _copy("b", [5, 6, 7], [0, 2], [[5, 8], [7, 6]], 1.5, 2)          # the, sat
    stats_a, stats_b = masked_lm.copy_stats(a, vocabs), masked_lm.copy_stats(b, vocabs)
    out = masked_lm.pair_agreement(a, b, stats_a, stats_b, vocabs, top_k=2)
    # Words compared as the uncased teacher reads them: The == the. Top-1: The/the agree, sat
    # agree; top-2 sets {the, dog} vs {the, dog} and {sat, dog} vs {sat, cats}.
    assert out["aligned"] and out["words"] == 2 and out["top1"] == 2
    assert out["overlap"] == pytest.approx(1.0 + 0.5)


def test_pair_agreement_detects_different_masked_words():
    vocabs = _vocabs()
    a = _copy("a", [5, 6, 7, 8], [0], [[5, 9]], 1.0, 1)                  # The
    b = _copy("b", [5, 6, 7], [2], [[7, 8]], 1.0, 1)                     # sat
    out = masked_lm.pair_agreement(a, b, masked_lm.copy_stats(a, vocabs),
                                   masked_lm.copy_stats(b, vocabs), vocabs, 2)
    assert not out["aligned"] and out["words"] == 0


def _row(example_id, a_loss, b_loss, a_correct=1, b_correct=1):
    def copy(loss, correct):
        return {"pieces": 2, "correct": correct, "loss_sum": 2 * loss, "words": 1,
                "word_loss": 2 * loss, "word_groups": 1, "words_correct": int(correct == 2),
                "unk_words": 0}
    return {"language": "en", "example_id": example_id,
            "copies": {"a": copy(a_loss, a_correct), "b": copy(b_loss, b_correct)},
            "pairs": {"a|b": {"aligned": True, "words": 1, "top1": 1, "overlap": 0.5}}}


def test_language_quality_win_rates_and_paired_difference():
    rng = np.random.default_rng(1)
    rows = [_row(f"en-{i}", 2.0 + rng.normal(0, 0.3), 2.5 + rng.normal(0, 0.3),
                 int(rng.integers(0, 3)), int(rng.integers(0, 3))) for i in range(300)]
    rows.append({"language": "en", "example_id": "en-only-a",
                 "copies": {"a": _row("x", 1, 1)["copies"]["a"]}, "pairs": {}})
    quality = masked_lm.language_quality(rows, ["a", "b"], 400, seed=3, top_k=8)
    assert quality["examples"] == 301 and quality["compared_examples"] == 300
    assert quality["missing_copies"] == {"a": 0, "b": 1}
    wins = [quality["teachers"][t]["best_win_rate"]["value"] for t in ("a", "b")]
    assert sum(wins) == pytest.approx(1.0)
    assert wins[0] > 0.8
    for t in ("a", "b"):
        for metric in ("piece_accuracy", "word_accuracy", "loss_per_piece", "loss_per_word",
                       "perplexity_per_word", "best_win_rate"):
            ci = quality["teachers"][t][metric]
            assert ci["low"] <= ci["value"] <= ci["high"], (t, metric, ci)
    (pair,) = quality["pairs"]
    diff = pair["loss_per_word_difference"]
    assert diff["high"] < 0                       # a's loss per word is lower, significantly
    assert diff["value"] == pytest.approx(quality["teachers"]["a"]["loss_per_word"]["value"]
                                          - quality["teachers"]["b"]["loss_per_word"]["value"])
    assert pair["aligned_share"] == 1.0
    assert pair["agreement"] == {"k": 8, "words": 300, "top1": 1.0, "overlap_at_k": 0.5}
    # Order of the rows does not matter; the seed does.
    again = masked_lm.language_quality(list(reversed(rows)), ["a", "b"], 400, seed=3, top_k=8)
    assert again == quality


@pytest.mark.slow
def test_report_same_masked_words_for_both_teachers(demo_report):
    report = demo_report["report"]
    _, _, copies = examples_outside_beam(demo_report, "en")
    both = {eid: c for eid, c in copies.items() if len(c) == 2}
    assert len(both) >= SAMPLE * 0.9
    for example_id, pair in both.items():
        a, b = pair["en_cased"], pair["ende_uncased"]
        assert a.num_masked_words == b.num_masked_words, example_id
    mlm = report["languages"]["en"]["masked_lm"]
    assert mlm["compared_examples"] == len(both)
    (pair,) = mlm["pairs"]
    assert pair["aligned_share"] == 1.0 and pair["agreement"]["words"] > 0
    masked_words = sum(c["en_cased"].num_masked_words for c in both.values())
    for name in ("en_cased", "ende_uncased"):
        assert mlm["teachers"][name]["masked_words"] == masked_words


@pytest.mark.slow
def test_report_masked_lm_figures_match_the_score_fn(demo_report):
    """Accuracy and loss re-computed in process with scoring.make_score_fn on the same copies."""
    from teacher_scoring.teachers import scoring
    from teacher_scoring.teachers.loaders import load_teacher

    config, report = demo_report["config"], demo_report["report"]
    _, _, copies = examples_outside_beam(demo_report, "en")
    both = [c for c in copies.values() if len(c) == 2]
    mlm = report["languages"]["en"]["masked_lm"]
    for name in ("en_cased", "ende_uncased"):
        teacher = load_teacher(config.teachers[name].path, name=name)
        score = scoring.make_score_fn(teacher, top_k=K)
        examples = [c[name] for c in both]
        batch = {f: np.stack([getattr(e, f) for e in examples]) for f in scoring.INPUTS}
        out = score(batch)
        weights = batch["masked_lm_weights"] > 0
        correct = (np.asarray(out["topk_ids"])[:, :, 0] == batch["masked_lm_ids"]) & weights
        pieces = weights.sum(axis=1)
        loss_sum = np.asarray(out["teacher_loss"]) * pieces
        words = np.array([e.num_masked_words for e in examples])
        figures = mlm["teachers"][name]
        assert figures["piece_accuracy"]["value"] == pytest.approx(correct.sum() / pieces.sum())
        assert figures["loss_per_piece"]["value"] == pytest.approx(loss_sum.sum() / pieces.sum(),
                                                                   rel=1e-4)
        assert figures["loss_per_word"]["value"] == pytest.approx(loss_sum.sum() / words.sum(),
                                                                  rel=1e-4)
        for metric in ("piece_accuracy", "loss_per_word", "perplexity_per_piece"):
            assert figures[metric]["low"] <= figures[metric]["value"] <= figures[metric]["high"]
    wins = sum(mlm["teachers"][t]["best_win_rate"]["value"] for t in ("en_cased", "ende_uncased"))
    assert wins == pytest.approx(1.0)
    rec = report["languages"]["en"]["recommendation"]
    assert rec["mode"] in ("single", "all", "best") and rec["teachers"]
