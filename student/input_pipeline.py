"""The student's tf.data pipeline: per-language shards -> smoothed language mix -> static batches.

Per language: shard files -> shuffle files -> interleave TFRecordDatasets -> shuffle examples ->
repeat -> (record, language_id). The languages are then sampled with
`tf.data.Dataset.sample_from_datasets`, language l with probability

    p_l = n_l ** alpha / sum_m n_m ** alpha        (alpha = data.sampling_alpha, paper: 0.7)

where n_l is the number of distinct examples of l in its manifest (`unique_examples`: in `all`
mode each example has a copy per teacher, and counting copies would weight a language by its
number of teachers; `all` and `best` shards of the same text thus get the same mixture);
sampling is per example, so every batch mixes languages (paper Sec. 3.1, Step 4). Records are batched with drop_remainder (static shapes)
and parsed with `teacher_scoring.records.record_schema.parse_batch` (the one reader of the layout).

Output features of one batch (B = per-replica batch size):
  input_word_ids, input_mask, input_type_ids   int32 [B, S]
  masked_lm_positions, masked_lm_ids            int32 [B, P]
  masked_lm_weights                             float32 [B, P]
  teacher_topk_ids                              int32 [B, P, k]    (KD only)
  teacher_topk_logits                           float32 [B, P, k]  (KD only, float16 on disk ok)
  kd_weight                                     float32 [B]        (KD only) 1 distilled, 0 gold-only
  language_id                                   int32 [B], index into `languages`
Strings (language, teacher, example_id) and teacher_loss never leave the host.

Gold-only languages (`data.gold_only_languages`, LanguageSource.gold_only) mix with distilled
ones inside a batch: a batch's records are split by their language's kind, each part is parsed
with its own spec (the distilled part must hold the teacher fields: a distilled shard without
them fails to parse), and the gold-only rows get dummy teacher fields (ids 0, logits 0) and
kd_weight 0, so the KD term ignores them (losses.py).

NaN or infinite masked_lm_weights / teacher logits / teacher losses stop the stream with an
InvalidArgumentError (the trainer then scans the shards and names the file; `skip` leaves such
shards out before training).

Everything random is seeded (data.seed) and the pipeline is deterministic, so an iterator saved
in a checkpoint resumes the exact stream.

Input streams (several workers, `worker_dataset`). With `data.input_streams` = N > 1 (0 = one
per worker) a global batch is the concatenation, in stream order, of N sub-batches of
global_batch_size / N examples; stream g is the pipeline above over shard files g::N of every
language (its own seeds), so the streams never share a file and hence never an example. Worker w
of W reads streams [w N/W, (w+1) N/W) only and splits its part of the batch over its replicas.
The global batch thus depends on N, not on W: one worker with N = 2 sees exactly the batches of
two workers (test_multi_worker.py). N = 1 is the single stream above, unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from teacher_scoring.records import record_schema
from student import config as config_lib
from student import losses
from student import shard_sources

LANGUAGE_ID = "language_id"
KD_WEIGHT = losses.KD_WEIGHT
_DROPPED = (record_schema.TEACHER_LOSS,)
# Seeds of stream g > 0 of `worker_dataset` (stream 0 keeps data.seed).
_STREAM_SEED_STRIDE = 100_003
_FLOAT_FIELDS = (record_schema.MASKED_LM_WEIGHTS, record_schema.TEACHER_TOPK_LOGITS,
                 record_schema.TEACHER_LOSS)


def sampling_weights(num_examples, alpha: float) -> np.ndarray:
    """p_l proportional to n_l ** alpha (float64, sums to 1)."""
    counts = np.asarray(num_examples, np.float64)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts <= 0):
        raise ValueError(f"example counts must be positive, got {list(num_examples)}")
    weights = np.power(counts, alpha)
    return weights / weights.sum()


def _finite_or_error(value: tf.Tensor) -> tf.Tensor:
    """`value` unchanged, or an InvalidArgumentError when it holds NaN or inf.

    Stateless (EnsureShape of the non-finite values to [0]): a CheckNumerics / Assert op would
    make the iterator impossible to checkpoint. The output depends on the check, so it cannot
    be pruned.
    """
    flat = tf.reshape(value, [-1])
    bad = tf.boolean_mask(flat, ~tf.math.is_finite(flat))
    return value + tf.reduce_sum(tf.ensure_shape(bad, [0], name="no_nan_or_inf"))


class StudentInputPipeline:
    """Builds the mixed-language dataset of scored examples.

    Args:
      sources: one LanguageSource per language (already checked against the config).
      data_config: the `data` section.
      use_teacher: parse and keep the teacher top-k fields (KD term used).
    """

    def __init__(self, sources: list[shard_sources.LanguageSource],
                 data_config: config_lib.DataConfig, use_teacher: bool,
                 example_ids: bool = False):
        if not sources:
            raise ValueError("no shard sources")
        self.sources = list(sources)
        self.data_config = data_config
        self.use_teacher = use_teacher
        # Keep each example's example_id (string [B]) in the batches: for tests that record
        # which examples a step used; the trainer never gets strings.
        self.example_ids = example_ids
        self.spec = shard_sources.reading_spec(data_config, use_teacher)
        self.languages = tuple(s.language for s in self.sources)
        # Distilled and gold-only languages in one stream: records are parsed by kind.
        self.mixed = use_teacher and any(s.gold_only for s in self.sources)
        self.weights = sampling_weights([s.num_unique_examples for s in self.sources],
                                        data_config.sampling_alpha)

    @property
    def all_files(self) -> list[str]:
        return [path for source in self.sources for path in source.files]

    def _language_dataset(self, index: int, source: shard_sources.LanguageSource,
                          shard: tuple[int, int, str], seed: int) -> tf.data.Dataset:
        """`shard` = (i, n, what): this pipeline reads files i::n ("input pipelines" or "input
        streams", for the error message)."""
        files = list(source.files)
        i, n, what = shard
        if n > 1:
            if len(files) < n:
                raise shard_sources.ShardError(
                    f"{source.manifest_path}: {source.language!r} has {len(files)} shard(s), "
                    f"fewer than the {n} {what}; write more shards")
            files = files[i::n]
        file_ds = tf.data.Dataset.from_tensor_slices(files)
        file_ds = file_ds.shuffle(len(files), seed=seed * 1009 + 2 * index,
                                  reshuffle_each_iteration=True)
        compression = source.compression

        def read(path):
            return tf.data.TFRecordDataset(path, compression_type=compression,
                                           buffer_size=1 << 20)

        records = file_ds.interleave(
            read, cycle_length=min(self.data_config.cycle_length, len(files)),
            block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        records = records.shuffle(self.data_config.shuffle_buffer_size,
                                  seed=seed * 1009 + 2 * index + 1,
                                  reshuffle_each_iteration=True)
        # Repeat last: a language whose shards hold no record ends (and is reported) instead
        # of spinning forever.
        records = records.repeat()
        language_id = tf.constant(index, tf.int32)
        return records.map(lambda r: (r, language_id))

    def _parse_mixed(self, records: tf.Tensor, language_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        """Parses a batch of distilled and gold-only records (module docstring)."""
        distilled = tf.gather(tf.constant([not s.gold_only for s in self.sources]), language_ids)
        kind = tf.cast(distilled, tf.int32)                                   # [B] 1 distilled
        rows = tf.dynamic_partition(tf.range(tf.shape(records)[0]), kind, 2)
        gold_records, scored_records = tf.dynamic_partition(records, kind, 2)
        gold_spec = dataclasses.replace(self.spec, has_teacher_outputs=False)
        gold = record_schema.parse_batch(gold_records, gold_spec, keep_strings=False)
        scored = record_schema.parse_batch(scored_records, self.spec, keep_strings=False)
        num_gold = tf.shape(gold_records)[0]
        features = {}
        for name, value in scored.items():
            if name in gold:
                part = gold[name]
            else:  # a teacher field: dummy values for the gold-only rows
                part = tf.zeros(tf.concat([[num_gold], tf.shape(value)[1:]], 0), value.dtype)
            features[name] = tf.dynamic_stitch(rows, [part, value])
        features[KD_WEIGHT] = tf.cast(distilled, tf.float32)
        return features

    def _parse(self, records: tf.Tensor, language_ids: tf.Tensor,
               batch_size: int) -> dict[str, tf.Tensor]:
        example_ids = None
        if self.example_ids:
            spec = {record_schema.EXAMPLE_ID: tf.io.FixedLenFeature([], tf.string)}
            example_ids = tf.io.parse_example(records, spec)[record_schema.EXAMPLE_ID]
        if self.mixed:
            features = self._parse_mixed(records, language_ids)
        else:
            features = record_schema.parse_batch(records, self.spec, keep_strings=False)
            if self.use_teacher:
                features[KD_WEIGHT] = tf.ones([batch_size], tf.float32)
        for name in _FLOAT_FIELDS:
            if name in features:
                features[name] = _finite_or_error(features[name])
        for name in _DROPPED:
            features.pop(name, None)
        features[LANGUAGE_ID] = language_ids
        if example_ids is not None:
            features[record_schema.EXAMPLE_ID] = example_ids
        s, p, k = (self.spec.seq_length, self.spec.max_predictions_per_seq, self.spec.top_k)
        shapes = {name: [batch_size, s] for name in (
            record_schema.INPUT_WORD_IDS, record_schema.INPUT_MASK, record_schema.INPUT_TYPE_IDS)}
        shapes.update({name: [batch_size, p] for name in (
            record_schema.MASKED_LM_POSITIONS, record_schema.MASKED_LM_IDS,
            record_schema.MASKED_LM_WEIGHTS)})
        shapes.update({record_schema.TEACHER_TOPK_IDS: [batch_size, p, k],
                       record_schema.TEACHER_TOPK_LOGITS: [batch_size, p, k],
                       KD_WEIGHT: [batch_size], LANGUAGE_ID: [batch_size],
                       record_schema.EXAMPLE_ID: [batch_size]})
        return {name: tf.ensure_shape(value, shapes[name]) for name, value in features.items()}

    def dataset(self, input_context: tf.distribute.InputContext | None = None,
                seed_offset: int = 0) -> tf.data.Dataset:
        """The infinite dataset of batches.

        Args:
          input_context: given by `strategy.distribute_datasets_from_function`: shards files
            across input pipelines and batches per replica. None: global batches.
          seed_offset: added to data.seed (a fresh stream for a resumed run whose iterator
            position was not saved).
        """
        global_batch = self.data_config.global_batch_size
        batch_size = (input_context.get_per_replica_batch_size(global_batch)
                      if input_context else global_batch)
        shard = (0, 1, "input pipelines")
        if input_context and input_context.num_input_pipelines > 1:
            shard = (input_context.input_pipeline_id, input_context.num_input_pipelines,
                     "input pipelines")
        seed = self.data_config.seed + int(seed_offset)
        return self._finish(self._batches(batch_size, seed, shard))

    def num_streams(self, num_workers: int) -> int:
        """N of `worker_dataset`: data.input_streams, or one stream per worker."""
        streams = self.data_config.input_streams or num_workers
        global_batch = self.data_config.global_batch_size
        if streams % num_workers or global_batch % streams:
            raise config_lib.ConfigError(
                f"config: field 'data.input_streams' = {self.data_config.input_streams}: "
                f"{streams} stream(s) must be a multiple of the {num_workers} worker(s) and "
                f"divide data.global_batch_size = {global_batch}")
        return streams

    def worker_dataset(self, num_workers: int = 1, worker_index: int = 0,
                       seed_offset: int = 0) -> tf.data.Dataset:
        """This worker's part of every global batch: streams [w N/W, (w+1) N/W) concatenated
        (module docstring), global_batch_size * (N/W) / N examples a batch. One stream (one
        worker, input_streams 0 or 1) is exactly `dataset()`."""
        streams = self.num_streams(num_workers)
        if streams == 1:
            return self.dataset(seed_offset=seed_offset)
        if not 0 <= worker_index < num_workers:
            raise ValueError(f"worker_index {worker_index} not in [0, {num_workers})")
        per_stream = self.data_config.global_batch_size // streams
        per_worker = streams // num_workers
        seed = self.data_config.seed + int(seed_offset)
        parts = [self._batches(per_stream, seed + _STREAM_SEED_STRIDE * g,
                               (g, streams, "input streams (data.input_streams)"))
                 for g in range(worker_index * per_worker, (worker_index + 1) * per_worker)]
        if len(parts) == 1:
            return self._finish(parts[0])
        joined = tf.data.Dataset.zip(tuple(parts)).map(
            lambda *batches: {name: tf.concat([b[name] for b in batches], 0)
                              for name in batches[0]})
        return self._finish(joined)

    def _batches(self, batch_size: int, seed: int, shard: tuple[int, int, str]
                 ) -> tf.data.Dataset:
        """Parsed batches of `batch_size` of one stream: files shard[0]::shard[1]."""
        per_language = [self._language_dataset(i, source, shard, seed)
                        for i, source in enumerate(self.sources)]
        if len(per_language) == 1:
            mixed = per_language[0]
        else:
            mixed = tf.data.Dataset.sample_from_datasets(
                per_language, weights=self.weights.astype(np.float32).tolist(),
                seed=seed, stop_on_empty_dataset=True)
        batches = mixed.batch(batch_size, drop_remainder=True)
        return batches.map(lambda r, l: self._parse(r, l, batch_size),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    @staticmethod
    def _finish(batches: tf.data.Dataset) -> tf.data.Dataset:
        options = tf.data.Options()
        options.deterministic = True
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF)
        return batches.with_options(options).prefetch(tf.data.AUTOTUNE)

    def locate_corrupt_shards(self) -> list[shard_sources.ShardScan]:
        """Reads every shard to find the bad ones (after a data error); [] if all are fine."""
        vocab_size = self.sources[0].manifest.vocab_size
        scans = shard_sources.scan_shards(self.sources, self.spec, vocab_size)
        return [scan for scan in scans if not scan.ok]
