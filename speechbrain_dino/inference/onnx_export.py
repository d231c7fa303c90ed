"""ONNX export of an exported encoder: waveforms in, embeddings out, the features inside the graph.

    sbdino-export-onnx exp/round1/aam/pretrained encoder.onnx

(also ``python -m speechbrain_dino.inference.onnx_export``). The graph, for onnxruntime, sherpa-onnx
and other ONNX runtimes:

- inputs ``wavs`` float32 ``[batch, samples]`` (mono at the model's rate, zero padded) and
  ``lengths`` float32 ``[batch]`` (each row's share of ``samples``, 1.0 for the longest);
- output ``embedding`` float32 ``[batch, D]`` (not normalised; score two by cosine).

It computes ``EncoderClassifier.encode_batch`` for one clip, and keeps each row of a padded
batch close to that: a batch shorter than 0.1 s is zero-padded
(:func:`~speechbrain_dino.short_clips.pad_to_minimum`), then SpeechBrain's ``Fbank``, sentence mean
normalisation over each row's own frames, padded frames set to zero and the encoder
(:func:`~speechbrain_dino.embeddings.encode_masked`), with each row's length counted in the
feature frames it has alone (:func:`frame_lengths`). ``encode_batch`` on a padded batch lets the
padding move a short row's embedding (cosine ~0.99 to the row alone); here the rest is the one or
two frames at a row's end whose window reaches into the padding (measured in ``BENCHMARKS.md``).

The model's ``metadata_props`` hold ``sample_rate``, ``embedding_size``, the inputs' meaning and,
when the folder records one, ``verification_threshold`` and ``threshold_source``
(:mod:`speechbrain_dino.export`).

Export uses PyTorch's dynamo exporter (opset 18, dynamic batch and length). SpeechBrain's
``length_to_mask`` sizes ECAPA-TDNN's pooling mask with ``len(lengths)``, a Python int that would
fix the batch size in the graph; during export it is replaced by the same mask built by
broadcasting. Needs ``pip install speechbrain-dino[onnx]`` (onnx, onnxscript; onnxruntime to run
it). Any problem ends in one ``error: ...`` line, exit status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from typing import Dict, Iterator, Mapping, Optional, Sequence
from unittest import mock

import torch
from torch import nn

from speechbrain_dino import __version__
from speechbrain_dino.embeddings import encode_masked, load_encoder
from speechbrain_dino.errors import DataError, PathLike, first_line
from speechbrain_dino.export import THRESHOLD_KEY, THRESHOLD_SOURCE_KEY, read_metadata, recorded_threshold
from speechbrain_dino.recipe_utils import exit_on_data_error
from speechbrain_dino.short_clips import pad_to_minimum

#: The ONNX opset of the export (STFT needs 17 or later).
OPSET = 18
INPUT_NAMES = ["wavs", "lengths"]
OUTPUT_NAMES = ["embedding"]
#: The example batch the exporter traces: rows and seconds (any sizes work afterwards).
EXAMPLE_ROWS, EXAMPLE_SECONDS = 2, 2.0
INPUTS_DOC = (
    "wavs: float32 [batch, samples], mono at sample_rate, zero padded; lengths: float32 [batch], "
    "each row's share of samples (1.0 for the longest); embedding: float32 [batch, embedding_size], "
    "compare by cosine"
)


def frame_lengths(lengths: torch.Tensor, samples: int, hop: int) -> torch.Tensor:
    """Relative lengths ``[B]`` of the rows of a ``[B, samples]`` batch on its feature frames.

    A row of ``n`` samples alone has ``1 + n // hop`` frames (centred STFT); in the batch it spans
    the same number of its ``1 + samples // hop``. Given as ``(frames - 0.25) / batch_frames``,
    both of SpeechBrain's mask rules (``arange(F) < length * F``, less a 1e-6 margin) and
    :func:`~speechbrain_dino.embeddings.encode_masked`'s ``round(length * F)`` count exactly those
    frames, so a padded row is normalised and pooled over the frames it has alone.
    """
    own = 1 + torch.floor(torch.round(lengths * samples) / hop)
    return (own - 0.25) / (1 + samples // hop)


class WaveformEncoder(nn.Module):
    """The exported computation: ``[B, T]`` waveforms and ``[B]`` relative lengths -> ``[B, D]``.

    Arguments
    ---------
    modules : mapping
        ``compute_features`` (SpeechBrain's ``Fbank``), ``mean_var_norm``, ``embedding_model``
        (an ``EncoderClassifier``'s ``mods``).
    sample_rate : int
        The model's rate (the shortest clip it takes is 0.1 s of it).
    """

    def __init__(self, modules: Mapping[str, nn.Module], sample_rate: int) -> None:
        super().__init__()
        self.mods = nn.ModuleDict(dict(modules))
        self.sample_rate = sample_rate
        self.hop = int(self.mods["compute_features"].compute_STFT.hop_length)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T]``, ``[B]`` -> ``[B, D]`` embeddings (module docstring)."""
        wavs, lengths = pad_to_minimum(wavs, lengths, self.sample_rate)
        return encode_masked(self.mods, wavs, frame_lengths(lengths, wavs.shape[-1], self.hop))


def _broadcast_length_to_mask(length: torch.Tensor, max_len: Optional[int] = None, dtype=None, device=None):
    """``speechbrain.dataio.dataio.length_to_mask`` built by broadcasting instead of
    ``expand(len(length), ...)``: the same mask, with the batch size left symbolic."""
    if max_len is None:
        max_len = int(length.max().long().item())
    mask = torch.arange(max_len, device=length.device, dtype=length.dtype)[None, :] < length.unsqueeze(1)
    return mask.to(dtype=dtype or length.dtype, device=device or length.device)


@contextlib.contextmanager
def _exportable_masks() -> Iterator[None]:
    """ECAPA-TDNN's pooling mask with a symbolic batch size, for the duration of an export."""
    with mock.patch("speechbrain.lobes.models.ECAPA_TDNN.length_to_mask", _broadcast_length_to_mask):
        yield


def onnx_metadata(pretrained_path: PathLike, embedding_size: int) -> Dict[str, str]:
    """The ``metadata_props`` of the export of ``pretrained_path`` (module docstring)."""
    metadata = {
        "sample_rate": str(int(read_metadata(pretrained_path).get("sample_rate", 16000))),
        "embedding_size": str(int(embedding_size)),
        "inputs": INPUTS_DOC,
        "exported_by": f"speechbrain-dino {__version__}",
    }
    threshold = recorded_threshold(pretrained_path)
    if threshold is not None:
        metadata[THRESHOLD_KEY] = repr(threshold.value)
        metadata[THRESHOLD_SOURCE_KEY] = threshold.source
    return metadata


def export_onnx(pretrained_path: PathLike, output_path: PathLike) -> str:
    """Writes the ONNX model of the encoder folder ``pretrained_path`` to ``output_path``.

    Returns
    -------
    str
        ``output_path``.

    Raises
    ------
    DataError
        Not an encoder folder, the ``onnx`` extra missing, or an encoder the exporter cannot take.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as error:
        raise DataError(f"ONNX export needs the onnx extra ({error}): pip install speechbrain-dino[onnx]") from None
    sample_rate = int(read_metadata(pretrained_path).get("sample_rate", 16000))
    encoder = load_encoder(pretrained_path)
    model = WaveformEncoder(encoder.mods, sample_rate).eval()
    example = (torch.zeros(EXAMPLE_ROWS, int(EXAMPLE_SECONDS * sample_rate)), torch.ones(EXAMPLE_ROWS))
    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples")
    output_path = os.fspath(output_path)
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # its per-step progress and optional-package notes
    try:
        with _exportable_masks(), torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="# The axis name")  # two names for one batch axis
            embedding_size = model(*example).shape[-1]
            program = torch.onnx.export(
                model, example, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES, opset_version=OPSET,
                dynamo=True, dynamic_shapes={"wavs": {0: batch, 1: samples}, "lengths": {0: batch}},
                verbose=False,
            )
    except Exception as error:  # the exporter's errors name an operator or a shape constraint
        raise DataError(f"cannot export this encoder to ONNX ({type(error).__name__}: {first_line(error)})",
                        pretrained_path) from None
    finally:
        exporter_log.setLevel(level)
    proto = program.model_proto
    for key, value in onnx_metadata(pretrained_path, embedding_size).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, output_path)
    return output_path


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point (``sbdino-export-onnx PRETRAINED_DIR OUT.onnx``)."""
    parser = argparse.ArgumentParser(
        prog="sbdino-export-onnx", description="Export a trained encoder folder to ONNX (waveform in, embedding out)."
    )
    parser.add_argument("pretrained_path", help="an exported pretrained/ folder")
    parser.add_argument("output", help="the .onnx file to write")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    @exit_on_data_error
    def run() -> None:
        path = export_onnx(args.pretrained_path, args.output)
        print(f"wrote {path} (inputs wavs [batch, samples], lengths [batch]; output embedding [batch, D])")

    run()


if __name__ == "__main__":
    main()
