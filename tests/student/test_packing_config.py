"""data.packing: the student refuses shards packed another way than its config says (the error
names the manifest file, the field and both values); the configs' default is BERT's format."""

import glob
import os

import pytest
import yaml

from student import config as config_lib
from student import shard_sources
from teacher_scoring.records import manifest as manifest_lib
from tests.conftest import REPO_ROOT
from tests.student.conftest import TINY_CONFIG, make_shards


def _open(folder, vocab_dir, *overrides):
    config = config_lib.load_config(TINY_CONFIG, list(overrides))
    vocab = shard_sources.read_student_vocab(vocab_dir, config)
    return shard_sources.open_sources({"en": folder}, config.data, vocab, use_teacher=True)


def test_default_config_refuses_full_sentences_shards(tmp_path, student_vocab):
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 4},
                         manifest_overrides={"packing": "full_sentences"})
    with pytest.raises(manifest_lib.ManifestError) as info:
        _open(folder, student_vocab)
    message = str(info.value)
    assert os.path.join(folder, "manifest.json") in message
    assert "field 'packing' is 'full_sentences'" in message
    assert "'data.packing' is 'within_document'" in message


def test_full_sentences_config_refuses_within_document_shards(tmp_path, student_vocab):
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 4})
    with pytest.raises(manifest_lib.ManifestError,
                       match=r"manifest\.json: field 'packing' is 'within_document' but config "
                             r"field 'data.packing' is 'full_sentences'"):
        _open(folder, student_vocab, "data.packing=full_sentences")


def test_matching_packing_is_accepted(tmp_path, student_vocab):
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 4},
                         manifest_overrides={"packing": "full_sentences"})
    sources = _open(folder, student_vocab, "data.packing=full_sentences")
    assert sources[0].manifest.packing == "full_sentences"


def test_unknown_packing_value_is_a_config_error():
    with pytest.raises(config_lib.ConfigError,
                       match=r"field 'data.packing' = 'roberta': must be one of"):
        config_lib.load_config(TINY_CONFIG, ["data.packing=roberta"])


def test_every_student_config_states_the_default():
    paths = sorted(glob.glob(str(REPO_ROOT / "configs" / "student" / "*.yaml")))
    assert paths
    for path in paths:
        with open(path, encoding="utf-8") as f:
            assert yaml.safe_load(f)["data"]["packing"] == "within_document", path
        assert config_lib.load_config(path).data.packing == "within_document", path
