"""The recommendation per language: which teachers, `all` or `best`.

The rule (a heuristic, stated so it can be argued with; docs/teacher_report.md):

  1. Teacher U *beats* teacher T when the paired bootstrap 95% CI of
     (loss per masked word of T) − (loss per masked word of U) lies entirely above 0, and the
     paired CI of U's word accuracy minus T's does not lie entirely below 0 (when it does, the
     two figures disagree: a warning, and neither beats the other).
  2. T is not recommended for the language when some U beats it and U's share of words with
     [UNK] is at most T's + 0.5 percentage points (U is better and covers the text as well).
  3. One teacher left → use it alone (`single`). Several left → `all` when none beats another
     (equally good on the same words: `best` would choose by noise, `all` gives the student both
     views); `best` when one beats another that covers the text better (keep per example the
     copy with the lower loss per masked word).
  4. Warnings, never silent: a recommended teacher with more than 5% of words with [UNK] or 1% of
     characters lost; fewer than 200 compared examples (wide intervals); masked words that
     differ between the copies of an example (then the comparison is not like for like);
     teachers of different casing (an uncased teacher predicts an easier target).

A gold-only language (`tokenizer_teacher`, never scored) keeps its configured tokenizer, with a
warning when another teacher's tokenizer covers its text clearly better
(`gold_only_recommendation`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

# Rule thresholds (module docstring).
UNK_TOLERANCE = 0.005            # "covers the text as well": UNK-word share within 0.5 points
POOR_UNK_WORDS = 0.05            # warning: more than 5% of words hold an [UNK]
POOR_UNCOVERED_CHARACTERS = 0.01  # warning: more than 1% of characters lost in [UNK] pieces
MIN_EXAMPLES = 200               # warning: fewer compared examples than this
MIN_ALIGNED = 0.99               # warning: fewer examples with identical masked words


def _sign(ci: Mapping) -> int:
    """+1 if the interval lies entirely above 0, -1 entirely below, 0 if it holds 0."""
    return 1 if ci["low"] > 0 else (-1 if ci["high"] < 0 else 0)


def _abs_ci(ci: Mapping, digits: int = 3, scale: float = 1.0) -> str:
    low, high = sorted((abs(ci["low"]) * scale, abs(ci["high"]) * scale))
    return f"{abs(ci['value']) * scale:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def recommend(teachers: Sequence[str], fit: Mapping[str, Mapping], quality: Mapping,
              lower_case: Mapping[str, bool] | None = None) -> dict:
    """Applies the module docstring's rule to one language.

    Args:
      teachers: the language's teachers, config order.
      fit: teacher → vocabulary-fit figures (`FitCounts.figures`).
      quality: `masked_lm.language_quality`'s dict.
      lower_case: teacher → uncased (for the casing warning), if known.

    Returns:
      {mode: single|all|best, teachers: [...], not_recommended: {teacher: reason},
      reasons: [...], warnings: [...]}.
    """
    warnings, reasons, dropped = [], [], {}
    figures = quality["teachers"]
    compared = quality["compared_examples"]
    if compared == 0:
        warnings.append("no example has a scored copy of every teacher: nothing to compare")
        return {"mode": "single" if len(teachers) == 1 else "all", "teachers": list(teachers),
                "not_recommended": {}, "reasons": reasons, "warnings": warnings}
    beats = {}  # (u, t) → why u beats t
    for pair in quality["pairs"]:
        a, b = pair["a"], pair["b"]
        loss, accuracy = pair["loss_per_word_difference"], pair["word_accuracy_difference"]
        loss_sign, accuracy_sign = _sign(loss), _sign(accuracy)   # a − b
        if loss_sign:
            better, worse = (b, a) if loss_sign > 0 else (a, b)
            if accuracy_sign == loss_sign:   # the teacher with the lower loss is less accurate
                warnings.append(
                    f"{better} has the lower loss per masked word (by {_abs_ci(loss)}) but "
                    f"{worse} the higher word accuracy (by {_abs_ci(accuracy, 1, 100)} points): "
                    f"the figures disagree, neither is dropped")
            else:
                beats[(better, worse)] = (
                    f"{better} has a lower loss per masked word on the same words (by "
                    f"{_abs_ci(loss)}), a word accuracy "
                    f"{'higher' if accuracy_sign else 'not lower'} (difference "
                    f"{_abs_ci(accuracy, 1, 100)} points)")
        if pair["aligned_share"] < MIN_ALIGNED:
            warnings.append(
                f"{a} and {b} masked different words in {100 * (1 - pair['aligned_share']):.1f}% "
                f"of the examples: their figures are not on the same words (is shared masking "
                f"on?)")
    for t in teachers:
        for u in teachers:
            if (u, t) in beats and (fit[u]["unk_word_rate"]
                                    <= fit[t]["unk_word_rate"] + UNK_TOLERANCE):
                dropped[t] = (f"{beats[(u, t)]}, and covers the text as well (words with [UNK] "
                              f"{100 * fit[u]['unk_word_rate']:.2f}% vs "
                              f"{100 * fit[t]['unk_word_rate']:.2f}%)")
                break
    keep = [t for t in teachers if t not in dropped]
    if len(teachers) == 1:
        mode = "single"
        reasons.append(f"{teachers[0]} is the only teacher of the language")
    elif len(keep) == 1:
        mode = "single"
        reasons.append(f"{keep[0]} is better than the other teacher(s) and covers the text as "
                       f"well")
    else:
        kept_beats = [(u, t) for (u, t) in beats if u in keep and t in keep]
        wins = ", ".join(f"{t} {100 * figures[t]['best_win_rate']['value']:.0f}%" for t in keep)
        if not kept_beats:
            mode = "all"
            reasons.append(f"no teacher is clearly better than another on the same masked words; "
                           f"`best` would choose copies nearly by chance ({wins}), `all` gives "
                           f"the student both views")
        else:
            mode = "best"
            for u, t in kept_beats:
                reasons.append(f"{u} is better on the masked words but {t} covers the text better "
                               f"(words with [UNK] {100 * fit[t]['unk_word_rate']:.2f}% vs "
                               f"{100 * fit[u]['unk_word_rate']:.2f}%): keep per example the "
                               f"copy with the lower loss per word ({wins})")
    for t in keep:
        if fit[t]["unk_word_rate"] > POOR_UNK_WORDS:
            warnings.append(f"{t}: {100 * fit[t]['unk_word_rate']:.1f}% of the words hold an "
                            f"[UNK]; its vocabulary covers this text poorly")
        if fit[t]["uncovered_character_rate"] > POOR_UNCOVERED_CHARACTERS:
            warnings.append(f"{t}: {100 * fit[t]['uncovered_character_rate']:.1f}% of the "
                            f"characters are lost in [UNK] pieces")
    if lower_case and len({bool(lower_case[t]) for t in teachers}) > 1:
        uncased = [t for t in teachers if lower_case[t]]
        warnings.append(f"{', '.join(uncased)} {'is' if len(uncased) == 1 else 'are'} uncased, "
                        f"the other(s) cased: an uncased teacher predicts lower-cased, "
                        f"accent-stripped pieces, an easier target, which favours it in loss and "
                        f"accuracy")
    if compared < MIN_EXAMPLES:
        warnings.append(f"only {compared} compared examples: the intervals are wide")
    return {"mode": mode, "teachers": keep, "not_recommended": dropped, "reasons": reasons,
            "warnings": warnings}


def gold_only_recommendation(language: str, tokenizer_teacher: str,
                             fit: Mapping[str, Mapping]) -> dict:
    """The recommendation of a gold-only language: its configured tokenizer, and whether another
    teacher's tokenizer covers its text clearly better."""
    best = min(fit, key=lambda t: (fit[t]["unk_word_rate"], fit[t]["fertility"], t))
    reasons = [f"no teacher scores {language}: trained on gold labels only, tokenized with "
               f"{tokenizer_teacher} (words with [UNK] "
               f"{100 * fit[tokenizer_teacher]['unk_word_rate']:.2f}%, "
               f"{fit[tokenizer_teacher]['fertility']:.2f} pieces a word)"]
    warnings = []
    if fit[best]["unk_word_rate"] + UNK_TOLERANCE < fit[tokenizer_teacher]["unk_word_rate"]:
        warnings.append(f"{best}'s tokenizer covers the text better (words with [UNK] "
                        f"{100 * fit[best]['unk_word_rate']:.2f}%): consider tokenizer_teacher: "
                        f"{best}")
    return {"mode": "gold_only", "teachers": [tokenizer_teacher], "not_recommended": {},
            "reasons": reasons, "warnings": warnings}
