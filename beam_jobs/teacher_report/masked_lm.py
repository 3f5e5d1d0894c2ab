"""Masked-LM quality on the same masked words: per copy, per example, per language.

The sample's examples are built and scored by the scoring job's own transforms
(BuildMaskedExamples, ScoreWithTeachers): for a language with several teachers every copy of an
example masks the same words. Here:

  * `copy_stats`: one scored copy's figures: masked pieces, those predicted right (top-1), the
    loss summed over them, the masked words (grouped by `masked_word_slots`), those whose every
    piece is right, the job's loss per masked word;
  * `pair_agreement`: whether two copies masked the same words, and how far their predictions
    agree (top-1 agreement, overlap@k on words that are one piece in both);
  * `example_row`: an example's row (every copy, every pair), made in Beam by `ExampleRows`;
  * `language_quality`: a language's figures from its rows, on the examples every teacher has a
    copy of: piece and word accuracy, loss and perplexity per piece and per word, the `best` win
    rates (best_wins), each with a paired bootstrap interval (bootstrap), and per pair of
    teachers the paired differences and the agreement.

    ExampleRows:  KeyByExample → GroupCopies (language, example_id) → Rows      (Beam)
"""

from __future__ import annotations

import functools
import json
from typing import Iterable, Mapping, Sequence

import apache_beam as beam
import numpy as np

from beam_jobs import metrics
from beam_jobs.build_examples import TeacherSpec
from beam_jobs.teacher_report import best_wins
from beam_jobs.teacher_report.bootstrap import bootstrap_ratios, exp_interval, interval
from teacher_scoring.examples import tokenization
from teacher_scoring.examples.tokenization import UNK

# Counter key (`<lang>/<key>`): second copies of one teacher in an example (repeated documents).
DUPLICATE_COPIES = "report_duplicate_copies"


def _uncased(text: str) -> str:
    """`text` as an uncased teacher reads it (lower-case, NFD, accents stripped: HF's rule)."""
    return tokenization.lower_strip_accents(text)


# ------------------------------------------------------------------ one copy, one example


class TeacherVocabs:
    """Per teacher: continuation mask, [UNK] id, piece strings as is and as an uncased teacher
    sees them (for comparing predictions of a cased and an uncased teacher).

    Args:
      teachers: objects with `name`, `vocab` and `lower_case` (build_examples.TeacherSpec).
    """

    def __init__(self, teachers: Iterable[TeacherSpec]):
        self.continuation = {}
        self.unk_id = {}
        self.strings = {}
        self.lower_case = {}
        self._uncased_strings = {}
        self._uncased_normalizer = None
        for t in teachers:
            vocab = list(t.vocab)
            self.continuation[t.name] = np.array([s.startswith("##") for s in vocab], bool)
            self.unk_id[t.name] = vocab.index(UNK)
            self.strings[t.name] = vocab
            self.lower_case[t.name] = t.lower_case

    def pair_strings(self, name: str, uncased: bool) -> list[str]:
        """The teacher's piece strings, lower-cased and accent-stripped when `uncased`."""
        if not uncased or self.lower_case[name]:
            return self.strings[name]
        if name not in self._uncased_strings:
            self._uncased_strings[name] = [_uncased(s) for s in self.strings[name]]
        return self._uncased_strings[name]


def masked_word_slots(example, continuation: np.ndarray) -> list[np.ndarray]:
    """The masked slots of a copy grouped into words.

    A new word starts at a slot whose gold piece is not a `##` continuation, or whose position
    does not follow the previous slot's.

    Returns:
      One int array of slot indexes per masked word, in position order.
    """
    weights = np.asarray(example.masked_lm_weights)
    real = np.flatnonzero(weights > 0)
    positions = np.asarray(example.masked_lm_positions)[real]
    gold = np.asarray(example.masked_lm_ids)[real]
    if real.size == 0:
        return []
    order = np.argsort(positions, kind="stable")
    real, positions, gold = real[order], positions[order], gold[order]
    new_word = np.ones(real.size, bool)
    new_word[1:] = ~continuation[gold[1:]] | (positions[1:] != positions[:-1] + 1)
    return np.split(real, np.flatnonzero(new_word)[1:])


