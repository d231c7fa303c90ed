"""Batched embedding extraction for a manifest, with an on-disk cache and multi-process sharding.

Any encoder folder that ``EncoderClassifier.from_hparams`` loads works (ours after DINO or AAM, or
SpeechBrain's own), and the embedding is exactly what its ``encode_batch`` returns, so numbers are
comparable across toolkits. Speed comes from batching, not from a different model path:
utterances are cut into segments (whole, chunked when very long, or one random bounded segment),
sorted by length and packed into batches bounded by padded seconds; each audio file is read once
and each batch goes through features + encoder once. Under ``torchrun`` every rank embeds its
own shard and rank 0 merges them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.data_pipeline import provides, takes
from tqdm import tqdm

from speechbrain_dino.data.audio import load_audio
from speechbrain_dino.data.dataio import DurationBatchSampler
from speechbrain_dino.data.manifest import Row
from speechbrain_dino.data.short_clips import pad_to_minimum
from speechbrain_dino.errors import DataError, PathLike, first_line
from speechbrain_dino.inference.export import pretrained_weights, read_metadata

logger = logging.getLogger(__name__)


@dataclass
class EmbeddingTable:
    """Embeddings of a manifest: ``ids[i]`` is the utterance of ``vectors[i]`` (``[N, D]`` float32)."""

    ids: List[str]
    vectors: np.ndarray

    def save(self, path: PathLike, key: str = "") -> None:
        """Writes an ``.npz`` (atomically) holding ids, vectors and the cache key."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, ids=np.asarray(self.ids), vectors=self.vectors, key=np.asarray(key))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: PathLike) -> "EmbeddingTable":
        """Reads a table written by :meth:`save`."""
        with np.load(os.fspath(path)) as data:
            return cls([str(i) for i in data["ids"]], data["vectors"].astype(np.float32))

    def subset(self, ids: Sequence[str]) -> np.ndarray:
        """Vectors ``[len(ids), D]`` in the order of ``ids`` (DataError listing unknown ids)."""
        position = {utt_id: index for index, utt_id in enumerate(self.ids)}
        missing = [utt_id for utt_id in ids if utt_id not in position]
        if missing:
            raise DataError(f"{len(missing)} id(s) have no embedding, e.g. {missing[:5]}")
        return self.vectors[[position[utt_id] for utt_id in ids]]


def load_encoder(pretrained_path: PathLike, device: str = "cpu", savedir: Optional[str] = None):
    """Loads an encoder folder offline with SpeechBrain's ``EncoderClassifier``.

    A path that is not an existing folder would be taken for a Hugging Face hub id (and try the
    network), so it is rejected here. Each call uses a fresh ``savedir`` unless one is given,
    because SpeechBrain silently reuses whatever model a savedir already holds.
    """
    from speechbrain.inference.speaker import EncoderClassifier

    folder = checked_pretrained_folder(pretrained_path)
    if savedir is not None:
        return _from_hparams(EncoderClassifier, folder, savedir, device)
    with tempfile.TemporaryDirectory(prefix="sbdino-encoder-") as scratch:  # weights end up in memory
        return _from_hparams(EncoderClassifier, folder, scratch, device)


def _from_hparams(interface, folder: str, savedir: str, device: str):
    """``interface.from_hparams`` in eval mode; a missing or corrupt file is one DataError."""
    if read_metadata(folder):  # exported by this project: name a missing weights file plainly
        pretrained_weights(folder)
    try:
        return interface.from_hparams(source=folder, savedir=savedir, run_opts={"device": device}).eval()
    except Exception as error:  # zip, pickle, YAML or state-dict errors of a damaged folder
        raise DataError(f"cannot load the encoder ({type(error).__name__}: {first_line(error)})", folder) from None


def checked_pretrained_folder(pretrained_path: PathLike) -> str:
    """The absolute folder path, or a DataError when it holds no ``hyperparams.yaml``."""
    folder = os.path.abspath(os.fspath(pretrained_path))
    if not os.path.isfile(os.path.join(folder, "hyperparams.yaml")):
        raise DataError(
            "not a pretrained encoder folder (no hyperparams.yaml); give the 'pretrained' folder "
            "written by a training recipe",
            folder,
        )
    return folder


