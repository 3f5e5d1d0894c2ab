"""Format detection, and bad folders failing before any work with the path and the problem."""

import json
import os
import shutil

import pytest

from teacher_scoring.teachers import export
from teacher_scoring.teachers.loaders import (LoaderError, bert_mlm, detect_format, load_teacher,
                                     tfm_checkpoint)
from teacher_scoring.teachers.teacher import Teacher
from tests.conftest import trained_vocab
from tests.teacher_scoring.teachers.test_teacher_core import random_bert

FORMATS = ("google_bert_checkpoint", "hf_folder", "tfm_checkpoint", "saved_model")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One valid folder of each format, from the same tiny random BERT."""
    root = tmp_path_factory.mktemp("teachers")
    vocab = trained_vocab("it", 600)
    model, config = random_bert(len(vocab), seed=1)
    args = (model.encoder_network, model.masked_lm, vocab)
    out = {
        "google_bert_checkpoint": export.export_google_bert_checkpoint(
            *args, str(root / "google"), lower_case=False, languages=["it"]),
        "hf_folder": export.export_hf_folder(*args, str(root / "hf"), lower_case=False),
        "tfm_checkpoint": export.export_tfm_checkpoint(*args, str(root / "tfm"),
                                                       lower_case=False),
        "saved_model": export.export_saved_model(
            Teacher("it", vocab, False, ["it"],
                    bert_mlm.mlm_logits_fn(model.encoder_network, model.masked_lm), model=model),
            str(root / "sm")),
    }
    return out


@pytest.fixture
def copy_of(folders, tmp_path):
    def copy(format_name):
        target = str(tmp_path / format_name)
        shutil.copytree(folders[format_name], target)
        return target
    return copy


@pytest.fixture
def no_model_building(monkeypatch):
    """Makes building a model an error: checks must fail before any work starts."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a model was built before the folder was checked")
    monkeypatch.setattr(bert_mlm, "build_bert_mlm", forbidden)
    monkeypatch.setattr(tfm_checkpoint, "build_model", forbidden)


def _edit_json(path, **changes):
    with open(path) as f:
        data = json.load(f)
    data.update(changes)
    with open(path, "w") as f:
        json.dump(data, f)


def _truncate_vocab(path, n=1):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")[:-1]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in lines[:-n]))


def test_auto_detection(folders):
    for format_name, folder in folders.items():
        assert detect_format(folder) == format_name
        assert load_teacher(folder).format == format_name


