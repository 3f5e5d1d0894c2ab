"""Fine-tuning one pretrained encoder on one task with one seed (the paper's A.3 recipe).

Built from tf-models-official pieces:

  * models: `official.nlp.modeling.models.BertTokenClassifier` (POS, NER: a dropout + dense
    layer on every position's sequence output) and `BertClassifier` (sentence classification:
    tf-models' `ClassificationHead` on the [CLS] position, dense + tanh + dropout + dense). The
    classifier does not use the encoder's pooler (`use_encoder_pooler=False`): students never
    train their pooler (no next-sentence task) and Hugging Face MLM checkpoints have none, so a
    pooler would favour Google-BERT teachers; every model gets the same freshly initialised head.
  * optimizer and learning rate: `official.modeling.optimization.OptimizerFactory` with AdamW
    (weight decay 0.01, not on LayerNorm and biases; global-norm gradient clipping at 1.0) and a
    linear warm-up over `warmup_ratio` of the steps followed by linear decay to 0
    (`polynomial`, power 1, over all steps) - BERT's recipe.
  * the token-classification loss is tf-models' tagging loss (`official/nlp/tasks/tagging.py`):
    cross-entropy averaged over the positions whose label is >= 0 (first pieces).

After every epoch the dev set is scored; the best epoch's dev score is the result (A.3: "the
best-performing checkpoint for the validation set"). If a test set is given, the model as it was
after the best dev epoch is scored on it too.

Batches are padded to the longest row of the batch (rounded up to a multiple of 8), not to S:
the same result as padding to S (padding is masked out of attention), several times faster on a
CPU for short sentences.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras
from official.modeling import optimization
from official.nlp.modeling import models

from finetuning import features as features_lib

TAGGING_TYPES = ("pos", "ner")
TASK_TYPES = ("pos", "ner", "classification")
_PAD_MULTIPLE = 8


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """Fine-tuning hyperparameters; the defaults are the paper's Table 7 (NER, POS) and BERT's.

    Attributes:
      batch_size: training batch size (Table 7: 32).
      learning_rate: peak learning rate (Table 7: 3e-5).
      epochs: training epochs (Table 7: 10).
      warmup_ratio: fraction of the steps with linear warm-up (Table 7: 0.1).
      weight_decay: AdamW weight decay (BERT: 0.01).
      dropout: dropout on the encoder's hidden states and attention, and in the head (BERT: 0.1).
      gradient_clip_norm: global-norm clipping (BERT: 1.0).
      eval_batch_size: batch size of dev/test prediction.
    """

    batch_size: int = 32
    learning_rate: float = 3e-5
    epochs: int = 10
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    dropout: float = 0.1
    gradient_clip_norm: float = 1.0
    eval_batch_size: int = 64

    def validate(self) -> None:
        """Raises ValueError naming the first bad field."""
        for name in ("batch_size", "epochs", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        for name in ("warmup_ratio", "dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("weight_decay", "gradient_clip_norm"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def optimization_config(hparams: Hyperparameters, total_steps: int
                        ) -> optimization.OptimizationConfig:
    """The tf-models OptimizationConfig: AdamW, linear warm-up, then linear decay to 0."""
    warmup_steps = int(round(hparams.warmup_ratio * total_steps))
    config = {
        "optimizer": {"type": "adamw", "adamw": {
            "weight_decay_rate": hparams.weight_decay,
            "exclude_from_weight_decay": ["LayerNorm", "layer_norm", "bias"],
            "epsilon": 1e-6,
            "gradient_clip_norm": hparams.gradient_clip_norm}},
        "learning_rate": {"type": "polynomial", "polynomial": {
            "initial_learning_rate": hparams.learning_rate, "decay_steps": total_steps,
            "end_learning_rate": 0.0, "power": 1.0}},
    }
    if warmup_steps > 0:
        config["warmup"] = {"type": "linear", "linear": {"warmup_steps": warmup_steps}}
    return optimization.OptimizationConfig(config)


def build_optimizer(hparams: Hyperparameters, total_steps: int):
    """AdamW with the warm-up + decay schedule, from tf-models' OptimizerFactory."""
    factory = optimization.OptimizerFactory(optimization_config(hparams, total_steps))
    return factory.build_optimizer(factory.build_learning_rate())


