"""XLA (`runtime.jit_compile`) against the plain TF step over several training steps.

tests/student/test_trainer.py checks one batch's loss and gradients; this one trains: the same
tiny student from the same weights on the same batches, 5 optimizer steps with and without the
XLA-compiled forward/backward, and every step's losses and gradient norm must agree within
RTOL (measured: at most 2.5e-7 relative, float32 rounding). Dropout is off: under XLA the
dropout layers' tf.random.Generator draws other masks than the plain step from the same state
(about 1e-3 relative difference in the losses from the first step), i.e. another random stream,
not a numerical difference (docs/student.md, "XLA").
"""

import numpy as np

from student import config as config_lib
from student import experiment
from tests.student.conftest import TINY_CONFIG

RTOL = 1e-5
STEPS = 5
NO_DROPOUT = ("model.encoder.bert_v2.dropout_rate=0.0,"
              "model.encoder.bert_v2.attention_dropout_rate=0.0")


def _first_steps(model_dir, shards, vocab, jit: bool) -> dict[str, np.ndarray]:
    config = config_lib.load_config(TINY_CONFIG, [
        NO_DROPOUT, f"runtime.jit_compile={str(jit).lower()}",
        f"train.steps={STEPS},train.steps_per_loop={STEPS},train.checkpoint_interval={STEPS}"])
    assert config.runtime.jit_compile is jit
    trainer = experiment.build_trainer(config, experiment.prepare_data(config, vocab, shards),
                                       str(model_dir))
    return trainer.run_steps(STEPS)


def test_first_losses_with_and_without_jit_compile_agree(tmp_path, scored_shards,
                                                         student_vocab):
    plain = _first_steps(tmp_path / "plain", scored_shards, student_vocab, jit=False)
    xla = _first_steps(tmp_path / "xla", scored_shards, student_vocab, jit=True)
    assert len(plain["loss"]) == len(xla["loss"]) == STEPS
    # lambda anneals 1 -> 0 over the 5 steps, so both loss terms are exercised.
    np.testing.assert_allclose(plain["lambda"], 1.0 - np.arange(STEPS) / STEPS, atol=1e-7)
    np.testing.assert_array_equal(xla["lambda"], plain["lambda"])
    np.testing.assert_array_equal(xla["learning_rate"], plain["learning_rate"])
    for name in ("loss", "kd_loss", "mlm_loss", "grad_norm"):
        assert np.all(np.isfinite(plain[name])), name
        np.testing.assert_allclose(xla[name], plain[name], rtol=RTOL, atol=0, err_msg=name)
