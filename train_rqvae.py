"""Stage 1 of TIGER: train the RQ-VAE and turn every item into a semantic ID.

    python train_rqvae.py configs/rqvae_amazon.gin [--gin 'train.iterations=1000' ...]

Writes <save_dir>/<dataset>-<split>/: checkpoint.pt (+ checkpoint.json), semantic_ids.pt
(the SemanticIdTokenizer that train_decoder.py reads), semantic_ids.csv (the same table with each item's own
id and title, to read), semantic_id_clusters.png/.json (the first-level clusters' sizes and a few titles from the
largest; collisions per prefix length: do the codes mean something?) and config.gin; rerunning the same
command resumes from checkpoint.pt. Logs go to stderr; the last stdout line is one JSON
object with the final metrics and paths.

    torchrun --nproc_per_node N train_rqvae.py configs/rqvae_amazon.gin

trains with N processes (DDP; NCCL on GPUs, gloo on the CPU): every rank draws the same global
batch and keeps its 1/N slice, so batch_size and learning_rate mean what they mean for one
process; k-means init and dead-code restarts are decided on rank 0 and broadcast; rank 0 logs
and writes every file.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import gin
import torch.distributed
import torch

from data.processed import ItemData
from evaluation.semantic_id_clusters import PICTURE, stats_table, write_cluster_report
from runtime.atomic_io import atomic_write_text
from runtime.checkpointing import (CheckpointError, check_resume_config, gin_bindings, gin_defaults, load_checkpoint,
                                   save_checkpoint, seed_all)
from modules.codebook_health import code_counts, codebook_perplexity, codebook_usage, restart_dead_codes
from runtime.distributed import (DistEnv, all_gather_cat, all_reduce_sum, barrier, broadcast_module, init_distributed,
                                 main_rank_first, rank_rng_states, restore_rank_rng_states, shard, wrap_ddp)
from runtime.errors import ConfigError
from runtime.gin_cli import check_choice, check_non_negative, check_positive, run_entry_point
from runtime.wandb_run import start_wandb_run
from runtime.loss_watch import FirstNonFiniteStep
from runtime.progress import tqdm  # tqdm that says at the start when the run is estimated to take long
from modules.quantize import FORWARD_MODES
from modules.rqvae import RqVae
from runtime import preemption
from runtime.run_folder import claim_run_folder, run_dir, tokenizer_path
from modules.tokenizer import SemanticIdTokenizer, collision_stats

# Bindings that may change between a run and its resumption (extend a run, switch logging).
RESUMABLE_CHANGES = ("iterations", "resume", "force_resume", "eval_every", "checkpoint_every", "use_wandb",
                     "wandb_project", "device", "num_threads",
                     "save_dir")  # a run folder moved elsewhere continues where it stopped
# Bindings older runs recorded that this version no longer has, with the value that did what the code now does:
# SimVQ, unit-norm codes and an annealed Gumbel temperature, which no config or result used.
RETIRED_BINDINGS = {"sim_vq": "False", "normalize_codes": "False", "gumbel_temperature_start": "1.0",
                    "gumbel_temperature_end": "1.0", "gumbel_anneal_steps": "0"}


@torch.no_grad()
def evaluate(model: RqVae, eval_features: torch.Tensor, all_features: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Held-out reconstruction loss, and the health of the IDs the catalogue would get now."""
    model.eval()
    total, n = 0.0, 0
    for x in eval_features.split(batch_size):
        total += model(x).reconstruction_loss.item() * len(x)
        n += len(x)
    ids = torch.cat([model.semantic_ids(x) for x in all_features.split(batch_size)])  # [n_items, L]
    counts = code_counts(ids, model.codebook_size)
    metrics = {"eval_reconstruction_loss": total / max(n, 1)}
    for level, (usage, perplexity) in enumerate(zip(codebook_usage(counts), codebook_perplexity(counts))):
        metrics[f"usage_level_{level}"] = usage.item()
        metrics[f"perplexity_level_{level}"] = perplexity.item()
    metrics.update(collision_stats(ids.cpu()))
    model.train()
    return metrics


