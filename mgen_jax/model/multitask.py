"""Multi-task BERT with one shared trunk and per-task units (DESIGN.md sections 2 and 6).

Parameters (a plain pytree):

    {"embeddings": ...,                        # always shared
     "trunk": {"unit_0": ..., ...},            # the shared trunk, one copy per unit
     "own":   {"unit_0": [T, ...], ...},       # each task's own copy of every unit, stacked on a leading task axis
     "heads": [T, ...]}                        # each task's head; classifiers padded to the largest label count

Batches are mixed: arrays [T, B, L], B examples of every task. Two forward passes:

- ``relaxed_forward(params, batch, p)``: task t's hidden state passes unit u as
  p[t,u] * trunk_u(h) + (1 - p[t,u]) * own_{t,u}(h)  (both paths run: about twice a plain pass);
- ``discrete_forward(params, batch, branch_points)``: task t runs trunk units 0..b_t-1 and its own units b_t..U-1,
  one path per unit. The branch points are data (an int array), so one compiled step serves every sharing tree.

With p one-hot (p[t,u] = 1 if u < b_t), the two are the same function of the parameters.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from mgen_jax.errors import ConfigError
from mgen_jax.model.bert import BertConfig, ClassificationHead, Embeddings, attention_bias, make_unit


class MultiTaskModel:
    """Pure functions over the multi-task parameter tree for ``num_labels`` tasks on a ``cfg`` encoder."""

    def __init__(self, cfg: BertConfig, num_labels: Sequence[int], pooling: str = "mean"):
        self.cfg = cfg
        self.num_labels = tuple(int(c) for c in num_labels)
        if not self.num_labels:
            raise ConfigError("a multi-task model needs at least one task")
        self.num_tasks = len(self.num_labels)
        self.max_labels = max(self.num_labels)
        self.embeddings = Embeddings(cfg)
        self.units = [make_unit(cfg, u) for u in range(cfg.num_units)]
        self.head = ClassificationHead(cfg, self.max_labels, pooling)

    # ----- building parameters ---------------------------------------------------------------------------------
    def from_encoders(self, trunk_encoder: Any, task_encoders: Sequence[Any], task_heads: Sequence[Any]) -> dict:
        """Trunk (and embeddings) from ``trunk_encoder``; own units and heads of task t from ``task_encoders[t]`` and
        ``task_heads[t]`` (a head with fewer outputs is zero-padded to the largest label count)."""
        if len(task_encoders) != self.num_tasks or len(task_heads) != self.num_tasks:
            raise ConfigError(f"need {self.num_tasks} task encoders and heads, got {len(task_encoders)}/{len(task_heads)}")
        units = [f"unit_{u}" for u in range(self.cfg.num_units)]
        missing = [u for u in units if u not in trunk_encoder]
        if missing:
            raise ConfigError(f"trunk encoder lacks {missing[:3]}: its depth differs from the model config")
        stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)
        copy = lambda tree: jax.tree.map(lambda x: jnp.array(x, copy=True), tree)  # never alias the inputs
        return {
            "embeddings": copy(trunk_encoder["embeddings"]),
            "trunk": {u: copy(trunk_encoder[u]) for u in units},
            "own": {u: stack([enc[u] for enc in task_encoders]) for u in units},
            "heads": stack([self._pad_head(h) for h in task_heads]),
        }

    def separate_params(self, task_encoders: Sequence[Any], task_heads: Sequence[Any]) -> dict:
        """T complete separate models (each with its own embeddings), stacked on a leading task axis, for
        ``separate_forward``: {"encoders": [T, ...], "heads": [T, ...]} (heads padded as in ``from_encoders``)."""
        if len(task_encoders) != self.num_tasks or len(task_heads) != self.num_tasks:
            raise ConfigError(f"need {self.num_tasks} task encoders and heads, got {len(task_encoders)}/{len(task_heads)}")
        keys = ["embeddings"] + [f"unit_{u}" for u in range(self.cfg.num_units)]
        stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)
        return {"encoders": stack([{k: enc[k] for k in keys} for enc in task_encoders]),
                "heads": stack([self._pad_head(h) for h in task_heads])}

    def _pad_head(self, head: Any) -> Any:
        head = jax.tree.map(jnp.asarray, head)
        kernel, bias = head["classifier"]["kernel"], head["classifier"]["bias"]
        extra = self.max_labels - kernel.shape[-1]
        if extra < 0:
            raise ConfigError(f"a head has {kernel.shape[-1]} outputs, more than the model's {self.max_labels}")
        return {"pooler": head["pooler"], "classifier": {
            "kernel": jnp.pad(kernel, ((0, 0), (0, extra))), "bias": jnp.pad(bias, (0, extra))}}

    def init_head(self, rng: jax.Array) -> Any:
        h = jnp.zeros((1, 2, self.cfg.hidden_size))
        return self.head.init(rng, h, jnp.ones((1, 2), jnp.int32))["params"]

    # ----- forward passes --------------------------------------------------------------------------------------
    def _embed(self, params, batch, deterministic, rng):
        t, b, length = batch["input_ids"].shape
        flat = lambda x: x.reshape(t * b, length)
        x = self.embeddings.apply({"params": params["embeddings"]}, flat(batch["input_ids"]),
                                  flat(batch["token_type_ids"]), deterministic=deterministic,
                                  rngs=None if deterministic else {"dropout": rng})
        bias = attention_bias(batch["attention_mask"].reshape(t * b, length), x.dtype)
        return x.reshape(t, b, length, -1), bias.reshape(t, b, 1, 1, length)

    def _unit(self, u, unit_params, x, bias, deterministic, rng):
        """Unit u on one task's sub-batch x [B, L, H] with its parameters."""
        return self.units[u].apply({"params": unit_params}, x, bias, deterministic=deterministic,
                                   rngs=None if deterministic else {"dropout": rng})

    def _heads(self, params, x, batch, deterministic, rng):
        rngs = jax.random.split(rng, self.num_tasks)
        apply = lambda hp, xs, mask, r: self.head.apply(
            {"params": hp}, xs, mask, deterministic=deterministic, rngs=None if deterministic else {"dropout": r})
        return jax.vmap(apply)(params["heads"], x, batch["attention_mask"], rngs)  # [T, B, C]

    def relaxed_forward(self, params, batch, p_tu, *, deterministic: bool = True, rng=None) -> jax.Array:
        """Outputs [T, B, max_labels] of the relaxed model (p_tu [T, U] = probability of using the trunk)."""
        rng = jax.random.PRNGKey(0) if rng is None else rng
        x, bias = self._embed(params, batch, deterministic, jax.random.fold_in(rng, 0))
        for u in range(self.cfg.num_units):
            r = jax.random.split(jax.random.fold_in(rng, u + 1), 2 * self.num_tasks).reshape(2, self.num_tasks, -1)
            trunk = jax.vmap(lambda xs, bs, rr: self._unit(u, params["trunk"][f"unit_{u}"], xs, bs, deterministic, rr))(
                x, bias, r[0])
            own = jax.vmap(lambda up, xs, bs, rr: self._unit(u, up, xs, bs, deterministic, rr))(
                params["own"][f"unit_{u}"], x, bias, r[1])
            mix = p_tu[:, u][:, None, None, None]
            x = mix * trunk + (1.0 - mix) * own
        return self._heads(params, x, batch, deterministic, jax.random.fold_in(rng, 10_000))

    def discrete_forward(self, params, batch, branch_points, *, deterministic: bool = True, rng=None) -> jax.Array:
        """Outputs [T, B, max_labels] of the discrete model with branch points b [T] (ints in 0..U)."""
        rng = jax.random.PRNGKey(0) if rng is None else rng
        b = jnp.asarray(branch_points)
        x, bias = self._embed(params, batch, deterministic, jax.random.fold_in(rng, 0))
        for u in range(self.cfg.num_units):
            key = f"unit_{u}"
            use_trunk = b > u  # [T]
            chosen = jax.tree.map(
                lambda trunk, own: jnp.where(use_trunk.reshape((-1,) + (1,) * trunk.ndim), trunk[None], own),
                params["trunk"][key], params["own"][key],
            )
            r = jax.random.split(jax.random.fold_in(rng, u + 1), self.num_tasks)
            x = jax.vmap(lambda up, xs, bs, rr: self._unit(u, up, xs, bs, deterministic, rr))(chosen, x, bias, r)
        return self._heads(params, x, batch, deterministic, jax.random.fold_in(rng, 10_000))

    def every_branch_point_forward(self, params, batch) -> jax.Array:
        """Outputs [U + 1, T, B, max_labels]: row b is ``discrete_forward`` with every task at branch point b
        (dropout off). The models share prefixes: before unit u, the rows b > u all hold the trunk's state, so the
        trunk runs once and row b leaves it at unit b. That is U + U (U + 1) / 2 unit passes per task instead of
        U (U + 1) for U + 1 separate forward passes (90 against 156 for U = 12)."""
        trunk, bias = self._embed(params, batch, True, None)
        rows = None  # [u, T, B, L, H]: the rows b < u, each on its own units since unit b
        for u in range(self.cfg.num_units):
            key = f"unit_{u}"
            rows = trunk[None] if rows is None else jnp.concatenate([rows, trunk[None]], axis=0)  # row u branches
            per_task = lambda xs: jax.vmap(lambda up, x, bs: self._unit(u, up, x, bs, True, None))(
                params["own"][key], xs, bias)  # one row: every task on its own unit u
            rows = jax.vmap(per_task)(rows)
            trunk = jax.vmap(lambda xs, bs: self._unit(u, params["trunk"][key], xs, bs, True, None))(trunk, bias)
        hidden = jnp.concatenate([rows, trunk[None]], axis=0)  # row U: the trunk alone
        rng = jax.random.PRNGKey(0)  # unused: dropout is off
        return jax.vmap(lambda x: self._heads(params, x, batch, True, rng))(hidden)

    def separate_forward(self, separate, batch) -> jax.Array:
        """Outputs [T, B, max_labels]: task t's sub-batch through its own complete model of ``separate_params``
        (embeddings included; dropout off). With the independently fine-tuned models these are the teachers of
        distillation."""
        return jax.vmap(self._complete_forward)(separate["encoders"], separate["heads"], batch["input_ids"],
                                                batch["token_type_ids"], batch["attention_mask"])

    def separate_task_forward(self, separate, task, batch) -> jax.Array:
        """Outputs [B, max_labels] of task ``task``'s own complete model of ``separate_params`` on its batch [B, L]
        (dropout off): a teacher's predictions on one task's rows."""
        take = lambda tree: jax.tree.map(lambda x: x[task], tree)
        return self._complete_forward(take(separate["encoders"]), take(separate["heads"]), batch["input_ids"],
                                      batch["token_type_ids"], batch["attention_mask"])

    def _complete_forward(self, enc, head, ids, types, mask) -> jax.Array:
        x = self.embeddings.apply({"params": enc["embeddings"]}, ids, types, deterministic=True)
        bias = attention_bias(mask, x.dtype)
        for u in range(self.cfg.num_units):
            x = self._unit(u, enc[f"unit_{u}"], x, bias, True, None)
        return self.head.apply({"params": head}, x, mask, deterministic=True)

    def task_view(self, params, task) -> dict:
        """What task ``task`` (an int or a traced index) can use: the embeddings, the trunk, its own copy of every unit
        and its head: {"embeddings", "trunk", "own": {unit_u: ...}, "head": ...}. Its gradient holds exactly the
        parameters one task's batch trains (equal-budget fine-tuning, search/budget.py)."""
        take = lambda tree: jax.tree.map(lambda x: x[task], tree)
        return {"embeddings": params["embeddings"], "trunk": params["trunk"], "own": take(params["own"]),
                "head": take(params["heads"])}

    def view_forward(self, view, branch_point, batch, *, deterministic: bool = True, rng=None) -> jax.Array:
        """Outputs [B, max_labels] of one task's discrete model on its batch [B, L], from its ``task_view``: trunk
        units 0..b-1, then its own units (``branch_point`` may be traced)."""
        return self.path_forward(self.view_path(view, branch_point), batch, deterministic=deterministic, rng=rng)

    def view_path(self, view, branch_point) -> dict:
        """The parameters one task's discrete model runs, from its ``task_view``: {"embeddings", "units": {unit_u:
        the trunk's unit u if u < b, else the task's own}, "head"} (``branch_point`` may be traced). Its gradient
        holds one copy of every parameter the task's step trains, as an independent model's does."""
        units = {f"unit_{u}": jax.tree.map(lambda trunk, own: jnp.where(branch_point > u, trunk, own),
                                           view["trunk"][f"unit_{u}"], view["own"][f"unit_{u}"])
                 for u in range(self.cfg.num_units)}
        return {"embeddings": view["embeddings"], "units": units, "head": view["head"]}

    def path_forward(self, path, batch, *, deterministic: bool = True, rng=None) -> jax.Array:
        """Outputs [B, max_labels] of the model ``path`` (a ``view_path``) on a batch [B, L]: dropout of unit u
        from fold_in(rng, u + 1), of the embeddings and the head from ``rng``."""
        rng = jax.random.PRNGKey(0) if rng is None else rng
        rngs = None if deterministic else {"dropout": rng}
        x = self.embeddings.apply({"params": path["embeddings"]}, batch["input_ids"], batch["token_type_ids"],
                                  deterministic=deterministic, rngs=rngs)
        bias = attention_bias(batch["attention_mask"], x.dtype)
        for u in range(self.cfg.num_units):
            x = self._unit(u, path["units"][f"unit_{u}"], x, bias, deterministic, jax.random.fold_in(rng, u + 1))
        return self.head.apply({"params": path["head"]}, x, batch["attention_mask"], deterministic=deterministic,
                               rngs=rngs)

    def relaxed_view_forward(self, view, p_u, batch, *, deterministic: bool = True, rng=None) -> jax.Array:
        """Outputs [B, max_labels] of one task's relaxed model on its batch [B, L], from its ``task_view``: unit u
        passes p_u[u] x trunk_u(h) + (1 - p_u[u]) x own_u(h) (both paths run). With p_u one-hot in value (a
        straight-through sample) it equals ``view_forward`` at that branch point."""
        rng = jax.random.PRNGKey(0) if rng is None else rng
        rngs = None if deterministic else {"dropout": rng}
        x = self.embeddings.apply({"params": view["embeddings"]}, batch["input_ids"], batch["token_type_ids"],
                                  deterministic=deterministic, rngs=rngs)
        bias = attention_bias(batch["attention_mask"], x.dtype)
        for u in range(self.cfg.num_units):
            key, r = f"unit_{u}", jax.random.fold_in(rng, u + 1)
            trunk = self._unit(u, view["trunk"][key], x, bias, deterministic, r)
            own = self._unit(u, view["own"][key], x, bias, deterministic, r)
            x = p_u[u] * trunk + (1.0 - p_u[u]) * own
        return self.head.apply({"params": view["head"]}, x, batch["attention_mask"], deterministic=deterministic,
                               rngs=rngs)

    def task_forward(self, params, task, branch_point, batch, *, deterministic: bool = True, rng=None) -> jax.Array:
        """Outputs [B, max_labels] of one task (a traced index) on its own batch [B, L] in the discrete model."""
        return self.view_forward(self.task_view(params, task), branch_point, batch, deterministic=deterministic,
                                 rng=rng)

    def every_branch_point_task_forward(self, params, task, batch) -> jax.Array:
        """Outputs [U + 1, B, max_labels] of one task (a traced index) on its batch [B, L]: row b is its discrete
        model at branch point b (dropout off). As in ``every_branch_point_forward``, the rows share the trunk
        prefix: U + U (U + 1) / 2 unit passes instead of U (U + 1)."""
        view = self.task_view(params, task)
        trunk = self.embeddings.apply({"params": view["embeddings"]}, batch["input_ids"], batch["token_type_ids"],
                                      deterministic=True)
        bias = attention_bias(batch["attention_mask"], trunk.dtype)
        rows = None  # [u, B, L, H]: the rows b < u, each on the task's own units since unit b
        for u in range(self.cfg.num_units):
            key = f"unit_{u}"
            rows = trunk[None] if rows is None else jnp.concatenate([rows, trunk[None]], axis=0)
            rows = jax.vmap(lambda x: self._unit(u, view["own"][key], x, bias, True, None))(rows)
            trunk = self._unit(u, view["trunk"][key], trunk, bias, True, None)
        hidden = jnp.concatenate([rows, trunk[None]], axis=0)
        return jax.vmap(lambda x: self.head.apply({"params": view["head"]}, x, batch["attention_mask"],
                                                  deterministic=True))(hidden)


def onehot_p(branch_points, num_units: int) -> jax.Array:
    b = jnp.asarray(branch_points)
    return (jnp.arange(num_units)[None, :] < b[:, None]).astype(jnp.float32)
