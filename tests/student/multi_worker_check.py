"""One worker of a multi-worker test run: `student/train.py` itself, instrumented.

  MW_RECORD=DIR [MW_KILL_AFTER_STEP=N] TF_CONFIG=... \
      python tests/student/multi_worker_check.py <student/train.py flags>

Runs train.py's `main` unchanged, except that the trainer (experiment.build_trainer) is a
subclass that records, for test_multi_worker.py, into DIR:
  ids.tsv       per step (1-based): the example_id of every example this worker's replicas
                consumed, in batch order, written from inside the compiled loop (tf.print), from
                the very iterator the step used;
  losses.jsonl  per loop call: first step and the step losses (flushed at once, so a killed
                worker leaves what it ran);
  temp.json     what a non-chief worker had written into its temporary folder before it was
                deleted (checkpoints, export).
MW_KILL_AFTER_STEP=N: the process SIGKILLs itself right after the loop call that reaches step N
(a worker dying mid-run, at a known step).
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# pylint: disable=wrong-import-position
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402

from student import distribution  # noqa: E402
from student import experiment  # noqa: E402
from student import input_pipeline  # noqa: E402
from student import train  # noqa: E402
from student import trainer as trainer_lib  # noqa: E402
from teacher_scoring.records import record_schema  # noqa: E402

RECORD = os.environ["MW_RECORD"]
KILL_AFTER_STEP = int(os.environ.get("MW_KILL_AFTER_STEP", "0"))


class RecordingTrainer(trainer_lib.StudentTrainer):
    """The trainer, recording the example ids of each step and the losses."""

    def _next_batch(self, iterator):
        batch = dict(next(iterator))
        ids = batch.pop(record_schema.EXAMPLE_ID)
        tf.print(self.global_step.read_value() + 1, tf.strings.reduce_join(ids, separator=" "),
                 sep="\t", output_stream="file://" + os.path.join(RECORD, "ids.tsv"))
        return self._distribute_host_batch(batch)

    def run_steps(self, num_steps):
        first = int(self.global_step.numpy())
        values = super().run_steps(num_steps)
        with open(os.path.join(RECORD, "losses.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(first_step=first, worker=self.worker.index,
                                    loss=[float(v) for v in values["loss"]])) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if KILL_AFTER_STEP and int(self.global_step.numpy()) >= KILL_AFTER_STEP:
            os.kill(os.getpid(), signal.SIGKILL)
        return values


def _build_trainer(config, data, model_dir, strategy=None):
    if strategy is None:
        strategy = distribution.make_strategy(config.runtime)
    pipeline = input_pipeline.StudentInputPipeline(data.sources, config.data, data.use_teacher,
                                                   example_ids=True)
    return RecordingTrainer(config, strategy, pipeline, model_dir)


_remove_temp_dir = distribution.remove_temp_dir


def _recording_remove_temp_dir(directory, worker):
    path = os.path.join(directory, distribution.temp_dir_name(worker))
    if not worker.is_chief and os.path.isdir(path):
        found = sorted(os.path.relpath(os.path.join(root, name), path)
                       for root, _, names in os.walk(path) for name in names)
        record = os.path.join(RECORD, "temp.json")
        seen = json.load(open(record, encoding="utf-8")) if os.path.exists(record) else []
        with open(record, "w", encoding="utf-8") as f:
            json.dump(sorted(set(seen) | set(found)), f)
    _remove_temp_dir(directory, worker)


if __name__ == "__main__":
    os.makedirs(RECORD, exist_ok=True)
    experiment.build_trainer = _build_trainer
    distribution.remove_temp_dir = _recording_remove_temp_dir
    app.run(train.main)
