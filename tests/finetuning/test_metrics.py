"""Entity F1 equals the seqeval package's (default mode) on random, also ill-formed, IOB2 tags."""

import random
import warnings

import pytest
from seqeval import metrics as seqeval_metrics

from finetuning import metrics

TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")


def _seqeval(gold, predicted) -> tuple[float, float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns when a denominator is 0 (then 0.0)
        return (seqeval_metrics.f1_score(gold, predicted),
                seqeval_metrics.precision_score(gold, predicted),
                seqeval_metrics.recall_score(gold, predicted))


def test_entity_spans():
    assert metrics.entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1),
                                                                       ("LOC", 3, 3)]
    # Ill-formed IOB2 as seqeval's default mode (conlleval) reads it: I- begins an entity.
    assert metrics.entity_spans(["I-PER", "I-PER", "I-LOC", "O", "I-ORG"]) == [
        ("PER", 0, 1), ("LOC", 2, 2), ("ORG", 4, 4)]
    assert metrics.entity_spans(["B-PER", "B-PER", "I-PER"]) == [("PER", 0, 0), ("PER", 1, 2)]
    assert metrics.entity_spans([]) == []
    with pytest.raises(ValueError, match="'E-PER' at position 1 is not IOB2"):
        metrics.entity_spans(["O", "E-PER"])


@pytest.mark.parametrize("well_formed", [True, False])
def test_entity_f1_equals_seqeval_on_random_sequences(well_formed):
    rng = random.Random(1234 + well_formed)

    def sentence(length):
        tags = [rng.choice(TAGS) for _ in range(length)]
        if well_formed:  # repair to valid IOB2
            for i, tag in enumerate(tags):
                if tag.startswith("I-") and (i == 0 or tags[i - 1][2:] != tag[2:]):
                    tags[i] = "B-" + tag[2:]
        return tags

    for _ in range(400):
        gold = [sentence(rng.randint(0, 12)) for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.5:  # predictions close to gold: most entities right
            predicted = [[t if rng.random() < 0.85 else rng.choice(TAGS) for t in s]
                         for s in gold]
        else:
            predicted = [sentence(len(s)) for s in gold]
        got = metrics.entity_f1(gold, predicted)
        want = _seqeval(gold, predicted)
        assert (got["f1"], got["precision"], got["recall"]) == pytest.approx(want, abs=1e-12), \
            (gold, predicted)


def test_entity_f1_counts_and_degenerate_cases():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["O"]]
    result = metrics.entity_f1(gold, predicted)
    assert (result["gold_entities"], result["predicted_entities"],
            result["correct_entities"]) == (3, 2, 1)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(1 / 3)
    assert result["f1"] == pytest.approx(0.4)
    # No entity anywhere: 0 (seqeval's zero_division default), not a division error.
    assert metrics.entity_f1([["O", "O"]], [["O", "O"]])["f1"] == 0.0 == _seqeval(
        [["O", "O"]], [["O", "O"]])[0]
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1 predicted"):
        metrics.entity_f1([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="1 gold sentences but 2 predicted"):
        metrics.entity_f1([["O"]], [["O"], ["O"]])


def test_accuracy_and_score():
    assert metrics.accuracy([["A", "B"], ["C"]], [["A", "C"], ["C"]]) == dict(
        accuracy=pytest.approx(2 / 3), correct=2, total=3)
    assert metrics.accuracy(["pos", "neg", "pos", "pos"], ["pos", "pos", "pos", "neg"])[
        "accuracy"] == 0.5
    result = metrics.score("ner", [["B-PER"]], [["B-PER"]])
    assert (result["score"], result["metric"]) == (1.0, "f1")
    result = metrics.score("pos", [["NOUN", "VERB"]], [["NOUN", "NOUN"]])
    assert (result["score"], result["metric"]) == (0.5, "accuracy")
    with pytest.raises(ValueError, match="unknown task type 'qa'"):
        metrics.score("qa", [], [])
    with pytest.raises(ValueError, match="sentence 0: 1 gold labels but 2 predicted"):
        metrics.accuracy([["A"]], [["A", "B"]])