def check_bindings(b: dict[str, Any]) -> None:
    """train()'s arguments `b` in range, each error naming its binding."""
    check_positive(**{k: b[k] for k in ("hidden_dims", "latent_dim", "codebook_size", "n_layers", "kmeans_iters",
                                        "dead_code_window", "learning_rate", "batch_size", "iterations", "eval_every",
                                        "checkpoint_every", "num_threads")})
    check_non_negative(**{k: b[k] for k in ("collaborative_dim", "collaborative_weight", "commitment_weight",
                                            "weight_decay")})
    if not 0 <= b["held_out_fraction"] < 1:
        raise ConfigError(f"train.held_out_fraction = {b['held_out_fraction']!r}: must be in [0, 1)",
                          binding="held_out_fraction")
    check_choice(optimizer=(b["optimizer"], tuple(OPTIMIZERS)), forward_mode=(b["forward_mode"], FORWARD_MODES))


def resume_run(state: dict, path: Path, env: DistEnv, model: RqVae, opt: torch.optim.Optimizer,
               counts: torch.Tensor) -> int:
    """Load a checkpoint's weights, optimiser, code counts (on rank 0: the saved ones are summed over ranks)
    and this rank's RNG -> its step."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if env.is_main:
        counts.copy_(state["code_counts"])
    restore_rank_rng_states(state["rng"], env)
    if env.is_main:
        print(f"resumed from {path} at step {state['step']}", file=sys.stderr)
    return state["step"]


# train.optimizer: AdamW is the steadier default; Adagrad is the TIGER paper's choice (Sec. 4.1: Adagrad, lr 0.4)
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adagrad": torch.optim.Adagrad}


@gin.configurable
def train(
    # data
    dataset_folder: str = "raw_data/amazon",
    dataset: str = "amazon",
    split: str = "beauty",
    cache_dir: str = "cache",
    save_dir: str = "out/rqvae",
    encoder_model: str | None = None,
    held_out_fraction: float = 0.05,
    collaborative_dim: int = 0,
    collaborative_weight: float = 1.0,
    # model (TIGER Sec. 4.1: 512-256-128 MLP, 32-d latent, 3 levels of 256 codes, beta 0.25)
    hidden_dims: tuple[int, ...] = (512, 256, 128),
    latent_dim: int = 32,
    codebook_size: int = 256,
    n_layers: int = 3,
    commitment_weight: float = 0.25,
    forward_mode: str = "ste",
    kmeans_iters: int = 20,
    dead_code_restart: bool = True,
    dead_code_window: int = 20,
    # optimisation
    optimizer: str = "adamw",
    learning_rate: float = 0.003,
    weight_decay: float = 0.0,
    batch_size: int = 1024,
    iterations: int = 20_000,
    eval_every: int = 1000,
    checkpoint_every: int = 1000,
    seed: int = 42,
    resume: bool = True,
    force_resume: bool = False,
    device: str = "auto",
    num_threads: int | None = None,
    use_wandb: bool = False,
    wandb_project: str = "tiger-rqvae",
) -> dict:
    start_time = time.time()
    check_bindings(dict(locals()))  # before anything is read or written
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    env = init_distributed(None if device == "auto" else device)  # one process, or one per torchrun rank
    device = env.device
    # Noise (k-means++, restarts, Gumbel) differs per rank; rank 0's stream is the one-process stream.
    seed_all(seed + env.rank)
    out_dir = run_dir(save_dir, dataset, split)  # stage 2 reads <tokenizer_dir>/<dataset>-<split>/semantic_ids.pt
    checkpoint_path = out_dir / "checkpoint.pt"
    bindings = gin_bindings(train)
    state = None
    if resume and checkpoint_path.exists():  # checked before the data: a refused resume embeds nothing
        state = load_checkpoint(checkpoint_path, map_location=device)
        check_resume_config(state["manifest"], bindings, path=checkpoint_path, force=force_resume,
                            ignore=RESUMABLE_CHANGES, defaults=gin_defaults(train), retired=RETIRED_BINDINGS)

    # ---- data: item content embeddings (+ collaborative vectors when bound); a held-out slice only for
    # the reconstruction loss
    items = dict(root=dataset_folder, dataset=dataset, split=split, held_out_fraction=held_out_fraction,
                 seed=seed, cache_dir=cache_dir, encoder_model=encoder_model, collaborative_dim=collaborative_dim,
                 collaborative_weight=collaborative_weight)
    with main_rank_first(env):  # rank 0 builds the caches; the others then read them
        catalogue = ItemData(subset="all", **items)
    all_features = catalogue.features.to(device)  # [n_items, d], row = item id
    held_out = catalogue.held_out.to(device)  # [n_items] bool
    train_features, eval_features = all_features[~held_out], all_features[held_out]  # [n_train, d], [n_eval, d]
    n_train = len(train_features)

    # ---- model and optimiser
    model_kwargs = dict(input_dim=catalogue.feature_dim, hidden_dims=list(hidden_dims), latent_dim=latent_dim,
                        codebook_size=codebook_size, n_layers=n_layers, commitment_weight=commitment_weight,
                        forward_mode=forward_mode)
    model = RqVae(**model_kwargs).to(device)
    opt = OPTIMIZERS[optimizer]([p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=weight_decay)
    counts = torch.zeros(n_layers, codebook_size, dtype=torch.long, device=device)  # this rank's code picks since last restart
    step, last_saved_step = 0, None
    if state is not None:
        saved_dim = state["model_kwargs"]["input_dim"]
        if saved_dim != catalogue.feature_dim:  # e.g. the cache now holds another encoder's vectors
            raise CheckpointError(
                f"{checkpoint_path} was trained on {saved_dim}-d item features but {dataset}/{split} (encoder_model="
                f"{encoder_model!r}, cache {cache_dir}) gives {catalogue.feature_dim}-d ones: choose another save_dir "
                "or bind train.resume=False to start over")
        step = last_saved_step = resume_run(state, checkpoint_path, env, model, opt, counts)
    if env.is_main:  # only once the run is known to start or resume: a refused resume leaves config.gin alone
        claim_run_folder(out_dir)  # one run at a time writes it; an unwritable folder fails here
        atomic_write_text(gin.operative_config_str(), out_dir / "config.gin")
    ddp_model = wrap_ddp(model, env)  # gradients averaged over ranks; `model` stays the plain module

    wandb_run = None
    if use_wandb and env.is_main:
        wandb_run = start_wandb_run(wandb_project, bindings, out_dir, f"rqvae-{dataset}-{split}")

    def save(metrics: dict[str, float]) -> None:
        nonlocal last_saved_step
        rng = rank_rng_states(env)  # a collective: every rank calls save()
        global_counts = all_reduce_sum(counts, env)
        if env.is_main:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                     "rng": rng, "model_kwargs": model_kwargs, "code_counts": global_counts.cpu()}
            save_checkpoint(checkpoint_path, state, step=step, bindings=bindings, metrics=metrics)
        last_saved_step = step

    # ---- training loop
    stop = preemption.current()
    model.train()
    metrics: dict[str, float] = {}
    train_loss: float | None = None
    nonfinite = FirstNonFiniteStep(device)
    batch_generator = torch.Generator(device=device)
    progress = tqdm(total=iterations, initial=step, desc="rqvae", file=sys.stderr, dynamic_ncols=True,
                    disable=not env.is_main)
    while step < iterations:
        # A step's global batch depends on (seed, step) only: identical on every rank, and a resumed
        # run draws the batches an uninterrupted one would. Each rank trains on its slice.
        batch_generator.manual_seed(seed + step)
        global_batch = train_features[torch.randperm(n_train, generator=batch_generator, device=device)[:batch_size]]  # [B, d]
        if not model.codebooks_initialized:
            model.init_codebooks(global_batch, kmeans_iters)  # k-means on the first batch (TIGER Sec. 3.1)
            broadcast_module(model, env)  # rank 0's codebooks everywhere (k-means++ seeding is random)
        out = ddp_model(shard(global_batch, env))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        step += 1
        nonfinite.update(out.loss, step)
        counts += code_counts(out.ids, codebook_size)
        # No restart on the last step: the final codes should be trained ones, not fresh copies of residuals.
        if dead_code_restart and step % dead_code_window == 0 and step < iterations:
            # Decided on rank 0 from the whole global batch (counts summed, residuals gathered), then broadcast.
            global_counts, residuals = all_reduce_sum(counts, env), all_gather_cat(out.residuals, env)
            if env.is_main:
                restart_dead_codes(list(model.levels), global_counts, residuals)
            broadcast_module(model, env)
            counts.zero_()

        progress.update(1)
        if step % eval_every == 0 or step % checkpoint_every == 0 or step == iterations:
            nonfinite.check(env, str(checkpoint_path), last_saved_step)  # before anything is logged or saved
        if step % eval_every == 0 or step == iterations:
            # read only here: .item() waits for the GPU; the mean over ranks is the global batch's loss
            losses = all_reduce_sum(torch.stack([out.loss.detach(), out.reconstruction_loss.detach()]), env) / env.world_size
            train_loss = losses[0].item()
            metrics = {"train_loss": train_loss, "train_reconstruction_loss": losses[1].item(),
                       **evaluate(model, eval_features, all_features, batch_size)}
            usage = "/".join(f"{metrics[f'usage_level_{l}']:.0%}" for l in range(n_layers))
            if env.is_main:
                progress.write(f"step {step}: loss {train_loss:.4f} eval_recon {metrics['eval_reconstruction_loss']:.4f} "
                               f"usage {usage} collisions {metrics['collision_share']:.2%} "
                               f"largest group {metrics['largest_collision_group']}", file=sys.stderr)
            if wandb_run is not None:
                wandb_run.log(metrics, step=step)
        if step % checkpoint_every == 0 or step == iterations:
            save(metrics)
        if stop.requested(step, device):  # SIGTERM or Ctrl-C (runtime/preemption.py): checkpoint, then return
            if last_saved_step != step:
                nonfinite.check(env, str(checkpoint_path), last_saved_step)
                save(metrics)
            break
    progress.close()
    nonfinite.check(env, str(checkpoint_path), last_saved_step)
    if stop.name is not None and step < iterations:  # stopped early: the IDs are written when training ends
        return {**metrics, "step": step, "stopped_by": stop.name, "checkpoint": str(checkpoint_path)}
    if not metrics:  # resumed a finished run: report the model as it is
        metrics = evaluate(model, eval_features, all_features, batch_size)

    # ---- the semantic IDs of the whole catalogue (every rank holds the same model)
    if metrics["largest_collision_group"] > codebook_size:  # the collision token cannot number them all
        raise ConfigError(
            f"after {step} steps {metrics['largest_collision_group']:,} items share one {n_layers}-code prefix, more than the "
            f"{codebook_size} collision tokens (train.codebook_size) can tell apart: no semantic_ids.pt was written.\n"
            f"Train longer: rerun with a larger train.iterations (now {iterations}; it resumes from {checkpoint_path}). "
            "On Beauty 200 steps are enough (configs/rqvae_amazon_smoke.gin), 900 give 3.7% collisions",
            binding="iterations")
    tokenizer = SemanticIdTokenizer.from_rqvae(model, all_features, batch_size)
    ids_path = tokenizer_path(save_dir, dataset, split)
    if env.is_main:
        tokenizer.save(ids_path)
        tokenizer.write_table(ids_path.with_suffix(".csv"), catalogue.own_item_ids, catalogue.titles)  # for a person
        clusters = write_cluster_report(tokenizer, catalogue.titles, ids_path.parent, f"{dataset}/{split}")
        print(f"semantic IDs: {clusters['picture']}\n{stats_table(clusters)}", file=sys.stderr)
    barrier(env)  # the file exists on return on every rank
    if wandb_run is not None:
        wandb_run.finish()
    result = {**metrics, "step": step, "last_train_loss": train_loss, "n_items": tokenizer.n_items,
              "max_collision_token": int(tokenizer.sem_ids[:, -1].max()), "wall_time_s": round(time.time() - start_time, 1),
              "device": str(device), "processes": env.world_size, "checkpoint": str(checkpoint_path), "semantic_ids": str(ids_path),
              "semantic_ids_table": str(ids_path.with_suffix(".csv")), "semantic_id_clusters": str(ids_path.parent / PICTURE)}
    return result


def main(argv: list[str] | None = None) -> dict:
    return run_entry_point(train, argv, description=__doc__)


if __name__ == "__main__":
    main()
