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
