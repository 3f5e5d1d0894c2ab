"""Export of a trained student into model_dir/export.

export/
  checkpoint/       tf-models-official pretrainer checkpoint: tf.train.Checkpoint(encoder=...,
                    masked_lm=...) (`BertPretrainerV2.checkpoint_items`), with a `checkpoint`
                    state file. A fine-tuning script restores the encoder with
                    `tf.train.Checkpoint(encoder=encoder).read(tf.train.latest_checkpoint(dir))`
                    (`.expect_partial()`: the MLM head is not read), as tf-models tasks do with
                    `init_checkpoint`.
  saved_model/      SavedModel. Signature `serving_default`: input_word_ids, input_mask,
                    input_type_ids int32 [batch, seq], masked_lm_positions int32 [batch, P] ->
                    mlm_logits [batch, P, vocab], sequence_output [batch, seq, hidden],
                    pooled_output [batch, hidden]. Signature `encoder`: the first three inputs ->
                    sequence_output, pooled_output.
  vocab.txt         the student vocabulary (id = line).
  tokenizer/        the student's tokenizer (student/tokenizer.py): student_tokenizer.json
                    (language -> teacher, casing, format version) and <teacher>.vocab.txt, each
                    teacher's vocabulary in student ids. `StudentTokenizer.load(export_dir)`
                    turns raw text of any trained language into the ids the student saw; no
                    teacher folder is needed. Written when the student vocab folder is a full
                    `vocab.union` folder (teachers.json, maps/); with a bare vocab.txt there is
                    no teacher map to build it from and the export says so (`tokenizer` entry
                    of the returned dict).
  params.yaml       the run's configuration (loadable with --config_file).
  encoder_config.yaml  the tf-models EncoderConfig (to build the encoder for fine-tuning).
"""

from __future__ import annotations

import os

import tensorflow as tf
import yaml
from absl import logging

from official.nlp.modeling import models

from student import config as config_lib
from student import tokenizer as tokenizer_lib

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_NAME = "bert_model"
SAVED_MODEL_DIR = "saved_model"


class _Serving(tf.Module):
    """The exported functions of a BertPretrainerV2 (inference mode)."""

    def __init__(self, pretrainer: models.BertPretrainerV2):
        super().__init__()
        self.pretrainer = pretrainer
        def spec(name):
            return tf.TensorSpec([None, None], tf.int32, name=name)

        encoder_inputs = ("input_word_ids", "input_mask", "input_type_ids")
        self.serve = tf.function(self._serve, input_signature=[
            {name: spec(name) for name in encoder_inputs + ("masked_lm_positions",)}])
        self.encode = tf.function(self._encode, input_signature=[
            {name: spec(name) for name in encoder_inputs}])

    def _serve(self, inputs):
        outputs = self.pretrainer(inputs, training=False)
        return dict(mlm_logits=outputs["mlm_logits"],
                    sequence_output=outputs["sequence_output"],
                    pooled_output=outputs["pooled_output"])

    def _encode(self, inputs):
        outputs = self.pretrainer.encoder_network(inputs, training=False)
        return dict(sequence_output=outputs["sequence_output"],
                    pooled_output=outputs["pooled_output"])


