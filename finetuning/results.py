"""Fine-tuning results: per task and language `lookup`, `scratch`, the teacher's score and each
student's (mean ± std over seeds), RDT per task, in the layout of the paper's Table 2, with
marks for models below `lookup`, not above `scratch` or not converged; JSON, Markdown and a PNG.

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


KIND_ORDER = ("lookup", "scratch", "teacher", "student")
MARKS = {"below_lookup": "†", "not_above_scratch": "‡", "not_converged": "*"}
MARK_MEANINGS = {
    "below_lookup": "below `lookup` (the word's most frequent training label / majority class)",
    "not_above_scratch": "not above `scratch` (its teacher's shape, random init, same protocol) "
                         "by more than the seed spread (the larger of the two standard "
                         "deviations)",
    "not_converged": "a run stopped by --max_epochs while dev was still improving (or had "
                     "never risen above its first epoch's score)"}


def _seen_unseen(runs: Sequence[dict], group: str) -> float | None:
    values = [((r["result"]["dev"] or {}).get("seen_unseen") or {}).get(group, {})
              .get("accuracy") for r in runs]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _model_entry(name: str, kind: str, runs: list[dict]) -> dict:
    scores = [run_score(r) for r in runs]
    mean, std = _mean_std(scores)
    results = [r["result"] for r in runs]
    train = [res["train"]["score"] for res in results if res.get("train")]
    return dict(
        name=name, kind=kind, seeds=[r["seed"] for r in runs], scores=scores, mean=mean,
        std=std, best_epochs=[res["best_epoch"] for res in results],
        epochs_trained=[res.get("epochs_trained") for res in results],
        converged=[bool(res.get("converged", True)) for res in results],
        learning_rate=results[0].get("learning_rate"), grid=runs[0].get("grid"),
        dev_scores=[res["dev"]["score"] for res in results],
        train_score=float(np.mean(train)) if train else None,
        dev_seen=_seen_unseen(runs, "seen"), dev_unseen=_seen_unseen(runs, "unseen"),
        features=runs[0]["features"], description=runs[0].get("description", ""),
        seconds=float(sum(res["seconds"] for res in results)), marks=[])


def _order(model: dict, students: Sequence[str]) -> tuple:
    kind = model["kind"]
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    if kind == "student":
        return (rank, list(students).index(model["name"]) if model["name"] in students
                else len(students), "")
    return (rank, 0, model["name"])


def _mark(task: dict, models: list[dict]) -> list[str]:
    """Sets each model's marks (see MARKS); returns the warnings they raise."""
    warnings = []
    where = f"{task['name']}/{task['language']}"
    lookup = next((m for m in models if m["kind"] == "lookup"), None)
    scratches = {m["name"]: m for m in models if m["kind"] == "scratch"}
    for model in models:
        if model["kind"] == "lookup":
            continue
        label = f"{model['kind']} {model['name']}"
        if lookup is not None and model["mean"] < lookup["mean"]:
            model["marks"].append("below_lookup")
            warnings.append(f"{where}: {label} ({100 * model['mean']:.2f}) is below lookup "
                            f"({100 * lookup['mean']:.2f})")
        if model["kind"] in ("teacher", "student") and scratches:
            # A teacher against its own random-init copy; a student against the best one.
            control = scratches.get(model["name"]) if model["kind"] == "teacher" else max(
                scratches.values(), key=lambda m: m["mean"])
            if control is not None:
                spread = max(model["std"] or 0.0, control["std"] or 0.0)
                if model["mean"] - control["mean"] <= spread:
                    model["marks"].append("not_above_scratch")
                    warnings.append(
                        f"{where}: {label} ({100 * model['mean']:.2f}) is not above scratch "
                        f"{control['name']} ({100 * control['mean']:.2f}) by more than the seed "
                        f"spread ({100 * spread:.2f})")
        grid = sorted(float(rate) for rate in (model.get("grid") or {}))
        if len(grid) > 1 and model["learning_rate"] in (grid[0], grid[-1]):
            side = "largest" if model["learning_rate"] == grid[-1] else "smallest"
            warnings.append(f"{where}: {label}: the chosen learning rate "
                            f"{model['learning_rate']:g} is the {side} of the grid; a "
                            f"{'larger' if side == 'largest' else 'smaller'} one may do better "
                            "(--learning_rates)")
        if not all(model["converged"]):
            model["marks"].append("not_converged")
            warnings.append(f"{where}: {label}: {model['converged'].count(False)} of "
                            f"{len(model['converged'])} runs stopped at --max_epochs while dev "
                            "was still improving or had never risen above its first epoch "
                            "(not converged)")
    return warnings


