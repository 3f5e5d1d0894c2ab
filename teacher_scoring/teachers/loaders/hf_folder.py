"""Format (b): a Hugging Face BERT folder, read without torch.

    folder/
      config.json                BertConfig (model_type "bert")
      model.safetensors          weights (or model.safetensors.index.json + its shards)
      vocab.txt                  WordPiece vocabulary
      tokenizer_config.json      optional: do_lower_case
      teacher.json               optional: {"languages": [...], "name": ..., "lower_case": ...}

Casing: tokenizer_config.json's do_lower_case; else teacher.json's lower_case; else the folder's
name when it states it (`common.lower_case_from_release_name`: `bert-base-german-cased`,
`multi_cased_L-12_H-768_A-12`, ...); else uncased, BertTokenizer's default.

Weights are read with the `safetensors` NumPy API. `BertForMaskedLM` names
(`bert.embeddings.*`, `bert.encoder.layer.N.*`, `cls.predictions.*`) and `BertModel` names (no
`bert.` prefix) are both accepted; torch `Linear` weights ([out, in]) are transposed into
kernels ([in, out]); the decoder must be tied to the word embeddings (BERT's default), its bias
is `cls.predictions.bias`. A `BertModel` folder (no `cls.predictions.*`, e.g. a
sentence-transformers encoder) is refused: it has no MLM head. `allow_random_mlm_head=True`
(tests only) loads it with a freshly initialised head.

Activation names follow transformers: "gelu" is the exact erf GELU; "gelu_new",
"gelu_pytorch_tanh" and "gelu_fast" are the tanh approximation. LayerNorm epsilon must be 1e-12
(tf-models' BertEncoderV2 fixes it). Only absolute position embeddings are supported.
"""

from __future__ import annotations

import json
import os
import re
from typing import Mapping, Sequence

import numpy as np
import safetensors
import safetensors.numpy
import tensorflow as tf

from teacher_scoring.teachers import teacher as teacher_lib
from teacher_scoring.teachers.loaders import bert_mlm, common
from teacher_scoring.teachers.loaders.bert_mlm import LoaderError

FORMAT = "hf_folder"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
LAYOUT = "config.json, model.safetensors and vocab.txt (tokenizer_config.json optional)"

# transformers hidden_act → canonical activation (see bert_mlm).
HIDDEN_ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
              "gelu_fast": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu",
              "tanh": "tanh", "linear": "linear"}
HIDDEN_ACT_NAME = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu",
                   "tanh": "tanh", "linear": "linear"}

# (Hugging Face pattern, Google pattern, transpose). `{i}` is a layer index. Encoder names are
# given without the `bert.` prefix of BertForMaskedLM.
_ENCODER_NAMES = (
    ("embeddings.word_embeddings.weight", "bert/embeddings/word_embeddings", False),
    ("embeddings.position_embeddings.weight", "bert/embeddings/position_embeddings", False),
    ("embeddings.token_type_embeddings.weight", "bert/embeddings/token_type_embeddings", False),
    ("embeddings.LayerNorm.weight", "bert/embeddings/LayerNorm/gamma", False),
    ("embeddings.LayerNorm.bias", "bert/embeddings/LayerNorm/beta", False),
    ("encoder.layer.{i}.attention.self.query.weight",
     "bert/encoder/layer_{i}/attention/self/query/kernel", True),
    ("encoder.layer.{i}.attention.self.query.bias",
     "bert/encoder/layer_{i}/attention/self/query/bias", False),
    ("encoder.layer.{i}.attention.self.key.weight",
     "bert/encoder/layer_{i}/attention/self/key/kernel", True),
    ("encoder.layer.{i}.attention.self.key.bias",
     "bert/encoder/layer_{i}/attention/self/key/bias", False),
    ("encoder.layer.{i}.attention.self.value.weight",
     "bert/encoder/layer_{i}/attention/self/value/kernel", True),
    ("encoder.layer.{i}.attention.self.value.bias",
     "bert/encoder/layer_{i}/attention/self/value/bias", False),
    ("encoder.layer.{i}.attention.output.dense.weight",
     "bert/encoder/layer_{i}/attention/output/dense/kernel", True),
    ("encoder.layer.{i}.attention.output.dense.bias",
     "bert/encoder/layer_{i}/attention/output/dense/bias", False),
    ("encoder.layer.{i}.attention.output.LayerNorm.weight",
     "bert/encoder/layer_{i}/attention/output/LayerNorm/gamma", False),
    ("encoder.layer.{i}.attention.output.LayerNorm.bias",
     "bert/encoder/layer_{i}/attention/output/LayerNorm/beta", False),
    ("encoder.layer.{i}.intermediate.dense.weight",
     "bert/encoder/layer_{i}/intermediate/dense/kernel", True),
    ("encoder.layer.{i}.intermediate.dense.bias",
     "bert/encoder/layer_{i}/intermediate/dense/bias", False),
    ("encoder.layer.{i}.output.dense.weight", "bert/encoder/layer_{i}/output/dense/kernel", True),
    ("encoder.layer.{i}.output.dense.bias", "bert/encoder/layer_{i}/output/dense/bias", False),
    ("encoder.layer.{i}.output.LayerNorm.weight",
     "bert/encoder/layer_{i}/output/LayerNorm/gamma", False),
    ("encoder.layer.{i}.output.LayerNorm.bias",
     "bert/encoder/layer_{i}/output/LayerNorm/beta", False),
    ("pooler.dense.weight", "bert/pooler/dense/kernel", True),
    ("pooler.dense.bias", "bert/pooler/dense/bias", False),
)
_HEAD_NAMES = (
    ("cls.predictions.transform.dense.weight", "cls/predictions/transform/dense/kernel", True),
    ("cls.predictions.transform.dense.bias", "cls/predictions/transform/dense/bias", False),
    ("cls.predictions.transform.LayerNorm.weight", "cls/predictions/transform/LayerNorm/gamma",
     False),
    ("cls.predictions.transform.LayerNorm.bias", "cls/predictions/transform/LayerNorm/beta",
     False),
    ("cls.predictions.bias", "cls/predictions/output_bias", False),
)
# Present in some folders, not needed: buffers, the NSP head, the (tied) decoder.
_OUTPUT_BIAS = "cls.predictions.bias"
_DECODER_BIAS = "cls.predictions.decoder.bias"
_IGNORED = re.compile(r"^(bert\.)?embeddings\.position_ids$|^cls\.seq_relationship\.|"
                      r"^cls\.predictions\.decoder\.(weight|bias)$")


