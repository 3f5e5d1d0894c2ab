"""README command (1): run_demo.py runs the whole pipeline end to end (tiny steps here)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_demo_runs_every_stage_and_resumes(tmp_path):
    workspace = tmp_path / "demo"
    command = [sys.executable, str(REPO_ROOT / "run_demo.py"), f"--workspace={workspace}",
               "--languages=en,tr", "--student_steps=20"]
    first = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("1/7 corpora", "2/7 teachers", "3/7 vocab", "4/7 scoring", "5/7 student",
                  "6/7 evaluate", "7/7 fill-mask"):
        assert stage in first.stdout

    # The shipped teachers are used as they are: nothing is pretrained.
    assert "pretrain_teacher" not in first.stdout
    assert f"teacher_tr: {REPO_ROOT / 'data' / 'teachers' / 'tr'}: 2 x 128" in first.stdout
    # Every artifact the demo announces is there.
    assert (workspace / "vocab" / "maps" / "teacher_tr.npy").exists()
    for split in ("train", "dev"):
        for lang in ("en", "tr"):
            assert (workspace / "scored" / split / lang / "manifest.json").exists()
    assert (workspace / "students" / "kd" / "export" / "saved_model").exists()
    tokenizer = json.loads((workspace / "students" / "kd" / "export" / "tokenizer" /
                            "student_tokenizer.json").read_text())
    assert tokenizer["languages"] == {"tr": "teacher_tr", "en": "teacher_en"}
    result = json.loads((workspace / "evaluation" / "evaluation.json").read_text())
    assert {(row["language"], row["teacher"]) for row in result["rows"]} == {
        ("en", "teacher_en"), ("tr", "teacher_tr")}
    assert all(row["tokens"] > 100 for row in result["rows"])
    assert (workspace / "evaluation" / "evaluation.png").read_bytes()[:4] == b"\x89PNG"
    assert "| en | teacher_en |" in first.stdout
    # The student fills a masked held-out sentence of each language from its export.
    fill = first.stdout.split("7/7 fill-mask")[1]
    for lang in ("en", "tr"):
        assert f"  {lang}: the [MASK] hides " in fill and f"  [{lang}] " in fill
    assert fill.count("  [MASK] 1: ") == 2
    # ... and each teacher fills the same [MASK] (its top logits in its own vocabulary).
    assert fill.count("[MASK] 1     ") == 2
    assert "teacher      teacher_en" in fill and "teacher      teacher_tr" in fill

    # A second run skips every finished stage and evaluates again.
    second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("already there") >= 4


def test_demo_refuses_bad_languages(tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "run_demo.py"),
                             f"--workspace={tmp_path}", "--languages=en,xx"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--languages: need two or more of ['en', 'tr', 'zh']" in result.stderr
