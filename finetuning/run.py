r"""Fine-tune teachers and students on downstream tasks with the same hyperparameters; Table 2.

  python -m finetuning.run --output_dir OUT \
      --task name=pos,type=pos,language=en,train=en_ewt-ud-train.conllu,dev=en_ewt-ud-dev.conllu \
      --task name=pos,type=pos,language=tr,train=tr_boun-ud-train.conllu,dev=tr_boun-ud-dev.conllu \
      --task name=ner,type=ner,language=tr,train=tr_news-train.tsv,dev=tr_news-dev.tsv \
      --teacher en=teachers/en --teacher tr=teachers/tr \
      --student kd=students/kd/export --student gold=students/gold/export \
      --seeds 3 [--epochs 10 --max_train_examples 2000 --max_eval_examples 500]

For every task it fine-tunes each teacher of the task's language (with the teacher's own
tokenizer) and every student (its export, with the student tokenizer of that language), each
with `--seeds` seeds and the same hyperparameters (defaults: the paper's Table 7 - batch 32,
learning rate 3e-5, 10 epochs, 10% linear warm-up then linear decay, S = 256 for POS/NER and 128
for sentence classification), keeps each run's best dev epoch (and scores that model on the
test file if one is given), and writes

  OUT/results.json, OUT/results.md, OUT/results.png   the paper's Table 2 layout: per task and
        language the teacher's score and each student's (mean ± std over seeds), RDT per task
  OUT/runs/<task>/<language>/<teacher|student>-<name>/seed-<k>.json   one finished run each

Resumable: a finished run found in OUT is kept and skipped (if it was made with the same
settings: data files, hyperparameters, model path; otherwise the command stops and says which
setting differs). `--flagfile FILE` reads the flags from a file (one a line).

--task takes comma-separated key=value pairs:
  name      the task's name: the table's column (use the same name for every language)
  type      pos | ner | classification
  language  the language code: picks the teacher(s) (--teacher LANG=...) and the student
            tokenizer
  train, dev, test (optional)  data files: CoNLL-U (.conllu, UPOS) or token<TAB>label for
            pos/ner (ner: IOB2), label<TAB>text for classification (finetuning/data.py)
  format    (optional) conllu | tsv for pos/ner files (default: by extension)
  seq_length (optional) S for this task (default --seq_length, else 256 / 128)

--teacher LANG=PATH or LANG:NAME=PATH: a teacher folder of any BERT format
(teacher_scoring.teachers.loaders), for the tasks of LANG (repeatable; several for one language are each
fine-tuned, RDT averages over them). NAME defaults to the teacher.json name, else the folder name.
--student NAME=EXPORT: a student export folder (student/train.py's model_dir/export).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported: quiet console

import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

from absl import app, flags, logging  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from finetuning import results as results_lib  # noqa: E402
from finetuning import data as data_lib  # noqa: E402
from finetuning import encoders as encoders_lib  # noqa: E402
from finetuning import features as features_lib  # noqa: E402
from finetuning import metrics as metrics_lib  # noqa: E402
from finetuning import training  # noqa: E402
from student.tokenizer import TokenizerError  # noqa: E402
from teacher_scoring.records import manifest as manifest_lib  # noqa: E402
from teacher_scoring.teachers.loaders import LoaderError  # noqa: E402

DEFAULT_SEQ_LENGTH = {"pos": 256, "ner": 256, "classification": 128}
TASK_KEYS = ("name", "type", "language", "train", "dev", "test", "format", "seq_length")
RUNS_DIR = "runs"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class RunError(ValueError):
    """Bad command-line input or a conflict with OUT; names the flag, file or field."""


# ----------------------------------------------------------------------------------------------
# What to run.


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One --task (see the module docstring)."""

    name: str
    type: str
    language: str
    train: str
    dev: str
    test: str | None = None
    format: str = "auto"
    seq_length: int | None = None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.language}"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One --teacher or --student."""

    kind: str  # encoders.TEACHER or encoders.STUDENT
    name: str
    path: str
    language: str | None = None  # teachers only

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def _check_name(name: str, what: str) -> str:
    if not _NAME_RE.match(name):
        raise RunError(f"{what}: name {name!r} must match [A-Za-z0-9_.-]+ (it names a folder "
                       "under --output_dir)")
    return name


