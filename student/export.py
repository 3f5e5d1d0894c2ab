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
  params.yaml       the run's configuration (loadable with --config_file).
  encoder_config.yaml  the tf-models EncoderConfig (to build the encoder for fine-tuning).
"""

from __future__ import annotations

import os

import tensorflow as tf
import yaml

from official.nlp.modeling import models

from student import config as config_lib

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


def export(pretrainer: models.BertPretrainerV2, config: config_lib.StudentConfig,
           vocab_path: str, export_dir: str, step: int) -> dict[str, str]:
    """Writes the checkpoint, SavedModel, vocab.txt and configs; returns their paths."""
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
    return dict(checkpoint=checkpoint_path, saved_model=saved_model_dir, vocab=vocab_out,
                params=params_out, encoder_config=encoder_out)
