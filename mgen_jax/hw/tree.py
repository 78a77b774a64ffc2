"""The sharing tree: which tasks share the computation of each unit (DESIGN.md section 2).

For every unit u the tasks are partitioned into groups; the tasks of one group run that unit once, on the same
hidden state. A group at unit u+1 never spans two groups of unit u (once branched, tasks never merge again), so the
groups form a tree. The one-trunk model of DESIGN.md (branch point b_t: task t uses the trunk for units
0..b_t-1 and its own units b_t..U-1) is ``SharingTree.from_branch_points``; task-cluster trees fit the same
structure.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from mgen_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True, slots=True)
class SharingTree:
    """groups[u] = tuple of disjoint frozensets of task indices covering 0..T-1."""

    num_tasks: int
    groups: tuple[tuple[frozenset[int], ...], ...]

    def __post_init__(self) -> None:
        everyone = frozenset(range(self.num_tasks))
        if self.num_tasks <= 0:
            raise ConfigError(f"a sharing tree needs at least one task, got {self.num_tasks}")
        for u, partition in enumerate(self.groups):
            seen: set[int] = set()
            for group in partition:
                if not group or seen & group:
                    raise ConfigError(f"sharing tree unit {u}: groups must be non-empty and disjoint, got {partition}")
                seen |= group
            if seen != everyone:
                raise ConfigError(f"sharing tree unit {u}: groups {partition} do not cover tasks 0..{self.num_tasks - 1}")
            if u > 0:
                for group in partition:
                    if not any(group <= parent for parent in self.groups[u - 1]):
                        raise ConfigError(
                            f"sharing tree unit {u}: group {sorted(group)} merges tasks that branched apart at unit {u - 1}"
                        )

    @classmethod
    def from_branch_points(cls, branch_points: Sequence[int], num_units: int) -> "SharingTree":
        """One trunk; task t shares units 0..b_t-1 and runs its own units b_t..U-1 (0 <= b_t <= U)."""
        b = list(branch_points)
        if not b:
            raise ConfigError("branch points: need one per task, got none")
        for t, value in enumerate(b):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= num_units:
                raise ConfigError(f"branch point of task {t} must be an integer in 0..{num_units}, got {value!r}")
        groups = []
        for u in range(num_units):
            trunk = frozenset(t for t, bt in enumerate(b) if bt > u)
            own = [frozenset([t]) for t, bt in enumerate(b) if bt <= u]
            groups.append(((trunk,) if trunk else ()) + tuple(own))
        return cls(len(b), tuple(groups))

    @property
    def num_units(self) -> int:
        return len(self.groups)

    def branch_points(self) -> tuple[int, ...]:
        """b_t for a one-trunk tree: the number of leading units in which t shares a group with another task.

        A task alone in a group is running its own unit. Raises ConfigError if the tree is not one-trunk.
        """
        b = []
        for t in range(self.num_tasks):
            bt = 0
            while bt < self.num_units and len(self.group_of(t, bt)) > 1:
                bt += 1
            b.append(bt)
        if SharingTree.from_branch_points(b, self.num_units).node_count() != self.node_count():
            raise ConfigError("this sharing tree has several branches of shared units; it has no branch points")
        return tuple(b)

    def group_of(self, task: int, unit: int) -> frozenset[int]:
        for group in self.groups[unit]:
            if task in group:
                return group
        raise ConfigError(f"task {task} is not in the tree")

    def executed_nodes(self, task_set: Iterable[int]) -> list[tuple[int, frozenset[int]]]:
        """(unit, group) nodes that one request with this task set runs, each exactly once."""
        tasks = frozenset(task_set)
        bad = [t for t in tasks if not 0 <= t < self.num_tasks]
        if bad:
            raise ConfigError(f"request names task(s) {bad}, but the tree has tasks 0..{self.num_tasks - 1}")
        return [(u, g) for u, partition in enumerate(self.groups) for g in partition if g & tasks]

    def node_count(self) -> int:
        """Distinct (unit, group) nodes, i.e. unit copies that must be stored."""
        return sum(len(partition) for partition in self.groups)
