r"""A teacher report per language: which teachers to merge, and with `all` or `best`.

Before paying for a scoring job and a student run, this measures each candidate teacher on a
sample of each language's transfer corpus and writes OUT/report.md, OUT/report.json and
OUT/report.png:

  * vocabulary fit (per language and teacher, with the teacher's own TeacherTokenizer): share of
    whitespace words with an [UNK] piece, share of pieces that are [UNK], pieces per word
    (fertility), share of words kept whole (one piece, not [UNK]), share of characters lost in
    [UNK] pieces, and the characters the vocabulary lacks;
  * masked-LM quality on the SAME masked words for every teacher of the language: masked-piece
    accuracy, whole-word accuracy, loss per masked word and per masked piece, perplexity, each
    with a bootstrap 95% confidence interval over examples (paired: the same resamples for every
    teacher, so differences between teachers get their own interval);
  * for a language with several teachers: how often each would win `best` (lowest loss per
    masked word), and how much their top-k predictions agree (top-1 agreement and overlap@k on
    masked words that are one piece for both);
  * the union's cost: the student vocabulary size with all teachers and without each one, i.e.
    the tokens only that teacher brings (vocab.union.StudentVocab);
  * a recommendation per language (which teachers, `all` or `best`) by the rule below.

It runs the scoring job's own Beam building blocks — ReadCorpus → (sample) →
BuildMaskedExamples → ScoreWithTeachers — so the examples are segmented and masked exactly as
the job does (same seed, same shared masked words) and scored with `scoring.make_score_fn` through
TeacherModelHandler; no second tokenizer or masking. DirectRunner (in-memory) is the default;
the same pipeline runs on Dataflow for large samples (pass Beam options after the flags).

    # Point it at the scoring config you are going to run (strongly preferred):
    python -m beam_jobs.teacher_report --config configs/scoring/demo.yaml \
        --sample_paragraphs 3000 --output_dir workspace/teacher_report

    # Or name teachers and corpora directly:
    python -m beam_jobs.teacher_report \
        --teacher bert_en=teachers/bert_en:en --teacher mbert=teachers/mbert:en,de \
        --corpus en=corpora/en/train.txt --corpus de=corpora/de/train.txt \
        --output_dir /tmp/teacher_report

The sample: the `sample_paragraphs` non-blank corpus lines with the smallest
SHA-256(seed, line) — a uniform sample without replacement that does not depend on file order,
sharding or runner (Beam's Top.Smallest).

Recommendation rule (a heuristic, stated so it can be argued with; docs/teacher_report.md):

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
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import heapq
import io
import json
import logging
import math
import os
import re
import sys
import time
import uuid
from typing import Any, Iterable, Mapping, Sequence

from absl import app, flags
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState
import numpy as np
import tensorflow as tf

from beam_jobs import job_config, metrics, output
from beam_jobs.build_examples import BuildMaskedExamples, TeacherSpec
from beam_jobs.read_corpus import CorpusError, ReadCorpus, check_corpus
from beam_jobs.score import SCORED, ScoreWithTeachers
from beam_jobs.teacher_model_handler import TeacherModelHandler
from teacher_scoring import cli_logging
from teacher_scoring.examples import tokenization
from teacher_scoring.teachers.loaders import load_teacher
from teacher_scoring.examples.tokenization import UNK, TeacherTokenizer, TokenizedText, clean_text
from vocab.union import StudentVocab


def _uncased(text: str) -> str:
    """`text` as an uncased teacher reads it (lower-case, NFD, accents stripped: HF's rule)."""
    return tokenization.lower_strip_accents(text)

FORMAT_VERSION = 1
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"
TMP_PREFIX = ".tmp-report-"

# Rule thresholds (module docstring).
UNK_TOLERANCE = 0.005            # "covers the text as well": UNK-word share within 0.5 points
POOR_UNK_WORDS = 0.05            # warning: more than 5% of words hold an [UNK]
POOR_UNCOVERED_CHARACTERS = 0.01  # warning: more than 1% of characters lost in [UNK] pieces
MIN_EXAMPLES = 200               # warning: fewer compared examples than this
MIN_ALIGNED = 0.99               # warning: fewer examples with identical masked words
CONFIDENCE = 0.95

# Counter keys of this module (Beam namespace beam_jobs.metrics.NAMESPACE).
BLANK_LINES = "report_blank_lines"
SAMPLED = "report_sampled"
DUPLICATE_COPIES = "report_duplicate_copies"


class TeacherReportError(ValueError):
    """The report cannot be made (bad flag, config field, teacher or corpus); names the field."""


# ------------------------------------------------------------------------------ the sample


def sample_key(seed: int, document: bytes) -> str:
    """The sort key of a corpus line: hex SHA-256 of (seed, line)."""
    return hashlib.sha256(f"{int(seed)}\x1f".encode("utf-8") + bytes(document)).hexdigest()


def is_blank(document: bytes) -> bool:
    return not bytes(document).strip()


def sample_documents(documents: Iterable[bytes], size: int, seed: int) -> list[bytes]:
    """In-process twin of `SampleDocuments`: the `size` non-blank lines with the smallest keys,
    in key order."""
    keyed = ((sample_key(seed, d), bytes(d)) for d in documents if not is_blank(d))
    return [d for _, d in heapq.nsmallest(size, keyed)]


# --------------------------------------------------------------------------- vocabulary fit

_WORD_RE = re.compile(rb"[^ ]+")


@dataclasses.dataclass
class FitCounts:
    """Vocabulary-fit sums of one (language, teacher) over documents.

    words: whitespace-separated words of the cleaned text (clean_text makes every whitespace a
    plain space, so these are BERT's first split); a piece belongs to the word its start byte
    lies in. characters: non-space characters of the cleaned text. uncovered_characters: those
    inside an [UNK] piece (text the teacher cannot see). missing_characters: characters of [UNK]
    words that the vocabulary has neither as `c` nor as `##c` (after the teacher's casing).
    """

    documents: int = 0
    words: int = 0
    pieces: int = 0
    unk_pieces: int = 0
    unk_words: int = 0
    whole_words: int = 0
    characters: int = 0
    uncovered_characters: int = 0
    missing_characters: collections.Counter = dataclasses.field(
        default_factory=collections.Counter)

    def merge(self, other: "FitCounts") -> "FitCounts":
        for field in dataclasses.fields(self):
            if field.name == "missing_characters":
                self.missing_characters.update(other.missing_characters)
            else:
                setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))
        return self

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["missing_characters"] = dict(self.missing_characters)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "FitCounts":
        data = dict(data)
        data["missing_characters"] = collections.Counter(data.get("missing_characters", {}))
        return cls(**data)

    def figures(self, top: int = 10) -> dict:
        """The rates the report shows (NaN-free: 0 when a denominator is 0)."""
        def share(a, b):
            return a / b if b else 0.0
        return {
            "documents": self.documents, "words": self.words, "pieces": self.pieces,
            "characters": self.characters,
            "unk_word_rate": share(self.unk_words, self.words),
            "unk_piece_rate": share(self.unk_pieces, self.pieces),
            "fertility": share(self.pieces, self.words),
            "whole_word_rate": share(self.whole_words, self.words),
            "uncovered_character_rate": share(self.uncovered_characters, self.characters),
            "top_missing_characters": [[c, n] for c, n in sorted(
                self.missing_characters.items(), key=lambda item: (-item[1], item[0]))[:top]],
        }