def test_unknown_missing_and_ambiguous(tmp_path, folders):
    with pytest.raises(LoaderError, match="no such file or directory") as error:
        load_teacher(str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(error.value)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(LoaderError, match="not a directory"):
        load_teacher(str(tmp_path / "file.txt"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "weights.bin").write_text("x")
    with pytest.raises(LoaderError, match=r"unknown teacher format.*bert_config\.json.*"
                                          r"weights\.bin") as error:
        load_teacher(str(empty))
    assert str(empty) in str(error.value)
    with pytest.raises(LoaderError, match="unknown format 'pytorch'"):
        load_teacher(folders["hf_folder"], format="pytorch")
    both = str(tmp_path / "both")
    shutil.copytree(folders["hf_folder"], both)
    shutil.copy(os.path.join(folders["google_bert_checkpoint"], "bert_config.json"), both)
    with pytest.raises(LoaderError, match="ambiguous teacher format"):
        load_teacher(both)
    assert load_teacher(both, format="hf_folder").format == "hf_folder"


@pytest.mark.parametrize("format_name, remove, message", [
    ("google_bert_checkpoint", "vocab.txt", "vocab.txt: missing"),
    ("google_bert_checkpoint", "bert_model.ckpt.index", "bert_model.ckpt.index: missing"),
    ("hf_folder", "model.safetensors", "model.safetensors: missing"),
    ("hf_folder", "vocab.txt", "vocab.txt: missing"),
    ("tfm_checkpoint", "ckpt.index", "ckpt.index: missing"),
    ("tfm_checkpoint", "teacher.json", "teacher.json: missing"),
    ("saved_model", "assets/vocab.txt", "vocab.txt: missing"),
])
def test_missing_file(copy_of, no_model_building, format_name, remove, message):
    folder = copy_of(format_name)
    os.remove(os.path.join(folder, remove))
    with pytest.raises(LoaderError, match=message) as error:
        load_teacher(folder, format=format_name)
    assert folder in str(error.value)


def test_hf_folder_with_torch_weights_only(copy_of, no_model_building):
    folder = copy_of("hf_folder")
    os.rename(os.path.join(folder, "model.safetensors"), os.path.join(folder, "pytorch_model.bin"))
    with pytest.raises(LoaderError, match=r"found \['pytorch_model.bin'\]: convert them to "
                                          "safetensors"):
        load_teacher(folder)


@pytest.mark.parametrize("format_name, config_file, field", [
    ("google_bert_checkpoint", "bert_config.json", None),
    ("hf_folder", "config.json", None),
    ("tfm_checkpoint", "encoder_config.yaml", "bert_v2"),
])
def test_config_hidden_size_does_not_match_weights(copy_of, no_model_building, format_name,
                                                    config_file, field):
    folder = copy_of(format_name)
    path = os.path.join(folder, config_file)
    if field is None:
        _edit_json(path, hidden_size=64)
    else:
        import yaml
        with open(path) as f:
            data = yaml.safe_load(f)
        data[field]["hidden_size"] = 64
        with open(path, "w") as f:
            yaml.safe_dump(data, f)
    with pytest.raises(LoaderError, match="hidden_size=64 does not match the weights") as error:
        load_teacher(folder)
    assert folder in str(error.value)


@pytest.mark.parametrize("format_name, vocab_file", [
    ("google_bert_checkpoint", "vocab.txt"),
    ("hf_folder", "vocab.txt"),
    ("tfm_checkpoint", "vocab.txt"),
    ("saved_model", "assets/vocab.txt"),
])
def test_vocab_size_does_not_match_embeddings(copy_of, format_name, vocab_file, monkeypatch):
    folder = copy_of(format_name)
    _truncate_vocab(os.path.join(folder, vocab_file))
    if format_name != "saved_model":  # a SavedModel is loaded to read its signature
        monkeypatch.setattr(bert_mlm, "build_bert_mlm", None)
        monkeypatch.setattr(tfm_checkpoint, "build_model", None)
    with pytest.raises(LoaderError, match=r"vocab.*has 599 tokens") as error:
        load_teacher(folder)
    assert folder in str(error.value)


def test_config_vocab_size_and_layers_do_not_match_weights(copy_of, no_model_building):
    folder = copy_of("google_bert_checkpoint")
    config = os.path.join(folder, "bert_config.json")
    _edit_json(config, vocab_size=650)
    with pytest.raises(LoaderError, match="config vocab_size=650 does not match the weights"):
        load_teacher(folder)
    _edit_json(config, vocab_size=600, num_hidden_layers=3)
    with pytest.raises(LoaderError, match="num_hidden_layers=3 does not match the weights"):
        load_teacher(folder)
    _edit_json(config, num_hidden_layers=2, num_attention_heads=5)
    with pytest.raises(LoaderError, match="not a multiple of num_attention_heads=5"):
        load_teacher(folder)
    _edit_json(config, num_attention_heads=4, hidden_act="quick_gelu")
    with pytest.raises(LoaderError, match="hidden_act 'quick_gelu' is not supported"):
        load_teacher(folder)
    with open(config, "w") as f:
        f.write("{not json")
    with pytest.raises(LoaderError, match="bert_config.json: not valid JSON"):
        load_teacher(folder)


def test_bad_vocab_and_teacher_json(copy_of, no_model_building):
    folder = copy_of("hf_folder")
    with open(os.path.join(folder, "vocab.txt"), "a", encoding="utf-8") as f:
        f.write("[CLS]\n")
    with pytest.raises(LoaderError, match=r"vocab.txt.*'\[CLS\]' appears twice"):
        load_teacher(folder)
    folder = copy_of("google_bert_checkpoint")
    _edit_json(os.path.join(folder, "teacher.json"), casing="upper")
    with pytest.raises(LoaderError, match=r"teacher.json: unknown field\(s\) \['casing'\]"):
        load_teacher(folder)
