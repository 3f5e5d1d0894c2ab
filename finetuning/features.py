"""Words and texts -> fixed-length encoder inputs, the way BERT fine-tuning does it.

Token classification (POS, NER), as tf-models-official's `official/nlp/data/tagging_data_lib.py`
and `official/nlp/tasks/tagging.py` do it:

  * every word is tokenized on its own by the model's tokenizer; its label goes on its *first*
    piece, every other piece (and [CLS], [SEP], padding) gets label -1, which the loss and the
    metric ignore;
  * a sentence longer than S - 2 pieces is split into windows at word boundaries (greedily, in
    order, no overlap), each `[CLS] pieces [SEP]`, so that every word is labelled exactly once;
    the windows of a sentence are consecutive rows and the predictions are put back together
    per sentence before scoring;
  * a word with no piece at all (it is only characters the tokenizer removes) becomes one
    [UNK], as tf-models does (`empty_words`);
  * a single word longer than a window (more than S - 2 pieces) keeps its first S - 2 pieces
    (its label is on the first) and is counted (`long_words`, `long_word_pieces_dropped`);
    tf-models would replace it by [UNK].

Sentence classification: `[CLS] pieces [SEP]`, truncated to S tokens (`truncated`,
`truncated_pieces_dropped`), the label per row.

The tokenizer is any object with `tokenize(texts) -> list[list[int]]` (raw texts in, cleaned
and tokenized) and `cls_id`, `sep_id`, `pad_id`, `unk_id`: a teacher's `TeacherTokenizer`, or a
student's tokenizer for one language (`student.tokenizer.StudentTokenizer.for_language`), which
yields student ids.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Sequence

import numpy as np

from finetuning import data as data_lib

IGNORED_LABEL = -1
_TOKENIZE_CHUNK = 4096


@dataclasses.dataclass
class Features:
    """Encoder inputs and labels of one data file for one tokenizer.

    Attributes:
      input_word_ids: int32 [N, S] token ids (padding: the tokenizer's pad id).
      input_mask: int32 [N, S], 1 on real tokens.
      input_type_ids: int32 [N, S], all 0 (one segment).
      labels: int32 [N, S] label ids on first pieces, -1 elsewhere (tagging); int32 [N]
        (classification).
      word_starts: int32 [N, S] (tagging) the position of the first piece of the word each
        position belongs to; [CLS], [SEP] and padding point at themselves. A model that pools
        a word's pieces (finetuning.word_tagger, `mean`) groups positions by it. Empty
        [N, 0] for classification.
      lengths: int32 [N] real tokens of each row ([CLS] and [SEP] included).
      example_index: int32 [N] the sentence / example each row comes from (rows of one
        sentence are consecutive, in order).
      num_examples: number of sentences / examples.
      stats: counts (see the module docstring).
    """

    input_word_ids: np.ndarray
    input_mask: np.ndarray
    input_type_ids: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray
    example_index: np.ndarray
    num_examples: int
    stats: dict[str, int]
    word_starts: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.input_word_ids)

    @property
    def seq_length(self) -> int:
        return self.input_word_ids.shape[1]


def _check_seq_length(seq_length: int) -> None:
    if seq_length < 3:
        raise ValueError(f"sequence length {seq_length} leaves no room for a piece between "
                         "[CLS] and [SEP]; use at least 3")


def tokenize_unique(tokenizer, texts: Sequence[str]) -> dict[str, list[int]]:
    """text -> piece ids, each distinct text tokenized once (in batches, one tf-text call each)."""
    unique = list(dict.fromkeys(texts))
    pieces: dict[str, list[int]] = {}
    for start in range(0, len(unique), _TOKENIZE_CHUNK):
        chunk = unique[start:start + _TOKENIZE_CHUNK]
        for text, ids in zip(chunk, tokenizer.tokenize(chunk)):
            pieces[text] = [int(i) for i in ids]
    return pieces


def _empty_features(num_rows: int, seq_length: int, pad_id: int, tagging: bool) -> dict:
    shape = [num_rows, seq_length]
    return dict(
        input_word_ids=np.full(shape, pad_id, np.int32),
        input_mask=np.zeros(shape, np.int32),
        input_type_ids=np.zeros(shape, np.int32),
        labels=np.full(shape if tagging else [num_rows], IGNORED_LABEL, np.int32),
        word_starts=(np.tile(np.arange(seq_length, dtype=np.int32), [num_rows, 1]) if tagging
                     else np.zeros([num_rows, 0], np.int32)),
        lengths=np.zeros([num_rows], np.int32),
        example_index=np.zeros([num_rows], np.int32))


def featurize_tagging(sentences: Sequence[data_lib.TaggedSentence], labels: Sequence[str],
                      tokenizer, seq_length: int) -> Features:
    """Token-classification features (first-piece labels, windows at word boundaries).

    Args:
      sentences: the sentences (words with one label each).
      labels: the label list; label id = index. Every sentence label must be in it.
      tokenizer: see the module docstring.
      seq_length: S, the encoder's input length ([CLS] and [SEP] included).

    Returns:
      Features; `stats`: sentences, words, windows, split_sentences, pieces, unk_pieces,
      empty_words, long_words, long_word_pieces_dropped.
    """
    _check_seq_length(seq_length)
    window = seq_length - 2
    label_id = {label: i for i, label in enumerate(labels)}
    pieces_of = tokenize_unique(tokenizer, [w for s in sentences for w in s.words])
    stats = collections.Counter(sentences=len(sentences))
    rows: list[tuple[int, list[int], list[int], list[int]]] = []  # sentence, ids, labels, starts
    for index, sentence in enumerate(sentences):
        ids: list[int] = []
        row_labels: list[int] = []
        starts: list[int] = []  # per piece: its word's first piece, as a row position
        windows = 0
        for word, label in zip(sentence.words, sentence.labels):
            pieces = pieces_of[word]
            if not pieces:
                pieces = [tokenizer.unk_id]
                stats["empty_words"] += 1
            if len(pieces) > window:
                stats["long_words"] += 1
                stats["long_word_pieces_dropped"] += len(pieces) - window
                pieces = pieces[:window]
            if len(ids) + len(pieces) > window:
                rows.append((index, ids, row_labels, starts))
                windows += 1
                ids, row_labels, starts = [], [], []
            starts.extend([len(ids) + 1] * len(pieces))  # + 1: [CLS] is position 0
            ids.extend(pieces)
            row_labels.append(label_id[label])
            row_labels.extend([IGNORED_LABEL] * (len(pieces) - 1))
            stats["words"] += 1
            stats["pieces"] += len(pieces)
            stats["unk_pieces"] += sum(p == tokenizer.unk_id for p in pieces)
        rows.append((index, ids, row_labels, starts))
        windows += 1
        if windows > 1:
            stats["split_sentences"] += 1
    stats["windows"] = len(rows)
    arrays = _empty_features(len(rows), seq_length, tokenizer.pad_id, tagging=True)
    for row, (index, ids, row_labels, starts) in enumerate(rows):
        n = len(ids) + 2
        arrays["input_word_ids"][row, :n] = [tokenizer.cls_id] + ids + [tokenizer.sep_id]
        arrays["input_mask"][row, :n] = 1
        arrays["labels"][row, 1:n - 1] = row_labels
        arrays["word_starts"][row, 1:n - 1] = starts
        arrays["lengths"][row] = n
        arrays["example_index"][row] = index
    return Features(num_examples=len(sentences), stats=_full_stats(stats, _TAGGING_STATS),
                    **arrays)


def featurize_classification(examples: Sequence[data_lib.TextExample], labels: Sequence[str],
                             tokenizer, seq_length: int) -> Features:
    """Sentence-classification features: `[CLS] pieces [SEP]` truncated to S.

    Returns:
      Features; `stats`: examples, pieces, unk_pieces, truncated, truncated_pieces_dropped,
      empty_texts (texts with no piece at all: `[CLS] [SEP]`).
    """
    _check_seq_length(seq_length)
    label_id = {label: i for i, label in enumerate(labels)}
    pieces_of = tokenize_unique(tokenizer, [e.text for e in examples])
    stats = collections.Counter(examples=len(examples))
    arrays = _empty_features(len(examples), seq_length, tokenizer.pad_id, tagging=False)
    for row, example in enumerate(examples):
        pieces = pieces_of[example.text]
        stats["pieces"] += len(pieces)
        stats["unk_pieces"] += sum(p == tokenizer.unk_id for p in pieces)
        if not pieces:
            stats["empty_texts"] += 1
        if len(pieces) > seq_length - 2:
            stats["truncated"] += 1
            stats["truncated_pieces_dropped"] += len(pieces) - (seq_length - 2)
            pieces = pieces[:seq_length - 2]
        n = len(pieces) + 2
        arrays["input_word_ids"][row, :n] = [tokenizer.cls_id] + pieces + [tokenizer.sep_id]
        arrays["input_mask"][row, :n] = 1
        arrays["labels"][row] = label_id[example.label]
        arrays["lengths"][row] = n
        arrays["example_index"][row] = row
    return Features(num_examples=len(examples),
                    stats=_full_stats(stats, _CLASSIFICATION_STATS), **arrays)


_TAGGING_STATS = ("sentences", "words", "windows", "split_sentences", "pieces", "unk_pieces",
                  "empty_words", "long_words", "long_word_pieces_dropped")
_CLASSIFICATION_STATS = ("examples", "pieces", "unk_pieces", "empty_texts", "truncated",
                         "truncated_pieces_dropped")


def _full_stats(stats: collections.Counter, keys: Sequence[str]) -> dict[str, int]:
    return {key: int(stats.get(key, 0)) for key in keys}


def word_predictions(features: Features, predicted: np.ndarray) -> list[list[int]]:
    """Per-sentence word predictions from per-row token predictions (tagging).

    Args:
      features: the tagging features the predictions are for.
      predicted: int [N, >=L] predicted label ids per row and position (positions past a row's
        labelled ones are ignored).

    Returns:
      One list of label ids per sentence, one id per word, in word order (each word's first
      piece; the windows of a sentence put back together).
    """
    out: list[list[int]] = [[] for _ in range(features.num_examples)]
    width = min(features.seq_length, predicted.shape[1])
    for row in range(len(features)):
        scored = features.labels[row, :width] >= 0
        out[features.example_index[row]].extend(int(p) for p in predicted[row, :width][scored])
    return out


def summary(stats: dict[str, int]) -> str:
    """A one-line description of featurization counts (only the non-zero anomalies)."""
    if "sentences" in stats:
        text = (f"{stats['sentences']} sentences, {stats['words']} words -> "
                f"{stats['windows']} windows")
        extra = [("split_sentences", "sentences split into windows"),
                 ("empty_words", "words without pieces ([UNK])"),
                 ("long_words", "words longer than a window (first pieces kept)")]
    else:
        text = f"{stats['examples']} examples"
        extra = [("truncated", "truncated to S"), ("empty_texts", "texts without pieces")]
    unk = stats["unk_pieces"] / stats["pieces"] if stats["pieces"] else 0.0
    text += f", {stats['pieces']} pieces ({100 * unk:.1f}% [UNK])"
    notes = [f"{stats[key]} {what}" for key, what in extra if stats.get(key)]
    return text + ("; " + ", ".join(notes) if notes else "")
