"""Training in several processes under torchrun, without DistributedDataParallel.

Launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment),
every process trains on its shard of each epoch and gradients are averaged
with ``torch.distributed.all_reduce`` after ``backward()``. The model is not
wrapped in DistributedDataParallel, which is known to give errors or wrong
gradients with Jacobian-style double differentiation (PyTorch issues 47562,
63812). In one process every function here is a no-op or trivial.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as tdist

from gdrae.device import resolve_device
from gdrae.errors import GdraeError


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device): torchrun's environment if present (gloo on CPU, nccl on GPU), else one process."""
    use_cuda = resolve_device(device, "train.device").type == "cuda"
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, torch.device("cuda" if use_cuda else "cpu")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local)
    tdist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, torch.device(f"cuda:{local}" if use_cuda else "cpu")


@contextmanager
def same_refusal_everywhere(world: int) -> Iterator[None]:
    """A GdraeError raised in the block on any rank is raised on every rank, the same line (the lowest
    refusing rank's), so no rank goes on to wait in a collective for one that has stopped.

    Every rank runs the block: it ends in a collective. A no-op in one process.
    """
    error = None
    try:
        yield
    except GdraeError as exc:
        if world == 1:
            raise
        error = str(exc)
    if world > 1:
        errors: list[str | None] = [None] * world
        tdist.all_gather_object(errors, error)
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise GdraeError(first)


def sync_parameters(model: torch.nn.Module, world: int) -> None:
    """Copy rank 0's parameters and buffers to every rank (a no-op in one process)."""
    if world > 1:
        for tensor in list(model.parameters()) + list(model.buffers()):
            tdist.broadcast(tensor.data, src=0)


def average_gradients(model: torch.nn.Module, flags: torch.Tensor, world: int) -> torch.Tensor:
    """Average the gradients over ranks and sum ``flags``, in one all-reduce; returns the summed flags.

    Not DistributedDataParallel: see the module docstring.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads] + [flags.to(grads[0].dtype)])
    tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g)).div_(world)
        offset += g.numel()
    return flat[offset:]
