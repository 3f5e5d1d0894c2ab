"""The report's job: inputs refused before any work (naming the field), and a second run with
the same seed giving the same figures."""

import pytest

from beam_jobs.teacher_report import cli, pipeline
from tests.beam_jobs.teacher_report.conftest import SAMPLE


def test_run_report_refuses_a_missing_corpus_and_a_bad_teacher(tmp_path):
    corpus = tmp_path / "en.txt"
    config = cli.config_from_flags([f"a={tmp_path / 'nope'}:en"], [f"en={tmp_path / 'no.txt'}"],
                                  output_dir=str(tmp_path / "out"))
    with pytest.raises(pipeline.TeacherReportError, match=r"languages\.en\.corpus: .* matches no"):
        pipeline.run_report(config, str(tmp_path / "out"))
    corpus.write_text("hello world\n")
    config = cli.config_from_flags([f"a={tmp_path / 'nope'}:en"], [f"en={corpus}"],
                                  output_dir=str(tmp_path / "out"))
    with pytest.raises(pipeline.TeacherReportError, match=r"teachers\.a .*cannot load the teacher"):
        pipeline.run_report(config, str(tmp_path / "out"))
    with pytest.raises(pipeline.TeacherReportError, match="--sample_paragraphs must be >= 1"):
        pipeline.run_report(config, str(tmp_path / "out"), sample_paragraphs=0)


@pytest.mark.slow
def test_report_is_deterministic_for_a_seed(demo_report, tmp_path):
    """A second run (German only, the same seed) gives the same figures."""
    again = pipeline.run_report(demo_report["config"], str(tmp_path / "again"),
                          sample_paragraphs=SAMPLE, bootstrap_samples=300, languages=["de"])
    assert list(again["languages"]) == ["de"]
    assert again["languages"]["de"] == demo_report["report"]["languages"]["de"]
