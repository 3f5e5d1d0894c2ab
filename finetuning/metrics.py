"""Downstream metrics: NER exact entity-span F1 (seqeval's definition), POS and classification
accuracy.

Entity F1 is seqeval's default (`seqeval.metrics.f1_score(y_true, y_pred)`, the conlleval
definition) on IOB2 tags, micro-averaged over entity types:

  * an entity is a maximal run `B-T I-T I-T ...` (type T, start word, end word); an `I-T` that
    does not continue an entity of type T (after `O`, after another type, first in the
    sentence) begins a new entity, as in seqeval's default mode and conlleval;
  * a predicted entity is correct iff the same (type, start, end) is a gold entity;
  * precision = correct / predicted, recall = correct / gold, F1 = 2PR / (P + R), each 0 when
    its denominator is 0 (seqeval's `zero_division` default).

Sentences are scored whole (a sentence split into windows for the encoder is put back
together first), so an entity never straddles two "sentences". The tests compare with the
`seqeval` package on random (also ill-formed) tag sequences.

POS is scored by accuracy over words (the paper's "F1" for POS equals accuracy: every word has
exactly one gold and one predicted tag, so micro precision = recall = accuracy); sentence
classification by accuracy over examples.
"""

from __future__ import annotations

from typing import Sequence


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one sentence's IOB2 tags: (type, first word, last word), in order.

    Raises:
      ValueError: a tag that is neither `O` nor `B-TYPE` / `I-TYPE`.
    """
    spans = []
    current: list = []  # [type, start] of the open entity
    for i, tag in enumerate(tags):
        if tag == "O":
            if current:
                spans.append((current[0], current[1], i - 1))
                current = []
            continue
        if len(tag) < 3 or tag[1] != "-" or tag[0] not in "BI":
            raise ValueError(f"tag {tag!r} at position {i} is not IOB2 (O, B-TYPE, I-TYPE)")
        prefix, entity_type = tag[0], tag[2:]
        continues = prefix == "I" and current and current[0] == entity_type
        if not continues:
            if current:
                spans.append((current[0], current[1], i - 1))
            current = [entity_type, i]
    if current:
        spans.append((current[0], current[1], len(tags) - 1))
    return spans


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def entity_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Exact entity-span precision, recall and F1 over sentences (micro over types).

    Args:
      gold: per sentence, the gold IOB2 tags.
      predicted: per sentence, the predicted tags (same lengths).

    Returns:
      dict(f1, precision, recall, gold_entities, predicted_entities, correct_entities).
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    n_gold = n_predicted = n_correct = 0
    for index, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(f"sentence {index}: {len(gold_tags)} gold tags but "
                             f"{len(predicted_tags)} predicted")
        gold_spans = set(entity_spans(gold_tags))
        predicted_spans = set(entity_spans(predicted_tags))
        n_gold += len(gold_spans)
        n_predicted += len(predicted_spans)
        n_correct += len(gold_spans & predicted_spans)
    precision = _ratio(n_correct, n_predicted)
    recall = _ratio(n_correct, n_gold)
    f1 = _ratio(2 * precision * recall, precision + recall) if precision + recall else 0.0
    return dict(f1=f1, precision=precision, recall=recall, gold_entities=n_gold,
                predicted_entities=n_predicted, correct_entities=n_correct)


def accuracy(gold: Sequence, predicted: Sequence) -> dict:
    """Accuracy of flat labels, or of per-sentence label lists (over all their words).

    Returns:
      dict(accuracy, correct, total).
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold items but {len(predicted)} predicted")
    correct = total = 0
    for index, (g, p) in enumerate(zip(gold, predicted)):
        if isinstance(g, (list, tuple)):
            if len(g) != len(p):
                raise ValueError(f"sentence {index}: {len(g)} gold labels but {len(p)} "
                                 "predicted")
            correct += sum(a == b for a, b in zip(g, p))
            total += len(g)
        else:
            correct += g == p
            total += 1
    return dict(accuracy=_ratio(correct, total), correct=correct, total=total)


# The metric each task type is scored by (the name of the key in `score`'s result).
METRIC = {"pos": "accuracy", "ner": "f1", "classification": "accuracy"}


def score(task_type: str, gold: Sequence, predicted: Sequence) -> dict:
    """The task's metrics, with `score` = its main metric (a fraction in [0, 1])."""
    if task_type == "ner":
        result = entity_f1(gold, predicted)
    elif task_type in ("pos", "classification"):
        result = accuracy(gold, predicted)
    else:
        raise ValueError(f"unknown task type {task_type!r}; known: {sorted(METRIC)}")
    result["score"] = result[METRIC[task_type]]
    result["metric"] = METRIC[task_type]
    return result
