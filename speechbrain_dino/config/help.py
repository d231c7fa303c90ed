"""``--help`` of a recipe: its usage, the top-level settings of its YAML, SpeechBrain's run options.

The settings are read from the YAML as written (HyperPyYAML tags such as ``!ref`` and ``!new:``
shown as they are, nothing built): each top-level key with its value and the comment beside it.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence

import speechbrain as sb
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

#: Longest value shown on a settings line (longer ones end in "...").
MAX_VALUE_CHARS = 100


@dataclass(frozen=True)
class Setting:
    """A top-level key of a YAML: its value as YAML-like text and the comment beside it."""

    key: str
    value: str
    comment: str


def value_text(value: Any) -> str:
    """A YAML value on one line: ``!ref <a>/b``, ``!new:pkg.Class {n: 1}``, ``[1, 2]``, ``null``."""
    tag = getattr(getattr(value, "tag", None), "value", None)
    prefix = f"{tag} " if tag else ""
    if isinstance(value, TaggedScalar):
        return (prefix + str(value.value or "")).strip()
    if isinstance(value, Mapping):
        return prefix + "{" + ", ".join(f"{key}: {value_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return prefix + "[" + ", ".join(value_text(item) for item in value) + "]"
    return "null" if value is None else str(value)


def _shortened(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _end_of_line_comment(tree: CommentedMap, key: str) -> str:
    """The comment on the same line as ``key``'s value (not the comment block below it)."""
    tokens = tree.ca.items.get(key) or []
    token = tokens[2] if len(tokens) > 2 else None
    if token is None and isinstance(tree[key], (CommentedMap, CommentedSeq)):
        inner = tree[key].ca.comment  # a flow sequence keeps its comment on itself
        token = inner[0] if inner and not isinstance(inner[0], list) else None
    text = getattr(token, "value", "") or ""
    return text.split("\n", 1)[0].strip() if text.lstrip(" ").startswith("#") else ""


def top_level_settings(tree: CommentedMap) -> List[Setting]:
    """The top-level settings of a YAML (ruamel round-trip tree), each with its comment."""
    return [Setting(key, value_text(tree[key]), _end_of_line_comment(tree, key)) for key in tree]


def speechbrain_run_options() -> str:
    """SpeechBrain's own help for the run options every recipe accepts (its ``options:`` part)."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        sb.parse_arguments(["hparams.yaml", "--help"])
    help_text = text.getvalue()
    start = help_text.find("options:")
    return help_text[start + len("options:"):].strip("\n") if start >= 0 else help_text


def help_text(prog: str, description: str, hparams_name: Optional[str], settings: Sequence[Setting]) -> str:
    """The whole ``--help`` output of a recipe.

    Arguments
    ---------
    prog : str
        The command (e.g. ``train_dino.py``).
    description : str
        The recipe module's docstring.
    hparams_name : str, optional
        The YAML whose settings are shown (None: no settings section).
    settings : sequence of Setting
        Its top-level settings (:func:`top_level_settings`).
    """
    lines = [
        f"usage: {prog} [HPARAMS_YAML] [--key=value ...] [SpeechBrain run options]",
        "",
        description.strip("\n"),
        "",
    ]
    if hparams_name is not None:
        lines.append(f"Settings of {hparams_name}; override any with --key=value:")
        width = max((len(setting.key) for setting in settings), default=0)
        for setting in settings:
            value = _shortened(setting.value)
            if value == "!PLACEHOLDER":
                value += f"  (required: --{setting.key}=...)"
            comment = f"  {setting.comment}" if setting.comment else ""
            lines.append(f"  {setting.key + ':':<{width + 1}} {value}{comment}")
        lines.append("")
    lines += ["SpeechBrain run options:", speechbrain_run_options()]
    return "\n".join(lines)
