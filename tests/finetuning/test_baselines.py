"""`lookup` against hand-computed values on tiny files, IOB2 repair, the seen/unseen split."""

import pytest

from finetuning import baselines, data, metrics
from tests.finetuning.fixtures import write_text, write_token_label


def _sentences(path, ner=False):
    read = data.read_tagging(path, "tsv")
    return (data.check_iob2(read) if ner else read).sentences


def test_pos_lookup_by_hand(tmp_path):
    train = _sentences(write_token_label(tmp_path / "train.tsv", [
        [("the", "DET"), ("run", "VERB"), ("ends", "VERB")],
        [("a", "DET"), ("run", "NOUN"), ("run", "NOUN")],     # run: NOUN 2, VERB 1
        [("the", "DET"), ("book", "NOUN"), ("book", "VERB"), ("pen", "NOUN")],  # book: a tie
    ]))
    dev = _sentences(write_token_label(tmp_path / "dev.tsv", [
        [("the", "DET"), ("run", "NOUN"), ("book", "NOUN")],
        [("The", "DET"), ("cat", "NOUN"), ("ends", "VERB")],  # The, cat unseen -> most common
    ]))
    labels = data.tagging_labels(data.read_tagging(str(tmp_path / "train.tsv"), "tsv"),
                                 iob2=False)
    predicted = baselines.lookup_predictions("pos", train, dev, labels)
    # Overall: DET 3, NOUN 4, VERB 3 -> unseen words get NOUN, and book's tie goes to NOUN.
    assert predicted == [["DET", "NOUN", "NOUN"], ["NOUN", "NOUN", "VERB"]]
    gold = [list(s.labels) for s in dev]
    assert metrics.score("pos", gold, predicted)["score"] == pytest.approx(5 / 6)
    split = baselines.seen_unseen_accuracy(train, dev, predicted)
    assert split["seen"] == dict(accuracy=1.0, correct=4, words=4)
    assert split["unseen"] == dict(accuracy=0.5, correct=1, words=2)  # The wrong, cat right
    with pytest.raises(ValueError, match="sentence 1: 3 words but 2 predicted"):
        baselines.seen_unseen_accuracy(train, dev, [["DET"] * 3, ["DET"] * 2])


def test_ner_lookup_is_repaired_to_iob2_and_scored_by_spans(tmp_path):
    train = _sentences(write_token_label(tmp_path / "train.tsv", [
        [("Ali", "B-PER"), ("Veli", "I-PER"), ("geldi", "O"), ("bugün", "O")],
        [("Can", "B-PER"), ("Veli", "I-PER"), ("Ankara", "B-LOC"), ("bugün", "O")],
        [("Veli", "I-PER"), ("ve", "O"), ("Ankara", "B-LOC")],  # read as B-PER (IOB2 repair)
    ]), ner=True)
    dev = _sentences(write_token_label(tmp_path / "dev.tsv", [
        [("Veli", "B-PER"), ("Ankara", "B-LOC"), ("gitti", "O")],
        [("Ali", "B-PER"), ("Veli", "I-PER")],
    ]), ner=True)
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    predicted = baselines.lookup_predictions("ner", train, dev, labels)
    # Veli -> I-PER (2 of 3), repaired to B-PER at a sentence start; gitti unseen -> O.
    assert [s.labels[0] for s in train] == ["B-PER", "B-PER", "B-PER"]
    assert predicted == [["B-PER", "B-LOC", "O"], ["B-PER", "I-PER"]]
    gold = [list(s.labels) for s in dev]
    assert metrics.score("ner", gold, predicted)["score"] == 1.0
    assert baselines.repair_iob2(["I-LOC", "I-PER", "O", "I-PER", "I-PER"]) == [
        "B-LOC", "B-PER", "O", "B-PER", "I-PER"]


def test_classification_lookup_is_the_majority_class(tmp_path):
    train = data.read_classification(write_text(tmp_path / "train.tsv",
                                                "pos\tgood\nneg\tbad\npos\tfine\n")).examples
    dev = data.read_classification(write_text(tmp_path / "dev.tsv",
                                              "neg\tawful\npos\tnice\n")).examples
    assert baselines.lookup_predictions("classification", train, dev, ["neg", "pos"]) == [
        "pos", "pos"]
    tie = data.read_classification(write_text(tmp_path / "tie.tsv",
                                              "b\tx\na\ty\n")).examples
    assert baselines.lookup_predictions("classification", tie, dev, ["a", "b"]) == ["a", "a"]
    with pytest.raises(ValueError, match="no example"):
        baselines.lookup_predictions("classification", [], dev, ["a"])
