r"""Held-out learning curve of a training run: masked-LM loss and accuracy at every kept checkpoint.

Has a model (a teacher trained by `python -m student.pretrain_teacher`, or a student of
`student/train.py`) finished learning, or would more steps still help? This command evaluates
every checkpoint its model_dir kept (`ckpt-STEP`) on held-out shards whose vocabulary is the
run's own, and says whether the held-out loss has flattened:

  flat  <=>  (loss at the checkpoint nearest to (1 - window) of the steps - final loss)
             / that loss  <  threshold        (default: under 2% over the last 20% of the steps)

Beside the curve it reports two baselines every masked-LM figure should be read against, both
estimated from the run's own training shards (their masked gold tokens) and scored on the
held-out masked tokens:
  * frequent-token accuracy: always predicting the most frequent training gold token;
  * unigram loss: the cross-entropy of the training gold-token frequencies (add-one smoothed
    over the vocabulary), i.e. what a model that ignores the context can reach.

  python -m student.learning_curve --model_dir teacher_work/en/model \
      --shards en=heldout/en --output_dir results/teacher_curves/en

--shards takes any shards of the run's vocabulary: plain MLM shards
(`python -m teacher_scoring.examples.create_examples` on dev text with the teacher's vocab)
for a teacher, held-out scored shards (id space "student") for a student. Every masked token of
every record counts (a language with several teacher copies counts each copy).

Writes curve.json, curve.md and curve.png into --output_dir and prints the table.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from student import evaluate as evaluate_lib  # noqa: E402
from teacher_scoring import cli_logging  # noqa: E402
from teacher_scoring.records import manifest as manifest_lib  # noqa: E402
from teacher_scoring.records import record_schema  # noqa: E402

CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d+)\.index$")


class LearningCurveError(ValueError):
    """The run or the shards do not fit together (naming the file and the field)."""


def checkpoint_steps(model_dir: str) -> list[int]:
    """The steps of the checkpoints kept in model_dir (ckpt-STEP.index), ascending."""
    if not tf.io.gfile.isdir(model_dir):
        raise LearningCurveError(f"--model_dir {model_dir} is not a folder")
    steps = sorted(int(match.group(1)) for match in
                   (CHECKPOINT_PATTERN.match(name) for name in tf.io.gfile.listdir(model_dir))
                   if match)
    if not steps:
        raise LearningCurveError(f"{model_dir}: no ckpt-STEP.index checkpoint (expected a "
                                 "student/train.py or pretrain_teacher model_dir)")
    return steps


def _run_info(model_dir: str) -> dict:
    path = os.path.join(model_dir, "run_info.json")
    if not tf.io.gfile.exists(path):
        raise LearningCurveError(f"{path} is missing (expected a student/train.py model_dir)")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _records(shard_dir: str, language: str, batch_size: int = 64):
    """(manifest, dataset of parsed batches) of one language's shards."""
    manifest = manifest_lib.read_manifest(shard_dir)
    files = manifest_lib.shard_paths(manifest, shard_dir, language)
    dataset = (tf.data.TFRecordDataset(files, compression_type=manifest.compression or None)
               .batch(batch_size)
               .map(lambda records: record_schema.parse_batch(records, manifest.shard_spec,
                                                              keep_strings=False)))
    return manifest, dataset


def gold_counts(shard_dirs: dict[str, str], vocab_size: int) -> np.ndarray:
    """int64 [V]: how often each id is a masked gold token in the (training) shards."""
    counts = np.zeros([vocab_size], np.int64)
    for language, shard_dir in shard_dirs.items():
        _, dataset = _records(shard_dir, language, batch_size=256)
        for batch in dataset:
            real = batch[record_schema.MASKED_LM_WEIGHTS].numpy() > 0
            ids = batch[record_schema.MASKED_LM_IDS].numpy()[real]
            if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
                raise LearningCurveError(f"{shard_dir}: gold id {int(ids.max())} outside the "
                                         f"vocabulary of {vocab_size} ids")
            counts += np.bincount(ids, minlength=vocab_size)
    return counts


def relative_improvement(curve: list[dict], window: float) -> dict:
    """How much the held-out loss fell over the last `window` of the steps.

    Compares the final point with the kept checkpoint nearest to (1 - window) * final step.
    """
    final = curve[-1]
    target = (1.0 - window) * final["step"]
    earlier = min(curve[:-1], key=lambda point: abs(point["step"] - target)) if len(curve) > 1 \
        else None
    if earlier is None:
        return dict(from_step=None, to_step=final["step"], relative_improvement=None)
    return dict(from_step=earlier["step"], to_step=final["step"],
                relative_improvement=(earlier["loss"] - final["loss"]) / earlier["loss"])


