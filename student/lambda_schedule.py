"""lambda, the weight of the KD term in L = lambda * KD + (1 - lambda) * MLM.

MergeDistill anneals lambda through training as in Clark et al. (2019, "BAM! Born-Again
Multi-Task Networks"): the student starts from the teacher's distribution (lambda = 1) and ends on
the gold labels (lambda = 0), linearly in the step. A constant lambda is also supported
(lambda = 0: plain MLM, e.g. pretraining a teacher on gold labels only).
"""

from __future__ import annotations

import tensorflow as tf

from student import config as config_lib


class LambdaSchedule:
    """lambda(step): `constant` (= start) or `linear` (start -> end over anneal_steps, then end).

    Args:
      schedule: "constant" or "linear".
      start: lambda at step 0.
      end: lambda from `anneal_steps` on (linear).
      anneal_steps: length of the linear anneal (> 0 for linear).
    """

    def __init__(self, schedule: str, start: float, end: float = 0.0, anneal_steps: int = 1):
        if schedule not in config_lib.LAMBDA_SCHEDULES:
            raise ValueError(f"lambda schedule must be one of {config_lib.LAMBDA_SCHEDULES}, got "
                             f"{schedule!r}")
        if schedule == "linear" and anneal_steps <= 0:
            raise ValueError(f"a linear lambda schedule needs anneal_steps > 0, got {anneal_steps}")
        self.schedule = schedule
        self.start = float(start)
        self.end = float(end) if schedule == "linear" else float(start)
        self.anneal_steps = int(anneal_steps)

    @classmethod
    def from_config(cls, config: config_lib.StudentConfig) -> "LambdaSchedule":
        loss = config.loss
        steps = loss.lambda_anneal_steps or config.train.steps
        return cls(loss.lambda_schedule, loss.lambda_start, loss.lambda_end, steps)

    @property
    def always_zero(self) -> bool:
        """True when lambda is 0 at every step (no KD term, no teacher outputs needed)."""
        return self.start == 0.0 and self.end == 0.0

    def __call__(self, step) -> tf.Tensor:
        """float32 scalar lambda at `step` (a Python or tensor integer, 0-based)."""
        if self.schedule == "constant":
            return tf.constant(self.start, tf.float32)
        fraction = tf.minimum(tf.cast(step, tf.float32) / float(self.anneal_steps), 1.0)
        return tf.constant(self.start, tf.float32) + (self.end - self.start) * fraction

    def __repr__(self) -> str:
        if self.schedule == "constant":
            return f"LambdaSchedule(constant {self.start})"
        return f"LambdaSchedule(linear {self.start} -> {self.end} over {self.anneal_steps} steps)"
