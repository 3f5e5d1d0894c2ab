"""`best` win rates: how often each teacher's copy of an example is the one `best` would keep.

The scoring job's `copies_mode: best` keeps, per example, the copy with the lowest loss per
masked word (`beam_jobs.best_copy.best_of`; ties to the teacher name sorting first). On the
examples every teacher of a language has a copy of, a teacher's win rate is the share of those
examples whose kept copy is its own: the shares of a language sum to 1. They are bootstrapped on
the same resamples as the masked-LM figures (`masked_lm.language_quality`), so every rate has an
interval. Rates near 1/n mean `best` would choose copies nearly by chance (the recommendation's
`all`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

WIN_RATE = "best_win_rate"


def best_teacher(copies: Mapping[str, Mapping]) -> str:
    """The teacher whose copy `best` keeps: the scoring job's rule (beam_jobs.best_copy.best_of:
    lowest loss per masked word, `word_loss`; ties to the teacher name sorting first)."""
    return min(copies, key=lambda name: (copies[name]["word_loss"], name))


def win_indicators(rows: Sequence[Mapping], teachers: Sequence[str]) -> list[list[float]]:
    """Per teacher (in `teachers` order), per row: 1.0 where that teacher's copy wins `best`
    among `teachers`, else 0.0 (the numerators of its win rate; the denominators are 1).

    Args:
      rows: example rows (`masked_lm.example_row`) holding a copy of every teacher.
      teachers: the language's teachers.
    """
    winners = [best_teacher({t: r["copies"][t] for t in teachers}) for r in rows]
    return [[1.0 if w == t else 0.0 for w in winners] for t in teachers]
