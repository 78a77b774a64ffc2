"""What a schedule is (the data and its semantics); ``mgen_jax.sim`` executes one, ``mgen_jax.schedule`` finds one.

Execution model (DESIGN.md section 7, our choices written out):

- **Nodes** are the (unit, group) copies of the sharing tree; ``ROOT`` is the embedding. A node's parent is the node
  of the previous unit whose group contains its group. Task heads are tiny and always resident.
- **Residency**: the ``pinned`` nodes (and the heads) are programmed once and stay on the chip. The remaining
  crossbars form a swap region that holds one unpinned node at a time; it must be at least as large as the largest
  unpinned node. Running an unpinned node that is not the one in the swap region programs it (every weight cell
  written once) - a *load*.
- **Batching**: the batch's requests are cut, in their given order, into groups of ``batch_size`` consecutive
  requests. Each group runs the tree depth-first from the root: one step per node that some request of the group
  needs, processing those requests; at a node with several children the children run in ``child_order`` (default:
  task branches that leave the trunk before the trunk continues).
- **Activations**: a step's output (n x H x output_bits per request it processed) stays live until the last of its
  children in the group has run (a leaf's output goes to the heads at once). Live tensors take the on-chip buffer
  first come, first served; the part of a tensor that does not fit is written to DRAM and read back by each consumer.
  Nothing is dropped and recomputed: with ISAAC's energies a DRAM round trip of an activation costs far less than
  recomputing even one unit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Iterator, Sequence

from mgen_jax.errors import ConfigError
from mgen_jax.hw.tree import SharingTree

Node = tuple[int, frozenset[int]]


def root(tree: SharingTree) -> Node:
    return (-1, frozenset(range(tree.num_tasks)))


def tree_nodes(tree: SharingTree) -> list[Node]:
    """Every (unit, group) node, by unit then group order."""
    return [(u, g) for u in range(tree.num_units) for g in tree.groups[u]]


def children_of(tree: SharingTree) -> dict[Node, list[Node]]:
    kids: dict[Node, list[Node]] = {root(tree): list((0, g) for g in tree.groups[0])}
    for u in range(tree.num_units):
        for g in tree.groups[u]:
            kids[(u, g)] = [(u + 1, c) for c in tree.groups[u + 1] if c <= g] if u + 1 < tree.num_units else []
    return kids


def node_name(node: Node) -> str:
    u, g = node
    return "embedding" if u < 0 else f"{u}:" + "+".join(map(str, sorted(g)))


def default_child_order(children: Sequence[Node]) -> tuple[Node, ...]:
    """Smaller groups (task branches leaving the trunk) first, the trunk continuation last; ties by task index."""
    return tuple(sorted(children, key=lambda n: (len(n[1]), sorted(n[1]))))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Residency (pinned nodes), batch size (requests per group) and child order at branching nodes."""

    pinned: frozenset
    batch_size: int
    child_order: tuple = ()  # ((node, (child, child, ...)), ...) for nodes whose order is not the default
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"schedule batch_size must be an integer >= 1, got {self.batch_size!r}")

    def ordered_children(self, node: Node, children: Sequence[Node]) -> tuple[Node, ...]:
        for key, order in self.child_order:
            if key == node:
                if sorted(map(node_name, order)) != sorted(map(node_name, children)):
                    raise ConfigError(f"schedule child order at {node_name(node)} does not list its children")
                return tuple(order)
        return default_child_order(children)

    def describe(self) -> dict:
        return {
            "name": self.name, "batch_size": self.batch_size,
            "pinned": sorted(node_name(n) for n in self.pinned),
            "child_order": {node_name(k): [node_name(c) for c in v] for k, v in self.child_order},
        }


def groups_of(num_requests: int, batch_size: int) -> list[range]:
    return [range(i, min(i + batch_size, num_requests)) for i in range(0, num_requests, batch_size)]


def dfs_steps(tree: SharingTree, schedule: Schedule, kids: dict[Node, list[Node]],
              needed: dict[Node, bool]) -> list[Node]:
    """Nodes that run for one group, in execution order (root first); ``needed[node]`` says if the group needs it."""
    out: list[Node] = []

    def visit(node: Node) -> None:
        out.append(node)
        for child in schedule.ordered_children(node, kids[node]):
            if needed[child]:
                visit(child)

    visit(root(tree))
    return out


def count_child_orders(tree: SharingTree) -> int:
    """How many ``child_orders`` there are: the product over branching nodes of (number of children)!."""
    return math.prod(math.factorial(len(c)) for c in children_of(tree).values() if len(c) > 1)


def child_orders(tree: SharingTree) -> Iterator[tuple]:
    """Every combination of child permutations at the branching nodes (the order space the exact solver searches),
    generated lazily: the first k cost O(k) memory however many there are (15 tasks at one node: 15! of them)."""
    kids = children_of(tree)
    branching = [(n, c) for n, c in kids.items() if len(c) > 1]

    def combos(i: int) -> Iterator[tuple]:
        if i == len(branching):
            yield ()
            return
        node, children = branching[i]
        for order in itertools.permutations(children):  # itertools.product would materialise every permutation
            for rest in combos(i + 1):
                yield ((node, order),) + rest

    yield from combos(0)
