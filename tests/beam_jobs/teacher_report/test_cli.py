"""The command line: flag errors naming the flag, and `python -m beam_jobs.teacher_report`
exiting 2 with an error naming the bad teacher."""

import pathlib
import subprocess
import sys

import pytest

from beam_jobs.teacher_report import cli, pipeline

REPO = pathlib.Path(__file__).resolve().parents[3]


def test_flag_errors_name_the_flag():
    with pytest.raises(pipeline.TeacherReportError, match="--teacher 'x=path'"):
        cli.parse_teacher_flag("x=path")
    with pytest.raises(pipeline.TeacherReportError, match="--corpus 'en'"):
        cli.parse_corpus_flag("en")
    with pytest.raises(pipeline.TeacherReportError, match=r"language 'fr' has no --corpus"):
        cli.config_from_flags(["a=/t/a:en,fr"], ["en=/c/en.txt"], output_dir="/tmp/o")
    with pytest.raises(pipeline.TeacherReportError,
                       match=r"--corpus de=\.\.\.: no --teacher serves"):
        cli.config_from_flags(["a=/t/a:en"], ["en=/c/en.txt", "de=/c/de.txt"],
                             output_dir="/tmp/o")
    config = cli.config_from_flags(["a=gs://b/t/a:en"], ["en=/c/en.txt"], output_dir="/tmp/o")
    assert config.teachers["a"].path == "gs://b/t/a"
    with pytest.raises(pipeline.TeacherReportError, match=r"--languages: \['xx'\] not in"):
        pipeline.check_languages(config, ["xx"])


@pytest.mark.slow
def test_cli_error_names_the_field(tmp_path):
    corpus = tmp_path / "en.txt"
    corpus.write_text("hello world\n")
    result = subprocess.run(
        [sys.executable, "-m", "beam_jobs.teacher_report",
         f"--teacher=bad={tmp_path / 'missing'}:en", f"--corpus=en={corpus}",
         f"--output_dir={tmp_path / 'out'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "teachers.bad" in result.stderr and "cannot load the teacher" in result.stderr
