"""Vocabulary fit: how well each teacher's own tokenizer (its vocab and casing, exactly what the
scoring job uses) covers a language's sampled text.

Per (language, teacher), summed over documents (`FitCounts`) and shown as rates
(`FitCounts.figures`): words with an [UNK] piece, [UNK] pieces, pieces per word (fertility),
words kept whole (one piece, not [UNK]), characters lost in [UNK] pieces, and the characters the
vocabulary lacks. Words are the whitespace-separated words of the cleaned text (`clean_text`
makes every whitespace a plain space, so these are BERT's first split); a piece belongs to the
word its start byte lies in.

    VocabularyFit[lang]:  Batch → Count (every teacher) → Sum (per teacher) → ToJson   (Beam)
    fit_counts(...)                                          (one teacher's documents, in process)
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from typing import Iterable, Mapping, Sequence

import apache_beam as beam
import numpy as np

from beam_jobs.build_examples import TeacherSpec
from teacher_scoring.examples.tokenization import TeacherTokenizer, TokenizedText, clean_text

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


# ------------------------------------------------------------------------------ Beam


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