def build_model(task_type: str, encoder: tf_keras.layers.Layer, num_classes: int,
                dropout: float, initializer_range: float = 0.02) -> tf_keras.Model:
    """The tf-models classifier of a task type over `encoder` (see the module docstring).

    Returns a model taking {input_word_ids, input_mask, input_type_ids} int32 [B, L] and
    returning logits float32 [B, L, num_classes] (tagging) or [B, num_classes].
    """
    initializer = tf_keras.initializers.TruncatedNormal(stddev=initializer_range)
    if task_type in TAGGING_TYPES:
        return models.BertTokenClassifier(network=encoder, num_classes=num_classes,
                                          initializer=initializer, dropout_rate=dropout,
                                          output="logits")
    if task_type == "classification":
        return models.BertClassifier(network=encoder, num_classes=num_classes,
                                     initializer=initializer, dropout_rate=dropout,
                                     use_encoder_pooler=False)
    raise ValueError(f"unknown task type {task_type!r}; known: {list(TASK_TYPES)}")


def _logits(model, inputs, training: bool) -> tf.Tensor:
    outputs = model(inputs, training=training)
    return tf.cast(outputs["logits"] if isinstance(outputs, dict) else outputs, tf.float32)


def tagging_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over positions with a label >= 0 (tf-models tagging.py's loss).

    Args:
      labels: int32 [B, L], -1 where not scored.
      logits: float32 [B, L, C].
    """
    mask = tf.greater_equal(labels, 0)
    per_position = tf_keras.losses.sparse_categorical_crossentropy(
        tf.where(mask, labels, 0), logits, from_logits=True)
    weights = tf.cast(mask, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(per_position * weights), tf.reduce_sum(weights))


def classification_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy; labels int32 [B], logits float32 [B, C]."""
    return tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True))


def batches(features: features_lib.Features, order: np.ndarray, batch_size: int):
    """Yields (inputs, labels, rows) batches over `order`, padded to the batch's longest row."""
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = int(features.lengths[rows].max())
        width = min(features.seq_length, _PAD_MULTIPLE * math.ceil(width / _PAD_MULTIPLE))
        inputs = {
            "input_word_ids": tf.constant(features.input_word_ids[rows, :width]),
            "input_mask": tf.constant(features.input_mask[rows, :width]),
            "input_type_ids": tf.constant(features.input_type_ids[rows, :width]),
        }
        labels = features.labels[rows]
        if labels.ndim == 2:
            labels = labels[:, :width]
        yield inputs, tf.constant(labels), rows


class FineTuner:
    """A task model and its optimizer; trains epochs and predicts.

    Args:
      model: from `build_model`.
      task_type: one of TASK_TYPES.
      hparams: the hyperparameters.
      total_steps: optimizer steps of the whole run (for the learning-rate schedule).
    """

    def __init__(self, model: tf_keras.Model, task_type: str, hparams: Hyperparameters,
                 total_steps: int):
        self.model = model
        self.task_type = task_type
        self.hparams = hparams
        self.optimizer = build_optimizer(hparams, total_steps)
        tagging = task_type in TAGGING_TYPES
        self._loss_fn = tagging_loss if tagging else classification_loss
        ids = tf.TensorSpec([None, None], tf.int32)
        input_spec = {"input_word_ids": ids, "input_mask": ids, "input_type_ids": ids}
        label_spec = tf.TensorSpec([None, None] if tagging else [None], tf.int32)
        self._train_step = tf.function(self._train_step_impl,
                                       input_signature=[input_spec, label_spec])
        self._predict_step = tf.function(self._predict_step_impl, input_signature=[input_spec])

    def _train_step_impl(self, inputs, labels):
        with tf.GradientTape() as tape:
            loss = self._loss_fn(labels, _logits(self.model, inputs, training=True))
        variables = self.model.trainable_variables
        gradients = tape.gradient(loss, variables)
        # The encoder's pooler is not on the path of either head: it gets no gradient.
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(gradients, variables) if g is not None])
        return loss

    def _predict_step_impl(self, inputs):
        return tf.argmax(_logits(self.model, inputs, training=False), axis=-1,
                         output_type=tf.int32)

    def train_epoch(self, features: features_lib.Features, rng: np.random.Generator) -> float:
        """One pass over `features` in a random order; returns the mean batch loss."""
        losses = []
        order = rng.permutation(len(features))
        for inputs, labels, _ in batches(features, order, self.hparams.batch_size):
            losses.append(float(self._train_step(inputs, labels)))
        return float(np.mean(losses))

    def predict(self, features: features_lib.Features) -> list:
        """Predicted label ids: per sentence, one per word (tagging); per example (classes)."""
        order = np.arange(len(features))
        if self.task_type not in TAGGING_TYPES:
            out = np.zeros([len(features)], np.int32)
            for inputs, _, rows in batches(features, order, self.hparams.eval_batch_size):
                out[rows] = self._predict_step(inputs).numpy()
            return out.tolist()
        predicted = np.full(features.input_word_ids.shape, -1, np.int32)
        for inputs, _, rows in batches(features, order, self.hparams.eval_batch_size):
            step = self._predict_step(inputs).numpy()
            predicted[rows, :step.shape[1]] = step
        return features_lib.word_predictions(features, predicted)