def _compile(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(r"\{i\}", r"(\d+)") + "$")


_RULES = tuple((_compile(hf), google, transpose) for hf, google, transpose in _ENCODER_NAMES)
_HEAD_RULES = tuple((_compile(hf), google, transpose) for hf, google, transpose in _HEAD_NAMES)


def hf_to_google(key: str) -> tuple[str, bool] | None:
    """(Google name, transpose) of a Hugging Face BERT weight name; None if not a BERT weight."""
    key = re.sub(r"\.LayerNorm\.gamma$", ".LayerNorm.weight", key)  # pre-2019 names
    key = re.sub(r"\.LayerNorm\.beta$", ".LayerNorm.bias", key)
    for regex, google, transpose in _HEAD_RULES:
        if regex.match(key):
            return google, transpose
    if key.startswith("bert."):
        key = key[len("bert."):]
    for regex, google, transpose in _RULES:
        match = regex.match(key)
        if match:
            return (google.replace("{i}", match.group(1)) if match.groups() else google), transpose
    return None


def google_to_hf(google_name: str) -> tuple[str, bool]:
    """(BertForMaskedLM weight name, transpose) of a Google name (used by the exporter)."""
    for hf, google, transpose in _HEAD_NAMES:
        if google == google_name:
            return hf, transpose
    for hf, google, transpose in _ENCODER_NAMES:
        regex = re.compile("^" + re.escape(google).replace(r"\{i\}", r"(\d+)") + "$")
        match = regex.match(google_name)
        if match:
            return "bert." + (hf.replace("{i}", match.group(1)) if match.groups() else hf), transpose
    raise KeyError(google_name)


def is_folder(path: str) -> bool:
    """Whether `path` has this format's marker file."""
    return tf.io.gfile.exists(os.path.join(path, CONFIG_FILE))


def parse_config(data: dict, where: str) -> bert_mlm.BertMLMConfig:
    """BertMLMConfig of a transformers BertConfig dict (config.json)."""
    model_type = data.get("model_type", "bert")
    if model_type != "bert":
        raise LoaderError(f"{where}: model_type {model_type!r} is not supported (only 'bert')")
    if data.get("position_embedding_type", "absolute") != "absolute":
        raise LoaderError(f"{where}: position_embedding_type "
                          f"{data['position_embedding_type']!r} is not supported (only 'absolute')")
    if data.get("is_decoder"):
        raise LoaderError(f"{where}: is_decoder=true: a causal BERT is not a masked LM")
    eps = data.get("layer_norm_eps", 1e-12)
    if not bert_mlm.isclose_eps(eps):
        raise LoaderError(f"{where}: layer_norm_eps={eps} is not supported (tf-models' BERT "
                          "encoder uses 1e-12, as BERT does)")
    if data.get("tie_word_embeddings", True) is False:
        raise LoaderError(f"{where}: tie_word_embeddings=false is not supported (the MLM decoder "
                          "must be the word embedding table)")
    return bert_mlm.config_from_fields(data, where, HIDDEN_ACT, type_vocab_size_default=2)


