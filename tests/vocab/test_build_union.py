"""Tests for the vocab.build_union CLI (end to end via subprocess, and its `run` function)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.vocab.conftest import BERT_NAME
from vocab import build_union
from vocab.union import StudentVocab, StudentVocabError


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "vocab.build_union", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def specs(teacher_files) -> list[str]:
    return [f"--teacher={name}={path}" for name, path in teacher_files.items()]


def test_cli_end_to_end_and_refusing_a_non_empty_output(teacher_files, tmp_path):
    out = tmp_path / "student_vocab"
    result = run_cli(*specs(teacher_files), f"--output={out}")
    assert result.returncode == 0, result.stderr
    assert "student vocab:" in result.stdout
    for name in teacher_files:
        assert f"  {name}: " in result.stdout
    assert "overlap en/de" in result.stdout

    loaded = StudentVocab.load(str(out))
    assert loaded.teacher_names == list(teacher_files)
    assert loaded.tokens == StudentVocab.from_vocab_files(teacher_files).tokens
    assert f"sha256 {loaded.sha256}" in result.stdout
    teachers_json = json.loads((out / "teachers.json").read_text())
    assert [t["path"] for t in teachers_json["teachers"]] == list(teacher_files.values())
    assert teachers_json["teachers"][-1]["unused_dropped"] == 994

    refused = run_cli(*specs(teacher_files), f"--output={out}")
    assert refused.returncode == 1
    assert "not empty" in refused.stderr and "--overwrite" in refused.stderr
    assert str(out) in refused.stderr


def test_run_overwrite_replaces_the_folder(teacher_files, tmp_path):
    out = tmp_path / "v"
    first = build_union.run(specs_plain(teacher_files), str(out))
    only_two = {n: teacher_files[n] for n in ("zh", BERT_NAME)}
    with pytest.raises(StudentVocabError, match="--output .*not empty; pass --overwrite"):
        build_union.run(specs_plain(only_two), str(out))
    second = build_union.run(specs_plain(only_two), str(out), overwrite=True)
    loaded = StudentVocab.load(str(out))
    assert loaded.teacher_names == ["zh", BERT_NAME]
    assert loaded.sha256 == second.sha256 != first.sha256
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["bert_uncased.npy", "zh.npy"]


def specs_plain(teacher_files) -> list[str]:
    return [f"{name}={path}" for name, path in teacher_files.items()]


def test_bad_teacher_specs_are_named(teacher_files, tmp_path):
    en = teacher_files["en"]
    out = str(tmp_path / "out")
    cases = [
        (f"en{en}", r"--teacher 'en.*': expected NAME=PATH .*no '='"),
        (f"={en}", r"--teacher '=.*': the teacher name before '=' is empty"),
        ("en=", r"--teacher 'en=': the vocab path after '=' is empty"),
        (f"en/x={en}", r"--teacher 'en/x=.*': teacher name 'en/x' is not allowed"),
        (f"en={tmp_path}/nope.txt", r"--teacher 'en=.*nope\.txt': vocab file .*nope\.txt.* "
                                    r"does not exist"),
        (f"en={tmp_path}", r"is a folder; give its vocab\.txt"),
    ]
    for spec, pattern in cases:
        with pytest.raises(StudentVocabError, match=pattern):
            build_union.run([spec], out)
    with pytest.raises(StudentVocabError, match=r"--teacher 'en=.*': teacher name 'en' is "
                                                r"already used by --teacher 'en=.*'"):
        build_union.run([f"en={en}", f"de={teacher_files['de']}", f"en={teacher_files['zh']}"],
                        out)
    with pytest.raises(StudentVocabError, match="at least one --teacher"):
        build_union.run([], out)
    assert not os.path.exists(out)  # nothing written on a refusal


def test_unreadable_vocab_file_is_named(tmp_path):
    bad = tmp_path / "bad_vocab.txt"
    bad.write_text("[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(StudentVocabError, match=r"teacher 'xx': .*bad_vocab\.txt: special "
                                                r"token\(s\) \['\[MASK\]'\] missing"):
        build_union.run([f"xx={bad}"], str(tmp_path / "out"))


def test_cli_reports_a_bad_spec_on_stderr(tmp_path):
    result = run_cli("--teacher=en_no_equals_sign", f"--output={tmp_path / 'o'}")
    assert result.returncode == 1
    assert "--teacher 'en_no_equals_sign': expected NAME=PATH" in result.stderr
