r"""Fine-tune teachers and students on downstream tasks with one protocol, beside the trivial
baselines; the paper's Table 2.

  python -m finetuning.run --output_dir OUT \
      --task name=pos,type=pos,language=en,train=en_ewt-ud-train.conllu,dev=en_ewt-ud-dev.conllu \
      --task name=pos,type=pos,language=tr,train=tr_boun-ud-train.conllu,dev=tr_boun-ud-dev.conllu \
      --task name=ner,type=ner,language=tr,train=tr_news-train.tsv,dev=tr_news-dev.tsv \
      --teacher en=teachers/en --teacher tr=teachers/tr \
      --student kd=students/kd/export --student gold=students/gold/export \
      --seeds 3 [--max_train_examples 2000 --max_eval_examples 500]

For every task it fine-tunes each teacher of the task's language (with the teacher's own
tokenizer), `scratch` — a randomly initialised copy of that teacher (same shape, same
tokenizer: the no-pretraining control; --noscratch skips it) — and every student (its export,
with the student tokenizer of that language), and scores `lookup` (the word's most frequent
training label; the majority class for classification; finetuning/baselines.py) on the same
splits. Every model follows the same protocol (finetuning/protocol.py, `--protocol converge`):

  * the peak learning rate is chosen per model from a grid on dev (`--learning_rates`, default
    `auto`: fitted to the encoder's width), one run per rate with the first seed; the other
    seeds run at the chosen rate, which the results give;
  * each run trains until dev has not improved for `--patience` epochs (at most
    `--max_epochs`), counted once dev has risen above its first epoch's score
    (`--patience_after_rise`), and keeps its best dev epoch; a run stopped by the cap while dev
    was still improving, or had never risen, is marked not converged;
  * AdamW, batch 32, 10% warm-up then linear decay, dropout 0.1 (finetuning/training.py).

`--protocol paper_table7` is the paper's Table 7 for BERT-base encoders instead (3e-5, batch 32,
10 epochs, best epoch on dev, no grid). Each run records the training-set score of its best
model (eval mode) and its dev word accuracy on words seen and unseen in training, beside
`lookup`'s. A model below `lookup`, or not above `scratch` by more than the seed spread, is
marked in the table, and the command says so at the end. It writes

  OUT/results.json, OUT/results.md, OUT/results.png   the paper's Table 2 layout: per task and
        language lookup, scratch, the teacher and each student (mean ± std over seeds), RDT
        per task, the marks, a detail table (learning rate and grid, epochs, convergence,
        train score, seen/unseen dev words)
  OUT/runs/<task>/<language>/<kind>-<name>/lr-<rate>/seed-<k>.json   one finished run each

Resumable: a finished run found in OUT is kept and skipped (if it was made with the same
settings: data files, hyperparameters, model path; otherwise the command stops and says which
setting differs). A run recorded before `--patience_after_rise` existed is kept when the rule
asked for would have trained it identically (it rose above its first epoch, or it ran to
--max_epochs) and rerun otherwise. `--flagfile FILE` reads the flags from a file (one a line).

`--processes N` runs N worker processes that share OUT: each takes the costliest (task, model)
left, claiming it in OUT/claims, with cores / N TensorFlow threads (`--threads`); the command
aggregates once they are done. A 2 x 128 encoder keeps about one core busy, so on 2 cores
`--processes 2` does two runs at once. A worker that fails stops the command with its last lines;
rerunning it resumes (claims are cleared, finished runs kept).

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
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

from absl import app, flags, logging  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from finetuning import baselines  # noqa: E402
from finetuning import protocol as protocol_lib  # noqa: E402
from finetuning import results as results_lib  # noqa: E402
from finetuning import data as data_lib  # noqa: E402
from finetuning import encoders as encoders_lib  # noqa: E402
from finetuning import features as features_lib  # noqa: E402
from finetuning import metrics as metrics_lib  # noqa: E402
from finetuning import training  # noqa: E402
from finetuning import word_tagger  # noqa: E402
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
    """Predicted label ids -> metrics against the gold labels of `examples` (tagging: with the
    word accuracy on words seen and unseen in the training data, `seen_unseen`)."""
    gold = task.gold(examples)

    def score(predicted_ids: list) -> dict:
        if task.tagging:
            predicted = [[task.labels[i] for i in sentence] for sentence in predicted_ids]
        else:
            predicted = [task.labels[i] for i in predicted_ids]
        return score_labels(task, examples, gold, predicted)

    return score


def score_labels(task: TaskData, examples: list, gold: list, predicted: list) -> dict:
    """The task's metrics of predicted labels (strings), with the seen/unseen split."""
    metrics = metrics_lib.score(task.spec.type, gold, predicted)
    if task.tagging:
        metrics["seen_unseen"] = baselines.seen_unseen_accuracy(task.train, examples, predicted)
    return metrics


