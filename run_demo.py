r"""The whole MergeDistill pipeline on the bundled demo corpora, on a CPU, in a few minutes.

  python run_demo.py [--workspace workspace/demo] [--languages en,tr,zh] [--restart]

Stages (each runs the project's own command line, printed before it runs):
  1. corpora    per language, the transfer text (data/corpora/demo/<lang>.txt) and the held-out
                text (data/corpora/udhr/<lang>.txt: the Universal Declaration of Human Rights, text
                no teacher was trained on);
  2. teachers   the teachers the project ships (data/teachers/<lang>: a small BERT masked LM a
                language, its own WordPiece vocabulary and casing, pretrained once by
                experiments/train_shipped_teachers.py); their held-out figures are printed;
  3. vocab      the student vocabulary: the union of the teachers' (python -m vocab.build_union);
  4. scoring    the teacher report on a sample (python -m beam_jobs.teacher_report), then
                the Beam job on DirectRunner: the transfer text tokenized, masked and scored by
                each teacher, top-8 logits in the student's ids (python -m beam_jobs.score_corpora);
                and again on the held-out text, for the evaluation;
  5. student    KD + MLM with lambda annealed 1 -> 0 (python student/train.py);
  6. evaluate   held-out masked-token accuracy of each teacher and of the student on the same
                masked positions, and RDT (python student/evaluate.py);
  7. fill-mask  the student, from its export alone (SavedModel + tokenizer), fills a [MASK] in a
                held-out sentence of every language (python -m student.fill_mask), and each
                teacher fills the same one (python -m teacher_scoring.teachers.loaders): what
                the student was taught there.

A stage whose output is complete is skipped, so an interrupted demo picks up where it stopped;
--restart deletes the workspace first. At the end it prints where every artifact went and the
evaluation table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import unicodedata

REPO = os.path.dirname(os.path.abspath(__file__))
DEMO_CORPORA = os.path.join(REPO, "data", "corpora", "demo")
HELD_OUT_CORPORA = os.path.join(REPO, "data", "corpora", "udhr")
SHIPPED_TEACHERS = os.path.join(REPO, "data", "teachers")


def shipped_languages(teachers_dir: str = SHIPPED_TEACHERS) -> list[str]:
    """The languages with a shipped teacher (a folder with teacher.json) and demo text."""
    if not os.path.isdir(teachers_dir):
        return []
    return sorted(lang for lang in os.listdir(teachers_dir)
                  if os.path.exists(os.path.join(teachers_dir, lang, "teacher.json"))
                  and os.path.exists(os.path.join(DEMO_CORPORA, f"{lang}.txt")))


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def run(command: list[str], log_path: str, extra_env: dict[str, str] | None = None) -> None:
    """Runs a stage's command, streaming its output to the console and to log_path (with
    `extra_env` added to its environment)."""
    print("$ " + " ".join([f"{k}={v}" for k, v in (extra_env or {}).items()]
                          + [shlex.quote(part) for part in command]), flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", **(extra_env or {}))
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    start = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in process.stdout:
            log.write(line)
            if _worth_showing(line):
                print("  " + line.rstrip()[:200], flush=True)
        code = process.wait()
    if code:
        sys.exit(f"stage failed (exit {code}); full output in {log_path}")
    print(f"  done in {time.monotonic() - start:.0f} s", flush=True)


def _worth_showing(line: str) -> bool:
    """Progress lines of our own code; not TensorFlow's start-up chatter."""
    noise = ("cuda", "cpu_feature_guard", "oneDNN", "rebuild TensorFlow", "AVX", "WARNING: All log",
             "absl::InitializeLog", "E0000", "W0000", "I0000", "UserWarning", "warnings.warn",
             "local_job_service.py", "Converted:", "fn_api_runner", "worker_handlers.py")
    return bool(line.strip()) and not any(token in line for token in noise)


