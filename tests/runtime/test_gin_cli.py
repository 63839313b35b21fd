from pathlib import Path

import gin
import pytest

import train_decoder
import train_rqvae
from runtime.errors import ConfigError, MissingFileError
from runtime.gin_cli import check_binding_types, parse_gin_args


@pytest.fixture(autouse=True)
def _clear_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_bare_train_binds_the_entry_point_being_parsed_with_both_imported():
    import evaluate  # its stand-in for the decoder's train() is a third configurable named `train`

    registered = sorted(gin.config._REGISTRY.matching_selectors("train"))
    assert {"train_decoder.train", "train_rqvae.train", "evaluate.train"} <= set(registered)
    parse_gin_args(train_decoder.train, ["configs/decoder_amazon.gin", "--gin", "train.iterations=7"])
    assert gin.get_bindings(train_decoder.train)["iterations"] == 7
    assert gin.get_bindings(train_rqvae.train) == {}
    gin.clear_config()
    parse_gin_args(train_rqvae.train, ["configs/rqvae_amazon.gin", "--gin", "train.iterations=9"])
    assert gin.get_bindings(train_rqvae.train)["iterations"] == 9
    assert gin.get_bindings(train_decoder.train) == {}
    assert gin.get_bindings(evaluate.decoder_bindings) == {}
    # the other configurables are registered again afterwards
    assert sorted(gin.config._REGISTRY.matching_selectors("train")) == registered


def test_unknown_binding_names_the_flag_that_set_it_not_the_file():
    with pytest.raises(ConfigError) as e:
        parse_gin_args(train_rqvae.train, ["configs/rqvae_amazon.gin", "--gin", "train.learnin_rate=0.1"])
    assert str(e.value) == ("--gin 'train.learnin_rate=0.1': Configurable 'train' doesn't have a parameter named "
                            "'learnin_rate'. (did you mean train.learning_rate?)")


def test_error_in_a_config_file_names_the_file_and_line(tmp_path):
    config = tmp_path / "bad.gin"
    config.write_text("train.iterations = 5\ntrain.no_such_parameter = 1\n")
    with pytest.raises(ConfigError, match=rf"^{config}, line 2: .*no_such_parameter"):
        parse_gin_args(train_rqvae.train, [str(config)])


def test_wrong_type_names_the_parameter_and_where_it_was_set():
    with pytest.raises(ConfigError, match=r"train\.batch_size = 'big' has type str, expected int \(set by --gin "):
        parse_gin_args(train_rqvae.train, ["configs/rqvae_amazon.gin", "--gin", "train.batch_size='big'"])


def test_types_that_fit():
    @gin.configurable
    def fn(lr: float = 0.1, n: int = 1, name: str | None = None, dims: tuple = ()):
        pass

    gin.parse_config(["fn.lr = 1", "fn.name = None", "fn.dims = (1, 2)"])
    check_binding_types(fn)  # an int is a fine float, None fits Optional
    gin.parse_config(["fn.n = 1.5"])
    with pytest.raises(ConfigError, match="fn.n"):
        check_binding_types(fn)


def test_missing_config_file():
    with pytest.raises(MissingFileError, match="no such file: nope.gin"):
        parse_gin_args(train_rqvae.train, ["nope.gin"])


def test_a_variant_includes_its_base_from_any_working_directory(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[2]
    mine = tmp_path / "mine.gin"
    mine.write_text("include 'configs/decoder_amazon_cpu.gin'\ntrain.iterations = 5\n")
    monkeypatch.chdir(tmp_path)  # neither the base nor its own include are below the working directory
    parse_gin_args(train_decoder.train, [str(mine)])
    bound = gin.get_bindings(train_decoder.train)
    assert bound["iterations"] == 5 and bound["d_model"] == 64 and bound["max_seq_len"] == 20  # mine, cpu's, base's
    assert (repo / "configs" / "decoder_amazon.gin").is_file()


def test_an_include_of_no_file_is_one_line_naming_the_config(tmp_path, monkeypatch):
    bad = tmp_path / "bad.gin"
    bad.write_text("include 'nowhere/base.gin'\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"bad\.gin.*nowhere/base\.gin"):
        parse_gin_args(train_decoder.train, [str(bad)])
