"""DDP ranks get distinct, reproducible random streams, and each restores its own from a checkpoint;
a single process is left untouched."""
import os
import random

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from speechbrain_dino.training.rng import RandomStates, decorrelate_ranks


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()


def draw_on_rank(rank, world_size, init_file, out_folder):
    """Two decorrelations from the same seed on one rank of a gloo group, then the draws after
    saving the states (every rank) and after restoring them; saves the draws."""
    os.environ["RANK"] = str(rank)  # as torchrun sets it (SpeechBrain's main process is rank 0)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    results = []
    for _ in range(2):
        seed_all(1986)  # every rank seeded alike, as seed_everything does
        decorrelate_ranks()
        results.append(draws())
    RandomStates().save(f"{out_folder}/states.ckpt")  # the checkpointer calls it on every rank
    results.append(draws())
    dist.barrier()  # the main process has written the file
    seed_all(0)
    RandomStates().load(f"{out_folder}/states.ckpt")
    results.append(draws())
    torch.save(results, f"{out_folder}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def test_ranks_draw_distinct_reproducible_streams_and_restore_their_own(tmp_path):
    mp.spawn(draw_on_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert rank0[0] == rank0[1] and rank1[0] == rank1[1]  # reproducible from the seed
    for stream0, stream1 in zip(rank0[0], rank1[0]):  # torch, numpy, python: all differ
        assert stream0 != stream1
    assert rank0[3] == rank0[2] and rank1[3] == rank1[2]  # each rank continues its own stream
    assert rank0[2] != rank1[2]


def test_single_process_streams_are_unchanged():
    seed_all(7)
    expected = draws()
    seed_all(7)
    decorrelate_ranks()
    assert draws() == expected