def config_to_dict(config: bert_mlm.BertMLMConfig) -> dict:
    """The transformers config.json dict (BertForMaskedLM) of a BertMLMConfig."""
    return {
        "architectures": ["BertForMaskedLM"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": HIDDEN_ACT_NAME[config.hidden_act],
        "hidden_dropout_prob": 0.1,
        "hidden_size": config.hidden_size,
        "initializer_range": config.initializer_range,
        "intermediate_size": config.intermediate_size,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": config.max_position_embeddings,
        "model_type": "bert",
        "num_attention_heads": config.num_attention_heads,
        "num_hidden_layers": config.num_layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "type_vocab_size": config.type_vocab_size,
        "vocab_size": config.vocab_size,
    }


def read_lower_case(path: str) -> bool | None:
    """do_lower_case from tokenizer_config.json; None if the file is absent.

    Refuses settings TeacherTokenizer cannot reproduce (accent stripping that differs from the
    casing, or CJK characters not split).
    """
    config_path = os.path.join(path, TOKENIZER_CONFIG_FILE)
    if not tf.io.gfile.exists(config_path):
        return None
    data = common.read_json(config_path)
    lower_case = data.get("do_lower_case", True)
    if not isinstance(lower_case, bool):
        raise LoaderError(f"{config_path}: do_lower_case must be true or false, got {lower_case!r}")
    strip_accents = data.get("strip_accents")
    if strip_accents is not None and strip_accents != lower_case:
        raise LoaderError(
            f"{config_path}: strip_accents={strip_accents} with do_lower_case={lower_case} is not "
            "supported (the teacher tokenizer strips accents exactly when it lower-cases)")
    if data.get("tokenize_chinese_chars", True) is False:
        raise LoaderError(f"{config_path}: tokenize_chinese_chars=false is not supported")
    if data.get("do_basic_tokenize", True) is False:
        raise LoaderError(f"{config_path}: do_basic_tokenize=false is not supported")
    return lower_case


def weight_files(path: str) -> list[str]:
    """The safetensors files of a folder (one file, or the shards of an index)."""
    single = os.path.join(path, WEIGHTS_FILE)
    index = os.path.join(path, WEIGHTS_INDEX_FILE)
    if tf.io.gfile.exists(single):
        return [single]
    if tf.io.gfile.exists(index):
        weight_map = common.read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise LoaderError(f"{index}: no 'weight_map'")
        files = [os.path.join(path, f) for f in sorted(set(weight_map.values()))]
        for f in files:
            if not tf.io.gfile.exists(f):
                raise LoaderError(f"{f}: missing (listed in {index})")
        return files
    others = [n for n in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
              if tf.io.gfile.exists(os.path.join(path, n))]
    hint = (f" (found {others}: convert them to safetensors once, e.g. "
            "BertForMaskedLM.from_pretrained(folder).save_pretrained(folder, "
            "safe_serialization=True))" if others else "")
    raise LoaderError(f"{single}: missing (a {FORMAT} folder holds {LAYOUT}){hint}")


_MAX_HEADER_BYTES = 100 << 20


def read_safetensors_header(path: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Weight name → (shape, dtype) from a safetensors file's header, without reading the data.

    Read through tf.io.gfile, so that folders on GCS (gs://) are checked before anything is
    downloaded. (The format: 8 bytes little-endian header length, then the JSON header.)
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            size = f.read(8)
            length = int.from_bytes(size, "little") if len(size) == 8 else 0
            if not 0 < length <= _MAX_HEADER_BYTES:
                raise LoaderError(f"{path}: not a safetensors file (bad header length)")
            header = json.loads(f.read(length))
    except (tf.errors.OpError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LoaderError(f"{path}: cannot read the safetensors header ({error})") from error
    if not isinstance(header, dict):
        raise LoaderError(f"{path}: not a safetensors file (header is not a JSON object)")
    out = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(entry, dict) or "shape" not in entry or "dtype" not in entry:
            raise LoaderError(f"{path}: malformed safetensors header entry {key!r}")
        out[key] = (tuple(int(d) for d in entry["shape"]), str(entry["dtype"]))
    return out


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """All arrays of a safetensors file (safetensors' NumPy API; memory-mapped when local)."""
    try:
        if "://" not in path:
            return safetensors.numpy.load_file(path)
        with tf.io.gfile.GFile(path, "rb") as f:
            return safetensors.numpy.load(f.read())
    except (OSError, ValueError, safetensors.SafetensorError, tf.errors.OpError) as error:
        raise LoaderError(f"{path}: cannot read the safetensors file ({error})") from error


def _header(files: list[str]) -> dict[str, tuple[tuple[int, ...], str, str]]:
    """Weight name → (shape, dtype, file) over all weight files (headers only)."""
    out = {}
    for f in files:
        for key, (shape, dtype) in read_safetensors_header(f).items():
            if key in out:
                raise LoaderError(f"{f}: weight {key} is also in {out[key][2]}")
            out[key] = (shape, dtype, f)
    return out


def _google_shapes(header: Mapping[str, tuple], where: str) -> tuple[dict, dict]:
    """Google name → shape, and Google name → (HF name, transpose), checking every name."""
    shapes, sources, unknown = {}, {}, []
    for key, (shape, dtype, _) in header.items():
        if key == _DECODER_BIAS and _OUTPUT_BIAS not in header:
            mapped = ("cls/predictions/output_bias", False)  # older folders name only this one
        elif _IGNORED.match(key):
            continue
        else:
            mapped = hf_to_google(key)
        if mapped is None:
            unknown.append(key)
            continue
        google, transpose = mapped
        if google in shapes:  # e.g. both `bert.`-prefixed and bare names
            raise LoaderError(f"{where}: weight {google} appears twice "
                              f"({sources[google][0]} and {key})")
        if dtype not in ("F32", "F16", "F64"):
            raise LoaderError(f"{where}: weight {key} has dtype {dtype}; only F32/F16/F64 can be "
                              "read with NumPy (convert the weights to float32)")
        shapes[google] = tuple(reversed(shape)) if transpose else tuple(shape)
        sources[google] = (key, transpose)
    if unknown:
        raise LoaderError(f"{where}: {len(unknown)} weight(s) are not part of a BERT masked LM "
                          f"(another architecture?): {sorted(unknown)[:5]}")
    return shapes, sources


def _google_name_of(sources: Mapping[str, tuple[str, bool]]):
    def name_of(google: str) -> str:
        if google in sources:
            return sources[google][0]
        try:
            return google_to_hf(google)[0]
        except KeyError:
            return google
    return name_of


def load(path: str, name: str | None = None, languages: Sequence[str] = (),
         allow_random_mlm_head: bool = False) -> teacher_lib.Teacher:
    """Loads a Hugging Face BERT folder as a Teacher (BertPretrainerV2 on tf-models)."""
    config, config_path, vocab, metadata = common.read_bert_folder(
        path, CONFIG_FILE, parse_config, FORMAT, LAYOUT)
    files = weight_files(path)
    lower_case = read_lower_case(path)
    if lower_case is not None and metadata.lower_case not in (None, lower_case):
        raise LoaderError(f"{path}: {teacher_lib.TEACHER_JSON} says lower_case="
                          f"{metadata.lower_case} but {TOKENIZER_CONFIG_FILE} says do_lower_case="
                          f"{lower_case}")
    if lower_case is None:
        lower_case = metadata.lower_case
    if lower_case is None:
        # Neither file states it: the folder's name (bert-base-german-cased, ...), else
        # BertTokenizer's default, uncased.
        by_name = common.lower_case_from_release_name(path)
        lower_case = True if by_name is None else by_name[0]
    where = files[0] if len(files) == 1 else os.path.join(path, WEIGHTS_INDEX_FILE)
    header = _header(files)
    shapes, sources = _google_shapes(header, where)
    has_head = bert_mlm.check_google_weights(
        shapes, config, len(vocab), f"{where} (with {config_path})",
        head_names_hint="cls.predictions.*", allow_random_mlm_head=allow_random_mlm_head,
        name_of=_google_name_of(sources))

    arrays = {}
    for f in files:
        arrays.update(read_safetensors(f))
    _check_tied_decoder(arrays, sources, where)
    weights = {}
    for google, (key, transpose) in sources.items():
        value = np.asarray(arrays[key], np.float32)
        weights[google] = value.T if transpose else value
    del arrays
    return common.teacher_from_google_weights(path, FORMAT, config, weights, has_head, vocab,
                                              lower_case, metadata, name, languages)


def _check_tied_decoder(arrays: Mapping[str, np.ndarray], sources, where: str) -> None:
    """The MLM decoder must equal the word embeddings (tf-models' MaskedLM ties them)."""
    decoder = arrays.get("cls.predictions.decoder.weight")
    if decoder is None:
        return
    embeddings = arrays[sources[bert_mlm.WORD_EMBEDDINGS][0]]
    if decoder.shape != embeddings.shape or not np.array_equal(decoder, embeddings):
        raise LoaderError(f"{where}: cls.predictions.decoder.weight differs from the word "
                          "embeddings: untied MLM decoders are not supported")
