"""Fine-tuning results: per task and language the teacher's score and each student's (mean ± std
over seeds), RDT per task, in the layout of the paper's Table 2; JSON, Markdown and a PNG.

RDT is `student.evaluate.rdt`, the project's one definition (paper Eq. 3 with the sign of the
paper's tables: positive when the student is better): per (task, language) the mean over that
language's teachers of 100 (P_S - P_T) / P_T on the mean scores over seeds, per task the mean
over its languages. Each run's score is its test score when the task has a test file, else its
best dev epoch's dev score. The standard deviation is the sample standard deviation over seeds
(ddof 1; none for a single seed).
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from student.evaluate import rdt

RDT_DEFINITION = ("100 * (student - teacher) / teacher on mean scores over seeds (paper Eq. 3, "
                  "sign as in its tables: positive = student better); per task and language the "
                  "mean over the language's teachers, per task the mean over languages")
METRIC_NAMES = {"accuracy": "acc", "f1": "F1"}


def run_score(record: dict) -> float:
    """The score of one finished run: test if there is a test set, else the best dev score."""
    result = record["result"]
    return (result["test"] or result["dev"])["score"]


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return mean, std


def aggregate(tasks: Sequence[dict], records: Sequence[dict], hyperparameters: dict,
              students: Sequence[str]) -> dict:
    """Collects finished runs into the results document.

    Args:
      tasks: per task (in the order given): dict(name, type, language, metric, split, ...).
      records: the finished runs (dicts written by finetuning.run, with task, language, model,
        kind, seed, result, features).
      hyperparameters: what the runs used (recorded as is).
      students: the student names, in the order given.

    Returns:
      The JSON-able results: `tasks` (each with `models`: per model its per-seed scores, mean,
      std, best epochs, featurization counts), `rdt` (task -> student -> per language and
      average), `students`, `hyperparameters`, `rdt_definition`.
    """
    out_tasks = []
    for task in tasks:
        mine = [r for r in records if (r["task"], r["language"]) == (task["name"],
                                                                      task["language"])]
        models = []
        for name, kind in dict.fromkeys((r["model"], r["kind"]) for r in mine):
            runs = sorted((r for r in mine if r["model"] == name), key=lambda r: r["seed"])
            scores = [run_score(r) for r in runs]
            mean, std = _mean_std(scores)
            models.append(dict(
                name=name, kind=kind, seeds=[r["seed"] for r in runs], scores=scores,
                mean=mean, std=std, best_epochs=[r["result"]["best_epoch"] for r in runs],
                dev_scores=[r["result"]["dev"]["score"] for r in runs],
                features=runs[0]["features"], description=runs[0].get("description", ""),
                seconds=float(sum(r["result"]["seconds"] for r in runs))))
        models.sort(key=lambda m: (m["kind"] != "teacher",
                                   m["name"] if m["kind"] == "teacher"
                                   else list(students).index(m["name"])
                                   if m["name"] in students else len(students)))
        out_tasks.append(dict(task, models=models))
    return dict(tasks=out_tasks, rdt=_rdt(out_tasks, students), students=list(students),
                hyperparameters=hyperparameters, rdt_definition=RDT_DEFINITION)


def _rdt(tasks: Sequence[dict], students: Sequence[str]) -> dict:
    """task -> student -> {per_language: {lang: RDT}, average}; None where a teacher scores 0
    (RDT is relative to the teacher's score: undefined there)."""
    out: dict = {}
    for task in tasks:
        teachers = [m for m in task["models"] if m["kind"] == "teacher"]
        by_name = {m["name"]: m for m in task["models"] if m["kind"] == "student"}
        for student in students:
            if student not in by_name or not teachers:
                continue
            value = None
            if all(t["mean"] > 0 for t in teachers):
                value = float(np.mean([rdt(by_name[student]["mean"], t["mean"])
                                       for t in teachers]))
            entry = out.setdefault(task["name"], {}).setdefault(
                student, dict(per_language={}, average=None))
            entry["per_language"][task["language"]] = value
    for per_student in out.values():
        for entry in per_student.values():
            values = list(entry["per_language"].values())
            entry["average"] = (None if None in values else float(np.mean(values)))
    return out


def _cell(mean: float, std: float | None) -> str:
    text = f"{100 * mean:.2f}"
    return text + (f" ± {100 * std:.2f}" if std is not None else "")


def _signed(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.1f}"


def columns(results: dict) -> list[str]:
    """The task names, in the order given (the table's columns)."""
    return list(dict.fromkeys(t["name"] for t in results["tasks"]))


def to_markdown(results: dict) -> str:
    """Table 2 layout: a row per language and model, a column per task, RDT rows per student."""
    names = columns(results)
    tasks = {(t["name"], t["language"]): t for t in results["tasks"]}
    metric = {}
    for name in names:
        mine = [t for t in results["tasks"] if t["name"] == name]
        splits = "/".join(dict.fromkeys(t["split"] for t in mine))
        metric[name] = f"{METRIC_NAMES.get(mine[0]['metric'], mine[0]['metric'])}, {splits}"
    languages = list(dict.fromkeys(t["language"] for t in results["tasks"]))
    header = ["language", "model"] + [f"{name} ({metric[name]})" for name in names]
    lines = ["| " + " | ".join(header) + " |",
             "|---|---|" + "---:|" * len(names)]
    for language in languages:
        rows: dict[tuple[str, str], dict[str, str]] = {}
        for name in names:
            task = tasks.get((name, language))
            for model in (task["models"] if task else []):
                rows.setdefault((model["kind"], model["name"]), {})[name] = _cell(
                    model["mean"], model["std"])
        ordered = sorted(rows, key=lambda key: (
            key[0] != "teacher", key[1] if key[0] == "teacher" else
            results["students"].index(key[1]) if key[1] in results["students"] else 0))
        for kind, model_name in ordered:
            cells = [rows[(kind, model_name)].get(name, "—") for name in names]
            lines.append(f"| {language} | {kind} `{model_name}` | " + " | ".join(cells) + " |")
    for student in results["students"]:
        cells = [_signed(results["rdt"].get(name, {}).get(student, {}).get("average"))
                 for name in names]
        lines.append(f"| **RDT (%)** | student `{student}` | " + " | ".join(cells) + " |")
    seeds = sorted({len(m["scores"]) for t in results["tasks"] for m in t["models"]})
    lines += ["", f"Scores in %: mean ± sample standard deviation over "
              f"{'/'.join(str(s) for s in seeds)} seed(s); each run's score is its best dev "
              "epoch's (or, with a test file, the test score of that epoch's model). RDT: "
              f"{results['rdt_definition']}.", ""]
    for name in names:
        for student, entry in results["rdt"].get(name, {}).items():
            per_language = ", ".join(f"{lang} {_signed(v)}"
                                     for lang, v in entry["per_language"].items())
            lines.append(f"- RDT `{name}`, `{student}`: {_signed(entry['average'])} "
                         f"({per_language})")
    lines += ["", "| task | language | model | seeds | best epochs | train rows | "
              "dev rows | train pieces [UNK] % | fine-tuning time |",
              "|---|---|---|---:|---|---:|---:|---:|---:|"]
    for task in results["tasks"]:
        for model in task["models"]:
            train = model["features"]["train"]
            rows_key = "windows" if "windows" in train else "examples"
            unk = 100 * train["unk_pieces"] / train["pieces"] if train["pieces"] else 0.0
            lines.append(
                f"| {task['name']} | {task['language']} | {model['kind']} `{model['name']}` | "
                f"{len(model['scores'])} | {','.join(str(e) for e in model['best_epochs'])} | "
                f"{train[rows_key]} | {model['features']['dev'][rows_key]} | {unk:.1f} | "
                f"{model['seconds']:.0f} s |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
    """Grouped bars per (task, language): teachers (grey) and students, error bars = std."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    groups = results["tasks"]
    widest = max(len(t["models"]) for t in groups)
    width = 0.8 / max(widest, 3)
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(groups) * max(1, widest / 2)), 4.2))
    seen = set()
    top = 0.0
    for x, task in enumerate(groups):
        n = len(task["models"])
        teacher_index = 0
        for i, model in enumerate(task["models"]):
            if model["kind"] == "teacher":
                color = str(0.45 + 0.15 * (teacher_index % 3))
                label = "teacher"
                teacher_index += 1
            else:
                color = colors(results["students"].index(model["name"]) % 10
                               if model["name"] in results["students"] else 9)
                label = f"student {model['name']}"
            value = 100 * model["mean"]
            error = 100 * model["std"] if model["std"] is not None else 0.0
            bar = ax.bar(x + (i - (n - 1) / 2) * width, value, width, color=color,
                         yerr=error if model["std"] is not None else None, capsize=2,
                         label=None if label in seen else label)
            seen.add(label)
            ax.bar_label(bar, fmt="%.1f", fontsize=7, padding=2)
            top = max(top, value + error)
    ax.set_xticks(range(len(groups)),
                  [f"{t['name']}\n{t['language']} ({METRIC_NAMES.get(t['metric'], t['metric'])})"
                   for t in groups], fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, max(1.0, 1.12 * top))
    ax.set_title("Fine-tuned teachers vs students (mean ± std over seeds)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(len(seen), 5),
              fontsize=8, frameon=False)
    fig.tight_layout()
    with tf.io.gfile.GFile(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def write(results: dict, output_dir: str) -> dict[str, str]:
    """Writes results.json, results.md and results.png into output_dir; returns their paths."""
    tf.io.gfile.makedirs(output_dir)
    paths = {kind: os.path.join(output_dir, f"results.{kind}") for kind in ("json", "md", "png")}
    with tf.io.gfile.GFile(paths["json"], "w") as f:
        f.write(json.dumps(results, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    with tf.io.gfile.GFile(paths["md"], "w") as f:
        f.write(to_markdown(results))
    plot(results, paths["png"])
    return paths
