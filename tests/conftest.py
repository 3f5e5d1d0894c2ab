"""Shared fixtures. Tests read only data inside the repository (data/corpora: demo + udhr)."""

import os
import pathlib

import pytest

# Quiet TensorFlow's C++ logging and keep CPU runs deterministic and single-host.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPORA = REPO_ROOT / "data" / "corpora"
DEMO_LANGUAGES = ("de", "en", "es", "fi", "fr", "hi", "it", "tr", "zh")
UDHR_LANGUAGES = ("ar", "de", "en", "es", "fi", "fr", "hi", "it", "tr", "zh")


def read_lines(path: pathlib.Path, limit: int | None = None) -> list[str]:
    lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return lines[:limit] if limit else lines


def demo_lines(language: str, limit: int | None = None) -> list[str]:
    return read_lines(CORPORA / "demo" / f"{language}.txt", limit)


def udhr_lines(language: str, limit: int | None = None) -> list[str]:
    return read_lines(CORPORA / "udhr" / f"{language}.txt", limit)


_VOCAB_CACHE: dict = {}


def trained_vocab(language: str, vocab_size: int = 3000, lower_case: bool = False) -> list[str]:
    """A real WordPiece vocabulary trained on the bundled demo text of `language` (cached)."""
    from vocab.train_wordpiece import train_wordpiece

    key = (language, vocab_size, lower_case)
    if key not in _VOCAB_CACHE:
        _VOCAB_CACHE[key] = train_wordpiece(demo_lines(language), vocab_size, lower_case)
    return _VOCAB_CACHE[key]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT
