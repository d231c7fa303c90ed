"""What every recipe shares: finding and loading hparams (presets included), clear errors, fitting.

Recipes stay SpeechBrain-shaped (``parse_arguments`` -> ``ddp_init_group`` -> ``load_hyperpyyaml``
-> ``create_experiment_directory`` -> Brain; the last is called by the recipe itself, since
SpeechBrain copies the calling file into the experiment folder), but a bad hparams file, a bad
override or bad data ends in one ``error: ...`` line and exit status 2 instead of a traceback.

Hparams files live in the repository's top-level ``hparams/`` and ship inside the package
(``speechbrain_dino/hparams/``) when it is installed: a path ``hparams/X.yaml`` that does not exist
relative to the current folder names the project's ``X.yaml``, so the README's commands work from
any folder and with a non-editable install.

A **preset** is a YAML file whose ``extends:`` key names another hparams file (relative to the
preset's folder) and whose other keys are overrides of it, e.g. ``hparams/demo/dino_ecapa.yaml``
is the paper's ``hparams/dino_ecapa.yaml`` made small. Loading a preset loads its base with the
preset's values, then the command line's overrides on top (nested mappings merge key by key); the
experiment folder's ``hyperparams.yaml`` is that merged, resolved YAML.
"""
from __future__ import annotations

import copy
import functools
import gc
import io
import logging
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import ruamel.yaml
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import recursive_update
from speechbrain.utils.distributed import run_on_main

from speechbrain_dino.errors import DataError, PathLike, StageFailed, first_line, os_error_message
from speechbrain_dino.export import Architecture
from speechbrain_dino.inference.threshold_estimate import ClusterThresholdEstimator
from speechbrain_dino.manifest import Row
from speechbrain_dino.recipe_help import help_text, top_level_settings
from speechbrain_dino.settings import SettingsTable, check_run_options, check_settings
from speechbrain_dino.verification.validation import TrialValidator

logger = logging.getLogger(__name__)



def _hparams_folder() -> str:
    """The project's hparams folder: the repository's ``hparams/`` in a checkout (or an editable
    install), ``speechbrain_dino/hparams/`` where ``pip install .`` copied it (see ``setup.py``)."""
    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "hparams")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "hparams")


#: The project's hparams files: paper-scale YAMLs and ``demo/`` presets.
HPARAMS_FOLDER = _hparams_folder()
#: The key of a preset that names the hparams file it overrides.
PRESET_BASE_KEY = "extends"


def data_error_message(error: DataError) -> str:
    """The message of a DataError, also when a DataLoader worker raised it.

    PyTorch re-raises a worker's exception with the worker's whole traceback as its message;
    the original message is its last line, after ``"...DataError: "``.
    """
    text = str(error).strip()
    if "Traceback" not in text:
        return text
    return text.splitlines()[-1].split("DataError: ", 1)[-1]


def exit_on_data_error(main: Callable[..., None]) -> Callable[..., None]:
    """Runs ``main``; a :class:`DataError`, a failed pipeline stage (:class:`StageFailed`) or an
    operating-system error (a folder that cannot be written, a full disk) becomes
    ``error: <message>`` on stderr and exit 2.

    Under ``torchrun``, the process group is then ended on every rank together: first a garbage
    collection, so the Brain and its DDP wrappers (kept alive by the Brain <-> Checkpointer
    reference cycle) free their reducers now rather than during interpreter shutdown, where
    destroying their gloo threads intermittently aborted a rank ("terminate called without an
    active exception"); then a barrier and ``destroy_process_group``.
    """

    @functools.wraps(main)
    def guarded(*args, **kwargs) -> None:
        try:
            main(*args, **kwargs)
        except DataError as error:
            print(f"error: {data_error_message(error)}", file=sys.stderr)
            sys.exit(2)
        except StageFailed as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except OSError as error:
            print(f"error: {os_error_message(error)}", file=sys.stderr)
            sys.exit(2)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gc.collect()
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    return guarded


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


def preset_chain(hparams_path: PathLike) -> Tuple[str, List[Any]]:
    """The file an hparams file or preset finally extends, and the presets on the way.

    Returns
    -------
    (hparams_file, presets)
        The first file in the ``extends`` chain that is not a preset, and the presets' trees
        (ruamel, comments kept, without their ``extends`` key), ``hparams_path``'s first.
    """
    hparams_file = os.fspath(hparams_path)
    presets = []
    seen = set()
    while True:
        tree = _read_yaml(hparams_file)
        if not isinstance(tree, dict) or PRESET_BASE_KEY not in tree:
            return hparams_file, presets
        if hparams_file in seen:
            raise DataError(f"presets extend each other in a cycle through {hparams_file}")
        seen.add(hparams_file)
        base = os.path.normpath(os.path.join(os.path.dirname(hparams_file), str(tree.pop(PRESET_BASE_KEY))))
        if not os.path.isfile(base):
            raise DataError(f"{PRESET_BASE_KEY}: {base} does not exist", hparams_file)
        presets.append(tree)
        hparams_file = base


