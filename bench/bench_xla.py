r"""XLA benchmark: training steps/s with and without `runtime.jit_compile`, side by side.

  python bench/bench_xla.py [--models demo_teacher,demo_student,exp_teacher,exp_student,\
      exp_wide,bert_base] [--rounds 8] [--steps_per_loop 5]

For every model below, two trainers are built from the same config file, seed and synthetic
shards, one with `runtime.jit_compile: false` and one with `true` (the per-replica
forward/backward XLA-compiled, student/trainer.py). Then:

1. the first loop of each (tracing, and for XLA the compilation) is timed on its own: the
   one-off cost of XLA, what a short run (a test, a demo) pays;
2. `--rounds` loops of `--steps_per_loop` steps alternate (plain, XLA, plain, XLA, ...) so both
   see the same machine load; reported: median step time of each, the median of the
   back-to-back pair ratios plain/XLA (> 1: XLA is faster), the ratio of the fastest loops, and
   the ratio of process CPU time per step (all threads; robust to other processes on a shared
   machine);
3. the losses of the first loop (same weights, same batches, same dropout generators): the
   largest relative difference between the two variants, per step.

Models (all on synthetic shards written through the real record schema; V as in the run):

  demo_teacher   configs/teacher/demo.yaml: 2 x 128, V 5,000 (run_demo's teacher vocab), plain
                 MLM in the teacher's ids (lambda 0), S 64 / P 10, batch 32
  demo_student   configs/student/demo.yaml: 2 x 128, V --demo_union (12,120: the demo union of
                 three 5,000-token teachers), KD + MLM, S 64 / P 10 / k 8, batch 32
  exp_teacher    experiments/reproduce_dissimilar.py's teachers: configs/teacher/demo.yaml with
                 an 8,000-token vocab
  exp_student    its `kd` / `gold` students: configs/student/demo.yaml over the 19,389-token union
  exp_wide       its `wide_kd` student: hidden 256, 4 heads, FFN 1024, V 19,389
  bert_base      BERT-base shape: 12 x 768, 12 heads, FFN 3072, V 30,522, S 128 / P 20, batch 8
                 (a few steps: --bert_rounds loops of --bert_steps_per_loop)
"""

from __future__ import annotations

import gc
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
import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER_CONFIG = os.path.join(REPO, "configs", "teacher", "demo.yaml")
STUDENT_CONFIG = os.path.join(REPO, "configs", "student", "demo.yaml")

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["demo_teacher", "demo_student", "exp_teacher", "exp_student",
                             "exp_wide", "bert_base"], "Which models to measure, in order.")
flags.DEFINE_integer("rounds", 8, "Timed loops per variant (after the first loop).")
flags.DEFINE_integer("steps_per_loop", 5, "Steps per timed loop.")
flags.DEFINE_integer("bert_rounds", 3, "Timed loops per variant for bert_base.")
flags.DEFINE_integer("bert_steps_per_loop", 2, "Steps per timed loop for bert_base.")
flags.DEFINE_integer("demo_union", 12120, "V of the demo student: the union of run_demo's three "
                     "5,000-token teachers trained on all of the bundled demo text (de, en, es).")
flags.DEFINE_float("dropout_rate", None, "Override the configs' dropout (hidden and attention); "
                   "0 shows what XLA does without the dropout random numbers.")
flags.DEFINE_integer("examples_per_language", 200, "Synthetic examples per language (x1, 2, 3).")
flags.DEFINE_string("work_dir", None, "Where shards go (default: a temp folder).")
flags.DEFINE_string("json_out", None, "Also write the results here.")