def _word_text(pieces: Sequence[str]) -> str:
    return "".join(p[2:] if p.startswith("##") else p for p in pieces)


def copy_stats(example, vocabs: TeacherVocabs) -> dict:
    """Masked-LM figures of one scored copy (teacher id space, out of ScoreWithTeachers).

    Returns a dict:
      pieces: masked slots; correct: slots whose top-1 is the gold id;
      loss_sum: cross-entropy summed over the slots (= teacher_loss x pieces);
      words: the masked words as masking counted them (`num_masked_words`: with several
        teachers the shared words, the same in every copy); word_loss: the job's loss per masked
        word (`teacher_word_loss`, what `best` compares) = loss_sum / words;
      word_groups / words_correct / unk_words: the masked slots grouped into words by
        `masked_word_slots`, those whose every piece is right, those with an [UNK] gold piece;
      word_text / word_unk: per group, its pieces joined without `##`, and whether it holds an
        [UNK] (to check that two copies masked the same words).
    """
    name = example.teacher
    groups = masked_word_slots(example, vocabs.continuation[name])
    gold = np.asarray(example.masked_lm_ids)
    top1 = np.asarray(example.teacher_topk_ids)[:, 0]
    right = top1 == gold
    pieces = int(sum(len(g) for g in groups))
    strings = vocabs.strings[name]
    unk_id = vocabs.unk_id[name]
    word_unk = [bool(np.any(gold[g] == unk_id)) for g in groups]
    return {
        "pieces": pieces,
        "correct": int(sum(int(right[g].sum()) for g in groups)),
        "loss_sum": float(example.teacher_loss) * pieces,
        "words": int(example.num_masked_words),
        "word_loss": float(example.teacher_word_loss),
        "word_groups": len(groups),
        "words_correct": int(sum(bool(right[g].all()) for g in groups)),
        "unk_words": int(sum(word_unk)),
        "word_text": [_word_text([strings[i] for i in gold[g].tolist()]) for g in groups],
        "word_unk": word_unk,
    }


def pair_agreement(a, b, stats_a: dict, stats_b: dict, vocabs: TeacherVocabs,
                   top_k: int) -> dict:
    """Whether two copies of an example masked the same words, and how their predictions agree.

    The i-th masked word of one copy is matched with the i-th of the other; the copies are
    `aligned` when they have as many masked words and every pair of words reads the same (as an
    uncased teacher reads it when either teacher is uncased; words with [UNK] are not compared).
    On aligned copies, every word that is one piece, not [UNK], in both is compared: top-1 equal,
    and |top-k(a) ∩ top-k(b)| / k (piece strings; equal strings are equal student ids).

    Returns:
      {aligned: bool, words: compared words, top1: words with the same top-1, overlap: sum of
      overlap@k}.
    """
    uncased = vocabs.lower_case[a.teacher] or vocabs.lower_case[b.teacher]
    out = {"aligned": False, "words": 0, "top1": 0, "overlap": 0.0}
    if stats_a["word_groups"] != stats_b["word_groups"]:
        return out
    norm = functools.partial(_normalize_word, uncased=uncased)
    for text_a, text_b, unk_a, unk_b in zip(stats_a["word_text"], stats_b["word_text"],
                                            stats_a["word_unk"], stats_b["word_unk"]):
        if not (unk_a or unk_b) and norm(text_a) != norm(text_b):
            return out
    out["aligned"] = True
    strings_a = vocabs.pair_strings(a.teacher, uncased)
    strings_b = vocabs.pair_strings(b.teacher, uncased)
    groups_a = masked_word_slots(a, vocabs.continuation[a.teacher])
    groups_b = masked_word_slots(b, vocabs.continuation[b.teacher])
    ids_a = np.asarray(a.teacher_topk_ids)[:, :top_k]
    ids_b = np.asarray(b.teacher_topk_ids)[:, :top_k]
    k = min(top_k, ids_a.shape[1], ids_b.shape[1])
    for g_a, g_b, unk_a, unk_b in zip(groups_a, groups_b, stats_a["word_unk"],
                                      stats_b["word_unk"]):
        if len(g_a) != 1 or len(g_b) != 1 or unk_a or unk_b:
            continue
        pred_a = [strings_a[i] for i in ids_a[g_a[0], :k].tolist()]
        pred_b = [strings_b[i] for i in ids_b[g_b[0], :k].tolist()]
        out["words"] += 1
        out["top1"] += int(pred_a[0] == pred_b[0])
        out["overlap"] += len(set(pred_a) & set(pred_b)) / k
    return out


