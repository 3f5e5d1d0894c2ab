r"""A small-scale analogue of the paper's Student_similar (en, de, es, it), on ../shared/corpora.

  python experiments/reproduce_similar.py [--workspace workspace/reproduce_similar]

What it runs (each stage is the project's own command line; a finished stage is skipped, so an
interrupted run resumes):
  * one teacher per language, each pretrained on that language's FULL train split with its own
    WordPiece vocabulary (python -m student.pretrain_teacher), plus a bilingual en+de
    teacher (trained on both train splits, its own vocabulary) for the multi-teacher case;
  * the student's transfer data: a 10% subset of each language's train split (every 10th line),
    the paper's Table 3 data disparity; held-out data: the dev split (first --dev_lines lines);
  * the Beam scoring job on the transfer data (mono teachers; and en with two teachers, `all`
    and `best` copies) and on the dev data (`all` copies, for the evaluation);
  * students of the same size and steps: `kd` (lambda annealed 1 -> 0) and `gold` (lambda = 0,
    gold labels only) over the union of the four mono vocabularies; `all` and `best` (lambda
    annealed) over the union of the five vocabularies;
  * evaluation (python student/evaluate.py): per-language held-out masked-token accuracy and
    loss of every teacher and student on the same masked positions, RDT; kd and gold also at 20%
    of the steps (the paper's Table 5 comparison).

Results (Markdown tables, JSON, PNG) go to WORKSPACE/results; docs/experiments/similar.md is
written from them by hand, with the command and the numbers.
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

LANGUAGES = ("en", "de", "es", "it")
LOWER_CASE = {"en": True, "de": False, "es": True, "it": False, "ende": False}
SEQ_LENGTH, MAX_PREDICTIONS, SEED = 64, 10, 12345


def read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line for line in f.read().split("\n") if line.strip()]


def write_lines(path: str, lines: list[str]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=os.path.join(REPO, "workspace",
                                                            "reproduce_similar"))
    parser.add_argument("--corpora", default=os.path.join(REPO, "..", "shared", "corpora"))
    parser.add_argument("--teacher_steps", type=int, default=2500)
    parser.add_argument("--student_steps", type=int, default=2500)
    parser.add_argument("--teacher_vocab_size", type=int, default=8000)
    parser.add_argument("--bilingual_vocab_size", type=int, default=12000)
    parser.add_argument("--transfer_every", type=int, default=10,
                        help="the student's transfer data: every N-th train line (10%%)")
    parser.add_argument("--dev_lines", type=int, default=800)
    args = parser.parse_args()
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
        dev[lang] = write_lines(os.path.join(ws, "corpora", lang, "dev.txt"),
                           read_lines(os.path.join(args.corpora, "dev", f"{lang}.txt"))
                           [:args.dev_lines])
        print(f"  {lang}: teacher {len(lines)} lines, transfer "
              f"{len(lines[::args.transfer_every])}, dev {min(args.dev_lines, len(read_lines(dev[lang])))}")
    en, de = read_lines(train["en"]), read_lines(train["de"])
    ende = [line for pair in zip(en, de) for line in pair] + en[len(de):] + de[len(en):]
    train["ende"] = write_lines(os.path.join(ws, "corpora", "ende", "train.txt"), ende)

    banner("teachers: one per language on its full train split, plus a bilingual en+de one")
    teachers = {}
    for name in LANGUAGES + ("ende",):
        teachers[name] = os.path.join(ws, "teachers", f"teacher_{name}")
        if os.path.exists(os.path.join(teachers[name], "teacher.json")):
            print(f"  teacher_{name}: already there")
            continue
        size = args.bilingual_vocab_size if name == "ende" else args.teacher_vocab_size
        languages = "en,de" if name == "ende" else name
        run([python, "-m", "student.pretrain_teacher", f"--name=teacher_{name}",
             f"--language={languages.split(',')[0]}", f"--input={train[name]}",
             f"--vocab_size={size}",
             "--lower_case" if LOWER_CASE[name] else "--nolower_case",
             "--config_file=configs/teacher/demo.yaml",
             f"--params_override=train.steps={args.teacher_steps}",
             f"--work_dir={os.path.join(ws, 'teacher_work', name)}",
             f"--output_dir={teachers[name]}", f"--seed={SEED}", "--overwrite"],
            os.path.join(logs, f"teacher_{name}.log"))
    # The bilingual teacher is the second teacher of English (the paper's multi-teacher case).
    mono = {f"teacher_{lang}": (teachers[lang], [lang]) for lang in LANGUAGES}
    multi = dict(mono, teacher_ende=(teachers["ende"], ["en"]))

    banner("vocab: unions of the teacher vocabularies")
    vocabs = {"mono": os.path.join(ws, "vocab", "mono"), "multi": os.path.join(ws, "vocab",
                                                                                "multi")}
    for kind, members in (("mono", mono), ("multi", multi)):
        if os.path.exists(os.path.join(vocabs[kind], "vocab.txt")):
            print(f"  {kind}: already there")
            continue
        run([python, "-m", "vocab.build_union"]
            + [f"--teacher={name}={os.path.join(path, 'vocab.txt')}"
               for name, (path, _) in members.items()]
            + [f"--output={vocabs[kind]}", "--overwrite"], os.path.join(logs, f"vocab_{kind}.log"))

    banner("scoring: Beam job over the transfer subsets and the dev splits")
    scored = {}
    jobs = (("mono_train", "mono", mono, transfer, "best", SEED),
            ("mono_dev", "mono", mono, dev, "all", SEED + 1),
            ("multi_all_train", "multi", multi, transfer, "all", SEED),
            ("multi_best_train", "multi", multi, transfer, "best", SEED),
            ("multi_dev", "multi", multi, dev, "all", SEED + 1))
    for name, kind, members, corpora, mode, seed in jobs:
        scored[name] = os.path.join(ws, "scored", name)
        if all(os.path.exists(os.path.join(scored[name], lang, "manifest.json"))
               for lang in LANGUAGES):
            print(f"  {name}: already there")
            continue
        config_path = write_lines(os.path.join(ws, "configs", f"{name}.yaml"), [])
        write_scoring_config(config_path, vocabs[kind], scored[name], corpora, members, mode,
                             SEQ_LENGTH, MAX_PREDICTIONS, seed)
        run([python, "-m", "beam_jobs.score_corpora", f"--config={config_path}", "--overwrite",
             "--direct_num_workers=2"], os.path.join(logs, f"scoring_{name}.log"))

    banner("students: same model and steps; kd / gold-only, all / best copies")
    checkpoint_every = max(1, args.student_steps // 5)
    students = (("kd", "mono", "mono_train", "loss.lambda_schedule=linear"),
                ("gold", "mono", "mono_train", "loss.lambda_schedule=constant,"
                                               "loss.lambda_start=0.0,loss.lambda_end=0.0"),
                ("all", "multi", "multi_all_train", "loss.lambda_schedule=linear"),
                ("best", "multi", "multi_best_train", "loss.lambda_schedule=linear"))
    for name, kind, data, loss in students:
        model_dir = os.path.join(ws, "students", name)
        if os.path.exists(os.path.join(model_dir, "export", "vocab.txt")):
            print(f"  {name}: already there")
            continue
        run([python, "student/train.py", "--config_file=configs/student/demo.yaml",
             f"--student_vocab={vocabs[kind]}"]
            + [f"--shards={lang}={os.path.join(scored[data], lang)}" for lang in LANGUAGES]
            + [f"--model_dir={model_dir}",
               f"--params_override=train.steps={args.student_steps},"
               f"train.checkpoint_interval={checkpoint_every},train.max_checkpoints_to_keep=10,"
               f"{loss}"],
            os.path.join(logs, f"student_{name}.log"))

    banner("evaluation: held-out masked-token accuracy and RDT")
    results = os.path.join(ws, "results")
    early = checkpoint_every
    evaluations = (
        ("mono", "mono_dev", [f"kd={ws}/students/kd/export", f"gold={ws}/students/gold/export",
                              f"kd_at_20pct={ws}/students/kd@{early}",
                              f"gold_at_20pct={ws}/students/gold@{early}"]),
        ("multi", "multi_dev", [f"all={ws}/students/all/export",
                                f"best={ws}/students/best/export"]))
    for name, data, student_flags in evaluations:
        run([python, "student/evaluate.py", f"--output_dir={os.path.join(results, name)}"]
            + [f"--student={flag}" for flag in student_flags]
            + [f"--shards={lang}={os.path.join(scored[data], lang)}" for lang in LANGUAGES],
            os.path.join(logs, f"evaluate_{name}.log"))
    summary = {name: json.load(open(os.path.join(results, name, "evaluation.json")))
               for name, _, _ in evaluations}
    summary["seconds"] = time.monotonic() - start
    summary["args"] = vars(args)
    with open(os.path.join(results, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    banner(f"done in {summary['seconds'] / 60:.1f} min")
    for name, _, _ in evaluations:
        print(open(os.path.join(results, name, "evaluation.md"), encoding="utf-8").read())


if __name__ == "__main__":
    main()
