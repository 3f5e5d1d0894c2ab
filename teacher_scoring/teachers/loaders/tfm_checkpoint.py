"""Format (c): a tf-models-official TF2 (object-based) checkpoint with its encoder config.

    folder/
      encoder_config.yaml        (or encoder_config.json) the architecture, one of:
                                   * an EncoderConfig:   {type: bert_v2, bert_v2: {hidden_size: ...}}
                                   * a PretrainerConfig: {encoder: {type: ..., ...},
                                                          mlm_activation: gelu, ...}
                                     (tf-models' `task.model` section of a pretraining experiment)
                                   * bare BertEncoderConfig fields: {hidden_size: ..., ...}
                                     (tf-models' default encoder type, "bert")
      vocab.txt                  WordPiece vocabulary
      teacher.json               {"lower_case": true|false, "languages": [...], "name": ...}
                                 (lower_case is required: nothing else in the folder says it)
      ckpt.index, ckpt.data-*    a tf.train.Checkpoint; a `checkpoint` state file (as written by
                                 tf.train.CheckpointManager / the tf-models trainer) picks the
                                 latest when there are several

The checkpoint is either `tf.train.Checkpoint(encoder=..., masked_lm=...)`, i.e.
`BertPretrainerV2.checkpoint_items` (what `teacher_scoring.teachers.export.export_tfm_checkpoint`
writes), or a tf-models trainer checkpoint `tf.train.Checkpoint(model=BertPretrainerV2, ...)`.
The model is rebuilt exactly as tf-models' masked-LM task builds it
(`encoders.build_encoder(config.encoder)` + `BertPretrainerV2(mlm_activation=...)`), so
activation names follow tf-models: "gelu" is the tanh approximation; the exact erf GELU is
"mergedistill>exact_gelu" (registered by `teacher_scoring.teachers.loaders.bert_mlm`). For the EncoderConfig
and bare forms the MLM head's activation is the encoder's `hidden_activation` (as in BERT).
Encoder types "bert" (BertEncoder) and "bert_v2" (BertEncoderV2) are supported.
"""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf
import tf_keras
import yaml
from official.modeling import tf_utils
from official.nlp.configs import bert as bert_configs
from official.nlp.configs import encoders
from official.nlp.modeling import models

from teacher_scoring.teachers import teacher as teacher_lib
from teacher_scoring.teachers.loaders import bert_mlm, common
from teacher_scoring.teachers.loaders.bert_mlm import LoaderError

FORMAT = "tfm_checkpoint"
CONFIG_FILES = ("encoder_config.yaml", "encoder_config.json")
LAYOUT = ("encoder_config.yaml (or .json), vocab.txt, teacher.json and a tf.train.Checkpoint "
          "(ckpt.index, ckpt.data-*)")
SUPPORTED_TYPES = ("bert", "bert_v2")

# Checkpoint layouts: where the encoder and the MLM head live in the object graph.
ITEMS_LAYOUT = "items"      # tf.train.Checkpoint(encoder=..., masked_lm=...)
TRAINER_LAYOUT = "trainer"  # tf.train.Checkpoint(model=BertPretrainerV2)
_ENCODER_PREFIX = {ITEMS_LAYOUT: "encoder/", TRAINER_LAYOUT: "model/encoder_network/"}
_HEAD_PREFIX = {ITEMS_LAYOUT: "masked_lm/", TRAINER_LAYOUT: "model/masked_lm/"}
_EMBEDDING_KEY = "_embedding_layer/embeddings/.ATTRIBUTES/VARIABLE_VALUE"
_HEAD_TABLE_KEY = "embedding_table/.ATTRIBUTES/VARIABLE_VALUE"

# Canonical activation (bert_mlm) → tf-models activation name.
TFM_ACTIVATION_NAME = {"gelu_tanh": "gelu", "gelu": bert_mlm.TFM_EXACT_GELU, "relu": "relu",
                       "silu": "swish", "tanh": "tanh", "linear": "linear"}


def is_folder(path: str) -> bool:
    """Whether `path` has one of this format's marker files."""
    return any(tf.io.gfile.exists(os.path.join(path, name)) for name in CONFIG_FILES)


def config_path_of(path: str) -> str:
    found = [os.path.join(path, n) for n in CONFIG_FILES if tf.io.gfile.exists(os.path.join(path, n))]
    if not found:
        raise LoaderError(f"{os.path.join(path, CONFIG_FILES[0])}: missing (a {FORMAT} folder "
                          f"holds {LAYOUT})")
    if len(found) > 1:
        raise LoaderError(f"{path}: both {CONFIG_FILES[0]} and {CONFIG_FILES[1]}; keep one")
    return found[0]


