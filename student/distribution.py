"""The tf.distribute strategy of a run (tf-models-official `distribute_utils`), and which worker
this process is.

tpu:        TPUClusterResolver(tpu=runtime.tpu) -> initialize the TPU system -> TPUStrategy
            (official.common.distribute_utils.get_distribution_strategy).
mirrored:   MirroredStrategy over runtime.num_gpus GPUs; with no GPU, over every logical CPU
            device (tests split the CPU with tf.config.set_logical_device_configuration).
multi_worker_mirrored:
            MultiWorkerMirroredStrategy over the workers of the TF_CONFIG environment variable
            (one process per worker; each runs the same command). Collectives: NCCL with GPUs,
            RING otherwise. It must be created before any other TensorFlow op of the process
            (train.py creates it right after the config checks). `check_cluster` refuses a
            malformed TF_CONFIG, or a global batch / input_streams that the workers cannot
            share, before anything is built.
one_device: OneDeviceStrategy on GPU:0 or CPU:0.

Writing files (the standard tf.distribute pattern, as tf_keras' distributed_file_utils): only
the chief (worker 0) writes to model_dir; every worker runs the same saving code (a save may need
collectives), the others into `model_dir/workertemp_<task>`, deleted right after (`write_dir`,
`remove_temp_dir`).
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from official.common import distribute_utils

from student import config as config_lib

TF_CONFIG = "TF_CONFIG"
_TASK_TYPES = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The workers of TF_CONFIG and this process's place among them."""

    workers: tuple[str, ...]  # addresses, chief (if any) first: index = id in the cluster
    task_type: str
    task_index: int
    index: int  # 0 .. len(workers) - 1; 0 is the chief

    @property
    def num_workers(self) -> int:
        return len(self.workers)


def _tf_config_error(why: str) -> config_lib.ConfigError:
    return config_lib.ConfigError(
        f"{TF_CONFIG}: {why} (runtime.distribution_strategy=multi_worker_mirrored reads the "
        "cluster from it, e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host0:2222\", "
        "\"host1:2222\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}')")


def parse_tf_config(text: str | None) -> Cluster:
    """Parses and checks a TF_CONFIG value; ConfigError naming the field otherwise."""
    if text is None or not text.strip():
        raise _tf_config_error("not set")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise _tf_config_error(f"not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise _tf_config_error(f"must be a JSON object, got {text!r}")
    cluster, task = value.get("cluster"), value.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise _tf_config_error(f"field 'cluster' = {cluster!r}: must be an object of job -> "
                               "list of 'host:port'")
    unknown = sorted(set(cluster) - set(_TASK_TYPES))
    if unknown:
        raise _tf_config_error(f"field 'cluster' has job(s) {unknown}: only {_TASK_TYPES} are "
                               "supported (no parameter servers or evaluators)")
    workers = []
    for job in _TASK_TYPES:
        addresses = cluster.get(job, [])
        if (not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and a.rpartition(":")[0] and a.rpartition(":")[2].isdigit()
                for a in addresses)) and job in cluster:
            raise _tf_config_error(f"field 'cluster.{job}' = {addresses!r}: must be a non-empty "
                                   "list of 'host:port' strings")
        if job == "chief" and len(addresses) > 1:
            raise _tf_config_error(f"field 'cluster.chief' = {addresses!r}: at most one chief")
        workers.extend(addresses)
    if len(set(workers)) != len(workers):
        raise _tf_config_error(f"field 'cluster' lists an address twice: {workers}")
    if not isinstance(task, dict):
        raise _tf_config_error(f"field 'task' = {task!r}: must be an object "
                               "{\"type\": \"worker\", \"index\": N}")
    task_type, task_index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise _tf_config_error(f"field 'task.type' = {task_type!r}: must be one of the cluster's "
                               f"jobs {sorted(cluster)}")
    if (not isinstance(task_index, int) or isinstance(task_index, bool)
            or not 0 <= task_index < len(cluster[task_type])):
        raise _tf_config_error(f"field 'task.index' = {task_index!r}: must be an int in "
                               f"[0, {len(cluster[task_type])}) for job {task_type!r}")
    offset = len(cluster.get("chief", [])) if task_type == "worker" else 0
    return Cluster(workers=tuple(workers), task_type=task_type, task_index=task_index,
                   index=offset + task_index)


def check_cluster(config: config_lib.StudentConfig, environ=None) -> Cluster | None:
    """For multi_worker_mirrored: TF_CONFIG parsed and checked against the data config.

    The global batch must split evenly over the workers, and `data.input_streams` (if set)
    over the workers too. Returns None for the single-process strategies.
    """
    if config.runtime.distribution_strategy != "multi_worker_mirrored":
        return None
    environ = os.environ if environ is None else environ
    cluster = parse_tf_config(environ.get(TF_CONFIG))
    workers, data = cluster.num_workers, config.data
    if data.global_batch_size % workers:
        raise config_lib.ConfigError(
            f"config: field 'data.global_batch_size' = {data.global_batch_size}: must be a "
            f"multiple of the {workers} workers of {TF_CONFIG}")
    if data.input_streams and data.input_streams % workers:
        raise config_lib.ConfigError(
            f"config: field 'data.input_streams' = {data.input_streams}: must be a multiple of "
            f"the {workers} workers of {TF_CONFIG} (each worker reads the same number of "
            "streams)")
    return cluster


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
    if name == "multi_worker_mirrored":
        parse_tf_config(os.environ.get(TF_CONFIG))
        implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL
                          if runtime.num_gpus else
                          tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=implementation))
    return distribute_utils.get_distribution_strategy(name, num_gpus=runtime.num_gpus)


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """This process among the workers of a strategy (one worker unless multi-worker)."""

    num_workers: int
    index: int
    local_replicas: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @property
    def first_replica(self) -> int:
        """replica_id_in_sync_group of this worker's first replica."""
        return self.index * self.local_replicas


def worker_info(strategy: tf.distribute.Strategy) -> WorkerInfo:
    extended = strategy.extended
    # pylint: disable=protected-access
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
            extended._in_multi_worker_mode():
        workers, index = extended._num_workers, extended._id_in_cluster
    else:
        workers, index = 1, 0
    # pylint: enable=protected-access
    return WorkerInfo(num_workers=workers, index=index,
                      local_replicas=strategy.num_replicas_in_sync // workers)


def temp_dir_name(worker: WorkerInfo) -> str:
    return f"workertemp_{worker.index}"


def write_dir(directory: str, worker: WorkerInfo) -> str:
    """`directory` on the chief; `directory/workertemp_<i>` (created) on other workers."""
    if worker.is_chief:
        return directory
    path = os.path.join(directory, temp_dir_name(worker))
    tf.io.gfile.makedirs(path)
    return path


def remove_temp_dir(directory: str, worker: WorkerInfo) -> None:
    """Deletes what a non-chief worker wrote under write_dir(directory) (no-op on the chief)."""
    if worker.is_chief:
        return
    path = os.path.join(directory, temp_dir_name(worker))
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)