@functools.lru_cache(maxsize=65536)
def _normalize_word(text: str, uncased: bool) -> str:
    return _uncased(text) if uncased else text


def pair_key(a: str, b: str) -> str:
    return f"{a}|{b}"


def example_row(language: str, example_id: str, copies: Sequence, teachers: Sequence[str],
                vocabs: TeacherVocabs, top_k: int) -> dict:
    """The report's row of one example: every copy's figures and every pair's agreement.

    Args:
      copies: the example's scored copies (ScoredExample with teacher fields), any order; a
        second copy of one teacher (a repeated document) is ignored.
      teachers: the language's teachers, in config order (fixes the pair order).
    """
    by_teacher = {}
    duplicates = 0
    for copy in sorted(copies, key=lambda c: c.teacher):
        if copy.teacher in by_teacher:
            duplicates += 1
            continue
        by_teacher[copy.teacher] = copy
    stats = {name: copy_stats(c, vocabs) for name, c in by_teacher.items()}
    pairs = {}
    present = [t for t in teachers if t in by_teacher]
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            pairs[pair_key(a, b)] = pair_agreement(by_teacher[a], by_teacher[b], stats[a],
                                                   stats[b], vocabs, top_k)
    return {"language": language, "example_id": example_id, "copies": stats, "pairs": pairs,
            "duplicates": duplicates}


# ------------------------------------------------------------------------- one language


_QUALITY = (  # name, numerator field, denominator field
    ("piece_accuracy", "correct", "pieces"),
    ("word_accuracy", "words_correct", "word_groups"),
    ("loss_per_piece", "loss_sum", "pieces"),
    ("loss_per_word", "loss_sum", "words"),
)