def learning_curve(model_dir: str, shards: dict[str, str], window: float = 0.2,
                   threshold: float = 0.02, batch_size: int = 64,
                   steps: list[int] | None = None) -> dict:
    """Evaluates every kept checkpoint of model_dir on the held-out shards.

    Args:
      model_dir: a student/train.py model_dir (params.yaml, run_info.json, ckpt-STEP.*).
      shards: language -> folder of held-out shards in the run's vocabulary.
      window, threshold: the flatness rule (module docstring).
      steps: only these checkpoints (default: every kept one).

    Returns:
      A JSON-able dict: the curve (step, tokens, accuracy, loss per language and overall), the
      baselines, and the flatness verdict.
    """
    if not shards:
        raise LearningCurveError("no --shards given")
    if not 0.0 < window < 1.0:
        raise LearningCurveError(f"--window {window} must be in (0, 1)")
    kept = checkpoint_steps(model_dir)
    if steps:
        missing = sorted(set(steps) - set(kept))
        if missing:
            raise LearningCurveError(f"{model_dir}: no checkpoint at step(s) {missing}; kept: "
                                     f"{kept}")
        kept = sorted(set(steps))
    info = _run_info(model_dir)
    vocab_sha256 = evaluate_lib.run_vocab_sha256(info, os.path.join(model_dir, "run_info.json"))
    vocab_size = None
    held_out = {}
    for language, shard_dir in shards.items():
        manifest = manifest_lib.read_manifest(shard_dir)
        if manifest.vocab_sha256 != vocab_sha256:
            raise LearningCurveError(
                f"{manifest_lib.manifest_path(shard_dir)}: field 'vocab_sha256' is "
                f"{manifest.vocab_sha256} but the run {model_dir} trained on {vocab_sha256}: "
                "the held-out shards are not in the run's vocabulary")
        if language not in manifest.languages:
            raise LearningCurveError(f"{manifest_lib.manifest_path(shard_dir)}: no language "
                                     f"{language!r} (it has {sorted(manifest.languages)})")
        vocab_size = manifest.vocab_size
        held_out[language] = shard_dir

    # Baselines from the run's training shards (the run's own record of what it read).
    train_dirs = {language: path for language, path in info.get("shard_dirs", {}).items()
                  if tf.io.gfile.exists(manifest_lib.manifest_path(path))}
    baseline = None
    if train_dirs:
        counts = gold_counts(train_dirs, vocab_size)
        frequent = int(np.argmax(counts))
        unigram_log_probs = np.log((counts + 1.0) / (counts.sum() + vocab_size))
        baseline = dict(frequent_token_id=frequent, training_gold_tokens=int(counts.sum()),
                        training_shards=train_dirs, correct=collections.Counter(),
                        loss_sum=collections.Counter())

    def batches():
        for language, shard_dir in held_out.items():
            _, dataset = _records(shard_dir, language, batch_size)
            for batch in dataset:
                real = batch[record_schema.MASKED_LM_WEIGHTS].numpy() > 0
                yield language, batch, batch[record_schema.MASKED_LM_IDS].numpy(), real

    # Token counts and baselines need no model.
    tokens = collections.Counter()
    for language, _, gold, real in batches():
        tokens[language] += int(real.sum())
        if baseline is not None:
            baseline["correct"][language] += int((gold[real] == frequent).sum())
            baseline["loss_sum"][language] += float(-unigram_log_probs[gold[real]].sum())
    for language, shard_dir in held_out.items():
        if tokens[language] == 0:
            raise LearningCurveError(f"{shard_dir}: no masked token for {language!r}")
    # One checkpoint in memory at a time (a BERT-base run keeps several).
    correct = {step: collections.Counter() for step in kept}
    loss_sum = {step: collections.Counter() for step in kept}
    for step in kept:
        model = evaluate_lib.CheckpointStudent(f"step {step}", f"{model_dir}@{step}")
        for language, batch, gold, real in batches():
            log_probs = model.log_probs(batch)
            gold_log_prob = tf.gather(log_probs, gold, batch_dims=2).numpy()
            argmax = tf.argmax(log_probs, axis=-1, output_type=tf.int32).numpy()
            correct[step][language] += int((argmax == gold)[real].sum())
            loss_sum[step][language] += float(-gold_log_prob[real].sum())
        del model

    total = sum(tokens.values())
    curve = []
    for step in kept:
        curve.append(dict(
            step=step, accuracy=sum(correct[step].values()) / total,
            loss=sum(loss_sum[step].values()) / total,
            per_language={language: dict(accuracy=correct[step][language] / tokens[language],
                                         loss=loss_sum[step][language] / tokens[language])
                          for language in tokens}))
    flatness = relative_improvement(curve, window)
    improvement = flatness["relative_improvement"]
    flatness.update(window=window, threshold=threshold,
                    flat=None if improvement is None else bool(improvement < threshold))
    if baseline is not None:
        baseline = dict(
            frequent_token_id=baseline["frequent_token_id"],
            training_gold_tokens=baseline["training_gold_tokens"],
            training_shards=baseline["training_shards"],
            frequent_token_accuracy=sum(baseline["correct"].values()) / total,
            unigram_loss=sum(baseline["loss_sum"].values()) / total,
            per_language={language: dict(
                frequent_token_accuracy=baseline["correct"][language] / tokens[language],
                unigram_loss=baseline["loss_sum"][language] / tokens[language])
                for language in tokens})
    return dict(model_dir=model_dir, held_out_shards=held_out, held_out_tokens=dict(tokens),
                total_tokens=total, curve=curve, baseline=baseline, flatness=flatness)


