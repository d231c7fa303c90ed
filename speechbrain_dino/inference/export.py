"""The ``pretrained/`` folder of a trained encoder, and the :class:`Architecture` that re-creates it.

An exported folder holds ``hyperparams.yaml`` (SpeechBrain YAML: the filterbank, sentence mean
normalisation and the encoder, each as a ``!new:`` node; the filterbank is SpeechBrain's ``Fbank``
that also pads clips too short for the encoder, from :mod:`speechbrain_dino.data.short_clips`), the encoder's weights
(``embedding_model.ckpt``) and ``speechbrain_dino.json`` (the architecture and provenance). It
loads offline with ``speechbrain.inference.speaker.EncoderClassifier.from_hparams(source=folder,
savedir=...)``, whose ``encode_batch`` runs Fbank -> sentence mean normalisation -> encoder, the
same path the project's own extraction uses (:mod:`speechbrain_dino.inference.embeddings`); the next
training stage re-creates the encoder from it (:func:`load_pretrained_encoder`).

Every folder may record a cosine decision threshold as ``verification_threshold``, with where it
comes from as ``threshold_source`` (:class:`DecisionThreshold`), in both files: in
``hyperparams.yaml`` (plain keys SpeechBrain loads and ignores; :class:`speechbrain_dino.SpeakerVerifier`
decides with them) and in ``speechbrain_dino.json`` (:func:`recorded_threshold`). A training run
given labelled validation trials (``valid_csv`` / ``valid_trials``) records the threshold at their
EER point (source ``validation_trials``); an AAM fine-tuning without them, such as a pseudo-label
round, records an estimate from its own training clusters (source
``estimated_from_training_clusters``, see :mod:`speechbrain_dino.inference.threshold_estimate`);
the validation trials win when a run has both. SpeechBrain's own ``SpeakerRecognition`` ignores
the keys: its ``verify_files`` always decides at 0.25, which accepts nearly every pair of these
embeddings.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple

import torch
import yaml
from hyperpyyaml import resolve_references
from torch import nn

from speechbrain_dino.data.file_modes import shareable
from speechbrain_dino.data.write_failures import is_write_failure, write_failure_reason
from speechbrain_dino.errors import DataError, PathLike, first_line

FBANK_CLASS = "speechbrain.lobes.features.Fbank"
#: The exported front end: ``Fbank`` that pads clips shorter than the encoders' shortest input.
EXPORTED_FBANK_CLASS = "speechbrain_dino.data.short_clips.MinimumLengthFbank"
NORM_CLASS = "speechbrain.processing.features.InputNormalization"
#: Sentence-level mean normalisation, as SpeechBrain's speaker recipes and the paper do.
NORM_KWARGS = {"norm_type": "sentence", "std_norm": False}
ENCODER_FILE = "embedding_model.ckpt"
METADATA_FILE = "speechbrain_dino.json"
#: The key of the recorded decision threshold, in ``hyperparams.yaml`` and ``speechbrain_dino.json``.
THRESHOLD_KEY = "verification_threshold"
#: The key saying where the recorded threshold comes from (one of :data:`THRESHOLD_SOURCES`).
THRESHOLD_SOURCE_KEY = "threshold_source"
#: The key of the details of the threshold's measurement (``speechbrain_dino.json`` only).
THRESHOLD_DETAILS_KEY = "threshold_details"
#: Where a recorded threshold comes from, and what that means (the exported YAML's comment).
THRESHOLD_SOURCES = {
    "validation_trials": "the cosine at the EER point of the training's labelled validation trials",
    "estimated_from_training_clusters": (
        "an estimate without held-out labels: the cosine at the EER point of same- against "
        "different-cluster pairs of the fine-tuning's own (pseudo-)labelled rows"
    ),
}
#: What to do about a folder that records no threshold (SpeakerVerifier's and sbdino-embed's message).
NO_THRESHOLD_HELP = (
    "this model records no decision threshold: give one (threshold=...), e.g. the estimate that "
    "sbdino-cluster prints for a folder of your audio, or use an encoder trained with labelled "
    "validation trials (valid_csv, valid_trials) or by a pseudo-label round, whose export records one"
)
#: The source of a threshold recorded before sources were (only validation trials recorded one).
LEGACY_THRESHOLD_SOURCE = "validation_trials"


@dataclass(frozen=True)
class DecisionThreshold:
    """A cosine decision threshold (accept a pair scoring above it) and where it comes from.

    Attributes
    ----------
    value : float
        The cosine threshold.
    source : str
        A key of :data:`THRESHOLD_SOURCES`.
    details : mapping
        How it was measured (trial counts, the EER there...), written to ``speechbrain_dino.json``.
    """

    value: float
    source: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in THRESHOLD_SOURCES:
            raise ValueError(f"unknown threshold source {self.source!r}; one of {sorted(THRESHOLD_SOURCES)}")

    def describe(self) -> str:
        """``"0.6312, <what the source means>"`` (for messages)."""
        return f"{self.value:.4f}, {THRESHOLD_SOURCES[self.source]}"


def import_class(class_path: str) -> type:
    """``"package.module.Class"`` -> the class, with a clear error for a bad path."""
    module_name, _, class_name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise DataError(f"cannot import class {class_path!r} (check encoder_class in the YAML)")


def instantiate(class_path: str, kwargs: Optional[Mapping[str, Any]] = None) -> Any:
    """Builds ``class_path(**kwargs)``, with a clear error for bad arguments."""
    cls = import_class(class_path)
    try:
        return cls(**dict(kwargs or {}))
    except TypeError as error:
        raise DataError(f"cannot build {class_path} with {dict(kwargs or {})}: {error}") from None


@dataclass(frozen=True)
class Architecture:
    """What re-creates an exported encoder: its class and constructor arguments, and its front end.

    Attributes
    ----------
    encoder_class : str
        Import path of the encoder, e.g. ``speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN``.
    encoder_kwargs : mapping
        Its constructor arguments (plain values).
    fbank_kwargs : mapping
        Arguments of SpeechBrain's ``Fbank`` (``n_mels``, ``sample_rate``...).
    sample_rate : int
        Audio rate the model expects (Hz).
    """

    encoder_class: str
    encoder_kwargs: Mapping[str, Any]
    fbank_kwargs: Mapping[str, Any]
    sample_rate: int = 16000

    def build_encoder(self) -> nn.Module:
        """A new (randomly initialised) encoder of this architecture."""
        return instantiate(self.encoder_class, self.encoder_kwargs)

    def build_features(self) -> nn.Module:
        """The filterbank front end: ``[B, T]`` waveforms -> ``[B, frames, n_mels]``."""
        return instantiate(FBANK_CLASS, self.fbank_kwargs)

    @classmethod
    def from_yaml(cls, hparams_file: PathLike, overrides: Any, encoder: str) -> "Architecture":
        """The architecture a training YAML builds, read from its ``!new:`` nodes.

        The YAML is resolved with ``overrides`` (references, ``!copy`` and overrides applied, no
        object built), so the export re-creates exactly what was trained.

        Arguments
        ---------
        hparams_file : PathLike
            The training YAML.
        overrides : str or mapping
            Its overrides.
        encoder : str
            The key of the exported encoder's node (e.g. ``teacher``, a ``!copy`` of ``student``);
            the filterbank is the node ``compute_features``, the rate ``sample_rate``.
        """
        with open(os.fspath(hparams_file), encoding="utf-8") as fin:
            tree = yaml.load(resolve_references(fin, overrides), Loader=_TagKeepingLoader)
        encoder_class, encoder_kwargs = _new_node(tree, encoder, hparams_file)
        fbank_class, fbank_kwargs = _new_node(tree, "compute_features", hparams_file)
        if fbank_class != FBANK_CLASS:
            raise DataError(f"compute_features must be {FBANK_CLASS} to be exported, not {fbank_class}", hparams_file)
        return cls(encoder_class, encoder_kwargs, fbank_kwargs, int(tree["sample_rate"]))

    def to_metadata(self) -> Dict[str, Any]:
        """The fields as written to ``speechbrain_dino.json``."""
        return {
            "encoder_class": self.encoder_class,
            "encoder_kwargs": _plain(self.encoder_kwargs),
            "fbank_kwargs": _plain(self.fbank_kwargs),
            "sample_rate": int(self.sample_rate),
        }


class _Tagged(NamedTuple):
    """A tagged YAML node (``!new:...``, ``!name:...``) with its plain value."""

    tag: str
    value: Any


class _TagKeepingLoader(yaml.SafeLoader):
    """Reads resolved HyperPyYAML: plain values, and every tagged node as a :class:`_Tagged`."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tagged:
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return _Tagged("!" + suffix, value)


