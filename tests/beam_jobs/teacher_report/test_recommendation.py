"""The recommendation rule, branch by branch, and a gold-only language's tokenizer advice, on
hand-made figures."""

from beam_jobs.teacher_report import recommendation


def _quality(loss_low, loss_high, accuracy=(-0.01, 0.01), aligned=1.0, compared=500,
             wins=(0.5, 0.5)):
    """A language_quality-like dict of teachers a, b: paired CIs of a − b."""
    def ci(low, high):
        return {"value": (low + high) / 2, "low": low, "high": high}
    return {"compared_examples": compared,
            "teachers": {t: {"best_win_rate": {"value": w}} for t, w in zip("ab", wins)},
            "pairs": [{"a": "a", "b": "b", "loss_per_word_difference": ci(loss_low, loss_high),
                       "word_accuracy_difference": ci(*accuracy), "aligned_share": aligned}]}


def _fitfig(unk_words, uncovered=0.0):
    return {"unk_word_rate": unk_words, "uncovered_character_rate": uncovered, "fertility": 1.3}


def test_recommend_drops_a_teacher_that_is_worse_and_covers_no_better():
    rec = recommendation.recommend(["a", "b"], {"a": _fitfig(0.01), "b": _fitfig(0.01)},
                       _quality(0.2, 0.6, wins=(0.2, 0.8)))
    assert rec["mode"] == "single" and rec["teachers"] == ["b"]
    assert "a" in rec["not_recommended"] and not rec["warnings"]
    assert rec["not_recommended"]["a"].startswith("b has a lower loss per masked word")


def test_recommend_all_when_no_teacher_is_better():
    rec = recommendation.recommend(["a", "b"], {"a": _fitfig(0.0), "b": _fitfig(0.0)},
                                   _quality(-0.1, 0.2))
    assert rec["mode"] == "all" and rec["teachers"] == ["a", "b"]


def test_recommend_all_with_a_warning_when_loss_and_accuracy_disagree():
    # b has the lower loss per word, a the higher word accuracy: neither is dropped.
    rec = recommendation.recommend(["a", "b"], {"a": _fitfig(0.0), "b": _fitfig(0.0)},
                       _quality(0.1, 0.3, accuracy=(0.005, 0.02)))
    assert rec["mode"] == "all" and rec["teachers"] == ["a", "b"]
    assert any("the figures disagree" in w for w in rec["warnings"])


def test_recommend_best_when_the_better_teacher_covers_worse():
    rec = recommendation.recommend(["a", "b"], {"a": _fitfig(0.001), "b": _fitfig(0.03)},
                       _quality(0.1, 0.3))
    assert rec["mode"] == "best" and rec["teachers"] == ["a", "b"]


def test_recommend_warnings():
    rec = recommendation.recommend(["a", "b"], {"a": _fitfig(0.08, 0.02), "b": _fitfig(0.08, 0.0)},
                       _quality(-0.1, 0.1, aligned=0.9, compared=50),
                       lower_case={"a": True, "b": False})
    text = " ".join(rec["warnings"])
    assert "a: 8.0% of the words" in text and "characters are lost" in text
    assert "masked different words" in text and "only 50 compared examples" in text
    assert "a is uncased, the other(s) cased" in text
    single = recommendation.recommend(["a"], {"a": _fitfig(0.0)},
                          {"compared_examples": 300, "teachers": {}, "pairs": []})
    assert single["mode"] == "single" and single["teachers"] == ["a"]


def test_gold_only_keeps_its_tokenizer_and_warns_when_another_covers_clearly_better():
    fit = {"a": _fitfig(0.02), "b": _fitfig(0.001), "c": _fitfig(0.018)}
    rec = recommendation.gold_only_recommendation("lb", "a", fit)
    assert rec["mode"] == "gold_only" and rec["teachers"] == ["a"]
    assert not rec["not_recommended"]
    assert rec["reasons"][0].startswith("no teacher scores lb: trained on gold labels only, "
                                        "tokenized with a (words with [UNK] 2.00%, 1.30 pieces")
    (warning,) = rec["warnings"]
    assert warning.startswith("b's tokenizer covers the text better (words with [UNK] 0.10%)")
    # Within 0.5 points of the configured tokenizer (c), or the configured one best: no warning.
    assert not recommendation.gold_only_recommendation("lb", "a", {k: fit[k] for k in "ac"})[
        "warnings"]
    assert not recommendation.gold_only_recommendation("lb", "b", fit)["warnings"]