MODELS = {
    # name: (config file, kd, vocab size, encoder overrides, data overrides)
    "demo_teacher": (TEACHER_CONFIG, False, 5000, {}, {}),
    "demo_student": (STUDENT_CONFIG, True, None, {}, {}),
    "exp_teacher": (TEACHER_CONFIG, False, 8000, {}, {}),
    "exp_student": (STUDENT_CONFIG, True, 19389, {}, {}),
    "exp_wide": (STUDENT_CONFIG, True, 19389,
                 {"hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024}, {}),
    "bert_base": (STUDENT_CONFIG, True, 30522,
                  {"hidden_size": 768, "num_layers": 12, "num_attention_heads": 12,
                   "intermediate_size": 3072, "max_position_embeddings": 512},
                  {"seq_length": 128, "max_predictions_per_seq": 20, "global_batch_size": 8}),
}
_LANGS = ("en", "de", "es")


def _override(vocab_size: int, encoder: dict, data: dict, jit: bool, steps_per_loop: int
              ) -> dict:
    if FLAGS.dropout_rate is not None:
        encoder = dict(encoder, dropout_rate=FLAGS.dropout_rate,
                       attention_dropout_rate=FLAGS.dropout_rate)
    return {"model": {"encoder": {"bert_v2": dict(encoder, vocab_size=vocab_size)}},
            "data": dict(data),
            "train": {"steps": 1_000_000, "steps_per_loop": steps_per_loop,
                      "checkpoint_interval": 1_000_000, "log_interval": 1_000_000},
            "runtime": {"jit_compile": jit}}


def _write_data(folder: str, config, kd: bool, vocab_size: int) -> tuple[str, dict[str, str]]:
    from tests.student import shard_fixtures  # pylint: disable=import-outside-toplevel

    vocab = shard_fixtures.write_vocab(os.path.join(folder, "vocab"), vocab_size)
    shards = {}
    data = config.data
    for i, language in enumerate(_LANGS):
        path = os.path.join(folder, f"shards_{language}")
        shard_fixtures.write_shards(
            path, {language: FLAGS.examples_per_language * (i + 1)}, vocab, data.seq_length,
            data.max_predictions_per_seq, data.top_k, logits_dtype=data.logits_dtype,
            has_teacher_outputs=kd, id_space="student" if kd else "teacher",
            shards_per_language=2, seed=i)
        shards[language] = path
    return vocab, shards


def measure(name: str, work_dir: str) -> dict:
    from student import config as config_lib  # pylint: disable=import-outside-toplevel
    from student import experiment  # pylint: disable=import-outside-toplevel

    config_file, kd, vocab_size, encoder, data = MODELS[name]
    vocab_size = vocab_size or FLAGS.demo_union
    bert = name == "bert_base"
    n = FLAGS.bert_steps_per_loop if bert else FLAGS.steps_per_loop
    rounds = FLAGS.bert_rounds if bert else FLAGS.rounds
    folder = os.path.join(work_dir, name)
    trainers, configs = {}, {}
    for variant, jit in (("plain", False), ("xla", True)):
        configs[variant] = config_lib.load_config(
            config_file, [_override(vocab_size, encoder, data, jit, n)])
    vocab, shards = _write_data(folder, configs["plain"], kd, vocab_size)
    for variant, config in configs.items():
        prepared = experiment.prepare_data(config, vocab, shards)
        trainers[variant] = experiment.build_trainer(config, prepared,
                                                     os.path.join(folder, f"run_{variant}"))
    params = trainers["plain"].model.count_params()
    first_seconds, first_losses = {}, {}
    for variant, trainer in trainers.items():
        t0 = time.perf_counter()
        values = trainer.run_steps(n)
        first_seconds[variant] = time.perf_counter() - t0
        first_losses[variant] = values["loss"]
    times = {variant: [] for variant in trainers}
    cpu = {variant: [] for variant in trainers}
    for _ in range(rounds):
        for variant, trainer in trainers.items():
            t0, c0 = time.perf_counter(), time.process_time()
            trainer.run_steps(n)
            times[variant].append((time.perf_counter() - t0) / n)
            cpu[variant].append((time.process_time() - c0) / n)
    step = {v: statistics.median(t) for v, t in times.items()}
    cpu_step = {v: statistics.median(t) for v, t in cpu.items()}
    paired = [p / x for p, x in zip(times["plain"], times["xla"])]
    plain_loss = np.asarray(first_losses["plain"], np.float64)
    xla_loss = np.asarray(first_losses["xla"], np.float64)
    loss_rel = np.abs(xla_loss - plain_loss) / np.abs(plain_loss)
    # One-off extra cost of the first loop (tracing + XLA compilation) against plain, in steps
    # of the plain variant: the run length XLA needs before it pays for itself.
    extra = first_seconds["xla"] - first_seconds["plain"]
    saved_per_step = step["plain"] - step["xla"]
    result = dict(
        model=name, config=os.path.relpath(config_file, REPO), kd=kd, vocab_size=vocab_size,
        dropout_rate=configs["plain"].model.encoder.bert_v2.dropout_rate,
        seq_length=configs["plain"].data.seq_length,
        batch=configs["plain"].data.global_batch_size,
        hidden=configs["plain"].model.encoder.bert_v2.hidden_size,
        layers=configs["plain"].model.encoder.bert_v2.num_layers, parameters=int(params),
        steps_per_loop=n, rounds=rounds,
        first_loop_seconds=first_seconds, step_seconds=step, cpu_seconds_per_step=cpu_step,
        step_times=times, plain_over_xla_paired=paired,
        speedup_paired_median=statistics.median(paired),
        speedup_fastest=min(times["plain"]) / min(times["xla"]),
        speedup_cpu=cpu_step["plain"] / cpu_step["xla"],
        steps_per_second={v: 1.0 / s for v, s in step.items()},
        first_losses={v: [float(x) for x in l] for v, l in first_losses.items()},
        max_relative_loss_difference=float(loss_rel.max()),
        break_even_steps=(extra / saved_per_step if saved_per_step > 0 else None))
    del trainers
    gc.collect()
    return result


def _print(result: dict) -> None:
    s, f = result["step_seconds"], result["first_loop_seconds"]
    print(f"\n== {result['model']}: {result['layers']} x {result['hidden']}, V "
          f"{result['vocab_size']:,}, S {result['seq_length']}, batch {result['batch']}, "
          f"{'KD+MLM' if result['kd'] else 'MLM'}, {result['parameters'] / 1e6:.1f}M params, "
          f"dropout {result['dropout_rate']:g}")
    print(f"  steps/s          plain {1 / s['plain']:7.2f}   xla {1 / s['xla']:7.2f}   "
          f"(step {s['plain'] * 1e3:.1f} / {s['xla'] * 1e3:.1f} ms)")
    print(f"  speed-up xla     paired median {result['speedup_paired_median']:.3f}   "
          f"fastest loops {result['speedup_fastest']:.3f}   CPU time "
          f"{result['speedup_cpu']:.3f}   (> 1: XLA faster)")
    even = result["break_even_steps"]
    print(f"  first loop       plain {f['plain']:.1f} s   xla {f['xla']:.1f} s   "
          + (f"(XLA pays off after {even:.0f} steps)" if even is not None
             else "(XLA never pays off)"))
    print(f"  first losses     max relative difference {result['max_relative_loss_difference']:.2e}"
          f"  plain {['%.5f' % x for x in result['first_losses']['plain']]}"
          f"  xla {['%.5f' % x for x in result['first_losses']['xla']]}")


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.models) - set(MODELS))
    if unknown:
        raise app.UsageError(f"--models: unknown {unknown}; choose from {sorted(MODELS)}")
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_xla_")
    start = time.time()
    results = []
    for name in FLAGS.models:
        logging.info("measuring %s", name)
        results.append(measure(name, work_dir))
        _print(results[-1])
        sys.stdout.flush()
    print("\n| model | V | plain steps/s | XLA steps/s | speed-up (paired median / fastest / "
          "CPU time) | first loop plain / XLA (s) | max rel. loss diff |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        s, f = r["step_seconds"], r["first_loop_seconds"]
        print(f"| {r['model']} | {r['vocab_size']:,} | {1 / s['plain']:.2f} | "
              f"{1 / s['xla']:.2f} | {r['speedup_paired_median']:.2f} / "
              f"{r['speedup_fastest']:.2f} / {r['speedup_cpu']:.2f} | {f['plain']:.1f} / "
              f"{f['xla']:.1f} | {r['max_relative_loss_difference']:.1e} |")
    print(f"\ntotal {time.time() - start:.0f} s; load average {os.getloadavg()}")
    print("RESULT " + json.dumps(results, sort_keys=True))
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    app.run(main)