def model_fingerprint(pretrained_path: PathLike) -> str:
    """SHA-256 over the folder's yaml and checkpoint files: changes whenever the model does."""
    digest = hashlib.sha256()
    folder = checked_pretrained_folder(pretrained_path)
    for name in sorted(os.listdir(folder)):
        if name.endswith((".yaml", ".ckpt")):
            digest.update(name.encode())
            with open(os.path.join(folder, name), "rb") as fin:
                for block in iter(lambda: fin.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def plan_segments(
    rows: Sequence[Row],
    sample_rate: int = 16000,
    chunk_seconds: Optional[float] = None,
    max_seconds: Optional[float] = None,
    seed: int = 0,
) -> List[dict]:
    """Cuts utterances into the segments that will be embedded.

    - ``max_seconds``: an utterance longer than this is represented by ONE segment of that length
      at a random (seeded) position (pseudo-labelling of long recordings).
    - ``chunk_seconds``: otherwise, an utterance longer than this is split into equal chunks whose
      embeddings are averaged.

    Returns
    -------
    list of dict
        ``{"utt": row index, "wav", "start", "frames", "duration"}`` per segment (frames in samples,
        -1 = to the end).
    """
    rng = np.random.default_rng(seed)
    segments = []
    for index, row in enumerate(rows):
        duration = float(row["duration"])
        total = int(duration * sample_rate)
        if max_seconds is not None and duration > max_seconds:
            frames = int(max_seconds * sample_rate)
            start = int(rng.integers(0, max(1, total - frames)))
            pieces = [(start, frames)]
        elif chunk_seconds is not None and duration > chunk_seconds:
            count = math.ceil(duration / chunk_seconds)
            bounds = np.linspace(0, total, count + 1).astype(int)
            pieces = [(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]
        else:
            pieces = [(0, -1)]
        for start, frames in pieces:
            seconds = duration if frames < 0 else frames / sample_rate
            segments.append(
                {"utt": index, "wav": row["wav"], "start": start, "frames": frames, "duration": seconds}
            )
    return segments


def _segment_dataset(segments: List[dict], sample_rate: int, resample: bool) -> DynamicItemDataset:
    """DynamicItemDataset over segments providing ``sig`` ``[T]`` and ``utt`` (row index)."""
    dataset = DynamicItemDataset({str(i): segment for i, segment in enumerate(segments)})

    @takes("wav", "start", "frames")
    @provides("sig")
    def read_segment(wav: str, start: int, frames: int) -> torch.Tensor:
        return load_audio(
            wav, sample_rate=sample_rate, resample=resample, frame_offset=start, num_frames=frames
        )

    dataset.add_dynamic_item(read_segment)
    dataset.set_output_keys(["id", "sig", "utt"])
    return dataset


def default_batch_seconds(device) -> float:
    """Padded audio per extraction batch: small on CPU, where big batches run slower (measured in
    ``bench/extraction_speed.py``), large on GPU."""
    return 16.0 if torch.device(device).type == "cpu" else 320.0


def encode_masked(modules, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``encode_batch`` with padded feature frames zeroed after normalisation.

    ``EncoderClassifier.encode_batch`` leaves the padding's log-filterbank values (about log 0)
    in place, and ECAPA's convolutions carry them into the valid frames: a padded utterance's
    embedding then differs from its unpadded one (cosine ~0.99). Zeroing them (the normalised
    mean) keeps batched embeddings within ~1e-4 cosine of one-at-a-time ones, and is identical
    for unpadded input.

    Arguments
    ---------
    modules : mapping with ``compute_features``, ``mean_var_norm``, ``embedding_model``.
    wavs : torch.Tensor
        ``[B, T]`` waveforms, zero padded.
    lengths : torch.Tensor
        ``[B]`` relative lengths in (0, 1].

    Returns
    -------
    torch.Tensor
        ``[B, D]`` embeddings.
    """
    feats = modules["compute_features"](wavs)
    feats = modules["mean_var_norm"](feats, lengths)
    frames = feats.shape[1]
    valid = torch.arange(frames, device=feats.device)[None, :] < torch.round(
        lengths * frames
    )[:, None]
    feats = feats * valid.unsqueeze(-1)
    return modules["embedding_model"](feats, lengths).squeeze(1)


@torch.inference_mode()
def embed_segments(
    modules,
    device: torch.device,
    segments: List[dict],
    n_utterances: int,
    sample_rate: int = 16000,
    resample: bool = False,
    max_batch_seconds: Optional[float] = None,
    min_length_ratio: float = 0.9,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Embeds segments in length-sorted batches and averages them per utterance.

    ``modules`` holds ``compute_features``, ``mean_var_norm`` and ``embedding_model`` (an
    ``EncoderClassifier``'s ``mods``, or a Brain's teacher during training), already on ``device``.
    A batch holds utterances of at least ``min_length_ratio`` times its longest one's length and
    at most ``max_batch_seconds`` of padded audio (None: :func:`default_batch_seconds`); a batch
    shorter than the encoders' shortest input is padded to it
    (:func:`~speechbrain_dino.data.short_clips.pad_to_minimum`).

    Returns
    -------
    np.ndarray
        ``[n_utterances, D]`` float32 (mean over each utterance's segments).
    """
    dataset = _segment_dataset(segments, sample_rate, resample)
    sampler = DurationBatchSampler(
        [s["duration"] for s in segments],
        max_batch_seconds or default_batch_seconds(device),
        min_length_ratio=min_length_ratio,
    )
    loader = make_dataloader(dataset, batch_sampler=sampler, num_workers=num_workers)
    sums: Optional[torch.Tensor] = None
    counts = torch.zeros(n_utterances)
    for batch in tqdm(loader, total=len(sampler), desc="embedding", disable=not progress):
        wavs, lengths = pad_to_minimum(*batch.sig, sample_rate)
        vectors = encode_masked(modules, wavs.to(device), lengths.to(device))
        vectors = vectors.float().cpu()
        if sums is None:
            sums = torch.zeros(n_utterances, vectors.shape[-1])
        utt_index = torch.as_tensor(batch.utt, dtype=torch.long)
        sums.index_add_(0, utt_index, vectors)
        counts.index_add_(0, utt_index, torch.ones(len(utt_index)))
    if sums is None:
        raise DataError("nothing to embed: the manifest has no rows")
    return (sums / counts.clamp(min=1).unsqueeze(1)).numpy().astype(np.float32)


def extract_embeddings(
    pretrained_path: PathLike,
    rows: Sequence[Row],
    cache_path: Optional[PathLike] = None,
    device: str = "cpu",
    sample_rate: int = 16000,
    resample: bool = False,
    max_batch_seconds: Optional[float] = None,
    chunk_seconds: Optional[float] = 30.0,
    max_seconds: Optional[float] = None,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
) -> EmbeddingTable:
    """Embeds every row of a manifest with the encoder in ``pretrained_path``.

    The result is cached at ``cache_path`` (``.npz``) together with a key over the model files, the
    rows and the options; a later call with the same key reads the cache instead of recomputing.
    Under ``torch.distributed`` each rank embeds ``rows[rank::world_size]`` and rank 0 merges the
    shards (``cache_path`` is then required, on a filesystem all ranks see).

    Returns
    -------
    EmbeddingTable
        ids in manifest order, vectors ``[N, D]`` float32.
    """
    if not rows:
        raise DataError("nothing to embed: the manifest has no rows")
    ids = [row["ID"] for row in rows]
    options = dict(
        sample_rate=sample_rate,
        resample=resample,
        chunk_seconds=chunk_seconds,
        max_seconds=max_seconds,
        seed=seed,
    )
    key = _cache_key(pretrained_path, rows, options)
    if cache_path is not None and _cache_matches(cache_path, key):
        logger.info("reusing cached embeddings %s", cache_path)
        return EmbeddingTable.load(cache_path)

    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if distributed and cache_path is None:
        raise ValueError("distributed extraction needs a cache_path that every rank can read")

    shard_rows = list(rows)[rank::world]
    encoder = load_encoder(pretrained_path, device=device)
    vectors = np.zeros((0, 0), dtype=np.float32)  # a rank with no rows (more ranks than rows)
    if shard_rows:
        segments = plan_segments(shard_rows, sample_rate, chunk_seconds, max_seconds, seed + rank)
        vectors = embed_segments(
            encoder.mods,
            encoder.device,
            segments,
            len(shard_rows),
            sample_rate=sample_rate,
            resample=resample,
            max_batch_seconds=max_batch_seconds,
            num_workers=num_workers,
            progress=progress and rank == 0,
        )
    if not distributed:
        table = EmbeddingTable(ids, vectors)
        if cache_path is not None:
            table.save(cache_path, key)
        return table

    shard_path = f"{os.fspath(cache_path)}.rank{rank}.npz"
    EmbeddingTable(ids[rank::world], vectors).save(shard_path)
    dist.barrier()
    if rank == 0:
        shards = []
        for other in range(world):
            other_path = f"{os.fspath(cache_path)}.rank{other}.npz"
            shards.append(EmbeddingTable.load(other_path).vectors)
            os.remove(other_path)
        merged = np.zeros((len(ids), shards[0].shape[1]), dtype=np.float32)
        for other, shard in enumerate(shards):
            if len(shard):
                merged[other::world] = shard
        EmbeddingTable(ids, merged).save(cache_path, key)
    dist.barrier()
    return EmbeddingTable.load(cache_path)


def _cache_key(pretrained_path: PathLike, rows: Sequence[Row], options: dict) -> str:
    """Hash of the model files, the rows' IDs/paths/durations and the extraction options."""
    digest = hashlib.sha256(model_fingerprint(pretrained_path).encode())
    digest.update(json.dumps(options, sort_keys=True).encode())
    for row in rows:
        digest.update(f"{row['ID']}\t{row['wav']}\t{row['duration']}\n".encode())
    return digest.hexdigest()


def _cache_matches(cache_path: PathLike, key: str) -> bool:
    """True when ``cache_path`` exists and was written with ``key``."""
    if not os.path.isfile(os.fspath(cache_path)):
        return False
    with np.load(os.fspath(cache_path)) as data:
        return "key" in data and str(data["key"]) == key


def extraction_options(hparams: Dict, run_opts: Dict) -> Dict:
    """Keyword arguments of ``extract_embeddings`` from an evaluation YAML and the run options."""
    return {
        "device": run_opts.get("device", "cpu"),
        "sample_rate": hparams["sample_rate"],
        "resample": hparams["resample"],
        "max_batch_seconds": hparams["max_batch_seconds"],
        "chunk_seconds": hparams["chunk_seconds"],
        "num_workers": hparams["num_workers"],
    }