def parse_config(data, where: str) -> bert_configs.PretrainerConfig:
    """The tf-models PretrainerConfig a config file describes (any of the three forms)."""
    if not isinstance(data, dict):
        raise LoaderError(f"{where}: expected a mapping, got {type(data).__name__}")
    try:
        if "encoder" in data:
            config = bert_configs.PretrainerConfig()
            config.override(data, is_strict=True)
        else:
            encoder = encoders.EncoderConfig()
            if "type" in data:
                encoder.override(data, is_strict=True)
            else:
                encoder.override({"type": "bert", "bert": data}, is_strict=True)
            config = bert_configs.PretrainerConfig(encoder=encoder)
            config.mlm_activation = encoder.get().hidden_activation
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise LoaderError(f"{where}: not a tf-models EncoderConfig / PretrainerConfig ({error})"
                          ) from error
    if config.encoder.type not in SUPPORTED_TYPES:
        raise LoaderError(f"{where}: encoder type {config.encoder.type!r} is not supported "
                          f"(supported: {list(SUPPORTED_TYPES)})")
    encoder_config = config.encoder.get()
    for field in ("vocab_size", "hidden_size", "num_layers", "num_attention_heads",
                  "intermediate_size", "max_position_embeddings", "type_vocab_size"):
        value = getattr(encoder_config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise LoaderError(f"{where}: encoder {field} must be a positive integer, got {value!r}")
    if encoder_config.hidden_size % encoder_config.num_attention_heads:
        raise LoaderError(f"{where}: hidden_size={encoder_config.hidden_size} is not a multiple "
                          f"of num_attention_heads={encoder_config.num_attention_heads}")
    for name in (encoder_config.hidden_activation, config.mlm_activation):
        try:
            tf_utils.get_activation(name)
        except ValueError as error:
            raise LoaderError(f"{where}: unknown activation {name!r} ({error})") from error
    return config


def read_config(path: str) -> bert_configs.PretrainerConfig:
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            data = yaml.safe_load(f.read())
        except yaml.YAMLError as error:
            raise LoaderError(f"{path}: not valid YAML/JSON ({error})") from error
    return parse_config(data, path)


def encoder_config_dict(config: bert_mlm.BertMLMConfig, encoder_type: str = "bert_v2") -> dict:
    """The EncoderConfig dict (encoder_config.yaml content) of a BERT config."""
    encoder = encoders.EncoderConfig(type=encoder_type)
    setattr(encoder, encoder_type, encoders.BertEncoderConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_attention_heads=config.num_attention_heads,
        hidden_activation=TFM_ACTIVATION_NAME[config.hidden_act],
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        initializer_range=config.initializer_range))
    return encoder.as_dict()


def find_checkpoint(path: str) -> str:
    """The checkpoint prefix inside a folder."""
    latest = tf.train.latest_checkpoint(path)
    if latest:
        return latest
    indexes = sorted(tf.io.gfile.glob(os.path.join(path, "*.index")))
    if not indexes:
        raise LoaderError(f"{os.path.join(path, 'ckpt.index')}: missing (a {FORMAT} folder "
                          f"holds {LAYOUT})")
    if len(indexes) > 1:
        raise LoaderError(f"{path}: several checkpoints ({[os.path.basename(i) for i in indexes]})"
                          " and no `checkpoint` state file naming one")
    return indexes[0][:-len(".index")]


def _layout(keys: dict[str, list[int]], where: str) -> str:
    if any(k.startswith("encoder/") for k in keys):
        return ITEMS_LAYOUT
    if any(k.startswith("model/encoder_network/") for k in keys):
        return TRAINER_LAYOUT
    raise LoaderError(f"{where}: neither an `encoder` nor a `model.encoder_network` object in the "
                      "checkpoint (expected tf.train.Checkpoint(encoder=..., masked_lm=...) or a "
                      "tf-models trainer checkpoint of a BertPretrainerV2)")


def _check_layers(keys: dict[str, list[int]], encoder_prefix: str, encoder_config,
                  where: str) -> None:
    """Layer count and feed-forward width from the checkpoint keys, before building anything
    (everything else is checked by the restore itself)."""
    layer_prefix = encoder_prefix + "_transformer_layers/"
    layers = {int(k[len(layer_prefix):].split("/", 1)[0]) for k in keys
              if k.startswith(layer_prefix)}
    if layers and layers != set(range(encoder_config.num_layers)):
        raise LoaderError(f"{where}: config num_layers={encoder_config.num_layers} does not match "
                          f"the weights, which have {len(layers)} transformer layers")
    kernel = keys.get(layer_prefix + "0/_intermediate_dense/kernel/.ATTRIBUTES/VARIABLE_VALUE")
    if kernel is not None and kernel[-1] != encoder_config.intermediate_size:
        raise LoaderError(f"{where}: config intermediate_size={encoder_config.intermediate_size} "
                          f"does not match the weights: the feed-forward kernel has shape "
                          f"{list(kernel)}")


