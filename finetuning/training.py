"""Fine-tuning one pretrained encoder on one task: a run per (learning rate, seed), until dev
stops improving.

Built from tf-models-official pieces:

  * models: `finetuning.word_tagger.WordTagger` for POS and NER (tf-models'
    `BertTokenClassifier` — dropout + dense on every position — with the choice of the word's
    first piece or the mean of its pieces), and tf-models' `BertClassifier` for sentence
    classification (`ClassificationHead` on [CLS], dense + tanh + dropout + dense). The
    classifier does not use the encoder's pooler (`use_encoder_pooler=False`): students never
    train their pooler and Hugging Face MLM checkpoints have none; every model gets the same
    freshly initialised head.
  * optimizer: tf-models' `OptimizerFactory` with AdamW (weight decay 0.01, not on LayerNorm
    and biases; global-norm gradient clipping at 1.0), BERT's recipe.
  * learning rate: BERT's linear warm-up over `warmup_ratio` of the run's steps, then linear
    decay to 0 at the end of `max_epochs` (`schedule=linear`, tf-models' LinearWarmup around a
    power-1 PolynomialDecay, same values), or constant after the warm-up
    (`schedule=constant`). The schedule's numbers live in variables (`RunSchedule`), so one
    traced training step serves every learning rate and seed.
  * the token-classification loss is tf-models' tagging loss (`official/nlp/tasks/tagging.py`):
    cross-entropy averaged over the positions whose label is >= 0 (first pieces).

The protocol (`fine_tune`): after every epoch the dev set is scored; the best dev epoch's
weights are kept (A.3: "the best-performing checkpoint for the validation set"); training stops
when dev has not improved for `patience` epochs, or at `max_epochs`. With `patience_after_rise`
(the default) patience only counts once dev has risen above its first epoch's score: a run whose
dev score still sits at its starting level (NER F1 0 while the head predicts `O` everywhere, the
majority tag) keeps training instead of stopping there. A run that reaches
`max_epochs` with its best epoch among the last `patience` was still improving, or (with
`patience_after_rise`) never rose above its first epoch: it is marked not converged. After
training, the best epoch's model is scored on the training set (in eval mode: is the model
underfitting?) and on the test set if one is given.

Speed (bench/bench_finetuning.py):

  * `FineTuner` builds the model, the optimizer and the traced steps once per encoder and task;
    each run resets the weights (pretrained encoder or a seeded random one, a seeded head), the
    optimizer's slots and the schedule, and re-seeds every dropout generator, so a run depends
    only on its seed and learning rate, not on what ran before in the process.
  * Training batches are drawn from length buckets (a shuffled pool of 16 batches is sorted by
    length and cut into batches, then the batches are shuffled), dev/test batches are sorted
    by length, and a batch is padded to its longest row rounded up to 8, not to S: the same
    result as padding to S (padding is masked out of attention), and several times faster.
  * `jit_compile` compiles the steps with XLA (one program per padded width; the last batch is
    padded to the full batch size with rows that carry no label).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras
from official.modeling import optimization
from official.nlp.modeling import models

from finetuning import encoders
from finetuning import features as features_lib
from finetuning import word_tagger

TAGGING_TYPES = ("pos", "ner")
TASK_TYPES = ("pos", "ner", "classification")
SCHEDULES = ("linear", "constant")
_PAD_MULTIPLE = 8
_POOL_BATCHES = 16
_INITIALIZER_RANGE = 0.02


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """Fine-tuning hyperparameters of one run.

    Attributes:
      batch_size: training batch size.
      learning_rate: peak learning rate (finetuning.run chooses it per model from a grid).
      max_epochs: the most epochs a run trains.
      patience: stop when dev has not improved for this many epochs (max_epochs: never stop
        early).
      patience_after_rise: count patience only once dev has risen above its first epoch's
        score (False: from the first epoch; a run still at its starting level then stops after
        `patience` epochs, e.g. NER at F1 0 before it has found any entity).
      warmup_ratio: fraction of the run's steps (max_epochs of them) with linear warm-up.
      schedule: `linear` (decay to 0 at max_epochs) or `constant` after the warm-up.
      weight_decay: AdamW weight decay (BERT: 0.01).
      dropout: dropout on the encoder's hidden states and attention, and in the head (BERT: 0.1).
      gradient_clip_norm: global-norm clipping (BERT: 1.0).
      eval_batch_size: batch size of dev/test/train prediction.
      word_pooling: tagging only: the word representation (finetuning.word_tagger).
      jit_compile: compile the training and prediction steps with XLA.
    """

    batch_size: int = 32
    learning_rate: float = 1e-3
    max_epochs: int = 40
    patience: int = 5
    patience_after_rise: bool = True
    warmup_ratio: float = 0.1
    schedule: str = "linear"
    weight_decay: float = 0.01
    dropout: float = 0.1
    gradient_clip_norm: float = 1.0
    eval_batch_size: int = 128
    word_pooling: str = "mean"
    jit_compile: bool = False

    def validate(self) -> None:
        """Raises ValueError naming the first bad field."""
        for name in ("batch_size", "max_epochs", "patience", "eval_batch_size"):
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
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.word_pooling not in word_tagger.WORD_POOLINGS:
            raise ValueError(f"word_pooling must be one of {list(word_tagger.WORD_POOLINGS)}, "
                             f"got {self.word_pooling!r}")

    def graph_key(self) -> tuple:
        """The fields a traced FineTuner depends on (the others change per run)."""
        return (self.batch_size, self.weight_decay, self.dropout, self.gradient_clip_norm,
                self.eval_batch_size, self.word_pooling, self.jit_compile)


class RunSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
    """BERT's warm-up + linear decay (or constant), its numbers in variables.

    rate(step) = peak * (1 - step / total) (linear) or peak (constant) after `warmup` steps; during
    the warm-up, rate(warmup) * step / warmup — the values of tf-models' LinearWarmup around a
    power-1 PolynomialDecay to 0 over `total` steps. `set` changes them between runs without
    retracing the training step.
    """

    def __init__(self):
        super().__init__()
        self.peak = tf.Variable(0.0, trainable=False, name="peak_learning_rate")
        self.warmup = tf.Variable(0.0, trainable=False, name="warmup_steps")
        self.total = tf.Variable(1.0, trainable=False, name="total_steps")
        self.decay = tf.Variable(1.0, trainable=False, name="linear_decay")

    def set(self, peak: float, warmup_steps: int, total_steps: int, schedule: str) -> None:
        self.peak.assign(peak)
        self.warmup.assign(float(warmup_steps))
        self.total.assign(float(max(total_steps, 1)))
        self.decay.assign(1.0 if schedule == "linear" else 0.0)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)

        def decayed(at):
            return self.peak * (1.0 - self.decay * tf.minimum(at, self.total) / self.total)

        warming = decayed(self.warmup) * step / tf.maximum(self.warmup, 1.0)
        return tf.where(step < self.warmup, warming, decayed(step))

    def get_config(self):
        return {}


def optimization_config(hparams: Hyperparameters) -> optimization.OptimizationConfig:
    """The tf-models OptimizationConfig of the optimizer (AdamW; the rate is a RunSchedule)."""
    return optimization.OptimizationConfig({
        "optimizer": {"type": "adamw", "adamw": {
            "weight_decay_rate": hparams.weight_decay,
            "exclude_from_weight_decay": ["LayerNorm", "layer_norm", "bias"],
            "epsilon": 1e-6,
            "gradient_clip_norm": hparams.gradient_clip_norm}},
        "learning_rate": {"type": "constant", "constant": {"learning_rate": 1.0}}})


def build_optimizer(hparams: Hyperparameters, schedule: RunSchedule):
    """AdamW from tf-models' OptimizerFactory, driven by `schedule`."""
    return optimization.OptimizerFactory(optimization_config(hparams)).build_optimizer(schedule)