def resolve_preset(hparams_path: PathLike, overrides: Any = None) -> Tuple[str, str]:
    """The hparams file to load and the overrides to load it with, presets resolved.

    Arguments
    ---------
    hparams_path : PathLike
        An hparams file, or a preset (``extends: base.yaml`` + overrides of the base).
    overrides : str or mapping, optional
        Overrides on top (e.g. the command line's), YAML text or a mapping.

    Returns
    -------
    (hparams_file, overrides)
        The first file in the ``extends`` chain that is not a preset, and the YAML text of the
        presets' values merged with ``overrides`` (the later, the stronger).
    """
    if isinstance(overrides, str):
        try:
            overrides = ruamel.yaml.YAML().load(overrides) if overrides.strip() else None
        except ruamel.yaml.YAMLError as error:  # e.g. one --key given twice
            problem = getattr(error, "problem", None) or first_line(error)
            raise DataError(f"the overrides are not valid YAML: {problem}") from None
    hparams_file, presets = preset_chain(hparams_path)
    layers = ([copy.deepcopy(overrides)] if overrides else []) + presets
    merged: Dict = {}
    for layer in reversed(layers):  # the base-most preset first, the given overrides last
        recursive_update(merged, layer)
    return hparams_file, _dump_yaml(merged)


def print_help(argv: Sequence[str], usage: str, default_hparams: Optional[str]) -> None:
    """Prints the recipe's ``--help`` (:mod:`speechbrain_dino.recipe_help`): the YAML is
    ``argv[0]`` when given, else ``default_hparams``."""
    hparams_name = argv[0] if argv and not argv[0].startswith("-") else default_hparams
    settings, base_name = [], ""
    if hparams_name is not None:
        base, presets = preset_chain(find_hparams(hparams_name))
        settings = top_level_settings(_read_yaml(base), presets)
        base_name = os.path.relpath(base, HPARAMS_FOLDER) if presets else ""
    print(help_text(os.path.basename(sys.argv[0]), usage, hparams_name, settings, base_name))


def load_hparams(
    hparams_path: PathLike, overrides: Any = None, settings: Optional[SettingsTable] = None
) -> Tuple[str, str, Dict[str, Any]]:
    """Loads an hparams file or preset with overrides, with one clear error for any failure.

    ``settings`` (a recipe's table, see :mod:`speechbrain_dino.settings`) checks the overrides'
    values first, before any object of the YAML is built.

    Returns
    -------
    (hparams_file, overrides, hparams)
        As :func:`resolve_preset` returns them, and the loaded HyperPyYAML dict.
    """
    hparams_file, overrides = resolve_preset(find_hparams(hparams_path), overrides)
    if settings:
        check_settings(ruamel.yaml.YAML().load(overrides) if overrides else None, settings)
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


def load_recipe(
    argv: Sequence[str],
    required: Sequence[str] = (),
    usage: str = "",
    default_hparams: Optional[str] = None,
    settings: Optional[SettingsTable] = None,
) -> Tuple[str, Dict, str, Dict]:
    """``sb.parse_arguments`` + ``ddp_init_group`` + ``load_hyperpyyaml``, with clear errors.

    With ``-h`` / ``--help`` anywhere in ``argv``, prints the recipe's help (:func:`print_help`)
    and exits 0 instead. Before any work, the run options' device and precision are checked
    against this machine and the overrides against the recipe's ``settings`` table.

    Arguments
    ---------
    argv : sequence of str
        ``sys.argv[1:]``: the hparams file (or preset, see :func:`find_hparams`), then
        ``--key=value`` overrides and run options.
    required : sequence of str
        Keys that must be set (typically paths such as ``train_csv``); an empty or null value is an
        error telling which ``--key=`` to pass.
    usage : str
        What the recipe does and how to call it (its module docstring), for ``--help``.
    default_hparams : str, optional
        The YAML whose settings ``--help`` shows when ``argv`` names none.
    settings : SettingsTable, optional
        The recipe's checked settings (:mod:`speechbrain_dino.recipe_settings`).

    Returns
    -------
    (hparams_file, run_opts, overrides, hparams)
        ``hparams_file`` and ``overrides`` with presets resolved (what
        ``sb.create_experiment_directory`` should save).
    """
    if any(arg in ("-h", "--help") for arg in argv):
        print_help(argv, usage, default_hparams)
        sys.exit(0)
    if not argv or argv[0].startswith("-"):
        raise DataError("the first argument must be a hparams YAML file, e.g. hparams/dino_ecapa.yaml")
    hparams_path = find_hparams(argv[0])
    _, run_opts, overrides = sb.parse_arguments([hparams_path, *argv[1:]])
    check_run_options(run_opts)
    sb.utils.distributed.ddp_init_group(run_opts)
    hparams_file, overrides, hparams = load_hparams(hparams_path, overrides, settings)
    missing = [key for key in required if hparams.get(key) in (None, "")]
    if missing:
        flags = " ".join(f"--{key}=..." for key in missing)
        raise DataError(f"required setting(s) {missing} are empty: pass {flags}", hparams_path)
    return hparams_file, run_opts, overrides, hparams