def parse_task(value: str) -> TaskSpec:
    """Parses `name=...,type=...,language=...,train=...,dev=...[,test=...]`."""
    fields: dict[str, str] = {}
    for part in value.split(","):
        key, sep, field_value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RunError(f"--task {value!r}: {part!r} is not key=value")
        if key not in TASK_KEYS:
            raise RunError(f"--task {value!r}: unknown key {key!r}; known: {list(TASK_KEYS)}")
        if key in fields:
            raise RunError(f"--task {value!r}: key {key!r} given twice")
        fields[key] = field_value.strip()
    missing = [k for k in ("name", "type", "language", "train", "dev") if not fields.get(k)]
    if missing:
        raise RunError(f"--task {value!r}: missing {missing}")
    if fields["type"] not in training.TASK_TYPES:
        raise RunError(f"--task {value!r}: type {fields['type']!r}; known: "
                       f"{list(training.TASK_TYPES)}")
    _check_name(fields["name"], f"--task {value!r}")
    _check_name(fields["language"], f"--task {value!r} language")
    seq_length = None
    if "seq_length" in fields:
        try:
            seq_length = int(fields["seq_length"])
        except ValueError as error:
            raise RunError(f"--task {value!r}: seq_length {fields['seq_length']!r} is not an "
                           "integer") from error
        if seq_length < 3:
            raise RunError(f"--task {value!r}: seq_length {seq_length} < 3 (room for [CLS], "
                           "one piece, [SEP])")
    if "format" in fields:
        if fields["type"] == "classification":
            raise RunError(f"--task {value!r}: format applies to pos/ner files only")
        if fields["format"] not in data_lib.TAGGING_FORMATS:
            raise RunError(f"--task {value!r}: format {fields['format']!r}; known: "
                           f"{list(data_lib.TAGGING_FORMATS)}")
    return TaskSpec(name=fields["name"], type=fields["type"], language=fields["language"],
                    train=fields["train"], dev=fields["dev"], test=fields.get("test") or None,
                    format=fields.get("format", "auto"), seq_length=seq_length)


def _teacher_json_name(path: str) -> str | None:
    from teacher_scoring.teachers import teacher as teacher_lib  # pylint: disable=import-outside-toplevel
    for candidate in (os.path.join(path, teacher_lib.TEACHER_JSON),
                      os.path.join(path, "assets", teacher_lib.TEACHER_JSON)):
        if tf.io.gfile.exists(candidate):
            try:
                return teacher_lib.read_teacher_json(candidate).name
            except teacher_lib.TeacherError:
                return None  # the loader reports it, with the path
    return None


def parse_teacher(value: str) -> ModelSpec:
    """`LANG=PATH` or `LANG:NAME=PATH`."""
    from teacher_scoring.teachers import teacher as teacher_lib  # pylint: disable=import-outside-toplevel
    key, sep, path = value.partition("=")
    if not sep or not key or not path:
        raise RunError(f"--teacher {value!r}: expected LANG=PATH or LANG:NAME=PATH")
    language, _, name = key.partition(":")
    _check_name(language, f"--teacher {value!r} language")
    name = name or _teacher_json_name(path) or teacher_lib.default_name(path)
    return ModelSpec(encoders_lib.TEACHER, _check_name(name, f"--teacher {value!r}"), path,
                     language)


