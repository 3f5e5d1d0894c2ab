"""Assembles a run from a config, a vocab and shard folders: every check first, then the trainer.

`prepare_data` does all the fail-fast work that needs no accelerator (vocab size vs config,
manifests vs config, teacher outputs vs lambda, the `skip` scan of corrupt shards);
`build_trainer` then creates the strategy, the input pipeline and the StudentTrainer. Used by
student/train.py, the tests and bench/bench_student.py.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
from absl import logging

from student import config as config_lib
from student import distribution
from student import input_pipeline
from student import lambda_schedule
from student import shard_sources
from student import trainer as trainer_lib


@dataclasses.dataclass
class PreparedData:
    """Everything checked about a run's data."""

    vocab: shard_sources.StudentVocab
    sources: list[shard_sources.LanguageSource]
    use_teacher: bool
    skipped: list[shard_sources.ShardScan]


def prepare_data(config: config_lib.StudentConfig, student_vocab: str,
                 shards: dict[str, str]) -> PreparedData:
    """Reads and checks the vocab and every manifest (and scans shards under the skip policy).

    Raises (naming the file, field and value):
      config.ConfigError, manifest.ManifestError, shard_sources.ShardError,
      tokenization.VocabError.
    """
    vocab = shard_sources.read_student_vocab(student_vocab, config)
    use_teacher = not lambda_schedule.LambdaSchedule.from_config(config).always_zero
    sources = shard_sources.open_sources(shards, config.data, vocab, use_teacher)
    skipped = []
    if config.data.on_corrupt_shard == "skip":
        spec = shard_sources.reading_spec(config.data, use_teacher)
        sources, skipped = shard_sources.drop_corrupt_shards(sources, spec, vocab.size)
        for scan in skipped:
            logging.warning("skipping corrupt shard %s: %s", scan.path, scan.error)
        logging.info("skipped %d corrupt shard(s)", len(skipped))
    return PreparedData(vocab=vocab, sources=sources, use_teacher=use_teacher, skipped=skipped)


def build_trainer(config: config_lib.StudentConfig, data: PreparedData, model_dir: str,
                  strategy: tf.distribute.Strategy | None = None) -> trainer_lib.StudentTrainer:
    """The input pipeline and trainer (strategy from runtime.* unless given)."""
    if strategy is None:
        strategy = distribution.make_strategy(config.runtime)
    logging.info("strategy %s with %d replica(s)", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    pipeline = input_pipeline.StudentInputPipeline(data.sources, config.data, data.use_teacher)
    return trainer_lib.StudentTrainer(config, strategy, pipeline, model_dir)
