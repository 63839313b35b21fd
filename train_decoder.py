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

`all_positions=True` (not the paper's; off in every paper config): a training example is a window of one
user's items (data/windows.py) encoded once, every one of its targets trained in the same pass by the
causal encoder-decoder (modules/model.py, causal_encoder); batch_size then counts windows. Validation,
best.pt and evaluate.py are unchanged: the same beam search over the last max_seq_len items.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import gin
import torch
import torch.distributed

from data.batching import micro_batches, n_targets
from data.processed import SeqData
from data.training_stream import TrainingStream
from evaluation.protocols import PROTOCOLS, protocol_name
from evaluation.report import (baselines_lines, curve_fields, evaluate_split, validation_baselines, validation_line,
                               validation_users)
from evaluation.retrieval import METRIC_KS, transition_prior_table
from modules.model import DROPOUT_MASKS, EncoderDecoderRetrievalModel, previous_items
from modules.semantic_id_trie import SemanticIdTrie
from modules.tokenizer import SemanticIdTokenizer
from runtime import preemption
from runtime import precision as precisions
from runtime.atomic_io import atomic_write_text
from runtime.checkpointing import (CheckpointError, check_resume_config, check_tokenizer_items, file_sha256, gin_bindings,
                                   gin_defaults, load_checkpoint, save_checkpoint, seed_all)
from runtime.compile import compile_training_forward
from runtime.distributed import (DistEnv, all_reduce_sum, init_distributed, main_rank_first, rank_rng_states,
                                 restore_rank_rng_states, wrap_ddp)
from runtime.errors import ConfigError
from runtime.gin_cli import check_choice, check_non_negative, check_positive, run_entry_point
from runtime.loss_watch import FirstNonFiniteStep
from runtime.lr_schedule import ramp_then_inverse_sqrt
from runtime.optimizer import OPTIMIZERS, build_optimizer
from runtime.progress import tqdm  # tqdm that says at the start when the run is estimated to take long
from runtime.run_folder import claim_run_folder, existing_tokenizer_path, run_dir
from runtime.wandb_run import start_wandb_run
from runtime.weight_average import WeightAverage

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
LOG_EVERY = 100  # steps between reads of the training loss (each read waits for the GPU)
# The bindings that shape the model (what build_model reads of train()'s arguments).
MODEL_BINDINGS = ("n_user_buckets", "d_model", "n_heads", "d_head", "ff_dim", "n_encoder_layers", "n_decoder_layers",
                  "dropout", "constrained_softmax", "item_tokens", "item_token_dropout", "all_positions", "history_bias",
                  "history_bias_stop_gradient", "successor_token", "dropout_masks")
# Bindings that may change between a run and its resumption (extend a run, evaluation and logging;
# validation metrics before and after a change of evaluation settings are compared as they are for best.pt).
RESUMABLE_CHANGES = ("iterations", "resume", "force_resume", "eval_every", "eval_beam_width", "eval_batch_size",
                     "valid_max_users", "device", "num_threads", "use_wandb", "wandb_project",
                     "resident_data", "compile_model", "compile_mode", "eval_sort_by_length",  # same batches, same results
                     "eval_exclude_history", "eval_transition_prior",
                     "micro_batch_size",  # same gradients up to float rounding (dropout draws other masks)
                     "save_dir", "tokenizer_dir")  # a moved run or tokenizer folder (the tokenizer's SHA-256 is checked)
# Bindings older runs recorded that this version no longer has, with the value that did what the code now does.
RETIRED_BINDINGS = {"lr_cooldown_steps": "0"}  # no config or result used the cooldown


def build_model(sem_ids: torch.Tensor, codebook_size: int, max_history: int,
                bindings: dict[str, Any]) -> EncoderDecoderRetrievalModel:
    """TIGER's encoder-decoder for a catalogue of semantic IDs sem_ids [n_items, T] (on the CPU), shaped by
    train()'s `bindings` (those in MODEL_BINDINGS are read); with item_tokens, its item table already
    indexed by the catalogue's IDs; with all_positions, the causal encoder that trains every position at once."""
    model = EncoderDecoderRetrievalModel(
        n_levels=sem_ids.shape[1], codebook_size=codebook_size, max_history=max_history,
        n_items=len(sem_ids) if bindings["item_tokens"] else 0, causal_encoder=bindings["all_positions"],
        **{name: bindings[name] for name in MODEL_BINDINGS if name not in ("item_tokens", "all_positions")})
    if model.item_emb is not None:  # successor_emb, if any, reads its rows
        model.item_emb.index(sem_ids)
    return model


def train_step(model: EncoderDecoderRetrievalModel, forward: Callable, batch: dict[str, torch.Tensor],
               opt: torch.optim.Optimizer, autocast: contextlib.AbstractContextManager, *,
               trie: SemanticIdTrie | None = None, micro_batch_size: int | None = None, grad_clip: float = 1.0,
               no_sync: Callable | None = None, compiled: bool = False,
               rank_weight: float = 1.0, history_unlikelihood: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on this process's batch -> (its mean loss, the gradient norm before clipping),
    both on the device, unread. `forward` is the model, or its DDP wrapper or compiled forward; `trie`
    gives the masks the model asks for: with constrained softmax, each level's codes that continue a valid ID;
    with history_bias, the codes that lead only to history items (a model with neither needs none); the batch is
    cut into micro-batches of at most `micro_batch_size` whose gradients add up to the batch's; with DDP,
    `no_sync` (the wrapper's) keeps every micro-batch but the last from averaging gradients over ranks.
    The batch is per example (history [B, L, T], target [B, T]) or all positions (window batches: history
    and target [B, W, T], -1 where a position is no target); its loss is the mean over its targets, times
    `rank_weight` (DDP with windows: world size x this rank's share of the global batch's targets, so that
    DDP's mean over ranks is the mean over all targets). With `history_unlikelihood` > 0 the loss adds that
    weight times the unlikelihood of the item before each target (modules/model.previous_items), decoded from
    the same encoder pass as the targets."""
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = torch.zeros((), device=batch["target"].device)  # the batch mean, accumulated over its micro-batches
    micros = micro_batches(batch, micro_batch_size)
    constrained = model.constrained_softmax and trie is not None  # the masks this model asks of the trie
    repeats = model.history_bias is not None and trie is not None
    if compiled:  # a new training step: CUDA graphs ("reduce-overhead") may reuse the last step's outputs
        torch.compiler.cudagraph_mark_step_begin()
    for i, micro in enumerate(micros):
        # DDP averages gradients over ranks once, in the last micro-batch's backward
        with (no_sync() if no_sync is not None and i < len(micros) - 1 else contextlib.nullcontext()):
            target = micro["target"]
            negative = previous_items(micro["history"], target) if history_unlikelihood else None
            with autocast:
                logits = forward(micro["user_ids"], micro["history"], target, negative)
            if negative is not None:
                logits, negative_logits = logits
            valid = trie.path_masks(target) if constrained else None  # [b, (W,) T, K]
            blocked = trie.path_blocked(target, trie.item_ids(micro["history"])) if repeats else None  # [b, T, K]
            micro_loss = model.loss(logits, target, valid, blocked)
            if negative is not None:
                negative_valid = trie.path_masks(negative) if constrained else None
                micro_loss = micro_loss + history_unlikelihood * model.history_unlikelihood(negative_logits, negative,
                                                                                            negative_valid)
            # the batch's mean loss: its micro-batches' means, each weighted by its share of the targets
            micro_loss = micro_loss * (n_targets(micro) / n_targets(batch) * rank_weight)
            micro_loss.backward()
        loss += micro_loss.detach()
    # history_bias_stop_gradient: the logit's gradient is left out of the clipped norm, so that the model's
    # weights take the recipe's step exactly (the logit's is a mean probability, at most 1)
    clipped = ([p for p in model.parameters() if p is not model.history_bias] if model.history_bias_stop_gradient
               else model.parameters())
    grad_norm = torch.nn.utils.clip_grad_norm_(clipped, grad_clip)
    opt.step()
    return loss, grad_norm


def check_bindings(b: dict[str, Any]) -> None:
    """train()'s arguments `b` in range, each error naming its binding."""
    check_positive(**{k: b[k] for k in (
        "iterations", "batch_size", "micro_batch_size", "learning_rate", "grad_clip", "n_user_buckets", "d_model",
        "n_heads", "d_head", "ff_dim", "n_encoder_layers", "n_decoder_layers", "eval_every", "eval_batch_size",
        "max_seq_len", "valid_max_users", "num_threads", "lr_constant_steps")})
    check_non_negative(**{k: b[k] for k in ("weight_decay", "lr_ramp_steps", "history_unlikelihood")})
    if not 0 <= b["ema_decay"] < 1:
        raise ConfigError(f"train.ema_decay = {b['ema_decay']!r}: must be in [0, 1) (0: no averaging)", binding="ema_decay")
    if not 0 <= b["dropout"] < 1:
        raise ConfigError(f"train.dropout = {b['dropout']!r}: must be in [0, 1)", binding="dropout")
    if not 0 <= b["history_crop"] <= 1:
        raise ConfigError(f"train.history_crop = {b['history_crop']!r}: must be in [0, 1]", binding="history_crop")
    if not 0 <= b["item_token_dropout"] <= 1:
        raise ConfigError(f"train.item_token_dropout = {b['item_token_dropout']!r}: must be in [0, 1]",
                          binding="item_token_dropout")
    if b["select_metric"] not in {f"{m}@{k}" for m in ("recall", "ndcg") for k in METRIC_KS}:
        raise ConfigError(f"train.select_metric={b['select_metric']!r}: expected recall@K or ndcg@K with K in {METRIC_KS}",
                          binding="select_metric")
    if b["eval_beam_width"] < max(METRIC_KS):
        raise ConfigError(f"train.eval_beam_width={b['eval_beam_width']}: must be >= {max(METRIC_KS)} "
                          f"for Recall@{max(METRIC_KS)}", binding="eval_beam_width")
    if not b["eval_transition_prior"] >= 0:
        raise ConfigError(f"train.eval_transition_prior = {b['eval_transition_prior']!r}: must be >= 0 (0: off)",
                          binding="eval_transition_prior")
    if b["history_bias"] and (b["all_positions"] or b["history_unlikelihood"]):
        other = "all_positions = True" if b["all_positions"] else f"history_unlikelihood = {b['history_unlikelihood']}"
        raise ConfigError(f"train.history_bias = True does not combine with train.{other} (not built): "
                          "bind one of them", binding="history_bias")
    if b["history_bias_stop_gradient"] and not b["history_bias"]:
        raise ConfigError("train.history_bias_stop_gradient = True needs train.history_bias = True (the logit it "
                          "trains)", binding="history_bias_stop_gradient")
    if b["successor_token"] and not b["item_tokens"]:
        raise ConfigError("train.successor_token = True needs train.item_tokens = True (it is a second item table)",
                          binding="successor_token")
    if b["successor_token"] and b["all_positions"]:
        raise ConfigError("train.successor_token = True does not combine with train.all_positions = True (a window has "
                          "no one most recent item): bind one of them", binding="successor_token")
    check_choice(optimizer=(b["optimizer"], tuple(OPTIMIZERS)), precision=(b["precision"], precisions.PRECISIONS),
                 compile_mode=(b["compile_mode"], COMPILE_MODES), dropout_masks=(b["dropout_masks"], DROPOUT_MASKS))


def resume_run(last_path: Path, bindings: dict[str, str], force_resume: bool, tokenizer_file: Path, tokenizer_hash: str,
               env: DistEnv, **modules: Any) -> tuple[int, dict, list[dict]]:
    """Load the last checkpoint into `modules` (model, optimizer, scheduler, ema: their state_dict keys) and
    this rank's RNG -> (step, best so far, validation history). Refused, naming why, when the run's shaping
    bindings, its tokenizer or its model differ."""
    state = load_checkpoint(last_path, map_location=env.device)
    # Longer training and evaluation settings may change; anything that shapes the run may not.
    check_resume_config(state["manifest"], bindings, path=last_path, force=force_resume, ignore=RESUMABLE_CHANGES,
                        defaults=gin_defaults(train), retired=RETIRED_BINDINGS)
    if state.get("tokenizer_sha256") != tokenizer_hash and not force_resume:  # stage 1 was rerun since
        raise CheckpointError(
            f"refusing to resume from {last_path}: {tokenizer_file} is not the tokenizer it was trained with (its "
            "SHA-256 differs). Bind train.force_resume=True to resume anyway, or choose another save_dir.")
    if state["model_kwargs"] != modules["model"].kwargs:
        raise CheckpointError(f"{last_path} holds a model {state['model_kwargs']} but this config and tokenizer "
                              f"build {modules['model'].kwargs}: choose another save_dir or bind train.resume=False")
    for key, module in modules.items():  # model, optimizer, scheduler, ema (None: not in this run)
        if module is not None:
            module.load_state_dict(state[key])
    restore_rank_rng_states(state["rng"], env)
    if env.is_main:
        print(f"resumed from {last_path} at step {state['step']}", file=sys.stderr)
    return state["step"], json.loads(state["best"]), json.loads(state.get("history", "[]"))


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
    dropout_masks: str = "torch",         # "torch" (nn.Dropout's) | "packed": 4 masks a random word, a faster CPU step
    constrained_softmax: bool = False,    # softmax over the codes that continue a valid ID only (modules/model.py)
    all_positions: bool = False,          # train every position of a window in one causal pass (not the paper's)
    history_unlikelihood: float = 0.0,    # weight of -log(1 - p(the item before the target)) (not the paper's)
    history_bias: bool = False,           # a learned logit for codes leading only to history items (not the paper's)
    history_bias_stop_gradient: bool = False,  # that logit fitted to the detached scores; the model trains as without it
    history_crop: float = 0.0,            # training: chance that an example keeps only a random suffix of its history
    successor_token: bool = False,        # with item_tokens: a free vector of the most recent item on the user token
    eval_every: int = 10_000,
    eval_beam_width: int = 10,
    eval_batch_size: int = 512,
    eval_sort_by_length: bool = False,    # beam search on length-sorted, trimmed chunks of users
    eval_exclude_history: bool = False,   # rankings (TIGER's and the floors') skip the user's history items
    eval_transition_prior: float = 0.0,   # search: + W * log(1 + count) of what followed the last item (not the paper's)
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
    args = dict(locals())  # train()'s arguments, as bound
    check_bindings(args)  # before anything is read or written
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    env = init_distributed(None if device == "auto" else device)  # one process, or one per torchrun rank
    dev = env.device
    seed_all(seed + env.rank)  # dropout noise differs per rank; rank 0's is the one-process stream
    out_dir = run_dir(save_dir, dataset, split)
    selected_on = protocol_name(eval_exclude_history)  # the ranking protocol best.pt is chosen on

    tokenizer_file = existing_tokenizer_path(tokenizer_dir, dataset, split)
    tokenizer, tokenizer_hash = SemanticIdTokenizer.load(tokenizer_file), file_sha256(tokenizer_file)
    with main_rank_first(env):  # rank 0 builds the caches; the others then read them
        train_data = SeqData(dataset_folder, dataset, split, "train", max_seq_len, cache_dir)
        valid_data = SeqData(dataset_folder, dataset, split, "valid", max_seq_len, cache_dir)
    check_tokenizer_items(tokenizer_file, tokenizer.n_items, train_data.n_items, f"{dataset}/{split}")
    sem_ids = tokenizer.sem_ids  # [n_items, T] stays on the CPU: batches are gathered there
    # step -> this rank's batch: examples, or with all_positions windows of them; refuses a batch_size larger
    # than the split before any file is written
    stream = TrainingStream(train_data, sem_ids, batch_size, seed, all_positions=all_positions,
                            bucket_by_length=bucket_by_length, resident=resident_data, device=dev, env=env,
                            min_length=2 if compile_model else 1,  # compiled: never 1 history column
                            history_crop=history_crop)
    trie = tokenizer.trie().to(dev)
    valid_index = validation_users(len(valid_data), valid_max_users)  # fixed, spread out

    bindings = gin_bindings(train)
    model = build_model(sem_ids, tokenizer.codebook_size, train_data.max_seq_len, args).to(dev)
    opt = build_optimizer(model, optimizer, learning_rate, weight_decay)
    scheduler = ramp_then_inverse_sqrt(opt, lr_ramp_steps, lr_constant_steps)
    average = WeightAverage(model, ema_decay) if ema_decay else None  # runtime/weight_average.py
    evaluated = average.module if average is not None else model  # the weights validation and best.pt read
    if env.is_main:
        print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(train_data):,} train examples"
              + (f" in {stream.n_units:,} windows" if all_positions else "") + ", "
              f"{len(valid_index):,} validation users; device {dev}, {env.world_size} process(es); best.pt selected "
              f"on valid {select_metric}, {selected_on} protocol", file=sys.stderr)

    # The floors every validation number is read against, on the same validation users, under both protocols
    baselines = validation_baselines(train_data, valid_data, valid_index, sem_ids, selected_on)
    # the search's transition prior: what followed each item among the training examples, and how often
    successors = transition_prior_table(train_data) if eval_transition_prior else None
    if env.is_main:
        print("\n".join(baselines_lines(baselines)), file=sys.stderr)

    step, best, history, seconds_before = 0, {"step": None, "metrics": None}, [], 0.0
    last_path, best_path = out_dir / "checkpoint.pt", out_dir / "best.pt"
    if resume and last_path.exists():
        step, best, history = resume_run(last_path, bindings, force_resume, tokenizer_file, tokenizer_hash, env,
                                         model=model, optimizer=opt, scheduler=scheduler,
                                         ema=evaluated if average is not None else None)
        seconds_before = history[-1]["wall_seconds"] if history else 0.0
    last_saved_step = step if step else None
    if env.is_main:  # only once the run is known to start or resume: a refused resume leaves config.gin alone
        claim_run_folder(out_dir)  # one run at a time writes it; an unwritable folder fails here
        atomic_write_text(gin.operative_config_str(), out_dir / "config.gin")
        atomic_write_text(json.dumps(baselines, indent=1) + "\n", out_dir / "baselines.json")
    ddp_model = wrap_ddp(model, env)  # gradients averaged over ranks; `model` stays the plain module
    valid_shard = torch.tensor_split(valid_index, env.world_size)[env.rank]  # this rank's validation users
    wandb_run = start_wandb_run(wandb_project, bindings, out_dir, f"decoder-{dataset}-{split}") if use_wandb and env.is_main else None

    def save_last(metrics: dict) -> None:
        """checkpoint.pt: everything a resumed run needs to continue exactly from this step."""
        nonlocal last_saved_step
        rng = rank_rng_states(env)  # a collective: every rank gets here
        if env.is_main:
            save_checkpoint(last_path, {
                "model": model.state_dict(), "model_kwargs": model.kwargs, "optimizer": opt.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "rng": rng, "best": json.dumps(best),
                "history": json.dumps(history), "tokenizer_sha256": tokenizer_hash,
                **({"ema": evaluated.state_dict()} if average is not None else {}),
            }, step=step, bindings=bindings, metrics=metrics)
        last_saved_step = step

    stop = preemption.current()
    forward = compile_training_forward(ddp_model, compile_mode) if compile_model else ddp_model  # `model` keeps the weights
    autocast = precisions.autocast(dev, precision)  # evaluate.py uses the same
    start_time, eval_seconds, start_step = time.time(), 0.0, step
    nonfinite = FirstNonFiniteStep(dev)
    loss_sum, loss_steps = torch.zeros((), device=dev), 0  # training loss since the last evaluation, summed on the device
    bar = tqdm(total=iterations, initial=step, desc="train", file=sys.stderr, dynamic_ncols=True, disable=not env.is_main)
    while step < iterations:
        batch, rank_weight = stream.batch(step)
        loss, grad_norm = train_step(model, forward, batch, opt, autocast, trie=trie,
                                     micro_batch_size=micro_batch_size, grad_clip=grad_clip, compiled=compile_model,
                                     no_sync=ddp_model.no_sync if env.is_distributed else None,
                                     rank_weight=rank_weight,
                                     history_unlikelihood=history_unlikelihood)
        scheduler.step()
        if average is not None:
            average.update(first=step == 0)
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
        if not evaluating:
            if stop.requested(step, dev):  # SIGTERM or Ctrl-C (runtime/preemption.py): checkpoint, then return
                nonfinite.check(env, str(last_path), last_saved_step)
                save_last(best["metrics"] or {})
                break
            continue
        eval_start = time.time()
        evaluated.eval()
        with autocast:
            found = evaluate_split(evaluated, valid_data, sem_ids, trie, beam_width=eval_beam_width,
                                   batch_size=eval_batch_size, device=dev, index=valid_shard, env=env,
                                   sort_by_length=eval_sort_by_length, level_nll=True, successors=successors,
                                   prior_weight=eval_transition_prior)
        train_loss = (all_reduce_sum(loss_sum, env) / (env.world_size * loss_steps)).item()
        loss_sum.zero_()
        loss_steps = 0
        metrics = {k: v for k, v in found[selected_on]["tiger"].items() if k.split("@")[0] in ("recall", "ndcg")}
        record = {"step": step, "examples_seen": round(step * stream.examples_per_step), "train_loss": train_loss,
                  "wall_seconds": round(seconds_before + time.time() - start_time, 1), **curve_fields(found, selected_on)}
        history.append(record)
        if env.is_main:
            atomic_write_text("".join(json.dumps(r) + "\n" for r in history), out_dir / "curve.jsonl")
            tqdm.write(f"step {step}: loss {train_loss:.4f} valid {validation_line(record)}", file=sys.stderr)
        if wandb_run is not None:
            wandb_run.log({f"valid/{k}": v for k, v in record.items() if k not in ("step", "protocol", *PROTOCOLS)}
                          | {f"valid_{p}/{k}": v for p in PROTOCOLS for k, v in record[p].items()}, step=step)
        is_best = best["metrics"] is None or metrics[select_metric] > best["metrics"][select_metric]
        if is_best:
            best = {"step": step, "metrics": metrics}
        if is_best and env.is_main:
            save_checkpoint(best_path, {"model": evaluated.state_dict(), "model_kwargs": model.kwargs,
                                        "tokenizer_sha256": tokenizer_hash},  # evaluate.py, serving/ check it
                            step=step, bindings=bindings, metrics=metrics)
        save_last(metrics)
        eval_seconds += time.time() - eval_start
        if stop.requested(step, dev):  # this step's checkpoint is written
            break
    bar.close()
    nonfinite.check(env, str(last_path), last_saved_step)
    if wandb_run is not None:
        wandb_run.finish()
    return {"best_step": best["step"], "best_valid": best["metrics"], "selected_on": selected_on, "stopped_by": stop.name,
            "best_checkpoint": str(best_path), "last_checkpoint": str(last_path), "steps": step,
            "train_seconds": round(time.time() - start_time, 1),
            "eval_seconds": round(eval_seconds, 1),  # validation and checkpoints, inside train_seconds
            "steps_per_second": round((step - start_step) / max(time.time() - start_time - eval_seconds, 1e-9), 2),
            "batch_size": batch_size, "micro_batch_size": micro_batch_size or batch_size // env.world_size,
            "valid_history": history}


def main(argv: list[str] | None = None) -> dict:
    return run_entry_point(train, argv, description=__doc__)


if __name__ == "__main__":
    main()
