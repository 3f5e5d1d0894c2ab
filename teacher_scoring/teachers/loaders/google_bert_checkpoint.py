"""Format (a): a Google-BERT TF1 checkpoint folder (original BERT / mBERT / MuRIL release layout).

    folder/
      bert_config.json                 Google BertConfig (vocab_size, hidden_size, ...)
      bert_model.ckpt.index            the checkpoint (any single prefix; a `checkpoint` state
      bert_model.ckpt.data-00000-of-00001   file picks one when there are several)
      vocab.txt                        WordPiece vocabulary, id = line number
      teacher.json                     optional: {"lower_case": ..., "languages": [...], "name": ...}

Variables carry the original names (`bert/embeddings/word_embeddings`,
`bert/encoder/layer_0/attention/self/query/kernel`, `cls/predictions/transform/dense/kernel`,
`cls/predictions/output_bias`, ...); optimizer slots and the NSP head are ignored.

Casing (bert_config.json does not hold it): teacher.json's `lower_case` when present; otherwise
the folder's name, read with Google's own table of its release names
(google-research/bert `tokenization.validate_case_matches_checkpoint`: `uncased_*`,
`multilingual_L-12_H-768_A-12` and `chinese_L-12_H-768_A-12` are lower-cased; `cased_*` and
`multi_cased_*` are cased; see `common.lower_case_from_release_name`); otherwise loading fails
with a message saying how to state it.

Activation: in the original BERT code (and tf-models' BertConfig) `"gelu"` is the tanh
approximation, so that is what "gelu" means here. `"gelu_exact"` (an extension written by
`teacher_scoring.teachers.export` for models with the exact erf GELU) selects the exact form.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import logging
import tensorflow as tf

from teacher_scoring.teachers import teacher as teacher_lib
from teacher_scoring.teachers.loaders import bert_mlm, common
from teacher_scoring.teachers.loaders.bert_mlm import LoaderError

FORMAT = "google_bert_checkpoint"
CONFIG_FILE = "bert_config.json"
DEFAULT_PREFIX = "bert_model.ckpt"
LAYOUT = "bert_config.json, bert_model.ckpt.* and vocab.txt"

# Google bert_config.json hidden_act → canonical activation (see bert_mlm).
HIDDEN_ACT = {"gelu": "gelu_tanh", "gelu_exact": "gelu", "relu": "relu", "tanh": "tanh",
              "linear": "linear"}
HIDDEN_ACT_NAME = {"gelu_tanh": "gelu", "gelu": "gelu_exact", "relu": "relu", "tanh": "tanh",
                   "linear": "linear"}


def is_folder(path: str) -> bool:
    """Whether `path` has this format's marker file."""
    return tf.io.gfile.exists(os.path.join(path, CONFIG_FILE))


def parse_config(data: dict, where: str) -> bert_mlm.BertMLMConfig:
    """BertMLMConfig of a Google bert_config.json dict."""
    if data.get("embedding_size") not in (None, data.get("hidden_size")):
        raise LoaderError(f"{where}: embedding_size={data['embedding_size']} (a factorised "
                          "embedding, e.g. ALBERT) is not a BERT checkpoint")
    return bert_mlm.config_from_fields(data, where, HIDDEN_ACT, type_vocab_size_default=16)


def config_to_dict(config: bert_mlm.BertMLMConfig) -> dict:
    """The Google bert_config.json dict of a BertMLMConfig."""
    return {
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": HIDDEN_ACT_NAME[config.hidden_act],
        "hidden_dropout_prob": 0.1,
        "hidden_size": config.hidden_size,
        "initializer_range": config.initializer_range,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_position_embeddings,
        "num_attention_heads": config.num_attention_heads,
        "num_hidden_layers": config.num_layers,
        "type_vocab_size": config.type_vocab_size,
        "vocab_size": config.vocab_size,
    }


def find_checkpoint(path: str) -> str:
    """The checkpoint prefix inside a folder."""
    default = os.path.join(path, DEFAULT_PREFIX)
    if tf.io.gfile.exists(default + ".index"):
        return default
    latest = tf.train.latest_checkpoint(path)
    if latest:
        return latest
    indexes = sorted(tf.io.gfile.glob(os.path.join(path, "*.index")))
    if not indexes:
        raise LoaderError(f"{default}.index: missing (a {FORMAT} folder holds {LAYOUT})")
    if len(indexes) > 1:
        raise LoaderError(f"{path}: several checkpoints ({[os.path.basename(i) for i in indexes]})"
                          " and no `checkpoint` state file naming one")
    return indexes[0][:-len(".index")]


def load(path: str, name: str | None = None, languages: Sequence[str] = (),
         allow_random_mlm_head: bool = False) -> teacher_lib.Teacher:
    """Loads a Google-BERT checkpoint folder as a Teacher (BertPretrainerV2 on tf-models)."""
    config, config_path, vocab, metadata = common.read_bert_folder(
        path, CONFIG_FILE, parse_config, FORMAT, LAYOUT)
    prefix = find_checkpoint(path)
    lower_case = metadata.lower_case
    if lower_case is None:
        by_name = common.lower_case_from_release_name(path)
        if by_name is None:
            raise LoaderError(
                f"{path}: casing unknown: {CONFIG_FILE} does not hold it, there is no "
                f"{teacher_lib.TEACHER_JSON}, and the folder name "
                f"{os.path.basename(os.path.normpath(path))!r} is not one of Google's release "
                f"names ({', '.join(common.GOOGLE_LOWER_CASED + common.GOOGLE_CASED)}, ...) "
                f"and holds neither the word 'uncased' nor 'cased': {common.CASING_HELP}")
        lower_case, rule = by_name
        logging.info("%s: %s from the %s", path, "uncased" if lower_case else "cased", rule)
    try:
        # The reader of the prefix itself (load_checkpoint would look for a directory first).
        reader = tf.compat.v1.train.NewCheckpointReader(prefix)
        shapes = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}
    except (tf.errors.OpError, ValueError) as error:
        raise LoaderError(f"{prefix}: cannot read the checkpoint ({error})") from error
    has_head = bert_mlm.check_google_weights(
        shapes, config, len(vocab), f"{prefix} (with {config_path})",
        allow_random_mlm_head=allow_random_mlm_head)
    names = bert_mlm.google_variable_shapes(config, with_head=has_head)
    weights = {n: reader.get_tensor(n) for n in names if n in shapes}
    return common.teacher_from_google_weights(path, FORMAT, config, weights, has_head, vocab,
                                              lower_case, metadata, name, languages)
