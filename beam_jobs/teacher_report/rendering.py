"""The report's files and console lines, from the report dict (`pipeline.make_report`):

  report.json  every figure, with its interval (`write_report`; `read_report` reads it back)
  report.md    the recommendations and warnings, vocabulary fit, masked-LM quality, the teachers
               of a language compared, the union's cost, the rule (`report_markdown`)
  report.png   loss per masked word and masked-piece accuracy with 95% intervals, pieces per
               word and words with [UNK], per language and teacher (`plot_report`)
  the summary  a few lines per language for the console (`summary_lines`: what the CLI prints)
"""

from __future__ import annotations

import io
import json
import os
from typing import Mapping

import numpy as np
import tensorflow as tf

from beam_jobs.teacher_report.recommendation import UNK_TOLERANCE

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"


def _fmt_ci(ci: Mapping, digits: int = 2, percent: bool = False) -> str:
    scale, unit = (100.0, "%") if percent else (1.0, "")
    if not np.isfinite(ci.get("low", float("nan"))):
        return f"{ci['value'] * scale:.{digits}f}{unit}"
    return (f"{ci['value'] * scale:.{digits}f}{unit} "
            f"[{ci['low'] * scale:.{digits}f}, {ci['high'] * scale:.{digits}f}]")


def summary_lines(report: Mapping) -> list[str]:
    """A few lines for a console: per language the recommendation and its key figures, then the
    union's cost."""
    lines = [f"teacher report ({report['settings']['sample_paragraphs']} paragraphs a language, "
             f"95% CIs; details in {report.get('output_dir') or 'report.md'}):"]
    for language, entry in report["languages"].items():
        rec = entry["recommendation"]
        fit = entry["vocabulary_fit"]
        if entry["gold_only"]:
            lines.append(f"  {language}: gold-only, tokenized with {rec['teachers'][0]} -- "
                         + "; ".join(f"{t}: [UNK] words {100 * fit[t]['unk_word_rate']:.2f}%"
                                     for t in entry["teachers"]))
            lines += [f"    warning: {w}" for w in rec["warnings"]]
            continue
        quality = entry["masked_lm"]["teachers"]
        figures = "; ".join(
            f"{t}: loss/word {_fmt_ci(quality[t]['loss_per_word'])}, acc "
            f"{100 * quality[t]['piece_accuracy']['value']:.1f}%, [UNK] words "
            f"{100 * fit[t]['unk_word_rate']:.2f}%"
            + (f", wins best {100 * quality[t]['best_win_rate']['value']:.0f}%"
               if len(entry["teachers"]) > 1 else "")
            for t in entry["teachers"])
        mode = rec["mode"] if rec["mode"] != "single" else "single teacher"
        lines.append(f"  {language}: {', '.join(rec['teachers'])} ({mode}) -- {figures}")
        for t, why in rec["not_recommended"].items():
            lines.append(f"    not {t}: {why}")
        for warning in rec["warnings"]:
            lines.append(f"    warning: {warning}")
    union = report["union"]
    costs = ", ".join(f"{t} adds {c['adds']}" for t, c in union["teachers"].items())
    lines.append(f"  union: {union['student_size']} student tokens; {costs}")
    return lines


