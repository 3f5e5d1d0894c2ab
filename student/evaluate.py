r"""Held-out evaluation of students against their teachers: masked-token accuracy, loss and RDT.

Input: scored shards of a held-out corpus (the scoring job run on dev text with
`copies_mode: all`, so every teacher of a language has its own copy), and one or more exported
students (`model_dir/export`). Every teacher is measured on its own tokenization and masks; every
student on exactly the same masked positions, reading the same copy mapped into the student
vocabulary — nothing is re-tokenized or re-masked.

* teacher accuracy: the teacher's top-1 prediction (the first of its stored top-k ids) equals the
  gold id; teacher loss: its cross-entropy on the gold ids (the records' `teacher_loss`, a mean
  over the example's masked tokens, re-weighted here by the number of masked tokens);
* student accuracy / loss: argmax / cross-entropy of the student's MLM distribution over the
  whole student vocabulary at the same positions;
* RDT (paper Eq. 3): per teacher, 100 * (P_S - P_T) / P_T with P = accuracy; per language the
  mean over its teachers; overall the mean over languages. The sign follows the paper's tables
  (positive: the student does better than the teacher); Eq. 3 as printed has the opposite sign.
* gold-only languages (no teacher; shards with `has_teacher_outputs: false`, scoring job
  `tokenizer_teacher`): the students' accuracy and loss on their masked tokens, with no teacher
  column (n/a) and no RDT; they do not enter the per-language or average RDT (paper §4.4: does
  distilling the other languages help a language no teacher covers? Compare students on it).

  python student/evaluate.py --shards en=workspace/scored/dev/en --shards de=... \
      --student kd=workspace/students/kd/export --student gold=workspace/students/gold/export \
      --output_dir workspace/evaluation

Writes evaluation.json, evaluation.md (a Markdown table) and evaluation.png (bar chart, teacher
vs students per language) into --output_dir and prints the table.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys

if __package__ in (None, ""):
    # `python student/evaluate.py` from a checkout without an installed package.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from teacher_scoring import cli_logging  # noqa: E402
from teacher_scoring.records import manifest as manifest_lib  # noqa: E402
from teacher_scoring.records import record_schema  # noqa: E402

SAVED_MODEL_DIR = "saved_model"
VOCAB_FILE = "vocab.txt"


class EvaluationError(ValueError):
    """The inputs of an evaluation do not fit together (naming the file and the field)."""


@dataclasses.dataclass
class Tally:
    """Sums over the masked tokens of one (language, teacher) copy set."""

    tokens: int = 0
    examples: int = 0
    gold_only: bool = False     # no teacher: `teacher` is the tokenizer teacher
    teacher_correct: int = 0
    teacher_loss_sum: float = 0.0
    student_correct: dict[str, int] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(int))
    student_loss_sum: dict[str, float] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(float))


class ExportedStudent:
    """An exported student (its SavedModel and vocab), called on batches of records."""

    def __init__(self, name: str, export_dir: str):
        self.name = name
        self.export_dir = export_dir
        saved_model = os.path.join(export_dir, SAVED_MODEL_DIR)
        vocab = os.path.join(export_dir, VOCAB_FILE)
        for path in (saved_model, vocab):
            if not tf.io.gfile.exists(path):
                raise EvaluationError(f"student {name!r}: {path} is missing (expected a "
                                      "student/train.py export folder)")
        self.vocab_sha256 = manifest_lib.sha256_of_file(vocab)
        self._serve = tf.saved_model.load(saved_model).signatures["serving_default"]

    def log_probs(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        """float32 [B, P, V]: log-softmax of the student's MLM logits at the masked positions."""
        outputs = self._serve(
            input_word_ids=batch[record_schema.INPUT_WORD_IDS],
            input_mask=batch[record_schema.INPUT_MASK],
            input_type_ids=batch[record_schema.INPUT_TYPE_IDS],
            masked_lm_positions=batch[record_schema.MASKED_LM_POSITIONS])
        return tf.nn.log_softmax(outputs["mlm_logits"], axis=-1)


def run_vocab_sha256(run_info: dict, where: str) -> str:
    """The sha256 of a run's vocabulary, from its run_info.json.

    student/train.py records `vocab_sha256`; a pretrain_teacher run of older versions recorded
    only the `vocab` path, which is then hashed.
    """
    if run_info.get("vocab_sha256"):
        return run_info["vocab_sha256"]
    vocab = run_info.get("vocab")
    if vocab and tf.io.gfile.exists(vocab):
        return manifest_lib.sha256_of_file(vocab)
    raise EvaluationError(f"{where}: neither field 'vocab_sha256' nor a readable 'vocab' file "
                          f"(vocab: {vocab!r}): cannot tell which vocabulary the run used")