def language_quality(rows: Sequence[Mapping], teachers: Sequence[str], samples: int,
                     seed: int, top_k: int) -> dict:
    """Masked-LM figures of a language's teachers from its example rows (see `example_row`).

    Teachers are compared on the examples every one of them has a copy of (with >= 1 masked
    word), so on the same text; with shared masking, on the same masked words.
    """
    rows = sorted(rows, key=lambda r: r["example_id"])  # the bootstrap must not depend on order
    complete = [r for r in rows
                if all(t in r["copies"] and r["copies"][t]["words"] > 0 for t in teachers)]
    missing = {t: sum(1 for r in rows if t not in r["copies"]) for t in teachers}
    n = len(complete)
    per_teacher = {}
    numerators, denominators, labels = [], [], []
    for t in teachers:
        for metric, num, den in _QUALITY:
            numerators.append([r["copies"][t][num] for r in complete])
            denominators.append([r["copies"][t][den] for r in complete])
            labels.append((t, metric))
    for t, wins in zip(teachers, best_wins.win_indicators(complete, teachers)):
        numerators.append(wins)
        denominators.append([1.0] * n)
        labels.append((t, best_wins.WIN_RATE))
    numerators = np.asarray(numerators, np.float64).reshape(len(labels), n)
    denominators = np.asarray(denominators, np.float64).reshape(len(labels), n)
    with np.errstate(invalid="ignore", divide="ignore"):
        points = numerators.sum(axis=1) / denominators.sum(axis=1)
    draws = bootstrap_ratios(numerators, denominators, samples, seed)
    index = {label: i for i, label in enumerate(labels)}

    def ci(t, metric):
        i = index[(t, metric)]
        return interval(points[i], draws[:, i])

    for t in teachers:
        figures = {metric: ci(t, metric) for metric, _, _ in _QUALITY}
        figures["perplexity_per_piece"] = exp_interval(figures["loss_per_piece"])
        figures["perplexity_per_word"] = exp_interval(figures["loss_per_word"])
        figures[best_wins.WIN_RATE] = ci(t, best_wins.WIN_RATE)
        figures["masked_pieces"] = int(sum(r["copies"][t]["pieces"] for r in complete))
        figures["masked_words"] = int(sum(r["copies"][t]["words"] for r in complete))
        figures["masked_words_with_unk"] = int(sum(r["copies"][t]["unk_words"] for r in complete))
        per_teacher[t] = figures

    pairs = []
    for i, a in enumerate(teachers):
        for b in teachers[i + 1:]:
            entry = {"a": a, "b": b}
            for metric in ("loss_per_word", "piece_accuracy", "word_accuracy"):
                ia, ib = index[(a, metric)], index[(b, metric)]
                entry[f"{metric}_difference"] = interval(points[ia] - points[ib],
                                                         draws[:, ia] - draws[:, ib])
            key = pair_key(a, b)
            compared = [r["pairs"][key] for r in complete if key in r["pairs"]]
            aligned = sum(1 for p in compared if p["aligned"])
            words = sum(p["words"] for p in compared)
            entry["aligned_examples"] = aligned
            entry["aligned_share"] = aligned / len(compared) if compared else 0.0
            entry["agreement"] = {
                "k": top_k, "words": words,
                "top1": sum(p["top1"] for p in compared) / words if words else float("nan"),
                "overlap_at_k": (sum(p["overlap"] for p in compared) / words if words
                                 else float("nan")),
            }
            pairs.append(entry)
    return {"examples": len(rows), "compared_examples": n, "missing_copies": missing,
            "duplicate_copies": int(sum(r.get("duplicates", 0) for r in rows)),
            "teachers": per_teacher, "pairs": pairs}


# ------------------------------------------------------------------------------ Beam


class _ExampleRowFn(beam.DoFn):
    """((language, example_id), scored copies) → the example's JSON row (`example_row`)."""

    def __init__(self, teachers: Sequence[TeacherSpec], teachers_of: Mapping[str, list[str]],
                 top_k: int):
        self._teachers = list(teachers)
        self._teachers_of = dict(teachers_of)
        self._top_k = top_k

    def setup(self):
        self._vocabs = TeacherVocabs(self._teachers)
        self._counters = metrics.Counters()

    def process(self, element):
        (language, example_id), copies = element
        row = example_row(language, example_id, list(copies), self._teachers_of[language],
                          self._vocabs, self._top_k)
        if row["duplicates"]:
            self._counters.inc(language, None, DUPLICATE_COPIES, row["duplicates"])
        yield json.dumps(row, ensure_ascii=False)


def _example_key(example):
    return (example.language, example.example_id), example


class ExampleRows(beam.PTransform):
    """PCollection[ScoredExample] (scored copies of every language) → one JSON row per example
    (`example_row`): the copies of an example are grouped by (language, example_id)."""

    def __init__(self, teachers: Sequence[TeacherSpec], teachers_of: Mapping[str, list[str]],
                 top_k: int):
        super().__init__()
        self._teachers = list(teachers)
        self._teachers_of = dict(teachers_of)
        self._top_k = top_k

    def expand(self, scored):
        return (scored
                | "KeyByExample" >> beam.Map(_example_key)
                | "GroupCopies" >> beam.GroupByKey()
                | "Rows" >> beam.ParDo(_ExampleRowFn(self._teachers, self._teachers_of,
                                                     self._top_k)))
