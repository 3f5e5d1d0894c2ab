"""Fixtures of the student tests: a tiny student vocab and scored shards matching tiny.yaml."""

import pytest

from tests.conftest import REPO_ROOT
from tests.student import shard_fixtures

TINY_CONFIG = str(REPO_ROOT / "configs" / "student" / "tiny.yaml")
VOCAB_SIZE, SEQ_LENGTH, MAX_PREDICTIONS = 300, 32, 6  # as in configs/student/tiny.yaml


@pytest.fixture(scope="session")
def student_vocab(tmp_path_factory) -> str:
    return shard_fixtures.write_vocab(str(tmp_path_factory.mktemp("vocab")), VOCAB_SIZE)


@pytest.fixture(scope="session")
def scored_shards(tmp_path_factory, student_vocab) -> dict[str, str]:
    """language -> shard folder (en: 120 examples, de: 40, two shards each). Do not modify."""
    folders = {}
    for seed, (language, count) in enumerate({"en": 120, "de": 40}.items()):
        folder = str(tmp_path_factory.mktemp(f"shards_{language}"))
        shard_fixtures.write_shards(folder, {language: count}, student_vocab, SEQ_LENGTH,
                                    MAX_PREDICTIONS, seed=seed)
        folders[language] = folder
    return folders


def make_shards(folder, vocab, languages, **kwargs) -> str:
    """Writes a fresh shard folder with tiny.yaml's shapes; returns the folder."""
    shard_fixtures.write_shards(str(folder), languages, vocab, SEQ_LENGTH, MAX_PREDICTIONS,
                                **kwargs)
    return str(folder)