Scorer = Callable[[list], dict]


def fine_tune(make_encoder: Callable[[], tf_keras.layers.Layer], task_type: str,
              num_classes: int, train: features_lib.Features,
              dev: features_lib.Features, score_dev: Scorer,
              hparams: Hyperparameters, seed: int,
              test: features_lib.Features | None = None, score_test: Scorer | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Fine-tunes a fresh copy of a pretrained encoder; keeps the best dev epoch.

    Args:
      make_encoder: returns a fresh trainable encoder with the pretrained weights (and the
        fine-tuning dropout).
      task_type: one of TASK_TYPES.
      num_classes: number of labels.
      train, dev, test: features (same tokenizer, same S).
      score_dev, score_test: predicted label ids (as `FineTuner.predict` returns them) ->
        metrics dict with `score` (see finetuning.metrics.score).
      hparams: the hyperparameters.
      seed: seeds the head's initialisation, dropout and the batch order.
      log: receives one line per epoch.

    Returns:
      dict(seed, best_epoch, dev (metrics at the best epoch), test (or None), epochs (per epoch:
      loss, dev score, seconds), steps, seconds).
    """
    hparams.validate()
    start = time.monotonic()
    tf_keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(task_type, make_encoder(), num_classes, hparams.dropout)
    steps_per_epoch = math.ceil(len(train) / hparams.batch_size)
    total_steps = steps_per_epoch * hparams.epochs
    tuner = FineTuner(model, task_type, hparams, total_steps)
    best_score, best_epoch, best_dev, best_weights = -1.0, 0, None, None
    history = []
    for epoch in range(1, hparams.epochs + 1):
        epoch_start = time.monotonic()
        loss = tuner.train_epoch(train, rng)
        dev_metrics = score_dev(tuner.predict(dev))
        if dev_metrics["score"] > best_score:
            best_score, best_epoch, best_dev = dev_metrics["score"], epoch, dev_metrics
            if test is not None:
                best_weights = model.get_weights()
        seconds = time.monotonic() - epoch_start
        history.append(dict(epoch=epoch, loss=loss, dev_score=dev_metrics["score"],
                            seconds=seconds))
        log(f"epoch {epoch}/{hparams.epochs}: loss {loss:.4f}, dev {dev_metrics['metric']} "
            f"{100 * dev_metrics['score']:.2f} (best {100 * best_score:.2f} @ {best_epoch}), "
            f"{seconds:.1f} s")
    test_metrics = None
    if test is not None:
        model.set_weights(best_weights)
        test_metrics = score_test(tuner.predict(test))
    return dict(seed=seed, best_epoch=best_epoch, dev=best_dev, test=test_metrics,
                epochs=history, steps=total_steps, seconds=time.monotonic() - start)
