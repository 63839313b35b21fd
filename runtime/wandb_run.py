"""Optional Weights & Biases logging for the entry points (rank 0 only, off by default)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def start_wandb_run(project: str, config: dict[str, Any], run_dir: Path, name: str):
    """A wandb run logging into `run_dir`; offline when the service is unreachable (`wandb sync` later)."""
    import wandb  # imported only when asked for: it is slow to import

    kwargs = dict(project=project, config=config, dir=str(run_dir), name=name)
    try:
        return wandb.init(**kwargs, resume="allow")
    except Exception as e:  # no network: keep the logs locally
        print(f"wandb unreachable ({e}); logging offline", file=sys.stderr)
        return wandb.init(**kwargs, mode="offline")
