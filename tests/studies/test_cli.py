import argparse

import pytest

from studies.cli import add_data_arguments


def test_data_arguments_with_and_without_a_cache_default():
    with_default = argparse.ArgumentParser()
    add_data_arguments(with_default, cache_dir="cache")
    args = with_default.parse_args(["--root", "data/amazon"])
    assert (args.root, args.dataset, args.split, args.cache_dir) == ("data/amazon", "amazon", "beauty", "cache")

    required = argparse.ArgumentParser()
    add_data_arguments(required)
    args = required.parse_args(["--root", "r", "--cache-dir", "c", "--split", "sports"])
    assert (args.cache_dir, args.split) == ("c", "sports")
    with pytest.raises(SystemExit):  # --cache-dir is required there
        required.parse_args(["--root", "r"])


def test_pipeline_arguments_resolve_configs_from_the_repository_and_refuse_bad_ones(tmp_path, monkeypatch):
    from studies.cli import REPO, add_pipeline_arguments, check_pipeline_arguments

    parser = argparse.ArgumentParser()
    add_pipeline_arguments(parser, parallel_help="runs at a time", decoder_gin_help="stage 2 bindings")
    monkeypatch.chdir(tmp_path)  # the configs are found from the repository's root too
    args = parser.parse_args(["--device", "cpu", "--decoder-gin", "train.iterations=5"])
    check_pipeline_arguments(args)
    assert args.rqvae_config == str(REPO / "configs/rqvae_amazon_fast.gin")
    assert args.decoder_gin == ["train.iterations=5"] and args.gin == [] and args.parallel == 1
    with pytest.raises(SystemExit, match="no such file: nowhere.gin"):
        check_pipeline_arguments(parser.parse_args(["--device", "cpu", "--rqvae-config", "nowhere.gin"]))
    with pytest.raises(SystemExit, match="--parallel 0"):
        check_pipeline_arguments(parser.parse_args(["--device", "cpu", "--parallel", "0"]))
