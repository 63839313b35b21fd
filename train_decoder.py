"""Stage 2 of TIGER: train the encoder-decoder that generates the next item's semantic ID.

    python train_decoder.py configs/decoder_amazon.gin [--gin 'train.iterations=1000' ...]

Reads the tokenizer of stage 1 (<tokenizer_dir>/<dataset>-<split>/semantic_ids.pt), trains on
the leave-one-out train split, and every `eval_every` steps runs trie-constrained beam search
on the VALIDATION split; best.pt is the best step by validation `select_metric` (with
`ema_decay` > 0: of the moving average of the weights, which is what best.pt then holds). The test
split is never loaded here (evaluate.py does that). Writes <save_dir>/<dataset>-<split>/:
checkpoint.pt (last, for resuming), best.pt, config.gin. Last stdout line: one JSON object.

    torchrun --nproc_per_node N train_decoder.py configs/decoder_amazon.gin

trains with N processes (DDP; NCCL on GPUs, gloo on the CPU): every rank draws the same global
batch and keeps its 1/N slice, so batch_size and learning_rate mean what they mean for one
process; each rank beam-searches 1/N of the validation users and the hit counts are summed;
rank 0 logs and writes every file.
"""
from __future__ import annotations

import contextlib
import copy
import json
import sys
import time

import gin
import torch
import torch.distributed

from data.processed import SeqData
from runtime.atomic_io import atomic_write_text
from data.batching import ResidentExamples, data_batch, length_bucketed_batches, micro_batches, trim_history
from runtime.checkpointing import CheckpointError, check_resume_config, file_sha256, gin_bindings, gin_defaults, load_checkpoint, save_checkpoint
from runtime.compile import compile_training_forward
from runtime.distributed import (all_reduce_sum, barrier, init_distributed, rank_rng_states,
                                 restore_rank_rng_states, shard, wrap_ddp)
from runtime.errors import ConfigError
from runtime.gin_cli import check_choice, check_non_negative, check_positive, run_entry_point
from runtime.wandb_run import start_wandb_run
from runtime.loss_watch import FirstNonFiniteStep
from evaluation.learning_health import coverage_and_top1_share, level_nll_sums, prior_nll
from runtime.lr_schedule import ramp_then_inverse_sqrt
from modules.model import EncoderDecoderRetrievalModel
import runtime.precision
from runtime.optimizer import OPTIMIZERS, build_optimizer
from runtime.progress import tqdm  # tqdm that says at the start when the run is estimated to take long
from evaluation.retrieval import METRIC_KS, baseline_topk, recommend, retrieval_metrics
from modules.tokenizer import SemanticIdTokenizer
from runtime.run_folder import existing_tokenizer_path, run_dir

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
LOG_EVERY = 100  # steps between reads of the training loss (each read waits for the GPU)
# Bindings that may change between a run and its resumption (extend a run, evaluation and logging;
# validation metrics before and after a change of evaluation settings are compared as they are for best.pt).
RESUMABLE_CHANGES = ("iterations", "resume", "force_resume", "eval_every", "eval_beam_width", "eval_batch_size",
                     "valid_max_users", "device", "num_threads", "use_wandb", "wandb_project",
                     "resident_data", "compile_model", "compile_mode", "eval_sort_by_length",  # same batches, same results
                     "eval_exclude_history",
                     "micro_batch_size",  # same gradients up to float rounding (dropout draws other masks)
                     "save_dir", "tokenizer_dir")  # a moved run or tokenizer folder (the tokenizer's SHA-256 is checked)


