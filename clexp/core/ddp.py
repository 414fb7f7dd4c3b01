"""Lightning DDP under Hydra multirun, done right.

Lightning's subprocess launcher re-executes the command line for ranks > 0. In a multirun that
command still holds `-m` and the comma lists, so each child would start a sweep of its own
(Lightning issue 11300). Instead, rank 0 of each sweep job publishes the job's own overrides and
output folder in the environment its children inherit; a child re-launched that way runs exactly
that job in run mode, into that job's folder, and exits with it. The process group ends with the
job, so the next job starts a fresh one.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

JOB_ENV = "CLEXP_DDP_SWEEP_JOB"


def redirect_sweep_child() -> None:
    """In a DDP child (LOCAL_RANK > 0) of a sweep job: replace argv by that job's overrides."""
    job = os.environ.get(JOB_ENV)
    if not job or os.environ.get("LOCAL_RANK", "0") == "0":
        return
    spec = json.loads(job)
    sys.argv = [sys.argv[0], *spec["overrides"], f"hydra.run.dir={spec['run_dir']}", "hydra.output_subdir=null",
                f"hydra.job.name=train_ddp_process_{os.environ['LOCAL_RANK']}"]


@contextmanager
def sweep_job(multirun: bool, run_dir: Path):
    """Around one sweep job in rank 0: publish the job for DDP children; tear the group down after."""
    if not multirun or os.environ.get("LOCAL_RANK", "0") != "0":
        yield
        return
    from hydra.core.hydra_config import HydraConfig

    os.environ[JOB_ENV] = json.dumps({"overrides": list(HydraConfig.get().overrides.task), "run_dir": str(run_dir)})
    try:
        yield
    finally:
        os.environ.pop(JOB_ENV, None)
        end_process_group()


def end_process_group() -> None:
    """Destroy the process group (if any) and forget its port, so the next job starts afresh."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        for var in ("MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "PL_GLOBAL_SEED"):
            if var != "PL_GLOBAL_SEED":
                os.environ.pop(var, None)
