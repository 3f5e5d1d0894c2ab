"""The learning-rate grid: parsing, the default per encoder width, the dev-best choice; the
paper's Table 7 preset."""

import pytest

from finetuning import protocol, training


def test_parse_learning_rates():
    assert protocol.parse_learning_rates("auto") is None
    assert protocol.parse_learning_rates(None) is None
    assert protocol.parse_learning_rates("1e-3, 3e-4") == (3e-4, 1e-3)
    for value, message in (("1e-3,fast", "'fast' is not a number"), ("0,1e-3", "not positive"),
                           ("1e-3,0.001", "given twice")):
        with pytest.raises(ValueError, match=message):
            protocol.parse_learning_rates(value)


def test_default_grid_fits_the_encoder_width():
    assert protocol.default_grid(128) == (3e-4, 1e-3, 3e-3)
    assert protocol.default_grid(256) == (3e-4, 1e-3, 3e-3)
    assert protocol.default_grid(384) == (1e-4, 3e-4, 1e-3)
    assert protocol.default_grid(768) == (2e-5, 3e-5, 5e-5)
    converge = protocol.Protocol(protocol.CONVERGE, training.Hyperparameters())
    assert converge.grid(768) == (2e-5, 3e-5, 5e-5)
    fixed = protocol.Protocol(protocol.CONVERGE, training.Hyperparameters(), (1e-4,))
    assert fixed.grid(768) == (1e-4,)
    assert "auto (by encoder width" in protocol.describe(converge)


def test_choose_takes_the_dev_best_rate_and_the_smaller_on_ties():
    assert protocol.choose({1e-4: 0.8, 1e-3: 0.9, 3e-3: 0.85}) == 1e-3
    assert protocol.choose({1e-3: 0.9, 3e-4: 0.9}) == 3e-4
    with pytest.raises(ValueError, match="no learning rate"):
        protocol.choose({})
    assert protocol.rate_name(1e-3) == "lr-0.001" and protocol.rate_name(3e-5) == "lr-3e-05"


def test_paper_table7_preset():
    preset = protocol.paper_table7(training.Hyperparameters(batch_size=8, max_epochs=40,
                                                            patience=3, dropout=0.2))
    hp = preset.hparams
    assert (hp.batch_size, hp.learning_rate, hp.max_epochs, hp.patience, hp.warmup_ratio,
            hp.schedule) == (32, 3e-5, 10, 10, 0.1, "linear")
    assert hp.dropout == 0.2 and preset.learning_rates == (3e-5,)
