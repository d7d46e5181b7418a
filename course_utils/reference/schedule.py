"""The learning-rate schedule of the Transformer (Vaswani et al., 2017, section 5.3).

    lrate(s) = factor * d_model^-0.5 * min(s^-0.5, s * warmup_steps^-1.5),   s = 1, 2, ...

The rate grows linearly for the first ``warmup_steps`` steps, peaks at ``s = warmup_steps``
(where both terms equal ``warmup_steps^-0.5``) and then decays as ``1/sqrt(s)``. The paper
uses ``d_model = 512``, ``warmup_steps = 4000`` and ``factor = 1`` with Adam
(beta1 = 0.9, beta2 = 0.98, eps = 1e-9); "Noam" is the name of the schedule in the paper's
own code, after its co-author Noam Shazeer.

How it plugs into PyTorch's :class:`~torch.optim.lr_scheduler.LRScheduler` protocol, with
the steps counted from 1:

* ``NoamScheduler(optimizer, ...)`` performs LRScheduler's initial step: ``last_epoch``
  becomes 0 and every param group's ``lr`` is set to ``lrate(1)``, so the first
  ``optimizer.step()`` uses the rate of step 1;
* each ``scheduler.step()``, called after ``optimizer.step()``, adds 1 to ``last_epoch``:
  after ``k`` calls the optimizer holds ``lrate(k + 1)``, the rate of the next update.

In short: the rate the optimizer holds is always ``lrate(last_epoch + 1)``. Every param
group gets that same rate; the ``lr`` the optimizer was created with is replaced (and kept
by LRScheduler as ``base_lrs`` only). ``state_dict()`` saves ``last_epoch`` with the
hyperparameters, so a scheduler restored with ``load_state_dict`` continues the sequence.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from course_utils.course.guard import answer_key


@answer_key("NoamScheduler")
def noam_lr(step: int, d_model: int, warmup_steps: int, factor: float = 1.0) -> float:
    """``factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)`` for ``step >= 1``."""
    if step < 1:
        raise ValueError(f"the schedule counts steps from 1, got step={step}")
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


@answer_key("NoamScheduler")
class NoamScheduler(LRScheduler):
    """Linear warm-up for ``warmup_steps`` steps, then decay as ``1/sqrt(step)``.

    Args:
        optimizer: the optimizer whose param groups' ``lr`` this scheduler sets.
        d_model: the model width; the rate scales as ``d_model**-0.5``.
        warmup_steps: the step at which the rate peaks (``>= 1``).
        factor: a constant multiplier (1.0 in the paper).

    After construction the optimizer holds ``lrate(1)``; after ``k`` calls of ``step()`` it
    holds ``lrate(k + 1)`` (see the module docstring).
    """

    def __init__(self, optimizer: Optimizer, d_model: int, warmup_steps: int,
                 factor: float = 1.0) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be at least 1, got {warmup_steps}")
        # Set before LRScheduler.__init__, which already calls get_lr() once.
        self.d_model = d_model
        self.warmup_steps = warmup_steps
        self.factor = factor
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        """The rate of the next update, one entry per param group: ``lrate(last_epoch + 1)``."""
        step = self.last_epoch + 1  # last_epoch is 0 right after construction
        lr = noam_lr(step, self.d_model, self.warmup_steps, self.factor)
        return [lr] * len(self.optimizer.param_groups)
