"""Decisions every DDP rank takes together: a flag raised on any rank holds on all of them.

A preemption signal may reach one process only, and a write may fail on the main process alone;
the ranks must still stop (or raise) at the same step, or the others would wait forever in their
next collective. :func:`any_rank` all-reduces a 0/1 flag (one small tensor, on the GPU under
NCCL). Outside an initialised process group it returns the flag unchanged.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one; every rank must call it."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