def lookup_record(task: TaskData) -> dict:
    """`lookup` on the task's evaluation split (and its dev and train scores), as a record."""
    def scores(examples: list) -> dict:
        predicted = baselines.lookup_predictions(task.spec.type, task.train, examples,
                                                 task.labels)
        return score_labels(task, examples, task.gold(examples), predicted)

    dev = scores(task.dev)
    result = dict(seed=0, learning_rate=None, best_epoch=None, epochs_trained=0,
                  stopped=None, converged=True, dev=dev, train=scores(task.train),
                  test=scores(task.test) if task.test is not None else None, epochs=[],
                  steps=0, seconds=0.0)
    return dict(task=task.spec.name, language=task.spec.language, type=task.spec.type,
                model=baselines.LOOKUP, kind=baselines.LOOKUP, seed=0,
                description="the word's most frequent training label (pos/ner), the majority "
                            "class (classification)", result=result, features=None,
                settings=None)


# ----------------------------------------------------------------------------------------------
# Finished runs.


def variant_dir(output_dir: str, task: TaskSpec, model: ModelSpec) -> str:
    return os.path.join(output_dir, RUNS_DIR, task.name, task.language,
                        f"{model.kind}-{model.name}")


def run_path(output_dir: str, task: TaskSpec, model: ModelSpec, learning_rate: float,
             seed: int) -> str:
    return os.path.join(variant_dir(output_dir, task, model),
                        protocol_lib.rate_name(learning_rate), f"seed-{seed}.json")


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


def _read_json(path: str):
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            return json.loads(f.read())
        except json.JSONDecodeError as error:
            raise RunError(f"{path}: not valid JSON ({error}); delete it to rerun") from error


def _settings_then(record: dict, settings: dict):
    """A record's settings, completed with the hyperparameters added since it was made.

    `patience_after_rise` (added later; before it, patience counted from the first epoch): a
    run that rose above its first epoch's score (best epoch > 1) or ran to max_epochs trained
    exactly as it would have under either rule, so it takes the value asked for now; any other
    (stopped by patience at its first epoch's score) was made with the old rule.
    """
    then = record.get("settings")
    hyperparameters = then.get("hyperparameters") if isinstance(then, dict) else None
    if not isinstance(hyperparameters, dict) or "patience_after_rise" in hyperparameters:
        return then
    result = record.get("result") or {}
    either_rule = result.get("stopped") == "max_epochs" or (result.get("best_epoch") or 0) > 1
    asked = settings.get("hyperparameters", {}).get("patience_after_rise")
    return dict(then, hyperparameters=dict(
        hyperparameters, patience_after_rise=asked if either_rule else False))


def _with_patience_after_rise(settings: dict, value: bool) -> dict:
    return dict(settings, hyperparameters=dict(settings.get("hyperparameters", {}),
                                               patience_after_rise=value))


def finished_run(path: str, settings: dict) -> dict | None:
    """The record at `path` if it exists and was made with `settings`; None if absent.

    None too for a run recorded before `patience_after_rise` existed that the rule asked for
    now would have trained differently (stopped by patience at its first epoch's score): it
    was made under a known defect, so it is rerun (and its file replaced).

    Raises:
      RunError: it exists with other settings (naming the settings that differ).
    """
    if not tf.io.gfile.exists(path):
        return None
    record = _read_json(path)
    then = _settings_then(record, settings)
    differences = _differences(then, settings)
    if differences and not _differences(then, _with_patience_after_rise(settings, False)):
        return None  # made before patience_after_rise, stopped at its start: rerun it
    if differences:
        raise RunError(f"{path}: this finished run was made with other settings "
                       f"({'; '.join(differences[:5])}); use another --output_dir or delete "
                       "the file to rerun it")
    return record


