"""Runs one global batch on one device and on a 2-replica MirroredStrategy; prints JSON diffs.

Run in its own process (test_distributed.py): the CPU must be split into two logical devices
before TensorFlow initialises its runtime.

  python tests/student/distributed_check.py WORK_DIR
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# pylint: disable=wrong-import-position
from student import config as config_lib  # noqa: E402
from student import experiment  # noqa: E402
from tests.student import shard_fixtures  # noqa: E402
from tests.student.conftest import TINY_CONFIG  # noqa: E402

NO_DROPOUT = ("model.encoder.bert_v2.dropout_rate=0.0,"
              "model.encoder.bert_v2.attention_dropout_rate=0.0")


def _trainer(work, name, shards, vocab, strategy, *overrides):
    config = config_lib.load_config(TINY_CONFIG, [NO_DROPOUT, "runtime.deterministic=true",
                                                  *overrides])
    data = experiment.prepare_data(config, vocab, shards)
    return experiment.build_trainer(config, data, os.path.join(work, name), strategy=strategy)


def _max_diff(a, b):
    return float(max(np.max(np.abs(np.asarray(x) - np.asarray(y))) for x, y in zip(a, b)))


def _max_rel_diff(a, b):
    return float(max(np.max(np.abs(np.asarray(x) - np.asarray(y)) /
                            (np.abs(np.asarray(y)) + 1e-6)) for x, y in zip(a, b)))


def main(work):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    vocab = shard_fixtures.write_vocab(os.path.join(work, "vocab"), 300)
    shards = {}
    for seed, (language, count) in enumerate({"en": 60, "de": 30}.items()):
        folder = os.path.join(work, language)
        shard_fixtures.write_shards(folder, {language: count}, vocab, 32, 6, seed=seed)
        shards[language] = folder

    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    mirrored = tf.distribute.MirroredStrategy(
        devices=["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    result = {"replicas": mirrored.num_replicas_in_sync}
    trainers = {
        "one_device": _trainer(work, "one", shards, vocab, one),
        "mirrored": _trainer(work, "mirrored", shards, vocab, mirrored),
        # Per-replica input pipelines (distribute_datasets_from_function).
        "mirrored_distributed_input": _trainer(work, "mirrored_di", shards, vocab, mirrored,
                                               "train.checkpoint_input_iterator=false"),
    }
    reference = trainers["one_device"]
    weights0 = [w.numpy() for w in reference.model.weights]
    outputs = {}
    for name, trainer in trainers.items():
        result[f"{name}_initial_weights_diff"] = _max_diff(
            [w.numpy() for w in trainer.model.weights], weights0)
        values, grads = trainer.loss_and_gradients(0.5)
        outputs[name] = (values, grads)
    ref_values, ref_grads = outputs["one_device"]
    result["loss"] = ref_values
    for name in ("mirrored", "mirrored_distributed_input"):
        values, grads = outputs[name]
        result[f"{name}_loss_diff"] = max(abs(values[k] - ref_values[k]) for k in ref_values)
        result[f"{name}_grad_diff"] = _max_diff(grads, ref_grads)
        result[f"{name}_grad_rel_diff"] = _max_rel_diff(grads, ref_grads)
    # Two optimizer steps (batches 2 and 3 of the stream) on each.
    histories = {name: trainers[name].train(stop_at_step=2) for name in ("one_device",
                                                                          "mirrored")}
    result["train_loss_diff"] = _max_diff(histories["mirrored"].metrics["loss"],
                                          histories["one_device"].metrics["loss"])
    result["train_weights_diff"] = _max_diff(
        [w.numpy() for w in trainers["mirrored"].model.weights],
        [w.numpy() for w in reference.model.weights])
    result["examples_seen"] = {name: trainers[name].examples_seen_by_language()
                               for name in ("one_device", "mirrored")}
    print("RESULT " + json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
