"""Two gloo processes on the CPU train to the same parameters as one process with the same global batch."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from runtime.distributed import DistEnv, all_reduce_sum, cleanup, init_distributed, shard, wrap_ddp

STEPS, GLOBAL_BATCH = 5, 8


def _train(env: DistEnv) -> torch.Tensor:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    ddp = wrap_ddp(model, env)
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-2)
    x, y = torch.randn(64, 6), torch.randn(64, 1)
    gen = torch.Generator().manual_seed(1)  # identical on every rank
    for _ in range(STEPS):
        idx = shard(torch.randint(0, 64, (GLOBAL_BATCH,), generator=gen), env)
        loss = torch.nn.functional.mse_loss(ddp(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    env = init_distributed("cpu")
    params = _train(env)
    total = all_reduce_sum(torch.tensor([float(rank + 1)]), env)
    if rank == 0:
        torch.save({"params": params, "total": total}, out)
    cleanup(env)
    # Everything the test checks is done and written. Skip interpreter finalisation: gloo's threads can
    # still release tensors then, which takes the GIL of a dying interpreter and aborts the process
    # (SIGABRT, "terminate called without an active exception"; pytorch/pytorch PR 179291).
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path):
    single = _train(DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    result = torch.load(out, weights_only=True)
    assert result["total"].item() == 3.0  # 1 + 2 summed over the ranks
    torch.testing.assert_close(result["params"], single, rtol=1e-5, atol=1e-6)


def test_shard_needs_divisible_batch():
    env = DistEnv(rank=1, world_size=2, local_rank=1, device=torch.device("cpu"))
    assert shard(torch.arange(6), env).tolist() == [3, 4, 5]
    with pytest.raises(ValueError, match="batch_size 5"):
        shard(torch.arange(5), env)


@pytest.mark.parametrize("rank, order", [(0, ["block", "barrier"]), (1, ["barrier", "block"])])
def test_main_rank_first_lets_rank_0_build_before_the_others_read(monkeypatch, rank, order):
    import runtime.distributed as distributed

    seen = []
    monkeypatch.setattr(distributed.dist, "barrier", lambda: seen.append("barrier"))
    with distributed.main_rank_first(DistEnv(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))):
        seen.append("block")
    assert seen == order
    seen.clear()
    with distributed.main_rank_first(DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))):
        seen.append("block")  # one process: nothing to wait for
    assert seen == ["block"]