def build_model(task_type: str, encoder: tf_keras.layers.Layer, num_classes: int,
                dropout: float, word_pooling: str = "first") -> tf_keras.Model:
    """The classifier of a task type over `encoder` (see the module docstring).

    Returns a model taking {input_word_ids, input_mask, input_type_ids[, word_starts]} int32
    [B, L] and returning logits float32 [B, L, num_classes] (tagging) or [B, num_classes].
    """
    initializer = tf_keras.initializers.TruncatedNormal(stddev=_INITIALIZER_RANGE)
    if task_type in TAGGING_TYPES:
        return word_tagger.WordTagger(encoder, num_classes, pooling=word_pooling,
                                      dropout_rate=dropout, initializer=initializer)
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
    """Mean cross-entropy over rows with a label >= 0; labels int32 [B], logits [B, C]."""
    mask = tf.greater_equal(labels, 0)
    per_row = tf_keras.losses.sparse_categorical_crossentropy(
        tf.where(mask, labels, 0), logits, from_logits=True)
    weights = tf.cast(mask, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(per_row * weights), tf.reduce_sum(weights))


def training_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator
                   ) -> list[np.ndarray]:
    """One epoch's batches (row indices): every row once, rows of similar length together.

    The rows are shuffled, cut into pools of 16 batches, each pool sorted by length and cut into
    batches; then the batches are shuffled. Only the last batch can be short.
    """
    order = rng.permutation(len(lengths))
    pool = batch_size * _POOL_BATCHES
    out = []
    for start in range(0, len(order), pool):
        rows = order[start:start + pool]
        rows = rows[np.argsort(lengths[rows], kind="stable")]
        out += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    short = [b for b in out if len(b) < batch_size]
    full = [out[i] for i in rng.permutation(len(out)) if len(out[i]) == batch_size]
    return full + short


