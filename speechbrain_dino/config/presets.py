"""The small experiments of ``hparams/demo/``: the paper-scale YAMLs with a few values overridden.

Every file under ``hparams/`` is a complete HyperPyYAML experiment that plain ``load_hyperpyyaml``
loads. The ``demo/`` files (CPU runs of minutes) are written from a paper-scale file and the
overrides below, the way SpeechBrain's recipe tests make small runs with overrides: each
overridden value's comment says so and gives the paper-scale value. They are committed, and a test
fails when a committed file differs from what this module writes. After editing a paper-scale
YAML or an override set here, regenerate them::

    python -m speechbrain_dino.config.presets --write

The same writer turns any YAML plus overrides into one complete YAML (``--base``, ``--overrides``),
e.g. for a file of one's own that used the ``extends:`` key of earlier releases.
"""
from __future__ import annotations

import argparse
import copy
import io
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import ruamel.yaml
from hyperpyyaml.core import recursive_update
from ruamel.yaml.comments import CommentedMap, CommentedSeq

#: What makes a paper-scale encoder run small (CPU, minutes): the settings of the small-scale CPU
#: reference run (docs/method.md): 40 log-Mels, ECAPA-TDNN C=128 (192-d), 2 x 2 s + 4 x 1 s crops,
#: batch 32, AdamW 2e-3 with one warm-up epoch.
SMALL_ENCODER: Dict[str, Any] = {
    "crops": {"global_seconds": 2.0, "local_seconds": 1.0},
    "number_of_epochs": 10,
    "batch_size": 32,
    "num_workers": 0,
    "schedule": {"lr_per_256": None, "base_lr": 0.002, "warmup_epochs": 1},
    "n_mels": 40,
    "embedding_dim": 192,
    "student": {"channels": [128, 128, 128, 128, 384], "attention_channels": 64, "se_channels": 64,
                "res2net_scale": 4},
    "augment": {"noise_prob": 0.6, "reverb_prob": 0.3},
}
#: The DINO family's head and teacher at that scale: K = 1024, head 192 -> 512 -> 512 -> 128, and a
#: teacher EMA horizon for runs of a few hundred steps.
SMALL_DINO = {
    "schedule": {"teacher_momentum": 0.995},
    "n_prototypes": 1024,
    "student_head": {"hidden_size": 512, "bottleneck_size": 128},
}
#: The contrastive projector at that scale.
SMALL_CONTRASTIVE = {"projection_head": {"hidden_size": 512, "projection_size": 128}}
#: AAM fine-tuning at that scale: 2 s crops, small batches, short phases.
SMALL_AAM = {
    "crop_seconds": 2.0,
    "number_of_epochs": 6,
    "batch_size": 32,
    "num_workers": 0,
    "schedule": {"frozen_share": 0.334, "head_lr": 0.002, "full_lr": 0.0005, "warmup_share": 0.0834,
                 "margin_warmup_share": 0.334},
    "augment": {"noise_prob": 0.6, "reverb_prob": 0.3},
}

HEADER_RULE = "# " + "#" * 76
#: Where a new end-of-line comment starts (as in the hand-written YAMLs).
COMMENT_COLUMN = 31


@dataclass(frozen=True)
class Preset:
    """One generated file: ``path`` (under ``hparams/``) is ``base`` with ``overrides``.

    Attributes
    ----------
    path, base : str
        Relative to the hparams folder.
    overrides : list of mappings
        Applied in order (nested mappings merge key by key).
    description : str
        The file's header: what it is and how to run it.
    """

    path: str
    base: str
    overrides: Sequence[Mapping[str, Any]]
    description: str


def _family(name: str, what: str, extra: Sequence[Mapping[str, Any]] = ()) -> Preset:
    return Preset(
        f"demo/{name}.yaml", f"{name}.yaml", [SMALL_ENCODER, SMALL_DINO, *extra],
        f"{what}, small CPU experiment: ../{name}.yaml at the scale of the small-scale CPU reference run "
        f"(docs/method.md): 40 log-Mels, ECAPA-TDNN C=128 (192-d), head 192 -> 512 -> 512 -> 128 -> K=1024, "
        f"2 x 2 s global + 4 x 1 s local crops, batch 32, AdamW 2e-3, teacher EMA 0.995 -> 1.\n"
        f"Run: python recipes/train_dino.py hparams/demo/{name}.yaml --train_csv=... --output_folder=...",
    )


PRESETS = (
    _family("dino_ecapa", "DINO pretraining (the paper's method)"),
    _family("rdino_ecapa", "RDINO", [{"student_head": {"expander_size": 2048}}]),
    _family("sdpn_ecapa", "SDPN"),
    _family("dino_cosine_ecapa", "DINO + student-teacher cosine term (Hyperion)"),
    Preset(
        "demo/contrastive_ecapa.yaml", "contrastive_ecapa.yaml", [SMALL_ENCODER, SMALL_CONTRASTIVE],
        "Contrastive baseline (NT-Xent), small CPU experiment: ../contrastive_ecapa.yaml made small exactly as "
        "demo/dino_ecapa.yaml makes DINO small (same crops, augmentation, encoder, optimiser).\n"
        "Run: python recipes/train_dino.py hparams/demo/contrastive_ecapa.yaml --train_csv=... --output_folder=...",
    ),
    Preset(
        "demo/train_aam.yaml", "train_aam.yaml", [SMALL_AAM],
        "AAM-softmax fine-tuning on pseudo-labels, small CPU experiment: ../train_aam.yaml with 2 s crops, small "
        "batches and short phases.\n"
        "Run: python recipes/train_aam.py hparams/demo/train_aam.yaml --init_from=DIR/pretrained "
        "--train_csv=pseudo_labels.csv --output_folder=OUT",
    ),
    Preset(
        "demo/pseudo_label.yaml", "pseudo_label.yaml", [{"max_seconds": 10.0}],
        "Pseudo-labelling, small-corpus experiment: ../pseudo_label.yaml with shorter segments (the AHC "
        "threshold and the minimum cluster size adapt to the embedding and the corpus by themselves).\n"
        "Run: python recipes/pseudo_label.py hparams/demo/pseudo_label.yaml --pretrained_path=DIR "
        "--train_csv=FILE --output_folder=OUT",
    ),
)