def write_json(path: str, record: dict) -> None:
    """Writes a JSON file atomically (a partial file never looks finished)."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    temporary = f"{path}.tmp{os.getpid()}"  # one per process: workers may share OUT
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    tf.io.gfile.rename(temporary, path, overwrite=True)


write_record = write_json


# ----------------------------------------------------------------------------------------------
# The command.


def load_encoder(model: ModelSpec, language: str) -> encoders_lib.PretrainedEncoder:
    if model.kind in (encoders_lib.TEACHER, baselines.SCRATCH):
        return encoders_lib.load_teacher_encoder(model.name, model.path)
    return encoders_lib.load_student_encoder(model.name, model.path, language)


def variants_of(task: TaskSpec, teachers: Sequence[ModelSpec], students: Sequence[ModelSpec],
                scratch: bool) -> list[ModelSpec]:
    """The models a task fine-tunes: each teacher of its language and, with `scratch`, its
    randomly initialised copy (kind `scratch`, the teacher's name), then every student."""
    out = []
    for model in models_of(task, teachers, students):
        out.append(model)
        if scratch and model.kind == encoders_lib.TEACHER:
            out.append(dataclasses.replace(model, kind=baselines.SCRATCH))
    return out


class _Variant:
    """One (task, model) of a run: its grid, its finished runs, what remains."""

    def __init__(self, task: TaskData, model: ModelSpec, protocol: protocol_lib.Protocol,
                 seeds: Sequence[int], output_dir: str):
        self.task, self.model, self.protocol, self.seeds = task, model, protocol, list(seeds)
        self.output_dir = output_dir
        self.grid_path = os.path.join(variant_dir(output_dir, task.spec, model), "grid.json")
        self.grid: tuple[float, ...] | None = protocol.learning_rates
        self.cost = 0  # a worker's estimate of the work left (run())
        if self.grid is None and tf.io.gfile.exists(self.grid_path):
            self.grid = tuple(_read_json(self.grid_path)["learning_rates"])

    @property
    def label(self) -> str:
        return f"[{self.task.spec.key}] {self.model.label}"

    def resolve_grid(self, hidden_size: int) -> None:
        if self.grid is None:
            self.grid = self.protocol.grid(hidden_size)
            write_json(self.grid_path, dict(learning_rates=list(self.grid),
                                            hidden_size=hidden_size, how="default_grid"))

    def hparams(self, rate: float) -> training.Hyperparameters:
        return dataclasses.replace(self.protocol.hparams, learning_rate=rate)

    def path(self, rate: float, seed: int) -> str:
        return run_path(self.output_dir, self.task.spec, self.model, rate, seed)

    def finished(self, rate: float, seed: int) -> dict | None:
        return finished_run(self.path(rate, seed),
                            run_settings(self.task, self.model, self.hparams(rate), seed))

    def chosen_rate(self) -> float | None:
        """The grid's dev-best rate, once every rate has run with the first seed."""
        if self.grid is None:
            return None
        scores = {}
        for rate in self.grid:
            record = self.finished(rate, self.seeds[0])
            if record is None:
                return None
            scores[rate] = record["result"]["dev"]["score"]
        return protocol_lib.choose(scores)

    def pending(self) -> bool:
        rate = self.chosen_rate()
        return rate is None or any(self.finished(rate, s) is None for s in self.seeds)

    def remaining_runs(self) -> int:
        """How many runs are left (the grid's unfinished first-seed runs and the other seeds)."""
        rate = self.chosen_rate()
        if rate is None:
            return (sum(self.finished(r, self.seeds[0]) is None for r in self.grid or (0,))
                    + len(self.seeds) - 1)
        return sum(self.finished(rate, s) is None for s in self.seeds)

    def claim(self, claims_dir: str) -> bool:
        """Takes this variant for the calling process: creates its claim file atomically. False
        when another process of the same --processes run took it first."""
        model = self.model
        path = os.path.join(claims_dir, self.task.spec.name, self.task.spec.language,
                            f"{model.kind}-{model.name}.claim")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return True

    def records(self) -> list[dict]:
        """The finished runs of the chosen rate (every seed), with the grid's dev scores."""
        rate = self.chosen_rate()
        grid = {f"{r:g}": self.finished(r, self.seeds[0])["result"]["dev"]["score"]
                for r in self.grid}
        out = []
        for seed in self.seeds:
            record = dict(self.finished(rate, seed))
            record["grid"] = grid
            out.append(record)
        return out


def run(tasks: Sequence[TaskSpec], teachers: Sequence[ModelSpec],
        students: Sequence[ModelSpec], output_dir: str, hparams: training.Hyperparameters,
        seeds: Sequence[int], seq_length: int | None = None, max_train: int | None = None,
        max_eval: int | None = None, log: Callable[[str], None] = print,
        learning_rates: Sequence[float] | None = None, scratch: bool = True,
        protocol_name: str = protocol_lib.CONVERGE, claims_dir: str | None = None) -> dict | None:
    """Fine-tunes every (task, model, learning rate, seed) not finished yet; writes and returns
    the results.

    With `claims_dir` it is one worker of several processes sharing OUT (`--processes`): it runs
    only the (task, model) variants it claims there, the costliest first, and neither aggregates
    nor writes the results (returns None); a final call without `claims_dir` does that.

    Args:
      tasks, teachers, students: what to run (see the module docstring).
      output_dir: OUT.
      hparams: the shared hyperparameters (the learning rate comes from the grid).
      seeds: the seeds; the first one runs the grid.
      seq_length: S for every task (None: per task type, 256 tagging / 128 classification;
        a task's own seq_length wins).
      max_train, max_eval: use only the first so many train / dev and test examples (None: all).
      log: receives the console lines.
      learning_rates: the grid (None: finetuning.protocol.default_grid per encoder).
      scratch: also fine-tune a randomly initialised copy of each teacher (`scratch`).
      protocol_name: `converge`, or `paper_table7` (which sets its own hyperparameters).
      claims_dir: run as a worker that claims its variants in this folder (see above).

    Returns:
      The results document (also written to OUT/results.json, .md, .png); None for a worker.
    """
    try:
        hparams.validate()
    except ValueError as error:
        raise RunError(f"hyperparameters: {error}") from error
    if protocol_name == protocol_lib.PAPER_TABLE7:
        if learning_rates:
            raise RunError("--protocol paper_table7 fixes the learning rate (3e-5): give no "
                           "--learning_rates")
        protocol = protocol_lib.paper_table7(hparams)
    elif protocol_name == protocol_lib.CONVERGE:
        protocol = protocol_lib.Protocol(protocol_lib.CONVERGE, hparams,
                                         tuple(sorted(learning_rates)) if learning_rates
                                         else None)
    else:
        raise RunError(f"--protocol {protocol_name!r}; known: {list(protocol_lib.PROTOCOLS)}")
    check_plan(tasks, teachers, students)
    if not seeds:
        raise RunError("--seeds must be at least 1")
    if seq_length is not None and seq_length < 3:
        raise RunError(f"--seq_length {seq_length} < 3 (room for [CLS], one piece, [SEP])")
    log(protocol_lib.describe(protocol))
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

    variants = [_Variant(data[spec.key], model, protocol, seeds, output_dir)
                for spec in tasks for model in variants_of(spec, teachers, students, scratch)]
    pending = [v for v in variants if v.pending()]
    for variant in variants:
        if variant not in pending:
            for record in variant.records():
                log(f"{variant.label} seed {record['seed']}: finished earlier, kept "
                    f"({results_lib.run_score(record) * 100:.2f}, lr "
                    f"{record['result']['learning_rate']:g})")

    # Check every model that has work left before any training (fail early); resolve grids.
    def encoder_key(variant):  # one load serves a teacher and its scratch copy
        model = variant.model
        language = None if model.kind != encoders_lib.STUDENT else variant.task.spec.language
        return (model.kind == encoders_lib.STUDENT, model.name, model.path, language)

    groups: dict[tuple, list[_Variant]] = {}
    for variant in pending:
        groups.setdefault(encoder_key(variant), []).append(variant)
    for members in groups.values():
        first = members[0]
        encoder = load_encoder(first.model, first.task.spec.language)
        for variant in members:
            if variant.task.seq_length > encoder.max_seq_length:
                raise RunError(f"[{variant.task.spec.key}] S={variant.task.seq_length} exceeds "
                               f"the {encoder.max_seq_length} positions of "
                               f"{variant.model.label} ({variant.model.path}); lower "
                               "--seq_length")
            variant.resolve_grid(encoder.hidden_size)
        for variant in members:  # a worker orders its work by cost: training examples x runs
            variant.cost = max(len(variant.task.train), 1) * variant.remaining_runs()
        del encoder
        gc.collect()

    # The runs: each encoder loaded once per group, featurized once per task, one traced model
    # per (encoder, task) for every learning rate, seed and the scratch copy. A worker takes the
    # costliest variants first (training examples x runs left), claiming each.
    order = [v for members in groups.values() for key in dict.fromkeys(
        v.task.spec.key for v in members) for v in members if v.task.spec.key == key]
    if claims_dir is not None:
        order.sort(key=lambda v: -v.cost)
    loaded_key = tuner_key = encoder = tuner = feats = None
    for variant in order:
        if claims_dir is not None and not variant.claim(claims_dir):
            continue
        key = encoder_key(variant)
        if key != loaded_key:
            tuner = feats = tuner_key = None
            tf_keras.backend.clear_session()
            gc.collect()
            encoder = load_encoder(variant.model, variant.task.spec.language)
            loaded_key = key
            log(f"{variant.model.label}: {encoder.description}, {variant.model.path}")
        task = variant.task
        if tuner_key != task.spec.key:
            tuner = None
            tf_keras.backend.clear_session()
            gc.collect()
            feats = {split: featurize(task, examples, encoder.tokenizer)
                     for split, examples in (("train", task.train), ("dev", task.dev),
                                             ("test", task.test)) if examples is not None}
            for split, split_features in feats.items():
                log(f"[{task.spec.key}] {variant.model.label} {split}: "
                    f"{features_lib.summary(split_features.stats)}")
            tuner = training.FineTuner(
                lambda e=encoder: e.fresh_encoder(protocol.hparams.dropout), task.spec.type,
                len(task.labels), protocol.hparams)
            tuner_key = task.spec.key
        _run_variant(variant, tuner, feats, encoder.description, log)
    del encoder, tuner, feats
    tf_keras.backend.clear_session()
    gc.collect()
    if claims_dir is not None:
        return None

    task_rows, records = [], []
    for spec in tasks:
        task = data[spec.key]
        task_rows.append(dict(
            name=spec.name, type=spec.type, language=spec.language,
            metric=metrics_lib.METRIC[spec.type], split="test" if spec.test else "dev",
            seq_length=task.seq_length, labels=task.labels, files=task.files))
        records.append(lookup_record(task))
    for variant in variants:
        records += variant.records()
    results = results_lib.aggregate(
        task_rows, records,
        dict(dataclasses.asdict(protocol.hparams), protocol=protocol.name,
             learning_rates=list(protocol.learning_rates) if protocol.learning_rates
             else "auto", seeds=list(seeds), max_train_examples=max_train,
             max_eval_examples=max_eval, scratch=scratch),
        [s.name for s in students])
    paths = results_lib.write(results, output_dir)
    results["paths"] = paths
    return results


def _run_variant(variant: _Variant, tuner: training.FineTuner, feats: dict,
                 description: str, log: Callable[[str], None]) -> None:
    """The grid with the first seed, then the other seeds at the chosen rate."""
    task = variant.task

    def one(rate: float, seed: int) -> dict:
        record = variant.finished(rate, seed)
        if record is not None:
            return record
        prefix = f"{variant.label} seed {seed}"
        encoder_weights = (tuner.random_encoder_weights(seed)
                           if variant.model.kind == baselines.SCRATCH else None)
        result = training.fine_tune(
            tuner, feats["train"], feats["dev"], scorer(task, task.dev), variant.hparams(rate),
            seed, encoder_weights=encoder_weights, test=feats.get("test"),
            score_test=scorer(task, task.test) if task.test is not None else None,
            score_train=scorer(task, task.train),
            log=lambda line, p=prefix: log(f"{p} {line}"))
        record = dict(task=task.spec.name, language=task.spec.language, type=task.spec.type,
                      model=variant.model.name, kind=variant.model.kind, seed=seed,
                      description=("randomly initialised, " if variant.model.kind ==
                                   baselines.SCRATCH else "") + description,
                      result=result, features={s: f.stats for s, f in feats.items()},
                      settings=run_settings(task, variant.model, variant.hparams(rate), seed))
        write_json(variant.path(rate, seed), record)
        test_note = (f", test {100 * result['test']['score']:.2f}" if result["test"] else "")
        log(f"{prefix} lr {rate:g}: best dev {result['dev']['metric']} "
            f"{100 * result['dev']['score']:.2f} at epoch {result['best_epoch']}/"
            f"{result['epochs_trained']}{'' if result['converged'] else ' (not converged)'}"
            f"{test_note} ({result['seconds']:.0f} s)")
        return record

    for rate in variant.grid:
        one(rate, variant.seeds[0])
    chosen = variant.chosen_rate()
    log(f"{variant.label}: learning rate {chosen:g} chosen on dev ("
        + ", ".join(f"{r:g}: {100 * variant.finished(r, variant.seeds[0])['result']['dev']['score']:.2f}"
                    for r in variant.grid) + ")")
    for seed in variant.seeds[1:]:
        one(chosen, seed)


FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "OUT: results.json/.md/.png and runs/ (resumable).")
flags.DEFINE_multi_string("task", [], "name=...,type=pos|ner|classification,language=...,"
                          "train=FILE,dev=FILE[,test=FILE][,format=conllu|tsv][,seq_length=S]; "
                          "repeatable.")