def to_markdown(result: dict) -> str:
    lines = [f"Held-out curve of `{result['model_dir']}` ({result['total_tokens']} masked tokens)",
             "", "| step | loss | accuracy % |", "|---:|---:|---:|"]
    for point in result["curve"]:
        lines.append(f"| {point['step']} | {point['loss']:.4f} | {100 * point['accuracy']:.2f} |")
    baseline = result["baseline"]
    if baseline is not None:
        lines.append(f"| frequent token / unigram | {baseline['unigram_loss']:.4f} | "
                     f"{100 * baseline['frequent_token_accuracy']:.2f} |")
    flat = result["flatness"]
    if flat["relative_improvement"] is not None:
        lines += ["", f"Held-out loss fell {100 * flat['relative_improvement']:.2f}% from step "
                      f"{flat['from_step']} to step {flat['to_step']} (the last "
                      f"{100 * flat['window']:.0f}% of the steps): "
                      + ("flat" if flat["flat"] else "NOT flat")
                      + f" by the < {100 * flat['threshold']:.0f}% rule."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str, title: str | None = None) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    steps = [point["step"] for point in result["curve"]]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.4))
    loss_axis.plot(steps, [point["loss"] for point in result["curve"]], "o-", label="model")
    accuracy_axis.plot(steps, [100 * point["accuracy"] for point in result["curve"]], "o-",
                       label="model")
    baseline = result["baseline"]
    if baseline is not None:
        loss_axis.axhline(baseline["unigram_loss"], color="gray", ls="--", label="unigram")
        accuracy_axis.axhline(100 * baseline["frequent_token_accuracy"], color="gray", ls="--",
                              label="frequent token")
    loss_axis.set(xlabel="step", ylabel="held-out MLM loss")
    accuracy_axis.set(xlabel="step", ylabel="held-out masked-token accuracy %")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title or os.path.basename(os.path.normpath(result["model_dir"])))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(result: dict, output_dir: str, title: str | None = None) -> dict[str, str]:
    tf.io.gfile.makedirs(output_dir)
    paths = {suffix: os.path.join(output_dir, f"curve.{suffix}") for suffix in ("json", "md",
                                                                                 "png")}
    with tf.io.gfile.GFile(paths["json"], "w") as f:
        json.dump(result, f, indent=2)
    with tf.io.gfile.GFile(paths["md"], "w") as f:
        f.write(to_markdown(result))
    plot(result, paths["png"], title)
    return paths


FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "The run's model_dir (params.yaml, run_info.json and "
                        "its ckpt-STEP checkpoints).")
    flags.DEFINE_multi_string("shards", [], "LANGUAGE=FOLDER of held-out shards in the run's "
                              "vocabulary (repeat per language).")
    flags.DEFINE_string("output_dir", None, "Where curve.json/.md/.png go.")
    flags.DEFINE_float("window", 0.2, "Flatness: compare the final loss with the loss this "
                       "fraction of the steps earlier.")
    flags.DEFINE_float("threshold", 0.02, "Flatness: flat when the relative improvement over "
                       "the window is below this.")
    flags.DEFINE_string("title", None, "Plot title (default: the model_dir's name).")
    flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.")
    flags.mark_flags_as_required(["model_dir", "output_dir"])


def main(argv):
    cli_logging.quiet_unless_verbose()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        shards = evaluate_lib.parse_pairs(FLAGS.shards, "--shards")
        result = learning_curve(FLAGS.model_dir, shards, FLAGS.window, FLAGS.threshold,
                                FLAGS.batch_size)
    except (LearningCurveError, evaluate_lib.EvaluationError,
            manifest_lib.ManifestError) as error:
        sys.exit(f"error: {error}")
    write_outputs(result, FLAGS.output_dir, FLAGS.title)
    print(to_markdown(result))


if __name__ == "__main__":
    define_flags()
    app.run(main)
