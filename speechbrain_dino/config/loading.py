"""Finding and loading a recipe's hparams file, its overrides and run options, with clear errors.

Recipes stay SpeechBrain-shaped (``parse_arguments`` -> ``ddp_init_group`` -> ``load_hyperpyyaml``
-> ``create_experiment_directory`` -> Brain; the last is called by the recipe itself, since
SpeechBrain copies the calling file into the experiment folder), but a bad hparams file, a bad
override or bad data ends in one ``error: ...`` line and exit status 2 instead of a traceback.

Hparams files live in the repository's top-level ``hparams/`` and ship inside the package
(``speechbrain_dino/hparams/``) when it is installed: a path ``hparams/X.yaml`` that does not exist
relative to the current folder names the project's ``X.yaml``, so the README's commands work from
any folder and with a non-editable install.

Every hparams file is a complete HyperPyYAML experiment (the small ``hparams/demo/`` ones are
paper-scale files with some values changed, see :mod:`speechbrain_dino.config.presets`);
``--key=value`` overrides go on top, as in SpeechBrain.
"""
from __future__ import annotations

import io
import logging
import os
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

import ruamel.yaml
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dino.config.help import help_text, top_level_settings
from speechbrain_dino.config.settings import SettingsTable, check_run_options, check_settings
from speechbrain_dino.errors import DataError, PathLike, first_line

logger = logging.getLogger(__name__)



def _hparams_folder() -> str:
    """The project's hparams folder: the repository's ``hparams/`` in a checkout (or an editable
    install), ``speechbrain_dino/hparams/`` where ``pip install .`` copied it (see ``setup.py``)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    installed = os.path.join(package, "hparams")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "hparams")


#: The project's hparams files: paper-scale YAMLs and the small ``demo/`` experiments.
HPARAMS_FOLDER = _hparams_folder()
#: The key with which earlier releases made one YAML the overrides of another.
RETIRED_EXTENDS_KEY = "extends"


def find_hparams(path: PathLike) -> str:
    """An hparams file: ``path`` when it exists, else the packaged file that ``hparams/...`` names.

    Raises
    ------
    DataError
        Neither exists.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return path
    parts = os.path.normpath(path).split(os.sep)
    if not os.path.isabs(path) and parts[0] == "hparams" and len(parts) > 1:
        packaged = os.path.join(HPARAMS_FOLDER, *parts[1:])
        if os.path.isfile(packaged):
            return packaged
    raise DataError(f"hparams file not found, here or among the project's ({HPARAMS_FOLDER})", path)


def _read_yaml(path: str) -> Any:
    """A YAML file as a ruamel round-trip tree (HyperPyYAML tags kept as they are)."""
    try:
        with open(path, encoding="utf-8") as fin:
            return ruamel.yaml.YAML().load(fin)
    except ruamel.yaml.YAMLError as error:
        raise DataError(f"not valid YAML: {error}", path) from None


def _dump_yaml(tree: Any) -> str:
    """A ruamel tree as YAML text ("" for an empty one)."""
    if not tree:
        return ""
    stream = io.StringIO()
    ruamel.yaml.YAML().dump(tree, stream)
    return stream.getvalue()


def parse_overrides(overrides: Any) -> Any:
    """Command-line overrides (YAML text, as ``sb.parse_arguments`` gives them) as a mapping."""
    if not isinstance(overrides, str):
        return overrides
    try:
        return ruamel.yaml.YAML().load(overrides) if overrides.strip() else None
    except ruamel.yaml.YAMLError as error:  # e.g. one --key given twice
        problem = getattr(error, "problem", None) or first_line(error)
        raise DataError(f"the overrides are not valid YAML: {problem}") from None


def refuse_retired_extends(hparams_file: str) -> None:
    """One clear error for a YAML that still names a base with ``extends:`` (earlier releases)."""
    tree = _read_yaml(hparams_file)
    if isinstance(tree, dict) and RETIRED_EXTENDS_KEY in tree:
        raise DataError(
            f"'{RETIRED_EXTENDS_KEY}:' is no longer supported: every hparams file is a complete YAML. Write "
            f"one with: python -m speechbrain_dino.config.presets --base BASE.yaml --overrides "
            f"'{{key: value, ...}}' > complete.yaml",
            hparams_file,
        )


def print_help(argv: Sequence[str], usage: str, default_hparams: Optional[str]) -> None:
    """Prints the recipe's ``--help`` (:mod:`speechbrain_dino.config.help`): the YAML is
    ``argv[0]`` when given, else ``default_hparams``."""
    hparams_name = argv[0] if argv and not argv[0].startswith("-") else default_hparams
    settings = [] if hparams_name is None else top_level_settings(_read_yaml(find_hparams(hparams_name)))
    print(help_text(os.path.basename(sys.argv[0]), usage, hparams_name, settings))


