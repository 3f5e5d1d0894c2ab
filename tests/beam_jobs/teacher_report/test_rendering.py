"""The report's files and console summary: a gold-only report assembled by hand, and the demo
report."""

import json

import pytest

from beam_jobs import job_config
from beam_jobs.teacher_report import cli, pipeline, rendering, vocabulary_fit
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


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SETTINGS = {"config": "test", "sample_paragraphs": 2, "seed": 3, "bootstrap_samples": 10,
            "top_k": 8, "seq_length": 64, "max_predictions_per_seq": 10, "masked_lm_prob": 0.15,
            "whole_word_masking": True}


def test_a_gold_only_report_is_assembled_and_rendered_without_masked_lm(tmp_path):
    """make_report and the files of a report whose only language is gold-only (fast: no
    pipeline): no masked-LM section or pairs, the PNG says nothing was scored."""
    config = job_config.from_dict({
        "student_vocab": "-", "output_dir": str(tmp_path), "logits_dtype": "float32",
        "compression": "", "copies_mode": "best", **cli.FLAG_DEFAULTS,
        "languages": {"en": {"corpus": ["/c/en.txt"], "num_shards": 1},
                      "lb": {"corpus": ["/c/lb.txt"], "num_shards": 1,
                             "tokenizer_teacher": "a"}},
        "teachers": {"a": {"format": "auto", "path": "/t/a", "languages": ["en"]},
                     "b": {"format": "auto", "path": "/t/b", "languages": ["en"]}}},
        source="test")
    fit_lines = [
        {"language": "lb", "teacher": "a", "counts": vocabulary_fit.FitCounts(
            documents=2, words=10, pieces=14, unk_pieces=3, unk_words=3, whole_words=6,
            characters=40, uncovered_characters=5).to_dict()},
        {"language": "lb", "teacher": "b", "counts": vocabulary_fit.FitCounts(
            documents=2, words=10, pieces=12, whole_words=8, characters=40).to_dict()}]
    counters = {"lb/lines": 4, "lb/report_blank_lines": 1, "lb/report_sampled": 2,
                "en/lines": 9}
    report = pipeline.make_report(config, ["lb"], [], fit_lines, counters,
                                  {"a": SPECIALS + ["x", "z"], "b": SPECIALS + ["y", "z"]},
                                  SETTINGS, {"a": False, "b": True})
    entry = report["languages"]["lb"]
    assert list(report["languages"]) == ["lb"] and entry["gold_only"]
    assert entry["teachers"] == ["a", "b"] and entry["uncased"] == {"a": False, "b": True}
    assert entry["masked_lm"] is None
    assert entry["sample"] == {"lines_read": 4, "blank_lines": 1, "paragraphs": 2}
    assert entry["vocabulary_fit"]["a"]["unk_word_rate"] == pytest.approx(0.3)
    assert entry["vocabulary_fit"]["b"]["fertility"] == pytest.approx(1.2)
    assert entry["recommendation"]["mode"] == "gold_only"
    assert entry["recommendation"]["teachers"] == ["a"]
    assert entry["recommendation"]["warnings"][0].startswith("b's tokenizer covers the text")
    assert report["union"]["student_size"] == 5 + 3
    assert report["union"]["teachers"]["a"]["adds"] == 1

    report["seconds"] = 1.0
    paths = rendering.write_report(report, str(tmp_path / "out"))
    assert rendering.read_report(str(tmp_path / "out")) == json.loads(json.dumps(report))
    markdown = (tmp_path / "out" / rendering.REPORT_MD).read_text()
    assert "| lb | a | gold_only | no teacher scores lb" in markdown
    assert "| lb | b | uncased | 10 | 0.00% |" in markdown
    assert "## Teachers of one language compared" not in markdown
    assert "| a | 7 | 7 | 1 |" in markdown        # its vocabulary, the union without it, adds
    png = (tmp_path / "out" / rendering.REPORT_PNG).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and paths[rendering.REPORT_PNG].endswith("report.png")
    lines = rendering.summary_lines(report)
    assert lines[0].startswith("teacher report (2 paragraphs a language")
    assert lines[1] == ("  lb: gold-only, tokenized with a -- a: [UNK] words 30.00%; b: [UNK] "
                        "words 0.00%")
    assert lines[2].startswith("    warning: b's tokenizer covers the text better")
    assert lines[-1] == "  union: 8 student tokens; a adds 1, b adds 1"
