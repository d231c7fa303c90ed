"""Use a trained model: embed audio into a file, score two files, rank a folder by similarity.

    python -m speechbrain_dino.inference.embed --pretrained_path exp/dino/pretrained AUDIO_FOLDER_OR_MANIFEST \
        --output_folder embeddings/          # embeddings.npy [N, D] + index.csv (ID,path)
    python -m speechbrain_dino.inference.embed --pretrained_path exp/dino/pretrained --compare a.wav b.wav
    python -m speechbrain_dino.inference.embed --pretrained_path exp/dino/pretrained --rank query.wav FOLDER

(also installed as ``sbdino-embed``). Embeddings come from the project's batched extraction
(:func:`speechbrain_dino.inference.embeddings.extract_embeddings`: what ``EncoderClassifier.encode_batch``
returns for each file), files at other rates are resampled to the model's. ``--compare`` prints the
cosine score and, when the model folder records one (see :mod:`speechbrain_dino.inference.export`),
the decision with its threshold and where that comes from. Any problem (a missing folder, a
folder that is not an exported model, unreadable audio) ends in one ``error: ...`` line, exit 2.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np

from speechbrain_dino.config.exits import clean_exit
from speechbrain_dino.data.audio import audio_info
from speechbrain_dino.data.manifest import Row, read_manifest
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.inference.embeddings import checked_pretrained_folder, extract_embeddings
from speechbrain_dino.inference.export import NO_THRESHOLD_HELP, DecisionThreshold, read_metadata, recorded_threshold
from speechbrain_dino.prepare.common import find_audio
from speechbrain_dino.prepare.folder import relative_id
from speechbrain_dino.verification.scoring import unit_rows

EMBEDDINGS_FILE = "embeddings.npy"
INDEX_FILE = "index.csv"


def audio_rows(source: PathLike) -> List[Row]:
    """Manifest rows (``ID``, ``duration``, ``wav``) of a folder of audio files or of a manifest CSV."""
    source = os.fspath(source)
    if os.path.isfile(source) and source.lower().endswith(".csv"):
        return read_manifest(source, required=("ID", "duration", "wav"))
    if not os.path.isdir(source):
        raise DataError("no such folder or manifest CSV", source)
    paths = find_audio(source)
    if not paths:
        raise DataError("no audio files in this folder", source)
    return [file_row(path, relative_id(os.path.relpath(path, source).replace(os.sep, "/"))) for path in paths]


def file_row(path: PathLike, utt_id: str) -> Row:
    """The manifest row of one audio file (DataError when it is missing or unreadable)."""
    return {"ID": utt_id, "duration": str(audio_info(path).duration), "wav": os.fspath(path)}


def embed(pretrained_path: PathLike, rows: Sequence[Row], device: str = "cpu") -> np.ndarray:
    """``[N, D]`` embeddings of ``rows`` (float32), in their order, by the model's batched extraction."""
    sample_rate = int(read_metadata(pretrained_path).get("sample_rate", 16000))
    table = extract_embeddings(
        pretrained_path, rows, device=device, sample_rate=sample_rate, resample=True, progress=False
    )
    return table.vectors


def write_embeddings(vectors: np.ndarray, rows: Sequence[Row], output_folder: PathLike) -> Tuple[str, str]:
    """Writes ``embeddings.npy`` (``[N, D]``) and ``index.csv`` (``ID,path`` of row i); returns both paths."""
    os.makedirs(os.fspath(output_folder), exist_ok=True)
    vectors_path = os.path.join(os.fspath(output_folder), EMBEDDINGS_FILE)
    index_path = os.path.join(os.fspath(output_folder), INDEX_FILE)
    np.save(vectors_path, vectors)
    with open(index_path, "w", newline="", encoding="utf-8") as fout:
        writer = csv.writer(fout)
        writer.writerow(["ID", "path"])
        writer.writerows([row["ID"], row["wav"]] for row in rows)
    return vectors_path, index_path


def cosine_to_first(vectors: np.ndarray) -> np.ndarray:
    """``[N - 1]`` cosine scores of rows 1..N-1 of ``vectors`` ``[N, D]`` against row 0."""
    units = unit_rows(vectors).numpy()
    return units[1:] @ units[0]


def compare(pretrained_path: PathLike, first: PathLike, second: PathLike, device: str = "cpu") -> float:
    """The cosine score of two audio files."""
    rows = [file_row(first, "a"), file_row(second, "b")]
    return float(cosine_to_first(embed(pretrained_path, rows, device))[0])


def rank(
    pretrained_path: PathLike, query: PathLike, folder: PathLike, device: str = "cpu"
) -> List[Tuple[float, str]]:
    """``(score, path)`` of every file of ``folder`` (or manifest) against ``query``, best first."""
    rows = audio_rows(folder)
    scores = cosine_to_first(embed(pretrained_path, [file_row(query, "query"), *rows], device))
    return sorted(((float(score), row["wav"]) for score, row in zip(scores, rows)), reverse=True)


def decision_line(score: float, threshold: Optional[DecisionThreshold]) -> str:
    """What the score means with the model's recorded threshold (or that it records none)."""
    if threshold is None:
        return f"no decision: {NO_THRESHOLD_HELP}"
    verdict = "same speaker" if score > threshold.value else "different speakers"
    return f"{verdict} (threshold {threshold.describe()})"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line: a model, and what to do with it (embed, ``--compare`` or ``--rank``)."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_dino.inference.embed",
        description="Embed audio with a trained model, compare two files, or rank a folder.",
    )
    parser.add_argument("--pretrained_path", required=True, help="an exported pretrained/ folder")
    parser.add_argument("inputs", nargs="?", metavar="AUDIO", help="a folder of audio files or a manifest CSV to embed")
    parser.add_argument("--output_folder", default="embeddings", help="where embeddings.npy and index.csv go")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="print the cosine score of two files")
    parser.add_argument("--rank", nargs=2, metavar=("QUERY", "FOLDER"), help="list FOLDER's files closest to QUERY")
    parser.add_argument("--top", type=int, default=10, help="how many files --rank lists (default 10)")
    parser.add_argument("--device", default="cpu", help="e.g. cuda:0")
    args = parser.parse_args(argv)
    if sum(bool(choice) for choice in (args.inputs, args.compare, args.rank)) != 1:
        parser.error("give exactly one of: AUDIO (a folder or manifest to embed), --compare A B, --rank QUERY FOLDER")
    return args


def run(args: argparse.Namespace) -> None:
    """Does what the arguments ask and prints the result."""
    checked_pretrained_folder(args.pretrained_path)
    if args.compare:
        score = compare(args.pretrained_path, *args.compare, device=args.device)
        print(f"cosine {score:.4f}")
        print(decision_line(score, recorded_threshold(args.pretrained_path)))
    elif args.rank:
        for score, path in rank(args.pretrained_path, *args.rank, device=args.device)[: args.top]:
            print(f"{score:.4f}  {path}")
    else:
        rows = audio_rows(args.inputs)
        paths = write_embeddings(embed(args.pretrained_path, rows, args.device), rows, args.output_folder)
        print(f"{len(rows)} embeddings: {paths[0]}, index {paths[1]}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point (``sbdino-embed``)."""
    clean_exit(run)(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