def load_hparams(
    hparams_path: PathLike, overrides: Any = None, settings: Optional[SettingsTable] = None
) -> Tuple[str, str, Dict[str, Any]]:
    """Loads an hparams file with overrides, with one clear error for any failure.

    ``settings`` (a recipe's table, see :mod:`speechbrain_dino.config.settings`) checks the overrides'
    values first, before any object of the YAML is built.

    Arguments
    ---------
    hparams_path : PathLike
        A YAML file, or ``hparams/X.yaml`` naming a packaged one (:func:`find_hparams`).
    overrides : str or mapping, optional
        ``--key=value`` overrides as YAML text (as SpeechBrain parses them) or a mapping.

    Returns
    -------
    (hparams_file, overrides, hparams)
        The YAML file found, the overrides as YAML text, and the loaded HyperPyYAML dict.
    """
    hparams_file = find_hparams(hparams_path)
    refuse_retired_extends(hparams_file)
    parsed = parse_overrides(overrides)
    if settings:
        check_settings(parsed, settings)
    overrides = _dump_yaml(parsed) if parsed else ""
    try:
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides)
    except DataError:
        raise
    except Exception as error:  # YAML syntax, unknown override keys, bad constructor arguments
        raise DataError(
            f"cannot load hyperparameters with overrides {overrides!r}: "
            f"{type(error).__name__}: {error}",
            hparams_path,
        ) from None
    return hparams_file, overrides, hparams


def renamed_flag(argument: str, renamed: Dict[str, str]) -> str:
    """``--old=value`` as ``--new=value`` (with a deprecation line) for a key in ``renamed``."""
    key = argument[2:].split("=", 1)[0] if argument.startswith("--") else None
    if key not in renamed:
        return argument
    logger.warning("--%s is deprecated: use --%s", key, renamed[key])
    return f"--{renamed[key]}" + argument[2 + len(key):]


def load_recipe(
    argv: Sequence[str],
    required: Sequence[str] = (),
    usage: str = "",
    default_hparams: Optional[str] = None,
    settings: Optional[SettingsTable] = None,
    reads: Sequence[str] = (),
    renamed: Optional[Dict[str, str]] = None,
) -> Tuple[str, Dict, str, Dict]:
    """``sb.parse_arguments`` + ``ddp_init_group`` + ``load_hyperpyyaml``, with clear errors.

    With ``-h`` / ``--help`` anywhere in ``argv``, prints the recipe's help (:func:`print_help`)
    and exits 0 instead. Before any work, the run options' device and precision are checked
    against this machine and the overrides against the recipe's ``settings`` table.

    Arguments
    ---------
    argv : sequence of str
        ``sys.argv[1:]``: the hparams file (see :func:`find_hparams`), then
        ``--key=value`` overrides and run options.
    required : sequence of str
        Keys that must be set (typically paths such as ``train_csv``); an empty or null value is an
        error telling which ``--key=`` to pass.
    usage : str
        What the recipe does and how to call it (its module docstring), for ``--help``.
    default_hparams : str, optional
        The YAML whose settings ``--help`` shows when ``argv`` names none.
    settings : SettingsTable, optional
        The recipe's checked settings (:mod:`speechbrain_dino.config.recipe_settings`).
    reads : sequence of str
        The keys the recipe reads from its YAML (``recipe_settings.*_KEYS``): a YAML without one is
        an error naming it.
    renamed : dict, optional
        Old key -> new key: an old key, in a YAML of one's own or as ``--old=...``, still works
        and logs one deprecation line.

    Returns
    -------
    (hparams_file, run_opts, overrides, hparams)
        ``hparams_file`` and ``overrides`` are what ``sb.create_experiment_directory`` should save.
    """
    if any(arg in ("-h", "--help") for arg in argv):
        print_help(argv, usage, default_hparams)
        sys.exit(0)
    if not argv or argv[0].startswith("-"):
        raise DataError("the first argument must be a hparams YAML file, e.g. hparams/dino_ecapa.yaml")
    hparams_path = find_hparams(argv[0])
    argv = [renamed_flag(arg, renamed or {}) for arg in argv]
    _, run_opts, overrides = sb.parse_arguments([hparams_path, *argv[1:]])
    check_run_options(run_opts)
    sb.utils.distributed.ddp_init_group(run_opts)
    hparams_file, overrides, hparams = load_hparams(hparams_path, overrides, settings)
    for old, new in (renamed or {}).items():
        if old in hparams:
            logger.warning("%s: '%s' is deprecated, read as '%s' (rename it)", hparams_path, old, new)
            hparams.setdefault(new, hparams.pop(old))
    absent = [key for key in reads if key not in hparams]
    if absent:
        raise DataError(f"this YAML lacks key(s) {absent} that the recipe reads (compare with the project's "
                        "hparams files)", hparams_path)
    missing = [key for key in required if hparams.get(key) in (None, "")]
    if missing:
        flags = " ".join(f"--{key}=..." for key in missing)
        raise DataError(f"required setting(s) {missing} are empty: pass {flags}", hparams_path)
    return hparams_file, run_opts, overrides, hparams


def data_replacements(hparams: Dict[str, Any]) -> Optional[Dict[str, str]]:
    """``{"data_root": DIR}`` when the YAML sets ``data_root`` (``$data_root`` in manifest paths)."""
    data_root = hparams.get("data_root")
    return {"data_root": os.fspath(data_root)} if data_root else None


