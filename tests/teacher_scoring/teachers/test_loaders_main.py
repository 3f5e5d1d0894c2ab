"""`python -m teacher_scoring.teachers.loaders`: prints its answer, not the libraries' INFO logs."""

import os
import re
import subprocess
import sys

from teacher_scoring.teachers import export
from tests.conftest import REPO_ROOT, trained_vocab
from tests.teacher_scoring.teachers.test_teacher_core import random_bert

# Python log lines: absl's "I1129 02:20:33.938 ... file.py:71]" and TensorFlow's "INFO:tensorflow:".
PYTHON_INFO_LINE = re.compile(r"^(I\d{4} \d\d:\d\d:\d\d|INFO:)")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    # The user's environment as it is (no TF_CPP_MIN_LOG_LEVEL): what a new user sees.
    return subprocess.run([sys.executable, "-m", "teacher_scoring.teachers.loaders", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))


def test_prints_the_answer_and_info_logs_only_with_verbosity(tmp_path):
    vocab = trained_vocab("en", 700, lower_case=True)
    model, _ = random_bert(len(vocab))
    # A Google-BERT checkpoint without teacher.json in a folder named like Google's release:
    # the casing comes from the name, and the tf-models converter table maps its variables
    # (before, its INFO logs made ~450 lines of output).
    folder = export.export_google_bert_checkpoint(
        model.encoder_network, model.masked_lm, vocab, str(tmp_path / "uncased_L-2_H-32_A-4"),
        lower_case=True)
    os.remove(os.path.join(folder, "teacher.json"))

    result = run_cli(folder, "--text", "the [MASK] of the world")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["teacher", "uncased_L-2_H-32_A-4"]
    assert "casing       uncased" in lines
    assert lines[-1].startswith("[MASK] 1 ") and lines[-1].count("(") == 5  # 5 predictions
    assert len(lines) == 8, result.stdout
    python_logs = [line for line in result.stderr.splitlines() if PYTHON_INFO_LINE.match(line)]
    assert not python_logs, python_logs
    # What remains on stderr is TensorFlow's C++ start-up (written at import, before flags).
    assert len(result.stderr.splitlines()) < 30, result.stderr

    verbose = run_cli(folder, "-v", "0")
    assert verbose.returncode == 0, verbose.stderr
    assert "casing       uncased" in verbose.stdout
    assert re.search(r"^I\d{4} .*uncased from the Google release name uncased_L-2_H-32_A-4$",
                     verbose.stderr, re.MULTILINE), verbose.stderr
    # The converter's per-variable rename lines stay out even then.
    assert "Converted: bert/" not in verbose.stderr


def test_a_bad_folder_exits_1_with_the_message(tmp_path):
    result = run_cli(str(tmp_path / "missing"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"error: {tmp_path / 'missing'}: no such file or directory" in result.stderr
