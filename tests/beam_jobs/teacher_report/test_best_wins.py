"""`best` win rates: the job's rule (lowest loss per masked word, ties to the first name) and
the per-example indicators the win rates are bootstrapped from."""

from beam_jobs.teacher_report import best_wins


def test_best_teacher_is_the_jobs_rule():
    assert best_wins.best_teacher({"b": {"word_loss": 1.0}, "a": {"word_loss": 2.0}}) == "b"
    assert best_wins.best_teacher({"b": {"word_loss": 1.0}, "a": {"word_loss": 1.0}}) == "a"  # tie


def test_win_indicators_one_winner_per_row_in_teacher_order():
    def row(**losses):
        return {"copies": {t: {"word_loss": loss} for t, loss in losses.items()}}
    rows = [row(a=1.0, b=2.0, c=3.0), row(a=2.0, b=1.0, c=1.0), row(a=0.5, b=0.5, c=0.1)]
    # Row 2: b and c tie, b sorts first. Among a and b only, row 3 is a tie: a.
    assert best_wins.win_indicators(rows, ["c", "a", "b"]) == [
        [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert best_wins.win_indicators(rows, ["a", "b"]) == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    assert best_wins.win_indicators([], ["a", "b"]) == [[], []]
