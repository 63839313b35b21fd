"""The configs in configs/: each parses as the entry points parse it, and each variant shows only its differences.

Each stage has one base config, the paper's (BASES). Every other config of the stage `include`s the base
(directly, or through another variant that does) before its own bindings, and binds only what differs
from what it includes: a binding to the value it would inherit anyway is refused, so that a variant's
bindings are exactly its differences. gin resolves `include` paths against the working directory: the
configs are run from the repository root.
"""
from __future__ import annotations

from pathlib import Path

import gin
import pytest
from gin import config_parser

import train_decoder
import train_rqvae
import train_sasrec
from runtime.gin_cli import parse_gin_args, train_defaults

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted(path.relative_to(REPO).as_posix() for path in (REPO / "configs").glob("*.gin"))
BASES = {"rqvae": "configs/rqvae_amazon.gin", "decoder": "configs/decoder_amazon.gin",
         "sasrec": "configs/sasrec_amazon.gin"}  # the baseline's base: the SASRec paper's setting
TRAIN = {"rqvae": train_rqvae.train, "decoder": train_decoder.train, "sasrec": train_sasrec.train}
VARIANTS = [config for config in CONFIGS if config not in BASES.values()]


def stage(config: str) -> str:
    return Path(config).name.split("_", 1)[0]


def statements(config: str) -> list:
    """The statements of one file as gin parses them (no include followed)."""
    parser = config_parser.ConfigParser((REPO / config).read_text(), gin.config.ParserDelegate())
    return list(parser)


def includes(config: str) -> list[str]:
    return [s.filename for s in statements(config) if isinstance(s, config_parser.IncludeStatement)]


def resolved(fn, config: str, flags: tuple[str, ...] = ()) -> dict:
    """Every parameter of `fn` after parsing `config` (and --gin `flags`) the entry points' way."""
    gin.clear_config()
    try:
        parse_gin_args(fn, [config, *(a for flag in flags for a in ("--gin", flag))])
        return {**train_defaults(fn), **gin.get_bindings(fn)}
    finally:
        gin.clear_config()


def same(a, b) -> bool:
    """Equal values of one type; an int and a float count as one type (`0` where `0.0` is inherited), a bool not."""
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
    return (type(a) is type(b) or (number(a) and number(b))) and a == b


@pytest.fixture(autouse=True)
def at_the_repository_root(monkeypatch):
    monkeypatch.chdir(REPO)  # where the configs are run from: `include 'configs/...'` is relative to it


def test_every_stage_has_its_base_and_a_config_names_its_stage():
    assert set(BASES.values()) <= set(CONFIGS)
    assert {stage(config) for config in CONFIGS} == set(BASES)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_parses_as_the_entry_point_parses_it(config):
    fn = TRAIN[stage(config)]
    values = resolved(fn, config)
    assert set(train_defaults(fn)) <= set(values)


@pytest.mark.parametrize("config", list(BASES.values()))
def test_a_base_includes_nothing(config):
    assert includes(config) == []


@pytest.mark.parametrize("config", VARIANTS)
def test_a_variant_includes_the_base_of_its_stage_before_its_own_bindings(config):
    kinds = [type(s).__name__ for s in statements(config)]
    assert "IncludeStatement" in kinds, f"{config} includes nothing: it should include {BASES[stage(config)]}"
    last_include = len(kinds) - 1 - kinds[::-1].index("IncludeStatement")
    assert "BindingStatement" not in kinds[:last_include], (
        f"{config}: includes come first (a binding before an include would be overridden by it)")
    seen, todo = set(), includes(config)
    while todo:  # the include chain reaches the stage's base; no include of another stage on the way
        included = todo.pop()
        assert stage(included) == stage(config) and included not in seen, f"{config} includes {included}"
        seen.add(included)
        todo += includes(included)
    assert BASES[stage(config)] in seen


@pytest.mark.parametrize("config", VARIANTS)
def test_a_variant_binds_only_what_differs_from_what_it_includes(config):
    fn = TRAIN[stage(config)]
    included = includes(config) or [BASES[stage(config)]]  # including nothing: compared with the base it should include
    value = resolved(fn, included[0], tuple(f"include '{path}'" for path in included[1:]))
    redundant = []
    for s in statements(config):
        if isinstance(s, config_parser.BindingStatement):
            inherited = value.get(s.arg_name, object())
            if same(inherited, s.value):
                redundant.append(f"line {s.location.line_num}: {s.selector}.{s.arg_name} = {s.value!r}")
            value[s.arg_name] = s.value
    assert not redundant, f"{config} binds the value it already inherits: " + "; ".join(redundant)