flags.DEFINE_multi_string("teacher", [], "LANG=PATH or LANG:NAME=PATH of a teacher folder; "
                          "repeatable.")
flags.DEFINE_multi_string("student", [], "NAME=EXPORT_FOLDER of a student export "
                          "(model_dir/export); repeatable.")
flags.DEFINE_integer("seeds", 3, "Number of seeds (1..N); mean and std are reported. The first "
                     "seed runs the learning-rate grid.")
flags.DEFINE_enum("protocol", protocol_lib.CONVERGE, list(protocol_lib.PROTOCOLS),
                  "converge: learning rate chosen on dev from a grid, training until dev stops "
                  "improving (the flags below); paper_table7: the paper's Table 7 for BERT-base "
                  "encoders (3e-5, batch 32, 10 epochs, best epoch on dev).")
flags.DEFINE_string("learning_rates", "auto", "The learning-rate grid: `auto` (by encoder "
                    "width: hidden <= 256: 3e-4,1e-3,3e-3; <= 512: 1e-4,3e-4,1e-3; wider: "
                    "2e-5,3e-5,5e-5) or comma-separated rates (one rate: no grid).")
flags.DEFINE_integer("max_epochs", 40, "The most epochs a run trains.")
flags.DEFINE_integer("patience", 5, "Stop a run when dev has not improved for this many epochs.")
flags.DEFINE_bool("patience_after_rise", True, "Count --patience only once dev has risen above "
                  "its first epoch's score, so that a run still at its starting level (NER F1 "
                  "0 while it predicts O everywhere) is not stopped there.")