def parse_student(value: str) -> ModelSpec:
    """`NAME=EXPORT`."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise RunError(f"--student {value!r}: expected NAME=EXPORT_FOLDER")
    return ModelSpec(encoders_lib.STUDENT, _check_name(name, f"--student {value!r}"), path)


def check_plan(tasks: Sequence[TaskSpec], teachers: Sequence[ModelSpec],
               students: Sequence[ModelSpec]) -> None:
    """Refuses duplicates and tasks whose language has no teacher."""
    if not tasks:
        raise RunError("no --task given")
    seen = set()
    for task in tasks:
        if (task.name, task.language) in seen:
            raise RunError(f"--task name={task.name},language={task.language} given twice; a "
                           "task name is one column of the table: give each data set of a "
                           "language its own name")
        seen.add((task.name, task.language))
        if not any(t.language == task.language for t in teachers):
            raise RunError(f"--task {task.key}: no --teacher {task.language}=PATH (the students "
                           "are compared with the teacher of the task's language)")
    names = [(t.language, t.name) for t in teachers]
    for language, name in names:
        if names.count((language, name)) > 1:
            raise RunError(f"--teacher: two teachers of {language} are named {name!r}; name "
                           f"them with --teacher {language}:NAME=PATH")
    student_names = [s.name for s in students]
    for name in student_names:
        if student_names.count(name) > 1:
            raise RunError(f"--student: {name!r} given twice")


def models_of(task: TaskSpec, teachers: Sequence[ModelSpec],
              students: Sequence[ModelSpec]) -> list[ModelSpec]:
    """The task language's teachers, then every student."""
    return [t for t in teachers if t.language == task.language] + list(students)


# ----------------------------------------------------------------------------------------------
# Data.


@dataclasses.dataclass
class TaskData:
    """A task's data, read and checked once: gold examples, labels, what was skipped."""

    spec: TaskSpec
    seq_length: int
    labels: list[str]
    train: list
    dev: list
    test: list | None
    files: dict[str, dict]  # split -> path, sha256, examples (total / used), reader counts

    @property
    def tagging(self) -> bool:
        return self.spec.type in training.TAGGING_TYPES

    def gold(self, examples: list) -> list:
        if self.tagging:
            return [list(s.labels) for s in examples]
        return [e.label for e in examples]


def _read(spec: TaskSpec, path: str):
    if spec.type == "classification":
        return data_lib.read_classification(path)
    tagging_file = data_lib.read_tagging(path, spec.format)
    return data_lib.check_iob2(tagging_file) if spec.type == "ner" else tagging_file


def _items(read) -> list:
    return read.examples if isinstance(read, data_lib.ClassificationFile) else read.sentences


def load_task_data(spec: TaskSpec, seq_length: int, max_train: int | None,
                   max_eval: int | None) -> TaskData:
    """Reads and checks a task's files; the label set comes from the whole training file."""
    splits = {"train": spec.train, "dev": spec.dev}
    if spec.test:
        splits["test"] = spec.test
    read = {split: _read(spec, path) for split, path in splits.items()}
    if spec.type == "classification":
        labels = data_lib.classification_labels(read["train"])
    else:
        labels = data_lib.tagging_labels(read["train"], iob2=spec.type == "ner")
    for split in ("dev", "test"):
        if split in read:
            data_lib.check_known_labels(read[split], labels, spec.train)
    used, files = {}, {}
    for split, content in read.items():
        items = _items(content)
        limit = max_train if split == "train" else max_eval
        used[split] = items[:limit] if limit else items
        info = dict(path=splits[split], sha256=manifest_lib.sha256_of_file(splits[split]),
                    examples=len(items), used=len(used[split]))
        if isinstance(content, data_lib.TaggingFile):
            info.update(multiword_tokens_skipped=content.multiword_tokens,
                        empty_nodes_skipped=content.empty_nodes,
                        iob2_repaired=content.repaired)
        files[split] = info
    return TaskData(spec, seq_length, labels, used["train"], used["dev"], used.get("test"),
                    files)


def featurize(task: TaskData, examples: list, tokenizer) -> features_lib.Features:
    if task.tagging:
        return features_lib.featurize_tagging(examples, task.labels, tokenizer, task.seq_length)
    return features_lib.featurize_classification(examples, task.labels, tokenizer,
                                                 task.seq_length)