def aggregate(tasks: Sequence[dict], records: Sequence[dict], hyperparameters: dict,
              students: Sequence[str]) -> dict:
    """Collects finished runs into the results document.

    Args:
      tasks: per task (in the order given): dict(name, type, language, metric, split, ...).
      records: the finished runs (dicts written by finetuning.run, with task, language, model,
        kind (lookup, scratch, teacher or student), seed, result, features; `grid`: the dev
        score of each learning rate tried).
      hyperparameters: what the runs used (recorded as is).
      students: the student names, in the order given.

    Returns:
      The JSON-able results: `tasks` (each with `models`: per model its per-seed scores, mean,
      std, chosen learning rate and grid, best epochs, convergence, train and seen/unseen dev
      accuracy, featurization counts, marks), `rdt` (task -> student -> per language and
      average), `warnings` (every mark, in words), `students`, `hyperparameters`,
      `rdt_definition`, `marks` (symbol and meaning).
    """
    out_tasks, warnings = [], []
    for task in tasks:
        mine = [r for r in records if (r["task"], r["language"]) == (task["name"],
                                                                      task["language"])]
        models = []
        for name, kind in dict.fromkeys((r["model"], r["kind"]) for r in mine):
            runs = sorted((r for r in mine if (r["model"], r["kind"]) == (name, kind)),
                          key=lambda r: r["seed"])
            models.append(_model_entry(name, kind, runs))
        models.sort(key=lambda m: _order(m, students))
        warnings += _mark(task, models)
        out_tasks.append(dict(task, models=models))
    return dict(tasks=out_tasks, rdt=_rdt(out_tasks, students), students=list(students),
                hyperparameters=hyperparameters, rdt_definition=RDT_DEFINITION,
                warnings=warnings,
                marks={key: dict(symbol=MARKS[key], meaning=MARK_MEANINGS[key])
                       for key in MARKS})


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


def _cell(model: dict) -> str:
    text = f"{100 * model['mean']:.2f}"
    if model["std"] is not None:
        text += f" ± {100 * model['std']:.2f}"
    return text + "".join(MARKS[m] for m in model.get("marks", []))


