"""configs/scoring/demo.yaml is runnable: make_demo_workspace creates what it names, and the
job's pre-launch validation accepts it (teachers load and score, vocab and corpora match)."""

import os
import pathlib

import pytest

from beam_jobs import job_config, pipeline
from beam_jobs.make_demo_workspace import make_demo_workspace

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_workspace_satisfies_the_demo_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink(REPO / "data", tmp_path / "data")
    make_demo_workspace("workspace", vocab_size=1500, hidden_size=32, num_layers=1)
    config = job_config.load_job_config(str(REPO / "configs" / "scoring" / "demo.yaml"))
    job = pipeline.prepare_job(config)
    assert sorted(job.teachers) == ["demo_en", "demo_ende"]
    assert job.teacher_entries["demo_ende"].lower_case is True
    assert job.teacher_entries["demo_en"].format == "hf_folder"
    assert job.config.output_dir == str(tmp_path / "workspace" / "scored" / "demo")
    assert config.copies_mode_of("en") == "best" and config.copies_mode_of("de") == "single"