def scorer(task: TaskData, examples: list) -> Callable[[list], dict]:
    """Predicted label ids -> metrics against the gold labels of `examples`."""
    gold = task.gold(examples)

    def score(predicted_ids: list) -> dict:
        if task.tagging:
            predicted = [[task.labels[i] for i in sentence] for sentence in predicted_ids]
        else:
            predicted = [task.labels[i] for i in predicted_ids]
        return metrics_lib.score(task.spec.type, gold, predicted)

    return score


# ----------------------------------------------------------------------------------------------
# Finished runs.


def run_path(output_dir: str, task: TaskSpec, model: ModelSpec, seed: int) -> str:
    return os.path.join(output_dir, RUNS_DIR, task.name, task.language,
                        f"{model.kind}-{model.name}", f"seed-{seed}.json")


def run_settings(task: TaskData, model: ModelSpec, hparams: training.Hyperparameters,
                 seed: int) -> dict:
    """Everything a run's result depends on (compared on resume)."""
    return dict(
        task=dict(name=task.spec.name, type=task.spec.type, language=task.spec.language,
                  format=task.spec.format, seq_length=task.seq_length,
                  files={split: dict(path=info["path"], sha256=info["sha256"], used=info["used"])
                         for split, info in task.files.items()}),
        model=dict(kind=model.kind, name=model.name, path=model.path),
        hyperparameters=dataclasses.asdict(hparams), seed=seed)


def _differences(old, new, prefix="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} then, {new!r} now"]


def finished_run(path: str, settings: dict) -> dict | None:
    """The record at `path` if it exists and was made with `settings`; None if absent.

    Raises:
      RunError: it exists with other settings (naming the settings that differ).
    """
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            record = json.loads(f.read())
        except json.JSONDecodeError as error:
            raise RunError(f"{path}: not valid JSON ({error}); delete it to rerun") from error
    differences = _differences(record.get("settings"), settings)
    if differences:
        raise RunError(f"{path}: this finished run was made with other settings "
                       f"({'; '.join(differences[:5])}); use another --output_dir or delete "
                       "the file to rerun it")
    return record


