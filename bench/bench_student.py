r"""Student benchmark: cost of the KD term, and input pipeline headroom (one run, side by side).

  python bench/bench_student.py [--vocab_size 8000 --hidden_size 128 --num_layers 2 \
      --seq_length 128 --max_predictions 20 --batch_size 32 --steps_per_loop 10 --rounds 5]

1. Step time of the same model on the same batches with L = lambda*KD + (1-lambda)*MLM
   (lambda ~ 1, teacher top-k read and used) against MLM alone (lambda = 0, no teacher fields).
   Loops of the two trainers alternate (KD, MLM, KD, MLM, ...) so that both see the same machine
   load; the median step time of each is reported and their ratio (target <= 1.05).
2. Input pipeline records/s (the KD pipeline: read, sample languages, batch, parse) against what
   the KD training step consumes (batch / step time); target ratio >= 10.

Synthetic scored shards (random ids / logits, written through teacher_scoring.record_schema and
a manifest) are written to --work_dir (a temp folder by default).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("vocab_size", 8000, "Student vocabulary size.")
flags.DEFINE_integer("hidden_size", 128, "Encoder width.")
flags.DEFINE_integer("num_layers", 2, "Transformer layers.")
flags.DEFINE_integer("seq_length", 128, "S.")
flags.DEFINE_integer("max_predictions", 20, "P.")
flags.DEFINE_integer("top_k", 8, "k.")
flags.DEFINE_integer("batch_size", 32, "Global batch.")
flags.DEFINE_integer("steps_per_loop", 10, "Steps per timed loop.")
flags.DEFINE_integer("rounds", 5, "Timed loops per mode (after one warm-up loop).")
flags.DEFINE_integer("languages", 3, "Languages (one shard folder each).")
flags.DEFINE_integer("examples_per_language", 1000, "Examples written per language.")
flags.DEFINE_integer("pipeline_batches", 300, "Batches timed for the input pipeline.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the forward/backward pass.")
flags.DEFINE_string("work_dir", None, "Where shards go (default: a temp folder).")

_LANGS = ("en", "de", "es", "fi", "fr", "hi", "it", "tr", "zh")


def _overrides(lambda_zero: bool) -> list[str]:
    encoder = (f"model.encoder.bert_v2.vocab_size={FLAGS.vocab_size},"
               f"model.encoder.bert_v2.hidden_size={FLAGS.hidden_size},"
               f"model.encoder.bert_v2.num_layers={FLAGS.num_layers},"
               f"model.encoder.bert_v2.intermediate_size={4 * FLAGS.hidden_size},"
               f"model.encoder.bert_v2.max_position_embeddings={FLAGS.seq_length}")
    data = (f"data.seq_length={FLAGS.seq_length},"
            f"data.max_predictions_per_seq={FLAGS.max_predictions},data.top_k={FLAGS.top_k},"
            f"data.global_batch_size={FLAGS.batch_size}")
    train = (f"train.steps=1000000,train.steps_per_loop={FLAGS.steps_per_loop},"
             f"train.checkpoint_interval=1000000,runtime.jit_compile={str(FLAGS.jit_compile)}")
    loss = ("loss.lambda_schedule=constant,loss.lambda_start=0.0" if lambda_zero else
            "loss.lambda_schedule=linear,loss.lambda_start=1.0,loss.lambda_end=0.0")
    return [encoder, data, train, loss]


def _write_data(work_dir: str) -> tuple[str, dict[str, str]]:
    from tests.student import shard_fixtures  # pylint: disable=import-outside-toplevel

    vocab = shard_fixtures.write_vocab(os.path.join(work_dir, "vocab"), FLAGS.vocab_size)
    shards = {}
    for i, language in enumerate(_LANGS[:FLAGS.languages]):
        folder = os.path.join(work_dir, f"shards_{language}")
        shard_fixtures.write_shards(
            folder, {language: FLAGS.examples_per_language * (i + 1)}, vocab, FLAGS.seq_length,
            FLAGS.max_predictions, FLAGS.top_k, shards_per_language=4, seed=i)
        shards[language] = folder
    return vocab, shards


def main(argv):
    del argv
    from student import config as config_lib  # pylint: disable=import-outside-toplevel
    from student import experiment  # pylint: disable=import-outside-toplevel

    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_student_")
    start = time.time()
    vocab, shards = _write_data(work_dir)
    logging.info("wrote shards in %.1f s to %s", time.time() - start, work_dir)
    demo = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "configs", "student", "demo.yaml")
    trainers = {}
    for mode, lambda_zero in (("kd_mlm", False), ("mlm", True)):
        config = config_lib.load_config(demo, _overrides(lambda_zero))
        data = experiment.prepare_data(config, vocab, shards)
        trainers[mode] = experiment.build_trainer(config, data,
                                                  os.path.join(work_dir, f"run_{mode}"))
    n = FLAGS.steps_per_loop
    for trainer in trainers.values():
        trainer.run_steps(n)  # trace / compile, fill the pipeline
    times = {mode: [] for mode in trainers}
    for _ in range(FLAGS.rounds):
        for mode, trainer in trainers.items():
            t0 = time.perf_counter()
            trainer.run_steps(n)
            times[mode].append((time.perf_counter() - t0) / n)
    step = {mode: statistics.median(values) for mode, values in times.items()}
    ratio = step["kd_mlm"] / step["mlm"]

    pipeline = trainers["kd_mlm"].pipeline
    iterator = iter(pipeline.dataset())
    for _ in range(20):
        next(iterator)
    t0 = time.perf_counter()
    for _ in range(FLAGS.pipeline_batches):
        batch = next(iterator)
    batch["input_word_ids"].numpy()
    records_per_second = FLAGS.pipeline_batches * FLAGS.batch_size / (time.perf_counter() - t0)
    consumed_per_second = FLAGS.batch_size / step["kd_mlm"]
    result = dict(
        model=dict(vocab_size=FLAGS.vocab_size, hidden_size=FLAGS.hidden_size,
                   num_layers=FLAGS.num_layers, seq_length=FLAGS.seq_length,
                   max_predictions=FLAGS.max_predictions, top_k=FLAGS.top_k,
                   batch_size=FLAGS.batch_size, jit_compile=FLAGS.jit_compile),
        step_seconds_kd_mlm=step["kd_mlm"], step_seconds_mlm=step["mlm"],
        step_times=times, kd_over_mlm_ratio=ratio,
        pipeline_records_per_second=records_per_second,
        training_records_per_second=consumed_per_second,
        pipeline_over_training_ratio=records_per_second / consumed_per_second)
    print(f"step time KD+MLM : {step['kd_mlm'] * 1e3:8.1f} ms")
    print(f"step time MLM    : {step['mlm'] * 1e3:8.1f} ms")
    print(f"ratio KD+MLM/MLM : {ratio:8.3f}   (target <= 1.05)")
    print(f"input pipeline   : {records_per_second:8.0f} records/s")
    print(f"training consumes: {consumed_per_second:8.0f} records/s")
    print(f"pipeline/training: {records_per_second / consumed_per_second:8.1f}x  "
          "(target >= 10x)")
    print("RESULT " + json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