def _signed(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.1f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def columns(results: dict) -> list[str]:
    """The task names, in the order given (the table's columns)."""
    return list(dict.fromkeys(t["name"] for t in results["tasks"]))


def to_markdown(results: dict) -> str:
    """Table 2 layout: a row per language and model (lookup, scratch, teachers, students), a
    column per task, RDT rows per student; then the marks, the warnings and a detail table."""
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
        order: dict[tuple[str, str], tuple] = {}
        for name in names:
            task = tasks.get((name, language))
            for model in (task["models"] if task else []):
                key = (model["kind"], model["name"])
                rows.setdefault(key, {})[name] = _cell(model)
                order[key] = _order(model, results["students"])
        for kind, model_name in sorted(rows, key=lambda key: order[key]):
            cells = [rows[(kind, model_name)].get(name, "—") for name in names]
            label = "`lookup`" if kind == "lookup" else f"{kind} `{model_name}`"
            lines.append(f"| {language} | {label} | " + " | ".join(cells) + " |")
    for student in results["students"]:
        cells = [_signed(results["rdt"].get(name, {}).get(student, {}).get("average"))
                 for name in names]
        lines.append(f"| **RDT (%)** | student `{student}` | " + " | ".join(cells) + " |")
    seeds = sorted({len(m["scores"]) for t in results["tasks"] for m in t["models"]
                    if m["kind"] != "lookup"})
    lines += ["", f"Scores in %: mean ± sample standard deviation over "
              f"{'/'.join(str(s) for s in seeds)} seed(s) at the learning rate chosen on dev; "
              "each run's score is its best dev epoch's (or, with a test file, the test score "
              f"of that epoch's model). RDT: {results['rdt_definition']}. "
              + " ".join(f"{m['symbol']} {m['meaning']}." for m in results["marks"].values()),
              ""]
    for name in names:
        for student, entry in results["rdt"].get(name, {}).items():
            per_language = ", ".join(f"{lang} {_signed(v)}"
                                     for lang, v in entry["per_language"].items())
            lines.append(f"- RDT `{name}`, `{student}`: {_signed(entry['average'])} "
                         f"({per_language})")
    if results["warnings"]:
        lines += [""] + [f"- **warning**: {w}" for w in results["warnings"]]
    lines += ["", "| task | language | model | lr (grid: dev %) | best / trained epochs | "
              "converged | train % (eval mode) | dev seen / unseen words % | train [UNK] % | "
              "time |", "|---|---|---|---|---|---|---:|---|---:|---:|"]
    for task in results["tasks"]:
        for model in task["models"]:
            label = "`lookup`" if model["kind"] == "lookup" else \
                f"{model['kind']} `{model['name']}`"
            unk = "—"
            if model["features"]:
                train = model["features"]["train"]
                unk = f"{100 * train['unk_pieces'] / train['pieces']:.1f}" if train[
                    "pieces"] else "0.0"
            rate = "—"
            if model["learning_rate"] is not None:
                grid = model.get("grid") or {}
                rate = f"{model['learning_rate']:g}" + (
                    " (" + ", ".join(f"{r}: {100 * v:.1f}" for r, v in grid.items()) + ")"
                    if len(grid) > 1 else "")
            epochs = "—" if model["kind"] == "lookup" else ", ".join(
                f"{b}/{t}" for b, t in zip(model["best_epochs"], model["epochs_trained"]))
            converged = "—" if model["kind"] == "lookup" else \
                f"{sum(model['converged'])}/{len(model['converged'])}"
            lines.append(
                f"| {task['name']} | {task['language']} | {label} | {rate} | {epochs} | "
                f"{converged} | {_percent(model['train_score'])} | "
                f"{_percent(model['dev_seen'])} / {_percent(model['dev_unseen'])} | {unk} | "
                f"{model['seconds']:.0f} s |")
    return "\n".join(lines) + "\n"


_BASELINE_STYLE = {"lookup": dict(color="white", edgecolor="black", hatch="//"),
                   "scratch": dict(color="0.85", edgecolor="0.4", hatch="..")}


def plot(results: dict, path: str) -> None:
    """Grouped bars per (task, language): lookup and scratch (hatched), teachers (grey) and
    students; error bars = std."""
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
            style: dict = {}
            if model["kind"] in _BASELINE_STYLE:
                style = dict(_BASELINE_STYLE[model["kind"]])
                label = model["kind"]
            elif model["kind"] == "teacher":
                style = dict(color=str(0.45 + 0.15 * (teacher_index % 3)))
                label = "teacher"
                teacher_index += 1
            else:
                style = dict(color=colors(results["students"].index(model["name"]) % 10
                                          if model["name"] in results["students"] else 9))
                label = f"student {model['name']}"
            value = 100 * model["mean"]
            error = 100 * model["std"] if model["std"] is not None else 0.0
            bar = ax.bar(x + (i - (n - 1) / 2) * width, value, width,
                         yerr=error if model["std"] is not None else None, capsize=2,
                         label=None if label in seen else label, **style)
            seen.add(label)
            ax.bar_label(bar, fmt="%.1f", fontsize=7, padding=2)
            top = max(top, value + error)
    ax.set_xticks(range(len(groups)),
                  [f"{t['name']}\n{t['language']} ({METRIC_NAMES.get(t['metric'], t['metric'])})"
                   for t in groups], fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, max(1.0, 1.12 * top))
    ax.set_title("Fine-tuned models beside lookup and scratch (mean ± std over seeds)")
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
