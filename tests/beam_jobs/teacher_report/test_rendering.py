"""The report's files and console summary, on the demo report."""

import json

import pytest

from beam_jobs.teacher_report import pipeline, rendering
from tests.beam_jobs.teacher_report.conftest import SAMPLE


@pytest.mark.slow
def test_report_files_and_summary(demo_report):
    out, report = demo_report["out"], demo_report["report"]
    assert rendering.read_report(str(out)) == json.loads(json.dumps(report))
    markdown = (out / rendering.REPORT_MD).read_text()
    for heading in ("## Recommendations", "## Vocabulary fit", "## Masked-LM quality",
                    "## Teachers of one language compared", "## What the union costs",
                    "## The rule"):
        assert heading in markdown
    assert (out / rendering.REPORT_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(pipeline.TMP_PREFIX)]
    lines = rendering.summary_lines(report)
    assert lines[0].startswith(f"teacher report ({SAMPLE} paragraphs")
    assert any(line.startswith("  en: ") for line in lines)
    assert any(line.startswith("  de: ende_uncased (single teacher)") for line in lines)
    assert lines[-1].startswith("  union: ")
    with pytest.raises(pipeline.TeacherReportError, match="already holds"):
        pipeline.run_report(demo_report["config"], str(out))
