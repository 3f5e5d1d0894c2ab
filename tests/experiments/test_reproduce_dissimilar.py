"""experiments/reproduce_dissimilar.py: every stage on tiny settings, then a resume.

Bundled text only: the demo corpora as training text, the UDHR as held-out text, the bundled
EWT / BOUN slices as downstream data (train and dev on the same slice: a smoke test of the
stages, not a measurement).
"""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from experiments import reproduce_dissimilar
from tests.conftest import REPO_ROOT

DATA = REPO_ROOT / "data"


def _student_config(folder):
    """configs/student/tiny.yaml sized by the union vocabulary, with an unfactorised embedding."""
    config = yaml.safe_load((REPO_ROOT / "configs" / "student" / "tiny.yaml").read_text())
    encoder = config["model"]["encoder"]["bert_v2"]
    encoder["vocab_size"] = 0
    encoder.pop("embedding_size", None)
    path = folder / "student_tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _command(workspace, *extra):
    languages = ("en", "tr", "de")
    return ([sys.executable, str(REPO_ROOT / "experiments" / "reproduce_dissimilar.py"),
             f"--workspace={workspace}", "--languages=en,tr", "--gold_only=de",
             "--gold_only_tokenizer=en"]
            + [f"--train_text={lang}={DATA / 'corpora' / 'demo' / f'{lang}.txt'}"
               for lang in languages]
            + [f"--dev_text={lang}={DATA / 'corpora' / 'udhr' / f'{lang}.txt'}"
               for lang in languages]
            + [f"--task=name=udpos,type=pos,language={lang},train={path},dev={path}"
               for lang, path in (("en", DATA / "downstream" / "en_ewt-ud-dev.200.conllu"),
                                  ("tr", DATA / "downstream" / "tr_boun-ud-dev.200.conllu"))]
            + ["--teachers=train", "--teacher_config=configs/teacher/tiny.yaml",
               "--teacher_steps=20",
               "--teacher_curve_points=4", "--teacher_vocab_size=600",
               f"--student_config={_student_config(workspace.parent)}", "--student_steps=10",
               "--transfer_every=3", "--dev_lines=60", "--finetune_seeds=1",
               "--finetune_max_epochs=1", "--finetune_learning_rates=3e-3",
               "--finetune_seq_length=32", "--finetune_max_train=24",
               "--finetune_max_eval=16"] + list(extra))


