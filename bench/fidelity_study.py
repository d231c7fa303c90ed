"""What following the reference code costs or buys: the same systems trained by an older checkout
and by this one, same seeds, same steps, evaluated alike, compared pairwise.

    python -m bench.fidelity_study --old_code ../old-checkout --tag fidelity_5min \
        --runs "DINO (paper settings)=2" RDINO=2 SDPN=3 "SDPN from contrastive=2+1"

Each run is a system of bench.systems (its preset in ``hparams/demo/`` and its overrides, as
bench.objectives trains it) with its epochs of the study pool (``A+B`` for a warm start: A epochs
of its first part, then B of its second from the first's export), the epochs of an earlier
budgeted study so that both versions take the same optimiser steps. The old version trains with
``--old_code`` alone on PYTHONPATH and that checkout's presets; the new one with this checkout's.
Both are evaluated by this checkout on the three held-out sets, and each new system's relative EER
change against its old version comes with the 95% interval of the paired speaker bootstrap.
Results: ``bench/results/<tag>.md`` and the BENCHMARKS.md block ``<tag>``.
"""
from __future__ import annotations

import argparse
import datetime
import os
from typing import Dict, List, Tuple

from bench.common import REPO, SHARED_DATA, machine, markdown_table, publish
from bench.study import EVAL_SETS, Study, System, slug
from bench.study_data import prepare_study_data
from bench.systems import SYSTEMS, WARM_STARTS
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.pipeline.stages import read_verification
from speechbrain_dino.verification.evaluation import paired_eer_change

VERSIONS = ("old", "new")


def parse_run(text: str) -> Tuple[str, List[int]]:
    """``"SDPN from contrastive=2+1"`` -> ``("SDPN from contrastive", [2, 1])``."""
    name, _, epochs = text.rpartition("=")
    if name not in SYSTEMS and name not in WARM_STARTS:
        raise SystemExit(f"error: unknown system {name!r}; choose from {[*SYSTEMS, *WARM_STARTS]}")
    parts = [int(value) for value in epochs.split("+")]
    if len(parts) != (2 if name in WARM_STARTS else 1):
        raise SystemExit(f"error: {text!r}: a warm start takes A+B epochs, any other system one number")
    return name, parts


class FidelityStudy(Study):
    """Trains each run with two checkouts and evaluates both with this one."""

    def train_version(self, version: str, code_root: str, name: str, epochs: List[int]) -> System:
        """``name`` trained by the checkout ``code_root`` (its code on PYTHONPATH, its presets)."""
        parts = [name] if name in SYSTEMS else list(WARM_STARTS[name])
        environment = dict(os.environ)
        # each version's stages import its own checkout: first on the path, and no current folder
        # ahead of it (python -m puts the working directory first unless PYTHONSAFEPATH is set)
        os.environ.update(PYTHONPATH=code_root, PYTHONSAFEPATH="1")
        try:
            init_from = None
            for part, part_epochs in zip(parts, epochs):
                preset, overrides = SYSTEMS[part]
                folder = self.folder(version, slug(name), slug(part))
                run = {**overrides, "number_of_epochs": part_epochs, **({"init_from": init_from} if init_from else {})}
                init_from = self.stages.train_dino(os.path.join(code_root, "hparams", "demo", preset),
                                                   self.data.pretrain_csv, folder, run, name=f"{name}: {part} ({version})")
        finally:
            os.environ.clear()
            os.environ.update(environment)
        return System(f"{name} ({version})", init_from, sum(epochs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old_code", required=True, help="the older checkout (a git worktree)")
    parser.add_argument("--runs", nargs="+", required=True, help="NAME=EPOCHS or NAME=A+B (warm starts)")
    parser.add_argument("--tag", required=True, help="results name, e.g. fidelity_5min")
    parser.add_argument("--output_folder", default=None, help="default bench/work/<tag>")
    args = parser.parse_args()
    runs = dict(parse_run(text) for text in args.runs)
    args.output_folder = args.output_folder or os.path.join(REPO, "bench", "work", args.tag)
    args.gpu = False
    started = datetime.datetime.now()
    study = FidelityStudy(args)
    study.data = prepare_study_data(SHARED_DATA, study.folder("data"))
    old_code = os.path.abspath(args.old_code)
    systems: Dict[str, Dict[str, System]] = {}
    for name, epochs in runs.items():
        systems[name] = {version: study.train_version(version, old_code if version == "old" else REPO, name, epochs)
                         for version in VERSIONS}
        for system in systems[name].values():
            study.evaluate_sets(system, ())
    rows = []
    for name, versions in systems.items():
        cells = []
        for eval_set in EVAL_SETS:
            speaker_of = {row["ID"]: row["spk_id"] for row in read_manifest(getattr(study.data, f"{eval_set}_test_csv"))}
            old, new = (study.score_file(versions[v], eval_set) for v in VERSIONS)
            eers = [read_verification(study.eval_folder(versions[v], eval_set), versions[v].name)[versions[v].name]["raw"]["EER"]
                    for v in VERSIONS]
            change = paired_eer_change(old, new, speaker_of)
            mark = " \\*" if change.high < 0 or change.low > 0 else ""
            cells.append(f"{eers[0]:.2f} -> {eers[1]:.2f}; {change.value:+.0f}% [{change.low:+.0f}, {change.high:+.0f}]{mark}")
        rows.append([name, "+".join(str(e) for e in runs[name]), *cells])
    block = "\n".join([
        f"Command: `python -m bench.fidelity_study --old_code <older checkout> --tag {args.tag} --runs "
        + " ".join(f'"{text}"' for text in args.runs) + "`  ",
        f"Date: {started.date().isoformat()}; machine: {machine()}; wall time "
        f"{(datetime.datetime.now() - started).total_seconds() / 60:.0f} min. Seeds 1986 (training), 0 (trials, "
        "1,000 speaker-bootstrap draws). Each cell: EER % old -> new; the relative change new vs old "
        "[95% interval of the paired speaker bootstrap], \\* where it excludes 0.",
        "",
        *markdown_table(["system", "epochs", *(f"EER % {label}" for label in EVAL_SETS.values())], rows),
    ])
    publish(args.tag, block)


if __name__ == "__main__":
    main()
