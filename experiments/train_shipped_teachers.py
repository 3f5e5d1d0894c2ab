r"""Makes the teachers the project ships in data/teachers/<lang>/: pretrained once, recorded, halved.

  python experiments/train_shipped_teachers.py [--languages en,tr,zh]
      [--corpora ../shared/corpora] [--work_dir workspace/shipped_teachers]
      [--output_dir data/teachers] [--steps 10000]

Per language, each stage the project's own command line (a finished stage is skipped, so an
interrupted run resumes; pretraining itself resumes from its last checkpoint):

  pretrain   python -m student.pretrain_teacher on CORPORA/train/<lang>.txt: a WordPiece
             vocabulary (alphabet by coverage), plain-MLM examples, training with a checkpoint
             every --steps / --curve_points steps; the float32 Hugging Face folder goes to
             WORK_DIR/fp32/teacher_<lang>, the command and its wall time to
             WORK_DIR/work/<lang>/pretrain_record.json
  curve      python -m teacher_scoring.examples.create_examples (the first --heldout_lines lines
             of CORPORA/dev/<lang>.txt in the teacher's own vocabulary) and
             python -m student.learning_curve --window 0.5: held-out loss and accuracy at every
             kept checkpoint, the frequent-token and unigram baselines, and the flatness check
  ship       the folder with float16 weights (teacher_scoring.teachers.export
             .export_hf_folder_float16) in OUTPUT_DIR/<lang>, checked against the float32 one
             on the held-out examples, and training_record.json beside it: the exact commands,
             steps, wall time, held-out curve, flatness, float16 fidelity and file sizes.
             OUTPUT_DIR/README.md gets the table of every shipped teacher.
  downstream python -m finetuning.run: every shipped teacher against `scratch` (its random-init
             copy) and `lookup` on its language's tasks of experiments/reproduce_dissimilar.py
             (POS en/tr/zh, NER tr/zh; files under --downstream), --finetune_seeds seeds, the
             learning rates --finetune_learning_rates; its table goes into OUTPUT_DIR/README.md.

Flatness, "would twice the steps help by less than 2%?": the held-out loss at step N is compared
with the loss at the checkpoint at N/2 of the same run. That checkpoint was taken at a higher
learning rate than a finished N/2-step run ends with, so the measured fall over-states what
N/2 more steps gave; with diminishing returns (loss falling as a power of the steps) the next
doubling gives less than the last one. A fall under 2% from N/2 to N therefore bounds the
gain of training twice as long from above; a fall above 2% says the teacher is not flat.

The same command trains on an accelerator when TensorFlow sees one (the student trainer's
one_device strategy picks it); nothing here is CPU-only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from run_demo import run  # noqa: E402  pylint: disable=wrong-import-position

# Casing per language, as the public teachers of the paper's Student_dissimilar: bert-base-uncased,
# BERTurk (cased), Google's Chinese BERT (lower-cases).
LOWER_CASE = {"en": True, "tr": False, "zh": True}
SEED = 12345
STAGES = ("pretrain", "curve", "ship", "downstream")
RECORD_FILE = "training_record.json"
PRETRAIN_RECORD = "pretrain_record.json"


def _relative(path: str) -> str:
    """The path relative to the repository root, where every command runs (`../shared/...` for
    the shared corpora beside a clone), so the recorded commands hold in any clone."""
    return os.path.relpath(os.path.abspath(path), REPO)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(command: list[str], log_path: str) -> float:
    """Runs a command from the repository root (run_demo.run: shown and logged to log_path);
    returns its wall seconds."""
    began = time.monotonic()
    run(command, log_path)
    return time.monotonic() - began


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: str, data) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


def pretrain_command(args, lang: str, paths: dict) -> list[str]:
    """The `student.pretrain_teacher` command of one language (what the record keeps)."""
    every = max(1, args.steps // args.curve_points)
    return ["python", "-m", "student.pretrain_teacher", f"--name=teacher_{lang}",
            f"--language={lang}", f"--input={_relative(paths['train'])}",
            f"--vocab_size={args.vocab_size}",
            "--lower_case" if LOWER_CASE.get(lang, False) else "--nolower_case",
            f"--config_file={args.config_file}",
            f"--params_override=train.steps={args.steps},train.checkpoint_interval={every},"
            f"train.max_checkpoints_to_keep={args.curve_points + 1}",
            f"--work_dir={_relative(paths['work'])}",
            f"--output_dir={_relative(paths['fp32'])}", f"--seed={SEED}", "--overwrite"]


def curve_commands(args, lang: str, paths: dict, teacher_data: dict) -> list[list[str]]:
    """The held-out examples and the learning-curve commands of one language."""
    return [
        ["python", "-m", "teacher_scoring.examples.create_examples",
         f"--input={_relative(paths['heldout_text'])}", f"--language={lang}",
         f"--vocab={_relative(os.path.join(paths['work'], 'vocab.txt'))}",
         "--lower_case" if LOWER_CASE.get(lang, False) else "--nolower_case",
         f"--teacher_name=teacher_{lang}", f"--seq_length={teacher_data['seq_length']}",
         f"--max_predictions_per_seq={teacher_data['max_predictions_per_seq']}",
         f"--seed={SEED + 2}", f"--output_dir={_relative(paths['heldout'])}", "--overwrite"],
        ["python", "-m", "student.learning_curve",
         f"--model_dir={_relative(os.path.join(paths['work'], 'model'))}",
         f"--shards={lang}={_relative(paths['heldout'])}",
         f"--output_dir={_relative(paths['curve'])}", "--window=0.5", "--threshold=0.02",
         f"--title=teacher_{lang}"]]


def float16_fidelity(fp32_dir: str, fp16_dir: str, heldout_dir: str,
                     max_records: int = 1024) -> dict:
    """Masked-token accuracy / loss of the float32 and float16 folders on the same held-out
    masked tokens, their top-1 agreement and the largest logit difference."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from teacher_scoring.records import manifest as manifest_lib  # pylint: disable=import-outside-toplevel
    from teacher_scoring.records import record_schema  # pylint: disable=import-outside-toplevel
    from teacher_scoring.teachers.loaders import load_teacher  # pylint: disable=import-outside-toplevel

    spec = manifest_lib.read_manifest(heldout_dir).shard_spec
    files = sorted(tf.io.gfile.glob(os.path.join(heldout_dir, "*.tfrecord")))
    teachers = {"float32": load_teacher(fp32_dir), "float16": load_teacher(fp16_dir)}
    correct = {name: 0 for name in teachers}
    loss = {name: 0.0 for name in teachers}
    agree, tokens, max_diff = 0, 0, 0.0
    for records in tf.data.TFRecordDataset(files).take(max_records).batch(64):
        batch = record_schema.parse_batch(records, spec, keep_strings=False)
        inputs = {name: batch[name] for name in (
            record_schema.INPUT_WORD_IDS, record_schema.INPUT_MASK,
            record_schema.INPUT_TYPE_IDS, record_schema.MASKED_LM_POSITIONS)}
        real = batch[record_schema.MASKED_LM_WEIGHTS].numpy() > 0
        gold = batch[record_schema.MASKED_LM_IDS].numpy()[real]
        logits = {name: teacher.mlm_logits(**inputs).numpy()[real]
                  for name, teacher in teachers.items()}
        for name, values in logits.items():
            shifted = values - values.max(axis=-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
            loss[name] += float(-log_probs[np.arange(len(gold)), gold].sum())
            correct[name] += int((values.argmax(-1) == gold).sum())
        agree += int((logits["float32"].argmax(-1) == logits["float16"].argmax(-1)).sum())
        max_diff = max(max_diff, float(np.abs(logits["float32"] - logits["float16"]).max()))
        tokens += int(gold.size)
    if not tokens:
        raise ValueError(f"{heldout_dir}: no masked tokens to compare the float16 copy on")
    return {"masked_tokens": tokens,
            **{f"{name}_accuracy": correct[name] / tokens for name in teachers},
            **{f"{name}_loss": loss[name] / tokens for name in teachers},
            "top1_agreement": agree / tokens, "max_abs_logit_difference": max_diff}


def render_readme(records: dict[str, dict], downstream_md: str | None = None,
                  downstream_command: str | None = None) -> str:
    """data/teachers/README.md: what the teachers are, how they were made, the table, and the
    downstream table (finetuning.run's results.md: teacher against `scratch` and `lookup`)
    when one is given."""
    lines = [
        "# Shipped teachers",
        "",
        "Small pretrained BERT masked-LM teachers, one per language, each with its own WordPiece",
        "vocabulary and casing, in Hugging Face format (`config.json`, float16 `model.safetensors`,",
        "`vocab.txt`, `tokenizer_config.json`) with the project's `teacher.json`. The demo",
        "(`run_demo.py`) and `experiments/reproduce_dissimilar.py` use them; any loader of the",
        "project (`.venv/bin/python -m teacher_scoring.teachers.loaders data/teachers/en",
        "--text ...`) and `transformers.BertForMaskedLM.from_pretrained` read them.",
        "",
        "Made by `.venv/bin/python experiments/train_shipped_teachers.py` (this table is written by",
        "it; commands run from the repository root).",
        "Every folder's `training_record.json` holds the exact commands, the steps, the wall time,",
        "the held-out curve at every kept checkpoint and the float16 check.",
        "",
        "| teacher | casing | vocab | layers × width | steps | pretraining wall | held-out "
        "MLM acc. / loss | frequent-token acc. / unigram loss | fall N/2 → N | float16 top-1 "
        "agreement | bytes |",
        "|---|---|---:|---|---:|---:|---|---|---:|---:|---:|",
    ]
    total = 0
    for lang, record in sorted(records.items()):
        final = record["curve"][-1]
        baseline = record["baseline"]
        flat = record["flatness"]
        total += record["bytes"]
        lines.append(
            f"| {lang} | {'uncased' if record['lower_case'] else 'cased'} | "
            f"{record['vocab_size']:,} | {record['num_layers']} × {record['hidden_size']} | "
            f"{record['steps']:,} | {record['pretrain_seconds'] / 60:.1f} min | "
            f"{100 * final['accuracy']:.2f}% / {final['loss']:.3f} | "
            f"{100 * baseline['frequent_token_accuracy']:.2f}% / "
            f"{baseline['unigram_loss']:.3f} | "
            f"{100 * flat['relative_improvement']:.1f}% "
            f"({flat['from_step']:,} → {flat['to_step']:,}) | "
            f"{100 * record['float16']['top1_agreement']:.2f}% | {record['bytes']:,} |")
    lines += [
        "",
        f"Total size: {total:,} bytes ({total / 2 ** 20:.1f} MiB).",
        "",
        "Held-out text: the first lines of each language's `corpora/dev` split (never in any train",
        "split), masked as in training (15%, S and P of the training config). \"fall N/2 → N\" is the",
        "relative fall of the held-out loss over the second half of the run: under 2% means that",
        "twice the steps would gain less than 2% (see the script's docstring for why).",
        "",
    ]
    if downstream_md:
        table = []
        for line in downstream_md.splitlines():
            if line.startswith("|"):
                table.append(line)
            elif table:
                break
        warnings = [line for line in downstream_md.splitlines()
                    if line.startswith("- **warning**")]
        covered = {line.split("|")[1].strip() for line in table[2:]}
        missing = sorted(set(records) - covered)
        lines += ["## Downstream: each teacher against `scratch` and `lookup`", "",
                  *([f"Not measured by this command: {', '.join(missing)} (run the downstream "
                     "stage with it). docs/experiments/dissimilar.md measures every shipped "
                     "teacher, these included, against `scratch` and `lookup` on its own splits "
                     "(500 training / 300 dev sentences, 3 seeds).", ""]
                    if missing else []),
                  f"`.venv/bin/{downstream_command}`" if downstream_command else "", "",
                  *table, "",
                  "Mean ± standard deviation over seeds. † below `lookup` (the word's most "
                  "frequent training label); ‡ not above `scratch` (the teacher's shape, random "
                  "init, the same protocol) by more than the seed spread.", "", *warnings, ""]
    lines += [
        "## Training text and licences",
        "",
        "Trained on `train/<lang>.txt` of the project's shared corpora (LibreOffice help, MPL-2.0;",
        "manual pages, GPL and other free licences per page; for en also the Brown Corpus, whose",
        "redistribution terms are unclear). The weights are a statistical model of that text; no",
        "text is shipped with them beyond the vocabulary. Check those terms before you redistribute",
        "the teachers as part of another product.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default="en,tr,zh")
    parser.add_argument("--corpora", default=os.path.join(REPO, "..", "shared", "corpora"),
                        help="folder with train/LANG.txt and dev/LANG.txt")
    parser.add_argument("--work_dir", default=os.path.join(REPO, "workspace", "shipped_teachers"))
    parser.add_argument("--output_dir", default=os.path.join(REPO, "data", "teachers"))
    parser.add_argument("--config_file", default="configs/teacher/demo.yaml",
                        help="the training config (a student config; lambda is forced to 0)")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--curve_points", type=int, default=10,
                        help="checkpoints kept along the run for the held-out curve")
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--heldout_lines", type=int, default=800)
    parser.add_argument("--downstream", default=os.path.join(REPO, "..", "shared", "downstream"),
                        help="folder of the downstream tasks' files (the downstream stage)")
    parser.add_argument("--finetune_seeds", type=int, default=3)
    parser.add_argument("--finetune_learning_rates", default="1e-3",
                        help="finetuning.run --learning_rates (auto: the grid by width)")
    parser.add_argument("--stages", default=",".join(STAGES))
    args = parser.parse_args(argv)
    args.language_list = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    args.stage_list = [stage.strip() for stage in args.stages.split(",") if stage.strip()]
    unknown = sorted(set(args.stage_list) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown {unknown}; choose from {list(STAGES)}")
    if args.steps < args.curve_points or args.curve_points < 2:
        parser.error("--curve_points must be >= 2 and <= --steps")
    return args


def main(argv=None) -> None:
    import yaml  # pylint: disable=import-outside-toplevel

    from teacher_scoring.teachers import export  # pylint: disable=import-outside-toplevel

    args = parse_args(argv)
    work = os.path.abspath(args.work_dir)
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    config_path = args.config_file if os.path.isabs(args.config_file) else os.path.join(
        REPO, args.config_file)
    with open(config_path, encoding="utf-8") as f:
        teacher_data = yaml.safe_load(f)["data"]
    python = sys.executable
    for lang in args.language_list:
        paths = {
            "train": os.path.abspath(os.path.join(args.corpora, "train", f"{lang}.txt")),
            "dev": os.path.abspath(os.path.join(args.corpora, "dev", f"{lang}.txt")),
            "work": os.path.join(work, "work", lang),
            "fp32": os.path.join(work, "fp32", f"teacher_{lang}"),
            "heldout_text": os.path.join(work, "heldout_text", f"{lang}.txt"),
            "heldout": os.path.join(work, "heldout", lang),
            "curve": os.path.join(work, "curves", lang),
            "out": os.path.join(os.path.abspath(args.output_dir), lang),
        }
        for key in ("train", "dev"):
            if not os.path.exists(paths[key]):
                sys.exit(f"{paths[key]} is missing: give --corpora a folder with train/ and dev/")
        print(f"\n=== teacher_{lang} ===", flush=True)
        pretrain_record_path = os.path.join(paths["work"], PRETRAIN_RECORD)
        command = pretrain_command(args, lang, paths)
        if "pretrain" in args.stage_list:
            if os.path.exists(os.path.join(paths["fp32"], "teacher.json")) and \
                    os.path.exists(pretrain_record_path):
                print("  pretrain: already there")
            else:
                previous = _read_json(pretrain_record_path)["seconds"] \
                    if os.path.exists(pretrain_record_path) else 0.0
                seconds = _run([python] + command[1:],
                               os.path.join(logs, f"pretrain_{lang}.log"))
                # A resumed run adds its wall time to the interrupted runs' time.
                _write_json(pretrain_record_path, {"command": command,
                                                   "seconds": round(previous + seconds, 1)})
        if "curve" in args.stage_list:
            if os.path.exists(os.path.join(paths["curve"], "curve.json")):
                print("  curve: already there")
            else:
                with open(paths["dev"], encoding="utf-8") as f:
                    heldout = [line for line in f if line.strip()][:args.heldout_lines]
                os.makedirs(os.path.dirname(paths["heldout_text"]), exist_ok=True)
                with open(paths["heldout_text"], "w", encoding="utf-8") as f:
                    f.writelines(heldout)
                for step in curve_commands(args, lang, paths, teacher_data):
                    _run([python] + step[1:], os.path.join(logs, f"curve_{lang}.log"))
        if "ship" in args.stage_list:
            for needed in (pretrain_record_path, os.path.join(paths["curve"], "curve.json")):
                if not os.path.exists(needed):
                    sys.exit(f"ship {lang}: {needed} is missing; run the pretrain and curve "
                             "stages first")
            export.export_hf_folder_float16(paths["fp32"], paths["out"], overwrite=True)
            curve = _read_json(os.path.join(paths["curve"], "curve.json"))
            pretrain = _read_json(pretrain_record_path)
            model_config = _read_json(os.path.join(paths["out"], "config.json"))
            with open(os.path.join(paths["out"], "vocab.txt"), encoding="utf-8") as f:
                vocab_size = sum(1 for _ in f)
            files = {name: os.path.getsize(os.path.join(paths["out"], name))
                     for name in sorted(os.listdir(paths["out"])) if name != RECORD_FILE}
            record = {
                "name": f"teacher_{lang}", "language": lang,
                "lower_case": LOWER_CASE.get(lang, False), "vocab_size": vocab_size,
                "num_layers": model_config["num_hidden_layers"],
                "hidden_size": model_config["hidden_size"],
                "train_text": {"path": _relative(paths["train"]),
                               "sha256": _sha256(paths["train"])},
                "heldout_text": {"path": _relative(paths["dev"]),
                                 "lines": args.heldout_lines,
                                 "sha256_of_used_lines": _sha256(paths["heldout_text"])},
                "commands": {"pretrain": pretrain["command"],
                             "curve": curve_commands(args, lang, paths, teacher_data),
                             "ship": ["python", "experiments/train_shipped_teachers.py",
                                      f"--languages={lang}", "--stages=ship"]},
                "steps": args.steps, "pretrain_seconds": pretrain["seconds"],
                "curve": [{k: point[k] for k in ("step", "loss", "accuracy")}
                          for point in curve["curve"]],
                "baseline": {k: curve["baseline"][k] for k in ("frequent_token_accuracy",
                                                               "unigram_loss")},
                "flatness": curve["flatness"],
                "held_out_tokens": curve["total_tokens"],
                "float16": float16_fidelity(paths["fp32"], paths["out"], paths["heldout"]),
                "files": files, "bytes": sum(files.values()),
            }
            _write_json(os.path.join(paths["out"], RECORD_FILE), record)
            final = record["curve"][-1]
            print(f"  shipped {paths['out']}: {record['bytes']:,} bytes, held-out accuracy "
                  f"{100 * final['accuracy']:.2f}%, loss {final['loss']:.3f}, fall over the "
                  f"second half {100 * record['flatness']['relative_improvement']:.1f}%, "
                  f"float16 top-1 agreement "
                  f"{100 * record['float16']['top1_agreement']:.2f}%", flush=True)
    out = os.path.abspath(args.output_dir)
    downstream_dir = os.path.join(work, "downstream")
    if "downstream" in args.stage_list:
        from experiments.reproduce_dissimilar import DEFAULT_TASKS  # pylint: disable=import-outside-toplevel
        tasks = [f"--task=name={name},type={kind},language={lang},"
                 f"train={_relative(os.path.join(args.downstream, train_file))},"
                 f"dev={_relative(os.path.join(args.downstream, dev_file))}"
                 for name, kind, lang, train_file, dev_file in DEFAULT_TASKS
                 if lang in args.language_list]
        if not tasks:
            sys.exit(f"downstream: no task for {args.language_list}")
        command = (["python", "-m", "finetuning.run", f"--output_dir={_relative(downstream_dir)}",
                    f"--seeds={args.finetune_seeds}",
                    f"--learning_rates={args.finetune_learning_rates}", "--seq_length=64",
                    "--max_train_examples=2000", "--max_eval_examples=500"] + tasks
                   + [f"--teacher={lang}={_relative(os.path.join(out, lang))}"
                      for lang in args.language_list])
        print("\n=== downstream: the teachers against scratch and lookup ===", flush=True)
        _run([python] + command[1:], os.path.join(logs, "downstream.log"))
        with open(os.path.join(downstream_dir, "command.txt"), "w", encoding="utf-8") as f:
            f.write(" ".join(command) + "\n")
    if "ship" in args.stage_list or "downstream" in args.stage_list:
        results_md = os.path.join(downstream_dir, "results.md")
        downstream_md = downstream_command = None
        if os.path.exists(results_md):
            with open(results_md, encoding="utf-8") as f:
                downstream_md = f.read()
        if os.path.exists(os.path.join(downstream_dir, "command.txt")):
            with open(os.path.join(downstream_dir, "command.txt"), encoding="utf-8") as f:
                downstream_command = f.read().strip()
        records = {lang: _read_json(os.path.join(out, lang, RECORD_FILE))
                   for lang in sorted(os.listdir(out))
                   if os.path.exists(os.path.join(out, lang, RECORD_FILE))}
        with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
            f.write(render_readme(records, downstream_md, downstream_command))
        print(f"\n{os.path.join(out, 'README.md')}: {len(records)} teachers, "
              f"{sum(r['bytes'] for r in records.values()):,} bytes in all")


if __name__ == "__main__":
    main()
