"""MirroredStrategy over two logical CPUs gives the loss and gradients of one device."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

TOLERANCE = 1e-5


def test_two_replicas_match_one_device(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=str(REPO_ROOT))
    script = REPO_ROOT / "tests" / "student" / "distributed_check.py"
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-5000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == 2
    for name in ("mirrored", "mirrored_distributed_input"):
        # Same initial weights (same seed), then the same global batch split over 2 replicas.
        assert result[f"{name}_initial_weights_diff"] == 0.0
        assert result[f"{name}_loss_diff"] <= TOLERANCE, result
        assert result[f"{name}_grad_diff"] <= TOLERANCE, result
    assert result["train_loss_diff"] <= TOLERANCE, result
    assert result["train_weights_diff"] <= TOLERANCE, result
    assert result["examples_seen"]["mirrored"] == result["examples_seen"]["one_device"]