def write_record(path: str, record: dict) -> None:
    """Writes a finished run atomically (a partial file never looks finished)."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    tf.io.gfile.rename(temporary, path, overwrite=True)


# ----------------------------------------------------------------------------------------------
# The command.


def load_encoder(model: ModelSpec, language: str) -> encoders_lib.PretrainedEncoder:
    if model.kind == encoders_lib.TEACHER:
        return encoders_lib.load_teacher_encoder(model.name, model.path)
    return encoders_lib.load_student_encoder(model.name, model.path, language)


def run(tasks: Sequence[TaskSpec], teachers: Sequence[ModelSpec],
        students: Sequence[ModelSpec], output_dir: str, hparams: training.Hyperparameters,
        seeds: Sequence[int], seq_length: int | None = None, max_train: int | None = None,
        max_eval: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Fine-tunes every (task, model, seed) not finished yet; writes and returns the results.

    Args:
      tasks, teachers, students: what to run (see the module docstring).
      output_dir: OUT.
      hparams: the shared hyperparameters.
      seeds: the seeds (each run once per seed).
      seq_length: S for every task (None: per task type, 256 tagging / 128 classification;
        a task's own seq_length wins).
      max_train, max_eval: use only the first so many train / dev and test examples (None: all).
      log: receives the console lines.

    Returns:
      The results document (also written to OUT/results.json, .md, .png).
    """
    try:
        hparams.validate()
    except ValueError as error:
        raise RunError(f"hyperparameters: {error}") from error
    check_plan(tasks, teachers, students)
    if not seeds:
        raise RunError("--seeds must be at least 1")
    if seq_length is not None and seq_length < 3:
        raise RunError(f"--seq_length {seq_length} < 3 (room for [CLS], one piece, [SEP])")
    data: dict[str, TaskData] = {}
    for spec in tasks:
        length = spec.seq_length or seq_length or DEFAULT_SEQ_LENGTH[spec.type]
        data[spec.key] = task = load_task_data(spec, length, max_train, max_eval)
        notes = []
        for split, info in task.files.items():
            extra = [f"{info[k]} {k.replace('_', ' ')}" for k in
                     ("multiword_tokens_skipped", "empty_nodes_skipped", "iob2_repaired")
                     if info.get(k)]
            notes.append(f"{split} {info['used']}/{info['examples']}"
                         + (f" ({', '.join(extra)})" if extra else ""))
        log(f"[{spec.key}] {spec.type}, S={length}, {len(task.labels)} labels; examples used: "
            f"{'; '.join(notes)}")

    # Which runs remain; check every model they need before any training (fail early).
    pending: dict[tuple[str, ModelSpec], list[int]] = {}
    records: list[dict] = []
    for spec in tasks:
        for model in models_of(spec, teachers, students):
            for seed in seeds:
                path = run_path(output_dir, spec, model, seed)
                record = finished_run(path, run_settings(data[spec.key], model, hparams, seed))
                if record is None:
                    pending.setdefault((spec.key, model), []).append(seed)
                else:
                    records.append(record)
                    log(f"[{spec.key}] {model.label} seed {seed}: finished earlier, kept "
                        f"({results_lib.run_score(record) * 100:.2f})")
    needed = dict.fromkeys(model for _, model in pending)
    for model in needed:
        languages = sorted({key.split("/")[1] for key, m in pending if m == model})
        for language in languages:
            encoder = load_encoder(model, language)
            for key, m in pending:
                if m == model and key.split("/")[1] == language and \
                        data[key].seq_length > encoder.max_seq_length:
                    raise RunError(f"[{key}] S={data[key].seq_length} exceeds the "
                                   f"{encoder.max_seq_length} positions of {model.label} "
                                   f"({model.path}); lower --seq_length")
            if model.kind == encoders_lib.TEACHER:
                break  # a teacher's tokenizer does not depend on the language
        del encoder
        gc.collect()

    # The runs, model by model (each encoder loaded once per language).
    for model in needed:
        keys = [key for key, m in pending if m == model]
        for language in dict.fromkeys(key.split("/")[1] for key in keys):
            encoder = load_encoder(model, language)
            log(f"{model.label}: {encoder.description}, {model.path}")
            for key in (k for k in keys if k.split("/")[1] == language):
                task = data[key]
                feats = {split: featurize(task, examples, encoder.tokenizer)
                         for split, examples in (("train", task.train), ("dev", task.dev),
                                                 ("test", task.test)) if examples is not None}
                for split, split_features in feats.items():
                    log(f"[{key}] {model.label} {split}: "
                        f"{features_lib.summary(split_features.stats)}")
                for seed in pending[(key, model)]:
                    prefix = f"[{key}] {model.label} seed {seed}"
                    result = training.fine_tune(
                        lambda: encoder.fresh_encoder(hparams.dropout), task.spec.type,
                        len(task.labels), feats["train"], feats["dev"],
                        scorer(task, task.dev), hparams, seed, test=feats.get("test"),
                        score_test=scorer(task, task.test) if task.test is not None else None,
                        log=lambda line, p=prefix: log(f"{p} {line}"))
                    record = dict(task=task.spec.name, language=task.spec.language,
                                  type=task.spec.type, model=model.name, kind=model.kind,
                                  seed=seed, description=encoder.description, result=result,
                                  features={s: f.stats for s, f in feats.items()},
                                  settings=run_settings(task, model, hparams, seed))
                    write_record(run_path(output_dir, task.spec, model, seed), record)
                    records.append(record)
                    test_note = (f", test {100 * result['test']['score']:.2f}"
                                 if result["test"] else "")
                    log(f"{prefix}: best dev {result['dev']['metric']} "
                        f"{100 * result['dev']['score']:.2f} at epoch {result['best_epoch']}"
                        f"{test_note} ({result['seconds']:.0f} s)")
                    tf_keras.backend.clear_session()
                    gc.collect()
            del encoder
            gc.collect()

    task_rows = []
    for spec in tasks:
        task = data[spec.key]
        task_rows.append(dict(
            name=spec.name, type=spec.type, language=spec.language,
            metric=metrics_lib.METRIC[spec.type], split="test" if spec.test else "dev",
            seq_length=task.seq_length, labels=task.labels, files=task.files))
    results = results_lib.aggregate(
        task_rows, records,
        dict(dataclasses.asdict(hparams), seeds=list(seeds), max_train_examples=max_train,
             max_eval_examples=max_eval),
        [s.name for s in students])
    paths = results_lib.write(results, output_dir)
    results["paths"] = paths
    return results


FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "OUT: results.json/.md/.png and runs/ (resumable).")
flags.DEFINE_multi_string("task", [], "name=...,type=pos|ner|classification,language=...,"
                          "train=FILE,dev=FILE[,test=FILE][,format=conllu|tsv][,seq_length=S]; "
                          "repeatable.")
flags.DEFINE_multi_string("teacher", [], "LANG=PATH or LANG:NAME=PATH of a teacher folder; "
                          "repeatable.")
flags.DEFINE_multi_string("student", [], "NAME=EXPORT_FOLDER of a student export "
                          "(model_dir/export); repeatable.")
flags.DEFINE_integer("seeds", 3, "Number of seeds (1..N); mean and std are reported.")
flags.DEFINE_integer("epochs", 10, "Training epochs (paper Table 7: 10).")
flags.DEFINE_integer("batch_size", 32, "Training batch size (Table 7: 32).")
flags.DEFINE_float("learning_rate", 3e-5, "Peak learning rate (Table 7: 3e-5).")
flags.DEFINE_float("warmup_ratio", 0.1, "Fraction of the steps with linear warm-up (Table 7).")
flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay (BERT: 0.01).")
flags.DEFINE_float("dropout", 0.1, "Dropout of every encoder and head (BERT: 0.1).")
flags.DEFINE_integer("eval_batch_size", 64, "Batch size of dev/test prediction.")
flags.DEFINE_integer("seq_length", None, "S for every task (default: 256 for pos/ner, 128 for "
                     "classification, Table 7); a task's seq_length= wins.")
flags.DEFINE_integer("max_train_examples", None, "Use only the first N training sentences / "
                     "examples of each task (2-core runs).")
flags.DEFINE_integer("max_eval_examples", None, "Use only the first N dev (and test) "
                     "sentences / examples of each task.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    start = time.monotonic()
    try:
        tasks = [parse_task(v) for v in FLAGS.task]
        teachers = [parse_teacher(v) for v in FLAGS.teacher]
        students = [parse_student(v) for v in FLAGS.student]
        hparams = training.Hyperparameters(
            batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate, epochs=FLAGS.epochs,
            warmup_ratio=FLAGS.warmup_ratio, weight_decay=FLAGS.weight_decay,
            dropout=FLAGS.dropout, eval_batch_size=FLAGS.eval_batch_size)
        results = run(tasks, teachers, students, FLAGS.output_dir, hparams,
                      list(range(1, FLAGS.seeds + 1)) if FLAGS.seeds > 0 else [],
                      FLAGS.seq_length, FLAGS.max_train_examples, FLAGS.max_eval_examples,
                      log=lambda line: print(line, flush=True))
    except (RunError, data_lib.DataError, encoders_lib.EncoderError, LoaderError,
            TokenizerError) as error:
        sys.exit(f"error: {error}")
    print()
    print(results_lib.to_markdown(results))
    for kind, path in results["paths"].items():
        print(f"{kind}: {path}")
    print(f"wall time: {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
