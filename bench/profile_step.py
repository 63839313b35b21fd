"""Profile (not a test): where one training step of each stage spends its time.

    python -m bench.profile_step --root ../shared/data/amazon --cache-dir cache [--device cpu|cuda] [--steps 5]
        [--decoder paper|cpu|cpu_allpos] [--split beauty|sports]

Stage 1: RqVae as configs/rqvae_amazon.gin builds it, batch 1024 of the split's real item features.
Stage 2: the paper-size retrieval model of configs/decoder_amazon.gin (`--decoder cpu`: the laptop
model of configs/decoder_amazon_cpu.gin, constrained softmax, length-bucketed batches; `cpu_allpos`: the
same trained on all-positions windows, configs/decoder_amazon_cpu_allpos.gin), its batches of the split's
training examples (or windows) as the run builds them (data/training_stream.TrainingStream, the run's
first epoch in order), each step train_decoder.train_step with the config's optimiser and precision,
semantic IDs from a random tokenizer (speed does not depend on which codes). Each: `--warmup` untimed
steps, then `--steps` steps under torch.profiler; prints the mean step time and the top ops by self
time, plus the batches' lengths.
"""
from __future__ import annotations

import argparse
import itertools
import time

import gin
import torch
from torch.profiler import ProfilerActivity, profile

from bench.decoder_step import real_stream
from data.processed import ItemData, SeqData
import train_decoder
from modules.rqvae import RqVae
from modules.semantic_id_trie import SemanticIdTrie
from runtime import precision
from runtime.gin_cli import load_gin_config
from runtime.optimizer import build_optimizer


DECODERS = {"paper": "configs/decoder_amazon.gin", "cpu": "configs/decoder_amazon_cpu.gin",  # model, optimiser, precision
            "cpu_allpos": "configs/decoder_amazon_cpu_allpos.gin"}


def profile_steps(step_fn, steps: int, warmup: int, device: torch.device, top: int) -> tuple[float, str]:
    for _ in range(warmup):
        step_fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step_fn()
        sync()
        seconds = (time.perf_counter() - start) / steps
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return seconds, prof.key_averages().table(sort_by=sort, row_limit=top, max_name_column_width=40)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--cache-dir", default="cache")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--decoder", choices=tuple(DECODERS), default="paper")
    parser.add_argument("--split", default="beauty", help="the Amazon category whose batches stage 2 trains on")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")

    # ---- stage 1: RQ-VAE step (forward with the fused/reference quantiser, backward, AdamW)
    features = ItemData(args.root, "amazon", args.split, subset="train", cache_dir=args.cache_dir).features.to(device)
    rqvae = RqVae(input_dim=features.shape[1], hidden_dims=[512, 256, 128], latent_dim=32, codebook_size=256,
                  n_layers=3, commitment_weight=0.25, forward_mode="ste").to(device)
    rqvae.init_codebooks(features[:1024], kmeans_iters=5)
    opt = torch.optim.AdamW(rqvae.parameters(), lr=3e-3)

    def rqvae_step():
        batch = features[torch.randperm(len(features), device=device)[:1024]]
        out = rqvae(batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    seconds, table = profile_steps(rqvae_step, args.steps, args.warmup, device, args.top)
    print(f"## Stage 1: RQ-VAE step, batch 1024: {seconds * 1e3:.1f} ms/step\n\n{table}\n")

    # ---- stage 2: the config's retrieval model step on the run's own batches (data/training_stream.py)
    gin.clear_config()
    load_gin_config(train_decoder.train, DECODERS[args.decoder], [f'train.split="{args.split}"'])
    bindings = gin.get_bindings(train_decoder.train)
    gin.clear_config()
    train = SeqData(args.root, bindings["dataset"], bindings["split"], "train", bindings["max_seq_len"], args.cache_dir)
    sem_ids, stream = real_stream(bindings, train, device)  # random codes: speed does not depend on which
    model = train_decoder.build_model(sem_ids, 256, train.max_seq_len, bindings).to(device)
    trie = SemanticIdTrie(sem_ids.to(device), codebook_size=256)
    optimizer = build_optimizer(model, bindings["optimizer"], bindings["learning_rate"], bindings["weight_decay"])
    autocast = precision.autocast(device, bindings["precision"])
    unit = "windows" if stream.windows is not None else "examples"
    print(f"## Stage 2 data: {len(train):,} train targets in {stream.n_units:,} {unit}, encoder items per {unit[:-1]}: "
          f"mean {stream.lengths.float().mean():.2f}, max {int(stream.lengths.max())}; batch {bindings['batch_size']} "
          f"{unit}, {stream.steps_per_epoch:,} steps an epoch, length-bucketed: {bindings['bucket_by_length']}\n")
    steps = itertools.count()  # the run's batches in order: step 0, 1, ... of its first epoch

    def gather_time():
        start = time.perf_counter()
        for _ in range(20):
            stream.batch(next(steps))
        return (time.perf_counter() - start) / 20

    print(f"host batch gather (TrainingStream.batch: gather, semantic IDs, trim): {gather_time() * 1e3:.2f} ms/batch\n")

    def decoder_step():  # train_decoder.py's step, the same function, on the run's next batch
        batch, _ = stream.batch(next(steps))
        train_decoder.train_step(model, model, batch, optimizer, autocast, grad_clip=bindings["grad_clip"],
                                 trie=trie if bindings["constrained_softmax"] else None)

    seconds, table = profile_steps(decoder_step, args.steps, args.warmup, device, args.top)
    print(f"## Stage 2: retrieval model step ({DECODERS[args.decoder]}, {args.split}), batch {bindings['batch_size']} "
          f"{unit}: {seconds * 1e3:.1f} ms/step\n\n{table}")


if __name__ == "__main__":
    main()
