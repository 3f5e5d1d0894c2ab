r"""Trains a MergeDistill student (or a plain MLM model) on scored shards.

  python student/train.py --config_file configs/student/tiny.yaml \
      --student_vocab VOCAB_DIR --shards en=SHARDS_EN --shards de=SHARDS_DE \
      --model_dir RUN_DIR [--strategy tpu --tpu NAME] [--params_override train.steps=100]

Several workers (MultiWorkerMirroredStrategy): the same command on every worker, each with its
TF_CONFIG ('{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker",
"index": 0}}'), --strategy multi_worker_mirrored and the same --model_dir (a shared file system
or a bucket). Worker 0 is the chief: it alone writes checkpoints, summaries, params.yaml,
run_info.json and the export; every worker saves its own input position under
model_dir/input_state. The strategy is created right after the config and TF_CONFIG checks
(before any other TensorFlow op, as it must be), then the checks below run.

Order of work: load and check the config -> read vocab.txt (size vs the config) -> read and check
every manifest (vocab sha256, S, P, k, schema, id space, logits dtype, teacher outputs vs lambda)
-> [skip policy: scan shards] -> the export's tokenizer (tokenizer.* settings, student/tokenizer.py)
-> strategy -> model/optimizer/input -> resume from the latest checkpoint in model_dir -> train
-> export to model_dir/export (with the tokenizer). Every check before the strategy
fails in seconds with a message naming the file, the field and the value.
"""

from __future__ import annotations

import json
import os
import sys

if __package__ in (None, ""):
    # `python student/train.py` from a checkout without an installed package.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("config_file", None, "Student config YAML (configs/student/*.yaml).")
flags.DEFINE_multi_string(
    "params_override", [], "Config overrides, applied in order after --config_file: "
    "'train.steps=100,data.global_batch_size=8', a YAML string or a YAML file.")
flags.DEFINE_string("student_vocab", None, "Student vocab folder (with vocab.txt) or vocab.txt.")
flags.DEFINE_multi_string("shards", [], "LANGUAGE=FOLDER of scored shards with manifest.json; "
                          "repeat per language.")
flags.DEFINE_string("model_dir", None, "Checkpoints, summaries and the export.")
flags.DEFINE_enum("strategy", None, ["tpu", "mirrored", "multi_worker_mirrored", "one_device"],
                  "Overrides runtime.distribution_strategy.")
flags.DEFINE_string("tpu", None, "TPU name/address for TPUClusterResolver (overrides runtime.tpu).")
flags.DEFINE_bool("skip_corrupt_shards", False, "Scan every shard before training and leave out "
                  "corrupt/truncated ones, counting them (data.on_corrupt_shard=skip).")
flags.DEFINE_bool("export", True, "Export to model_dir/export when training reaches train.steps.")


def _load_config():
    from student import config as config_lib  # pylint: disable=import-outside-toplevel

    overrides = list(FLAGS.params_override)
    runtime = {}
    if FLAGS.strategy:
        runtime["distribution_strategy"] = FLAGS.strategy
    if FLAGS.tpu is not None:
        runtime["tpu"] = FLAGS.tpu
    if runtime:
        overrides.append({"runtime": runtime})
    if FLAGS.skip_corrupt_shards:
        overrides.append({"data": {"on_corrupt_shard": "skip"}})
    return config_lib.load_config(FLAGS.config_file, overrides)


def run(argv=None) -> dict:
    """The whole run (after flag parsing); returns a summary dict (also logged)."""
    del argv
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from student import distribution  # pylint: disable=import-outside-toplevel
    from student import experiment  # pylint: disable=import-outside-toplevel
    from student import export as export_lib  # pylint: disable=import-outside-toplevel
    from student import shard_sources  # pylint: disable=import-outside-toplevel

    for name in ("student_vocab", "model_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    config = _load_config()
    distribution.check_runtime(config.runtime)
    strategy = None
    if distribution.check_cluster(config) is not None:
        # MultiWorkerMirroredStrategy configures the collectives of the process: it must exist
        # before any other TensorFlow op runs. It waits until every worker has started.
        strategy = distribution.make_strategy(config.runtime)
    shards = shard_sources.parse_shards_flag(FLAGS.shards)
    data = experiment.prepare_data(config, FLAGS.student_vocab, shards)
    # The export's tokenizer is built now, so that a bad tokenizer.* setting fails in seconds.
    tokenizer, no_tokenizer_reason = export_lib.prepare_tokenizer(
        config, data.vocab.path,
        {source.language: (source.manifest, source.manifest_path) for source in data.sources})
    if tokenizer is not None:
        logging.info("tokenizer of the export: %s", tokenizer)
    trainer = experiment.build_trainer(config, data, FLAGS.model_dir, strategy=strategy)
    skipped_info = [dict(path=s.path, error=s.error) for s in data.skipped]
    trainer.write_run_info({"skipped_shards": skipped_info, "vocab": data.vocab.path,
                            "vocab_sha256": data.vocab.sha256})
    if data.skipped and trainer.worker.is_chief:
        with tf.io.gfile.GFile(os.path.join(FLAGS.model_dir, "skipped_shards.json"), "w") as f:
            f.write(json.dumps(skipped_info, indent=2))
    history = trainer.train()
    step = int(trainer.global_step.numpy())
    summary = dict(step=step, examples_seen=trainer.examples_seen_by_language(),
                   skipped_shards=len(data.skipped),
                   last_loss=history.metrics["loss"][-1] if history.steps else None)
    if FLAGS.export and step >= config.train.steps:
        # Every worker exports (saving may need collectives); only the chief into model_dir,
        # the others into a temporary folder that is deleted.
        write_dir = distribution.write_dir(FLAGS.model_dir, trainer.worker)
        summary["export"] = export_lib.export(
            trainer.model, config, data.vocab.path, os.path.join(write_dir, "export"),
            step, tokenizer=tokenizer, no_tokenizer_reason=no_tokenizer_reason)
        distribution.remove_temp_dir(FLAGS.model_dir, trainer.worker)
    summary["worker"] = f"{trainer.worker.index} of {trainer.worker.num_workers}"
    logging.info("done: %s", json.dumps(summary, sort_keys=True))
    return summary


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from student import config as config_lib  # pylint: disable=import-outside-toplevel
    from student import shard_sources  # pylint: disable=import-outside-toplevel
    from teacher_scoring.records import manifest  # pylint: disable=import-outside-toplevel
    from student import tokenizer as tokenizer_lib  # pylint: disable=import-outside-toplevel
    from teacher_scoring.examples import tokenization  # pylint: disable=import-outside-toplevel
    from student import trainer as trainer_lib  # pylint: disable=import-outside-toplevel
    try:
        run()
    except (config_lib.ConfigError, manifest.ManifestError, shard_sources.ShardError,
            tokenization.VocabError, tokenizer_lib.TokenizerError,
            trainer_lib.NonFiniteLossError) as error:
        logging.error("%s: %s", type(error).__name__, error)
        sys.exit(f"error: {type(error).__name__}: {error}")


if __name__ == "__main__":
    app.run(main)