def prepare_tokenizer(config: config_lib.StudentConfig, vocab_path: str, manifests
                      ) -> tuple[tokenizer_lib.StudentTokenizer | None, str]:
    """Builds the tokenizer the export will hold (call it at startup: errors come first).

    Args:
      config: the run's config (its `tokenizer` section).
      vocab_path: the student vocab.txt; its folder must be a `vocab.union` folder
        (teachers.json, maps/) for a tokenizer to be built.
      manifests: language -> (Manifest, where) of the training shards.

    Returns:
      (tokenizer, "") or (None, why there is none): the vocab folder is a bare vocab.txt, or the
      shards are in a teacher's own id space (plain MLM pretraining).

    Raises:
      tokenizer.TokenizerError: a bad `tokenizer.*` setting (named), or shards and vocab folder
        that disagree about a teacher.
      config.ConfigError: `tokenizer.*` is set but no tokenizer can be built.
    """
    section = config.tokenizer
    folder = os.path.dirname(vocab_path)
    reason = ""
    if not tf.io.gfile.exists(os.path.join(folder, "teachers.json")):
        reason = (f"{folder} has no teachers.json (a bare vocab.txt, not a vocab.union folder): "
                  "no teacher -> student map to build a tokenizer from")
    else:
        spaces = sorted({manifest.id_space for manifest, _ in manifests.values()})
        if spaces != ["student"]:
            reason = f"the shards are in id space(s) {spaces}, not the student's"
    if reason:
        for field in ("teacher_for_language", "fallback_teacher"):
            if getattr(section, field):
                raise config_lib.ConfigError(
                    f"config: field 'tokenizer.{field}' = {getattr(section, field)!r}: no "
                    f"tokenizer can be built ({reason})")
        return None, reason
    tokenizer = tokenizer_lib.StudentTokenizer.build(
        vocab_path, manifests=manifests,
        teacher_for_language=list(section.teacher_for_language),
        fallback_teacher=section.fallback_teacher or None,
        overrides_field="config field 'tokenizer.teacher_for_language'",
        fallback_field="config field 'tokenizer.fallback_teacher'")
    return tokenizer, ""


def export(pretrainer: models.BertPretrainerV2, config: config_lib.StudentConfig,
           vocab_path: str, export_dir: str, step: int,
           tokenizer: tokenizer_lib.StudentTokenizer | None = None,
           no_tokenizer_reason: str = "") -> dict[str, str]:
    """Writes the checkpoint, SavedModel, vocab.txt, configs and tokenizer; returns their paths.

    `tokenizer` (from `prepare_tokenizer`) goes to export/tokenizer; without one the returned
    `tokenizer` entry is "not written: <no_tokenizer_reason>" (also logged as a warning).
    """
    tf.io.gfile.makedirs(export_dir)
    checkpoint = tf.train.Checkpoint(**pretrainer.checkpoint_items)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(export_dir, CHECKPOINT_DIR), max_to_keep=1,
        checkpoint_name=CHECKPOINT_NAME)
    checkpoint_path = manager.save(checkpoint_number=step)

    serving = _Serving(pretrainer)
    saved_model_dir = os.path.join(export_dir, SAVED_MODEL_DIR)
    tf.saved_model.save(serving, saved_model_dir, signatures={
        "serving_default": serving.serve, "encoder": serving.encode})

    vocab_out = os.path.join(export_dir, "vocab.txt")
    tf.io.gfile.copy(vocab_path, vocab_out, overwrite=True)
    params_out = os.path.join(export_dir, "params.yaml")
    config_lib.save_yaml(config, params_out)
    encoder_out = os.path.join(export_dir, "encoder_config.yaml")
    with tf.io.gfile.GFile(encoder_out, "w") as f:
        f.write(yaml.safe_dump(config.model.encoder.as_dict(), sort_keys=True))
    if tokenizer is not None:
        if tokenizer.vocab_sha256 != tokenizer_lib.manifest_lib.sha256_of_file(vocab_out):
            raise tokenizer_lib.TokenizerError(
                f"the tokenizer is for a student vocab of sha256 {tokenizer.vocab_sha256}, not "
                f"{vocab_path}")
        tokenizer_dir = os.path.join(export_dir, tokenizer_lib.TOKENIZER_DIRNAME)
        tokenizer.save(tokenizer_dir)
        tokenizer_out = tokenizer_dir
    else:
        tokenizer_out = f"not written: {no_tokenizer_reason or 'no tokenizer given'}"
        logging.warning("export %s without a tokenizer: %s", export_dir,
                        no_tokenizer_reason or "no tokenizer given")
    return dict(checkpoint=checkpoint_path, saved_model=saved_model_dir, vocab=vocab_out,
                params=params_out, encoder_config=encoder_out, tokenizer=tokenizer_out)