def data_replacements(hparams: Dict[str, Any]) -> Optional[Dict[str, str]]:
    """``{"data_root": DIR}`` when the YAML sets ``data_root`` (``$data_root`` in manifest paths)."""
    data_root = hparams.get("data_root")
    return {"data_root": os.fspath(data_root)} if data_root else None


def trial_validator(hparams: Dict[str, Any]) -> Optional[TrialValidator]:
    """The validation of a training YAML with ``valid_csv`` and ``valid_trials`` set (None without):
    its EER every epoch, and the decision threshold the export records."""
    if not (hparams.get("valid_csv") and hparams.get("valid_trials")):
        return None
    return TrialValidator.from_files(
        hparams["valid_csv"],
        hparams["valid_trials"],
        replacements=data_replacements(hparams),
        sample_rate=hparams["sample_rate"],
        resample=hparams["resample"],
    )


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


def fit_and_export(
    hparams: Dict,
    run_opts: Dict,
    train_data,
    architecture: Architecture,
    metadata: Dict,
    modules: Optional[Dict[str, torch.nn.Module]] = None,
    recoverables: Optional[Dict[str, torch.nn.Module]] = None,
    labelled_rows: Optional[Sequence[Row]] = None,
) -> None:
    """Builds ``hparams['brain_class']``, trains (resuming from checkpoints), exports ``pretrained/``.

    Arguments
    ---------
    hparams : dict
        A training YAML: ``brain_class``, ``modules``, ``opt_class``, ``checkpointer``,
        ``epoch_counter``, ``train_dataloader_opts``, ``output_folder``; with ``valid_csv`` and
        ``valid_trials``, the validation EER every epoch and the export's decision threshold
        (:func:`trial_validator`).
    run_opts : dict
        SpeechBrain run options (device, DDP, precision, checkpoint interval...).
    train_data : DynamicItemDataset
        The training set.
    architecture : Architecture
        What the exported encoder is (written into ``pretrained/``).
    metadata : dict
        Provenance written beside the exported encoder.
    modules, recoverables : dict, optional
        Modules built outside the YAML (e.g. from a previous stage's export), added to the YAML's
        ``modules``, and those of them the checkpointer must hold.
    labelled_rows : sequence of dict, optional
        The training rows of a run on (pseudo-)speaker labels: without validation trials, the
        export records a decision threshold estimated from their clusters
        (:class:`~speechbrain_dino.inference.threshold_estimate.ClusterThresholdEstimator`; its draw
        leaves the global random state alone).
    """
    for name, module in (recoverables or {}).items():
        hparams["checkpointer"].add_recoverable(name, module)
    hparams["validator"] = trial_validator(hparams)
    hparams["threshold_estimator"] = None
    if hparams["validator"] is None and labelled_rows is not None:
        try:
            hparams["threshold_estimator"] = ClusterThresholdEstimator(
                labelled_rows, seed=int(hparams.get("seed", 0)), sample_rate=hparams["sample_rate"],
                resample=hparams["resample"],
            )
        except DataError as error:  # e.g. every label a single row: no same-cluster pair
            logger.warning("the export will record no decision threshold: %s", error)
    brain = hparams["brain_class"](
        modules={**hparams["modules"], **(modules or {})},
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        train_data,
        train_loader_kwargs=hparams["train_dataloader_opts"],
    )
    run_on_main(
        brain.export,
        args=[os.path.join(hparams["output_folder"], "pretrained"), architecture],
        kwargs={"metadata": metadata},
    )