flags.DEFINE_integer("batch_size", 32, "Training batch size (Table 7: 32).")
flags.DEFINE_float("warmup_ratio", 0.1, "Fraction of a run's max_epochs steps with linear "
                   "warm-up (Table 7: 0.1).")
flags.DEFINE_enum("schedule", "linear", list(training.SCHEDULES), "After the warm-up: linear "
                  "decay to 0 at max_epochs (BERT), or constant.")
flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay (BERT: 0.01).")
flags.DEFINE_float("dropout", 0.1, "Dropout of every encoder and head (BERT: 0.1).")
flags.DEFINE_enum("word_pooling", "mean", list(word_tagger.WORD_POOLINGS), "POS/NER: a word "
                  "is represented by the mean of its pieces (default: +5.5 points on EWT dev "
                  "for a 2x128 teacher and its scratch copy, docs/student_usage.md) or its "
                  "first piece (BERT).")
flags.DEFINE_bool("jit_compile", False, "Compile the training and prediction steps with XLA.")
flags.DEFINE_bool("scratch", True, "Also fine-tune `scratch`, a randomly initialised copy of "
                  "each teacher (the no-pretraining control).")
flags.DEFINE_integer("eval_batch_size", 128, "Batch size of dev/test/train prediction.")
flags.DEFINE_integer("seq_length", None, "S for every task (default: 256 for pos/ner, 128 for "
                     "classification, Table 7); a task's seq_length= wins.")