_TagKeepingLoader.add_multi_constructor("!", _construct_tagged)


def _new_node(tree: Mapping[str, Any], key: str, path: PathLike) -> Tuple[str, Dict[str, Any]]:
    """(class path, keyword arguments) of the ``!new:`` node ``key``, whose arguments must be plain."""
    node = tree.get(key)
    if not isinstance(node, _Tagged) or not node.tag.startswith("!new:") or not isinstance(node.value, dict):
        raise DataError(f"{key} must be a !new: node with keyword arguments to be exported", path)

    tagged = _tagged_values(node.value)
    if tagged:
        raise DataError(f"the arguments of {key} must be plain values to be exported, not {tagged[0]}", path)
    return node.tag[len("!new:"):], node.value


def _tagged_values(value: Any) -> list:
    """The tags of the tagged nodes anywhere inside ``value`` (dicts and lists walked)."""
    if isinstance(value, _Tagged):
        return [value.tag]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [tag for item in value for tag in _tagged_values(item)]
    return []


def read_architecture(folder: PathLike) -> Architecture:
    """The architecture recorded beside an encoder this project exported (DataError otherwise)."""
    metadata = read_metadata(folder)
    if "encoder_kwargs" not in metadata:
        raise DataError(
            f"no {METADATA_FILE} with the encoder architecture: not a folder exported by "
            "speechbrain-dino",
            folder,
        )
    return Architecture(
        metadata["encoder_class"], metadata["encoder_kwargs"], metadata["fbank_kwargs"], metadata["sample_rate"]
    )


