"""experiments/dissimilar_report.py: the targets table, on results made up here."""

import json

from experiments import dissimilar_report


def _model(kind, name, mean, std=None):
    return dict(kind=kind, name=name, mean=mean, std=std, scores=[mean])


def _write(path, document):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")


def test_targets_give_each_value_and_whether_it_is_met(tmp_path):
    pos = dict(name="udpos", type="pos", language="en", models=[
        _model("lookup", "lookup", 0.80),
        _model("scratch", "teacher_en", 0.84, 0.005),
        _model("teacher", "teacher_en", 0.88, 0.005),
        _model("student", "kd", 0.86, 0.002),      # RDT -2.3%: within 3%
        _model("student", "gold", 0.845, 0.01),    # +0.5 over scratch, 2 std = 2.0: missed
        _model("student", "wide_kd", 0.875, 0.002)])  # RDT -0.6%: within 1%
    ner = dict(name="ner", type="ner", language="tr", models=[
        _model("lookup", "lookup", 0.60),
        _model("scratch", "teacher_tr", 0.50, 0.02),
        _model("teacher", "teacher_tr", 0.55, 0.02),   # +5 over scratch, 2 std = 4: met
        _model("student", "kd", 0.52, 0.01)])          # RDT -5.5%: missed
    zero = dict(name="ner", type="ner", language="zh", models=[
        _model("teacher", "teacher_zh", 0.0, 0.0), _model("student", "kd", 0.2, 0.1)])
    _write(tmp_path / "downstream" / "results.json", dict(tasks=[pos, ner, zero]))
    _write(tmp_path / "mlm" / "evaluation.json", dict(rows=[
        dict(language="en", teacher="teacher_en", students={
            "kd": dict(rdt=-8.0), "kd_at_20pct": dict(rdt=-40.0), "gold": dict(rdt=-12.5)}),
        dict(language="de", teacher=None, students={"kd": dict(rdt=None)})]))
    lines = dissimilar_report.targets_section(str(tmp_path))
    table = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]): line
             for line in lines if line.startswith("| ") and "---" not in line}
    def row(where, model, target):
        return table[(where, model, target)]
    assert row("udpos en", "teacher `teacher_en`", "above `lookup`").endswith(
        "| +8.00 points | yes |")
    assert row("udpos en", "teacher `teacher_en`", "above `scratch` by > 2 std").endswith(
        "| +4.00 (2 std 1.00) | yes |")
    assert row("udpos en", "student `kd`", "RDT ≥ -3%").endswith("| -2.3% | yes |")
    assert row("udpos en", "student `gold`", "above `scratch` by > 2 std").endswith(
        "| +0.50 (2 std 2.00) | **no** |")
    assert row("udpos en", "student `wide_kd`", "RDT ≥ -1%").endswith("| -0.6% | yes |")
    assert ("ner tr", "teacher `teacher_tr`", "above `lookup`") not in table  # POS only
    assert row("ner tr", "teacher `teacher_tr`", "above `scratch` by > 2 std").endswith(
        "| +5.00 (2 std 4.00) | yes |")
    assert row("ner tr", "student `kd`", "RDT ≥ -5%").endswith("| -5.5% | **no** |")
    assert row("ner zh", "student `kd`", "RDT ≥ -5%").endswith(
        "| n/a (the teacher scored 0) | **no** |")
    assert row("masked-LM en", "student `kd`", "RDT ≥ -10%").endswith("| -8.0% | yes |")
    assert row("masked-LM en", "student `gold`", "RDT ≥ -10%").endswith("| -12.5% | **no** |")
    assert not any("at_20pct" in key[1] or key[0] == "masked-LM de" for key in table)
    verdicts = [line.endswith("| yes |") for line in lines
                if line.endswith(("| yes |", "| **no** |"))]
    assert len(verdicts) == 13 and f"{sum(verdicts)} of 13 met." in lines


def test_no_results_no_section(tmp_path):
    assert dissimilar_report.targets_section(str(tmp_path)) == []
