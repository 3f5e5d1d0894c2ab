"""The encoders fine-tuning starts from: a teacher (with its own tokenizer) or a student export
(with the student's tokenizer), both as tf-models-official encoder networks.

  * Teacher: any folder `teacher_scoring.teachers.loaders.load_teacher` reads. The BERT formats
    (google_bert_checkpoint, hf_folder, tfm_checkpoint) load into a tf-models
    `BertPretrainerV2`; its `encoder_network` (a `BertEncoder` / `BertEncoderV2`) is the
    encoder, `Teacher.tokenizer()` (a `TeacherTokenizer` over the teacher's own vocab and
    casing) the tokenizer. A SavedModel teacher is refused: its `mlm` signature gives logits at
    masked positions only, neither a sequence output nor an encoder to train.
  * Student: an export folder `<model_dir>/export` (student/export.py). The encoder is built
    from `encoder_config.yaml` (`official.nlp.configs.encoders.build_encoder`) and restored from
    `checkpoint/` the way tf-models tasks restore `init_checkpoint`:
    `tf.train.Checkpoint(encoder=encoder).read(latest).expect_partial()
    .assert_existing_objects_matched()` (the MLM head in the checkpoint is not read). The
    tokenizer is `student.tokenizer.StudentTokenizer.load(export).for_language(language)`: the
    task language's teacher tokenizer over student ids, exactly what the student saw in
    training.

Dropout. The teacher loaders build inference encoders (dropout 0) and a student's
`encoder_config.yaml` carries its pretraining dropout; for a fair comparison every encoder is
rebuilt for fine-tuning from its own config with the *same* dropout (`--dropout`, BERT's 0.1 by
default) on hidden states and attention probabilities, and the pretrained weights are copied
over (`fresh_encoder`). Each seed starts from a fresh copy of the pretrained weights.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable

import numpy as np
import tensorflow as tf
import tf_keras
import yaml
from official.nlp.configs import encoders as encoder_configs

TEACHER = "teacher"
STUDENT = "student"

STUDENT_CHECKPOINT_DIR = "checkpoint"
STUDENT_ENCODER_CONFIG = "encoder_config.yaml"


class EncoderError(ValueError):
    """A model cannot be fine-tuned; the message names the model, the path and the problem."""


@dataclasses.dataclass
class PretrainedEncoder:
    """A pretrained encoder with the tokenizer of the task's language.

    Attributes:
      name: the model's name in results (teacher or student name).
      kind: TEACHER or STUDENT.
      path: the folder it was loaded from.
      encoder: the tf-models encoder network holding the pretrained weights (do not train it:
        `fresh_encoder` gives trainable copies).
      tokenizer: words/texts -> ids (see finetuning.features).
      max_seq_length: the longest input the encoder takes (position embeddings).
      description: a short human-readable description (format, sizes).
    """

    name: str
    kind: str
    path: str
    encoder: tf_keras.layers.Layer
    tokenizer: Any
    max_seq_length: int
    description: str

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.get_config()["hidden_size"])

    def fresh_encoder(self, dropout: float) -> tf_keras.layers.Layer:
        """A new encoder with the pretrained weights and `dropout` on hidden states and
        attention probabilities."""
        return with_dropout(self.encoder, dropout)


def _build(encoder: tf_keras.layers.Layer) -> None:
    ids = tf.constant([[0, 0]], tf.int32)
    encoder(dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=ids),
            training=False)


def _strip_scope(name: str) -> str:
    """A variable name without its outer (instance-numbered) encoder scope."""
    return re.sub(r"^[^/]*/", "", name.split(":")[0])


def rebuild_config(encoder: tf_keras.layers.Layer) -> dict:
    """The encoder's config, ready for `type(encoder).from_config`: its inner activation is the
    callable itself, since a serialized name only deserializes for Keras-registered functions
    (not, e.g., the loaders' tanh-approximated GELU)."""
    config = dict(encoder.get_config())
    layers = getattr(encoder, "transformer_layers", None)
    if layers and "inner_activation" in config:
        config["inner_activation"] = layers[0]._inner_activation  # pylint: disable=protected-access
    return config


def with_dropout(encoder: tf_keras.layers.Layer, dropout: float) -> tf_keras.layers.Layer:
    """Rebuilds a tf-models encoder from its config with `dropout` and copies its weights.

    Works for any encoder whose `get_config` lists `output_dropout` and `attention_dropout`
    (`BertEncoderV2`, `BertEncoder`).

    Raises:
      EncoderError: the encoder's config has no dropout fields, or the rebuilt encoder's
        variables do not line up with the original's.
    """
    config = rebuild_config(encoder)
    missing = [k for k in ("output_dropout", "attention_dropout") if k not in config]
    if missing:
        raise EncoderError(f"{type(encoder).__name__}: its config has no {missing}; only "
                           "tf-models BertEncoder / BertEncoderV2 encoders can be fine-tuned")
    config.update(output_dropout=float(dropout), attention_dropout=float(dropout))
    fresh = type(encoder).from_config(config)
    _build(fresh)
    source = [_strip_scope(v.name) for v in encoder.weights]
    target = [_strip_scope(v.name) for v in fresh.weights]
    if source != target:
        raise EncoderError(f"{type(encoder).__name__}: rebuilt with dropout, its variables differ "
                           f"from the original's ({len(target)} vs {len(source)})")
    fresh.set_weights(encoder.get_weights())
    return fresh


def _max_seq_length(encoder) -> int:
    config = encoder.get_config()
    return int(config.get("max_sequence_length") or config.get("max_position_embeddings"))


def _sizes(encoder) -> str:
    config = encoder.get_config()
    params = int(sum(np.prod(v.shape) for v in encoder.weights))
    return (f"{config.get('num_layers')} layers x {config.get('hidden_size')} hidden, vocab "
            f"{config.get('vocab_size')}, {params / 1e6:.2f}M parameters")


def load_teacher_encoder(name: str | None, path: str) -> PretrainedEncoder:
    """The encoder and tokenizer of a teacher folder (any BERT format; see module docstring).

    Args:
      name: the name in results; None: the teacher's own (teacher.json name or folder name).
      path: the teacher folder (its tokenizer serves every language alike).

    Raises:
      EncoderError / loaders.LoaderError: naming the path and the problem.
    """
    from teacher_scoring.teachers.loaders import load_teacher  # pylint: disable=import-outside-toplevel

    teacher = load_teacher(path, name=name)
    model = teacher.model
    if teacher.format == "saved_model" or not hasattr(model, "encoder_network"):
        raise EncoderError(
            f"teacher {teacher.name!r} ({path}): a {teacher.format or 'plain'} teacher exposes "
            "only the `mlm` function (logits at masked positions), no sequence output and no "
            "encoder to train, so it cannot be fine-tuned; give the teacher in a checkpoint "
            "format (google_bert_checkpoint, hf_folder or tfm_checkpoint; "
            "teacher_scoring.teachers.export converts a tf-models BERT)")
    encoder = model.encoder_network
    return PretrainedEncoder(
        name=teacher.name, kind=TEACHER, path=path, encoder=encoder,
        tokenizer=teacher.tokenizer(), max_seq_length=_max_seq_length(encoder),
        description=(f"teacher ({teacher.format}, {'uncased' if teacher.lower_case else 'cased'}"
                     f", {_sizes(encoder)})"))


def read_student_encoder_config(export_dir: str) -> encoder_configs.EncoderConfig:
    """The tf-models EncoderConfig of a student export (its encoder_config.yaml)."""
    path = os.path.join(export_dir, STUDENT_ENCODER_CONFIG)
    if not tf.io.gfile.exists(path):
        raise EncoderError(f"{path}: missing (a student export folder, model_dir/export, holds "
                           f"{STUDENT_ENCODER_CONFIG}, {STUDENT_CHECKPOINT_DIR}/, vocab.txt and "
                           "tokenizer/)")
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            data = yaml.safe_load(f.read())
        except yaml.YAMLError as error:
            raise EncoderError(f"{path}: not valid YAML ({error})") from error
    config = encoder_configs.EncoderConfig()
    try:
        config.override(data, is_strict=True)
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise EncoderError(f"{path}: not a tf-models EncoderConfig ({error})") from error
    return config


def load_student_encoder(name: str, export_dir: str, language: str,
                         tokenizer_loader: Callable[[str], Any] | None = None
                         ) -> PretrainedEncoder:
    """The encoder of a student export and its tokenizer for `language`.

    Args:
      name: the student's name in results.
      export_dir: the export folder (model_dir/export of student/train.py).
      language: the task language; the tokenizer is the one the student saw it with.
      tokenizer_loader: export_dir -> an object with `for_language(language)` (default:
        `student.tokenizer.StudentTokenizer.load`).

    Raises:
      EncoderError: naming the file and the problem (missing config or checkpoint, a checkpoint
        that does not match the config, no tokenizer, a language the tokenizer does not serve).
    """
    config = read_student_encoder_config(export_dir)
    checkpoint_dir = os.path.join(export_dir, STUDENT_CHECKPOINT_DIR)
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if not latest:
        raise EncoderError(f"{checkpoint_dir}: no checkpoint (expected the tf-models pretrainer "
                           "checkpoint that student/export.py writes)")
    encoder = encoder_configs.build_encoder(config)
    _build(encoder)
    try:
        tf.train.Checkpoint(encoder=encoder).read(latest).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise EncoderError(f"{latest} (with {os.path.join(export_dir, STUDENT_ENCODER_CONFIG)}): "
                           f"the checkpoint's encoder does not match the config "
                           f"({str(error)[:400]})") from error
    if tokenizer_loader is None:
        from student import tokenizer as tokenizer_lib  # pylint: disable=import-outside-toplevel
        tokenizer_loader = tokenizer_lib.StudentTokenizer.load
        errors: tuple = (tokenizer_lib.TokenizerError,)
    else:
        errors = (ValueError,)
    try:
        tokenizer = tokenizer_loader(export_dir).for_language(language)
    except errors as error:
        raise EncoderError(f"student {name!r} ({export_dir}): no tokenizer for language "
                           f"{language!r}: {error}") from error
    vocab_size = encoder.get_config().get("vocab_size")
    if tokenizer.vocab_size != vocab_size:
        raise EncoderError(f"student {name!r} ({export_dir}): its tokenizer has "
                           f"{tokenizer.vocab_size} ids but the encoder's vocabulary "
                           f"{vocab_size}")
    return PretrainedEncoder(
        name=name, kind=STUDENT, path=export_dir, encoder=encoder, tokenizer=tokenizer,
        max_seq_length=_max_seq_length(encoder),
        description=f"student ({_sizes(encoder)})")
