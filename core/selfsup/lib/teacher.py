"""A momentum (EMA) teacher: the target network of BYOL, MoCo, DINO and data2vec, written once.

The teacher is a copy of a student module whose weights follow the student's as an exponential
moving average, ``teacher = m * teacher + (1 - m) * student``, applied once per optimizer step
with the momentum ``m`` scheduled over the run (BYOL's cosine increase from ``base`` to ``final``,
Grill et al. 2020, section 3.2; data2vec's linear increase, Baevski et al. 2022, section 3.3).

Rules, which the tests check:

* **Driven by optimizer steps, never by forward calls.** The core calls a task's optional
  ``after_step(step, total_steps)`` once per optimizer step, right after the update, whatever
  ``grad_accum`` is; the task calls :meth:`EMATeacher.update` there. With ``grad_accum = 4`` a step
  has four forward calls and one teacher update.
* **Idempotent per step.** The teacher remembers the last step it absorbed (a buffer, so it is in
  the checkpoint): calling ``update`` again for that step, or an earlier one, changes nothing.
* **In the checkpoint.** The copy is a registered submodule of the task, so its weights, the step
  it reached and the last momentum are in the run's ``state_dict``: a resumed run continues with the
  same teacher, and divergence handling restores it with the student.
* **No parameter sharing between teacher and student.** The teacher owns deep copies of every
  parameter and buffer (ties *within* the student, e.g. tied embeddings, stay tied within the copy).
  Its parameters never require gradients, so no optimizer updates them and DDP does not synchronise
  them: every rank applies the same update to the same (synchronised) student, so the teachers stay
  equal. The student is referenced, not registered: its parameters are not duplicated in the
  ``state_dict``.
* **Starts from the student's weights as training starts.** The copy is made when the task is built,
  before ``[backbones.X.init]`` weights are loaded into the student; so the teacher copies the
  student again at its first use (the core calls :meth:`EMATeacher.start` before each step's forward
  passes; a first forward or update outside the loop does the same), unless a checkpoint says it
  already has.
* **Buffers.** Floating-point buffers (BatchNorm running statistics) are averaged like parameters;
  other buffers (``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from torch import nn

Schedule = Literal["cosine", "linear", "constant"]


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """BYOL's schedule: ``final - (final - base) * (cos(pi * step / total_steps) + 1) / 2``; ``base``
    at step 0, ``final`` at ``total_steps`` (clamped beyond)."""
    progress = min(max(step, 0), total_steps) / max(total_steps, 1)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def linear_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """data2vec's schedule: linear from ``base`` at step 0 to ``final`` at ``total_steps``, then constant."""
    progress = min(max(step, 0), total_steps) / max(total_steps, 1)
    return base + (final - base) * progress


class _Hidden:
    """Holds a module without registering it (``nn.Module.__setattr__`` registers modules only)."""

    def __init__(self, module: nn.Module):
        self.module = module


class EMATeacher(nn.Module):
    """A frozen copy of ``student`` updated as an exponential moving average of it.

    ``teacher(*args, **kwargs)`` runs the copy under ``torch.no_grad()``; :meth:`update` moves it
    toward the student once per optimizer step. ``schedule``: ``"cosine"`` (BYOL, MoCo v3, DINO),
    ``"linear"`` (data2vec) or ``"constant"`` (``base_momentum`` throughout). ``ramp_steps``: the
    schedule reaches ``final_momentum`` after this many steps (default: the run's total steps).
    """

    def __init__(self, student: nn.Module, *, base_momentum: float = 0.996, final_momentum: float = 1.0,
                 schedule: Schedule = "cosine", ramp_steps: int | None = None):
        super().__init__()
        if not 0.0 <= base_momentum <= 1.0 or not 0.0 <= final_momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got base {base_momentum}, final {final_momentum}")
        if schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"unknown momentum schedule {schedule!r}: use 'cosine', 'linear' or 'constant'")
        self._student = _Hidden(student)
        self.module = copy.deepcopy(student).requires_grad_(False)
        self.base_momentum, self.final_momentum, self.schedule = base_momentum, final_momentum, schedule
        self.ramp_steps = ramp_steps
        # the last optimizer step absorbed (-1: not yet a copy of the student), and the momentum used then
        self.register_buffer("step", torch.tensor(-1, dtype=torch.long))
        self.register_buffer("momentum", torch.tensor(base_momentum, dtype=torch.float64))

    @property
    def student(self) -> nn.Module:
        return self._student.module

    def momentum_at(self, step: int, total_steps: int) -> float:
        """The momentum of the update that follows optimizer step ``step`` (1-based) of ``total_steps``."""
        if self.schedule == "constant":
            return self.base_momentum
        ramp = self.ramp_steps or total_steps
        rule = cosine_momentum if self.schedule == "cosine" else linear_momentum
        return rule(step - 1, ramp, self.base_momentum, self.final_momentum)

    def _pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(teacher tensor, student tensor) for every parameter and buffer, each tied tensor once."""
        student = dict(self.student.named_parameters()) | dict(self.student.named_buffers())
        teacher = dict(self.module.named_parameters()) | dict(self.module.named_buffers())
        if student.keys() != teacher.keys():
            raise RuntimeError("the student's parameters and buffers no longer match the teacher's copy: "
                               f"{sorted(student.keys() ^ teacher.keys())[:5]}")
        return [(t.data, student[k].detach()) for k, t in teacher.items()]

    @torch.no_grad()
    def sync(self) -> None:
        """Make the teacher an exact copy of the student (done at the first use of a fresh teacher)."""
        for t, s in self._pairs():
            t.copy_(s)
        self.step.fill_(max(int(self.step), 0))

    def start(self) -> None:
        """Copy the student if this teacher has not yet (a fresh teacher, not one from a checkpoint). The
        core calls it before every optimizer step's forward passes; under FSDP this is where the copy
        must happen (inside a forward the parameters are gathered, outside they are shards)."""
        if int(self.step) < 0:
            self.sync()

    @torch.no_grad()
    def update(self, step: int, total_steps: int, momentum: float | None = None) -> float:
        """Absorb optimizer step ``step`` (1-based; call from the task's ``after_step``): ``teacher = m *
        teacher + (1 - m) * student`` with ``m = momentum`` or the scheduled value. Returns ``m``. A step at
        or before the last one absorbed changes nothing (and returns the momentum used then)."""
        self.start()
        if step <= int(self.step):
            return float(self.momentum)
        m = self.momentum_at(step, total_steps) if momentum is None else float(momentum)
        pairs = self._pairs()
        floats = [(t, s.to(t.dtype)) for t, s in pairs if t.is_floating_point()]
        if floats:  # t += (1 - m) * (s - t), i.e. t = m * t + (1 - m) * s, in one fused call
            torch._foreach_lerp_([t for t, _ in floats], [s for _, s in floats], 1.0 - m)
        for t, s in pairs:
            if not t.is_floating_point():
                t.copy_(s)
        self.step.fill_(step)
        self.momentum.fill_(m)
        return m

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.start()
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"momentum {self.base_momentum} -> {self.final_momentum} ({self.schedule})"