def pretrained_hparams_text(architecture: Architecture, threshold: Optional[DecisionThreshold] = None) -> str:
    """The ``hyperparams.yaml`` of an exported encoder: SpeechBrain YAML whose front end is
    :data:`EXPORTED_FBANK_CLASS` (SpeechBrain's ``Fbank``, padding clips too short for the encoder),
    with the decision ``threshold`` and its source when there is one."""

    def block(name: str, class_path: str, kwargs: Mapping[str, Any]) -> str:
        body = yaml.safe_dump(_plain(kwargs), default_flow_style=None, sort_keys=False)
        indented = "".join("    " + line + "\n" for line in body.strip().splitlines())
        return f"{name}: !new:{class_path}\n{indented}"

    threshold_text = "" if threshold is None else (
        f"# Cosine decision threshold: {THRESHOLD_SOURCES[threshold.source]}.\n"
        "# speechbrain_dino.SpeakerVerifier decides with it; with SpeechBrain's SpeakerRecognition:\n"
        "# verify_batch(wavs1, wavs2, threshold=<this>), or verify_files' score > <this>\n"
        f"{THRESHOLD_KEY}: {float(threshold.value)!r}\n"
        f"{THRESHOLD_SOURCE_KEY}: {threshold.source}\n\n"
    )
    return (
        "# Exported by speechbrain-dino. Load offline with\n"
        "# EncoderClassifier.from_hparams(source=<this folder>, savedir=<a fresh folder>)\n"
        f"sample_rate: {int(architecture.sample_rate)}\n\n"
        + threshold_text
        + block("compute_features", EXPORTED_FBANK_CLASS, architecture.fbank_kwargs)
        + "\n"
        + block("mean_var_norm", NORM_CLASS, NORM_KWARGS)
        + "\n"
        + block("embedding_model", architecture.encoder_class, architecture.encoder_kwargs)
        + "\nmodules:\n"
        "    compute_features: !ref <compute_features>\n"
        "    mean_var_norm: !ref <mean_var_norm>\n"
        "    embedding_model: !ref <embedding_model>\n\n"
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
        "    loadables:\n"
        "        embedding_model: !ref <embedding_model>\n"
    )