class CheckpointStudent:
    """A student at an intermediate training checkpoint: MODEL_DIR@STEP (e.g. 20% of the steps).

    Built from MODEL_DIR/params.yaml (the run's effective config) and restored from
    MODEL_DIR/ckpt-STEP (the trainer's checkpoint: `model` is the BertPretrainerV2); the vocab
    hash is the one the run recorded in MODEL_DIR/run_info.json.
    """

    def __init__(self, name: str, spec: str):
        from student import config as config_lib  # pylint: disable=import-outside-toplevel
        from student import model as model_lib  # pylint: disable=import-outside-toplevel

        model_dir, _, step = spec.rpartition("@")
        self.name = name
        self.export_dir = spec
        prefix = os.path.join(model_dir, f"ckpt-{step}")
        paths = [os.path.join(model_dir, "params.yaml"), os.path.join(model_dir, "run_info.json"),
                 prefix + ".index"]
        for path in paths:
            if not tf.io.gfile.exists(path):
                raise EvaluationError(f"student {name!r}: {path} is missing (expected a "
                                      f"student/train.py model_dir with checkpoint {step})")
        config = config_lib.load_config(paths[0])
        with tf.io.gfile.GFile(paths[1]) as f:
            self.vocab_sha256 = run_vocab_sha256(json.load(f), paths[1])
        self._model = model_lib.build_pretrainer(config.model)
        tf.train.Checkpoint(model=self._model).read(prefix).expect_partial()

    def log_probs(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        """float32 [B, P, V], as ExportedStudent.log_probs."""
        inputs = {name: batch[name] for name in (
            record_schema.INPUT_WORD_IDS, record_schema.INPUT_MASK,
            record_schema.INPUT_TYPE_IDS, record_schema.MASKED_LM_POSITIONS)}
        return tf.nn.log_softmax(self._model(inputs, training=False)["mlm_logits"], axis=-1)


def load_student(name: str, path: str):
    """An export folder, or MODEL_DIR@STEP for an intermediate checkpoint of a run."""
    if "@" in os.path.basename(path):
        return CheckpointStudent(name, path)
    return ExportedStudent(name, path)


def _dataset(manifest: manifest_lib.Manifest, shard_dir: str, language: str,
             batch_size: int) -> tf.data.Dataset:
    files = manifest_lib.shard_paths(manifest, shard_dir, language)
    spec = manifest.shard_spec
    return (tf.data.TFRecordDataset(files, compression_type=manifest.compression or None)
            .batch(batch_size)
            .map(lambda records: record_schema.parse_batch(records, spec)))


def evaluate(shards: dict[str, str], students: dict[str, str],
             batch_size: int = 64) -> dict:
    """Evaluates every student against the teachers of every language.

    Args:
      shards: language -> folder of held-out scored shards (with manifest.json; id space
        "student"; without teacher outputs for a gold-only language).
      students: student name -> export folder (model_dir/export of student/train.py), or
        MODEL_DIR@STEP for the run's checkpoint at STEP.

    Returns:
      A JSON-able dict: per language and teacher the token count and each model's accuracy and
      loss, RDT per (language, teacher), per language and overall, per student.

    Raises:
      EvaluationError / manifest.ManifestError: naming the file and the field.
    """
    if not shards:
        raise EvaluationError("no --shards given")
    if not students:
        raise EvaluationError("no --student given")
    loaded = {name: load_student(name, path) for name, path in students.items()}
    tallies: dict[tuple[str, str], Tally] = {}
    for language, shard_dir in shards.items():
        manifest = manifest_lib.read_manifest(shard_dir)
        where = manifest_lib.manifest_path(shard_dir)
        manifest_lib.check_matches(manifest, where, id_space="student")
        gold_only = not manifest.has_teacher_outputs
        for student in loaded.values():
            if student.vocab_sha256 != manifest.vocab_sha256:
                raise EvaluationError(
                    f"{where}: field 'vocab_sha256' is {manifest.vocab_sha256} but student "
                    f"{student.name!r} ({student.export_dir}/vocab.txt) has "
                    f"{student.vocab_sha256}: the shards are not in this student's vocabulary")
        for batch in _dataset(manifest, shard_dir, language, batch_size):
            weights = batch[record_schema.MASKED_LM_WEIGHTS].numpy()
            real = weights > 0
            gold = batch[record_schema.MASKED_LM_IDS].numpy()
            teachers = [t.decode("utf-8") for t in batch[record_schema.TEACHER].numpy()]
            if not gold_only:
                teacher_top1 = batch[record_schema.TEACHER_TOPK_IDS].numpy()[:, :, 0]
                teacher_loss = batch[record_schema.TEACHER_LOSS].numpy()
                if not np.all(np.isfinite(teacher_loss)):
                    raise EvaluationError(f"{shard_dir}: a record of {language!r} has a NaN or "
                                          "infinite teacher_loss (a corrupt shard)")
            student_scores = {}
            for name, student in loaded.items():
                log_probs = student.log_probs(batch)
                gold_log_prob = tf.gather(log_probs, batch[record_schema.MASKED_LM_IDS],
                                          batch_dims=2).numpy()
                argmax = tf.argmax(log_probs, axis=-1, output_type=tf.int32).numpy()
                student_scores[name] = (argmax == gold, -gold_log_prob)
            for row, teacher in enumerate(teachers):
                tally = tallies.setdefault((language, teacher), Tally(gold_only=gold_only))
                n = int(real[row].sum())
                tally.examples += 1
                tally.tokens += n
                if not gold_only:
                    tally.teacher_correct += int(
                        (teacher_top1[row] == gold[row])[real[row]].sum())
                    tally.teacher_loss_sum += float(teacher_loss[row]) * n
                for name, (correct, loss) in student_scores.items():
                    tally.student_correct[name] += int(correct[row][real[row]].sum())
                    tally.student_loss_sum[name] += float(loss[row][real[row]].sum())
    return summarize(tallies, list(loaded))


def rdt(student_score: float, teacher_score: float) -> float:
    """Relative deviation from the teacher in %, positive when the student is better."""
    return 100.0 * (student_score - teacher_score) / teacher_score


def summarize(tallies: dict[tuple[str, str], Tally], students: list[str]) -> dict:
    """Turns per-(language, teacher) sums into metrics and RDTs (see the module docstring)."""
    rows = []
    for (language, teacher), tally in sorted(tallies.items()):
        if tally.tokens == 0:
            continue
        if tally.gold_only:
            # No teacher: nothing to compare with (n/a), and no RDT.
            row = dict(language=language, teacher=None, tokenizer_teacher=teacher,
                       gold_only=True, examples=tally.examples, tokens=tally.tokens,
                       teacher_accuracy=None, teacher_loss=None, students={})
        else:
            row = dict(language=language, teacher=teacher, gold_only=False,
                       examples=tally.examples, tokens=tally.tokens,
                       teacher_accuracy=tally.teacher_correct / tally.tokens,
                       teacher_loss=tally.teacher_loss_sum / tally.tokens, students={})
        for name in students:
            accuracy = tally.student_correct[name] / tally.tokens
            row["students"][name] = dict(
                accuracy=accuracy, loss=tally.student_loss_sum[name] / tally.tokens, rdt=None)
            if not tally.gold_only:
                row["students"][name]["rdt"] = (rdt(accuracy, row["teacher_accuracy"])
                                                if row["teacher_accuracy"] > 0
                                                else float("nan"))
        rows.append(row)
    languages = sorted({row["language"] for row in rows if not row["gold_only"]})
    per_language = {}
    for language in languages:
        mine = [row for row in rows if row["language"] == language]
        per_language[language] = {
            name: float(np.mean([row["students"][name]["rdt"] for row in mine]))
            for name in students}
    overall = {name: (float(np.mean([per_language[lang][name] for lang in languages]))
                      if languages else None)
               for name in students}
    gold_only = sorted({row["language"] for row in rows if row["gold_only"]})
    return dict(rows=rows, rdt_per_language=per_language, rdt_average=overall,
                students=students, gold_only_languages=gold_only,
                rdt_definition="100 * (student_accuracy - teacher_accuracy) / teacher_accuracy; "
                               "per language: mean over its teachers; average: mean over "
                               "languages (paper Eq. 3, sign as in its tables)")


def to_markdown(result: dict) -> str:
    """The result as a Markdown table (one row per language and teacher) plus the RDT lines."""
    students = result["students"]
    header = ["language", "teacher", "tokens", "teacher acc", "teacher loss"]
    for name in students:
        header += [f"{name} acc", f"{name} loss", f"{name} RDT %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result["rows"]:
        if row["gold_only"]:
            cells = [row["language"], f"none (gold-only; {row['tokenizer_teacher']} tokenizer)",
                     str(row["tokens"]), "n/a", "n/a"]
        else:
            cells = [row["language"], row["teacher"], str(row["tokens"]),
                     f"{100 * row['teacher_accuracy']:.2f}", f"{row['teacher_loss']:.3f}"]
        for name in students:
            s = row["students"][name]
            cells += [f"{100 * s['accuracy']:.2f}", f"{s['loss']:.3f}",
                      "n/a" if s["rdt"] is None else f"{s['rdt']:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for name in students:
        per_language = ", ".join(f"{lang} {values[name]:+.1f}"
                                 for lang, values in result["rdt_per_language"].items())
        average = result["rdt_average"][name]
        average = "n/a" if average is None else f"{average:+.1f}"
        lines.append(f"RDT of `{name}` (accuracy, %): average {average} ({per_language})")
    if result.get("gold_only_languages"):
        lines.append(f"Gold-only languages (no teacher; not in the RDT): "
                     f"{', '.join(result['gold_only_languages'])}")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
    """A bar chart of masked-token accuracy: each teacher and each student, per language (a
    gold-only language has no teacher bar)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    rows = result["rows"]
    labels = [f"{row['language']}\n"
              + (f"gold-only ({row['tokenizer_teacher']})" if row["gold_only"] else row["teacher"])
              for row in rows]
    series = [("teacher", [np.nan if row["gold_only"] else row["teacher_accuracy"]
                           for row in rows])]
    series += [(name, [row["students"][name]["accuracy"] for row in rows])
               for name in result["students"]]
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    for i, (name, values) in enumerate(series):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, [100 * v for v in values], width,
                      label=name)
        ax.bar_label(bars, labels=["" if np.isnan(v) else f"{100 * v:.1f}" for v in values],
                     fontsize=7)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("held-out masked-token accuracy (%)")
    ax.set_title("Teachers vs students on the same masked positions")
    ax.set_ylim(0, 1.12 * 100 * max(np.nanmax(values) for _, values in series))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=min(len(series), 5),
              fontsize=8, frameon=False)
    fig.tight_layout()
    with tf.io.gfile.GFile(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def write_outputs(result: dict, output_dir: str) -> dict[str, str]:
    """Writes evaluation.json / .md / .png into output_dir; returns their paths."""
    tf.io.gfile.makedirs(output_dir)
    paths = {kind: os.path.join(output_dir, f"evaluation.{kind}") for kind in ("json", "md",
                                                                             "png")}
    with tf.io.gfile.GFile(paths["json"], "w") as f:
        f.write(json.dumps(result, indent=2, sort_keys=True))
    with tf.io.gfile.GFile(paths["md"], "w") as f:
        f.write(to_markdown(result))
    plot(result, paths["png"])
    return paths


def parse_pairs(values: list[str], flag: str) -> dict[str, str]:
    """['a=x', 'b=y'] -> {'a': 'x', 'b': 'y'}, refusing malformed or repeated names."""
    pairs = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise EvaluationError(f"--{flag} {value!r}: expected NAME=PATH")
        if name in pairs:
            raise EvaluationError(f"--{flag}: {name!r} given twice")
        pairs[name] = path
    return pairs


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags; defined only when it runs, so importing this module (for `rdt`,
    `evaluate`, ...) adds no flags to another program."""
    flags.DEFINE_multi_string("shards", [], "LANGUAGE=FOLDER of held-out scored shards "
                              "(copies_mode all); repeat per language.")
    flags.DEFINE_multi_string("student", [], "NAME=EXPORT_FOLDER of a trained student, or "
                              "NAME=MODEL_DIR@STEP for its checkpoint at STEP; repeatable.")
    flags.DEFINE_string("output_dir", None, "Where evaluation.json/.md/.png go.")
    flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.")


def main(argv):
    cli_logging.quiet_unless_verbose()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    try:
        result = evaluate(parse_pairs(FLAGS.shards, "shards"),
                          parse_pairs(FLAGS.student, "student"), FLAGS.batch_size)
    except (EvaluationError, manifest_lib.ManifestError) as error:
        sys.exit(f"error: {error}")
    paths = write_outputs(result, FLAGS.output_dir)
    print(to_markdown(result))
    logging.info("wrote %s", paths)
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))


if __name__ == "__main__":
    define_flags()
    app.run(main)
