"""Tests for vocab.train_wordpiece on the bundled demo text."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from teacher_scoring.examples.tokenization import SPECIAL_TOKENS, TeacherTokenizer, read_vocab
from tests.conftest import REPO_ROOT, demo_lines, trained_vocab
from vocab.train_wordpiece import train_wordpiece


@pytest.mark.parametrize("language,lower_case", [("en", True), ("de", False), ("zh", False)])
def test_trained_vocab_layout_and_unknown_rate(language, lower_case):
    vocab_size = 2000
    tokens = trained_vocab(language, vocab_size, lower_case)
    assert tokens[:5] == list(SPECIAL_TOKENS)
    assert tuple(tokens[:5]) == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert len(tokens) <= vocab_size
    assert len(tokens) > vocab_size // 2  # it did learn merges
    assert len(set(tokens)) == len(tokens)
    assert any(t.startswith("##") for t in tokens)
    assert all(t and "\n" not in t and " " not in t for t in tokens)
    if lower_case:
        assert not any(t != t.lower() for t in tokens[5:])

    # It tokenizes its own training text with few [UNK]s.
    tokenizer = TeacherTokenizer(tokens, lower_case=lower_case)
    ids = tokenizer.tokenize(demo_lines(language))
    total = sum(len(x) for x in ids)
    unknown = sum(x.count(tokenizer.unk_id) for x in ids)
    assert total > 10_000
    assert unknown / total < 0.005, f"{language}: {unknown}/{total} [UNK]"


def test_vocab_size_is_an_upper_bound():
    lines = demo_lines("zh", limit=400)
    with pytest.raises(ValueError, match=r"vocab_size 100 is too small .* alphabet alone needs"):
        train_wordpiece(lines, 100, lower_case=False)
    small = train_wordpiece(lines, 300, lower_case=False, limit_alphabet=100)
    assert len(small) <= 300 and small[:5] == list(SPECIAL_TOKENS)
    with pytest.raises(ValueError, match="vocab_size must exceed 5"):
        train_wordpiece(lines, 5, lower_case=False)


def test_cli_writes_a_readable_vocab(tmp_path):
    out = tmp_path / "vocab.txt"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-m", "vocab.train_wordpiece",
         f"--input={REPO_ROOT / 'data' / 'corpora' / 'demo' / 'es.txt'}", "--vocab_size=1500",
         "--lower_case", f"--output={out}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    tokens = read_vocab(str(out))
    assert tokens[:5] == list(SPECIAL_TOKENS) and len(tokens) <= 1500
    assert f"wrote {len(tokens)} tokens" in result.stdout


def test_alphabet_is_chosen_by_coverage_not_capped():
    """Every character seen twice is in the alphabet, however many there are (a fixed cap, such
    as tokenizers' default of 1,000, leaves the rest [UNK]); a coverage below 1 keeps the most
    frequent ones only."""
    import collections

    from vocab.train_wordpiece import choose_alphabet

    lines = demo_lines("zh")
    counts = collections.Counter(c for line in lines for c in line if not c.isspace())
    seen_twice = {c for c, n in counts.items() if n >= 2 and '\u4e00' <= c <= '\u9fff'}
    assert len(seen_twice) > 800
    tokens = set(train_wordpiece(lines, 8000, lower_case=False))
    assert seen_twice <= tokens
    capped = set(train_wordpiece(lines, 8000, lower_case=False, limit_alphabet=500))
    assert len(seen_twice - capped) > 300
    once = {c for c, n in counts.items() if n == 1 and '\u4e00' <= c <= '\u9fff'}
    assert once and not once & tokens

    assert choose_alphabet(collections.Counter("aaaabbbcd"), min_count=1) == list("abcd")
    assert choose_alphabet(collections.Counter("aaaabbbcd"), min_count=2) == list("ab")
    assert choose_alphabet(collections.Counter("aaaabbbcd"), min_count=1, coverage=0.7) == \
        list("ab")
    assert choose_alphabet(collections.Counter("aaaabbbcd"), min_count=1, coverage=0.4) == ["a"]
    with pytest.raises(ValueError, match="coverage must be in"):
        choose_alphabet(counts, coverage=0.0)
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        choose_alphabet(counts, min_count=0)
    small = train_wordpiece(lines, 8000, lower_case=False, alphabet_coverage=0.9)
    assert len([t for t in small if len(t) == 1]) < len(seen_twice)
