"""The student's training loop under a tf.distribute strategy (TPU, Mirrored, OneDevice).

One call of the compiled loop (`tf.function`) runs `n <= train.steps_per_loop` steps:

    for i in tf.range(n):
        step   = optimizer.iterations            (0-based, before the update)
        lambda = LambdaSchedule(step);  lr = schedule(step)
        batch  = next(distributed iterator)      (per-replica batches, strings already dropped)
        strategy.run(replica_step, (batch, lambda))

and returns every step's total / KD / MLM loss, lambda, learning rate and gradient norm, written
to TensorBoard afterwards by the host (no host call inside the device loop).

replica_step:
  1. all-reduce the loss denominators (they depend on the batch only; see losses.py), so each
     replica's numerator / global denominator sums to the loss of the whole global batch;
  2. forward + backward (`_forward_backward`; XLA-compiled with runtime.jit_compile);
  3. all-reduce (SUM) the gradients, clip them by global norm, apply them with the tf-models
     optimizer (AdamW + warm-up + linear decay by default) without further aggregation.
So the loss and the update do not depend on the number of replicas.

Non-finite guard: a step whose loss or gradient norm is NaN or infinite ends the loop call at
that step (the host sees how many steps ran and the bad batch's languages) and `run_steps`
raises `NonFiniteLossError` naming the step, the loss parts and the languages of the batch,
before `train` saves any checkpoint (so nothing of that state is saved or exported; the last
checkpoint on disk is the last good one). NaN/infinite values in the shards themselves are
refused earlier, when read (input_pipeline.py), as a ShardError naming the file.

Checkpoints (tf.train.CheckpointManager in model_dir, every train.checkpoint_interval steps and
at the end) hold the model, its dropout generators' states, the optimizer (with its step),
the per-language examples-seen counters and the input iterator's position; a new trainer on the
same model_dir resumes from the latest one by itself. Several workers (multi_worker_mirrored):
each worker steps through its own part of every global batch (input_pipeline.worker_dataset),
only the chief writes checkpoints and summaries (the others save into a deleted temporary
folder, distribution.py), and each worker saves its own input position under
model_dir/input_state/worker-<i>-of-<W>.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from official.modeling import optimization

from student import config as config_lib
from student import distribution
from student import input_pipeline as input_lib
from student import lambda_schedule as lambda_lib
from student import losses
from student import model as model_lib
from student import shard_sources

METRICS = ("loss", "kd_loss", "mlm_loss", "lambda", "learning_rate", "grad_norm")
SUMMARY_DIR = "summaries"


class NonFiniteLossError(RuntimeError):
    """A training step gave a NaN/infinite loss or gradient; names the step and the batch."""


def setup_runtime(config: config_lib.StudentConfig) -> None:
    """Process-wide settings a run needs before any model is built.

    Seeds Python, NumPy, TF and tf_keras (`runtime.seed`); makes tf_keras dropout use
    `tf.random.Generator`s, whose states are variables saved in checkpoints (so a resumed run
    draws the same dropout masks as an uninterrupted one); enables op determinism with
    `runtime.deterministic`.
    """
    tf_keras.utils.set_random_seed(config.runtime.seed)
    tf_keras.backend.experimental.enable_tf_random_generator()
    if config.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()


def dropout_generators(model: tf_keras.Model) -> list[tf.random.Generator]:
    """The tf.random.Generators of the model's dropout layers, in a fixed order.

    tf_keras keeps them out of `model.weights` and checkpoints on purpose; the trainer saves
    them itself so that a resumed run draws the same dropout masks as an uninterrupted one.
    Raises if a random layer does not use a Generator (setup_runtime was not called first).
    """
    generators = []
    for module in model.submodules:
        rng = getattr(module, "_random_generator", None)
        if rng is None:
            continue
        generator = getattr(rng, "_generator", None)
        if not isinstance(generator, tf.random.Generator):
            raise RuntimeError(
                f"layer {module.name!r} draws random numbers without a tf.random.Generator "
                f"(rng type {getattr(rng, '_rng_type', None)!r}); call setup_runtime() before "
                "building the model")
        generators.append(generator)
    return generators


@dataclasses.dataclass
class TrainHistory:
    """Per-step metrics of the steps this trainer ran (host NumPy arrays)."""

    steps: list[int] = dataclasses.field(default_factory=list)
    metrics: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {name: [] for name in METRICS})

    def extend(self, first_step: int, values: dict[str, np.ndarray]) -> None:
        n = len(values["loss"])
        self.steps.extend(range(first_step + 1, first_step + n + 1))
        for name in METRICS:
            self.metrics[name].extend(float(v) for v in values[name])


class StudentTrainer:
    """Builds the model, optimizer, distributed input and checkpoints; runs the training loop.

    Args:
      config: the validated StudentConfig.
      strategy: a tf.distribute.Strategy (see student/distribution.py).
      pipeline: the input pipeline (its sources are already checked against the config).
      model_dir: checkpoints, summaries and the export go here.
    """

    def __init__(self, config: config_lib.StudentConfig, strategy: tf.distribute.Strategy,
                 pipeline: input_lib.StudentInputPipeline, model_dir: str):
        self.config = config
        self.strategy = strategy
        self.pipeline = pipeline
        self.model_dir = model_dir
        self.use_teacher = pipeline.use_teacher
        self.languages = pipeline.languages
        self.lambda_schedule = lambda_lib.LambdaSchedule.from_config(config)
        if self.use_teacher and self.lambda_schedule.always_zero:
            raise config_lib.ConfigError("the pipeline reads teacher outputs but lambda is 0 "
                                         "throughout; build it with use_teacher=False")
        if not self.use_teacher and not self.lambda_schedule.always_zero:
            raise config_lib.ConfigError(
                f"{self.lambda_schedule} uses the KD term but the input pipeline has no teacher "
                "outputs")
        replicas = strategy.num_replicas_in_sync
        if config.data.global_batch_size % replicas:
            raise config_lib.ConfigError(
                f"config: field 'data.global_batch_size' = {config.data.global_batch_size}: must "
                f"be a multiple of the {replicas} replicas of the strategy")
        self._clip_norm = config_lib.gradient_clip_norm(config)
        setup_runtime(config)
        data = config.data
        with strategy.scope():
            self.model = model_lib.build_pretrainer(config.model, data.seq_length,
                                                    data.max_predictions_per_seq)
            factory = optimization.OptimizerFactory(
                config_lib.optimizer_config_without_clipping(config))
            self.learning_rate = factory.build_learning_rate()
            self.optimizer = factory.build_optimizer(self.learning_rate)
            self.global_step = self.optimizer.iterations
            self.examples_seen = tf.Variable(
                tf.zeros([len(self.languages)], tf.int64), trainable=False,
                name="examples_seen", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        pooler = {v.ref() for v in self.model.encoder_network.pooler_layer.trainable_variables}
        # The pooler gets no gradient from MLM/KD (no next-sentence task); it is kept (it is
        # part of BERT-base and of the parameter counts) but not trained.
        self.train_variables = [v for v in self.model.trainable_variables
                                if v.ref() not in pooler]
        self._per_replica_batch = config.data.global_batch_size // replicas
        # Which worker this process is (multi_worker_mirrored; else the one worker, the chief).
        self.worker = distribution.worker_info(strategy)
        items = dict(model=self.model, optimizer=self.optimizer, examples_seen=self.examples_seen,
                     dropout_generators=dropout_generators(self.model))
        self.iterator = None
        self.input_checkpoint_manager = None
        if config.train.checkpoint_input_iterator:
            # tf.distribute iterators cannot be checkpointed; a host tf.data iterator of global
            # batches can (of this worker's part of them, worker_dataset). Each step splits its
            # batch across the local replicas (_next_batch).
            self.iterator = iter(pipeline.worker_dataset(self.worker.num_workers,
                                                         self.worker.index))
            if self.worker.num_workers == 1:
                items["iterator"] = self.iterator
            else:
                # Each worker's input position is its own: saved by that worker, beside the
                # chief's checkpoint of the same step (_save, _restore_input).
                self.input_checkpoint_manager = tf.train.CheckpointManager(
                    tf.train.Checkpoint(iterator=self.iterator), self.input_state_dir,
                    max_to_keep=config.train.max_checkpoints_to_keep)
        self.checkpoint = tf.train.Checkpoint(**items)
        # Only the chief writes checkpoints to model_dir; other workers save the same (a save
        # may need collectives) into a temporary folder that is deleted (distribution.py).
        self.checkpoint_manager = tf.train.CheckpointManager(
            self.checkpoint, distribution.write_dir(model_dir, self.worker),
            max_to_keep=config.train.max_checkpoints_to_keep, step_counter=self.global_step)
        if config.runtime.jit_compile:
            self._forward_backward = tf.function(self._forward_backward_impl, jit_compile=True)
        else:
            self._forward_backward = self._forward_backward_impl
        self._train_loop = tf.function(self._train_loop_impl)
        self._summary_writer = None

    # ------------------------------------------------------------------ the compiled step

    def _forward_backward_impl(self, features, global_denominators, lam):
        """Loss values and dense gradients (w.r.t. train_variables) of one replica's batch.

        features: per-replica batch (shapes in input_pipeline.py); global_denominators:
        losses.Denominators of the global batch; lam: float32 scalar.
        """
        loss_config = self.config.loss
        with tf.GradientTape() as tape:
            outputs = self.model(model_lib.model_inputs(features), training=True)
            values = losses.student_loss(
                outputs["mlm_logits"], features, lam, self.use_teacher,
                temperature=loss_config.temperature,
                scale_by_temperature_squared=loss_config.scale_kd_by_temperature_squared,
                global_denominators=global_denominators)
        grads = tape.gradient(values.total, self.train_variables)
        missing = [v.name for v, g in zip(self.train_variables, grads) if g is None]
        if missing:
            raise ValueError(f"no gradient for trainable variable(s) {missing}")
        return values, [tf.convert_to_tensor(g) for g in grads]

    def _replica_gradients(self, features, lam):
        """This replica's loss parts and the all-reduced (global-batch) gradients."""
        context = tf.distribute.get_replica_context()
        local = losses.denominators(features, self.use_teacher)
        global_denominators = losses.Denominators(
            *context.all_reduce(tf.distribute.ReduceOp.SUM, list(local)))
        values, grads = self._forward_backward(features, global_denominators, lam)
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        return values, grads

    def _replica_step(self, features, lam):
        """One optimizer step on this replica's batch; returns its additive loss parts."""
        values, grads = self._replica_gradients(features, lam)
        if self._clip_norm > 0:
            grads, grad_norm = tf.clip_by_global_norm(grads, self._clip_norm)
        else:
            grad_norm = tf.linalg.global_norm(grads)
        self.optimizer.apply_gradients(zip(grads, self.train_variables),
                                       experimental_aggregate_gradients=False)
        counts = tf.reduce_sum(
            tf.one_hot(features[input_lib.LANGUAGE_ID], len(self.languages), dtype=tf.int32), 0)
        return dict(loss=values.total, kd_loss=values.kd, mlm_loss=values.mlm,
                    counts=counts), grad_norm

    def _learning_rate_at(self, step):
        if callable(self.learning_rate):
            return tf.cast(self.learning_rate(step), tf.float32)
        return tf.constant(float(self.learning_rate), tf.float32)

    def _make_distributed_iterator(self, step: int):
        """Per-host pipelines prefetching to the devices (checkpoint_input_iterator=false).

        The stream cannot be restored, so a resumed run reseeds it with the step instead of
        replaying the examples of the first run.
        """
        dataset = self.strategy.distribute_datasets_from_function(
            lambda context: self.pipeline.dataset(context, seed_offset=step))
        return iter(dataset)

    def _next_batch(self, iterator):
        """The next per-replica batch (a PerReplica value under a multi-replica strategy)."""
        if not self.config.train.checkpoint_input_iterator:
            return next(iterator)
        return self._distribute_host_batch(next(iterator))

    def _distribute_host_batch(self, batch):
        """This worker's part of a global batch, split over its local replicas."""
        size = self._per_replica_batch
        # Sliced on the host, where the iterator lives; the strategy moves each slice to its
        # replica's device.
        slices = [{name: value[r * size:(r + 1) * size] for name, value in batch.items()}
                  for r in range(self.worker.local_replicas)]
        first = self.worker.first_replica
        return self.strategy.experimental_distribute_values_from_function(
            lambda context: slices[context.replica_id_in_sync_group - first])

    def _train_loop_impl(self, iterator, num_steps):
        arrays = tuple(tf.TensorArray(tf.float32, size=num_steps, element_shape=[])
                       for _ in METRICS)
        steps_run = tf.constant(0, tf.int32)
        bad_batch_counts = tf.zeros([len(self.languages)], tf.int32)
        for i in tf.range(num_steps):
            step = self.global_step.read_value()
            lam = self.lambda_schedule(step)
            learning_rate = self._learning_rate_at(step)
            features = self._next_batch(iterator)
            additive, grad_norm = self.strategy.run(self._replica_step, args=(features, lam))
            # One value at a time: MultiWorkerMirroredStrategy does not reduce a dict.
            summed = {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                      for name, value in additive.items()}
            grad_norm = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, grad_norm, axis=None)
            self.examples_seen.assign_add(tf.cast(summed["counts"], tf.int64))
            values = dict(loss=summed["loss"], kd_loss=summed["kd_loss"],
                          mlm_loss=summed["mlm_loss"], grad_norm=grad_norm)
            values["lambda"] = lam
            values["learning_rate"] = learning_rate
            arrays = tuple(array.write(i, values[name]) for array, name in zip(arrays, METRICS))
            steps_run = i + 1
            if not (tf.math.is_finite(summed["loss"]) and tf.math.is_finite(grad_norm)):
                bad_batch_counts = summed["counts"]
                break
        outputs = {name: array.stack()[:steps_run] for name, array in zip(METRICS, arrays)}
        outputs["steps_run"] = steps_run
        outputs["bad_batch_counts"] = bad_batch_counts
        return outputs

    def _gradients_impl(self, iterator, lam):
        features = self._next_batch(iterator)
        values, grads = self.strategy.run(self._replica_gradients, args=(features, lam))
        summed = self.strategy.reduce(tf.distribute.ReduceOp.SUM, values._asdict(), axis=None)
        return summed, [self.strategy.experimental_local_results(g)[0] for g in grads]

    def loss_and_gradients(self, lam: float) -> tuple[dict[str, float], list[np.ndarray]]:
        """Loss values and clipped-free global gradients of the next batch, without an update.

        For tests and benchmarks: the same computation as a training step up to the optimizer.
        Returns ({"total", "kd", "mlm"} floats, gradients in train_variables order).
        """
        if self.iterator is None:
            self.iterator = self._make_distributed_iterator(int(self.global_step.numpy()))
        if not hasattr(self, "_gradients_fn"):
            self._gradients_fn = tf.function(self._gradients_impl)
        values, grads = self._gradients_fn(self.iterator, tf.constant(lam, tf.float32))
        return ({name: float(v) for name, v in values.items()}, [g.numpy() for g in grads])

    # ------------------------------------------------------------------ host side

    @property
    def input_state_dir(self) -> str:
        """Where this worker saves its input position (several workers only)."""
        return os.path.join(self.model_dir, "input_state",
                            f"worker-{self.worker.index}-of-{self.worker.num_workers}")

    def _input_state_path(self, step: int, worker: int | None = None) -> str:
        index = self.worker.index if worker is None else worker
        return os.path.join(self.model_dir, "input_state",
                            f"worker-{index}-of-{self.worker.num_workers}", f"ckpt-{step}")

    def _restore_path(self) -> str | None:
        """The checkpoint in model_dir to resume from: the latest one; with several workers
        the latest one for which every worker saved its input position."""
        if self.input_checkpoint_manager is None:
            return tf.train.latest_checkpoint(self.model_dir)
        state = tf.train.get_checkpoint_state(self.model_dir)
        paths = list(state.all_model_checkpoint_paths) if state else []
        for path in reversed(paths):
            step = int(path.rsplit("-", 1)[1])
            if all(tf.io.gfile.exists(self._input_state_path(step, w) + ".index")
                   for w in range(self.worker.num_workers)):
                return path
            logging.warning("%s: not every one of the %d workers saved its input position at "
                            "step %d; trying an older checkpoint", path,
                            self.worker.num_workers, step)
        if paths:
            raise shard_sources.ShardError(
                f"{self.model_dir}: no checkpoint ({', '.join(paths)}) has the input positions "
                f"of all {self.worker.num_workers} workers under "
                f"{os.path.dirname(self.input_state_dir)}; was it written by a run with another "
                "number of workers?")
        return None

    def restore(self) -> int:
        """Restores the latest checkpoint in model_dir, if any; returns the current step."""
        path = self._restore_path()
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
            logging.info("restored %s (step %d)", path, int(self.global_step.numpy()))
            if self.input_checkpoint_manager is not None:
                input_path = self._input_state_path(int(self.global_step.numpy()))
                self.input_checkpoint_manager.checkpoint.restore(
                    input_path).assert_existing_objects_matched()
                logging.info("restored this worker's input position %s", input_path)
        step = int(self.global_step.numpy())
        if self.iterator is None:
            self.iterator = self._make_distributed_iterator(step)
        return step

    def run_steps(self, num_steps: int) -> dict[str, np.ndarray]:
        """Runs `num_steps` steps in one compiled loop call; per-step metrics as NumPy arrays.

        A data error (corrupt / truncated / unparsable shard, or a language running dry) is
        re-raised as a ShardError naming the bad file(s).
        """
        if self.iterator is None:
            self.iterator = self._make_distributed_iterator(int(self.global_step.numpy()))
        first_step = int(self.global_step.numpy())
        try:
            outputs = self._train_loop(self.iterator, tf.constant(num_steps, tf.int32))
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
                tf.errors.OutOfRangeError) as error:
            self._raise_data_error(error)
        values = {name: value.numpy() for name, value in outputs.items()}
        steps_run = int(values.pop("steps_run"))
        bad_counts = values.pop("bad_batch_counts")
        if steps_run < num_steps or not (np.isfinite(values["loss"][-1])
                                         and np.isfinite(values["grad_norm"][-1])):
            self._raise_non_finite(first_step + steps_run, values, bad_counts)
        return values

    def _raise_non_finite(self, step: int, values: dict[str, np.ndarray], counts: np.ndarray):
        """NonFiniteLossError for training step `step` (1-based, the last of `values`)."""
        languages = {lang: int(n) for lang, n in zip(self.languages, counts) if n}
        parts = ", ".join(f"{name} {values[name][-1]:.6g}" for name in
                          ("loss", "kd_loss", "mlm_loss", "grad_norm", "lambda"))
        hint = ""
        if np.isfinite(values["mlm_loss"][-1]) and not np.isfinite(values["kd_loss"][-1]):
            hint = (" The KD term is the non-finite one: the teacher logits of that batch are "
                    "finite (checked when read) but overflow at this temperature, or the "
                    "student's logits do.")
        shard_dirs = {s.language: s.shard_dir for s in self.pipeline.sources
                      if s.language in languages}
        raise NonFiniteLossError(
            f"training step {step}/{self.config.train.steps} gave a non-finite loss or gradient "
            f"({parts}); the batch held examples of {languages} (shard folders {shard_dirs}). "
            f"Stopped before saving anything of this step: the latest checkpoint in "
            f"{self.model_dir} is from an earlier step.{hint}")

    def _raise_data_error(self, error: tf.errors.OpError):
        logging.error("data error during training, scanning the shards: %s", error.message)
        bad = self.pipeline.locate_corrupt_shards()
        if not bad:
            raise error
        details = "; ".join(f"{scan.path}: {scan.error}" for scan in bad)
        raise shard_sources.ShardError(
            f"corrupt or unreadable shard(s): {details} (leave them out with "
            "--skip_corrupt_shards / data.on_corrupt_shard=skip)") from error

    def examples_seen_by_language(self) -> dict[str, int]:
        return {lang: int(n) for lang, n in zip(self.languages, self.examples_seen.numpy())}

    def _writer(self):
        if self._summary_writer is None:
            if not self.worker.is_chief:  # only the chief writes summaries
                self._summary_writer = tf.summary.create_noop_writer()
                return self._summary_writer
            self._summary_writer = tf.summary.create_file_writer(
                os.path.join(self.model_dir, SUMMARY_DIR))
        return self._summary_writer

    def _write_summaries(self, first_step: int, values: dict[str, np.ndarray],
                         examples_per_second: float) -> None:
        names = {"loss": "loss/total", "kd_loss": "loss/kd", "mlm_loss": "loss/mlm",
                 "lambda": "lambda", "learning_rate": "learning_rate",
                 "grad_norm": "grad_norm"}
        with self._writer().as_default():
            for i in range(len(values["loss"])):
                for name, tag in names.items():
                    tf.summary.scalar(tag, values[name][i], step=first_step + i + 1)
            last = first_step + len(values["loss"])
            for lang, count in self.examples_seen_by_language().items():
                tf.summary.scalar(f"examples_seen/{lang}", count, step=last)
            tf.summary.scalar("examples_per_second", examples_per_second, step=last)
        self._writer().flush()

    def train(self, stop_at_step: int | None = None) -> TrainHistory:
        """Trains to train.steps (or `stop_at_step`), resuming from model_dir's latest checkpoint.

        Saves a checkpoint every train.checkpoint_interval steps and at train.steps (not at
        `stop_at_step`, which behaves like a run killed at that step).
        """
        train_config = self.config.train
        step = self.restore()
        target = train_config.steps if stop_at_step is None else min(stop_at_step,
                                                                     train_config.steps)
        history = TrainHistory()
        batch = self.config.data.global_batch_size
        last_log = step
        start_step, start_time = step, time.time()
        steady_steps, steady_seconds = 0, 0.0  # loops after the first (which includes tracing)
        while step < target:
            interval = train_config.checkpoint_interval
            n = min(train_config.steps_per_loop, target - step, interval - step % interval)
            loop_start = time.time()
            values = self.run_steps(n)
            elapsed = max(time.time() - loop_start, 1e-9)
            rate = n * batch / elapsed
            history.extend(step, values)
            self._write_summaries(step, values, rate)
            if step > start_step:
                steady_steps, steady_seconds = steady_steps + n, steady_seconds + elapsed
            step += n
            if step - last_log >= train_config.log_interval or step == target:
                last_log = step
                seconds_per_step = (steady_seconds / steady_steps if steady_steps
                                    else elapsed / n)
                seconds_left = (train_config.steps - step) * seconds_per_step
                logging.info(
                    "step %d/%d | loss %.4f (kd %.4f, mlm %.4f) | lambda %.3f | lr %.3g | "
                    "%.1f examples/s | %s left | seen %s", step, train_config.steps,
                    values["loss"][-1], values["kd_loss"][-1], values["mlm_loss"][-1],
                    values["lambda"][-1], values["learning_rate"][-1], rate,
                    datetime.timedelta(seconds=round(seconds_left)),
                    self.examples_seen_by_language())
            if step % interval == 0 or step == train_config.steps:
                self._save(step)
        if step > start_step:
            logging.info("ran %d steps in %.1f s", step - start_step, time.time() - start_time)
        return history

    def _save(self, step: int) -> None:
        """Checkpoint of `step`: every worker first saves its own input position (several
        workers), then the model checkpoint (chief: model_dir; others: a deleted temp dir)."""
        if self.input_checkpoint_manager is not None:
            self.input_checkpoint_manager.save(checkpoint_number=step)
        distribution.write_dir(self.model_dir, self.worker)  # (re)creates a worker's temp dir
        path = self.checkpoint_manager.save(checkpoint_number=step)
        distribution.remove_temp_dir(self.model_dir, self.worker)
        logging.info("saved %s", path if self.worker.is_chief else
                     f"{path} (not the chief: temporary, deleted)")

    def write_run_info(self, extra: dict | None = None) -> None:
        """model_dir/params.yaml (the effective config) and run_info.json (languages, weights).

        Written by the chief only (plain files from host values: no collective involved)."""
        if not self.worker.is_chief:
            return
        tf.io.gfile.makedirs(self.model_dir)
        config_lib.save_yaml(self.config, os.path.join(self.model_dir, "params.yaml"))
        info = dict(languages=list(self.languages),
                    sampling_weights=[float(w) for w in self.pipeline.weights],
                    # Records on disk (every teacher copy) and distinct examples (what the
                    # n^alpha sampling weights count).
                    examples_in_manifests={s.language: s.num_examples
                                           for s in self.pipeline.sources},
                    distinct_examples_in_manifests={s.language: s.num_unique_examples
                                                    for s in self.pipeline.sources},
                    shard_dirs={s.language: s.shard_dir for s in self.pipeline.sources},
                    use_teacher=self.use_teacher,
                    gold_only_languages=[s.language for s in self.pipeline.sources
                                         if s.gold_only],
                    lambda_schedule=repr(self.lambda_schedule),
                    replicas=self.strategy.num_replicas_in_sync,
                    workers=self.worker.num_workers)
        info.update(extra or {})
        with tf.io.gfile.GFile(os.path.join(self.model_dir, "run_info.json"), "w") as f:
            f.write(json.dumps(info, indent=2, sort_keys=True))