flags.DEFINE_integer("max_train_examples", None, "Use only the first N training sentences / "
                     "examples of each task (2-core runs).")
flags.DEFINE_integer("max_eval_examples", None, "Use only the first N dev (and test) "
                     "sentences / examples of each task.")
flags.DEFINE_integer("processes", 1, "Fine-tune in this many worker processes sharing OUT, each "
                     "taking the costliest (task, model) left (claimed in OUT/claims); then "
                     "aggregate. On CPU a small encoder (2 x 128) keeps one core busy, so "
                     "--processes=<cores> with --threads=1 runs several at once.")
flags.DEFINE_integer("threads", 0, "TensorFlow intra-op threads per process (0: its default, "
                     "every core; with --processes > 1 it defaults to cores / processes).")
flags.DEFINE_integer("worker", None, "Internal: the index of a --processes worker.")

CLAIMS_DIR = "claims"


def run_workers(argv: Sequence[str], processes: int, output_dir: str, threads: int) -> None:
    """Starts `processes` copies of this command as workers sharing OUT (each with --worker=K,
    claiming variants in OUT/claims, which is cleared first: claims of an interrupted run are
    stale) and waits for them. Their lines go to the console, prefixed with `[worker K]`.

    Raises:
      RunError: a worker failed (its exit status and the last lines it printed).
    """
    claims = os.path.join(output_dir, CLAIMS_DIR)
    if tf.io.gfile.exists(claims):
        tf.io.gfile.rmtree(claims)
    tf.io.gfile.makedirs(claims)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    children = [subprocess.Popen(
        [sys.executable, "-m", "finetuning.run", *argv, "--processes=1", f"--worker={k}",
         f"--threads={threads}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env) for k in range(processes)]
    tails: list[list[str]] = [[] for _ in children]

    def relay(k: int) -> None:
        for line in children[k].stdout:
            print(f"[worker {k}] {line}", end="", flush=True)
            tails[k] = (tails[k] + [line.rstrip()])[-20:]

    readers = [threading.Thread(target=relay, args=(k,), daemon=True)
               for k in range(processes)]
    for reader in readers:
        reader.start()
    codes = [child.wait() for child in children]
    for reader in readers:
        reader.join()
    failed = [k for k, code in enumerate(codes) if code != 0]
    if failed:
        k = failed[0]
        raise RunError(f"worker {k} of --processes={processes} exited with status {codes[k]}; "
                       "its last lines:\n  " + "\n  ".join(tails[k]))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    if FLAGS.processes < 1:
        raise app.UsageError(f"--processes {FLAGS.processes}: at least 1")
    if FLAGS.threads < 0:
        raise app.UsageError(f"--threads {FLAGS.threads}: 0 (TensorFlow's default) or more")
    threads = FLAGS.threads or (max(1, (os.cpu_count() or 1) // FLAGS.processes)
                                if FLAGS.processes > 1 else 0)
    if threads and FLAGS.processes == 1:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    start = time.monotonic()
    try:
        if FLAGS.processes > 1:
            run_workers(sys.argv[1:], FLAGS.processes, FLAGS.output_dir, threads)
        tasks = [parse_task(v) for v in FLAGS.task]
        teachers = [parse_teacher(v) for v in FLAGS.teacher]
        students = [parse_student(v) for v in FLAGS.student]
        try:
            learning_rates = protocol_lib.parse_learning_rates(FLAGS.learning_rates)
        except ValueError as error:
            raise RunError(str(error)) from error
        hparams = training.Hyperparameters(
            batch_size=FLAGS.batch_size, max_epochs=FLAGS.max_epochs, patience=FLAGS.patience,
            patience_after_rise=FLAGS.patience_after_rise, warmup_ratio=FLAGS.warmup_ratio, schedule=FLAGS.schedule,
            weight_decay=FLAGS.weight_decay, dropout=FLAGS.dropout,
            eval_batch_size=FLAGS.eval_batch_size, word_pooling=FLAGS.word_pooling,
            jit_compile=FLAGS.jit_compile)
        results = run(tasks, teachers, students, FLAGS.output_dir, hparams,
                      list(range(1, FLAGS.seeds + 1)) if FLAGS.seeds > 0 else [],
                      FLAGS.seq_length, FLAGS.max_train_examples, FLAGS.max_eval_examples,
                      log=lambda line: print(line, flush=True), learning_rates=learning_rates,
                      scratch=FLAGS.scratch, protocol_name=FLAGS.protocol,
                      claims_dir=(None if FLAGS.worker is None else
                                  os.path.join(FLAGS.output_dir, CLAIMS_DIR)))
    except (RunError, data_lib.DataError, encoders_lib.EncoderError, LoaderError,
            TokenizerError) as error:
        sys.exit(f"error: {error}")
    if results is None:  # a worker: the parent aggregates
        print(f"worker {FLAGS.worker} done: {time.monotonic() - start:.0f} s")
        return
    print()
    print(results_lib.to_markdown(results))
    for kind, path in results["paths"].items():
        print(f"{kind}: {path}")
    for warning in results["warnings"]:
        print(f"warning: {warning}")
    print(f"wall time: {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
