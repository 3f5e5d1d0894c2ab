"""`python student/train.py` end to end: skip policy, resume by itself, export, fail fast."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT
from tests.student import shard_fixtures
from tests.student.conftest import TINY_CONFIG, make_shards


def _train(*args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "student/train.py", "--config_file", TINY_CONFIG,
                           *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_cli_skips_a_corrupt_shard_resumes_and_exports(tmp_path, student_vocab, scored_shards):
    de = make_shards(tmp_path / "de", student_vocab, {"de": 40}, shards_per_language=2)
    bad = os.path.join(de, "de-00000-of-00002.tfrecord")
    shard_fixtures.truncate_file(bad)
    model_dir = tmp_path / "run"
    common = ["--student_vocab", student_vocab, "--shards", f"en={scored_shards['en']}",
              "--shards", f"de={de}", "--model_dir", str(model_dir), "--strategy", "one_device",
              "--skip_corrupt_shards"]
    first = _train(*common, "--params_override", "train.steps=4", "--noexport")
    assert first.returncode == 0, first.stderr[-5000:]
    skipped = json.loads((model_dir / "skipped_shards.json").read_text())
    assert [s["path"] for s in skipped] == [bad]
    assert (model_dir / "ckpt-4.index").exists() and not (model_dir / "export").exists()
    assert "examples/s" in first.stderr and "left" in first.stderr

    # Restarted with more steps: resumes from ckpt-4 by itself, then exports.
    second = _train(*common, "--params_override", "train.steps=6")
    assert second.returncode == 0, second.stderr[-5000:]
    assert "restored" in second.stderr and "ckpt-4" in second.stderr
    assert "step 6/6" in second.stderr and "step 2/" not in second.stderr
    export = model_dir / "export"
    for name in ("vocab.txt", "params.yaml", "encoder_config.yaml", "saved_model/saved_model.pb",
                 "checkpoint/checkpoint", "checkpoint/bert_model-6.index"):
        assert (export / name).exists(), name
    info = json.loads((model_dir / "run_info.json").read_text())
    assert info["languages"] == ["en", "de"] and len(info["skipped_shards"]) == 1


def test_cli_fails_fast_naming_file_and_field(tmp_path, student_vocab, scored_shards):
    model_dir = tmp_path / "run"
    run = _train("--student_vocab", student_vocab, "--shards", f"en={scored_shards['en']}",
                 "--model_dir", str(model_dir),
                 "--params_override", "model.encoder.bert_v2.vocab_size=512")
    assert run.returncode != 0
    assert (f"{os.path.join(student_vocab, 'vocab.txt')} has 300 tokens but config field "
            "'model.encoder.bert_v2.vocab_size' is 512") in run.stderr
    assert not model_dir.exists()