def report_markdown(report: Mapping) -> str:
    """report.md."""
    settings = report["settings"]
    out = [
        "# Teacher report",
        "",
        f"Config: `{settings['config']}`; sample: {settings['sample_paragraphs']} paragraphs a "
        f"language (seed {settings['seed']}); masking as the scoring job: S = "
        f"{settings['seq_length']}, P = {settings['max_predictions_per_seq']}, "
        f"masked_lm_prob {settings['masked_lm_prob']}, whole-word "
        f"{str(settings['whole_word_masking']).lower()}; top-k agreement at k = {settings['top_k']}"
        f"; {settings['bootstrap_samples']} bootstrap resamples, 95% intervals in brackets.",
        f"Made in {report['seconds']:.0f} s.",
        "",
        "## Recommendations",
        "",
        "| language | use | mode | why |",
        "|---|---|---|---|",
    ]
    for language, entry in report["languages"].items():
        rec = entry["recommendation"]
        why = "; ".join(rec["reasons"] + [f"not {t}: {w}" for t, w in
                                          rec["not_recommended"].items()])
        out.append(f"| {language} | {', '.join(rec['teachers'])} | {rec['mode']} | {why} |")
    warnings = [(lang, w) for lang, e in report["languages"].items()
                for w in e["recommendation"]["warnings"]]
    if warnings:
        out += ["", "Warnings:", ""] + [f"- {lang}: {w}" for lang, w in warnings]
    out += ["", "## Vocabulary fit (on the sample, each teacher's own tokenizer)", "",
            "| language | teacher | casing | words | words with [UNK] | [UNK] pieces | pieces/word "
            "| words whole | characters lost | missing characters |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for language, entry in report["languages"].items():
        for t in entry["teachers"]:
            f = entry["vocabulary_fit"][t]
            chars = " ".join(f"`{c}`×{n}" for c, n in f["top_missing_characters"][:5]) or "-"
            casing = "uncased" if entry["uncased"][t] else "cased"
            out.append(f"| {language} | {t} | {casing} | {f['words']} | "
                       f"{100 * f['unk_word_rate']:.2f}% | "
                       f"{100 * f['unk_piece_rate']:.2f}% | {f['fertility']:.3f} | "
                       f"{100 * f['whole_word_rate']:.1f}% | "
                       f"{100 * f['uncovered_character_rate']:.2f}% | {chars} |")
    out += ["", "## Masked-LM quality on the same masked words", "",
            "| language | teacher | examples | masked words | masked pieces | piece accuracy | "
            "word accuracy | loss / word | loss / piece | perplexity / piece | wins `best` |",
            "|---|---|---:|---:|---:|---|---|---|---|---|---|"]
    for language, entry in report["languages"].items():
        mlm = entry["masked_lm"]
        if mlm is None:
            continue
        for t in entry["teachers"]:
            q = mlm["teachers"][t]
            win = (_fmt_ci(q["best_win_rate"], 1, True) if len(entry["teachers"]) > 1 else "-")
            out.append(
                f"| {language} | {t} | {mlm['compared_examples']} | {q['masked_words']} | "
                f"{q['masked_pieces']} | {_fmt_ci(q['piece_accuracy'], 1, True)} | "
                f"{_fmt_ci(q['word_accuracy'], 1, True)} | {_fmt_ci(q['loss_per_word'])} | "
                f"{_fmt_ci(q['loss_per_piece'])} | {_fmt_ci(q['perplexity_per_piece'], 1)} | "
                f"{win} |")
    pairs = [(language, p) for language, e in report["languages"].items()
             if e["masked_lm"] is not None for p in e["masked_lm"]["pairs"]]
    if pairs:
        out += ["", "## Teachers of one language compared (paired, same examples)", "",
                "| language | a | b | loss/word a − b | word acc. a − b | piece acc. a − b | "
                "same masked words | words compared | top-1 agree | overlap@k |",
                "|---|---|---|---|---|---|---:|---:|---:|---:|"]
        for language, p in pairs:
            agreement = p["agreement"]
            out.append(
                f"| {language} | {p['a']} | {p['b']} | {_fmt_ci(p['loss_per_word_difference'], 3)}"
                f" | {_fmt_ci(p['word_accuracy_difference'], 1, True)}"
                f" | {_fmt_ci(p['piece_accuracy_difference'], 1, True)} | "
                f"{100 * p['aligned_share']:.1f}% | {agreement['words']} | "
                f"{100 * agreement['top1']:.1f}% | {100 * agreement['overlap_at_k']:.1f}% |")
    union = report["union"]
    out += ["", "## What the union costs", "",
            f"Student vocabulary with every teacher of the config: **{union['student_size']}** "
            f"tokens.", "",
            "| teacher | its vocabulary | student size without it | tokens only it brings |",
            "|---|---:|---:|---:|"]
    for t, c in union["teachers"].items():
        without = c["without"] if c["without"] is not None else "-"
        out.append(f"| {t} | {c['vocab_size']} | {without} | {c['adds']} |")
    out += ["", "## The rule", "",
            "A heuristic, not a guarantee (docs/teacher_report.md). Teacher U beats T when U's "
            "loss per masked word is lower on the same words (the paired 95% interval of the "
            "difference excludes 0) and U's word accuracy is not significantly lower. T is not "
            "recommended when some U beats it and covers the text as well (share of words with "
            f"[UNK] at most {100 * UNK_TOLERANCE:.1f} points higher). Of the teachers left, "
            "`all` when none beats another, `best` when the better one covers the text worse. "
            "Loss per masked word sums the cross-entropy over a word's pieces, so a teacher that "
            "splits words finer is not favoured; an uncased teacher predicts an easier target "
            "(flagged).", ""]
    return "\n".join(out)


def plot_report(report: Mapping, path: str) -> None:
    """report.png: loss per masked word and piece accuracy with 95% CIs, and words with [UNK],
    for every (language, teacher)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    labels, losses, accuracies, fertility, unk, colors = [], [], [], [], [], []
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (language, entry) in enumerate(report["languages"].items()):
        if entry["masked_lm"] is None:
            continue
        for t in entry["teachers"]:
            labels.append(f"{language}\n{t}")
            losses.append(entry["masked_lm"]["teachers"][t]["loss_per_word"])
            accuracies.append(entry["masked_lm"]["teachers"][t]["piece_accuracy"])
            fertility.append(entry["vocabulary_fit"][t]["fertility"])
            unk.append(100 * entry["vocabulary_fit"][t]["unk_word_rate"])
            colors.append(palette[index % len(palette)])
    x = np.arange(len(labels))
    if not labels:  # only gold-only languages: nothing was scored
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no scored language", ha="center", va="center")
        _save_figure(fig, path)
        return
    fig, axes = plt.subplots(1, 3, figsize=(max(10, 1.1 * len(labels) * 3), 4))

    def bars(ax, cis, scale, title):
        values = np.array([c["value"] for c in cis]) * scale
        low = np.array([c["low"] for c in cis]) * scale
        high = np.array([c["high"] for c in cis]) * scale
        err = np.clip(np.nan_to_num(np.stack([values - low, high - values])), 0, None)
        ax.bar(x, values, yerr=err, capsize=3, color=colors)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x, labels, fontsize=7)

    bars(axes[0], losses, 1.0, "loss per masked word (95% CI)")
    bars(axes[1], accuracies, 100.0, "masked-piece accuracy % (95% CI)")
    axes[2].bar(x, fertility, color=colors)
    for i, share in enumerate(unk):
        axes[2].annotate(f"[UNK] {share:.1f}%", (x[i], fertility[i]), ha="center",
                         va="bottom", fontsize=7)
    axes[2].set_title("pieces per word; share of words with [UNK]", fontsize=10)
    axes[2].set_xticks(x, labels, fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def _save_figure(fig, path: str) -> None:
    """Saves a matplotlib figure as PNG to a local or gfile path, and closes it."""
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_report(report: Mapping, output_dir: str) -> dict[str, str]:
    """Writes report.json, report.md and report.png into output_dir; returns their paths."""
    tf.io.gfile.makedirs(output_dir)
    paths = {name: os.path.join(output_dir, name) for name in (REPORT_JSON, REPORT_MD, REPORT_PNG)}
    with tf.io.gfile.GFile(paths[REPORT_JSON], "w") as f:
        f.write(json.dumps(report, indent=1, ensure_ascii=False, default=_json_default) + "\n")
    with tf.io.gfile.GFile(paths[REPORT_MD], "w") as f:
        f.write(report_markdown(report))
    plot_report(report, paths[REPORT_PNG])
    return paths


def read_report(output_dir: str) -> dict:
    """Reads a report.json written by `write_report`."""
    with tf.io.gfile.GFile(os.path.join(output_dir, REPORT_JSON), "r") as f:
        return json.loads(f.read())