@pytest.mark.slow
def test_every_stage_runs_on_tiny_settings_and_resumes(tmp_path):
    workspace = tmp_path / "dissimilar"
    first = subprocess.run(_command(workspace), cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=1500)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    results = workspace / "results"
    # Two students at a time with one TensorFlow thread each (2 cores), the wide one first;
    # fine-tuning in two worker processes.
    students = re.findall(r"^\$ TF_NUM_INTRAOP_THREADS=(\d+) TF_NUM_INTEROP_THREADS=\d+ "
                          r".*student/train\.py.*--model_dir=\S+/students/(\w+) ",
                          first.stdout, re.M)
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    assert students == [(threads, "wide_kd"), (threads, "kd"), (threads, "gold")], students
    assert "--processes=2" in first.stdout
    # The teachers' and scratch fine-tuning started beside the students (no student flag), and
    # the finetune stage ended it before doing the rest.
    beside = re.search(r"^\$ \(beside the stage, nice 10\) (.*)$", first.stdout, re.M)
    assert beside and "finetuning.run" in beside.group(1) and "--student" not in beside.group(1)
    assert re.search(r"fine-tuning beside the students (stopped|had ended \(exit 0\)): \d+ runs "
                     r"finished there", first.stdout)
    assert {"[worker 0]", "[worker 1]"} <= set(re.findall(r"\[worker \d\]", first.stdout))

    # Teacher curves: a point at every kept checkpoint, the baselines, the flatness verdict.
    for lang in ("en", "tr"):
        curve = json.loads((results / "teacher_curves" / lang / "curve.json").read_text())
        assert [point["step"] for point in curve["curve"]] == [5, 10, 15, 20]
        assert curve["flatness"]["from_step"] == 15 and curve["flatness"]["to_step"] == 20
        assert isinstance(curve["flatness"]["flat"], bool)
        assert 0.0 < curve["baseline"]["frequent_token_accuracy"] < 1.0
        assert curve["total_tokens"] > 50
        assert (results / "teacher_curves" / lang / "curve.png").read_bytes()[:4] == b"\x89PNG"

    # Held-out masked-LM: teachers vs kd, gold and the wide student, end and 20%; de gold-only.
    mlm = json.loads((results / "mlm" / "evaluation.json").read_text())
    assert set(mlm["students"]) == {"kd", "gold", "wide_kd", "kd_at_20pct", "gold_at_20pct",
                                    "wide_kd_at_20pct"}
    assert mlm["gold_only_languages"] == ["de"]
    assert set(mlm["rdt_per_language"]) == {"en", "tr"}
    de_row = next(row for row in mlm["rows"] if row["language"] == "de")
    assert de_row["teacher"] is None and de_row["tokenizer_teacher"] == "teacher_en"
    params = (workspace / "students" / "wide_kd" / "params.yaml").read_text()
    assert "hidden_size: 64" in params  # twice the tiny config's 32
    for name in ("kd", "gold", "wide_kd"):
        curve = json.loads((results / "student_curves" / name / "curve.json").read_text())
        assert [point["step"] for point in curve["curve"]] == [2, 4, 6, 8, 10]
        assert set(curve["curve"][-1]["per_language"]) == {"en", "tr", "de"}

    # Downstream: every model on every task, in the Table 2 layout.
    downstream = json.loads((results / "downstream" / "results.json").read_text())
    text = json.dumps(downstream)
    for name in ("teacher_en", "teacher_tr", "kd", "gold", "wide_kd"):
        assert name in text
    kinds = {m["kind"] for t in downstream["tasks"] for m in t["models"]}
    assert kinds == {"lookup", "scratch", "teacher", "student"}
    stage_seconds = json.loads((results / "stage_seconds.json").read_text())
    assert set(stage_seconds) == {"teachers", "teacher_curves", "vocab", "scoring", "students",
                                  "evaluate", "finetune"}

    # The report puts every table side by side, with the paper's numbers.
    report = (results / "report.md").read_text()
    for heading in ("## Teachers: held-out masked-LM curve", "## Masked-LM, held-out",
                    "## Downstream", "## Wall time per stage"):
        assert heading in report
    assert "| udpos | en |" in report and "BERT 96.6" in report
    assert "| de (gold-only) | n/a |" in report
    for figure in ("teacher_curves.png", "student_curves.png"):
        assert (results / figure).read_bytes()[:4] == b"\x89PNG"

    # A rerun of the training stages finds everything done and keeps the recorded times.
    second = subprocess.run(_command(workspace, "--stages=teachers,teacher_curves,vocab,"
                                                "scoring,students"),
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("already there") == 2 + 2 + 1 + 2 + 3
    assert "$ " not in second.stdout
    assert json.loads((results / "stage_seconds.json").read_text()) == stage_seconds

    # Other held-out text under its own name: scored and evaluated beside dev, dev untouched.
    dev_evaluation = (results / "mlm" / "evaluation.json").read_text()
    third = subprocess.run(_command(workspace, "--heldout_name=other", "--dev_lines=30",
                                    "--stages=scoring,evaluate"),
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    other = json.loads((workspace / "results_other" / "mlm" / "evaluation.json").read_text())
    assert {row["language"] for row in other["rows"]} == {"en", "tr", "de"}
    assert sum(row["tokens"] for row in other["rows"]) < sum(row["tokens"] for row in mlm["rows"])
    assert (results / "mlm" / "evaluation.json").read_text() == dev_evaluation
    # The same name with other text is refused, naming the folder and the languages.
    clash = subprocess.run(_command(workspace, "--heldout_name=other", "--dev_lines=20",
                                    "--stages=scoring"),
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert clash.returncode != 0
    assert "scored/other was scored from other text for ['de', 'en', 'tr']" in clash.stderr


def test_refuses_a_gold_only_language_that_has_a_teacher(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "experiments" / "reproduce_dissimilar.py"),
         f"--workspace={tmp_path}", "--languages=en,de", "--gold_only=de"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--gold_only ['de'] also in --languages" in result.stderr


def test_refuses_a_missing_text_file_naming_the_flag(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "experiments" / "reproduce_dissimilar.py"),
         f"--workspace={tmp_path}", "--languages=en", "--gold_only=",
         f"--train_text=en={tmp_path / 'nope.txt'}", "--stages=vocab"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "nope.txt is missing: give --train_text en=FILE" in result.stderr


def test_shipped_teachers_give_the_curves_and_the_union(tmp_path):
    """The default: the shipped teachers, their curves from their training records."""
    workspace = tmp_path / "dissimilar"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "experiments" / "reproduce_dissimilar.py"),
         f"--workspace={workspace}", "--languages=en,tr,zh", "--gold_only=",
         "--stages=teachers,teacher_curves,vocab"]
        + [f"--train_text={lang}={DATA / 'corpora' / 'demo' / f'{lang}.txt'}"
           for lang in ("en", "tr", "zh")]
        + [f"--dev_text={lang}={DATA / 'corpora' / 'udhr' / f'{lang}.txt'}"
           for lang in ("en", "tr", "zh")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pretrain_teacher" not in result.stdout
    for lang in ("en", "tr", "zh"):
        record = json.loads((DATA / "teachers" / lang / "training_record.json").read_text())
        curve = json.loads((workspace / "results" / "teacher_curves" / lang /
                            "curve.json").read_text())
        assert curve["curve"] == record["curve"]
        assert curve["flatness"]["to_step"] == record["steps"]
        assert curve["flatness"]["window"] == 0.2
    union = (workspace / "vocab" / "vocab.txt").read_text(encoding="utf-8").split("\n")
    for lang in ("en", "tr", "zh"):
        vocab = (DATA / "teachers" / lang / "vocab.txt").read_text(encoding="utf-8").split("\n")
        assert set(vocab) - {""} <= set(union)
    # A teachers folder without a language's teacher is refused, naming what is missing.
    missing = subprocess.run(
        [sys.executable, str(REPO_ROOT / "experiments" / "reproduce_dissimilar.py"),
         f"--workspace={workspace}", "--languages=en,tr", "--gold_only=",
         f"--teachers_dir={tmp_path}", "--stages=teachers"]
        + [f"--train_text={lang}={DATA / 'corpora' / 'demo' / f'{lang}.txt'}"
           for lang in ("en", "tr")]
        + [f"--dev_text={lang}={DATA / 'corpora' / 'udhr' / f'{lang}.txt'}"
           for lang in ("en", "tr")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0
    assert f"{tmp_path / 'en'}: no teacher.json" in missing.stderr


def test_stage_jobs_run_two_at_a_time_and_a_failure_stops_the_stage(tmp_path):
    clock = reproduce_dissimilar.StageClock(str(tmp_path / "stage_seconds.json"))
    script = "import os, sys; print(os.environ['TF_NUM_INTRAOP_THREADS']); sys.exit({})"
    jobs = [([sys.executable, "-c", script.format(code)], str(tmp_path / f"job{code}.log"))
            for code in (0, 3)]
    with pytest.raises(SystemExit, match=r"stage failed \(exit 3\); full output in .*job3\.log"):
        clock.run_all("students", jobs, processes=2)
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    assert (tmp_path / "job0.log").read_text().strip() == threads
    # One at a time: TensorFlow's own thread count (no variable set).
    quiet = [([sys.executable, "-c", "import os; print(os.environ.get('TF_NUM_INTRAOP_THREADS'))"],
              str(tmp_path / "one.log"))]
    clock.run_all("students", quiet, processes=2)
    assert (tmp_path / "one.log").read_text().strip() == "None"