@gin.configurable
def train(
    dataset_folder: str = "raw_data/amazon",
    dataset: str = "amazon",
    split: str = "beauty",
    cache_dir: str = "cache",
    tokenizer_dir: str = "out/rqvae",
    save_dir: str = "out/decoder",
    max_seq_len: int | None = None,       # None: 20 for Amazon, 200 for MovieLens (data/processed.py)
    iterations: int = 200_000,
    batch_size: int = 256,
    micro_batch_size: int | None = None,  # gradient accumulation: per-process pieces of at most this many examples
    optimizer: str = "adamw",             # "adamw" | "adafactor" (its lr is a relative step: runtime/optimizer.py)
    learning_rate: float = 0.01,
    weight_decay: float = 0.01,           # on linear maps only, never on embeddings, norms, biases
    lr_ramp_steps: int = 0,               # linear ramp of the lr from ~0 over these first steps
    lr_constant_steps: int = 10_000,      # then constant until here, then inverse square root (the paper)
    lr_cooldown_steps: int = 0,           # then linearly to zero over the last steps of `iterations` (0 = none)
    grad_clip: float = 1.0,
    ema_decay: float = 0.0,               # > 0: validation, best.pt and evaluate.py use a moving average of the weights
    bucket_by_length: bool = False,       # batches of similar history length, trimmed: no padding work
    resident_data: bool = False,          # training examples on the device, gathered there (GPU path)
    compile_model: bool = False,          # torch.compile the training forward
    compile_mode: str = "default",        # torch.compile's mode: "reduce-overhead" adds CUDA graphs (fewer launches)
    precision: str = "auto",              # "auto" (bf16 autocast on CUDA, fp32 on CPU) | "bf16" | "fp32"
    n_user_buckets: int = 2000,
    item_tokens: bool = False,            # a free vector per item added to the history's codes (not the paper's)
    item_token_dropout: float = 0.0,      # training: probability that a history item loses its item token
    d_model: int = 128,
    n_heads: int = 6,
    d_head: int = 64,
    ff_dim: int = 1024,
    n_encoder_layers: int = 4,
    n_decoder_layers: int = 4,
    dropout: float = 0.1,
    constrained_softmax: bool = False,    # softmax over the codes that continue a valid ID only (modules/model.py)
    eval_every: int = 10_000,
    eval_beam_width: int = 10,
    eval_batch_size: int = 512,
    eval_sort_by_length: bool = False,    # beam search on length-sorted, trimmed chunks of users
    eval_exclude_history: bool = False,   # rankings (TIGER's and the floors') skip the user's history items
    valid_max_users: int | None = None,   # None: the whole validation split
    select_metric: str = "ndcg@10",
    seed: int = 42,
    resume: bool = True,
    force_resume: bool = False,
    device: str = "auto",
    num_threads: int | None = None,
    use_wandb: bool = False,
    wandb_project: str = "tiger-decoder",
) -> dict:
    check_positive(iterations=iterations, batch_size=batch_size, micro_batch_size=micro_batch_size,
                   learning_rate=learning_rate, grad_clip=grad_clip, n_user_buckets=n_user_buckets, d_model=d_model,
                   n_heads=n_heads, d_head=d_head, ff_dim=ff_dim, n_encoder_layers=n_encoder_layers,
                   n_decoder_layers=n_decoder_layers, eval_every=eval_every, eval_batch_size=eval_batch_size,
                   max_seq_len=max_seq_len, valid_max_users=valid_max_users, num_threads=num_threads,
                   lr_constant_steps=lr_constant_steps)
    check_non_negative(weight_decay=weight_decay, lr_ramp_steps=lr_ramp_steps, lr_cooldown_steps=lr_cooldown_steps)
    if lr_cooldown_steps > iterations:
        raise ConfigError(f"train.lr_cooldown_steps = {lr_cooldown_steps}: must be at most train.iterations = {iterations}",
                          binding="lr_cooldown_steps")
    if not 0 <= ema_decay < 1:
        raise ConfigError(f"train.ema_decay = {ema_decay!r}: must be in [0, 1) (0: no averaging)", binding="ema_decay")
    if not 0 <= dropout < 1:
        raise ConfigError(f"train.dropout = {dropout!r}: must be in [0, 1)", binding="dropout")
    if not 0 <= item_token_dropout <= 1:
        raise ConfigError(f"train.item_token_dropout = {item_token_dropout!r}: must be in [0, 1]", binding="item_token_dropout")
    if select_metric not in {f"{m}@{k}" for m in ("recall", "ndcg") for k in METRIC_KS}:
        raise ConfigError(f"train.select_metric={select_metric!r}: expected recall@K or ndcg@K with K in {METRIC_KS}",
                          binding="select_metric")
    if eval_beam_width < max(METRIC_KS):
        raise ConfigError(f"train.eval_beam_width={eval_beam_width}: must be >= {max(METRIC_KS)} for Recall@{max(METRIC_KS)}",
                          binding="eval_beam_width")
    check_choice(optimizer=(optimizer, OPTIMIZERS), precision=(precision, runtime.precision.PRECISIONS),
                 compile_mode=(compile_mode, COMPILE_MODES))
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    env = init_distributed(None if device == "auto" else device)  # one process, or one per torchrun rank
    dev = env.device
    torch.manual_seed(seed + env.rank)  # dropout noise differs per rank; rank 0's is the one-process stream
    out_dir = run_dir(save_dir, dataset, split)

    tokenizer_file = existing_tokenizer_path(tokenizer_dir, dataset, split)
    tokenizer = SemanticIdTokenizer.load(tokenizer_file)
    tokenizer_hash = file_sha256(tokenizer_file)
    if not env.is_main:
        barrier(env)  # rank 0 builds the caches first; the others then read them
    train_data = SeqData(dataset_folder, dataset, split, "train", max_seq_len, cache_dir)
    valid_data = SeqData(dataset_folder, dataset, split, "valid", max_seq_len, cache_dir)
    if env.is_main:
        barrier(env)
    if tokenizer.n_items != train_data.n_items:
        raise ConfigError(f"the tokenizer has {tokenizer.n_items} items but {dataset}/{split} has {train_data.n_items}: "
                          "was it trained on another data set?", binding="tokenizer_dir")
    if batch_size > len(train_data):  # before any file is written
        raise ConfigError(f"train.batch_size = {batch_size} exceeds the {len(train_data)} training examples",
                          binding="batch_size")
    sem_ids = tokenizer.sem_ids  # [n_items, T] stays on the CPU: batches are gathered there
    trie = tokenizer.trie().to(dev)
    valid_index = (torch.arange(len(valid_data)) if valid_max_users is None or valid_max_users >= len(valid_data)
                   else torch.linspace(0, len(valid_data) - 1, valid_max_users).long())  # fixed, spread out

    model = EncoderDecoderRetrievalModel(
        n_levels=sem_ids.shape[1], codebook_size=tokenizer.codebook_size, max_history=train_data.max_seq_len,
        n_user_buckets=n_user_buckets, d_model=d_model, n_heads=n_heads, d_head=d_head, ff_dim=ff_dim,
        n_encoder_layers=n_encoder_layers, n_decoder_layers=n_decoder_layers, dropout=dropout,
        constrained_softmax=constrained_softmax, n_items=tokenizer.n_items if item_tokens else 0,
        item_token_dropout=item_token_dropout).to(dev)
    if model.item_emb is not None:
        model.item_emb.index(sem_ids)  # before the moving average's copy: both read the same rows
    opt = build_optimizer(model, optimizer, learning_rate, weight_decay)
    scheduler = ramp_then_inverse_sqrt(opt, lr_ramp_steps, lr_constant_steps, lr_cooldown_steps, iterations)
    # An exponential moving average of the weights (Polyak averaging, Polyak & Juditsky 1992, with an
    # exponential window): the first step's weights, then averaged <- ema_decay * averaged + (1 - ema_decay)
    # * weights after every step. Training never reads it; validation selects on it and best.pt holds it,
    # so evaluate.py reports the weights validation chose. (Not torch's AveragedModel: its update copies a
    # step counter from the host to the device every step, which on CUDA waits for the GPU.)
    averaged = copy.deepcopy(model).requires_grad_(False) if ema_decay else None
    ema_pairs = (list(averaged.parameters()), list(model.parameters())) if averaged is not None else None
    evaluated = averaged if averaged is not None else model  # the weights validation reads
    if env.is_main:
        print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(train_data):,} train examples, "
              f"{len(valid_index):,} validation users; device {dev}, {env.world_size} process(es)", file=sys.stderr)

    # The floors every validation number is read against, on the same validation users: popularity,
    # the transition baseline (evaluation/transition.py) and the per-level NLL of a history-blind prior.
    valid_targets = valid_data.targets[valid_index]
    floors = baseline_topk(train_data, valid_data, max(METRIC_KS), valid_index, eval_exclude_history)
    baselines = {name: retrieval_metrics(ranked, valid_targets) for name, ranked in floors.items()}
    baselines["prior_nll"] = prior_nll(sem_ids, train_data.targets, valid_targets).tolist()
    if env.is_main:
        for name in ("popularity", "transition"):
            print(f"valid {name}: " + " ".join(f"{k} {v:.4f}" for k, v in baselines[name].items()), file=sys.stderr)
        print("valid prior NLL per level (history ignored): " + " ".join(f"{v:.3f}" for v in baselines["prior_nll"]), file=sys.stderr)

    bindings = gin_bindings(train)
    step, best, history, seconds_before = 0, {"step": None, "metrics": None}, [], 0.0
    last_path, best_path = out_dir / "checkpoint.pt", out_dir / "best.pt"
    if resume and last_path.exists():
        state = load_checkpoint(last_path, map_location=dev)
        # Longer training and evaluation settings may change; anything that shapes the run may not.
        check_resume_config(state["manifest"], bindings, path=last_path, force=force_resume, ignore=RESUMABLE_CHANGES,
                            defaults=gin_defaults(train))
        if state.get("tokenizer_sha256") != tokenizer_hash and not force_resume:  # stage 1 was rerun since
            raise CheckpointError(
                f"refusing to resume from {last_path}: {run_dir(tokenizer_dir, dataset, split) / 'semantic_ids.pt'} "
                "is not the tokenizer it was trained with (its SHA-256 differs). Bind train.force_resume=True to "
                "resume anyway, or choose another save_dir.")
        if state["model_kwargs"] != model.kwargs:
            raise CheckpointError(f"{last_path} holds a model {state['model_kwargs']} but this config and tokenizer "
                                  f"build {model.kwargs}: choose another save_dir or bind train.resume=False")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if averaged is not None:
            averaged.load_state_dict(state["ema"])
        step, best, history = state["step"], json.loads(state["best"]), json.loads(state.get("history", "[]"))
        seconds_before = history[-1]["wall_seconds"] if history else 0.0
        restore_rank_rng_states(state["rng"], env)
        if env.is_main:
            print(f"resumed from {last_path} at step {step}", file=sys.stderr)
    last_saved_step = step if step else None
    if env.is_main:  # only once the run is known to start or resume: a refused resume leaves config.gin alone
        atomic_write_text(gin.operative_config_str(), out_dir / "config.gin")
        atomic_write_text(json.dumps(baselines, indent=1) + "\n", out_dir / "baselines.json")
    ddp_model = wrap_ddp(model, env)  # gradients averaged over ranks; `model` stays the plain module
    valid_shard = torch.tensor_split(valid_index, env.world_size)[env.rank]  # this rank's validation users

    wandb_run = None
    if use_wandb and env.is_main:
        wandb_run = start_wandb_run(wandb_project, bindings, out_dir, f"decoder-{dataset}-{split}")

    # Batches without replacement: epoch e visits randperm(seed + e) (bucket_by_length: that permutation
    # grouped by history length, data/batching.py); a step's batch depends on the step only, so a
    # resumed run sees exactly the batches an uninterrupted one would.
    steps_per_epoch = len(train_data) // batch_size  # the GLOBAL batch: each of N ranks trains on batch_size / N
    perm_epoch, batches, max_lengths = -1, None, None
    resident = ResidentExamples(train_data, sem_ids, dev) if resident_data else None
    forward = compile_training_forward(ddp_model, compile_mode) if compile_model else ddp_model  # `model` keeps the weights
    autocast = runtime.precision.autocast(dev, precision)  # evaluate.py uses the same
    start_time, eval_seconds, start_step = time.time(), 0.0, step
    nonfinite = FirstNonFiniteStep(dev)
    loss_sum, loss_steps = torch.zeros((), device=dev), 0  # training loss since the last evaluation, summed on the device
    bar = tqdm(total=iterations, initial=step, desc="train", file=sys.stderr, dynamic_ncols=True, disable=not env.is_main)
    while step < iterations:
        epoch, offset = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            generator = torch.Generator().manual_seed(seed + epoch)
            if bucket_by_length:
                batches, max_lengths = length_bucketed_batches(train_data.history_lengths, batch_size, generator)
            else:
                batches = torch.randperm(len(train_data), generator=generator)[:steps_per_epoch * batch_size]
                batches = batches.view(steps_per_epoch, batch_size)
            if resident is not None:
                batches = batches.to(dev)  # once per epoch: no host-to-device copy per step
            perm_epoch = epoch
        index = shard(batches[offset], env)  # the global batch is identical on every rank
        batch = resident.batch(index) if resident is not None else data_batch(train_data, index, sem_ids, dev)
        if max_lengths is not None:  # the global batch's longest history (CPU, no sync); compiled: never 1 column
            batch = trim_history(batch, max_lengths[offset], min_length=2 if compile_model else 1)
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=dev)  # this rank's batch mean, accumulated over its micro-batches
        micros = micro_batches(batch, micro_batch_size)
        if compile_model:  # a new training step: CUDA graphs ("reduce-overhead") may reuse the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        for i, micro in enumerate(micros):
            # DDP averages gradients over ranks once, in the last micro-batch's backward
            with (ddp_model.no_sync() if env.is_distributed and i < len(micros) - 1 else contextlib.nullcontext()):
                with autocast:
                    logits = forward(micro["user_ids"], micro["history"], micro["target"])
                valid = trie.path_masks(micro["target"]) if constrained_softmax else None  # [b, T, K]
                # the batch's mean loss is the size-weighted sum of its micro-batches' means
                micro_loss = model.loss(logits, micro["target"], valid) * (len(micro["target"]) / len(index))
                micro_loss.backward()
            loss += micro_loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        scheduler.step()
        if averaged is not None:  # one fused update; weight 1 at the first step copies the weights exactly
            torch._foreach_lerp_(*ema_pairs, 1.0 if step == 0 else 1 - ema_decay)
        step += 1
        nonfinite.update(loss, step)
        loss_sum += loss.detach()
        loss_steps += 1
        bar.update(1)

        evaluating = step % eval_every == 0 or step == iterations
        if evaluating or step % LOG_EVERY == 0:  # the only places the loop waits for the device
            nonfinite.check(env, str(last_path), last_saved_step)  # before anything is logged or saved
            mean_loss = (all_reduce_sum(loss.detach(), env) / env.world_size).item()  # the global batch's loss
            bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if wandb_run is not None:
                wandb_run.log({"train/loss": mean_loss, "train/grad_norm": grad_norm.item(),
                               "train/lr": scheduler.get_last_lr()[0]}, step=step)
        if evaluating:
            eval_start = time.time()
            evaluated.eval()
            with autocast:
                found = recommend(evaluated, valid_data, sem_ids, trie, eval_beam_width, max(METRIC_KS),
                                  eval_batch_size, dev, valid_shard, sort_by_length=eval_sort_by_length,
                                  exclude_history=eval_exclude_history)
                nll_sums, nll_count = level_nll_sums(evaluated, (data_batch(valid_data, chunk, sem_ids, dev)
                                                             for chunk in valid_shard.split(eval_batch_size)), trie)
            metrics = retrieval_metrics(found["item_ids"], valid_data.targets[valid_shard], env)
            ranked = found["item_ids"].to(dev)
            counts = torch.stack([torch.bincount(ranked[ranked >= 0], minlength=train_data.n_items),
                                  torch.bincount(ranked[:, 0].clamp(min=0), minlength=train_data.n_items)])
            counts = all_reduce_sum(counts, env).cpu()  # items in anybody's top-K / top-1, over every rank
            nll = all_reduce_sum(torch.cat([nll_sums, torch.tensor([nll_count], dtype=torch.float64, device=dev)]), env).cpu()
            train_loss = (all_reduce_sum(loss_sum, env) / (env.world_size * loss_steps)).item()
            loss_sum.zero_()
            loss_steps = 0
            health = coverage_and_top1_share(counts[0], counts[1])
            record = {"step": step, "examples_seen": step * batch_size,
                      "wall_seconds": round(seconds_before + time.time() - start_time, 1), "train_loss": train_loss,
                      **metrics, **{f"nll_level_{t}": v for t, v in enumerate((nll[:-1] / nll[-1]).tolist())},
                      f"coverage@{max(METRIC_KS)}": health["coverage"], "top1_share": health["top1_share"]}
            history.append(record)
            if env.is_main:
                atomic_write_text("".join(json.dumps(r) + "\n" for r in history), out_dir / "curve.jsonl")
                tqdm.write(f"step {step}: loss {train_loss:.4f} valid " +
                           " ".join(f"{k} {v:.4f}" for k, v in metrics.items()) +
                           " nll " + "/".join(f"{record[f'nll_level_{t}']:.2f}" for t in range(len(nll) - 1)) +
                           f" coverage {health['coverage']:.3f} top1 {health['top1_share']:.3f}", file=sys.stderr)
            if wandb_run is not None:
                wandb_run.log({f"valid/{k}": v for k, v in record.items() if k != "step"}, step=step)
            is_best = best["metrics"] is None or metrics[select_metric] > best["metrics"][select_metric]
            if is_best:
                best = {"step": step, "metrics": metrics}
            rng = rank_rng_states(env)  # a collective: every rank gets here
            if env.is_main:
                if is_best:
                    save_checkpoint(best_path, {"model": evaluated.state_dict(), "model_kwargs": model.kwargs},
                                    step=step, bindings=bindings, metrics=metrics)
                save_checkpoint(last_path, {
                    "model": model.state_dict(), "model_kwargs": model.kwargs, "optimizer": opt.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "rng": rng, "best": json.dumps(best),
                    "history": json.dumps(history), "tokenizer_sha256": tokenizer_hash,
                    **({"ema": averaged.state_dict()} if averaged is not None else {}),
                }, step=step, bindings=bindings, metrics=metrics)
            last_saved_step = step
            eval_seconds += time.time() - eval_start
    bar.close()
    nonfinite.check(env, str(last_path), last_saved_step)
    if wandb_run is not None:
        wandb_run.finish()
    result = {"best_step": best["step"], "best_valid": best["metrics"], "best_checkpoint": str(best_path),
              "last_checkpoint": str(last_path), "steps": step, "train_seconds": round(time.time() - start_time, 1),
              "eval_seconds": round(eval_seconds, 1),  # validation and checkpoints, inside train_seconds
              "steps_per_second": round((step - start_step) / max(time.time() - start_time - eval_seconds, 1e-9), 2),
              "batch_size": batch_size, "micro_batch_size": micro_batch_size or batch_size // env.world_size,
              "valid_history": history}
    return result


def main(argv: list[str] | None = None) -> dict:
    return run_entry_point(train, argv, description=__doc__)


if __name__ == "__main__":
    main()
