"""The tf.distribute strategy of a run (tf-models-official `distribute_utils`).

tpu:        TPUClusterResolver(tpu=runtime.tpu) -> initialize the TPU system -> TPUStrategy
            (official.common.distribute_utils.get_distribution_strategy).
mirrored:   MirroredStrategy over runtime.num_gpus GPUs; with no GPU, over every logical CPU
            device (tests split the CPU with tf.config.set_logical_device_configuration).
one_device: OneDeviceStrategy on GPU:0 or CPU:0.
"""

from __future__ import annotations

import tensorflow as tf

from official.common import distribute_utils

from student import config as config_lib


def check_runtime(runtime: config_lib.RuntimeConfig) -> None:
    """Refuses an unknown strategy, or tpu without a TPU name (before anything is built)."""
    name = runtime.distribution_strategy
    if name not in config_lib.STRATEGIES:
        raise config_lib.ConfigError(
            f"config: field 'runtime.distribution_strategy' = {name!r}: must be one of "
            f"{config_lib.STRATEGIES}")
    if name == "tpu":
        if not runtime.tpu:
            raise config_lib.ConfigError(
                "config: field 'runtime.tpu' is empty: distribution_strategy=tpu needs a TPU "
                "name or address (--tpu NAME, or --tpu local on a TPU VM)")


def make_strategy(runtime: config_lib.RuntimeConfig) -> tf.distribute.Strategy:
    """Creates the strategy named by runtime.distribution_strategy (see check_runtime)."""
    check_runtime(runtime)
    name = runtime.distribution_strategy
    if name == "tpu":
        return distribute_utils.get_distribution_strategy("tpu", tpu_address=runtime.tpu)
    if name == "mirrored" and runtime.num_gpus == 0:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(
            devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    return distribute_utils.get_distribution_strategy(name, num_gpus=runtime.num_gpus)
