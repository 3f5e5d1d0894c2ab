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
                 data_config: config_lib.DataConfig, use_teacher: bool):
        if not sources:
            raise ValueError("no shard sources")
        self.sources = list(sources)
        self.data_config = data_config
        self.use_teacher = use_teacher
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
                          input_context: tf.distribute.InputContext | None,
                          seed: int) -> tf.data.Dataset:
        files = list(source.files)
        if input_context and input_context.num_input_pipelines > 1:
            n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
            if len(files) < n:
                raise shard_sources.ShardError(
                    f"{source.manifest_path}: {source.language!r} has {len(files)} shard(s), "
                    f"fewer than the {n} input pipelines; write more shards")
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
        s, p, k = (self.spec.seq_length, self.spec.max_predictions_per_seq, self.spec.top_k)
        shapes = {name: [batch_size, s] for name in (
            record_schema.INPUT_WORD_IDS, record_schema.INPUT_MASK, record_schema.INPUT_TYPE_IDS)}
        shapes.update({name: [batch_size, p] for name in (
            record_schema.MASKED_LM_POSITIONS, record_schema.MASKED_LM_IDS,
            record_schema.MASKED_LM_WEIGHTS)})
        shapes.update({record_schema.TEACHER_TOPK_IDS: [batch_size, p, k],
                       record_schema.TEACHER_TOPK_LOGITS: [batch_size, p, k],
                       KD_WEIGHT: [batch_size], LANGUAGE_ID: [batch_size]})
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
        seed = self.data_config.seed + int(seed_offset)
        per_language = [self._language_dataset(i, source, input_context, seed)
                        for i, source in enumerate(self.sources)]
        if len(per_language) == 1:
            mixed = per_language[0]
        else:
            mixed = tf.data.Dataset.sample_from_datasets(
                per_language, weights=self.weights.astype(np.float32).tolist(),
                seed=seed, stop_on_empty_dataset=True)
        batches = mixed.batch(batch_size, drop_remainder=True)
        batches = batches.map(lambda r, l: self._parse(r, l, batch_size),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
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
