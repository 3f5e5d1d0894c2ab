r"""The paper's Table 2 at small scale: Student_dissimilar on en, tr, zh (+ gold-only de).

  python experiments/reproduce_dissimilar.py [--workspace workspace/reproduce_dissimilar]
      [--corpora path/to/shared/corpora] [--downstream path/to/shared/downstream]

Languages en, tr, zh (three families, as the paper's Student_dissimilar), one monolingual teacher
each with its own WordPiece vocabulary and casing (en uncased like bert-base-uncased, tr cased
like BERTurk, zh lower-cased like Google's chinese_L-12_H-768_A-12); and one language with no
teacher (de, paper §4.4) in the students' transfer data with gold labels only.

The teachers are the ones the project ships (--teachers shipped, the default: data/teachers/<lang>,
pretrained once on the full train splits by experiments/train_shipped_teachers.py, whose
training_record.json holds their held-out curves), so the run's budget goes to the students and
to fine-tuning. --teachers train pretrains them in the workspace instead (other languages or
other training text). Each stage is the project's own command line; a finished stage is skipped,
so an interrupted run resumes (--stages picks stages):

  teachers        shipped: checks each data/teachers/<lang>; train: python -m
                  student.pretrain_teacher, one per language, keeping a checkpoint every
                  --teacher_steps / --teacher_curve_points steps
  teacher_curves  shipped: each teacher's held-out curve from its training_record.json; train:
                  python -m teacher_scoring.examples.create_examples (the held-out text in each
                  teacher's own vocabulary), python -m student.learning_curve: each teacher's
                  held-out loss / accuracy at every kept checkpoint, the frequent-token and
                  unigram baselines, and whether the loss has flattened (< 2% over the last 20%)
  vocab           python -m vocab.build_union (the student vocabulary: the union)
  scoring         python -m beam_jobs.score_corpora on the students' transfer data (every
                  --transfer_every-th train line; the paper's Table 3 disparity is 10%, the
                  default is all of it, see --transfer_every; the gold-only language tokenized
                  by --gold_only_tokenizer's teacher, never scored) and on the held-out text
                  (`all` copies)
  students        student/train.py: `kd` (lambda annealed 1 -> 0), `gold` (lambda = 0: gold
                  labels only, the same data and steps; the paper's SM3 vs SM2) and `wide_kd`
                  (`kd` at --wide_factor times the teachers' width: spare capacity, as the
                  paper's BERT-base students have); --student_processes at a time (a 2 x 128
                  model keeps about one core busy: two at once do 1.2x the examples/s of one
                  after the other on 2 cores)
  evaluate        student/evaluate.py: held-out masked-token accuracy / loss of teachers and
                  students on the same masked positions, RDT, at the end and at 20% of the steps
                  (Table 5); the gold-only language's accuracy per student (§4.4);
                  python -m student.learning_curve for every student
  finetune        python -m finetuning.run: POS en (UD EWT), tr (UD IMST), zh (PKU) and NER tr,
                  zh; each language's teacher and every student with the same hyperparameters,
                  several seeds, RDT per task as in Table 2; --finetune_processes runs at once.
                  The teachers' and scratch runs need no student: they start beside the
                  students stage at low priority (--finetune_beside_students), on the core
                  time the students leave, and this stage does what is left

The text and label files are flags, so other splits can be evaluated with the same command:
--train_text / --dev_text LANG=FILE replace a language's corpora/{train,dev}/LANG.txt, and
--task (finetuning.run's syntax, repeatable) replaces the default tasks.

Results (Markdown, JSON, PNG) go to WORKSPACE/results, with stage_seconds.json (wall time of
each stage's last run) and report.md (experiments/dissimilar_report.py: every table, the paper's
numbers beside); docs/experiments/dissimilar.md is written from them.
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from run_demo import banner, run, write_scoring_config  # noqa: E402  pylint: disable=wrong-import-position
from experiments.reproduce_similar import read_lines, write_lines  # noqa: E402  pylint: disable=wrong-import-position
from experiments import dissimilar_report  # noqa: E402  pylint: disable=wrong-import-position
from experiments.train_shipped_teachers import RECORD_FILE as TRAINING_RECORD  # noqa: E402  pylint: disable=wrong-import-position
from student import learning_curve  # noqa: E402  pylint: disable=wrong-import-position

# Teacher casing per language (the public teachers': bert-base-uncased, BERTurk cased, Google's
# Chinese BERT lower-cases); any other language defaults to cased.
LOWER_CASE = {"en": True, "tr": False, "zh": True}
SEED = 12345
STAGES = ("teachers", "teacher_curves", "vocab", "scoring", "students", "evaluate", "finetune")
SHIPPED_TEACHERS = os.path.join(REPO, "data", "teachers")

# Default downstream tasks (files under --downstream): table column, type, language, train, dev.
# The column is the task's name in the results table (Table 2's layout: a column per task, a row
# per language); PKU's 44 tags are not UD's 17, so zh POS gets its own column.
DEFAULT_TASKS = (
    ("udpos", "pos", "en", "pos/en_ewt-ud-train.conllu", "pos/en_ewt-ud-dev.conllu"),
    ("udpos", "pos", "tr", "pos/tr_imst-ud-train.conllu", "pos/tr_imst-ud-dev.conllu"),
    ("pku_pos", "pos", "zh", "pos/zh_pku-train.tsv", "pos/zh_pku-dev.tsv"),
    ("ner", "ner", "tr", "ner/tr_news-train.tsv", "ner/tr_news-dev.tsv"),
    ("ner", "ner", "zh", "ner/zh_pku-train.tsv", "ner/zh_pku-dev.tsv"),
)

FLAT_WINDOW, FLAT_THRESHOLD = 0.2, 0.02


def curve_from_training_record(record_path: str, output_path: str) -> dict:
    """Writes a shipped teacher's held-out curve as a student.learning_curve curve.json (the
    flatness over the last 20% of its steps, as for a teacher trained in the workspace)."""
    with open(record_path, encoding="utf-8") as f:
        record = json.load(f)
    flatness = learning_curve.relative_improvement(record["curve"], FLAT_WINDOW)
    improvement = flatness["relative_improvement"]
    curve = {
        "source": record_path, "model_dir": None, "curve": record["curve"],
        "baseline": record["baseline"], "total_tokens": record["held_out_tokens"],
        "flatness": {**flatness, "window": FLAT_WINDOW, "threshold": FLAT_THRESHOLD,
                     "flat": improvement is not None and improvement < FLAT_THRESHOLD},
    }
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    with open(output_path, "w", encoding="utf-8") as f:
        json.dump(curve, f, indent=2)
    return curve


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, path = value.partition("=")
        if not sep or not key or not path:
            sys.exit(f"{flag} {value!r}: expected LANG=FILE")
        pairs[key] = os.path.abspath(path)
    return pairs


def _languages(value: str) -> list[str]:
    return [lang.strip() for lang in value.split(",") if lang.strip()]


def read_config(path: str) -> dict:
    """A training config YAML (relative paths are from the repository root, as the CLIs)."""
    with open(path if os.path.isabs(path) else os.path.join(REPO, path), encoding="utf-8") as f:
        return yaml.safe_load(f)


def wide_overrides(student_config: str, factor: int) -> str:
    """Overrides that make the student config's encoder `factor` times as wide (hidden, heads,
    FFN), its depth unchanged."""
    encoder = read_config(student_config)["model"]["encoder"]["bert_v2"]
    prefix = "model.encoder.bert_v2."
    return ",".join(f"{prefix}{key}={int(encoder[key]) * factor}"
                    for key in ("hidden_size", "num_attention_heads", "intermediate_size"))


class StageClock:
    """Wall seconds of each stage's last run, kept in results/stage_seconds.json across resumes."""

    def __init__(self, path: str):
        self.path = path
        self.seconds = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.seconds = json.load(f)
        self._ran: set[str] = set()

    def run(self, stage: str, command: list[str], log_path: str,
            extra_env: dict[str, str] | None = None) -> None:
        """Runs one of the stage's commands (run_demo.run)."""
        self._ran.add(stage)
        run(command, log_path, extra_env)

    def run_all(self, stage: str, jobs: list[tuple[list[str], str]], processes: int) -> None:
        """Runs the stage's (command, log_path) jobs, `processes` at a time, each with
        cores / processes TensorFlow threads when more than one runs; stops when one fails."""
        if processes <= 1 or len(jobs) <= 1:
            for command, log_path in jobs:
                self.run(stage, command, log_path)
            return
        threads = str(max(1, (os.cpu_count() or 1) // processes))
        env = {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads}
        failures = []

        def one(job):
            try:
                self.run(stage, job[0], job[1], env)
            except SystemExit as error:  # run_demo.run's failure, raised in this thread
                failures.append(str(error))

        with concurrent.futures.ThreadPoolExecutor(processes) as pool:
            list(pool.map(one, jobs))
        if failures:
            sys.exit("; ".join(failures))

    def finish(self, stage: str, seconds: float) -> None:
        """Records the stage's wall time if it ran anything (a resumed, finished stage keeps
        the time of the run that did its work)."""
        if stage not in self._ran:
            return
        self.seconds[stage] = round(seconds, 1)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(self.seconds, f, indent=2)


class BackgroundRun:
    """A command run beside a stage at low priority (nice 10): the teachers' and scratch
    fine-tuning beside the students, on the core time the students leave (the last student
    alone keeps one core busy). finetuning.run keeps each finished run, so `stop` loses at most
    the run in progress; the finetune stage then does the rest."""

    def __init__(self, command: list[str], log_path: str):
        self.log_path = log_path
        print("$ (beside the stage, nice 10) "
              + " ".join(shlex.quote(part) for part in command), flush=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(log_path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
        self.process = subprocess.Popen(  # pylint: disable=consider-using-with
            command, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.nice(10))
        atexit.register(self.stop)  # never left running when a later stage fails

    def stop(self) -> None:
        """Ends the command if it still runs; says how many runs it finished."""
        if self._log.closed:
            return
        code = self.process.poll()
        if code is None:
            self.process.terminate()
            try:
                code = self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
            how = "stopped"
        else:
            how = f"had ended (exit {code})"
        self._log.close()
        with open(self.log_path, encoding="utf-8") as f:
            finished = sum(": best dev " in line for line in f)
        print(f"  fine-tuning beside the students {how}: {finished} runs finished there "
              f"({self.log_path})", flush=True)


INPUTS_FILE = "inputs.sha256.json"


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _check_stamp(folder: str, stamp: dict[str, str]) -> None:
    """Stops when finished shards were scored from other text than this run's."""
    path = os.path.join(folder, INPUTS_FILE)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        recorded = json.load(f)
    changed = sorted(lang for lang in set(recorded) | set(stamp)
                     if recorded.get(lang) != stamp.get(lang))
    if changed:
        sys.exit(f"{folder} was scored from other text for {changed} ({path}): give another "
                 "--heldout_name for another held-out set, or another --workspace")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=os.path.join(REPO, "workspace",
                                                            "reproduce_dissimilar"))
    parser.add_argument("--corpora", default=os.path.join(REPO, "..", "shared", "corpora"),
                        help="folder with train/LANG.txt and dev/LANG.txt")
    parser.add_argument("--downstream", default=os.path.join(REPO, "..", "shared", "downstream"),
                        help="folder of the default tasks' files")
    parser.add_argument("--languages", default="en,tr,zh", help="languages with a teacher")
    parser.add_argument("--gold_only", default="de",
                        help="comma-separated languages without a teacher, trained on gold "
                             "labels only (paper §4.4); empty for none")
    parser.add_argument("--gold_only_tokenizer", default="en",
                        help="the language whose teacher tokenizes the gold-only text")
    parser.add_argument("--train_text", action="append", default=[],
                        help="LANG=FILE: a language's training text (default CORPORA/train/"
                             "LANG.txt); the students read every --transfer_every-th line")
    parser.add_argument("--dev_text", action="append", default=[],
                        help="LANG=FILE: a language's held-out text (default CORPORA/dev/LANG.txt)")
    parser.add_argument("--heldout_name", default="dev",
                        help="name of the held-out text set: its scored shards go to "
                             "WORKSPACE/scored/NAME and its results to WORKSPACE/results (dev) "
                             "or WORKSPACE/results_NAME, so another split (e.g. --heldout_name "
                             "test --dev_text LANG=test.txt --task ...,test=FILE) is evaluated "
                             "beside dev with the same teachers and students")
    parser.add_argument("--task", action="append", default=[],
                        help="a downstream task in finetuning.run's --task syntax (repeatable; "
                             "replaces the default tasks)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--teachers", choices=("shipped", "train"), default="shipped",
                        help="shipped: the teachers in --teachers_dir (LANG/ folders); train: "
                             "pretrain them in the workspace from --train_text / the corpora")
    parser.add_argument("--teachers_dir", default=SHIPPED_TEACHERS,
                        help="with --teachers shipped: one teacher folder a language, with its "
                             "training_record.json (experiments/train_shipped_teachers.py)")
    parser.add_argument("--teacher_config", default="configs/teacher/demo.yaml",
                        help="with --teachers train: the teachers' training config")
    parser.add_argument("--student_config", default="configs/student/demo.yaml")
    parser.add_argument("--teacher_steps", type=int, default=10000,
                        help="with --teachers train")
    parser.add_argument("--teacher_curve_points", type=int, default=10,
                        help="checkpoints kept along each teacher's run for its held-out curve")
    parser.add_argument("--student_steps", type=int, default=6000,
                        help="every student's steps (batch 32); 6,000 fits the 150-min budget "
                             "on 2 cores (docs/experiments/dissimilar.md)")
    parser.add_argument("--student_processes", type=int, default=2,
                        help="students trained at once, each with cores / N TensorFlow "
                             "threads (a 2 x 128 student keeps about one core busy)")
    parser.add_argument("--wide_factor", type=int, default=2,
                        help="width of the `wide_kd` student relative to the teachers (0: none)")
    parser.add_argument("--teacher_vocab_size", type=int, default=8000)
    parser.add_argument("--transfer_every", type=int, default=1,
                        help="the students' transfer data: every N-th train line (1: all of "
                             "it; 10: the paper's 10%%, too little at this scale for a 2 x 128 "
                             "student to carry its teacher, docs/experiments/dissimilar.md)")
    parser.add_argument("--dev_lines", type=int, default=800)
    parser.add_argument("--finetune_seeds", type=int, default=3)
    parser.add_argument("--finetune_max_epochs", type=int, default=15,
                        help="finetuning.run --max_epochs (runs stop when dev stops improving)")
    parser.add_argument("--finetune_patience", type=int, default=3)
    parser.add_argument("--finetune_learning_rates", default="1e-3",
                        help="finetuning.run --learning_rates: the grid each model's rate is "
                             "chosen from on dev (auto: fitted to the encoder's width)")
    parser.add_argument("--finetune_seq_length", type=int, default=64)
    parser.add_argument("--finetune_max_train", type=int, default=500,
                        help="training sentences per task (the same for every model)")
    parser.add_argument("--finetune_max_eval", type=int, default=300)
    parser.add_argument("--finetune_processes", type=int, default=2,
                        help="finetuning.run --processes: runs at once, sharing the cores")
    parser.add_argument("--finetune_beside_students", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="start the teachers' and scratch fine-tuning (which needs no "
                             "student) beside the students stage, at low priority; the "
                             "finetune stage stops it and does the rest")
    args = parser.parse_args(argv)
    args.stage_list = _languages(args.stages)
    unknown = sorted(set(args.stage_list) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown {unknown}; choose from {list(STAGES)}")
    args.language_list = _languages(args.languages)
    args.gold_only_list = _languages(args.gold_only)
    both = sorted(set(args.language_list) & set(args.gold_only_list))
    if both:
        parser.error(f"--gold_only {both} also in --languages: a language has a teacher or not")
    if args.gold_only_list and args.gold_only_tokenizer not in args.language_list:
        parser.error(f"--gold_only_tokenizer {args.gold_only_tokenizer!r} is not one of "
                     f"--languages {args.language_list}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    stages = args.stage_list
    languages, gold_only = args.language_list, args.gold_only_list
    ws = os.path.abspath(args.workspace)
    python = sys.executable
    logs = os.path.join(ws, "logs")
    if not args.heldout_name.replace("_", "").isalnum():
        sys.exit(f"--heldout_name {args.heldout_name!r}: letters, digits and _ only")
    heldout = args.heldout_name
    results = os.path.join(ws, "results" if heldout == "dev" else f"results_{heldout}")
    os.makedirs(logs, exist_ok=True)
    clock = StageClock(os.path.join(results, "stage_seconds.json"))
    # S and P: the teachers' held-out examples follow the teacher config, the scored shards the
    # student config (the student trainer checks that its shards match it).
    teacher_data = read_config(args.teacher_config)["data"]
    student_data = read_config(args.student_config)["data"]
    start = time.monotonic()

    banner("corpora: train splits (the students' transfer data: every --transfer_every-th "
           "line), held-out text")
    train_text = _pairs(args.train_text, "--train_text")
    dev_text = _pairs(args.dev_text, "--dev_text")
    train, transfer, dev = {}, {}, {}
    for lang in languages + gold_only:
        train[lang] = train_text.get(lang) or os.path.abspath(
            os.path.join(args.corpora, "train", f"{lang}.txt"))
        source_dev = dev_text.get(lang) or os.path.join(args.corpora, "dev", f"{lang}.txt")
        for path, flag in ((train[lang], "--train_text"), (source_dev, "--dev_text")):
            if not os.path.exists(path):
                sys.exit(f"{path} is missing: give {flag} {lang}=FILE or --corpora")
        lines = read_lines(train[lang])
        transfer[lang] = write_lines(os.path.join(ws, "corpora", lang, "transfer.txt"),
                                     lines[::args.transfer_every])
        dev_lines = read_lines(source_dev)[:args.dev_lines]
        dev[lang] = write_lines(os.path.join(ws, "corpora", lang, f"{heldout}.txt"), dev_lines)
        role = "gold-only" if lang in gold_only else "teacher"
        print(f"  {lang} ({role}): train {len(lines)} lines, transfer "
              f"{len(lines[::args.transfer_every])}, held-out {len(dev_lines)}")

    shipped = args.teachers == "shipped"
    if shipped:
        teachers = {lang: os.path.abspath(os.path.join(args.teachers_dir, lang))
                    for lang in languages}
    else:
        teachers = {lang: os.path.join(ws, "teachers", f"teacher_{lang}") for lang in languages}
    teacher_work = {lang: os.path.join(ws, "teacher_work", lang) for lang in languages}
    teacher_every = max(1, args.teacher_steps // args.teacher_curve_points)
    if "teachers" in stages and shipped:
        banner(f"teachers: the shipped ones ({args.teachers_dir})")
        for lang in languages:
            for name in ("teacher.json", "vocab.txt", TRAINING_RECORD):
                if not os.path.exists(os.path.join(teachers[lang], name)):
                    sys.exit(f"{teachers[lang]}: no {name}; --teachers_dir needs a teacher "
                             f"folder a language (experiments/train_shipped_teachers.py), or "
                             f"use --teachers train")
            print(f"  teacher_{lang}: {teachers[lang]}")
    elif "teachers" in stages:
        banner("teachers: one per language on its full train split, its own vocab and casing")
        began = time.monotonic()
        for lang in languages:
            if os.path.exists(os.path.join(teachers[lang], "teacher.json")):
                print(f"  teacher_{lang}: already there")
                continue
            command = [
                python, "-m", "student.pretrain_teacher", f"--name=teacher_{lang}",
                f"--language={lang}", f"--input={train[lang]}",
                f"--vocab_size={args.teacher_vocab_size}",
                "--lower_case" if LOWER_CASE.get(lang, False) else "--nolower_case",
                f"--config_file={args.teacher_config}",
                f"--params_override=train.steps={args.teacher_steps},"
                f"train.checkpoint_interval={teacher_every},"
                f"train.max_checkpoints_to_keep={args.teacher_curve_points + 1}",
                f"--work_dir={teacher_work[lang]}", f"--output_dir={teachers[lang]}",
                f"--seed={SEED}", "--overwrite"]
            clock.run("teachers", command, os.path.join(logs, f"teacher_{lang}.log"))
        clock.finish("teachers", time.monotonic() - began)
    members = {f"teacher_{lang}": (teachers[lang], [lang]) for lang in languages}

    if "teacher_curves" in stages and shipped:
        banner("teacher curves: from the shipped teachers' training records")
        for lang in languages:
            out = os.path.join(results, "teacher_curves", lang)
            curve_from_training_record(
                os.path.join(teachers[lang], TRAINING_RECORD),
                os.path.join(out, "curve.json"))
            print(f"  teacher_{lang}: {os.path.join(out, 'curve.json')}")
    elif "teacher_curves" in stages:
        banner("teacher curves: held-out loss at every kept checkpoint, baselines, flatness")
        began = time.monotonic()
        for lang in languages:
            out = os.path.join(results, "teacher_curves", lang)
            if os.path.exists(os.path.join(out, "curve.json")):
                print(f"  teacher_{lang}: already there")
                continue
            # The held-out text in the teacher's own ids, masked like its training examples.
            heldout_shards = os.path.join(ws, "heldout_teacher_vocab", heldout, lang)
            command = [
                python, "-m", "teacher_scoring.examples.create_examples",
                f"--input={dev[lang]}", f"--language={lang}",
                f"--vocab={os.path.join(teacher_work[lang], 'vocab.txt')}",
                "--lower_case" if LOWER_CASE.get(lang, False) else "--nolower_case",
                f"--teacher_name=teacher_{lang}", f"--seq_length={teacher_data['seq_length']}",
                f"--max_predictions_per_seq={teacher_data['max_predictions_per_seq']}",
                f"--seed={SEED + 2}", f"--output_dir={heldout_shards}", "--overwrite"]
            clock.run("teacher_curves", command, os.path.join(logs, f"heldout_{lang}.log"))
            command = [python, "-m", "student.learning_curve",
                       f"--model_dir={os.path.join(teacher_work[lang], 'model')}",
                       f"--shards={lang}={heldout_shards}", f"--output_dir={out}",
                       f"--title=teacher_{lang}"]
            clock.run("teacher_curves", command, os.path.join(logs, f"teacher_curve_{lang}.log"))
        clock.finish("teacher_curves", time.monotonic() - began)

    vocab_dir = os.path.join(ws, "vocab")
    if "vocab" in stages:
        banner("vocab: the union of the teacher vocabularies")
        began = time.monotonic()
        if os.path.exists(os.path.join(vocab_dir, "vocab.txt")):
            print("  already there")
        else:
            command = ([python, "-m", "vocab.build_union"]
                       + [f"--teacher={name}={os.path.join(path, 'vocab.txt')}"
                          for name, (path, _) in members.items()]
                       + [f"--output={vocab_dir}", "--overwrite"])
            clock.run("vocab", command, os.path.join(logs, "vocab.log"))
        clock.finish("vocab", time.monotonic() - began)

    scored = {"train": os.path.join(ws, "scored", "train"),
              "dev": os.path.join(ws, "scored", heldout)}
    tokenizer_teachers = {lang: f"teacher_{args.gold_only_tokenizer}" for lang in gold_only}
    if "scoring" in stages:
        banner("scoring: Beam job over the transfer subsets (train) and the held-out text")
        began = time.monotonic()
        for split, corpora, mode, seed in (("train", transfer, "best", SEED),
                                           ("dev", dev, "all", SEED + 1)):
            stamp = dict(sorted((lang, _sha256(path)) for lang, path in corpora.items()))
            if all(os.path.exists(os.path.join(scored[split], lang, "manifest.json"))
                   for lang in corpora):
                _check_stamp(scored[split], stamp)
                print(f"  {split}: already there")
                continue
            name = "train" if split == "train" else heldout
            config_path = write_lines(os.path.join(ws, "configs", f"scoring_{name}.yaml"), [])
            write_scoring_config(config_path, vocab_dir, scored[split], corpora, members, mode,
                                 student_data["seq_length"],
                                 student_data["max_predictions_per_seq"], seed,
                                 tokenizer_teachers=tokenizer_teachers,
                                 logits_dtype=student_data["logits_dtype"])
            command = [python, "-m", "beam_jobs.score_corpora", f"--config={config_path}",
                       "--overwrite", "--direct_num_workers=2"]
            clock.run("scoring", command, os.path.join(logs, f"scoring_{name}.log"))
            with open(os.path.join(scored[split], INPUTS_FILE), "w", encoding="utf-8") as f:
                json.dump(stamp, f, indent=2)
        clock.finish("scoring", time.monotonic() - began)

    # The fine-tuning command (finetune stage: with the students; beside the students stage:
    # the teachers and their scratch copies, which need no student).
    downstream = os.path.abspath(args.downstream)
    tasks = args.task or [
        f"name={name},type={kind},language={lang},"
        f"train={os.path.join(downstream, train_file)},"
        f"dev={os.path.join(downstream, dev_file)}"
        for name, kind, lang, train_file, dev_file in DEFAULT_TASKS if lang in languages]
    finetune_command = ([python, "-m", "finetuning.run",
                         f"--output_dir={os.path.join(results, 'downstream')}",
                         f"--seeds={args.finetune_seeds}",
                         f"--max_epochs={args.finetune_max_epochs}",
                         f"--patience={args.finetune_patience}",
                         f"--learning_rates={args.finetune_learning_rates}",
                         f"--seq_length={args.finetune_seq_length}",
                         f"--max_train_examples={args.finetune_max_train}",
                         f"--max_eval_examples={args.finetune_max_eval}"]
                        + [f"--task={task}" for task in tasks]
                        + [f"--teacher={lang}={teachers[lang]}" for lang in languages])
    beside = None

    checkpoint_every = max(1, args.student_steps // 5)
    kd = "loss.lambda_schedule=linear"
    students = [("kd", kd),
                ("gold", "loss.lambda_schedule=constant,loss.lambda_start=0.0,"
                         "loss.lambda_end=0.0")]
    if args.wide_factor > 1:
        students.append(("wide_kd", kd + "," + wide_overrides(args.student_config,
                                                              args.wide_factor)))
    student_dirs = {name: os.path.join(ws, "students", name) for name, _ in students}
    if "students" in stages:
        banner("students: the same data and steps; kd (lambda 1 -> 0), gold (lambda 0), "
               "wide_kd (kd, wider)")
        began = time.monotonic()
        jobs = []
        for name, loss in students:
            if os.path.exists(os.path.join(student_dirs[name], "export", "vocab.txt")):
                print(f"  {name}: already there")
                continue
            command = ([python, "student/train.py", f"--config_file={args.student_config}",
                        f"--student_vocab={vocab_dir}"]
                       + [f"--shards={lang}={os.path.join(scored['train'], lang)}"
                          for lang in languages + gold_only]
                       + [f"--model_dir={student_dirs[name]}",
                          f"--params_override=train.steps={args.student_steps},"
                          f"train.checkpoint_interval={checkpoint_every},"
                          f"train.max_checkpoints_to_keep=10,{loss}"])
            if gold_only:
                command.append("--params_override=data.gold_only_languages="
                               f"[{','.join(gold_only)}]")
            jobs.append((command, os.path.join(logs, f"student_{name}.log")))
        # The wide student first: it costs about twice a same-size one, so with two at a time
        # both slots finish together (wide_kd | kd then gold).
        jobs.sort(key=lambda job: "student_wide_kd.log" not in job[1])
        if jobs and "finetune" in stages and args.finetune_beside_students:
            beside = BackgroundRun(
                finetune_command + ["--processes=1", "--threads=1"],
                os.path.join(logs, f"finetune_{heldout}_beside_students.log"))
        clock.run_all("students", jobs, args.student_processes)
        clock.finish("students", time.monotonic() - began)

    if "evaluate" in stages:
        banner("evaluation: held-out masked-token accuracy and RDT (end and 20% of the steps)")
        began = time.monotonic()
        heldout_flags = [f"--shards={lang}={os.path.join(scored['dev'], lang)}"
                         for lang in languages + gold_only]
        command = ([python, "student/evaluate.py", f"--output_dir={os.path.join(results, 'mlm')}"]
                   + [f"--student={name}={student_dirs[name]}/export" for name, _ in students]
                   + [f"--student={name}_at_20pct={student_dirs[name]}@{checkpoint_every}"
                      for name, _ in students] + heldout_flags)
        clock.run("evaluate", command, os.path.join(logs, f"evaluate_{heldout}.log"))
        for name, _ in students:
            command = [python, "-m", "student.learning_curve",
                       f"--model_dir={student_dirs[name]}",
                       f"--output_dir={os.path.join(results, 'student_curves', name)}",
                       f"--title=student {name}"] + heldout_flags
            clock.run("evaluate", command,
                      os.path.join(logs, f"student_curve_{name}_{heldout}.log"))
        clock.finish("evaluate", time.monotonic() - began)

    if "finetune" in stages:
        banner("fine-tuning: teacher vs students, the same hyperparameters, several seeds")
        began = time.monotonic()
        if beside is not None:
            beside.stop()
        command = (finetune_command + [f"--processes={args.finetune_processes}"]
                   + [f"--student={name}={student_dirs[name]}/export" for name, _ in students])
        clock.run("finetune", command, os.path.join(logs, f"finetune_{heldout}.log"))
        clock.finish("finetune", time.monotonic() - began)

    seconds = time.monotonic() - start
    banner(f"done in {seconds / 60:.1f} min (stages: {','.join(stages)})")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, f"run-{int(time.time())}.json"), "w", encoding="utf-8") as f:
        json.dump(dict(seconds=seconds, stages=stages, stage_seconds=clock.seconds,
                       args={k: v for k, v in vars(args).items()}), f, indent=2)
    # The page of results: every table side by side, the paper's numbers beside.
    print(open(dissimilar_report.write_report(results), encoding="utf-8").read())

if __name__ == "__main__":
    main()