def _plain(value: Any) -> Any:
    """YAML-safe copy of kwargs (tuples -> lists, numpy/torch scalars -> Python numbers)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def export_pretrained(
    folder: PathLike,
    encoder: nn.Module,
    architecture: Architecture,
    metadata: Optional[Dict[str, Any]] = None,
    threshold: Optional[DecisionThreshold] = None,
) -> str:
    """Writes ``folder`` (hyperparams.yaml, embedding_model.ckpt, speechbrain_dino.json) atomically.

    The folder is first written beside its destination and then renamed into place, replacing a
    previous export of the same run, so a reader never sees half a model. A failed write leaves
    no partial folder (an ``OSError``, or torch's, as a :class:`DataError`).

    Arguments
    ---------
    folder : PathLike
        Destination, usually ``<output_folder>/pretrained``.
    encoder : torch.nn.Module
        The embedding model (unwrapped from DDP), its weights saved as a state_dict.
    architecture : Architecture
        What the encoder is (the exported YAML re-creates it from this).
    metadata : dict, optional
        Provenance (stage, epoch, training manifest...) written to ``speechbrain_dino.json``.
    threshold : DecisionThreshold, optional
        The cosine decision threshold and its source, recorded in both files
        (``verification_threshold``, ``threshold_source``; the details in the JSON only).

    Returns
    -------
    str
        The folder path.
    """
    folder = os.path.abspath(os.fspath(folder))
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".pretrained-")
    os.chmod(staging, shareable(0o755))
    try:
        with open(os.path.join(staging, "hyperparams.yaml"), "w", encoding="utf-8") as fout:
            fout.write(pretrained_hparams_text(architecture, threshold))
        state = {key: value.detach().cpu() for key, value in encoder.state_dict().items()}
        torch.save(state, os.path.join(staging, ENCODER_FILE))
        info = architecture.to_metadata()
        info.update(metadata or {})
        if threshold is not None:
            info[THRESHOLD_KEY] = float(threshold.value)
            info[THRESHOLD_SOURCE_KEY] = threshold.source
            info[THRESHOLD_DETAILS_KEY] = dict(threshold.details)
        with open(os.path.join(staging, METADATA_FILE), "w", encoding="utf-8") as fout:
            json.dump(_plain(info), fout, indent=2)
        previous = None
        if os.path.isdir(folder):
            previous = tempfile.mkdtemp(dir=parent, prefix=".pretrained-old-")
            os.replace(folder, os.path.join(previous, "pretrained"))
        os.replace(staging, folder)
        if previous is not None:
            shutil.rmtree(previous)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, RuntimeError) and is_write_failure(error):
            reason = write_failure_reason(error, parent)
            raise DataError(f"cannot write the exported model ({reason})", folder) from None
        raise
    return folder


def read_metadata(folder: PathLike) -> Dict[str, Any]:
    """The provenance written next to an exported encoder ({} for a foreign SpeechBrain model)."""
    path = os.path.join(os.fspath(folder), METADATA_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as fin:
        return json.load(fin)


def recorded_threshold(folder: PathLike) -> Optional[DecisionThreshold]:
    """The decision threshold an exported folder records, with its source (None when its training
    recorded none, or for a foreign model). A folder exported before sources were recorded holds a
    threshold of validation trials."""
    metadata = read_metadata(folder)
    if metadata.get(THRESHOLD_KEY) is None:
        return None
    return DecisionThreshold(
        float(metadata[THRESHOLD_KEY]),
        metadata.get(THRESHOLD_SOURCE_KEY, LEGACY_THRESHOLD_SOURCE),
        metadata.get(THRESHOLD_DETAILS_KEY, {}),
    )


def pretrained_weights(folder: PathLike) -> str:
    """The encoder weights file of an encoder folder (DataError when it is missing)."""
    path = os.path.join(os.fspath(folder), ENCODER_FILE)
    if not os.path.isfile(path):
        raise DataError(
            f"no {ENCODER_FILE}: not an encoder folder, or an incomplete one (rerun the stage that wrote it)",
            folder,
        )
    return path


def load_pretrained_encoder(folder: PathLike) -> Tuple[nn.Module, Architecture]:
    """Re-creates an exported encoder with its weights, to fine-tune it (next training stage).

    Returns
    -------
    (encoder, architecture)
        The module (train mode) and its :class:`Architecture` (front end included).
    """
    architecture = read_architecture(folder)
    encoder = architecture.build_encoder()
    weights = pretrained_weights(folder)
    try:
        encoder.load_state_dict(torch.load(weights, map_location="cpu"))
    except Exception as error:  # a corrupt file fails in zip, pickle or state-dict checks
        raise DataError(f"cannot load encoder weights ({first_line(error)})", weights) from None
    return encoder, architecture


def load_encoder_weights(encoder: nn.Module, folder: PathLike) -> None:
    """Copies the weights of the exported encoder in ``folder`` into ``encoder`` (a warm start).

    Raises
    ------
    DataError
        ``folder`` is not an export of this project, or its encoder has another architecture.
    """
    source, _ = load_pretrained_encoder(folder)
    source_shapes = {name: tuple(value.shape) for name, value in source.state_dict().items()}
    target_shapes = {name: tuple(value.shape) for name, value in encoder.state_dict().items()}
    if source_shapes != target_shapes:
        differing = sorted(set(source_shapes.items()) ^ set(target_shapes.items()))[:3]
        raise DataError(
            f"holds an encoder of another architecture than this run's (first differences: "
            f"{differing}): use the same encoder settings",
            folder,
        )
    encoder.load_state_dict(source.state_dict())


def export_random_init(like: PathLike, folder: PathLike, seed: int = 0) -> str:
    """Exports an untrained encoder of the same architecture as ``like`` (a baseline system)."""
    architecture = read_architecture(like)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = architecture.build_encoder().eval()
    return export_pretrained(
        folder,
        encoder,
        architecture,
        metadata={"stage": "random_init", "seed": seed, "architecture_of": os.path.abspath(os.fspath(like))},
    )