def _yaml() -> ruamel.yaml.YAML:
    """A round-trip YAML (comments and HyperPyYAML tags kept) that writes None as ``null``."""
    yaml = ruamel.yaml.YAML()
    yaml.width = 4096
    yaml.indent(mapping=4, sequence=4, offset=2)
    yaml.boolean_representation = ["False", "True"]
    yaml.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def _shown(value: Any) -> str:
    """A value as it reads in YAML (for the comment giving the paper-scale value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    return str(value)


def _note_override(tree: CommentedMap, key: str, old: Any) -> None:
    """Replaces the first line of ``key``'s end-of-line comment by one giving the old value
    (comment lines that follow it, which belong to the next keys, are kept)."""
    note = f"# small experiment; paper scale: {_shown(old)}"
    tokens = tree.ca.items.get(key)
    token = tokens[2] if tokens and len(tokens) > 2 else None
    if token is None:
        tree.yaml_add_eol_comment(note, key, column=COMMENT_COLUMN)
        return
    rest = token.value.split("\n", 1)[1] if "\n" in token.value else ""
    token.value = note + "\n" + rest


def apply_overrides(tree: CommentedMap, overrides: Mapping[str, Any], path: str = "") -> None:
    """Sets ``overrides`` (nested mappings key by key) in ``tree``, noting each old value.

    Raises
    ------
    KeyError
        An override names a key the tree does not have (a complete YAML only changes values).
    """
    for key, value in overrides.items():
        if key not in tree:
            raise KeyError(f"{path}{key}: not a key of the base YAML")
        current = tree[key]
        if isinstance(value, Mapping) and isinstance(current, CommentedMap):
            apply_overrides(current, value, f"{path}{key}.")
            continue
        if isinstance(value, (list, tuple)):
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        if _shown(current) != _shown(value):
            tree[key] = value
            _note_override(tree, key, current)


def merged(overrides: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """The override sets merged in order, nested mappings key by key."""
    total: Dict[str, Any] = {}
    for layer in overrides:
        recursive_update(total, copy.deepcopy(dict(layer)))
    return total


def complete_yaml(base_path: str, overrides: Sequence[Mapping[str, Any]], description: str) -> str:
    """The text of ``base_path`` with ``overrides`` applied and ``description`` as its header."""
    yaml = _yaml()
    with open(base_path, encoding="utf-8") as fin:
        tree = yaml.load(fin)
    apply_overrides(tree, merged(overrides))
    stream = io.StringIO()
    yaml.dump(tree, stream)
    lines = stream.getvalue().splitlines()
    first_key = next(index for index, line in enumerate(lines) if line and not line.startswith("#"))
    header = [HEADER_RULE, *(f"# {line}" for line in wrapped(description)), HEADER_RULE, ""]
    return "\n".join(header + lines[first_key:]) + "\n"


def wrapped(text: str, width: int = 98) -> List[str]:
    """``text`` broken into lines of at most ``width`` characters; its own newlines kept, and a
    line that starts with ``Run:`` (a command) kept whole."""
    lines: List[str] = []
    for paragraph in text.split("\n"):
        if paragraph.startswith("Run:"):
            lines.append(paragraph)
            continue
        line = ""
        for word in paragraph.split():
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return lines


def generated(hparams_folder: str) -> Dict[str, str]:
    """``{path: text}`` of every :data:`PRESETS` file, as this module writes it."""
    return {
        preset.path: complete_yaml(os.path.join(hparams_folder, preset.base), preset.overrides, preset.description)
        for preset in PRESETS
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    from speechbrain_dino.config.loading import HPARAMS_FOLDER

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the hparams/demo/ files")
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file differs")
    parser.add_argument("--base", help="any YAML: print it with --overrides applied, as one complete YAML")
    parser.add_argument("--overrides", default="{}", help="YAML mapping of values to change in --base")
    args = parser.parse_args(argv)
    if args.base:
        sys.stdout.write(complete_yaml(args.base, [_yaml().load(args.overrides) or {}],
                                       f"{os.path.basename(args.base)} with {args.overrides}"))
        return 0
    stale = []
    for path, text in generated(HPARAMS_FOLDER).items():
        target = os.path.join(HPARAMS_FOLDER, path)
        current = open(target, encoding="utf-8").read() if os.path.isfile(target) else None
        if current != text:
            stale.append(path)
            if args.write:
                with open(target, "w", encoding="utf-8") as fout:
                    fout.write(text)
    verb = "rewrote" if args.write else "differ"
    print(f"{len(stale)} of {len(PRESETS)} generated files {verb}" + (f": {', '.join(stale)}" if stale else ""))
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
