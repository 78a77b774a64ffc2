"""Search configs in sections with ``extends:`` (search/config_file.py): every shipped config loads to exactly the
SearchConfig its flat form did, a flat or unknown field is refused naming its file and section, and a config that
moved to the archive names its new path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mgen_jax import cli
from mgen_jax.errors import ConfigError
from mgen_jax.search.config import SearchConfig, load_search_config
from mgen_jax.search.config_file import ARCHIVED, SECTIONS, TOP_LEVEL

REPO = Path(__file__).parents[2]
SEARCH = REPO / "configs/search"
FLAT = json.loads((REPO / "tests/fixtures/search_configs_flat.json").read_text())


def shipped_path(name: str) -> Path:
    return SEARCH / "archive" / name if name in ARCHIVED else SEARCH / name


def test_every_field_has_one_section():
    listed = [f for fields in SECTIONS.values() for f in fields] + list(TOP_LEVEL) + ["gradient"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {f.name for f in dataclasses.fields(SearchConfig)}


# gradient defaults changed since the flat configs, with the old value and why: a flat config that held the old
# default now holds the new one
CHANGED_GRADIENT_DEFAULTS = {"search_fraction": (0.2, "held-out choice of the search-settings study, issue 31")}

# configs written or rewritten after the move to sections, on purpose (they load; their values are their own)
SINCE_SECTIONS = {"glue8_gradient": "new: the gradient search phase on eight tasks (issue 31)",
                  "demo": "rewritten for the gradient search (mgen demo, issue 33)",
                  "glue5_gradient": "its gradient settings chosen on held-out (configs/front/glue5_search_fraction)"}


def test_shipped_configs_are_the_flat_ones():
    """The fixture holds to_dict() of every config as committed flat (before sections): the nested files, with their
    extends chains, give the same values in the same order and of the same types, so that records and the
    settings.json of run folders are unchanged. A field added since then (gradient fields too) must hold its default.
    Configs written or rewritten since (SINCE_SECTIONS) only have to load."""
    shipped = {p.relative_to(SEARCH).as_posix() for p in SEARCH.rglob("*.yaml")}
    assert sorted(shipped) == sorted({shipped_path(name).relative_to(SEARCH).as_posix() for name in FLAT["configs"]}
                                     | {f"{name}.yaml" for name in SINCE_SECTIONS})
    for name in SINCE_SECTIONS:
        load_search_config(shipped_path(name + ".yaml"))
    defaults = SearchConfig(name="x", tasks=("SST-2", "MRPC")).to_dict()
    for name, want in FLAT["configs"].items():
        if name.removesuffix(".yaml") in SINCE_SECTIONS:
            continue
        got = json.loads(json.dumps(load_search_config(shipped_path(name)).to_dict()))
        if isinstance(want.get("gradient"), dict):  # a gradient field added since: at its default
            added = set(got["gradient"]) - set(want["gradient"])
            assert all(got["gradient"][k] == defaults["gradient"][k] for k in added), name
            got["gradient"] = {k: got["gradient"][k] for k in want["gradient"]}
            want = want | {"gradient": want["gradient"] | {
                k: defaults["gradient"][k] for k, (old, _) in CHANGED_GRADIENT_DEFAULTS.items()
                if want["gradient"].get(k) == old}}
        assert json.dumps({k: got[k] for k in want}) == json.dumps(want), name
        assert all(got[k] == defaults[k] for k in set(got) - set(want)), name


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_flat_field_names_its_section(tmp_path, capsys):
    path = _write(tmp_path / "x.yaml", "data: {tasks: [SST-2, MRPC]}\nwarmup_steps: 3\n")
    with pytest.raises(ConfigError, match=f"search config {path}: field 'warmup_steps' belongs in section 'warmup:'"):
        load_search_config(path)
    assert cli.main(["sweep", "--config", str(path), "--workdir", str(tmp_path / "w")]) == 2
    assert "field 'warmup_steps' belongs in section 'warmup:'" in capsys.readouterr().err


@pytest.mark.parametrize("text, words", [
    ("data: {tasks: [SST-2, MRPC]}\nwarmpu: {warmup_steps: 3}\n", "unknown field or section 'warmpu'"),
    ("data: {tasks: [SST-2, MRPC], no_such_field: 1}\n", "unknown field 'no_such_field' in section 'data:'"),
    ("data: {tasks: [SST-2, MRPC]}\nwarmup: {lambdas: [1.0]}\n",
     "field 'lambdas' belongs in section 'search:', not in section 'warmup:'"),
    ("data: {tasks: [SST-2, MRPC], seed: 1}\n", "field 'seed' belongs in the top level, not in section 'data:'"),
    ("data: {tasks: [SST-2, MRPC]}\nsweep: [1]\n", "section 'sweep:' must be a mapping"),
    ("data: {tasks: [SST-2, MRPC]}\ngradient: {seedz: [1]}\n", "unknown field 'seedz' in section 'gradient:'"),
    ("data: {tasks: [SST-2, MRPC]}\ndata: {max_length: 64}\n", "twice"),
    ("warmup: {warmup_steps: 3}\n", "missing field 'tasks' (section 'data:')"),
    ("data: {tasks: [SST-2, MRPC]}\nwarmup: {warmup_steps: -1}\n", "'warmup_steps' must be an integer >= 0"),
])
def test_misplaced_and_unknown_keys_name_the_file(tmp_path, text, words):
    path = _write(tmp_path / "x.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_search_config(path)
    assert words in str(info.value) and str(path) in str(info.value), str(info.value)


def test_extends_merges_section_by_section(tmp_path):
    _write(tmp_path / "base.yaml", "name: base\nseed: 3\ndata: {tasks: [SST-2, MRPC], max_length: 64, buckets: [64]}\n"
                                   "search: {lambdas: [1.0, 2.0], lr_logits: 0.2}\n"
                                   "gradient: {energy_targets: [0.5], seeds: [0, 1]}\n")
    child = _write(tmp_path / "sub" / "child.yaml", "extends: ../base.yaml\ndata: {max_length: 32, buckets: [32]}\n"
                                                    "search: {lambdas: []}\ngradient: {seeds: [2]}\n")
    cfg = load_search_config(child)
    assert cfg.name == "child"  # never inherited: each file its own run folder
    assert (cfg.seed, cfg.tasks, cfg.max_length, cfg.buckets) == (3, ("SST-2", "MRPC"), 32, (32,))
    assert (cfg.lambdas, cfg.lr_logits) == ((), 0.2)
    assert (cfg.gradient.energy_targets, cfg.gradient.seeds) == ((0.5,), (2,))
    assert load_search_config(child, lambdas=[4.0], seed=None).lambdas == (4.0,)  # flags by field name, over all
    with pytest.raises(ConfigError, match="unknown field 'max_lenght' in section 'data:'") as info:
        load_search_config(_write(tmp_path / "bad.yaml", "extends: base.yaml\ndata: {max_lenght: 32}\n"))
    assert str(tmp_path / "bad.yaml") in str(info.value)


@pytest.mark.parametrize("text, words", [
    ("extends: loop.yaml\ndata: {tasks: [SST-2, MRPC]}\n", "'extends' forms a cycle"),
    ("extends: missing.yaml\n", "not found (named by 'extends'"),
    ("extends: [a.yaml]\n", "field 'extends' must name the file"),
])
def test_bad_extends(tmp_path, text, words):
    path = _write(tmp_path / "loop.yaml", text)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("[", r"\[")):
        load_search_config(path)


@pytest.mark.parametrize("name", ARCHIVED)
def test_an_archived_config_names_its_new_path(name, tmp_path, capsys):
    old = SEARCH / name
    with pytest.raises(ConfigError, match=f"has moved to {SEARCH / 'archive' / name}"):
        load_search_config(old)
    assert cli.main(["sweep", "--config", str(old), "--workdir", str(tmp_path / "w")]) == 2
    assert f"configs/search/archive/{name}" in capsys.readouterr().err
    child = _write(tmp_path / "search" / "x.yaml", f"extends: {name}\n")  # a config extending the old path too
    with pytest.raises(ConfigError, match=f"has moved to {tmp_path / 'search' / 'archive' / name}"):
        load_search_config(child)

