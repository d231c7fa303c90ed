"""ONNX export of an exported encoder: waveforms in, embeddings out, the features inside the graph.

    sbdino-export-onnx exp/round1/aam/pretrained encoder.onnx

(also ``python -m speechbrain_dino.inference.onnx_export``). The graph, checked with onnxruntime:

- inputs ``wavs`` float32 ``[batch, samples]`` (mono at the model's rate, zero padded) and
  ``lengths`` float32 ``[batch]`` (each row's share of ``samples``, 1.0 for the longest);
- output ``embedding`` float32 ``[batch, D]`` (not normalised; score two by cosine).

It computes exactly what ``EncoderClassifier.encode_batch(wavs, lengths)`` computes: the folder's
front end (``MinimumLengthFbank``: SpeechBrain's ``Fbank``, padding a batch shorter than 0.1 s),
sentence mean normalisation and the encoder, both with the relative lengths. One clip therefore
gets the embedding it gets from ``encode_batch``, and a zero-padded batch the embeddings
``encode_batch`` gives for that batch (where, as in SpeechBrain, a short row moves slightly from
its embedding alone: measured in ``BENCHMARKS.md``).

The model's ``metadata_props`` hold ``sample_rate``, ``embedding_size``, the inputs' meaning and,
when the folder records one, ``verification_threshold`` and ``threshold_source``
(:mod:`speechbrain_dino.inference.export`).

Export uses PyTorch's dynamo exporter (opset 18, dynamic batch and length). SpeechBrain's
``length_to_mask`` sizes ECAPA-TDNN's pooling mask with ``len(lengths)``, a Python int that would
fix the batch size in the graph; during export it is replaced by the same mask built by
broadcasting. The filterbank's STFT is exported as a convolution with the windowed DFT basis
(:class:`ConvSTFT`): onnxruntime's own ``STFT`` operator made the model about twice as slow as
PyTorch on CPU. Needs ``pip install speechbrain-dino[onnx]`` (onnx, onnxscript; onnxruntime to run
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
from speechbrain_dino.config.exits import clean_exit
from speechbrain_dino.errors import DataError, PathLike, first_line
from speechbrain_dino.inference.embeddings import load_encoder
from speechbrain_dino.inference.export import THRESHOLD_KEY, THRESHOLD_SOURCE_KEY, read_metadata, recorded_threshold

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


class WaveformEncoder(nn.Module):
    """``EncoderClassifier.encode_batch`` as one module: ``[B, T]`` waveforms and ``[B]`` relative
    lengths -> ``[B, D]`` embeddings.

    Arguments
    ---------
    modules : mapping
        ``compute_features``, ``mean_var_norm``, ``embedding_model`` (an ``EncoderClassifier``'s ``mods``).
    """

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.mods = nn.ModuleDict(dict(modules))

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T]``, ``[B]`` -> ``[B, D]``."""
        feats = self.mods["mean_var_norm"](self.mods["compute_features"](wavs), lengths)
        return self.mods["embedding_model"](feats, lengths).squeeze(1)


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


class ConvSTFT(nn.Module):
    """SpeechBrain's ``STFT`` (centred, one-sided, not normalised) as a strided convolution with the
    windowed DFT basis: ``[B, T]`` -> ``[B, frames, n_fft // 2 + 1, 2]``, the same values up to
    float rounding. onnxruntime's ``STFT`` operator took two thirds of the exported model's CPU time
    (n_fft 400, not a power of two); the convolution is a matrix product.

    Arguments
    ---------
    stft : speechbrain.processing.features.STFT
        The module it stands in for (its ``n_fft``, ``hop_length``, ``window``, ``pad_mode``).
    """

    def __init__(self, stft: nn.Module) -> None:
        super().__init__()
        if not stft.center or not stft.onesided or stft.normalized_stft:
            raise DataError("only a centred, one-sided, unnormalised STFT is exported as a convolution")
        self.n_fft, self.hop, self.pad_mode = stft.n_fft, stft.hop_length, stft.pad_mode
        window = torch.zeros(self.n_fft)
        start = (self.n_fft - stft.win_length) // 2  # torch.stft centres a shorter window
        window[start:start + stft.win_length] = stft.window
        time = torch.arange(self.n_fft, dtype=torch.float64)
        frequency = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)
        angle = 2 * torch.pi * frequency[:, None] * time[None, :] / self.n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window.double()
        self.register_buffer("basis", basis.float().unsqueeze(1))  # [2 (n_fft // 2 + 1), 1, n_fft]

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, frames, n_fft // 2 + 1, 2]`` (real, imaginary)."""
        padded = nn.functional.pad(wavs.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2), mode=self.pad_mode)
        spectrum = nn.functional.conv1d(padded, self.basis, stride=self.hop)  # [B, 2F, frames]
        batch, _, frames = spectrum.shape
        return spectrum.view(batch, 2, -1, frames).permute(0, 3, 2, 1)


@contextlib.contextmanager
def _convolution_stft(features: nn.Module) -> Iterator[None]:
    """``features.compute_STFT`` (SpeechBrain's ``Fbank``) replaced by :class:`ConvSTFT` for the
    duration of an export."""
    native = features.compute_STFT
    features.compute_STFT = ConvSTFT(native)
    try:
        yield
    finally:
        features.compute_STFT = native


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
    model = WaveformEncoder(encoder.mods).eval()
    example = (torch.zeros(EXAMPLE_ROWS, int(EXAMPLE_SECONDS * sample_rate)), torch.ones(EXAMPLE_ROWS))
    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples")
    output_path = os.fspath(output_path)
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # its per-step progress and optional-package notes
    try:
        with _exportable_masks(), _convolution_stft(model.mods["compute_features"]), torch.no_grad(), \
                warnings.catch_warnings():
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

    @clean_exit
    def run() -> None:
        path = export_onnx(args.pretrained_path, args.output)
        print(f"wrote {path} (inputs wavs [batch, samples], lengths [batch]; output embedding [batch, D])")

    run()


if __name__ == "__main__":
    main()
