"""What every recipe script shares: argument and YAML loading with clear errors.

Recipes stay SpeechBrain-shaped (``parse_arguments`` -> ``ddp_init_group`` -> ``load_hyperpyyaml``
-> ``create_experiment_directory`` -> Brain; the last is called by the recipe itself, since
SpeechBrain copies the calling file into the experiment folder), but a bad hparams file, a bad override or bad data
ends in one ``error: ...`` line and exit status 2 instead of a traceback.
"""
from __future__ import annotations

import functools
import gc
import logging
import os
import sys
from typing import Callable, Dict, Sequence, Tuple

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from speechbrain_dino.errors import DataError

logger = logging.getLogger(__name__)


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
    """Runs ``main``; a :class:`DataError` becomes ``error: <message>`` on stderr and exit 2.

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
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gc.collect()
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    return guarded


def load_recipe(
    argv: Sequence[str], required: Sequence[str] = ()
) -> Tuple[str, Dict, str, Dict]:
    """``sb.parse_arguments`` + ``ddp_init_group`` + ``load_hyperpyyaml``, with clear errors.

    Arguments
    ---------
    argv : sequence of str
        ``sys.argv[1:]``: the hparams file, then ``--key=value`` overrides and run options.
    required : sequence of str
        Keys that must be set (typically paths such as ``train_csv``); an empty or null value is an
        error telling which ``--key=`` to pass.

    Returns
    -------
    (hparams_file, run_opts, overrides, hparams)
    """
    if not argv or argv[0].startswith("-"):
        raise DataError("the first argument must be a hparams YAML file, e.g. hparams/dino_ecapa.yaml")
    if not os.path.isfile(argv[0]):
        raise DataError("hparams file not found", argv[0])
    hparams_file, run_opts, overrides = sb.parse_arguments(list(argv))
    sb.utils.distributed.ddp_init_group(run_opts)
    try:
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides)
    except DataError:
        raise
    except Exception as error:  # YAML syntax, unknown override keys, bad constructor arguments
        raise DataError(
            f"cannot load hyperparameters with overrides {overrides!r}: "
            f"{type(error).__name__}: {error}",
            hparams_file,
        ) from None
    missing = [key for key in required if hparams.get(key) in (None, "")]
    if missing:
        flags = " ".join(f"--{key}=..." for key in missing)
        raise DataError(f"required setting(s) {missing} are empty: pass {flags}", hparams_file)
    return hparams_file, run_opts, overrides, hparams



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


def fit_and_export(hparams: Dict, run_opts: Dict, train_data, metadata: Dict) -> None:
    """Builds ``hparams['brain_class']``, trains (resuming from checkpoints), exports ``pretrained/``.

    Arguments
    ---------
    hparams : dict
        A training YAML: ``brain_class``, ``modules``, ``opt_class``, ``checkpointer``,
        ``epoch_counter``, ``train_dataloader_opts``, ``output_folder``.
    run_opts : dict
        SpeechBrain run options (device, DDP, precision, checkpoint interval...).
    train_data : DynamicItemDataset
        The training set.
    metadata : dict
        Provenance written beside the exported encoder.
    """
    brain = hparams["brain_class"](
        modules=hparams["modules"],
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
        args=[os.path.join(hparams["output_folder"], "pretrained")],
        kwargs={"metadata": metadata},
    )
