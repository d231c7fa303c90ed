"""Declarative checks of a recipe's settings: each key's type and range, before any work.

A recipe declares a table ``{key: Setting}`` (see :mod:`speechbrain_dino.config.recipe_settings`); nested
keys are dotted (``crops.n_global``, ``schedule.base_lr``). :func:`check_settings` checks the
overrides a run is given (the command line's ``--key=value`` and a preset's values) against it
before the YAML is loaded, so a wrong type or an out-of-range value ends in one line naming the key
and the accepted values, never in a traceback from a constructor or an epoch later. A
:class:`Nested` entry checks a mapping of another recipe's overrides (the pipeline's
``pretraining_overrides``...) against that recipe's table. :func:`check_run_options` checks that the
device and precision asked for exist on this machine (:func:`check_stage_run_options` those the
pipeline passes to its stages).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import speechbrain as sb
import torch

from speechbrain_dino.errors import DataError


@dataclass(frozen=True)
class Setting:
    """The accepted values of one setting.

    Attributes
    ----------
    kind : type
        ``int``, ``float`` (an integer is accepted), ``bool`` or ``str``.
    low, high : float, optional
        Bounds of a number, inclusive unless ``open_low`` / ``open_high``.
    open_low, open_high : bool
        Excludes the bound itself.
    nullable : bool
        ``null`` is accepted too.
    choices : tuple of str
        The accepted strings: every value of a ``str`` setting, or the words a number setting
        takes besides numbers (``auto``).
    """

    kind: type
    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False
    open_high: bool = False
    nullable: bool = False
    choices: Tuple[str, ...] = ()

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is of the right type and in range."""
        if value is None:
            return self.nullable
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str) and (not self.choices or value in self.choices)
        if isinstance(value, str):
            return value in self.choices
        allowed = (int,) if self.kind is int else (int, float)
        if not isinstance(value, allowed) or (isinstance(value, float) and math.isnan(value)):
            return False
        return self._in_range(value)

    def _in_range(self, value: float) -> bool:
        """Whether a number lies within the bounds."""
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.open_high and value == self.high))

    def describe(self) -> str:
        """The accepted values in words, e.g. ``an integer >= 1`` or ``null or a number > 0``."""
        if self.kind is bool:
            text = "True or False"
        elif self.kind is str:
            text = "one of " + ", ".join(self.choices) if self.choices else "a string"
        else:
            text = "an integer" if self.kind is int else "a number"
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.open_low else '>='} {self.low:g}")
            if self.high is not None:
                bounds.append(f"{'<' if self.open_high else '<='} {self.high:g}")
            text += (" " + " and ".join(bounds)) if bounds else ""
            text = " or ".join([*self.choices, text])
        return f"null or {text}" if self.nullable else text


@dataclass(frozen=True)
class Nested:
    """A mapping of overrides for another recipe, checked against that recipe's table."""

    table: "SettingsTable"


SettingsTable = Mapping[str, Union[Setting, Nested]]

# The settings most recipes share.
COUNT = Setting(int, low=1)
NON_NEGATIVE_COUNT = Setting(int, low=0)
POSITIVE = Setting(float, low=0, open_low=True)
NON_NEGATIVE = Setting(float, low=0)
FRACTION = Setting(float, low=0, high=1)
FLAG = Setting(bool)
SEED = Setting(int)


def _is_tagged(value: Any) -> bool:
    """A YAML value with a tag (``!ref <x>``...): resolved by HyperPyYAML, not checked here."""
    return hasattr(value, "tag") and getattr(value.tag, "value", None) is not None


def _flatten(tree: Mapping, prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1, "a": {...}}`` (every level)."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        flat[dotted] = value
        if isinstance(value, Mapping) and not _is_tagged(value):
            flat.update(_flatten(value, dotted + "."))
    return flat


def check_settings(overrides: Optional[Mapping], table: SettingsTable, where: str = "") -> None:
    """Checks every overridden key that ``table`` names.

    Arguments
    ---------
    overrides : mapping, optional
        The overrides (nested mappings for nested keys).
    table : SettingsTable
        ``{dotted key: Setting or Nested}``.
    where : str
        Prefix of the key in messages (e.g. ``pretraining_overrides.``).

    Raises
    ------
    DataError
        ``--key=value: expected <accepted values>`` for the first bad value.
    """
    if not overrides:
        return
    for key, value in _flatten(overrides).items():
        rule = table.get(key)
        if rule is None or _is_tagged(value):
            continue
        if isinstance(rule, Nested):
            if not isinstance(value, Mapping):
                raise DataError(f"--{where}{key}={value}: expected a mapping of overrides, e.g. {{batch_size: 32}}")
            check_settings(value, rule.table, where=f"{where}{key}.")
        elif not rule.accepts(value):
            raise DataError(f"--{where}{key}={value}: expected {rule.describe()}")


def check_stage_run_options(options: Sequence[str]) -> None:
    """Checks command-line run options given to other processes (e.g. the pipeline's
    ``run_options`` for every stage) as :func:`check_run_options` does. An option may come as
    ``--key=value`` or ``--key value`` (SpeechBrain's parser writes a nested ``=`` so)."""
    arguments = [part for option in options for part in str(option).split()]
    check_run_options(sb.parse_arguments(["hparams.yaml", *arguments])[1])


def check_run_options(run_opts: Mapping[str, Any]) -> None:
    """Checks that the device and the precisions asked for are available here.

    Raises
    ------
    DataError
        A CUDA device that does not exist, or fp16 / bf16 without a CUDA device.
    """
    device = run_opts.get("device") or "cpu"
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0) if device.partition(":")[2].isdigit() else None
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index is None or index >= count:
            available = ", ".join(f"cuda:{i}" for i in range(count)) or "none on this machine"
            raise DataError(f"--device={device}: expected cpu or an available CUDA device ({available})")
    elif device != "cpu":
        raise DataError(f"--device={device}: expected cpu or cuda:N")
    for option in ("precision", "eval_precision"):
        precision = run_opts.get(option) or "fp32"
        if precision not in ("fp32", "fp16", "bf16"):
            raise DataError(f"--{option}={precision}: expected fp32, fp16 or bf16")
        if precision != "fp32" and not device.startswith("cuda"):
            raise DataError(f"--{option}={precision}: expected fp32 on the CPU (fp16 and bf16 need --device=cuda:N)")
