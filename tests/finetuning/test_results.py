"""Results: mean ± std over seeds, RDT (the project's sign), Table 2 layout, JSON/Markdown/PNG."""

import json

import numpy as np
import pytest

from finetuning import results
from student import evaluate

TASKS = [dict(name="pos", type="pos", language="en", metric="accuracy", split="dev"),
         dict(name="pos", type="pos", language="tr", metric="accuracy", split="dev"),
         dict(name="ner", type="ner", language="tr", metric="f1", split="test")]
FEATURES = {"train": dict(windows=10, pieces=100, unk_pieces=5),
            "dev": dict(windows=4, pieces=40, unk_pieces=1)}


def record(task, language, model, kind, seed, dev, test=None):
    return dict(task=task, language=language, model=model, kind=kind, seed=seed,
                description=f"{kind} x", features=FEATURES,
                result=dict(best_epoch=seed, seconds=2.0, dev=dict(score=dev),
                            test=None if test is None else dict(score=test)))


RECORDS = (
    [record("pos", "en", "bert_en", "teacher", s, d) for s, d in ((1, 0.90), (2, 0.92))]
    + [record("pos", "en", "kd", "student", s, d) for s, d in ((1, 0.88), (2, 0.86))]
    + [record("pos", "en", "gold", "student", s, d) for s, d in ((1, 0.80), (2, 0.82))]
    + [record("pos", "tr", name, kind, s, d) for name, kind, d in
       (("berturk", "teacher", 0.80), ("tr_other", "teacher", 0.60), ("kd", "student", 0.84),
        ("gold", "student", 0.70)) for s in (1, 2)]
    + [record("ner", "tr", name, kind, s, 0.5, test) for name, kind, test in
       (("berturk", "teacher", 0.50), ("kd", "student", 0.55)) for s in (1, 2)])


@pytest.fixture(scope="module")
def aggregated():
    return results.aggregate(TASKS, RECORDS, dict(epochs=3), ["kd", "gold"])


def test_means_stds_and_the_test_score_when_there_is_one(aggregated):
    by = {(t["name"], t["language"], m["name"]): m for t in aggregated["tasks"]
          for m in t["models"]}
    teacher = by[("pos", "en", "bert_en")]
    assert teacher["mean"] == pytest.approx(0.91)
    assert teacher["std"] == pytest.approx(np.std([0.90, 0.92], ddof=1))
    assert teacher["seeds"] == [1, 2] and teacher["best_epochs"] == [1, 2]
    assert by[("ner", "tr", "kd")]["mean"] == pytest.approx(0.55)  # test, not dev (0.5)
    assert by[("ner", "tr", "kd")]["dev_scores"] == [0.5, 0.5]
    # Teachers first (by name), then students in the order given.
    assert [m["name"] for m in aggregated["tasks"][1]["models"]] == ["berturk", "tr_other", "kd",
                                                                     "gold"]
    single = results.aggregate(TASKS[:1], RECORDS[:1], {}, [])
    assert single["tasks"][0]["models"][0]["std"] is None


def test_rdt_uses_the_projects_definition_and_sign(aggregated):
    rdt = aggregated["rdt"]
    en = evaluate.rdt(0.87, 0.91)
    tr = np.mean([evaluate.rdt(0.84, 0.80), evaluate.rdt(0.84, 0.60)])  # mean over teachers
    assert rdt["pos"]["kd"]["per_language"] == {"en": pytest.approx(en), "tr": pytest.approx(tr)}
    assert rdt["pos"]["kd"]["average"] == pytest.approx((en + tr) / 2)
    assert rdt["ner"]["kd"]["average"] == pytest.approx(10.0)  # 0.55 vs 0.50: student better
    assert rdt["pos"]["gold"]["per_language"]["en"] < 0
    assert "gold" not in rdt["ner"]  # no gold run on ner


def test_rdt_is_undefined_where_a_teacher_scores_zero():
    records = [record("ner", "tr", "t", "teacher", 1, 0.0), record("ner", "tr", "kd", "student",
                                                                   1, 0.2),
               record("ner", "zh", "t", "teacher", 1, 0.5), record("ner", "zh", "kd", "student",
                                                                   1, 0.6)]
    tasks = [dict(name="ner", type="ner", language=lang, metric="f1", split="dev")
             for lang in ("tr", "zh")]
    out = results.aggregate(tasks, records, {}, ["kd"])
    assert out["rdt"]["ner"]["kd"]["per_language"] == {"tr": None, "zh": pytest.approx(20.0)}
    assert out["rdt"]["ner"]["kd"]["average"] is None
    assert "| **RDT (%)** | student `kd` | — |" in results.to_markdown(out)
    json.dumps(out, allow_nan=False)  # valid JSON: no NaN