def demo_corpus(language: str, corpora_dir: str) -> tuple[str, str]:
    """Copies a language's transfer text (demo) and held-out text (UDHR) into the workspace;
    returns the two paths."""
    folder = os.path.join(corpora_dir, language)
    os.makedirs(folder, exist_ok=True)
    paths = os.path.join(folder, "train.txt"), os.path.join(folder, "dev.txt")
    for path, source in zip(paths, (DEMO_CORPORA, HELD_OUT_CORPORA)):
        with open(os.path.join(source, f"{language}.txt"), encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return paths


def teacher_summary(teacher_dir: str) -> str:
    """One line on a shipped teacher, from its training_record.json."""
    path = os.path.join(teacher_dir, "training_record.json")
    if not os.path.exists(path):
        return "no training_record.json"
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    final = record["curve"][-1]
    return (f"{record['num_layers']} x {record['hidden_size']}, vocab {record['vocab_size']:,} "
            f"({'uncased' if record['lower_case'] else 'cased'}), {record['steps']:,} steps; "
            f"held-out masked-token accuracy {100 * final['accuracy']:.1f}% (most frequent "
            f"token: {100 * record['baseline']['frequent_token_accuracy']:.1f}%)")


# Languages written without spaces between words: a character is masked instead of a word.
UNSEGMENTED_LANGUAGES = ("zh",)


def _is_plain_word(word: str) -> bool:
    """Letters (and combining marks) only, no capital: a word worth masking."""
    return (len(word) >= 3 and word == word.lower() and unicodedata.category(word[0])[0] == "L"
            and all(unicodedata.category(c)[0] in "LM" for c in word))


def masked_sentence(language: str, dev_path: str, max_words: int = 20) -> tuple[str, str]:
    """A held-out sentence with one [MASK]: (text, the word or character it hides).

    The first held-out line of at least 6 words, cut to max_words, with its middle plain word
    (lower-case letters only) masked; for a language without spaces, the middle letter of the
    first line's first 40 characters.
    """
    lines = [line.strip() for line in open(dev_path, encoding="utf-8") if line.strip()]
    if language not in UNSEGMENTED_LANGUAGES:
        for line in lines:
            words = line.split()[:max_words]
            plain = [i for i, word in enumerate(words) if _is_plain_word(word)]
            if len(words) >= 6 and plain:
                i = plain[len(plain) // 2]
                hidden, words[i] = words[i], "[MASK]"
                return " ".join(words), hidden
    text = lines[0][:40]
    letters = [i for i, c in enumerate(text) if unicodedata.category(c)[0] == "L"]
    i = letters[len(letters) // 2]
    return text[:i] + "[MASK]" + text[i + 1:], text[i]


def write_scoring_config(path: str, vocab_dir: str, output_dir: str, corpora: dict[str, str],
                         teachers: dict[str, tuple[str, list[str]]], copies_mode: str,
                         seq_length: int, max_predictions: int, seed: int,
                         num_shards: int = 2,
                         tokenizer_teachers: dict[str, str] | None = None,
                         logits_dtype: str = "float16") -> None:
    """Writes a scoring-job YAML (configs/scoring/ format); teachers: name -> (path, languages).

    tokenizer_teachers: gold-only language -> the teacher whose tokenizer cuts its text (the
    language has no teacher; its examples carry no teacher outputs).
    """
    tokenizer_teachers = tokenizer_teachers or {}
    lines = [
        "# Written by run_demo.py.",
        f"student_vocab: {vocab_dir}",
        f"output_dir: {output_dir}",
        f"seq_length: {seq_length}",
        f"max_predictions_per_seq: {max_predictions}",
        "top_k: 8",
        "masked_lm_prob: 0.15",
        "whole_word_masking: false",
        f"seed: {seed}",
        f"logits_dtype: {logits_dtype}",
        "compression: GZIP",
        f"copies_mode: {copies_mode}",
        "inference_batch_size: 64",
        "languages:",
    ]
    lines += [f"  {lang}: {{corpus: [{corpus}], num_shards: {num_shards}"
              + (f", tokenizer_teacher: {tokenizer_teachers[lang]}}}"
                 if lang in tokenizer_teachers else "}")
              for lang, corpus in corpora.items()]
    lines.append("teachers:")
    lines += [f"  {name}: {{format: auto, path: {teacher_dir}, languages: [{', '.join(langs)}]}}"
              for name, (teacher_dir, langs) in teachers.items()]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=os.path.join(REPO, "workspace", "demo"))
    parser.add_argument("--languages", default="en,tr,zh",
                        help="comma-separated languages with a shipped teacher (data/teachers)")
    parser.add_argument("--teachers_dir", default=SHIPPED_TEACHERS,
                        help="folder of teachers, one sub-folder a language (LANG/teacher.json)")
    parser.add_argument("--student_steps", type=int, default=1200)
    parser.add_argument("--restart", action="store_true", help="delete the workspace first")
    args = parser.parse_args()
    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    available = shipped_languages(args.teachers_dir)
    unknown = sorted(set(languages) - set(available))
    if unknown or len(languages) < 2:
        sys.exit(f"--languages: need two or more of {available} (a teacher in "
                 f"{args.teachers_dir}/LANG and demo text); got {languages}")

    ws = os.path.abspath(args.workspace)
    if args.restart and os.path.exists(ws):
        shutil.rmtree(ws)
    paths = {name: os.path.join(ws, name) for name in (
        "corpora", "vocab", "scored", "students", "evaluation", "logs", "configs")}
    for folder in paths.values():
        os.makedirs(folder, exist_ok=True)
    python = sys.executable
    seq_length, max_predictions, seed = 64, 10, 12345
    start = time.monotonic()

    banner("1/7 corpora: the bundled demo text (transfer) and the UDHR (held-out)")
    train, dev = {}, {}
    for lang in languages:
        train[lang], dev[lang] = demo_corpus(lang, paths["corpora"])
        print(f"  {lang}: {train[lang]} / {dev[lang]}")

    banner("2/7 teachers: the shipped teachers, one small BERT masked LM a language")
    teachers = {lang: os.path.abspath(os.path.join(args.teachers_dir, lang)) for lang in languages}
    for lang in languages:
        print(f"  teacher_{lang}: {teachers[lang]}: {teacher_summary(teachers[lang])}")

    banner("3/7 vocab: the student vocabulary is the union of the teachers' vocabularies")
    if not os.path.exists(os.path.join(paths["vocab"], "vocab.txt")):
        run([python, "-m", "vocab.build_union"]
            + [f"--teacher=teacher_{lang}={os.path.join(teachers[lang], 'vocab.txt')}"
               for lang in languages]
            + [f"--output={paths['vocab']}", "--overwrite"],
            os.path.join(paths["logs"], "vocab.log"))
    else:
        print(f"  already there ({paths['vocab']})")

    banner("4/7 scoring: Beam job (DirectRunner), top-8 teacher logits in the student's ids")
    scored = {}
    for split, corpora, mode in (("train", train, "best"), ("dev", dev, "all")):
        scored[split] = os.path.join(paths["scored"], split)
        if all(os.path.exists(os.path.join(scored[split], lang, "manifest.json"))
               for lang in languages):
            print(f"  {split}: already there ({scored[split]})")
            continue
        config_path = os.path.join(paths["configs"], f"scoring_{split}.yaml")
        write_scoring_config(config_path, paths["vocab"], scored[split], corpora,
                             {f"teacher_{lang}": (teachers[lang], [lang]) for lang in languages},
                             mode, seq_length, max_predictions,
                             seed if split == "train" else seed + 1)
        if split == "train":  # first the teacher report: each teacher's fit and masked-LM quality
            run([python, "-m", "beam_jobs.teacher_report", f"--config={config_path}",
                 "--sample_paragraphs=3000", "--overwrite",
                 f"--output_dir={os.path.join(ws, 'teacher_report')}"],
                os.path.join(paths["logs"], "teacher_report.log"))
        run([python, "-m", "beam_jobs.score_corpora", f"--config={config_path}", "--overwrite",
             "--direct_num_workers=2"], os.path.join(paths["logs"], f"scoring_{split}.log"))

    banner("5/7 student: KD + MLM, lambda annealed 1 -> 0, languages sampled with alpha = 0.7")
    student_dir = os.path.join(paths["students"], "kd")
    if not os.path.exists(os.path.join(student_dir, "export", "vocab.txt")):
        run([python, "student/train.py", "--config_file=configs/student/demo.yaml",
             f"--student_vocab={paths['vocab']}"]
            + [f"--shards={lang}={os.path.join(scored['train'], lang)}" for lang in languages]
            + [f"--model_dir={student_dir}",
               f"--params_override=train.steps={args.student_steps}"],
            os.path.join(paths["logs"], "student.log"))
    else:
        print(f"  already there ({student_dir})")
        if not os.path.exists(os.path.join(student_dir, "export", "tokenizer",
                                           "student_tokenizer.json")):
            # An export made before exports held their tokenizer: add it.
            run([python, "-m", "student.tokenizer",
                 f"--export_dir={os.path.join(student_dir, 'export')}",
                 f"--student_vocab={paths['vocab']}"]
                + [f"--shards={lang}={os.path.join(scored['train'], lang)}" for lang in languages],
                os.path.join(paths["logs"], "tokenizer.log"))

    banner("6/7 evaluate: held-out masked-token accuracy, teachers vs student, RDT")
    run([python, "student/evaluate.py", f"--output_dir={paths['evaluation']}",
         f"--student=student={os.path.join(student_dir, 'export')}"]
        + [f"--shards={lang}={os.path.join(scored['dev'], lang)}" for lang in languages],
        os.path.join(paths["logs"], "evaluate.log"))

    banner("7/7 fill-mask: the student's export fills a [MASK] in held-out text of each "
           "language; its teacher fills the same one")
    export_dir = os.path.join(student_dir, "export")
    command = [python, "-m", "student.fill_mask", f"--export_dir={export_dir}", "--top_k=5"]
    texts = {}
    for lang in languages:
        texts[lang], hidden = masked_sentence(lang, dev[lang])
        print(f"  {lang}: the [MASK] hides {hidden!r}")
        command += [f"--language={lang}", f"--text={texts[lang]}"]
    run(command, os.path.join(paths["logs"], "fill_mask.log"))
    # The reference: what the student was taught there (the teacher's top logits, own vocab).
    for lang in languages:
        run([python, "-m", "teacher_scoring.teachers.loaders", teachers[lang],
             f"--text={texts[lang]}", "--top_k=5"], os.path.join(paths["logs"], "fill_mask.log"))

    banner(f"done in {time.monotonic() - start:.0f} s; artifacts")
    for label, path in (
            ("corpora (transfer / held-out)", paths["corpora"]),
            ("teachers (shipped, Hugging Face folders)", args.teachers_dir),
            ("student vocabulary + maps + report", paths["vocab"]),
            ("scored shards + manifests (transfer)", scored["train"]),
            ("scored shards + manifests (held-out)", scored["dev"]),
            ("student run (checkpoints, TensorBoard)", student_dir),
            ("student export (checkpoint, SavedModel, vocab)",
             os.path.join(student_dir, "export")),
            ("student tokenizer (language -> teacher vocab)",
             os.path.join(student_dir, "export", "tokenizer")),
            ("evaluation (table, JSON, bar chart)", paths["evaluation"]),
            ("logs of every stage", paths["logs"])):
        print(f"  {label:48s} {path}")
    print()
    print(open(os.path.join(paths["evaluation"], "evaluation.md"), encoding="utf-8").read())


if __name__ == "__main__":
    main()