class _MissingCharacters:
    """Whether the vocabulary has a character as a piece (`c` or `##c`), cached per character."""

    def __init__(self, tokenizer: TeacherTokenizer):
        self._tokenizer = tokenizer
        self._cache: dict[str, bool] = {}

    def missing(self, char: str) -> bool:
        known = self._cache.get(char)
        if known is None:
            normalized = self._tokenizer.normalize([char])[0]
            vocab = self._tokenizer.token_to_id
            known = all(c in vocab or "##" + c in vocab for c in normalized)
            self._cache[char] = known
        return not known


def fit_counts(cleaned: Sequence[str], tokenized: Sequence[TokenizedText],
               tokenizer: TeacherTokenizer, missing: _MissingCharacters | None = None
               ) -> FitCounts:
    """Vocabulary fit of cleaned documents given one teacher's tokenization of them.

    Args:
      cleaned: `clean_text` outputs.
      tokenized: `tokenizer.tokenize_with_offsets(cleaned)`.
      tokenizer: that teacher's tokenizer.
      missing: a cache of the vocabulary's missing characters (made if not given).
    """
    missing = missing or _MissingCharacters(tokenizer)
    counts = FitCounts()
    for text, tok in zip(cleaned, tokenized):
        counts.documents += 1
        data = text.encode("utf-8")
        spans = [(m.start(), m.end()) for m in _WORD_RE.finditer(data)]
        if not spans:
            continue
        num_words = len(spans)
        counts.words += num_words
        counts.characters += len(text) - text.count(" ")
        ids = np.asarray(tok.ids)
        if ids.size == 0:
            continue
        starts = np.asarray(tok.starts)
        word_of_piece = np.searchsorted([s for s, _ in spans], starts, side="right") - 1
        word_of_piece = np.clip(word_of_piece, 0, num_words - 1)
        unk = ids == tokenizer.unk_id
        pieces_per_word = np.bincount(word_of_piece, minlength=num_words)
        unk_per_word = np.bincount(word_of_piece, weights=unk, minlength=num_words)
        counts.pieces += int(ids.size)
        counts.unk_pieces += int(unk.sum())
        counts.unk_words += int(np.count_nonzero(unk_per_word))
        counts.whole_words += int(np.count_nonzero((pieces_per_word == 1) & (unk_per_word == 0)))
        if unk.any():
            # Characters = UTF-8 lead bytes; spans of [UNK] pieces in the cleaned text.
            lead = (np.frombuffer(data, np.uint8) & 0xC0) != 0x80
            cumulative = np.concatenate([[0], np.cumsum(lead)])
            ends = np.asarray(tok.ends)
            for s, e in zip(starts[unk].tolist(), ends[unk].tolist()):
                counts.uncovered_characters += int(cumulative[e] - cumulative[s])
                for char in data[s:e].decode("utf-8", errors="ignore"):
                    if char != " " and missing.missing(char):
                        counts.missing_characters[char] += 1
    return counts


# ------------------------------------------------------------------ masked-LM: one example


class _Vocabs:
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


def copy_stats(example, vocabs: _Vocabs) -> dict:
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


def pair_agreement(a, b, stats_a: dict, stats_b: dict, vocabs: _Vocabs, top_k: int) -> dict:
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
                vocabs: _Vocabs, top_k: int) -> dict:
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


def best_teacher(copies: Mapping[str, Mapping]) -> str:
    """The teacher whose copy `best` keeps: the scoring job's rule (beam_jobs.best_copy.best_of:
    lowest loss per masked word, `word_loss`; ties to the teacher name sorting first)."""
    return min(copies, key=lambda name: (copies[name]["word_loss"], name))


# --------------------------------------------------------------------------- statistics


def stable_seed(*parts: Any) -> int:
    """A 64-bit seed from strings/ints (Python's hash() is salted per process)."""
    key = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


