"""The stages of the method as one API: each runs its recipe in its own process and folder.

Used by the chained pipeline (:mod:`speechbrain_dino.pipeline.run`) and by the studies in ``bench/``.
A stage runs ``python -m speechbrain_dino.recipes.<recipe> <hparams> --key=value ...`` in the
caller's working directory, so it behaves exactly as when a user runs the recipe by hand (seeding,
logging, checkpoints) and relative paths mean the same in the caller and the stage. Every stage
whose outputs exist is skipped; an interrupted training stage simply runs again and resumes from
its last checkpoint. A stage whose process fails raises
:class:`~speechbrain_dino.errors.StageFailed`; one stopped by a preemption signal (passed on by
the caller, or sent to it directly) raises :class:`~speechbrain_dino.errors.Preempted`.

Stages and what they return:

- :meth:`StageRunner.train_dino` (DINO, or the contrastive baseline with its YAML) and
  :meth:`StageRunner.train_aam`: the ``pretrained/`` folder of the trained encoder;
- :meth:`StageRunner.pseudo_label`: the labels folder (:mod:`speechbrain_dino.pseudo_labels.outputs`);
- :meth:`StageRunner.verification` and :meth:`StageRunner.emotion`: the metrics of every system
  evaluated (the encoder and its baselines), as :func:`read_verification` and
  :func:`read_emotion` give them.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any, BinaryIO, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from speechbrain_dino.errors import PREEMPTED_EXIT_STATUS, PathLike, Preempted, StageFailed
from speechbrain_dino.pipeline.console import StageConsole
from speechbrain_dino.pipeline.memory import PeakMemoryMonitor
from speechbrain_dino.pipeline.summaries import (
    emotion_summary,
    pseudo_label_summary,
    training_summary,
    verification_summary,
)
from speechbrain_dino.pseudo_labels.outputs import outputs_exist, read_report
from speechbrain_dino.training.preemption import PreemptionWatch

logger = logging.getLogger(__name__)

#: Package holding the recipe modules (``python -m speechbrain_dino.recipes.<name>``).
RECIPES_PACKAGE = "speechbrain_dino.recipes"
#: The file every evaluation recipe writes.
RESULTS_FILE = "results.json"
#: The file in a stage's output folder that receives everything the stage prints.
STAGE_LOG = "stage_output.log"
#: Lines of a failed stage's log shown on the console when its output was not streamed.
FAILED_TAIL_LINES = 15
#: Keys of a verification ``results.json`` that are not the main system's raw metrics.
_NOT_RAW_METRICS = ("normalisation", "as_norm", "baselines")


@dataclasses.dataclass(frozen=True)
class StageUsage:
    """What one stage cost: wall seconds and the peak resident memory of its process (GB)."""

    seconds: float
    peak_rss_gb: float


def override_args(overrides: Optional[Mapping[str, Any]]) -> List[str]:
    """``{"a": 1, "b": {"c": 2}}`` -> ``["--a=1", "--b={c: 2}"]`` (SpeechBrain override flags)."""
    args = []
    for key, value in (overrides or {}).items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        if text.endswith("\n..."):
            text = text[: -len("\n...")]
        args.append(f"--{key}={text}")
    return args


def run_recipe(
    recipe: str, hparams_file: PathLike, overrides: Mapping[str, Any], name: str, *extra_args: str,
    log_path: Optional[PathLike] = None, stream: bool = True,
) -> StageUsage:
    """Runs the recipe module ``recipe`` (e.g. ``"train_dino"``) with ``hparams_file`` and overrides.

    The stage's console output (progress bars included) is appended to ``log_path`` when given,
    and also goes to the terminal as it runs when ``stream`` (``log_path=None``: the terminal
    only). Its wall time and peak memory (the recipe process's own high-water mark, sampled while
    it runs, see :mod:`speechbrain_dino.pipeline.memory`; ``ru_maxrss`` where ``/proc`` is missing) are
    logged and returned. ``extra_args`` are passed as they are (e.g. ``--debug``).

    While it runs, a preemption signal (SIGTERM, SIGUSR1) to this process is passed on to the
    recipe's (:mod:`speechbrain_dino.training.preemption`).

    Raises
    ------
    Preempted
        The recipe stopped for a preemption signal (exit status 75, checkpoint saved), or this
        process passed it one.
    StageFailed
        The recipe's process exited with an error (the end of its log is printed first when it was
        not streamed).
    """
    command = [
        sys.executable, "-m", f"{RECIPES_PACKAGE}.{recipe}", os.fspath(hparams_file),
        *override_args(overrides), *extra_args,
    ]
    logger.info("stage %s: %s", name, " ".join(command))
    start = time.perf_counter()
    if log_path is None:
        print(f"\n=== {name} ===", flush=True)
        returncode, peak_gb, received = _run_process(command, None, stream=True)
    else:
        log_path = os.fspath(log_path)
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            returncode, peak_gb, received = _run_process(command, log, stream)
    usage = StageUsage(time.perf_counter() - start, peak_gb)
    if returncode == PREEMPTED_EXIT_STATUS or received is not None:
        how = "was preempted and saved a checkpoint" if returncode == PREEMPTED_EXIT_STATUS else (
            f"ended (exit {returncode}) after the pipeline passed it {received.name}")
        where = f" (its output is in {log_path})" if log_path is not None else ""
        raise Preempted(f"stage {name} {how}{where}; rerun the pipeline to resume")
    if returncode != 0:
        if log_path is not None and not stream:
            print(log_tail(log_path, FAILED_TAIL_LINES), file=sys.stderr, flush=True)
        raise StageFailed(name, returncode, command, log_path)
    logger.info("stage %s: %.1f min, peak memory %.2f GB", name, usage.seconds / 60, usage.peak_rss_gb)
    return usage


def _run_process(
    command: Sequence[str], log: Optional[BinaryIO], stream: bool
) -> Tuple[int, float, Optional[signal.Signals]]:
    """Runs ``command`` with its output to ``log`` (a binary file; None: the terminal only) and,
    when ``stream``, to the terminal as well; returns its exit status, peak memory (GB) and the
    preemption signal this process received meanwhile and passed on to it (None: none)."""
    if log is None:
        process = subprocess.Popen(command)
    else:
        process = subprocess.Popen(command, stdout=subprocess.PIPE if stream else log, stderr=subprocess.STDOUT)
    with PeakMemoryMonitor(process.pid) as memory, PreemptionWatch(forward_to=process.pid) as preemption:
        if log is not None and stream:
            terminal = getattr(sys.stdout, "buffer", None)
            for chunk in iter(lambda: os.read(process.stdout.fileno(), 1 << 16), b""):
                log.write(chunk)
                if terminal is not None:
                    terminal.write(chunk)
                    terminal.flush()
                else:
                    print(chunk.decode(errors="replace"), end="", flush=True)
            process.stdout.close()
        _, status, rusage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    peak_gb = memory.peak_gb if memory.peak_gb is not None else rusage.ru_maxrss / 2**20
    return process.returncode, peak_gb, preemption.received


def log_tail(path: PathLike, lines: int) -> str:
    """The last ``lines`` lines of a stage log (progress-bar redraws reduced to their last state)."""
    with open(os.fspath(path), encoding="utf-8", errors="replace") as fin:
        text = [line.rsplit("\r", 1)[-1] for line in fin.read().rstrip("\n").split("\n")]
    return "\n".join(text[-lines:])


def pretrained_folder(training_folder: PathLike) -> str:
    """The ``pretrained/`` folder a training stage exports into."""
    return os.path.join(os.fspath(training_folder), "pretrained")


def training_done(training_folder: PathLike) -> bool:
    """True when a training stage has exported ``pretrained/``."""
    return os.path.isfile(os.path.join(pretrained_folder(training_folder), "hyperparams.yaml"))


def results_exist(evaluation_folder: PathLike) -> bool:
    """True when an evaluation stage has written its ``results.json``."""
    return os.path.isfile(os.path.join(os.fspath(evaluation_folder), RESULTS_FILE))


def read_json(path: PathLike) -> Any:
    """A JSON file (a stage's output)."""
    with open(os.fspath(path), encoding="utf-8") as fin:
        return json.load(fin)


def read_verification(folder: PathLike, system: str) -> Dict[str, Dict[str, Dict[str, float]]]:
    """The metrics of a verification folder, per system: the evaluated one first, then the baselines.

    Arguments
    ---------
    folder : PathLike
        Output folder of ``eval_verification`` (its ``results.json``).
    system : str
        The evaluated encoder's ``system_name`` (its metrics are the file's top level).

    Returns
    -------
    dict
        ``{system: {"raw": metrics[, "as_norm": metrics]}, baseline: {...}, ...}``; metrics hold
        ``EER`` (percent), ``minDCF_0.01``, ``minDCF_0.05``, ``n_trials``, ``n_target``.
    """
    results = read_json(os.path.join(os.fspath(folder), RESULTS_FILE))
    main = {"raw": {key: value for key, value in results.items() if key not in _NOT_RAW_METRICS}}
    if "as_norm" in results:
        main["as_norm"] = results["as_norm"]
    return {system: main, **results.get("baselines", {})}


def read_emotion(folder: PathLike, system: str) -> Dict[str, Dict[str, Any]]:
    """The results of an emotion folder, per system: the evaluated one first, then the baselines.

    Returns
    -------
    dict
        ``{system: results, baseline: results, ...}``; results hold ``micro_f1`` (percent, mean
        over folds), ``micro_f1_std``, ``macro_f1``, ``ua``, per-fold values, the confusion matrix.
    """
    results = read_json(os.path.join(os.fspath(folder), RESULTS_FILE))
    baselines = results.pop("baselines", {})
    return {system: results, **baselines}


class StageRunner:
    """Runs the stages, skipping those whose outputs exist, and reports what each run cost.

    Each stage's output is appended to :data:`STAGE_LOG` in its output folder; the console prints
    one line as a stage starts and one as it ends (or is skipped), with its key number
    (:mod:`speechbrain_dino.pipeline.summaries`).

    Arguments
    ---------
    run_options : sequence of str
        Command-line run options given to every stage (e.g. ``["--device=cuda:0"]``).
    shared_overrides : mapping, optional
        Overrides given to every stage (e.g. ``{"data_root": "/data"}``).
    on_usage : callable, optional
        Called as ``on_usage(name, StageUsage)`` after each stage that ran (not after a skip).
    console : StageConsole, optional
        The progress lines (default: no plan, the stages' output streamed to the terminal too).
    """

    def __init__(
        self,
        run_options: Sequence[str] = (),
        shared_overrides: Optional[Mapping[str, Any]] = None,
        on_usage: Optional[Callable[[str, StageUsage], None]] = None,
        console: Optional[StageConsole] = None,
    ) -> None:
        self.run_options = [str(option) for option in run_options]
        self.shared_overrides = dict(shared_overrides or {})
        self.on_usage = on_usage
        self.console = console if console is not None else StageConsole(verbose=True)

    def run(self, recipe: str, hparams_file: PathLike, overrides: Mapping[str, Any], name: str) -> StageUsage:
        """:func:`run_recipe` with the shared overrides and run options, its output logged into
        ``overrides["output_folder"]``; reports the cost."""
        overrides = {**self.shared_overrides, **overrides}
        usage = run_recipe(
            recipe, hparams_file, overrides, name, *self.run_options,
            log_path=os.path.join(os.fspath(overrides["output_folder"]), STAGE_LOG), stream=self.console.verbose,
        )
        if self.on_usage is not None:
            self.on_usage(name, usage)
        return usage

    def run_unless_done(
        self, done: bool, recipe: str, hparams_file: PathLike, inputs: Mapping[str, Any],
        overrides: Optional[Mapping[str, Any]], name: str, summary: Callable[[], str],
    ) -> None:
        """Runs ``recipe`` with the stage's ``inputs`` (paths, names, ``output_folder``) and the
        caller's ``overrides`` on top, unless ``done``; ``summary()`` is the key number of its
        outputs for the console."""
        if done:
            self.console.stage_skipped(name, summary())
            return
        self.console.stage_started(name)
        stage = {key: _plain_path(value) for key, value in inputs.items()}
        usage = self.run(recipe, hparams_file, {**stage, **(overrides or {})}, name)
        self.console.stage_finished(name, recipe, usage.seconds, summary())

    def trained(
        self, recipe: str, hparams_file: PathLike, inputs: Mapping[str, Any], overrides: Optional[Mapping[str, Any]],
        name: str,
    ) -> str:
        """A training stage: runs ``recipe`` unless its ``output_folder`` has exported ``pretrained/``,
        which it returns."""
        folder = inputs["output_folder"]
        self.run_unless_done(
            training_done(folder), recipe, hparams_file, inputs, overrides, name, lambda: training_summary(folder)
        )
        return pretrained_folder(folder)

    def train_dino(self, hparams_file: PathLike, train_csv: PathLike, folder: PathLike,
                   overrides: Optional[Mapping[str, Any]] = None, name: str = "DINO pretraining") -> str:
        """Self-supervised pretraining (DINO, or the contrastive baseline with its YAML) into ``folder``;
        returns its ``pretrained/``."""
        inputs = {"train_csv": train_csv, "output_folder": folder}
        return self.trained("train_dino", hparams_file, inputs, overrides, name)

    def pseudo_label(self, hparams_file: PathLike, pretrained: PathLike, train_csv: PathLike, folder: PathLike,
                     overrides: Optional[Mapping[str, Any]] = None, name: str = "pseudo-labels") -> str:
        """Clusters ``train_csv`` with the encoder ``pretrained`` into ``folder``; returns ``folder``
        (:func:`~speechbrain_dino.pseudo_labels.outputs.labels_path` is the labelled manifest)."""
        inputs = {"pretrained_path": pretrained, "train_csv": train_csv, "output_folder": folder}
        self.run_unless_done(
            outputs_exist(folder), "pseudo_label", hparams_file, inputs, overrides, name,
            lambda: pseudo_label_summary(read_report(folder)),
        )
        return os.fspath(folder)

    def train_aam(self, hparams_file: PathLike, train_csv: PathLike, init_from: PathLike, folder: PathLike,
                  overrides: Optional[Mapping[str, Any]] = None, name: str = "AAM fine-tuning") -> str:
        """AAM fine-tuning of ``init_from`` on the labels of ``train_csv``; returns its ``pretrained/``."""
        inputs = {"train_csv": train_csv, "init_from": init_from, "output_folder": folder}
        return self.trained("train_aam", hparams_file, inputs, overrides, name)

    def verification(
        self, hparams_file: PathLike, pretrained: PathLike, test_csv: PathLike, trials: PathLike, folder: PathLike,
        system: str, baselines: Sequence[str] = (), cohort_csv: Optional[PathLike] = None,
        overrides: Optional[Mapping[str, Any]] = None, name: Optional[str] = None,
    ) -> Dict[str, Dict[str, Dict[str, float]]]:
        """Speaker verification of ``pretrained`` (and ``baselines``) into ``folder``, as ``system``;
        returns :func:`read_verification` of the folder."""
        inputs = {"pretrained_path": pretrained, "test_csv": test_csv, "trials": trials, "cohort_csv": cohort_csv}
        inputs.update(output_folder=folder, system_name=system, baselines=list(baselines))
        self.run_unless_done(
            results_exist(folder), "eval_verification", hparams_file, inputs, overrides,
            name or f"{system}: verification", lambda: verification_summary(read_verification(folder, system)),
        )
        return read_verification(folder, system)

    def emotion(
        self, hparams_file: PathLike, pretrained: PathLike, data_csv: PathLike, folder: PathLike, system: str,
        baselines: Sequence[str] = (), overrides: Optional[Mapping[str, Any]] = None, name: Optional[str] = None,
    ) -> Dict[str, Dict[str, Any]]:
        """Emotion recognition from the embeddings of ``pretrained`` (and ``baselines``) into ``folder``,
        as ``system``; returns :func:`read_emotion` of the folder."""
        inputs = {"pretrained_path": pretrained, "data_csv": data_csv, "output_folder": folder, "system_name": system}
        self.run_unless_done(
            results_exist(folder), "eval_emotion", hparams_file, {**inputs, "baselines": list(baselines)}, overrides,
            name or f"{system}: emotion", lambda: emotion_summary(read_emotion(folder, system)),
        )
        return read_emotion(folder, system)


def _plain_path(value: Any) -> Any:
    """``value`` as a string when it is a path object (an override must be plain YAML)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value
