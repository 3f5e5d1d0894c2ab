"""BERT masked LMs on tf-models-official: config, model, and Google-BERT variable names.

Every BERT-family teacher format (Google TF1 checkpoints, Hugging Face folders, and the
exporters in `teacher_scoring.teachers.export`) goes through this module:

  * `BertMLMConfig`: the architecture (sizes and activation) of a post-LN BERT encoder with
    BERT's masked-LM head (transform dense + LayerNorm + decoder tied to the word embeddings +
    output bias).
  * `build_bert_mlm(config)`: a tf-models-official `BertPretrainerV2` around a `BertEncoderV2`
    (networks) with a `layers.MaskedLM` head whose decoder is the tied embedding table.
  * Google-BERT variable names (`bert/encoder/layer_0/attention/self/query/kernel`, ...) are the
    common currency between formats: `google_variable_shapes(config)` lists them,
    `check_google_weights` validates a checkpoint's names and shapes against a config and a
    vocabulary *before* anything is built, `assign_google_weights` copies arrays onto the model
    and `read_google_weights` reads them back (used by the exporters).

The Google name → tf-models variable mapping, and the reshapes of the attention kernels to the
`EinsumDense` layouts, reuse `official.nlp.tools.tf1_bert_checkpoint_converter_lib`
(`BERT_V2_NAME_REPLACEMENTS`, `_get_new_shape`), the table tf-models uses to convert the original
BERT releases. The converter itself writes a renamed temporary checkpoint and restores it by
variable name; here the arrays are assigned in memory instead, after every name and shape has
been checked, so a bad folder fails before any work starts with the path and the problem.

Activations (canonical names used across this package):
  "gelu"       exact erf GELU (Hugging Face "gelu"),
  "gelu_tanh"  tanh approximation (original Google BERT "gelu", tf-models "gelu", HF "gelu_new"),
  "relu", "silu", "tanh", "linear".
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from typing import Callable, Mapping

import numpy as np
import tensorflow as tf
import tf_keras
from official.nlp.modeling import models
from official.nlp.modeling import networks
from official.nlp.tools import tf1_bert_checkpoint_converter_lib as tf1_converter


class LoaderError(ValueError):
    """A teacher folder cannot be loaded; the message names the path and the problem."""


# ----------------------------------------------------------------------------------------------
# Activations.


@tf_keras.utils.register_keras_serializable(package="mergedistill", name="exact_gelu")
def exact_gelu(x):
    """GELU with the exact erf form (Hugging Face "gelu"). Registered for tf-models configs as
    "mergedistill>exact_gelu" (tf-models' own "gelu" is the tanh approximation)."""
    return tf.nn.gelu(x, approximate=False)


def tanh_gelu(x):
    """GELU with the tanh approximation (Google BERT's and tf-models' "gelu")."""
    return tf.nn.gelu(x, approximate=True)


def _linear(x):
    return x


ACTIVATIONS: dict[str, Callable] = {
    "gelu": exact_gelu,
    "gelu_tanh": tanh_gelu,
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "tanh": tf.math.tanh,
    "linear": _linear,
}

# Name of the exact GELU in tf-models configs (`tf_utils.get_activation` lower-cases names and
# falls back to Keras' registry, where `exact_gelu` is registered above).
TFM_EXACT_GELU = "mergedistill>exact_gelu"


def activation_fn(name: str) -> Callable:
    """The function of a canonical activation name (see the module docstring)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def activation_name(fn) -> str:
    """Identifies an activation function (any callable: function, lambda, Keras layer) by value.

    Evaluates it on a grid of points and compares with every canonical activation; exact and
    tanh-approximated GELU differ by up to ~1e-3 there, far above the 1e-6 tolerance.
    """
    if fn is None:
        return "linear"
    if isinstance(fn, str):
        fn = tf_keras.activations.get(fn)
    x = tf.constant(np.linspace(-6.0, 6.0, 241), tf.float32)
    y = tf.cast(fn(x), tf.float32).numpy()
    for name, candidate in ACTIVATIONS.items():
        if np.allclose(y, candidate(x).numpy(), rtol=0.0, atol=1e-6):
            return name
    raise ValueError(f"activation {fn!r} is none of {sorted(ACTIVATIONS)}")


# ----------------------------------------------------------------------------------------------
# Config and model.


@dataclasses.dataclass(frozen=True)
class BertMLMConfig:
    """Architecture of a post-LayerNorm BERT encoder with BERT's masked-LM head.

    LayerNorm epsilon is 1e-12 everywhere (BERT's value, fixed in tf-models' BertEncoderV2 and
    MaskedLM). Dropout is irrelevant for scoring and is not part of the config.
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu_tanh"
    initializer_range: float = 0.02

    def validate(self, where: str) -> None:
        """Raises LoaderError naming `where` if the config is inconsistent."""
        for field in ("vocab_size", "hidden_size", "num_layers", "num_attention_heads",
                      "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise LoaderError(f"{where}: {field} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise LoaderError(
                f"{where}: hidden_size={self.hidden_size} is not a multiple of "
                f"num_attention_heads={self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise LoaderError(f"{where}: activation {self.hidden_act!r} is not supported "
                              f"(supported: {sorted(ACTIVATIONS)})")


def config_from_fields(data: Mapping, where: str, hidden_act_names: Mapping[str, str],
                       type_vocab_size_default: int) -> BertMLMConfig:
    """The BertMLMConfig of a BERT config dict (bert_config.json and config.json share names).

    Args:
      data: the parsed JSON.
      where: the file, for error messages.
      hidden_act_names: the file format's activation names -> canonical ones (Google's "gelu"
        is the tanh approximation, Hugging Face's "gelu" the exact erf form).
      type_vocab_size_default: the format's default when the field is absent.

    Raises:
      LoaderError: naming `where` and the field.
    """
    required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size")
    missing = [key for key in required if key not in data]
    if missing:
        raise LoaderError(f"{where}: missing field(s) {missing}")
    act = data.get("hidden_act", "gelu")
    if act not in hidden_act_names:
        raise LoaderError(f"{where}: hidden_act {act!r} is not supported "
                          f"(supported: {sorted(hidden_act_names)})")
    config = BertMLMConfig(
        vocab_size=data["vocab_size"],
        hidden_size=data["hidden_size"],
        num_layers=data["num_hidden_layers"],
        num_attention_heads=data["num_attention_heads"],
        intermediate_size=data["intermediate_size"],
        max_position_embeddings=data.get("max_position_embeddings", 512),
        type_vocab_size=data.get("type_vocab_size", type_vocab_size_default),
        hidden_act=hidden_act_names[act],
        initializer_range=float(data.get("initializer_range", 0.02)))
    config.validate(where)
    return config


def build_bert_mlm(config: BertMLMConfig) -> models.BertPretrainerV2:
    """Builds a BERT masked LM (random weights) with all its variables created.

    Returns a `BertPretrainerV2` whose `encoder_network` is a `BertEncoderV2` and whose
    `masked_lm` is a `layers.MaskedLM` using the encoder's embedding table as its decoder.
    Dropout rates are 0: the model is only used for inference.
    """
    initializer = tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range)
    activation = activation_fn(config.hidden_act)
    encoder = networks.BertEncoderV2(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_attention_heads=config.num_attention_heads,
        max_sequence_length=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        inner_dim=config.intermediate_size,
        inner_activation=activation,
        output_dropout=0.0,
        attention_dropout=0.0,
        initializer=initializer)
    model = models.BertPretrainerV2(
        encoder_network=encoder, mlm_activation=activation, mlm_initializer=initializer)
    # Create the MLM head's variables (MaskedLM builds on its first call).
    dummy = tf.zeros([1, 2], tf.int32)
    model(dict(input_word_ids=dummy, input_mask=tf.ones_like(dummy), input_type_ids=dummy,
               masked_lm_positions=dummy), training=False)
    return model


def mlm_logits_fn(encoder: tf_keras.layers.Layer, masked_lm: tf_keras.layers.Layer):
    """The MLM function of an encoder + MaskedLM pair, as `Teacher` expects it.

    Returns fn(input_word_ids [B, S], input_mask [B, S], input_type_ids [B, S],
    masked_lm_positions [B, P]) -> logits float32 [B, P, V].
    """

    def fn(input_word_ids, input_mask, input_type_ids, masked_lm_positions):
        outputs = encoder(dict(input_word_ids=input_word_ids, input_mask=input_mask,
                               input_type_ids=input_type_ids), training=False)
        sequence_output = (outputs["sequence_output"] if isinstance(outputs, dict)
                           else outputs[0])
        return masked_lm(sequence_output, masked_positions=masked_lm_positions, training=False)

    return fn


# ----------------------------------------------------------------------------------------------
# Google-BERT variable names.

WORD_EMBEDDINGS = "bert/embeddings/word_embeddings"
HEAD_NAMES = (
    "cls/predictions/transform/dense/kernel",
    "cls/predictions/transform/dense/bias",
    "cls/predictions/transform/LayerNorm/gamma",
    "cls/predictions/transform/LayerNorm/beta",
    "cls/predictions/output_bias",
)
POOLER_NAMES = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")
_LAYER_RE = re.compile(r"^bert/encoder/layer_(\d+)/")


def google_variable_shapes(config: BertMLMConfig, with_pooler: bool = True,
                           with_head: bool = True) -> dict[str, tuple[int, ...]]:
    """Google-BERT variable names → shapes for `config`, in checkpoint order."""
    h, i = config.hidden_size, config.intermediate_size
    shapes = {
        WORD_EMBEDDINGS: (config.vocab_size, h),
        "bert/embeddings/token_type_embeddings": (config.type_vocab_size, h),
        "bert/embeddings/position_embeddings": (config.max_position_embeddings, h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
    }
    for n in range(config.num_layers):
        p = f"bert/encoder/layer_{n}/"
        for part in ("query", "key", "value"):
            shapes[f"{p}attention/self/{part}/kernel"] = (h, h)
            shapes[f"{p}attention/self/{part}/bias"] = (h,)
        shapes[f"{p}attention/output/dense/kernel"] = (h, h)
        shapes[f"{p}attention/output/dense/bias"] = (h,)
        shapes[f"{p}attention/output/LayerNorm/gamma"] = (h,)
        shapes[f"{p}attention/output/LayerNorm/beta"] = (h,)
        shapes[f"{p}intermediate/dense/kernel"] = (h, i)
        shapes[f"{p}intermediate/dense/bias"] = (i,)
        shapes[f"{p}output/dense/kernel"] = (i, h)
        shapes[f"{p}output/dense/bias"] = (h,)
        shapes[f"{p}output/LayerNorm/gamma"] = (h,)
        shapes[f"{p}output/LayerNorm/beta"] = (h,)
    if with_pooler:
        shapes["bert/pooler/dense/kernel"] = (h, h)
        shapes["bert/pooler/dense/bias"] = (h,)
    if with_head:
        shapes["cls/predictions/transform/dense/kernel"] = (h, h)
        shapes["cls/predictions/transform/dense/bias"] = (h,)
        shapes["cls/predictions/transform/LayerNorm/gamma"] = (h,)
        shapes["cls/predictions/transform/LayerNorm/beta"] = (h,)
        shapes["cls/predictions/output_bias"] = (config.vocab_size,)
    return shapes


class _DropRenameLogs(logging.Filter):
    """Drops the converter's per-variable "Converted: a --> b" INFO records (two a variable,
    ~450 lines for a 2-layer BERT) while our loaders use its name table; the loaders check and
    report every name themselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and
                    str(record.msg).startswith("Converted: "))


_DROP_RENAME_LOGS = _DropRenameLogs()


def _tfm_encoder_name(google_name: str) -> str:
    """tf-models encoder variable name (relative to the encoder) of a Google encoder variable."""
    tf_logger = logging.getLogger("tensorflow")  # where the converter's tf.logging writes
    tf_logger.addFilter(_DROP_RENAME_LOGS)
    try:
        # pylint: disable=protected-access
        return tf1_converter._bert_name_replacement(google_name,
                                                    tf1_converter.BERT_V2_NAME_REPLACEMENTS)
    finally:
        tf_logger.removeFilter(_DROP_RENAME_LOGS)


def _tfm_shape(tfm_name: str, google_shape: tuple[int, ...], num_heads: int) -> tuple[int, ...]:
    # pylint: disable=protected-access
    new_shape = tf1_converter._get_new_shape(tfm_name, google_shape, num_heads)
    return tuple(new_shape) if new_shape else tuple(google_shape)


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def check_google_weights(shapes: Mapping[str, tuple[int, ...]], config: BertMLMConfig,
                         vocab_size: int, where: str, *, head_names_hint: str = "cls/predictions/*",
                         allow_random_mlm_head: bool = False,
                         name_of: Callable[[str], str] = lambda name: name) -> bool:
    """Checks a checkpoint's Google-named variable shapes against `config` and the vocabulary.

    Args:
      shapes: Google-BERT variable name → shape, of everything the checkpoint holds (extra
        variables such as optimizer slots or the NSP head are ignored).
      config: the architecture the folder's config file declares.
      vocab_size: number of tokens in the folder's vocab.txt.
      where: the path to name in errors.
      head_names_hint: how the format names the MLM head, for the error message.
      allow_random_mlm_head: accept a checkpoint without any MLM-head variable (tests only).
      name_of: maps a Google name to the format's own name, for error messages.

    Returns:
      Whether the checkpoint has the MLM head.

    Raises:
      LoaderError naming `where` and the first problems found.
    """
    config.validate(where)
    if WORD_EMBEDDINGS not in shapes:
        raise LoaderError(
            f"{where}: no word embedding table {name_of(WORD_EMBEDDINGS)!r} in the weights: not "
            f"a BERT checkpoint (found e.g. {sorted(shapes)[:5]})")
    table = tuple(shapes[WORD_EMBEDDINGS])
    if len(table) != 2:
        raise LoaderError(f"{where}: {name_of(WORD_EMBEDDINGS)} has shape {_shape_str(table)}, "
                          "expected [vocab_size, hidden_size]")
    if table[1] != config.hidden_size:
        raise LoaderError(
            f"{where}: config hidden_size={config.hidden_size} does not match the weights: "
            f"{name_of(WORD_EMBEDDINGS)} has shape {_shape_str(table)} (hidden size {table[1]})")
    if table[0] != config.vocab_size:
        raise LoaderError(
            f"{where}: config vocab_size={config.vocab_size} does not match the weights: "
            f"{name_of(WORD_EMBEDDINGS)} has {table[0]} rows")
    if vocab_size != table[0]:
        raise LoaderError(
            f"{where}: vocab.txt has {vocab_size} tokens but the embedding table "
            f"{name_of(WORD_EMBEDDINGS)} has {table[0]} rows")
    layers_found = sorted({int(m.group(1)) for name in shapes
                           for m in [_LAYER_RE.match(name)] if m})
    if layers_found and layers_found != list(range(config.num_layers)):
        raise LoaderError(
            f"{where}: config num_hidden_layers={config.num_layers} does not match the weights, "
            f"which have layers {layers_found[0]}..{layers_found[-1]} ({len(layers_found)})")
    head_present = [name for name in HEAD_NAMES if name in shapes]
    if not head_present and not allow_random_mlm_head:
        raise LoaderError(
            f"{where}: the MLM head ({head_names_hint}) is missing: this is an encoder without "
            "its masked-LM head (e.g. a BertModel rather than a BertForMaskedLM), which cannot "
            "predict masked tokens, so it cannot be a teacher")
    if head_present and len(head_present) != len(HEAD_NAMES):
        missing = [name_of(name) for name in HEAD_NAMES if name not in shapes]
        raise LoaderError(f"{where}: the MLM head is incomplete: missing {missing}")
    expected = google_variable_shapes(config, with_pooler=False, with_head=bool(head_present))
    if all(name in shapes for name in POOLER_NAMES):
        expected.update({name: shape for name, shape in google_variable_shapes(config).items()
                         if name in POOLER_NAMES})
    missing = [name_of(name) for name in expected if name not in shapes]
    if missing:
        raise LoaderError(f"{where}: {len(missing)} weight(s) the config implies are missing, "
                          f"e.g. {missing[:5]}")
    wrong = [f"{name_of(name)} {_shape_str(shapes[name])} (expected {_shape_str(shape)})"
             for name, shape in expected.items() if tuple(shapes[name]) != tuple(shape)]
    if wrong:
        raise LoaderError(f"{where}: {len(wrong)} weight(s) do not have the shape the config "
                          f"implies: {'; '.join(wrong[:5])}")
    return bool(head_present)


def _head_variables(masked_lm) -> dict[str, tf.Variable]:
    return {
        "cls/predictions/transform/dense/kernel": masked_lm.dense.kernel,
        "cls/predictions/transform/dense/bias": masked_lm.dense.bias,
        "cls/predictions/transform/LayerNorm/gamma": masked_lm.layer_norm.gamma,
        "cls/predictions/transform/LayerNorm/beta": masked_lm.layer_norm.beta,
        "cls/predictions/output_bias": masked_lm.bias,
    }


def _encoder_variable(encoder, by_name: Mapping[str, tf.Variable], google_name: str):
    """The encoder variable of a Google name; matches the tf-models name as a path suffix, so
    encoders built under any outer name scope (BertEncoder or BertEncoderV2) are found."""
    target = _tfm_encoder_name(google_name)
    found = [var for name, var in by_name.items() if name == target or name.endswith("/" + target)]
    if len(found) != 1:
        raise ValueError(f"{type(encoder).__name__} has {len(found)} variables named like "
                         f"{target!r} (for {google_name}); expected one")
    return found[0]


def _variables_by_name(layer) -> dict[str, tf.Variable]:
    return {var.name.split(":")[0]: var for var in layer.weights}


def google_to_model_variables(encoder, masked_lm, config: BertMLMConfig,
                              with_pooler: bool = True,
                              with_head: bool = True) -> dict[str, tuple[tf.Variable, tuple]]:
    """Google name → (model variable, Google shape) for a tf-models encoder + MaskedLM."""
    by_name = _variables_by_name(encoder)
    head = _head_variables(masked_lm) if with_head else {}
    out = {}
    for name, shape in google_variable_shapes(config, with_pooler, with_head).items():
        if name in head:
            var = head[name]
        else:
            var = _encoder_variable(encoder, by_name, name)
            layout = _tfm_shape(_tfm_encoder_name(name), shape, config.num_attention_heads)
            if tuple(var.shape) != layout:
                raise ValueError(f"{var.name} has shape {_shape_str(var.shape)}; the tf-models "
                                 f"layout of {name} {_shape_str(shape)} is {_shape_str(layout)}")
        if int(np.prod(var.shape)) != int(np.prod(shape)):
            raise ValueError(f"{var.name} has shape {_shape_str(var.shape)}, which cannot hold "
                             f"{name} {_shape_str(shape)}")
        out[name] = (var, shape)
    return out


def assign_google_weights(model: models.BertPretrainerV2, config: BertMLMConfig,
                          weights: Mapping[str, np.ndarray], with_head: bool = True) -> None:
    """Copies Google-named arrays (already checked by `check_google_weights`) onto `model`.

    The pooler is copied when present (it does not affect MLM logits). Without the head
    (`with_head=False`, tests only) the MLM head keeps its fresh initialisation.
    """
    with_pooler = all(name in weights for name in POOLER_NAMES)
    targets = google_to_model_variables(model.encoder_network, model.masked_lm, config,
                                        with_pooler=with_pooler, with_head=with_head)
    for name, (var, _) in targets.items():
        value = np.asarray(weights[name], dtype=np.float32)
        var.assign(value.reshape(var.shape))


def read_google_weights(encoder, masked_lm, config: BertMLMConfig) -> dict[str, np.ndarray]:
    """The weights of a tf-models encoder + MaskedLM as Google-named float32 arrays."""
    out = {}
    for name, (var, shape) in google_to_model_variables(encoder, masked_lm, config).items():
        out[name] = np.asarray(var.numpy(), np.float32).reshape(shape)
    return out


def config_from_model(encoder, masked_lm) -> BertMLMConfig:
    """Reads the BertMLMConfig of a tf-models BertEncoder / BertEncoderV2 + MaskedLM pair.

    Raises ValueError if the model is not a plain post-LN BERT the BERT formats can express
    (embedding projection, pre-LN, or an MLM-head activation different from the encoder's).
    """
    cfg = encoder.get_config()
    missing = [key for key in ("vocab_size", "hidden_size", "num_layers", "num_attention_heads",
                               "max_sequence_length", "type_vocab_size", "inner_dim")
               if key not in cfg]
    if missing:
        raise ValueError(f"{type(encoder).__name__} is not a tf-models BERT encoder "
                         f"(config lacks {missing})")
    if cfg.get("embedding_width") not in (None, cfg["hidden_size"]):
        raise ValueError("encoders with an embedding projection (embedding_width != hidden_size) "
                         "cannot be written in the BERT formats")
    if cfg.get("norm_first"):
        raise ValueError("pre-LayerNorm encoders (norm_first=True) cannot be written in the BERT "
                         "formats")
    hidden_act = activation_name(encoder.transformer_layers[0]._inner_activation)  # pylint: disable=protected-access
    head_act = activation_name(masked_lm.activation)
    if head_act != hidden_act:
        raise ValueError(f"the MLM head activation ({head_act}) differs from the encoder's "
                         f"({hidden_act}); BERT formats have a single hidden_act")
    initializer = cfg.get("initializer")
    stddev = 0.02
    if isinstance(initializer, dict):
        stddev = float(initializer.get("config", {}).get("stddev", stddev))
    return BertMLMConfig(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        num_layers=int(cfg["num_layers"]),
        num_attention_heads=int(cfg["num_attention_heads"]),
        intermediate_size=int(cfg["inner_dim"]),
        max_position_embeddings=int(cfg["max_sequence_length"]),
        type_vocab_size=int(cfg["type_vocab_size"]),
        hidden_act=hidden_act,
        initializer_range=stddev)


def isclose_eps(value: float, expected: float = 1e-12) -> bool:
    """Whether a LayerNorm epsilon equals BERT's 1e-12 (the value tf-models fixes)."""
    return math.isclose(float(value), expected, rel_tol=1e-6)
