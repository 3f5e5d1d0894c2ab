"""The trivial baselines every downstream score stands beside, and the seen/unseen-word split.

`lookup` needs no model, only the training file:

  * POS: each word gets the tag it has most often in the training data (ties: the tag more
    frequent overall, then the first in label order); a word never seen in training gets the
    most frequent tag of the training data.
  * NER: each token gets its most frequent training label, the same way; the predicted
    sequence is then made valid IOB2 (an `I-T` that does not continue an entity of type T
    becomes `B-T`, as finetuning.data does to gold files) and scored with the same entity-span
    F1 as the models.
  * classification: the majority class of the training data.

Words are matched exactly (case and accents as in the file). `scratch` (a randomly initialised
encoder of the teacher's shape and tokenizer, fine-tuned with the models' protocol) is a model,
run by finetuning.run.

`seen_unseen_accuracy` splits word-level accuracy into words seen in training and words never
seen: the diagnostic that tells memorisation (where `lookup` is strong) from generalisation.
"""

from __future__ import annotations

import collections
from typing import Sequence

from finetuning import data as data_lib

LOOKUP = "lookup"
SCRATCH = "scratch"


def _ranked(counter: collections.Counter, overall: collections.Counter,
            order: dict[str, int]) -> str:
    return min(counter, key=lambda label: (-counter[label], -overall[label], order[label]))


def repair_iob2(tags: Sequence[str]) -> list[str]:
    """An `I-T` that does not continue an entity of type T becomes `B-T` (other tags kept)."""
    out: list[str] = []
    for tag in tags:
        if tag.startswith("I-"):
            previous = out[-1] if out else "O"
            if previous == "O" or previous[2:] != tag[2:]:
                tag = "B-" + tag[2:]
        out.append(tag)
    return out


class WordLookup:
    """The word -> most frequent training label table (see the module docstring).

    Args:
      train: the training sentences.
      labels: the label list (its order breaks ties last).
    """

    def __init__(self, train: Sequence[data_lib.TaggedSentence], labels: Sequence[str]):
        order = {label: i for i, label in enumerate(labels)}
        self.overall = collections.Counter(l for s in train for l in s.labels)
        if not self.overall:
            raise ValueError("lookup: the training data has no labelled word")
        per_word: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for sentence in train:
            for word, label in zip(sentence.words, sentence.labels):
                per_word[word][label] += 1
        self.default = _ranked(self.overall, self.overall, order)
        self.table = {word: _ranked(counts, self.overall, order)
                      for word, counts in per_word.items()}

    def predict(self, sentence: data_lib.TaggedSentence) -> list[str]:
        return [self.table.get(word, self.default) for word in sentence.words]


def lookup_predictions(task_type: str, train: list, examples: list,
                       labels: Sequence[str]) -> list:
    """`lookup`'s predicted labels (strings) for `examples`, trained on `train`.

    Returns:
      Per sentence a list of labels (pos, ner: IOB2-repaired), or one label per example
      (classification).
    """
    if task_type == "classification":
        counts = collections.Counter(e.label for e in train)
        if not counts:
            raise ValueError("lookup: the training data has no example")
        order = {label: i for i, label in enumerate(labels)}
        majority = _ranked(counts, counts, order)
        return [majority] * len(examples)
    table = WordLookup(train, labels)
    predicted = [table.predict(s) for s in examples]
    return [repair_iob2(p) for p in predicted] if task_type == "ner" else predicted


def seen_unseen_accuracy(train: Sequence[data_lib.TaggedSentence],
                         examples: Sequence[data_lib.TaggedSentence],
                         predicted: Sequence[Sequence[str]]) -> dict:
    """Word-level label accuracy on words seen in `train` and on words never seen there.

    Returns:
      dict(seen=dict(accuracy, correct, words), unseen=dict(...)); accuracy is None where a
      group has no word.
    """
    vocabulary = {word for s in train for word in s.words}
    counts = {"seen": [0, 0], "unseen": [0, 0]}
    for index, (sentence, labels) in enumerate(zip(examples, predicted)):
        if len(labels) != len(sentence.words):
            raise ValueError(f"sentence {index}: {len(sentence.words)} words but "
                             f"{len(labels)} predicted labels")
        for word, gold, guess in zip(sentence.words, sentence.labels, labels):
            group = counts["seen" if word in vocabulary else "unseen"]
            group[0] += gold == guess
            group[1] += 1
    return {name: dict(accuracy=(correct / words if words else None), correct=correct,
                       words=words)
            for name, (correct, words) in counts.items()}
