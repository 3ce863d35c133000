"""Learning-rate schedules of TLT's classification spec (lr_config), per optimizer step.

They are Keras ``LearningRateSchedule`` objects registered for serialisation, so a checkpoint
saved mid-training restores the schedule together with the optimizer's step counter and a resumed
run continues on exactly the same curve.
"""

from __future__ import annotations

import math

import keras

from tlt.errors import SpecError

__all__ = ["StepSchedule", "SoftAnnealSchedule", "CosineSchedule", "SoftStartAnnealingSchedule",
           "build_lr_schedule", "build_soft_start_annealing"]


@keras.saving.register_keras_serializable(package="tlt")
class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``learning_rate * gamma ** floor(epoch / step_size)``."""

    def __init__(self, learning_rate: float, steps_per_epoch: int, step_size: int, gamma: float):
        self.learning_rate = float(learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.step_size = int(step_size)
        self.gamma = float(gamma)

    def __call__(self, step):
        from keras import ops

        epoch = ops.floor(ops.cast(step, "float32") / self.steps_per_epoch)
        return self.learning_rate * ops.power(self.gamma, ops.floor(epoch / self.step_size))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "steps_per_epoch": self.steps_per_epoch,
                "step_size": self.step_size, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="tlt")
class SoftAnnealSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over ``soft_start`` of training, then a division at each annealing point."""

    def __init__(self, learning_rate: float, total_steps: int, soft_start: float,
                 annealing_points: list[float], annealing_divider: float):
        self.learning_rate = float(learning_rate)
        self.total_steps = max(1, int(total_steps))
        self.soft_start = float(soft_start)
        self.annealing_points = [float(p) for p in annealing_points]
        self.annealing_divider = float(annealing_divider)

    def __call__(self, step):
        from keras import ops

        progress = ops.cast(step, "float32") / self.total_steps
        rate = ops.convert_to_tensor(self.learning_rate)
        if self.soft_start > 0:
            rate = rate * ops.minimum(1.0, (progress + 1.0 / self.total_steps) / self.soft_start)
        for point in self.annealing_points:
            rate = ops.where(progress >= point, rate / self.annealing_divider, rate)
        return rate

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "soft_start": self.soft_start, "annealing_points": self.annealing_points,
                "annealing_divider": self.annealing_divider}


@keras.saving.register_keras_serializable(package="tlt")
class CosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over ``soft_start``, then cosine decay to ``learning_rate * min_lr_ratio``."""

    def __init__(self, learning_rate: float, total_steps: int, soft_start: float, min_lr_ratio: float):
        self.learning_rate = float(learning_rate)
        self.total_steps = max(1, int(total_steps))
        self.soft_start = float(soft_start)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step):
        from keras import ops

        progress = ops.cast(step, "float32") / self.total_steps
        warm = self.soft_start
        decay_progress = ops.clip((progress - warm) / max(1e-8, 1.0 - warm), 0.0, 1.0)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * decay_progress))
        low = self.learning_rate * self.min_lr_ratio
        rate = low + (self.learning_rate - low) * cosine
        if warm > 0:
            rate = ops.where(progress < warm,
                             self.learning_rate * (progress + 1.0 / self.total_steps) / warm, rate)
        return rate

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "soft_start": self.soft_start, "min_lr_ratio": self.min_lr_ratio}


def build_lr_schedule(lr_config, *, steps_per_epoch: int, epochs: int):
    """Build the schedule named by ``lr_config.scheduler`` ("step", "soft_anneal", "cosine")."""
    name = (lr_config.scheduler or "step").lower()
    total = steps_per_epoch * epochs
    if name == "step":
        return StepSchedule(lr_config.learning_rate, steps_per_epoch, lr_config.step_size,
                            lr_config.gamma)
    if name == "soft_anneal":
        return SoftAnnealSchedule(lr_config.learning_rate, total, lr_config.soft_start,
                                  list(lr_config.annealing_points), lr_config.annealing_divider)
    if name == "cosine":
        return CosineSchedule(lr_config.learning_rate, total, lr_config.soft_start,
                              lr_config.min_lr_ratio)
    raise SpecError(f"train_config.lr_config.scheduler must be one of step, soft_anneal, cosine; "
                    f"got {lr_config.scheduler!r}", field="train_config.lr_config.scheduler")


@keras.saving.register_keras_serializable(package="tlt")
class SoftStartAnnealingSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """DetectNet_v2's soft_start_annealing_schedule, as a function of training progress p in [0, 1].

    The rate rises exponentially from ``min_lr`` to ``max_lr`` while p < soft_start, stays at
    ``max_lr`` until p reaches ``annealing``, then decays exponentially back to ``min_lr`` at p = 1.
    """

    def __init__(self, min_lr: float, max_lr: float, total_steps: int, soft_start: float,
                 annealing: float):
        self.min_lr = float(min_lr)
        self.max_lr = float(max_lr)
        self.total_steps = max(1, int(total_steps))
        self.soft_start = float(soft_start)
        self.annealing = float(annealing)

    def __call__(self, step):
        from keras import ops

        progress = ops.clip(ops.cast(step, "float32") / self.total_steps, 0.0, 1.0)
        ratio = self.max_lr / self.min_lr
        warm = self.min_lr * ops.power(ratio, progress / max(self.soft_start, 1e-8))
        cool = self.max_lr * ops.power(1.0 / ratio, (progress - self.annealing)
                                       / max(1.0 - self.annealing, 1e-8))
        rate = ops.where(progress < self.soft_start, warm, self.max_lr)
        return ops.where(progress >= self.annealing, cool, rate)

    def get_config(self):
        return {"min_lr": self.min_lr, "max_lr": self.max_lr, "total_steps": self.total_steps,
                "soft_start": self.soft_start, "annealing": self.annealing}


def build_soft_start_annealing(learning_rate_config, *, steps_per_epoch: int, epochs: int):
    """Schedule of a detection ``training_config.learning_rate``."""
    s = learning_rate_config.soft_start_annealing_schedule
    if s.min_learning_rate <= 0 or s.max_learning_rate < s.min_learning_rate:
        raise SpecError("training_config.learning_rate.soft_start_annealing_schedule needs "
                        f"0 < min_learning_rate <= max_learning_rate, got {s.min_learning_rate} and "
                        f"{s.max_learning_rate}",
                        field="training_config.learning_rate.soft_start_annealing_schedule")
    return SoftStartAnnealingSchedule(s.min_learning_rate, s.max_learning_rate,
                                      steps_per_epoch * epochs, s.soft_start, s.annealing)