def bootstrap_ratios(numerators: np.ndarray, denominators: np.ndarray, samples: int,
                     seed: int, chunk: int = 100) -> np.ndarray:
    """Bootstrap draws of ratio statistics sum(num) / sum(den) over resampled examples.

    Every statistic is computed on the same resamples, so differences of two statistics (paired
    comparisons) can be read from the draws.

    Args:
      numerators, denominators: [m, n] per-example sums of m statistics over n examples.
      samples: B, the number of resamples (each n examples drawn with replacement).
      seed: the generator's seed; the draws are a function of (inputs, samples, seed).

    Returns:
      [B, m] float64 draws (NaN where a resample's denominator is 0).
    """
    numerators = np.atleast_2d(np.asarray(numerators, np.float64))
    denominators = np.atleast_2d(np.asarray(denominators, np.float64))
    n = numerators.shape[1]
    if n == 0:
        return np.full((samples, numerators.shape[0]), np.nan)
    rng = np.random.default_rng(seed)
    uniform = np.full(n, 1.0 / n)
    draws = []
    for start in range(0, samples, chunk):
        counts = rng.multinomial(n, uniform, size=min(chunk, samples - start)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            draws.append((counts @ numerators.T) / (counts @ denominators.T))
    return np.concatenate(draws, axis=0)


def interval(point: float, draws: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """{value, low, high}: the point estimate and the percentile bootstrap interval."""
    draws = np.asarray(draws, np.float64)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0 or not np.isfinite(point):
        return {"value": float(point), "low": float("nan"), "high": float("nan")}
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return {"value": float(point), "low": float(low), "high": float(high)}


def _exp_interval(ci: dict) -> dict:
    return {k: float(math.exp(v)) if np.isfinite(v) else float("nan") for k, v in ci.items()}


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
    winners = [best_teacher({t: r["copies"][t] for t in teachers}) for r in complete]
    for t in teachers:
        numerators.append([1.0 if w == t else 0.0 for w in winners])
        denominators.append([1.0] * n)
        labels.append((t, "best_win_rate"))
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
        figures["perplexity_per_piece"] = _exp_interval(figures["loss_per_piece"])
        figures["perplexity_per_word"] = _exp_interval(figures["loss_per_word"])
        figures["best_win_rate"] = ci(t, "best_win_rate")
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


# ----------------------------------------------------------------------------- union cost


def union_cost(vocabs: Mapping[str, Sequence[str]]) -> dict:
    """The student vocabulary with all teachers and without each one (vocab.union.StudentVocab).

    Args:
      vocabs: teacher name → tokens, in the union's order (the config's teacher order).

    Returns:
      {student_size, teachers: {name: {vocab_size, without, adds}}, pairwise, shared_by_all}:
      `without` is the student size built without that teacher (None with a single teacher) and
      `adds` = student_size − without, the tokens only that teacher brings.
    """
    full = StudentVocab.build(dict(vocabs))
    report = full.report
    teachers = {}
    for name, tokens in vocabs.items():
        others = {n: v for n, v in vocabs.items() if n != name}
        without = StudentVocab.build(others).size if others else None
        teachers[name] = {"vocab_size": len(tokens), "without": without,
                          "adds": full.size - without if without is not None else full.size}
    return {"student_size": full.size, "teachers": teachers, "pairwise": report["pairwise"],
            "shared_by_all": report["shared_by_all"]}


# ------------------------------------------------------------------------ recommendation


def _fmt_ci(ci: Mapping, digits: int = 2, percent: bool = False) -> str:
    scale, unit = (100.0, "%") if percent else (1.0, "")
    if not np.isfinite(ci.get("low", float("nan"))):
        return f"{ci['value'] * scale:.{digits}f}{unit}"
    return (f"{ci['value'] * scale:.{digits}f}{unit} "
            f"[{ci['low'] * scale:.{digits}f}, {ci['high'] * scale:.{digits}f}]")


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
      quality: `language_quality`'s dict.
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


# ------------------------------------------------------------------------------ rendering


def summary_lines(report: Mapping) -> list[str]:
    """A few lines for a console: per language the recommendation and its key figures, then the
    union's cost."""
    lines = [f"teacher report ({report['settings']['sample_paragraphs']} paragraphs a language, "
             f"95% CIs; details in {report.get('output_dir') or 'report.md'}):"]
    for language, entry in report["languages"].items():
        rec = entry["recommendation"]
        fit = entry["vocabulary_fit"]
        if entry["gold_only"]:
            lines.append(f"  {language}: gold-only, tokenized with {rec['teachers'][0]} -- "
                         + "; ".join(f"{t}: [UNK] words {100 * fit[t]['unk_word_rate']:.2f}%"
                                     for t in entry["teachers"]))
            lines += [f"    warning: {w}" for w in rec["warnings"]]
            continue
        quality = entry["masked_lm"]["teachers"]
        figures = "; ".join(
            f"{t}: loss/word {_fmt_ci(quality[t]['loss_per_word'])}, acc "
            f"{100 * quality[t]['piece_accuracy']['value']:.1f}%, [UNK] words "
            f"{100 * fit[t]['unk_word_rate']:.2f}%"
            + (f", wins best {100 * quality[t]['best_win_rate']['value']:.0f}%"
               if len(entry["teachers"]) > 1 else "")
            for t in entry["teachers"])
        mode = rec["mode"] if rec["mode"] != "single" else "single teacher"
        lines.append(f"  {language}: {', '.join(rec['teachers'])} ({mode}) -- {figures}")
        for t, why in rec["not_recommended"].items():
            lines.append(f"    not {t}: {why}")
        for warning in rec["warnings"]:
            lines.append(f"    warning: {warning}")
    union = report["union"]
    costs = ", ".join(f"{t} adds {c['adds']}" for t, c in union["teachers"].items())
    lines.append(f"  union: {union['student_size']} student tokens; {costs}")
    return lines


def report_markdown(report: Mapping) -> str:
    """report.md."""
    settings = report["settings"]
    out = [
        "# Teacher report",
        "",
        f"Config: `{settings['config']}`; sample: {settings['sample_paragraphs']} paragraphs a "
        f"language (seed {settings['seed']}); masking as the scoring job: S = "
        f"{settings['seq_length']}, P = {settings['max_predictions_per_seq']}, "
        f"masked_lm_prob {settings['masked_lm_prob']}, whole-word "
        f"{str(settings['whole_word_masking']).lower()}; top-k agreement at k = {settings['top_k']}"
        f"; {settings['bootstrap_samples']} bootstrap resamples, 95% intervals in brackets.",
        f"Made in {report['seconds']:.0f} s.",
        "",
        "## Recommendations",
        "",
        "| language | use | mode | why |",
        "|---|---|---|---|",
    ]
    for language, entry in report["languages"].items():
        rec = entry["recommendation"]
        why = "; ".join(rec["reasons"] + [f"not {t}: {w}" for t, w in
                                          rec["not_recommended"].items()])
        out.append(f"| {language} | {', '.join(rec['teachers'])} | {rec['mode']} | {why} |")
    warnings = [(lang, w) for lang, e in report["languages"].items()
                for w in e["recommendation"]["warnings"]]
    if warnings:
        out += ["", "Warnings:", ""] + [f"- {lang}: {w}" for lang, w in warnings]
    out += ["", "## Vocabulary fit (on the sample, each teacher's own tokenizer)", "",
            "| language | teacher | casing | words | words with [UNK] | [UNK] pieces | pieces/word "
            "| words whole | characters lost | missing characters |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for language, entry in report["languages"].items():
        for t in entry["teachers"]:
            f = entry["vocabulary_fit"][t]
            chars = " ".join(f"`{c}`×{n}" for c, n in f["top_missing_characters"][:5]) or "-"
            casing = "uncased" if entry["uncased"][t] else "cased"
            out.append(f"| {language} | {t} | {casing} | {f['words']} | "
                       f"{100 * f['unk_word_rate']:.2f}% | "
                       f"{100 * f['unk_piece_rate']:.2f}% | {f['fertility']:.3f} | "
                       f"{100 * f['whole_word_rate']:.1f}% | "
                       f"{100 * f['uncovered_character_rate']:.2f}% | {chars} |")
    out += ["", "## Masked-LM quality on the same masked words", "",
            "| language | teacher | examples | masked words | masked pieces | piece accuracy | "
            "word accuracy | loss / word | loss / piece | perplexity / piece | wins `best` |",
            "|---|---|---:|---:|---:|---|---|---|---|---|---|"]
    for language, entry in report["languages"].items():
        mlm = entry["masked_lm"]
        if mlm is None:
            continue
        for t in entry["teachers"]:
            q = mlm["teachers"][t]
            win = (_fmt_ci(q["best_win_rate"], 1, True) if len(entry["teachers"]) > 1 else "-")
            out.append(
                f"| {language} | {t} | {mlm['compared_examples']} | {q['masked_words']} | "
                f"{q['masked_pieces']} | {_fmt_ci(q['piece_accuracy'], 1, True)} | "
                f"{_fmt_ci(q['word_accuracy'], 1, True)} | {_fmt_ci(q['loss_per_word'])} | "
                f"{_fmt_ci(q['loss_per_piece'])} | {_fmt_ci(q['perplexity_per_piece'], 1)} | "
                f"{win} |")
    pairs = [(language, p) for language, e in report["languages"].items()
             if e["masked_lm"] is not None for p in e["masked_lm"]["pairs"]]
    if pairs:
        out += ["", "## Teachers of one language compared (paired, same examples)", "",
                "| language | a | b | loss/word a − b | word acc. a − b | piece acc. a − b | "
                "same masked words | words compared | top-1 agree | overlap@k |",
                "|---|---|---|---|---|---|---:|---:|---:|---:|"]
        for language, p in pairs:
            agreement = p["agreement"]
            out.append(
                f"| {language} | {p['a']} | {p['b']} | {_fmt_ci(p['loss_per_word_difference'], 3)}"
                f" | {_fmt_ci(p['word_accuracy_difference'], 1, True)}"
                f" | {_fmt_ci(p['piece_accuracy_difference'], 1, True)} | "
                f"{100 * p['aligned_share']:.1f}% | {agreement['words']} | "
                f"{100 * agreement['top1']:.1f}% | {100 * agreement['overlap_at_k']:.1f}% |")
    union = report["union"]
    out += ["", "## What the union costs", "",
            f"Student vocabulary with every teacher of the config: **{union['student_size']}** "
            f"tokens.", "",
            "| teacher | its vocabulary | student size without it | tokens only it brings |",
            "|---|---:|---:|---:|"]
    for t, c in union["teachers"].items():
        without = c["without"] if c["without"] is not None else "-"
        out.append(f"| {t} | {c['vocab_size']} | {without} | {c['adds']} |")
    out += ["", "## The rule", "",
            "A heuristic, not a guarantee (docs/teacher_report.md). Teacher U beats T when U's "
            "loss per masked word is lower on the same words (the paired 95% interval of the "
            "difference excludes 0) and U's word accuracy is not significantly lower. T is not "
            "recommended when some U beats it and covers the text as well (share of words with "
            f"[UNK] at most {100 * UNK_TOLERANCE:.1f} points higher). Of the teachers left, "
            "`all` when none beats another, `best` when the better one covers the text worse. "
            "Loss per masked word sums the cross-entropy over a word's pieces, so a teacher that "
            "splits words finer is not favoured; an uncased teacher predicts an easier target "
            "(flagged).", ""]
    return "\n".join(out)


def plot_report(report: Mapping, path: str) -> None:
    """report.png: loss per masked word and piece accuracy with 95% CIs, and words with [UNK],
    for every (language, teacher)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    labels, losses, accuracies, fertility, unk, colors = [], [], [], [], [], []
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (language, entry) in enumerate(report["languages"].items()):
        if entry["masked_lm"] is None:
            continue
        for t in entry["teachers"]:
            labels.append(f"{language}\n{t}")
            losses.append(entry["masked_lm"]["teachers"][t]["loss_per_word"])
            accuracies.append(entry["masked_lm"]["teachers"][t]["piece_accuracy"])
            fertility.append(entry["vocabulary_fit"][t]["fertility"])
            unk.append(100 * entry["vocabulary_fit"][t]["unk_word_rate"])
            colors.append(palette[index % len(palette)])
    x = np.arange(len(labels))
    if not labels:  # only gold-only languages: nothing was scored
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no scored language", ha="center", va="center")
        _save_figure(fig, path)
        return
    fig, axes = plt.subplots(1, 3, figsize=(max(10, 1.1 * len(labels) * 3), 4))

    def bars(ax, cis, scale, title):
        values = np.array([c["value"] for c in cis]) * scale
        low = np.array([c["low"] for c in cis]) * scale
        high = np.array([c["high"] for c in cis]) * scale
        err = np.clip(np.nan_to_num(np.stack([values - low, high - values])), 0, None)
        ax.bar(x, values, yerr=err, capsize=3, color=colors)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x, labels, fontsize=7)

    bars(axes[0], losses, 1.0, "loss per masked word (95% CI)")
    bars(axes[1], accuracies, 100.0, "masked-piece accuracy % (95% CI)")
    axes[2].bar(x, fertility, color=colors)
    for i, share in enumerate(unk):
        axes[2].annotate(f"[UNK] {share:.1f}%", (x[i], fertility[i]), ha="center",
                         va="bottom", fontsize=7)
    axes[2].set_title("pieces per word; share of words with [UNK]", fontsize=10)
    axes[2].set_xticks(x, labels, fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def _save_figure(fig, path: str) -> None:
    """Saves a matplotlib figure as PNG to a local or gfile path, and closes it."""
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_report(report: Mapping, output_dir: str) -> dict[str, str]:
    """Writes report.json, report.md and report.png into output_dir; returns their paths."""
    tf.io.gfile.makedirs(output_dir)
    paths = {name: os.path.join(output_dir, name) for name in (REPORT_JSON, REPORT_MD, REPORT_PNG)}
    with tf.io.gfile.GFile(paths[REPORT_JSON], "w") as f:
        f.write(json.dumps(report, indent=1, ensure_ascii=False, default=_json_default) + "\n")
    with tf.io.gfile.GFile(paths[REPORT_MD], "w") as f:
        f.write(report_markdown(report))
    plot_report(report, paths[REPORT_PNG])
    return paths


def read_report(output_dir: str) -> dict:
    """Reads a report.json written by `write_report`."""
    with tf.io.gfile.GFile(os.path.join(output_dir, REPORT_JSON), "r") as f:
        return json.loads(f.read())


# --------------------------------------------------------------------- the Beam pipeline


class _CountBlankFn(beam.DoFn):
    """Drops blank lines (counted as `<lang>/report_blank_lines`)."""

    def __init__(self, language: str):
        self._language = language

    def setup(self):
        self._counters = metrics.Counters()

    def process(self, line: bytes):
        if is_blank(line):
            self._counters.inc(self._language, None, BLANK_LINES)
            return
        yield line


def _keyed(line: bytes, seed: int):
    return sample_key(seed, line), line


def _first(pair):
    return pair[0]


def _unkeyed(pairs, counters_language: str):
    metrics.Counters().inc(counters_language, None, SAMPLED, len(pairs))
    return [line for _, line in pairs]


class SampleDocuments(beam.PTransform):
    """PCollection[bytes] (one language's corpus lines) → its sample: the `size` non-blank lines
    with the smallest `sample_key(seed, line)` (see `sample_documents`)."""

    def __init__(self, language: str, size: int, seed: int):
        super().__init__()
        self._language = language
        self._size = size
        self._seed = seed

    def expand(self, lines):
        return (lines
                | "DropBlank" >> beam.ParDo(_CountBlankFn(self._language))
                | "Key" >> beam.Map(_keyed, self._seed)
                | "Smallest" >> beam.combiners.Top.Smallest(self._size, key=_first)
                | "Unkey" >> beam.FlatMap(_unkeyed, self._language))


class _FitFn(beam.DoFn):
    """A batch of documents → (teacher, FitCounts dict) for every teacher of the language."""

    def __init__(self, teachers: Sequence[TeacherSpec]):
        self._teachers = list(teachers)

    def setup(self):
        self._tokenizers = {t.name: TeacherTokenizer(list(t.vocab), t.lower_case)
                            for t in self._teachers}
        self._missing = {name: _MissingCharacters(tok) for name, tok in self._tokenizers.items()}

    def process(self, documents):
        cleaned = [clean_text(d) for d in documents]
        for name, tokenizer in self._tokenizers.items():
            counts = fit_counts(cleaned, tokenizer.tokenize_with_offsets(cleaned), tokenizer,
                                self._missing[name])
            yield name, counts.to_dict()


def _merge_fit(dicts: Iterable[dict]) -> dict:
    total = FitCounts()
    for data in dicts:
        total.merge(FitCounts.from_dict(data))
    return total.to_dict()


def _fit_line(item, language: str) -> str:
    teacher, counts = item
    return json.dumps({"language": language, "teacher": teacher, "counts": counts},
                      ensure_ascii=False)


class VocabularyFit(beam.PTransform):
    """PCollection[bytes] (sampled documents) → one JSON line per teacher with its FitCounts."""

    def __init__(self, language: str, teachers: Sequence[TeacherSpec], batch_size: int = 64):
        super().__init__()
        self._language = language
        self._teachers = list(teachers)
        self._batch_size = batch_size

    def expand(self, documents):
        return (documents
                | "Batch" >> beam.BatchElements(min_batch_size=self._batch_size,
                                                max_batch_size=self._batch_size)
                | "Count" >> beam.ParDo(_FitFn(self._teachers))
                | "Sum" >> beam.CombinePerKey(_merge_fit)
                | "ToJson" >> beam.Map(_fit_line, self._language))


class _ExampleRowFn(beam.DoFn):
    """((language, example_id), scored copies) → the example's JSON row (`example_row`)."""

    def __init__(self, teachers: Sequence[TeacherSpec], teachers_of: Mapping[str, list[str]],
                 top_k: int):
        self._teachers = list(teachers)
        self._teachers_of = dict(teachers_of)
        self._top_k = top_k

    def setup(self):
        self._vocabs = _Vocabs(self._teachers)
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


def build_report_pipeline(pipeline: beam.Pipeline, config, languages: Sequence[str],
                          teachers: Mapping[str, TeacherSpec], sample_paragraphs: int, seed: int,
                          tmp_dir: str) -> None:
    """Adds the report's steps to `pipeline`, writing JSON lines under `tmp_dir`.

        ReadCorpus[lang] → SampleDocuments[lang] ─→ VocabularyFit[lang] ───────→ fit/*.jsonl
                                                 └→ BuildMaskedExamples[lang] ─┐
        Flatten → ScoreWithTeachers → GroupByKey(language, example_id) → rows/*.jsonl

    A gold-only language (`tokenizer_teacher`, never scored) gets the vocabulary fit of every
    teacher of the config (which tokenizer suits it), no masked-LM branch.

    Args:
      config: the JobConfig (its corpora, document format, masking settings and teachers).
      languages: the languages to report, a subset of config.languages.
      teachers: teacher name → TeacherSpec (vocab and casing) of every teacher in `config`.
    """

    examples, fits = [], []
    scoring_teachers = []
    for language in languages:
        entry = config.languages[language]
        documents = (pipeline
                     | f"ReadCorpus[{language}]" >> ReadCorpus(language, entry.corpus,
                                                               config.document_format)
                     | f"Sample[{language}]" >> SampleDocuments(language, sample_paragraphs,
                                                                seed))
        if config.is_gold_only(language):
            specs = list(teachers.values())
        else:
            specs = [teachers[t] for t in config.teachers_of(language)]
            scoring_teachers += [t for t in config.teachers_of(language)
                                 if t not in scoring_teachers]
            built = documents | f"BuildMaskedExamples[{language}]" >> BuildMaskedExamples(
                language, specs, config)
            examples.append(built[BuildMaskedExamples.EXAMPLES])
        fits.append(documents | f"VocabularyFit[{language}]" >> VocabularyFit(
            language, specs, config.document_batch_size))
    _ = (fits | "FlattenFit" >> beam.Flatten()
         | "WriteFit" >> beam.io.WriteToText(os.path.join(tmp_dir, "fit", "fit"),
                                             file_name_suffix=".jsonl"))
    if not examples:
        return
    handlers = {}  # float32 logits: the report keeps top-k ids and losses, never stored logits
    for name in scoring_teachers:
        t = config.teachers[name]
        handlers[name] = TeacherModelHandler(
            name=name, path=t.path, format=t.format, languages=t.languages,
            seq_length=config.seq_length, max_predictions_per_seq=config.max_predictions_per_seq,
            top_k=config.top_k, batch_size=config.inference_batch_size,
            jit_compile=config.jit_compile)
    scored = (examples | "FlattenExamples" >> beam.Flatten()
              | "ScoreWithTeachers" >> ScoreWithTeachers(handlers))
    teachers_of = {language: config.teachers_of(language) for language in languages}
    _ = (scored[SCORED]
         | "KeyByExample" >> beam.Map(_example_key)
         | "GroupCopies" >> beam.GroupByKey()
         | "ExampleRows" >> beam.ParDo(_ExampleRowFn(
             [teachers[t] for t in scoring_teachers], teachers_of, config.top_k))
         | "WriteRows" >> beam.io.WriteToText(os.path.join(tmp_dir, "rows", "rows"),
                                              file_name_suffix=".jsonl"))


def _read_json_lines(pattern: str) -> list[dict]:
    out = []
    for path in sorted(tf.io.gfile.glob(pattern)):
        with tf.io.gfile.GFile(path, "r") as f:
            out.extend(json.loads(line) for line in f if line.strip())
    return out


# -------------------------------------------------------------------------- the launcher


def parse_teacher_flag(value: str) -> tuple[str, str, list[str]]:
    """`--teacher NAME=PATH:lang1,lang2` → (name, path, languages); the path may hold ':'
    (gs://...), the languages are after the last ':'."""
    where = f"--teacher {value!r}"
    if "=" not in value:
        raise TeacherReportError(f"{where}: expected NAME=PATH:lang1,lang2, found no '='")
    name, rest = (part.strip() for part in value.split("=", 1))
    path, sep, languages = rest.rpartition(":")
    if not sep or not languages.strip() or "/" in languages:
        raise TeacherReportError(f"{where}: expected NAME=PATH:lang1,lang2 (the languages the "
                                 f"teacher serves after the last ':')")
    codes = [code.strip() for code in languages.split(",")]
    if not name or not path.strip() or not all(codes):
        raise TeacherReportError(f"{where}: empty name, path or language code")
    return name, path.strip(), codes


def parse_corpus_flag(value: str) -> tuple[str, str]:
    """`--corpus lang=FILE_GLOB` → (language, glob)."""
    language, sep, pattern = value.partition("=")
    if not sep or not language.strip() or not pattern.strip():
        raise TeacherReportError(f"--corpus {value!r}: expected LANG=FILE (a file glob, one "
                                 f"paragraph a line)")
    return language.strip(), pattern.strip()


# Masking and scoring settings of a report made without a scoring config (the flags' defaults).
FLAG_DEFAULTS = {"seq_length": 128, "max_predictions_per_seq": 20, "masked_lm_prob": 0.15,
                 "whole_word_masking": True, "top_k": 8, "inference_batch_size": 32,
                 "seed": 12345, "document_format": "line"}


def config_from_flags(teachers: Sequence[str], corpora: Sequence[str], output_dir: str,
                      **settings):
    """A JobConfig from `--teacher` / `--corpus` values and masking settings (FLAG_DEFAULTS
    for those not given).

    Raises:
      TeacherReportError: naming the flag: a corpus given twice, a teacher serving a language
        without a --corpus, a language no teacher serves.
    """
    if not teachers:
        raise TeacherReportError("--teacher: give at least one NAME=PATH:lang1,lang2 (or "
                                 "--config)")
    languages = {}
    for value in corpora:
        language, pattern = parse_corpus_flag(value)
        if language in languages:
            raise TeacherReportError(f"--corpus {value!r}: language {language!r} is given twice")
        languages[language] = {"corpus": [pattern], "num_shards": 1}
    teacher_entries = {}
    for value in teachers:
        name, path, served = parse_teacher_flag(value)
        if name in teacher_entries:
            raise TeacherReportError(f"--teacher {value!r}: teacher {name!r} is given twice")
        for language in served:
            if language not in languages:
                raise TeacherReportError(
                    f"--teacher {value!r}: language {language!r} has no --corpus "
                    f"(given: {sorted(languages)})")
        teacher_entries[name] = {"format": "auto", "path": path, "languages": served}
    for language in languages:
        if not any(language in t["languages"] for t in teacher_entries.values()):
            raise TeacherReportError(f"--corpus {language}=...: no --teacher serves language "
                                     f"{language!r}")
    data = {"student_vocab": "-", "output_dir": output_dir, "logits_dtype": "float32",
            "compression": "", "copies_mode": "best", "languages": languages,
            "teachers": teacher_entries, **FLAG_DEFAULTS, **settings}
    try:
        return job_config.from_dict(data, source="command line")
    except job_config.JobConfigError as error:
        raise TeacherReportError(str(error)) from error


def check_languages(config, languages: Sequence[str]) -> list[str]:
    """The languages to report: `languages` (all of the config's when empty), in config order.

    Raises:
      TeacherReportError: a language the config does not have (naming --languages).
    """
    if not languages:
        return list(config.languages)
    unknown = [lang for lang in languages if lang not in config.languages]
    if unknown:
        raise TeacherReportError(f"--languages: {unknown} not in {config.source} (its "
                                 f"languages: {sorted(config.languages)})")
    return [lang for lang in config.languages if lang in languages]


def load_teachers(config) -> dict[str, Any]:
    """Loads every teacher of the config (`load_teacher`) and checks it accepts S tokens.

    Returns:
      name → Teacher.

    Raises:
      TeacherReportError: naming `teachers.<name>` and the problem.
    """
    loaded = {}
    for name, entry in config.teachers.items():
        where = f"{config.source}: teachers.{name} ({entry.path})"
        try:
            teacher = load_teacher(entry.path, format=entry.format, name=name,
                                   languages=entry.languages)
        except Exception as error:  # pylint: disable=broad-except
            raise TeacherReportError(f"{where}: cannot load the teacher: {error}") from error
        if (teacher.max_sequence_length is not None
                and teacher.max_sequence_length < config.seq_length):
            raise TeacherReportError(f"{where}: accepts at most {teacher.max_sequence_length} "
                                     f"tokens but seq_length is {config.seq_length}")
        loaded[name] = teacher
    return loaded


def default_pipeline_args(pipeline_args: Sequence[str]) -> list[str]:
    """DirectRunner in one process unless the arguments say otherwise (a sample of a few
    thousand paragraphs is scored faster than worker processes start)."""
    args = list(pipeline_args)
    joined = " ".join(args)
    if "--runner" not in joined:
        args.append("--runner=DirectRunner")
    if "--direct_running_mode" not in joined and "--runner=DirectRunner" in " ".join(args):
        args.append("--direct_running_mode=in_memory")
    return args


def _language_counters(counters: Mapping[str, int], language: str) -> dict[str, int]:
    prefix = language + "/"
    return {k[len(prefix):]: v for k, v in counters.items() if k.startswith(prefix) and v}


def _gold_only_entry(language: str, tokenizer_teacher: str, fit: Mapping[str, Mapping]) -> dict:
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


def make_report(config, languages: Sequence[str], rows: Sequence[dict],
                fit_lines: Sequence[dict], counters: Mapping[str, int],
                vocabs: Mapping[str, Sequence[str]], settings: Mapping[str, Any],
                lower_case: Mapping[str, bool]) -> dict:
    """Assembles the report from the pipeline's outputs (pure: no I/O).

    Args:
      config: the JobConfig the pipeline ran.
      languages: the reported languages.
      rows: the example rows (`example_row`), all languages.
      fit_lines: {language, teacher, counts} per (language, teacher).
      counters: the pipeline's counters (beam_jobs.metrics names).
      vocabs: every teacher of the config → its tokens, in config order (the union).
      settings: sample_paragraphs, seed, bootstrap_samples, config, ... (recorded as given).
      lower_case: every teacher → uncased.
    """
    by_language = collections.defaultdict(list)
    for row in rows:
        by_language[row["language"]].append(row)
    fits = {(f["language"], f["teacher"]): FitCounts.from_dict(f["counts"]) for f in fit_lines}
    entries = {}
    for language in languages:
        gold_only = config.is_gold_only(language)
        teachers = list(vocabs) if gold_only else config.teachers_of(language)
        fit = {t: fits.get((language, t), FitCounts()).figures() for t in teachers}
        lang_counters = _language_counters(counters, language)
        entry = {
            "teachers": teachers,
            "uncased": {t: bool(lower_case[t]) for t in teachers},
            "gold_only": gold_only,
            "sample": {"lines_read": lang_counters.get("lines", 0),
                       "blank_lines": lang_counters.get(BLANK_LINES, 0),
                       "paragraphs": lang_counters.get(SAMPLED, 0)},
            "vocabulary_fit": fit,
            "counters": lang_counters,
        }
        if gold_only:
            entry["masked_lm"] = None
            entry["recommendation"] = _gold_only_entry(
                language, config.languages[language].tokenizer_teacher, fit)
        else:
            entry["masked_lm"] = language_quality(
                by_language[language], teachers, settings["bootstrap_samples"],
                stable_seed(settings["seed"], language, "bootstrap"), config.top_k)
            entry["recommendation"] = recommend(teachers, fit, entry["masked_lm"], lower_case)
        entries[language] = entry
    return {"format_version": FORMAT_VERSION, "settings": dict(settings),
            "languages": entries, "union": union_cost(vocabs)}


def run_report(config, output_dir: str, sample_paragraphs: int = 3000,
               bootstrap_samples: int = 1000, seed: int | None = None,
               languages: Sequence[str] = (), pipeline_args: Sequence[str] = (),
               overwrite: bool = False) -> dict:
    """Checks the inputs, runs the report pipeline, writes OUT/report.{md,json,png}.

    Args:
      config: a scoring JobConfig (beam_jobs.job_config): its corpora, teachers and masking
        settings; its student_vocab and output_dir are not used.
      output_dir: the report folder (local or gs://).
      sample_paragraphs: paragraphs sampled per language.
      bootstrap_samples: bootstrap resamples for the intervals.
      seed: sampling and bootstrap seed; default the config's (masking always uses the config's
        seed, so the masked words are the job's).
      languages: report only these languages (default all).
      pipeline_args: Beam options (default DirectRunner in one process).
      overwrite: replace a report already in output_dir.

    Returns:
      The report dict (as written to report.json).

    Raises:
      TeacherReportError: bad inputs, naming the flag or config field.
    """


    start = time.monotonic()
    if not isinstance(sample_paragraphs, int) or sample_paragraphs < 1:
        raise TeacherReportError(f"--sample_paragraphs must be >= 1, got {sample_paragraphs!r}")
    if not isinstance(bootstrap_samples, int) or bootstrap_samples < 1:
        raise TeacherReportError(f"--bootstrap_samples must be >= 1, got {bootstrap_samples!r}")
    seed = config.seed if seed is None else int(seed)
    languages = check_languages(config, languages)
    for language in languages:
        entry = config.languages[language]
        try:
            check_corpus(language, entry.corpus, where=config.source)
        except CorpusError as error:
            raise TeacherReportError(str(error)) from error
    existing = [n for n in (REPORT_JSON, REPORT_MD, REPORT_PNG)
                if tf.io.gfile.exists(os.path.join(output_dir, n))]
    if existing and not overwrite:
        raise TeacherReportError(f"--output_dir {output_dir}: already holds {existing}; pass "
                                 f"--overwrite to replace the report")
    loaded = load_teachers(config)
    specs = {name: TeacherSpec(name=name, vocab=tuple(t.vocab), lower_case=t.lower_case)
             for name, t in loaded.items()}
    vocabs = {name: list(t.vocab) for name, t in loaded.items()}
    lower_case = {name: t.lower_case for name, t in loaded.items()}
    del loaded

    tmp_dir = os.path.join(output_dir, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}")
    tf.io.gfile.makedirs(tmp_dir)
    args = default_pipeline_args(pipeline_args)
    logging.info("teacher report on %s: %d paragraphs a language, languages %s, Beam %s",
                 config.source, sample_paragraphs, languages, args)
    try:
        pipeline = beam.Pipeline(options=PipelineOptions(args))
        build_report_pipeline(pipeline, config, languages, specs, sample_paragraphs, seed,
                              tmp_dir)
        result = pipeline.run()
        result.wait_until_finish()
        if result.state != PipelineState.DONE:
            raise RuntimeError(f"the report pipeline ended in state {result.state}")
        counters = metrics.query_counters(result)
        rows = _read_json_lines(os.path.join(tmp_dir, "rows", "*"))
        fit_lines = _read_json_lines(os.path.join(tmp_dir, "fit", "*"))
    finally:
        output.remove_tree(tmp_dir)
    settings = {
        "config": config.source, "sample_paragraphs": sample_paragraphs, "seed": seed,
        "bootstrap_samples": bootstrap_samples, "top_k": config.top_k,
        "seq_length": config.seq_length,
        "max_predictions_per_seq": config.max_predictions_per_seq,
        "masked_lm_prob": config.masked_lm_prob,
        "whole_word_masking": config.whole_word_masking, "masking_seed": config.seed,
        "document_format": config.document_format, "short_seq_prob": config.short_seq_prob,
        "pipeline_args": args,
    }
    report = make_report(config, languages, rows, fit_lines, counters, vocabs, settings,
                         lower_case)
    report["seconds"] = time.monotonic() - start
    report["output_dir"] = output_dir
    write_report(report, output_dir)
    return report


# ---------------------------------------------------------------------------------- CLI

def _define_flags():
    flags.DEFINE_string("config", None, "Scoring-job config YAML (configs/scoring/*.yaml): the "
                        "teachers, corpora and masking the job will use. Or --teacher/--corpus.")
    flags.DEFINE_multi_string("teacher", [], "NAME=PATH:lang1,lang2 (without --config).")
    flags.DEFINE_multi_string("corpus", [], "LANG=FILE_GLOB, one paragraph a line (without "
                              "--config).")
    flags.DEFINE_list("languages", [], "Report only these languages of the config.")
    flags.DEFINE_integer("sample_paragraphs", 3000, "Paragraphs sampled per language.")
    flags.DEFINE_integer("bootstrap_samples", 1000, "Bootstrap resamples for the 95% intervals.")
    flags.DEFINE_integer("seed", None, "Sampling / bootstrap seed (default: the config's seed).")
    flags.DEFINE_string("output_dir", None, "Folder for report.md, report.json, report.png.")
    flags.DEFINE_bool("overwrite", False, "Replace a report already in --output_dir.")
    # Masking and scoring settings when there is no --config (a config has its own).
    defaults = FLAG_DEFAULTS
    flags.DEFINE_integer("seq_length", defaults["seq_length"], "S (without --config).")
    flags.DEFINE_integer("max_predictions_per_seq", defaults["max_predictions_per_seq"],
                         "P (without --config).")
    flags.DEFINE_float("masked_lm_prob", defaults["masked_lm_prob"],
                       "Masked share (without --config).")
    flags.DEFINE_bool("whole_word_masking", defaults["whole_word_masking"],
                      "Whole-word masking (without --config).")
    flags.DEFINE_integer("top_k", defaults["top_k"], "k of the top-k agreement (without "
                         "--config).")
    flags.DEFINE_integer("inference_batch_size", defaults["inference_batch_size"],
                         "Teacher batch size (without --config).")
    flags.DEFINE_integer("masking_seed", defaults["seed"], "Masking seed (without --config).")
    flags.DEFINE_enum("document_format", defaults["document_format"], ["line", "blank_line"],
                      "Corpus format (without --config): a paragraph a line, or BERT's format "
                      "(a blank line between documents).")
    flags.mark_flag_as_required("output_dir")


def main(argv) -> int:
    flag_values = flags.FLAGS
    cli_logging.quiet_unless_verbose(own_progress=True)
    try:
        if flag_values.config:
            if flag_values.teacher or flag_values.corpus:
                raise TeacherReportError("--config: give either a config or --teacher/--corpus, "
                                         "not both")
            try:
                config = job_config.load_job_config(flag_values.config)
            except job_config.JobConfigError as error:
                raise TeacherReportError(str(error)) from error
        else:
            config = config_from_flags(
                flag_values.teacher, flag_values.corpus, output_dir=flag_values.output_dir,
                seq_length=flag_values.seq_length,
                max_predictions_per_seq=flag_values.max_predictions_per_seq,
                masked_lm_prob=flag_values.masked_lm_prob,
                whole_word_masking=flag_values.whole_word_masking, top_k=flag_values.top_k,
                inference_batch_size=flag_values.inference_batch_size,
                seed=flag_values.masking_seed, document_format=flag_values.document_format)
        report = run_report(config, flag_values.output_dir, flag_values.sample_paragraphs,
                            flag_values.bootstrap_samples, flag_values.seed,
                            flag_values.languages, argv[1:], flag_values.overwrite)
    except TeacherReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(report)))
    print(f"wrote {REPORT_MD}, {REPORT_JSON}, {REPORT_PNG} to {flag_values.output_dir} "
          f"({report['seconds']:.0f} s)")
    return 0


def _parse_flags(argv):
    """absl parses its own flags; the rest (Beam pipeline options) goes to main."""
    return flags.FLAGS(argv, known_only=True)


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=_parse_flags)
