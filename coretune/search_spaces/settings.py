"""A sweep's settings beside its grid: the budget axis, resources and the scheduler.

The budget is a grid axis too (a list of values, one trial budget each); resources and
the scheduler are execution only (they never enter a key).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from coretune.spec import BudgetSpec, Frozen


class ResourcesSpec(Frozen):
    """Per trial (fractional GPUs pack trials), and for the teacher service actor."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    teacher_gpu: float = Field(0.0, ge=0)
    #: where online-KD teachers run (coretune.driver.teachers): auto picks node replicas
    #: when students share views, else the student's own process
    teacher_placement: Literal["auto", "single", "node", "process"] = "auto"


class BudgetAxisSpec(Frozen):
    """The sweep's budget: a :class:`~coretune.spec.BudgetSpec` whose ``value`` may be a
    list, making compute a sweep axis (Hard Truths' scaling study: ``unit: full_epochs``,
    ``value: [2, 5, 10, 20, 50]``)."""

    unit: Literal["epochs", "iterations", "images", "full_epochs"] = "epochs"
    value: int | float | list[int | float] = 30
    max_reports: int = Field(20, ge=1)

    @field_validator("value")
    @classmethod
    def _values(cls, v: Any, info: ValidationInfo) -> Any:
        values = v if isinstance(v, list) else [v]
        if not values:
            raise ValueError("value must hold at least one budget")
        if len(set(values)) != len(values):
            raise ValueError(f"value lists a budget twice: {v!r}")
        for value in values:  # each as a trial's budget would be checked
            BudgetSpec(unit=info.data.get("unit", "epochs"), value=value)
        return v

    def expand(self) -> list[BudgetSpec]:
        """One trial budget per listed value."""
        values = self.value if isinstance(self.value, list) else [self.value]
        return [BudgetSpec(unit=self.unit, value=v, max_reports=self.max_reports)
                for v in values]


class SchedulerSpec(Frozen):
    name: Literal["fifo", "asha"] = "fifo"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)
