import pytest

from mgen_jax.errors import ConfigError
from mgen_jax.hw import SharingTree


def test_from_branch_points_groups():
    tree = SharingTree.from_branch_points([0, 2, 4], num_units=4)
    assert tree.groups[0] == (frozenset({1, 2}), frozenset({0}))
    assert tree.groups[2] == (frozenset({2}), frozenset({0}), frozenset({1}))
    assert tree.node_count() == 2 + 2 + 3 + 3
    assert tree.branch_points() == (0, 2, 2)  # a task alone on the trunk runs its own unit


def test_executed_nodes_count_shared_once():
    tree = SharingTree.from_branch_points([4, 4, 1], num_units=4)
    nodes = tree.executed_nodes([0, 1])
    assert len(nodes) == 4  # tasks 0 and 1 share every unit
    assert len(tree.executed_nodes([0, 1, 2])) == 4 + 3
    assert len(tree.executed_nodes([2])) == 4


def test_invalid_trees():
    with pytest.raises(ConfigError, match="0..4"):
        SharingTree.from_branch_points([5], num_units=4)
    with pytest.raises(ConfigError, match="merges"):
        SharingTree(2, ((frozenset({0}), frozenset({1})), (frozenset({0, 1}),)))
    with pytest.raises(ConfigError, match="cover"):
        SharingTree(2, ((frozenset({0}),),))
    tree = SharingTree.from_branch_points([1, 1], num_units=2)
    with pytest.raises(ConfigError, match="task"):
        tree.executed_nodes([3])


def test_cluster_tree_has_no_branch_points():
    tree = SharingTree(4, (
        (frozenset({0, 1, 2, 3}),),
        (frozenset({0, 1}), frozenset({2, 3})),
    ))
    with pytest.raises(ConfigError, match="branch"):
        tree.branch_points()
    assert tree.node_count() == 3
