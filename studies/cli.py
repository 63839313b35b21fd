"""Command-line arguments the studies tools share: where the data set is and which of its splits."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from modules.model import EncoderDecoderRetrievalModel
from modules.tokenizer import SemanticIdTokenizer
from runtime.checkpointing import file_sha256, load_checkpoint

REPO = Path(__file__).resolve().parents[1]  # configs are found from here when not from the working folder


def add_data_arguments(parser: argparse.ArgumentParser, cache_dir: str | None = None) -> None:
    """--root, --dataset, --split, --cache-dir (required where `cache_dir` is None, else its default): the
    bindings train.dataset_folder, train.dataset, train.split and train.cache_dir of the runs a tool reads."""
    parser.add_argument("--root", required=True, help="the data set's folder holding raw/<split>/ (train.dataset_folder; "
                                                      "read-only is fine)")
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--split", default="beauty")
    parser.add_argument("--cache-dir", required=cache_dir is None, default=cache_dir,
                        help="processed data and embedding cache (train.cache_dir)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--run LABEL:BEST_PT:SEMANTIC_IDS_PT (repeatable), --max-seq-len, --beam-width, --batch-size, --json: the
    trained stage-2 runs a tool searches again, and how; `run_specs` reads --run."""
    parser.add_argument("--run", action="append", required=True, metavar="LABEL:BEST_PT:SEMANTIC_IDS_PT",
                        help="a trained run: a label, its best.pt and its stage-1 semantic_ids.pt")
    parser.add_argument("--max-seq-len", type=int, default=20, help="train.max_seq_len of the runs")
    parser.add_argument("--beam-width", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--json", help="also write the rows here")


def run_specs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[list[str]]:
    """--run's values -> [label, best.pt, semantic_ids.pt] each (a malformed one: the parser's error)."""
    runs = [r.split(":") for r in args.run]
    if any(len(r) != 3 for r in runs):
        parser.error("--run takes LABEL:BEST_PT:SEMANTIC_IDS_PT")
    return runs


def load_run(checkpoint: str, tokenizer_file: str, n_items: int, name: str
             ) -> tuple[EncoderDecoderRetrievalModel, SemanticIdTokenizer, dict]:
    """A trained run's best.pt and its tokenizer -> (the model in eval mode, the tokenizer, the checkpoint's state),
    refused in one line when the tokenizer is not the one it was trained with or not of data set `name`'s n_items."""
    tokenizer = SemanticIdTokenizer.load(tokenizer_file)
    if len(tokenizer.sem_ids) != n_items:
        raise SystemExit(f"{tokenizer_file}: {len(tokenizer.sem_ids)} items, {name} has {n_items}")
    state = load_checkpoint(checkpoint, map_location="cpu")
    if state.get("tokenizer_sha256") != file_sha256(tokenizer_file):  # another stage 1: its IDs mean other items
        raise SystemExit(f"{checkpoint} was not trained with {tokenizer_file} (the tokenizer's SHA-256 differs)")
    model = EncoderDecoderRetrievalModel(**state["model_kwargs"])
    model.load_state_dict(state["model"])
    return model.eval(), tokenizer, state


def add_pipeline_arguments(parser: argparse.ArgumentParser, parallel_help: str, decoder_gin_help: str) -> None:
    """--device, --parallel, both stages' configs and the --gin / --rqvae-gin / --decoder-gin bindings of a tool
    that runs stage 1 then stage 2 (the fast recipe's configs by default)."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parallel", type=int, default=1, help=parallel_help)
    parser.add_argument("--rqvae-config", default="configs/rqvae_amazon_fast.gin")
    parser.add_argument("--decoder-config", default="configs/decoder_amazon_fast.gin")
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING", help="binding for both stages")
    parser.add_argument("--rqvae-gin", action="append", default=[], metavar="BINDING", help="binding for stage 1 only")
    parser.add_argument("--decoder-gin", action="append", default=[], metavar="BINDING", help=decoder_gin_help)


def check_pipeline_arguments(args: argparse.Namespace, files: tuple[str, ...] = ("rqvae_config", "decoder_config")) -> None:
    """Refuse a CUDA device that is not there and --parallel < 1; make each of `files` (argument names) an absolute
    path, read from here or else from the repository's root."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU visible (use --device cpu with the *_cpu.gin configs)")
    if args.parallel < 1:
        raise SystemExit(f"--parallel {args.parallel}: expected 1 or more")
    for name in files:
        path = Path(getattr(args, name))
        if not path.is_file():
            if not (REPO / path).is_file():
                raise SystemExit(f"no such file: {path} (--{name.replace('_', '-')})")
            path = REPO / path
        setattr(args, name, str(path.resolve()))
