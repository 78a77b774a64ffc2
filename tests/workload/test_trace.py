import numpy as np
import pytest

from mgen_jax.errors import ConfigError
from mgen_jax.workload import Trace, assign_subsets, fixed_trace, parse_subsets, trace_moments


def test_moments_per_subset():
    mask = np.array([[1, 0], [1, 0], [1, 1]], bool)
    m = trace_moments(Trace(np.array([2, 4, 10]), mask, ("a", "b")))
    order = np.argsort(m.subset_mask.sum(axis=1))
    assert np.allclose(m.prob[order], [2 / 3, 1 / 3])
    assert np.allclose(m.mean_tokens[order], [3, 10])
    assert np.allclose(m.mean_tokens_sq[order], [10, 100])


def test_parse_and_assign_subsets():
    subsets = parse_subsets("a+b:0.25, b:0.75", ("a", "b"))
    assert subsets == {(0, 1): 0.25, (1,): 0.75}
    t1 = assign_subsets(fixed_trace(2, 5, num_requests=400), subsets, seed=3)
    t2 = assign_subsets(fixed_trace(2, 5, num_requests=400), subsets, seed=3)
    assert np.array_equal(t1.task_mask, t2.task_mask)
    assert 0.15 < t1.task_mask[:, 0].mean() < 0.35 and t1.task_mask[:, 1].all()
    with pytest.raises(ConfigError, match="sum to 1"):
        parse_subsets("a:0.5", ("a", "b"))
    with pytest.raises(ConfigError, match="unknown task"):
        parse_subsets("c:1", ("a", "b"))


def test_bad_traces():
    with pytest.raises(ConfigError, match=">= 1"):
        Trace(np.array([0, 3]), np.ones((2, 1), bool), ("a",))
    with pytest.raises(ConfigError, match="runs no task"):
        Trace(np.array([3, 3]), np.array([[True], [False]]), ("a",))
    with pytest.raises(ConfigError, match="shape"):
        Trace(np.array([3]), np.ones((1, 2), bool), ("a",))
    with pytest.raises(ConfigError, match="tokens"):
        fixed_trace(2, 0)