def test_markdown_has_the_table_2_layout(aggregated):
    text = results.to_markdown(aggregated)
    lines = text.splitlines()
    assert lines[0] == "| language | model | pos (acc, dev) | ner (F1, test) |"
    assert "| en | teacher `bert_en` | 91.00 ± 1.41 | — |" in lines
    assert "| en | student `kd` | 87.00 ± 1.41 | — |" in lines
    assert "| tr | teacher `berturk` | 80.00 ± 0.00 | 50.00 ± 0.00 |" in lines
    assert "| tr | student `gold` | 70.00 ± 0.00 | — |" in lines
    kd = aggregated["rdt"]["pos"]["kd"]["average"]
    assert f"| **RDT (%)** | student `kd` | {kd:+.1f} | +10.0 |" in lines
    assert "| **RDT (%)** | student `gold` |" in text and text.index("teacher `bert_en`") < \
        text.index("teacher `berturk`")
    assert "- RDT `pos`, `kd`:" in text and "2 seed(s)" in text


def test_write_outputs(tmp_path, aggregated):
    paths = results.write(aggregated, str(tmp_path / "out"))
    assert json.loads(open(paths["json"], encoding="utf-8").read())["rdt"]["ner"]["kd"][
        "average"] == pytest.approx(10.0)
    assert open(paths["md"], encoding="utf-8").read() == results.to_markdown(aggregated)
    with open(paths["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_baselines_come_first_and_marks_say_what_is_wrong(tmp_path):
    def run(model, kind, seed, dev, converged=True):
        entry = record("pos", "en", model, kind, seed, dev)
        entry["result"].update(converged=converged, learning_rate=1e-3, epochs_trained=9,
                               train=dict(score=0.99),
                               dev=dict(score=dev, seen_unseen=dict(
                                   seen=dict(accuracy=0.95), unseen=dict(accuracy=dev - 0.3))))
        entry["grid"] = {"0.0003": 0.5, "0.001": dev}
        return entry

    records = ([run("lookup", "lookup", 0, 0.80)]
               + [run("en", "scratch", s, d) for s, d in ((1, 0.82), (2, 0.84))]
               + [run("en", "teacher", s, d) for s, d in ((1, 0.90), (2, 0.92))]
               + [run("kd", "student", s, d) for s, d in ((1, 0.84), (2, 0.86))]
               + [run("weak", "student", s, d, converged=s == 1) for s, d in ((1, 0.70),
                                                                              (2, 0.74))])
    out = results.aggregate(TASKS[:1], records, {}, ["kd", "weak"])
    models = out["tasks"][0]["models"]
    assert [(m["kind"], m["name"]) for m in models] == [
        ("lookup", "lookup"), ("scratch", "en"), ("teacher", "en"), ("student", "kd"),
        ("student", "weak")]
    marks = {m["name"] + m["kind"]: m["marks"] for m in models}
    assert marks["enteacher"] == [] and marks["enscratch"] == []
    # kd: 0.85 vs scratch 0.83, spread 0.0141 -> above by more than the spread.
    assert marks["kdstudent"] == []
    assert marks["weakstudent"] == ["below_lookup", "not_above_scratch", "not_converged"]
    # Every model chose the larger of its two rates: each is told so.
    edge = [w for w in out["warnings"] if "is the largest of the grid" in w]
    assert len(edge) == 4 and "scratch en: the chosen learning rate 0.001" in edge[0]
    rest = [w for w in out["warnings"] if w not in edge]
    assert len(rest) == 3 and "weak (72.00) is below lookup (80.00)" in rest[0]
    assert "1 of 2 runs stopped at --max_epochs" in rest[2]
    teacher = models[2]
    assert teacher["learning_rate"] == 1e-3 and teacher["train_score"] == pytest.approx(0.99)
    assert teacher["dev_seen"] == pytest.approx(0.95)
    assert teacher["dev_unseen"] == pytest.approx(0.61)
    text = results.to_markdown(out)
    assert "| en | `lookup` | 80.00 |" in text
    assert "| en | student `weak` | 72.00 ± 2.83†‡* |" in text
    assert "| pos | en | teacher `en` | 0.001 (0.0003: 50.0, 0.001: 90.0) | 1/9, 2/9 | 2/2 | " \
           "99.0 | 95.0 / 61.0 |" in text
    assert "- **warning**: pos/en: student weak (72.00) is below lookup" in text
    with open(results.write(out, str(tmp_path))["png"], "rb") as f:  # hatched baseline bars
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # A teacher not above its own scratch copy is marked too.
    close = [r for r in records if r["kind"] != "student"]
    close[1]["result"]["dev"]["score"] = 0.90
    close[2]["result"]["dev"]["score"] = 0.92
    marked = results.aggregate(TASKS[:1], close, {}, [])
    assert marked["tasks"][0]["models"][2]["marks"] == ["not_above_scratch"]
