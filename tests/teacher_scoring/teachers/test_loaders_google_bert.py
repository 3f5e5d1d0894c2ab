"""Format (a), Google-BERT TF1 checkpoints: names, casing, round trips, parity with torch."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from teacher_scoring.teachers import export
from teacher_scoring.teachers.loaders import LoaderError, bert_mlm, common, load_teacher
from tests.conftest import trained_vocab
from tests.teacher_scoring.teachers.test_teacher_core import (make_inputs, model_inputs, random_bert,
                                                     relative_error, torch_logits,
                                                     torch_masked_lm)


def write_google_folder(folder, tensors: dict, config: dict, vocab, teacher_json=None):
    """A release-style folder written by hand: bert_config.json, bert_model.ckpt.*, vocab.txt."""
    os.makedirs(folder, exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=os.path.join(folder, "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])
    with open(os.path.join(folder, "bert_config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    if teacher_json is not None:
        with open(os.path.join(folder, "teacher.json"), "w") as f:
            json.dump(teacher_json, f)
    return folder


def google_tensors_from_torch(model) -> dict:
    """Google-BERT names from a transformers BertForMaskedLM, following the original release
    conventions (independently of the package's mapping): Dense kernels are [in, out] (torch
    Linear weights transposed), LayerNorm weight/bias are gamma/beta."""
    out = {}
    for name, value in model.state_dict().items():
        value = value.numpy()
        if name.startswith("cls.predictions.decoder"):
            continue
        if name == "cls.predictions.bias":
            out["cls/predictions/output_bias"] = value
            continue
        name = name.replace("bert.", "bert/", 1).replace("cls.", "cls/", 1)
        name = name.replace("encoder.layer.", "encoder/layer_")
        parts = name.replace(".", "/").split("/")
        if parts[-2] == "LayerNorm":
            parts[-1] = {"weight": "gamma", "bias": "beta"}[parts[-1]]
        elif parts[-1] == "weight" and "embeddings" in parts[-2]:
            parts = parts[:-1]
        elif parts[-1] == "weight":
            parts[-1], value = "kernel", value.T
        out["/".join(parts)] = np.ascontiguousarray(value)
    return out


def google_config(vocab_size, hidden_act="gelu"):
    return {"attention_probs_dropout_prob": 0.1, "hidden_act": hidden_act,
            "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02,
            "intermediate_size": 64, "max_position_embeddings": 64, "num_attention_heads": 4,
            "num_hidden_layers": 2, "type_vocab_size": 2, "vocab_size": vocab_size}


def test_release_layout_matches_torch(tmp_path):
    """A checkpoint with the original names, from a torch model with the tanh GELU (which is
    what Google's "gelu" means), gives transformers' logits."""
    vocab = trained_vocab("en", 700, lower_case=True)
    model = torch_masked_lm(len(vocab), hidden_act="gelu_new", seed=11)
    tensors = google_tensors_from_torch(model)
    assert "bert/encoder/layer_0/attention/self/query/kernel" in tensors
    assert "cls/predictions/transform/dense/kernel" in tensors
    # Release checkpoints also hold the NSP head, optimizer slots and the step counter.
    tensors["cls/seq_relationship/output_weights"] = np.zeros([2, 32], np.float32)
    tensors["cls/seq_relationship/output_bias"] = np.zeros([2], np.float32)
    tensors["bert/embeddings/word_embeddings/adam_m"] = np.zeros([len(vocab), 32], np.float32)
    tensors["global_step"] = np.array(1000, np.int64)
    folder = write_google_folder(str(tmp_path / "uncased_L-2_H-32_A-4"), tensors,
                                 google_config(len(vocab)), vocab)
    teacher = load_teacher(folder, languages=["en"])
    assert teacher.format == "google_bert_checkpoint"
    assert teacher.lower_case is True  # from the folder name
    assert teacher.name == "uncased_L-2_H-32_A-4"
    assert teacher.config.hidden_act == "gelu_tanh"
    batch = make_inputs(len(vocab), seq_length=20, seed=4)
    error = relative_error(teacher.mlm_logits(**model_inputs(batch)).numpy(),
                           torch_logits(model, batch))
    print(f"google checkpoint parity: relative error {error:.2e}")
    assert error <= 1e-4


def test_export_round_trip_same_logits(tmp_path):
    vocab = trained_vocab("en", 700)
    for hidden_act in ("gelu", "gelu_tanh"):
        model, config = random_bert(len(vocab), hidden_act=hidden_act, seed=2)
        folder = str(tmp_path / hidden_act)
        export.export_google_bert_checkpoint(model.encoder_network, model.masked_lm, vocab, folder,
                                             lower_case=False, languages=["en"], name="en_cased")
        shapes = dict(tf.train.list_variables(os.path.join(folder, "bert_model.ckpt")))
        assert {n: tuple(s) for n, s in shapes.items()} == bert_mlm.google_variable_shapes(config)
        assert shapes["bert/encoder/layer_1/attention/output/dense/kernel"] == [32, 32]
        with open(os.path.join(folder, "bert_config.json")) as f:
            assert json.load(f)["hidden_act"] == {"gelu": "gelu_exact", "gelu_tanh": "gelu"}[
                hidden_act]
        teacher = load_teacher(folder)
        assert (teacher.name, teacher.lower_case, teacher.languages) == ("en_cased", False,
                                                                         ("en",))
        batch = model_inputs(make_inputs(len(vocab), seed=9))
        want = model(batch, training=False)["mlm_logits"].numpy()
        np.testing.assert_array_equal(teacher.mlm_logits(**batch).numpy(), want)


@pytest.mark.parametrize("name, lower_case", [
    # Google's table (google-research/bert tokenization.validate_case_matches_checkpoint).
    ("uncased_L-12_H-768_A-12", True), ("uncased_L-24_H-1024_A-16", True),
    ("multilingual_L-12_H-768_A-12", True), ("chinese_L-12_H-768_A-12", True),
    ("cased_L-12_H-768_A-12", False), ("cased_L-24_H-1024_A-16", False),
    ("multi_cased_L-12_H-768_A-12", False),
    # Google's other releases: whole word masking, the small BERTs.
    ("wwm_uncased_L-24_H-1024_A-16", True), ("wwm_cased_L-24_H-1024_A-16", False),
    ("uncased_L-2_H-128_A-2", True),
    # The word in hub names and renamed folders.
    ("bert-base-german-cased", False), ("bert-base-multilingual-uncased", True),
    ("wwm_uncased_L-24", True), ("muril-base-cased", False),
    # Names that say nothing: no word, both words, or the word inside another word.
    ("muril_base", None), ("bert-base-chinese", None), ("cased_to_uncased", None),
    ("encased", None), ("chinese_L-12_H-768_A-12_copy", None),
])
def test_release_names_give_the_casing(name, lower_case):
    by_name = common.lower_case_from_release_name(f"gs://bucket/teachers/{name}/")
    assert (None if by_name is None else by_name[0]) is lower_case
    if by_name is not None:
        assert name in by_name[1]


def test_casing_from_teacher_json_or_folder_name(tmp_path):
    vocab = trained_vocab("en", 700)
    model, _ = random_bert(len(vocab))
    source = export.export_google_bert_checkpoint(model.encoder_network, model.masked_lm, vocab,
                                                  str(tmp_path / "src"), lower_case=False)
    os.remove(os.path.join(source, "teacher.json"))
    # Tiny checkpoints in folders named like Google's releases: no teacher.json needed.
    for folder_name, lower_case in [("multi_cased_L-12_H-768_A-12", False),
                                    ("multilingual_L-12_H-768_A-12", True),
                                    ("chinese_L-12_H-768_A-12", True),
                                    ("cased_L-12_H-768_A-12", False),
                                    ("uncased_L-12_H-768_A-12", True)]:
        os.rename(source, str(tmp_path / folder_name))
        source = str(tmp_path / folder_name)
        teacher = load_teacher(source)
        assert (teacher.lower_case, teacher.name) == (lower_case, folder_name)
        assert teacher.manifest_entry().lower_case is lower_case
    # teacher.json wins over the name.
    with open(os.path.join(source, "teacher.json"), "w") as f:
        json.dump({"lower_case": False}, f)
    assert load_teacher(source).lower_case is False
    os.remove(os.path.join(source, "teacher.json"))
    # A name that says nothing is refused, and the message says how to state the casing.
    os.rename(source, str(tmp_path / "muril_base"))
    source = str(tmp_path / "muril_base")
    with pytest.raises(LoaderError, match="casing unknown") as error:
        load_teacher(source)
    message = str(error.value)
    assert source in message and "'muril_base'" in message
    assert "multilingual_L-12_H-768_A-12" in message
    assert 'add a teacher.json with {"lower_case": true}' in message
    with open(os.path.join(source, "teacher.json"), "w") as f:
        json.dump({"lower_case": False, "languages": ["hi", "en"]}, f)
    assert load_teacher(source).languages == ("hi", "en")


def test_missing_head_refused_unless_allowed(tmp_path):
    vocab = trained_vocab("en", 700)
    model, _ = random_bert(len(vocab))
    weights = bert_mlm.read_google_weights(model.encoder_network, model.masked_lm,
                                           bert_mlm.config_from_model(model.encoder_network,
                                                                      model.masked_lm))
    encoder_only = {n: v for n, v in weights.items() if not n.startswith("cls/")}
    folder = write_google_folder(str(tmp_path / "cased_encoder"), encoder_only,
                                 google_config(len(vocab)), vocab)
    with pytest.raises(LoaderError, match=r"MLM head \(cls/predictions/\*\) is missing"):
        load_teacher(folder)
    teacher = load_teacher(folder, allow_random_mlm_head=True)
    assert teacher.mlm_logits(**model_inputs(make_inputs(len(vocab)))).shape[-1] == len(vocab)

    partial = dict(encoder_only, **{"cls/predictions/output_bias": weights[
        "cls/predictions/output_bias"]})
    folder = write_google_folder(str(tmp_path / "cased_partial"), partial,
                                 google_config(len(vocab)), vocab)
    with pytest.raises(LoaderError, match="MLM head is incomplete"):
        load_teacher(folder, allow_random_mlm_head=True)
