r"""A small-scale analogue of the paper's Student_dissimilar on the languages with labelled data.

  python experiments/reproduce_dissimilar.py [--workspace workspace/reproduce_dissimilar]
      [--corpora path/to/shared/corpora] [--downstream path/to/shared/downstream]

Languages en, tr, zh (three families, as the paper's Student_dissimilar), one monolingual teacher
each with its own WordPiece vocabulary and casing (en uncased like bert-base-uncased, tr cased
like BERTurk, zh lower-cased like Google's chinese_L-12_H-768_A-12), trained on that language's
full train split. What it runs (each stage is the project's own command line; a finished stage is
skipped, so an interrupted run resumes; --stages picks stages):

  teachers   python -m student.pretrain_teacher, one per language
  vocab      python -m vocab.build_union (the student vocabulary: the union)
  scoring    python -m beam_jobs.score_corpora on the student's transfer data (every
             --transfer_every-th train line: 10%, the paper's Table 3 disparity) and on the dev
             split (held-out, `all` copies)
  students   student/train.py: `kd` (lambda annealed 1 -> 0) and `gold` (lambda = 0: gold labels
             only, same data and steps; the paper's SM3 vs SM2)
  evaluate   student/evaluate.py: held-out masked-token accuracy / loss of teachers and students
             on the same masked positions, RDT; also the students at 20% of their steps
  finetune   python -m finetuning.run: POS en (UD EWT), tr (UD IMST), zh (PKU) and NER tr, zh;
             each language's teacher and every student with the same hyperparameters, several
             seeds, RDT per task as in the paper's Table 2 (dev splits)

Results (Markdown, JSON, PNG) go to WORKSPACE/results; the docs page under docs/experiments/ is
written from them, with the command and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from run_demo import banner, run, write_scoring_config  # noqa: E402  pylint: disable=wrong-import-position
from experiments.reproduce_similar import read_lines, write_lines  # noqa: E402  pylint: disable=wrong-import-position

LANGUAGES = ("en", "tr", "zh")
LOWER_CASE = {"en": True, "tr": False, "zh": True}
SEQ_LENGTH, MAX_PREDICTIONS, SEED = 64, 10, 12345
STAGES = ("teachers", "vocab", "scoring", "students", "evaluate", "finetune")

# Downstream tasks (files under --downstream): key -> (table column, type, language, train, dev).
# The column is the task's name in the results table (the paper's Table 2 layout: a column per
# task, a row per language); PKU's 44 tags are not UD's 17, so zh POS gets its own column.
TASKS = {
    "udpos_en": ("udpos", "pos", "en", "pos/en_ewt-ud-train.conllu", "pos/en_ewt-ud-dev.conllu"),
    "udpos_tr": ("udpos", "pos", "tr", "pos/tr_imst-ud-train.conllu", "pos/tr_imst-ud-dev.conllu"),
    "pku_pos_zh": ("pku_pos", "pos", "zh", "pos/zh_pku-train.tsv", "pos/zh_pku-dev.tsv"),
    "ner_tr": ("ner", "ner", "tr", "ner/tr_news-train.tsv", "ner/tr_news-dev.tsv"),
    "ner_zh": ("ner", "ner", "zh", "ner/zh_pku-train.tsv", "ner/zh_pku-dev.tsv"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=os.path.join(REPO, "workspace",
                                                            "reproduce_dissimilar"))
    parser.add_argument("--corpora", default=os.path.join(REPO, "..", "shared", "corpora"))
    parser.add_argument("--downstream", default=os.path.join(REPO, "..", "shared", "downstream"))
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--teacher_config", default="configs/teacher/demo.yaml")
    parser.add_argument("--student_config", default="configs/student/demo.yaml")
    parser.add_argument("--teacher_steps", type=int, default=10000)
    parser.add_argument("--teacher_curve_points", type=int, default=10,
                        help="checkpoints kept along each teacher's run for its held-out curve")
    parser.add_argument("--student_steps", type=int, default=3000)
    parser.add_argument("--teacher_vocab_size", type=int, default=8000)
    parser.add_argument("--transfer_every", type=int, default=10,
                        help="the student's transfer data: every N-th train line (10%%)")
    parser.add_argument("--dev_lines", type=int, default=800)
    parser.add_argument("--finetune_seeds", type=int, default=3)
    parser.add_argument("--finetune_epochs", type=int, default=5)
    parser.add_argument("--finetune_learning_rate", type=float, default=1e-4,
                        help="the paper's 3e-5 is for BERT-base; small encoders need a larger one "
                             "(the same for every model)")
    parser.add_argument("--finetune_seq_length", type=int, default=64)
    parser.add_argument("--finetune_max_train", type=int, default=2000,
                        help="training sentences per task (the same for every model)")
    parser.add_argument("--finetune_max_eval", type=int, default=500)
    args = parser.parse_args()
    stages = [stage.strip() for stage in args.stages.split(",") if stage.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        sys.exit(f"--stages: unknown {unknown}; choose from {list(STAGES)}")
    ws = os.path.abspath(args.workspace)
    python = sys.executable
    logs = os.path.join(ws, "logs")
    os.makedirs(logs, exist_ok=True)
    start = time.monotonic()

    banner("corpora: full train splits (teachers), 10% transfer subsets (student), dev")
    train, transfer, dev = {}, {}, {}
    for lang in LANGUAGES:
        train[lang] = os.path.abspath(os.path.join(args.corpora, "train", f"{lang}.txt"))
        if not os.path.exists(train[lang]):
            sys.exit(f"{train[lang]} is missing: --corpora must point at shared/corpora")
        lines = read_lines(train[lang])
        transfer[lang] = write_lines(os.path.join(ws, "corpora", lang, "transfer.txt"),
                                lines[::args.transfer_every])
        dev_lines = read_lines(os.path.join(args.corpora, "dev", f"{lang}.txt"))[:args.dev_lines]
        dev[lang] = write_lines(os.path.join(ws, "corpora", lang, "dev.txt"), dev_lines)
        print(f"  {lang}: teacher {len(lines)} lines, transfer "
              f"{len(lines[::args.transfer_every])}, dev {len(dev_lines)}")

    teachers = {lang: os.path.join(ws, "teachers", f"teacher_{lang}") for lang in LANGUAGES}
    teacher_every = max(1, args.teacher_steps // args.teacher_curve_points)
    if "teachers" in stages:
        banner("teachers: one per language on its full train split, its own vocab and casing")
        for lang in LANGUAGES:
            if os.path.exists(os.path.join(teachers[lang], "teacher.json")):
                print(f"  teacher_{lang}: already there")
                continue
            run([python, "-m", "student.pretrain_teacher", f"--name=teacher_{lang}",
                 f"--language={lang}", f"--input={train[lang]}",
                 f"--vocab_size={args.teacher_vocab_size}",
                 "--lower_case" if LOWER_CASE[lang] else "--nolower_case",
                 f"--config_file={args.teacher_config}",
                 f"--params_override=train.steps={args.teacher_steps},"
                 f"train.checkpoint_interval={teacher_every},"
                 f"train.max_checkpoints_to_keep={args.teacher_curve_points + 1}",
                 f"--work_dir={os.path.join(ws, 'teacher_work', lang)}",
                 f"--output_dir={teachers[lang]}", f"--seed={SEED}", "--overwrite"],
                os.path.join(logs, f"teacher_{lang}.log"))
    members = {f"teacher_{lang}": (teachers[lang], [lang]) for lang in LANGUAGES}

    vocab_dir = os.path.join(ws, "vocab")
    if "vocab" in stages:
        banner("vocab: the union of the teacher vocabularies")
        if os.path.exists(os.path.join(vocab_dir, "vocab.txt")):
            print("  already there")
        else:
            run([python, "-m", "vocab.build_union"]
                + [f"--teacher={name}={os.path.join(path, 'vocab.txt')}"
                   for name, (path, _) in members.items()]
                + [f"--output={vocab_dir}", "--overwrite"], os.path.join(logs, "vocab.log"))

    scored = {split: os.path.join(ws, "scored", split) for split in ("train", "dev")}
    if "scoring" in stages:
        banner("scoring: Beam job over the transfer subsets (train) and the dev splits (dev)")
        for split, corpora, mode, seed in (("train", transfer, "best", SEED),
                                           ("dev", dev, "all", SEED + 1)):
            if all(os.path.exists(os.path.join(scored[split], lang, "manifest.json"))
                   for lang in LANGUAGES):
                print(f"  {split}: already there")
                continue
            config_path = write_lines(os.path.join(ws, "configs", f"scoring_{split}.yaml"), [])
            write_scoring_config(config_path, vocab_dir, scored[split], corpora, members, mode,
                                 SEQ_LENGTH, MAX_PREDICTIONS, seed)
            run([python, "-m", "beam_jobs.score_corpora", f"--config={config_path}",
                 "--overwrite", "--direct_num_workers=2"],
                os.path.join(logs, f"scoring_{split}.log"))

    checkpoint_every = max(1, args.student_steps // 5)
    students = (("kd", "loss.lambda_schedule=linear"),
                ("gold", "loss.lambda_schedule=constant,loss.lambda_start=0.0,"
                         "loss.lambda_end=0.0"))
    student_dirs = {name: os.path.join(ws, "students", name) for name, _ in students}
    if "students" in stages:
        banner("students: same model, data and steps; kd (lambda 1 -> 0) and gold (lambda 0)")
        for name, loss in students:
            if os.path.exists(os.path.join(student_dirs[name], "export", "vocab.txt")):
                print(f"  {name}: already there")
                continue
            run([python, "student/train.py", f"--config_file={args.student_config}",
                 f"--student_vocab={vocab_dir}"]
                + [f"--shards={lang}={os.path.join(scored['train'], lang)}"
                   for lang in LANGUAGES]
                + [f"--model_dir={student_dirs[name]}",
                   f"--params_override=train.steps={args.student_steps},"
                   f"train.checkpoint_interval={checkpoint_every},"
                   f"train.max_checkpoints_to_keep=10,{loss}"],
                os.path.join(logs, f"student_{name}.log"))

    results = os.path.join(ws, "results")
    if "evaluate" in stages:
        banner("evaluation: held-out masked-token accuracy and RDT (end and 20% of the steps)")
        flags = [f"--student={name}={student_dirs[name]}/export" for name, _ in students]
        flags += [f"--student={name}_at_20pct={student_dirs[name]}@{checkpoint_every}"
                  for name, _ in students]
        run([python, "student/evaluate.py", f"--output_dir={os.path.join(results, 'mlm')}"]
            + flags + [f"--shards={lang}={os.path.join(scored['dev'], lang)}"
                       for lang in LANGUAGES],
            os.path.join(logs, "evaluate.log"))

    if "finetune" in stages:
        banner("fine-tuning: POS en/tr/zh, NER tr/zh; teacher vs students, same hyperparameters")
        for name, _ in students:
            export_dir = os.path.join(student_dirs[name], "export")
            if not os.path.exists(os.path.join(export_dir, "tokenizer", "student_tokenizer.json")):
                # An export made before exports held their tokenizer: add it.
                run([python, "-m", "student.tokenizer", f"--export_dir={export_dir}",
                     f"--student_vocab={vocab_dir}"]
                    + [f"--shards={lang}={os.path.join(scored['train'], lang)}"
                       for lang in LANGUAGES], os.path.join(logs, f"tokenizer_{name}.log"))
        command = [python, "-m", "finetuning.run", f"--output_dir={os.path.join(results, 'downstream')}",
                   f"--seeds={args.finetune_seeds}", f"--epochs={args.finetune_epochs}",
                   f"--learning_rate={args.finetune_learning_rate}",
                   f"--seq_length={args.finetune_seq_length}",
                   f"--max_train_examples={args.finetune_max_train}",
                   f"--max_eval_examples={args.finetune_max_eval}"]
        for name, kind, lang, train_file, dev_file in TASKS.values():
            command.append(f"--task=name={name},type={kind},language={lang},"
                           f"train={os.path.join(args.downstream, train_file)},"
                           f"dev={os.path.join(args.downstream, dev_file)}")
        command += [f"--teacher={lang}={teachers[lang]}" for lang in LANGUAGES]
        command += [f"--student={name}={student_dirs[name]}/export" for name, _ in students]
        run(command, os.path.join(logs, "finetune.log"))

    seconds = time.monotonic() - start
    banner(f"done in {seconds / 60:.1f} min (stages: {','.join(stages)})")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, f"run-{int(time.time())}.json"), "w", encoding="utf-8") as f:
        json.dump(dict(seconds=seconds, stages=stages, args=vars(args)), f, indent=2)
    for part in ("mlm/evaluation.md", "downstream/results.md"):
        path = os.path.join(results, part)
        if os.path.exists(path):
            print(open(path, encoding="utf-8").read())


if __name__ == "__main__":
    main()
