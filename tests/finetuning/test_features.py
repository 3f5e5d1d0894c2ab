"""Featurization: first-piece labels, windows that label every word once, long and empty words,
classification truncation."""

import random

import numpy as np
import pytest

from finetuning import data, features
from teacher_scoring.examples.tokenization import TeacherTokenizer
from tests.conftest import trained_vocab
from tests.finetuning.fixtures import BOUN, EWT

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##a", "b", "##b", "the", "cat", ","]
PAD, UNK, CLS, SEP = 0, 1, 2, 3
ID = {token: i for i, token in enumerate(VOCAB)}


@pytest.fixture(scope="module")
def toy_tokenizer():
    return TeacherTokenizer(VOCAB, lower_case=True)


def sentence(words, labels):
    return data.TaggedSentence(tuple(words), tuple(labels), tuple(range(1, len(words) + 1)))


def test_label_on_the_first_piece_only(toy_tokenizer):
    labels = ["DET", "NOUN", "PUNCT"]
    feats = features.featurize_tagging(
        [sentence(["The", "aaa", "cat", ","], ["DET", "NOUN", "NOUN", "PUNCT"])], labels,
        toy_tokenizer, seq_length=10)
    assert feats.input_word_ids[0].tolist() == [CLS, ID["the"], ID["a"], ID["##a"], ID["##a"],
                                                ID["cat"], ID[","], SEP, PAD, PAD]
    assert feats.labels[0].tolist() == [-1, 0, 1, -1, -1, 1, 2, -1, -1, -1]
    assert feats.input_mask[0].tolist() == [1] * 8 + [0] * 2
    assert feats.input_type_ids.sum() == 0 and feats.lengths.tolist() == [8]
    assert feats.stats["windows"] == 1 and feats.stats["pieces"] == 6


def test_windows_split_at_word_boundaries(toy_tokenizer):
    # S = 6: windows of 4 pieces. Words: 1, 3, 2, 1, 4 pieces.
    words = ["the", "aaa", "bb", "cat", "aaaa"]
    feats = features.featurize_tagging([sentence(words, ["X"] * 5)], ["X"], toy_tokenizer, 6)
    rows = [[VOCAB[i] for i in row[:n]] for row, n in zip(feats.input_word_ids, feats.lengths)]
    assert rows == [["[CLS]", "the", "a", "##a", "##a", "[SEP]"],
                    ["[CLS]", "b", "##b", "cat", "[SEP]"],
                    ["[CLS]", "a", "##a", "##a", "##a", "[SEP]"]]
    assert feats.example_index.tolist() == [0, 0, 0]
    assert (feats.labels >= 0).sum() == 5
    assert feats.stats["split_sentences"] == 1 and feats.stats["windows"] == 3


def test_long_and_empty_words_are_kept_and_counted(toy_tokenizer):
    words = ["aaaaaa", "\u200b", "cat"]  # 6 pieces (window holds 4); a word with no piece
    feats = features.featurize_tagging([sentence(words, ["A", "B", "C"])], ["A", "B", "C"],
                                       toy_tokenizer, 6)
    assert feats.input_word_ids[0, :6].tolist() == [CLS, ID["a"], ID["##a"], ID["##a"],
                                                    ID["##a"], SEP]
    assert feats.input_word_ids[1, :4].tolist() == [CLS, UNK, ID["cat"], SEP]
    assert feats.stats["long_words"] == 1 and feats.stats["long_word_pieces_dropped"] == 2
    assert feats.stats["empty_words"] == 1
    assert features.word_predictions(feats, feats.labels) == [[0, 1, 2]]
    assert "1 words without pieces ([UNK])" in features.summary(feats.stats)
    assert "1 words longer than a window" in features.summary(feats.stats)


@pytest.mark.parametrize("path,language,lower_case", [(EWT, "en", True), (BOUN, "tr", False)])
def test_every_word_is_labelled_exactly_once_on_real_sentences(path, language, lower_case):
    """Bundled UD sentences at small S: many windows, the word labels come back exactly."""
    read = data.read_conllu(str(path))
    labels = data.tagging_labels(read, iob2=False)
    tokenizer = TeacherTokenizer(trained_vocab(language, 800, lower_case=lower_case), lower_case)
    for seq_length in (8, 16, 64):
        feats = features.featurize_tagging(read.sentences, labels, tokenizer, seq_length)
        gold = [[labels.index(label) for label in s.labels] for s in read.sentences]
        assert features.word_predictions(feats, feats.labels) == gold
        assert feats.stats["words"] == read.num_words
        assert (feats.lengths <= seq_length).all()
        # Every window starts with a word's first piece (a label right after [CLS]) and
        # holds only whole words, except words longer than a window.
        assert (feats.labels[:, 1] >= 0).all()
        assert feats.input_word_ids[np.arange(len(feats)), feats.lengths - 1].tolist() == \
            [tokenizer.sep_id] * len(feats)
        if seq_length == 8:
            assert feats.stats["split_sentences"] > 100
    # Rows of a sentence are consecutive and in order.
    assert (np.diff(feats.example_index) >= 0).all()


def test_random_sentences_round_trip(toy_tokenizer):
    rng = random.Random(3)
    pool = ["a", "aa", "aaaaa", "b", "bbb", "the", "cat", ",", "\u200b", "a" * 9]
    sentences = []
    labels = [f"L{i}" for i in range(4)]
    for _ in range(200):
        words = [rng.choice(pool) for _ in range(rng.randint(1, 30))]
        sentences.append(sentence(words, [rng.choice(labels) for _ in words]))
    for seq_length in (3, 5, 7, 12):
        feats = features.featurize_tagging(sentences, labels, toy_tokenizer, seq_length)
        assert features.word_predictions(feats, feats.labels) == [
            [labels.index(label) for label in s.labels] for s in sentences]
        assert (feats.lengths <= seq_length).all()


def test_classification_truncation(toy_tokenizer):
    examples = [data.TextExample("the cat", "pos", 1), data.TextExample("aaaaaa bbb", "neg", 2),
                data.TextExample("\u200b", "pos", 3)]
    feats = features.featurize_classification(examples, ["neg", "pos"], toy_tokenizer, 6)
    assert feats.input_word_ids.tolist() == [
        [CLS, ID["the"], ID["cat"], SEP, PAD, PAD],
        [CLS, ID["a"], ID["##a"], ID["##a"], ID["##a"], SEP],
        [CLS, SEP, PAD, PAD, PAD, PAD]]
    assert feats.labels.tolist() == [1, 0, 1]
    assert feats.stats == dict(examples=3, pieces=11, unk_pieces=0, empty_texts=1, truncated=1,
                               truncated_pieces_dropped=5)
    assert "1 truncated to S" in features.summary(feats.stats)
    with pytest.raises(ValueError, match="sequence length 2 leaves no room"):
        features.featurize_classification(examples, ["neg", "pos"], toy_tokenizer, 2)