def evaluation_order(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Prediction batches (row indices), sorted by length."""
    rows = np.argsort(lengths, kind="stable")
    return [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]


def batches(features: features_lib.Features, order: Sequence[np.ndarray],
            pad_rows_to: int | None = None):
    """Yields (inputs, labels, rows) for each batch of `order`, padded to the batch's longest
    row rounded up to 8 (at most S); `pad_rows_to` adds label-less rows up to that many."""
    tagging = features.labels.ndim == 2
    for rows in order:
        width = int(features.lengths[rows].max())
        width = min(features.seq_length, _PAD_MULTIPLE * math.ceil(width / _PAD_MULTIPLE))
        take = rows
        extra = (pad_rows_to - len(rows)) if pad_rows_to else 0
        if extra > 0:
            take = np.concatenate([rows, np.repeat(rows[:1], extra)])
        inputs = {
            "input_word_ids": features.input_word_ids[take, :width],
            "input_mask": features.input_mask[take, :width],
            "input_type_ids": features.input_type_ids[take, :width],
        }
        if tagging:
            inputs["word_starts"] = features.word_starts[take, :width]
        labels = features.labels[take]
        if tagging:
            labels = labels[:, :width]
        if extra > 0:
            labels = labels.copy()
            labels[len(rows):] = features_lib.IGNORED_LABEL
        yield ({k: tf.constant(v) for k, v in inputs.items()}, tf.constant(labels), rows)


def _head_variables(model: tf_keras.Model, encoder: tf_keras.layers.Layer) -> list:
    encoder_ids = {id(v) for v in encoder.weights}
    return [v for v in model.weights if id(v) not in encoder_ids]


def _dropout_generators(model: tf_keras.Model) -> list:
    """The tf.random.Generator of every dropout layer of the model (see `FineTuner`)."""
    generators = []
    for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
        if isinstance(layer, tf_keras.layers.Dropout) and layer.rate:  # rate 0 draws nothing
            generator = getattr(getattr(layer, "_random_generator", None), "_generator", None)
            if not isinstance(generator, tf.random.Generator):
                raise RuntimeError(f"dropout layer {layer.name} has no tf.random.Generator: "
                                   "the model was not built by FineTuner")
            generators.append(generator)
    return generators


class FineTuner:
    """One task model over one encoder, traced once; each run resets it.

    Args:
      make_encoder: returns a trainable tf-models encoder built with the fine-tuning dropout
        (its weights are the pretrained weights every `reset` restores by default); called
        once, while tf_keras builds dropout on tf.random.Generator.
      task_type: one of TASK_TYPES.
      num_classes: number of labels.
      hparams: the graph's hyperparameters (`Hyperparameters.graph_key`); a run may change the
        others.

    Dropout: the model is built with tf_keras' tf.random.Generator-backed dropout, and `reset`
    re-seeds every generator from the run's seed, so a run does not depend on earlier runs.
    """

    def __init__(self, make_encoder: Callable[[], tf_keras.layers.Layer], task_type: str,
                 num_classes: int, hparams: Hyperparameters):
        hparams.validate()
        self.task_type = task_type
        self.hparams = hparams
        tagging = task_type in TAGGING_TYPES
        was_enabled = tf_keras.backend.experimental.is_tf_random_generator_enabled()
        tf_keras.backend.experimental.enable_tf_random_generator()
        try:
            self.encoder = encoder = make_encoder()
            self.model = build_model(task_type, encoder, num_classes, hparams.dropout,
                                     hparams.word_pooling)
            ids = tf.zeros([1, _PAD_MULTIPLE], tf.int32)
            dummy = dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=ids)
            if tagging:
                dummy["word_starts"] = tf.range(_PAD_MULTIPLE)[None, :]
            self.model(dummy, training=True)  # builds the head and every dropout generator
        finally:
            if not was_enabled:
                tf_keras.backend.experimental.disable_tf_random_generator()
        self.pretrained = [v.numpy() for v in encoder.weights]
        self._head = _head_variables(self.model, encoder)
        self._generators = _dropout_generators(self.model)
        self.schedule = RunSchedule()
        self.optimizer = build_optimizer(hparams, self.schedule)
        self._loss_fn = tagging_loss if tagging else classification_loss
        ids_spec = tf.TensorSpec([None, None], tf.int32)
        input_spec = {"input_word_ids": ids_spec, "input_mask": ids_spec,
                      "input_type_ids": ids_spec}
        if tagging:
            input_spec["word_starts"] = ids_spec
        label_spec = tf.TensorSpec([None, None] if tagging else [None], tf.int32)
        self._train_step = tf.function(self._train_step_impl,
                                       input_signature=[input_spec, label_spec],
                                       jit_compile=hparams.jit_compile)
        self._predict_step = tf.function(self._predict_step_impl, input_signature=[input_spec],
                                         jit_compile=hparams.jit_compile)
        self._optimizer_built = False

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

    def random_encoder_weights(self, seed: int) -> list[np.ndarray]:
        """Freshly initialised encoder weights (the encoder config's initializers), seeded."""
        tf_keras.utils.set_random_seed(seed)
        fresh = type(self.encoder).from_config(encoders.rebuild_config(self.encoder))
        ids = tf.constant([[0, 0]], tf.int32)
        fresh(dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=ids),
              training=False)
        return [v.numpy() for v in fresh.weights]

    def reset(self, seed: int, hparams: Hyperparameters, total_steps: int,
              encoder_weights: list[np.ndarray] | None = None) -> None:
        """Prepares a run: encoder weights (default: pretrained), a seeded head, a fresh
        optimizer and schedule, re-seeded dropout."""
        if hparams.graph_key() != self.hparams.graph_key():
            raise ValueError("FineTuner.reset: hyperparameters that the traced model depends "
                             f"on differ ({hparams.graph_key()} vs {self.hparams.graph_key()})")
        weights = self.pretrained if encoder_weights is None else encoder_weights
        for variable, value in zip(self.encoder.weights, weights):
            variable.assign(value)
        rng = np.random.default_rng([seed, 1])
        for variable in self._head:
            shape = variable.shape.as_list()
            if variable.name.split("/")[-1].startswith("kernel"):
                values = np.clip(rng.normal(0.0, 1.0, shape), -2.0, 2.0) * _INITIALIZER_RANGE
                variable.assign(values.astype(variable.dtype.as_numpy_dtype))
            elif "gamma" in variable.name:
                variable.assign(np.ones(shape, variable.dtype.as_numpy_dtype))
            else:
                variable.assign(np.zeros(shape, variable.dtype.as_numpy_dtype))
        for index, generator in enumerate(self._generators):
            generator.reset_from_seed(seed * 100_003 + index)
        warmup = int(round(hparams.warmup_ratio * total_steps))
        self.schedule.set(hparams.learning_rate, warmup, total_steps, hparams.schedule)
        if self._optimizer_built:
            for variable in self.optimizer.variables():
                variable.assign(tf.zeros_like(variable))

    def train_epoch(self, features: features_lib.Features, rng: np.random.Generator) -> float:
        """One pass over `features` in length-bucketed random batches; the mean batch loss."""
        losses = []
        order = training_order(features.lengths, self.hparams.batch_size, rng)
        pad = self.hparams.batch_size if self.hparams.jit_compile else None
        for inputs, labels, _ in batches(features, order, pad):
            losses.append(self._train_step(inputs, labels))
        self._optimizer_built = True
        return float(np.mean([float(loss) for loss in losses]))

    def predict(self, features: features_lib.Features) -> list:
        """Predicted label ids: per sentence, one per word (tagging); per example (classes)."""
        order = evaluation_order(features.lengths, self.hparams.eval_batch_size)
        pad = self.hparams.eval_batch_size if self.hparams.jit_compile else None
        if self.task_type not in TAGGING_TYPES:
            out = np.zeros([len(features)], np.int32)
            for inputs, _, rows in batches(features, order, pad):
                out[rows] = self._predict_step(inputs).numpy()[:len(rows)]
            return out.tolist()
        predicted = np.full(features.input_word_ids.shape, -1, np.int32)
        for inputs, _, rows in batches(features, order, pad):
            step = self._predict_step(inputs).numpy()[:len(rows)]
            predicted[rows, :step.shape[1]] = step
        return features_lib.word_predictions(features, predicted)


Scorer = Callable[[list], dict]


def fine_tune(tuner: FineTuner, train: features_lib.Features, dev: features_lib.Features,
              score_dev: Scorer, hparams: Hyperparameters, seed: int,
              encoder_weights: list[np.ndarray] | None = None,
              test: features_lib.Features | None = None, score_test: Scorer | None = None,
              score_train: Scorer | None = None,
              log: Callable[[str], None] = print) -> dict:
    """One run: trains until dev stops improving; keeps the best dev epoch.

    Args:
      tuner: the task model (FineTuner) over the encoder.
      train, dev, test: features (same tokenizer, same S).
      score_dev, score_test, score_train: predicted label ids (as `FineTuner.predict` returns
        them) -> metrics dict with `score` (see finetuning.metrics.score).
      hparams: the run's hyperparameters.
      seed: seeds the head's initialisation, dropout and the batch order.
      encoder_weights: the encoder's starting weights (default: the pretrained ones;
        `FineTuner.random_encoder_weights` for the no-pretraining control).
      log: receives one line per epoch.

    Returns:
      dict(seed, learning_rate, best_epoch, epochs_trained, stopped ('patience' or
      'max_epochs'), converged, rose (dev rose above its first epoch's score), dev (metrics at
      the best epoch), train (metrics of the best model on the training set, eval mode; None
      without score_train), test (or None), epochs (per epoch: loss, dev score, seconds),
      steps, seconds).
    """
    hparams.validate()
    start = time.monotonic()
    rng = np.random.default_rng(seed)
    steps_per_epoch = math.ceil(len(train) / hparams.batch_size)
    total_steps = steps_per_epoch * hparams.max_epochs
    tuner.reset(seed, hparams, total_steps, encoder_weights)
    best_score, best_epoch, best_dev, best_weights = -1.0, 0, None, None
    first_score, rose = None, False
    history = []
    stopped = "max_epochs"
    for epoch in range(1, hparams.max_epochs + 1):
        epoch_start = time.monotonic()
        loss = tuner.train_epoch(train, rng)
        dev_metrics = score_dev(tuner.predict(dev))
        if first_score is None:
            first_score = dev_metrics["score"]
        rose = rose or dev_metrics["score"] > first_score
        if dev_metrics["score"] > best_score:
            best_score, best_epoch, best_dev = dev_metrics["score"], epoch, dev_metrics
            best_weights = [v.numpy() for v in tuner.model.weights]
        seconds = time.monotonic() - epoch_start
        history.append(dict(epoch=epoch, loss=loss, dev_score=dev_metrics["score"],
                            seconds=seconds))
        log(f"lr {hparams.learning_rate:g} epoch {epoch}/{hparams.max_epochs}: loss {loss:.4f}, "
            f"dev {dev_metrics['metric']} {100 * dev_metrics['score']:.2f} (best "
            f"{100 * best_score:.2f} @ {best_epoch}), {seconds:.1f} s")
        waiting = hparams.patience_after_rise and not rose
        if epoch - best_epoch >= hparams.patience and epoch < hparams.max_epochs and not waiting:
            stopped = "patience"
            break
    epochs_trained = len(history)
    converged = stopped == "patience" or epochs_trained - best_epoch >= hparams.patience
    # Under patience_after_rise a run that never rose reached max_epochs still at its start.
    converged = converged and (rose or not hparams.patience_after_rise)
    for variable, value in zip(tuner.model.weights, best_weights):
        variable.assign(value)
    train_metrics = score_train(tuner.predict(train)) if score_train is not None else None
    test_metrics = score_test(tuner.predict(test)) if test is not None else None
    return dict(seed=seed, learning_rate=hparams.learning_rate, best_epoch=best_epoch,
                epochs_trained=epochs_trained, stopped=stopped, converged=bool(converged),
                rose=bool(rose),
                dev=best_dev, train=train_metrics, test=test_metrics, epochs=history,
                steps=steps_per_epoch * epochs_trained, seconds=time.monotonic() - start)
