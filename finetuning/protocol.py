"""The fine-tuning protocol: which learning rates are tried, how one is chosen, and the presets.

`converge` (the default) is the same for every model, teacher, student or `scratch`:

  * a grid of peak learning rates, by default fitted to the encoder's width
    (`default_grid`): small encoders want far larger rates than BERT-base (Turc et al. 2019
    grid {3e-4, 1e-4, 5e-5, 3e-5} for BERT-Tiny..Medium with few epochs; MicroBERT fine-tunes
    its 3x100 encoders at 1e-3 with patience). One run per rate with the first seed; the rate
    with the best dev score is chosen (ties: the smaller rate), and the other seeds run at it;
  * each run trains until dev has not improved for `patience` epochs (at most `max_epochs`),
    counted once dev has risen above its first epoch's score (`patience_after_rise`), keeping
    its best dev epoch (finetuning.training.fine_tune).

`paper_table7` is the paper's Table 7 for BERT-base encoders (NER, POS): learning rate 3e-5,
batch 32, 10 epochs with 10% warm-up and linear decay, the best of the 10 epochs on dev (no
early stopping, no grid).
"""

from __future__ import annotations

import dataclasses
from finetuning import training

CONVERGE = "converge"
PAPER_TABLE7 = "paper_table7"
PROTOCOLS = (CONVERGE, PAPER_TABLE7)

# (widest hidden size, grid): the first row whose size is >= the encoder's applies.
DEFAULT_GRIDS = ((256, (3e-4, 1e-3, 3e-3)),
                 (512, (1e-4, 3e-4, 1e-3)),
                 (None, (2e-5, 3e-5, 5e-5)))


def default_grid(hidden_size: int) -> tuple[float, ...]:
    """The learning-rate grid for an encoder of this hidden size (see DEFAULT_GRIDS)."""
    for widest, grid in DEFAULT_GRIDS:
        if widest is None or hidden_size <= widest:
            return grid
    raise AssertionError("unreachable")


def parse_learning_rates(value: str | None) -> tuple[float, ...] | None:
    """`auto` (or None) -> None (the default grid per encoder); `1e-4,3e-4` -> the rates.

    Raises:
      ValueError: a rate that is not a positive number, or a rate given twice.
    """
    if value is None or value.strip() == "auto":
        return None
    rates = []
    for part in value.split(","):
        try:
            rate = float(part)
        except ValueError as error:
            raise ValueError(f"--learning_rates {value!r}: {part!r} is not a number (give "
                             "`auto` or comma-separated rates)") from error
        if not rate > 0:
            raise ValueError(f"--learning_rates {value!r}: {part!r} is not positive")
        if rate in rates:
            raise ValueError(f"--learning_rates {value!r}: {part!r} given twice")
        rates.append(rate)
    return tuple(sorted(rates))


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A protocol: the shared hyperparameters and the learning-rate grid.

    Attributes:
      name: one of PROTOCOLS.
      hparams: the hyperparameters of every run (its learning_rate is replaced per run).
      learning_rates: the grid; None: `default_grid` of each encoder.
    """

    name: str
    hparams: training.Hyperparameters
    learning_rates: tuple[float, ...] | None = None

    def grid(self, hidden_size: int) -> tuple[float, ...]:
        return self.learning_rates or default_grid(hidden_size)


def paper_table7(hparams: training.Hyperparameters) -> Protocol:
    """Table 7: 3e-5, batch 32, 10 epochs, 10% warm-up, linear decay, best of 10 on dev."""
    return Protocol(PAPER_TABLE7, dataclasses.replace(
        hparams, batch_size=32, learning_rate=3e-5, max_epochs=10, patience=10,
        warmup_ratio=0.1, schedule="linear"), (3e-5,))


def choose(grid_scores: dict[float, float]) -> float:
    """The rate with the best dev score; ties go to the smaller rate."""
    if not grid_scores:
        raise ValueError("no learning rate was tried")
    return min(grid_scores, key=lambda rate: (-grid_scores[rate], rate))


def rate_name(rate: float) -> str:
    """A learning rate as a folder name: `lr-0.001`."""
    return f"lr-{rate:g}"


def describe(protocol: Protocol) -> str:
    """One line that says what the protocol does."""
    rates = protocol.learning_rates or "auto (by encoder width: " + "; ".join(
        f"hidden <= {w}: {', '.join(f'{r:g}' for r in g)}" if w else
        f"wider: {', '.join(f'{r:g}' for r in g)}" for w, g in DEFAULT_GRIDS) + ")"
    hp = protocol.hparams
    return (f"protocol {protocol.name}: learning rates {rates}, chosen on dev with the first "
            f"seed; at most {hp.max_epochs} epochs, patience {hp.patience}"
            f"{' (counted once dev has risen)' if hp.patience_after_rise else ''}, batch "
            f"{hp.batch_size}, warm-up {hp.warmup_ratio:g}, {hp.schedule} schedule, word "
            f"pooling {hp.word_pooling}")