def build_model(config: bert_configs.PretrainerConfig) -> models.BertPretrainerV2:
    """The BertPretrainerV2 tf-models' masked-LM task builds for `config` (variables created)."""
    encoder = encoders.build_encoder(config.encoder)
    model = models.BertPretrainerV2(
        encoder_network=encoder,
        mlm_activation=tf_utils.get_activation(config.mlm_activation),
        mlm_initializer=tf_keras.initializers.TruncatedNormal(
            stddev=config.mlm_initializer_range))
    dummy = tf.zeros([1, 2], tf.int32)
    model(dict(input_word_ids=dummy, input_mask=tf.ones_like(dummy), input_type_ids=dummy,
               masked_lm_positions=dummy), training=False)
    return model


def load(path: str, name: str | None = None, languages: Sequence[str] = (),
         allow_random_mlm_head: bool = False) -> teacher_lib.Teacher:
    """Loads a tf-models TF2 checkpoint folder as a Teacher."""
    common.check_folder(path)
    config_path = config_path_of(path)
    common.require_files(path, [common.VOCAB_TXT, teacher_lib.TEACHER_JSON], FORMAT, LAYOUT)
    prefix = find_checkpoint(path)
    config = read_config(config_path)
    encoder_config = config.encoder.get()
    vocab = common.load_vocab(os.path.join(path, common.VOCAB_TXT))
    metadata = common.load_metadata(os.path.join(path, teacher_lib.TEACHER_JSON))
    if metadata.lower_case is None:
        raise LoaderError(f"{os.path.join(path, teacher_lib.TEACHER_JSON)}: 'lower_case' is "
                          f"required for a {FORMAT} folder")
    if encoder_config.vocab_size != len(vocab):
        raise LoaderError(f"{config_path}: vocab_size={encoder_config.vocab_size} but "
                          f"{os.path.join(path, common.VOCAB_TXT)} has {len(vocab)} tokens")
    try:
        reader = tf.compat.v1.train.NewCheckpointReader(prefix)
        keys = {k: list(v) for k, v in reader.get_variable_to_shape_map().items()}
    except (tf.errors.OpError, ValueError) as error:
        raise LoaderError(f"{prefix}: cannot read the checkpoint ({error})") from error
    layout = _layout(keys, prefix)
    has_head = any(k.startswith(_HEAD_PREFIX[layout]) for k in keys)
    if not has_head and not allow_random_mlm_head:
        raise LoaderError(f"{prefix}: the MLM head (masked_lm) is missing: the checkpoint holds "
                          "an encoder without its masked-LM head, which cannot predict masked "
                          "tokens, so it cannot be a teacher")
    # A shared variable is stored once, under its shortest object path: the head's tied
    # embedding_table when the head is there, the encoder's embedding layer otherwise.
    table_keys = [_HEAD_PREFIX[layout] + _HEAD_TABLE_KEY, _ENCODER_PREFIX[layout] + _EMBEDDING_KEY]
    tables = [keys[k] for k in table_keys if k in keys]
    if not tables:
        raise LoaderError(f"{prefix}: no word embedding table ({' or '.join(table_keys)}) in the "
                          "checkpoint")
    table = tables[0]
    width = encoder_config.embedding_size or encoder_config.hidden_size
    if table[1] != width:
        raise LoaderError(f"{prefix} (with {config_path}): config hidden_size={width} does not "
                          f"match the weights: the embedding table has shape {list(table)}")
    if table[0] != len(vocab):
        raise LoaderError(f"{prefix}: vocab.txt has {len(vocab)} tokens but the embedding table "
                          f"has {table[0]} rows")

    _check_layers(keys, _ENCODER_PREFIX[layout], encoder_config, f"{prefix} (with {config_path})")

    model = build_model(config)
    parts = {"encoder": model.encoder_network}
    if has_head:
        parts["masked_lm"] = model.masked_lm
    if layout == ITEMS_LAYOUT:
        checkpoint = tf.train.Checkpoint(**parts)
    else:
        parts["encoder_network"] = parts.pop("encoder")
        checkpoint = tf.train.Checkpoint(model=tf.train.Checkpoint(**parts))
    try:
        checkpoint.read(prefix).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise LoaderError(f"{prefix} (with {config_path}): the checkpoint does not match the "
                          f"config ({str(error)[:500]})") from error
    return common.make_teacher(
        path, FORMAT, vocab, metadata.lower_case, metadata, name, languages,
        bert_mlm.mlm_logits_fn(model.encoder_network, model.masked_lm),
        max_sequence_length=encoder_config.max_position_embeddings, model=model, config=config)
