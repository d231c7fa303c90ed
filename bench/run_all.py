"""The real-speech study in one command: every system at the same budget, speed and scale, figures.

    python -m bench.run_all [--budget 5] [--output_folder bench/work/study] [--gpu]

On the benchmark data folder ($SBDINO_SHARED_DATA; see bench.study_data for the sets):

1. Speed and scale, first, on a quiet machine: data preparation; a DINO step against a plain
   forward + backward on the same crops, and data-loading headroom; batched extraction against
   ``EncoderClassifier.encode_batch`` one file at a time; scoring 1M trials; k-means into many
   clusters with faiss and with scikit-learn at 100k and 1M embeddings (time, peak memory).
2. Systems, every training run planned to ``--budget`` minutes from step times measured here
   (bench.budget): MFCC statistics and random-init ECAPA (no training), the contrastive
   baseline (NT-Xent), DINO with the paper's settings, the pipeline's pretraining (the pipeline
   YAML's ``warm_start_hparams`` then ``pretraining_hparams``, both parts within one budget; today the
   contrastive warm start, then SDPN), its pseudo-label round 1 and round 2 (k-means -> AHC ->
   filter -> AAM fine-tuning: the pipeline YAML's rounds, run by
   ``speechbrain_dino.pipeline.rounds.RoundRunner``, each fine-tuning planned to the budget), and
   AAM fine-tuning of it on the true labels (upper bound).
   Pretraining and pseudo-labelling never see an evaluation speaker (asserted).
3. Evaluation of each: verification on RAVDESS actors 17-24 (targets cross emotion and sentence)
   and on half-utterance trials of held-out LibriSpeech speakers; emotion with a logistic-regression
   probe on 4 actor-independent RAVDESS folds.
4. Report: ``bench/results/study.md``, figures in ``bench/results/figures/``, and the generated
   blocks of BENCHMARKS.md (between ``<!-- run_all:NAME -->`` and ``<!-- /run_all:NAME -->``).

Every stage runs in its own folder under ``--output_folder``; a rerun skips finished stages
(``--fresh`` starts over). ``--gpu`` runs the same study with the full-size presets on
``cuda:0`` (unmeasured so far).
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import time
from typing import Dict, List, Optional, Sequence, Tuple

from bench import cluster_scale, dino_speed, extraction_speed, prepare_shared, scoring_speed
from bench.budget import plain_values, remaining_share
from bench.common import FIGURES, REPO, RESULTS, SHARED_DATA, command_line, machine, markdown_table, write_benchmarks
from bench.study import DISPLAY_NAMES, EVAL_SETS, Study, System, folder_name, pipeline_round_settings
from bench.study_data import describe, prepare_study_data
from bench.study_figures import det_figure, embedding_map
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.inference.baselines import BASELINES, embeddings_cache, mfcc_statistics
from speechbrain_dino.inference.embeddings import EmbeddingTable
from speechbrain_dino.pipeline.rounds import Round, RoundRunner
from speechbrain_dino.pipeline.stages import read_emotion, read_verification
from speechbrain_dino.pseudo_labels.outputs import labels_path, read_report


class BudgetedRounds(RoundRunner):
    """The pipeline's rounds, each AAM fine-tuning planned to the study's budget (its epochs from the
    step time measured here, instead of the pipeline's epochs from the clusters)."""

    def __init__(self, study: "MainStudy", folder: str) -> None:
        settings = pipeline_round_settings(study.presets["pipeline"], aam_overrides={})
        super().__init__(study.stages, settings, study.data.pretrain_csv, folder, check_labels=study.check_labels)
        self.study = study
        self.planned: Dict[int, Tuple[int, str]] = {}  # round index -> (epochs, the manifest fine-tuned on)

    def fine_tune(self, round_: Round) -> None:
        """:meth:`RoundRunner.fine_tune` for the budget's epochs of the round's labels."""
        train_csv = round_.split.train_csv if round_.split else labels_path(round_.labels)
        epochs = self.study.aam_epochs(round_.start, train_csv)
        self.planned[round_.index] = (epochs, train_csv)
        self.aam_overrides = {**self.settings.aam_overrides, "number_of_epochs": epochs}
        super().fine_tune(round_)

    def system(self, round_: Round) -> System:
        """A finished round as a :class:`System`: its encoder, fine-tuning cost and clustering."""
        epochs, train_csv = self.planned[round_.index]
        system = self.study.trained_system(round_.name, os.path.dirname(round_.encoder), epochs,
                                           self.settings.aam_hparams, train_csv,
                                           stage=f"{round_.name}: AAM fine-tuning")
        system.clustering = read_report(round_.labels)
        return system


class MainStudy(Study):
    """The study of this script: every system at one budget, evaluated on verification and emotion."""

    def train_ssl(self, system: str, hparams_file: str, budget_share: float = 1.0,
                  init_from: Optional[str] = None, timed_as: Optional[str] = None) -> System:
        """Self-supervised pretraining (DINO family or contrastive) on the pretraining pool, for
        ``budget_share`` of the budget at the step time of ``timed_as`` (default ``system``),
        optionally started from the exported encoder ``init_from``."""
        key = timed_as or system
        self.calibrate(key, "train_dino", hparams_file, {"train_csv": self.data.pretrain_csv})
        epochs = max(1, round(self.planned_epochs(key, hparams_file, self.data.pretrain_csv) * budget_share))
        folder = self.folder(folder_name(system))
        overrides = {"number_of_epochs": epochs, **({"init_from": init_from} if init_from else {})}
        self.stages.train_dino(hparams_file, self.data.pretrain_csv, folder, overrides, name=f"{system} pretraining")
        return self.trained_system(system, folder, epochs, hparams_file, self.data.pretrain_csv)

    def train_pipeline_pretraining(self) -> System:
        """The pretraining of the pipeline YAML (``hparams/demo/pipeline.yaml``; with ``--gpu``
        ``hparams/pipeline.yaml``) at one budget: its ``pretraining_hparams`` run, and first, when it has
        a ``warm_start_hparams`` run, that one for half the budget (whole epochs) with the second
        part getting the time the first left. Named by the YAML's ``pretraining_name``."""
        pipeline = plain_values(self.presets["pipeline"])
        name = pipeline["pretraining_name"]
        second = os.path.join(REPO, pipeline["pretraining_hparams"])
        if not pipeline.get("warm_start_hparams"):
            return self.train_ssl(name, second)
        first_hparams = os.path.join(REPO, pipeline["warm_start_hparams"])
        first = self.train_ssl(f"{name} warm start", first_hparams, 0.5)
        rest = remaining_share(self.args.budget, first.steps, self.step_seconds[first.name])
        return self.train_ssl(name, second, rest, init_from=first.pretrained).after(first)

    def aam_epochs(self, init_from: str, train_csv: str) -> int:
        """Budgeted epochs of an AAM fine-tune (step time measured with the whole network trainable)."""
        hparams_file = self.presets["train_aam"]
        schedule = {**plain_values(hparams_file)["schedule"], "frozen_share": 0}
        self.calibrate("aam", "train_aam", hparams_file,
                       {"train_csv": train_csv, "init_from": init_from, "schedule": schedule})
        return self.planned_epochs("aam", hparams_file, train_csv)

    def fine_tune(self, name: str, init_from: str, train_csv: str, folder: str) -> System:
        """AAM fine-tuning of ``init_from`` on the labels of ``train_csv``, within the budget."""
        hparams_file = self.presets["train_aam"]
        epochs = self.aam_epochs(init_from, train_csv)
        self.stages.train_aam(hparams_file, train_csv, init_from, folder, {"number_of_epochs": epochs},
                              name=f"{name} fine-tuning")
        return self.trained_system(name, folder, epochs, hparams_file, train_csv)

    def pseudo_label_rounds(self, start: System) -> List[System]:
        """The pipeline YAML's rounds (its clustering, its gate setting) of pseudo-labelling the
        pretraining pool from ``start`` then AAM fine-tuning on the labels, each fine-tuning within
        the budget; into ``rounds/round<k>/``."""
        rounds = BudgetedRounds(self, self.folder("rounds"))
        return [rounds.system(round_) for round_ in rounds.run(self.args.rounds, start.pretrained)]

    # ----------------------------------------------------------- evaluation
    def metrics(self, system: System, evaluated_with: Optional[System] = None) -> Dict:
        """The table row of ``system``; a baseline's metrics are read from ``evaluated_with``'s folder."""
        owner = evaluated_with or system
        row = {"system": DISPLAY_NAMES.get(system.name, system.name)}
        for eval_set in EVAL_SETS:
            raw = read_verification(self.eval_folder(owner, eval_set), owner.name)[system.name]["raw"]
            row[f"EER_{eval_set}"] = raw["EER"]
            row[f"minDCF_{eval_set}"] = raw["minDCF_0.01"]
        emotion = read_emotion(self.eval_folder(owner, "emotion"), owner.name)[system.name]
        row["micro_f1"], row["micro_f1_std"] = emotion["micro_f1"], emotion["micro_f1_std"]
        return row

    def embeddings(self, system: System) -> EmbeddingTable:
        """The RAVDESS test embeddings cached by the verification of ``system``."""
        return EmbeddingTable.load(embeddings_cache(self.eval_folder(system, "ravdess"), system.name, "test"))


# --------------------------------------------------------------------- report
def systems_table(rows: Sequence[Dict], systems: Dict[str, System]) -> List[str]:
    """The main results table: one row per system."""
    header = ["system", "train min (epochs, steps)",
              *(column for label in EVAL_SETS.values() for column in (f"EER % {label}", "minDCF(0.01)")),
              "emotion micro-F1 % (± std, 4 folds)", "pseudo-labels: clusters, kept %, NMI"]
    body = []
    for row in rows:
        system = systems.get(row["system"])  # None for the baselines
        cost = "-"
        if system and system.epochs:
            cost = f"{system.train_minutes:.1f} ({system.epochs}, {system.steps})" if system.train_minutes else \
                f"- ({system.epochs}, {system.steps})"
        clustering = "-"
        if system and system.clustering:
            report = system.clustering
            nmi = (report.get("metrics") or {}).get("kept", {}).get("nmi")
            clustering = (f"{report['clusters_after_filtering']}, {100 * report['kept_fraction']:.0f}%, "
                          + (f"{nmi:.2f}" if nmi is not None else "-"))
        body.append([
            row["system"], cost,
            *(cell for eval_set in EVAL_SETS
              for cell in (f"{row[f'EER_{eval_set}']:.2f}", f"{row[f'minDCF_{eval_set}']:.3f}")),
            f"{row['micro_f1']:.1f} ± {row['micro_f1_std']:.1f}", clustering,
        ])
    return markdown_table(header, body)


def usage_table(stage_usage: Dict[str, Dict[str, float]]) -> List[str]:
    """Wall time and peak memory of every recipe run of the study."""
    return markdown_table(
        ["stage", "wall min", "peak RSS GB"],
        [[name, f"{usage['minutes']:.2f}", f"{usage['peak_rss_gb']:.2f}"] for name, usage in stage_usage.items()],
    )


# ----------------------------------------------------------------------- main
def speed_and_scale(args: argparse.Namespace) -> Dict[str, List[str]]:
    """The speed and scale measurements, each as Markdown lines (run before any training)."""
    sections = {"prepare": [prepare_shared.measure(SHARED_DATA)]}
    sections["dino_speed"] = dino_speed.measure(dino_speed.build_parser().parse_args(["--steps", "8"]))
    sections["extraction_speed"] = extraction_speed.measure(extraction_speed.build_parser().parse_args(["--limit", "240"]))
    sections["scoring_speed"] = scoring_speed.measure(scoring_speed.build_parser().parse_args([]))
    clustering: List[str] = []
    for n in args.scale_sizes:
        options = ["--n", str(n), "--clusters", str(min(10_000, n // 10)), "--backends", "faiss", "sklearn",
                   "--pipeline-backends", *(["faiss"] if n <= 100_000 else [])]
        clustering += cluster_scale.measure_all(cluster_scale.build_parser().parse_args(options))
    sections["cluster_scale"] = clustering
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=5.0, help="minutes per training run (default 5: ~1 h in all)")
    parser.add_argument("--rounds", type=int, default=2, help="pseudo-label rounds")
    parser.add_argument("--output_folder", default=os.path.join(REPO, "bench", "work", "study"))
    parser.add_argument("--scale_sizes", type=int, nargs="*", default=[100_000, 1_000_000],
                        help="embedding counts of the clustering scale test")
    parser.add_argument("--skip_speed", action="store_true", help="no speed/scale section (keeps the old one)")
    parser.add_argument("--gpu", action="store_true", help="full-size presets on cuda:0")
    parser.add_argument("--fresh", action="store_true", help="delete --output_folder first")
    args = parser.parse_args()
    command = command_line("run_all")
    if args.fresh and os.path.isdir(args.output_folder):
        shutil.rmtree(args.output_folder)
    started = time.perf_counter()
    study = MainStudy(args)
    sections = {} if args.skip_speed else speed_and_scale(args)
    speed_minutes = (time.perf_counter() - started) / 60

    study.data = prepare_study_data(SHARED_DATA, study.folder("data"))
    contrastive = study.train_ssl("contrastive", study.presets["contrastive_ecapa"])
    dino = study.train_ssl("DINO", study.presets["dino_ecapa"])
    pretrained = study.train_pipeline_pretraining()
    rounds = study.pseudo_label_rounds(pretrained)
    upper = study.fine_tune("AAM on true labels", pretrained.pretrained, study.data.pretrain_csv,
                            study.folder("aam_true_labels"))
    trained = [contrastive, dino, pretrained, *rounds, upper]
    study.evaluate(pretrained, BASELINES)
    for system in trained:
        if system is not pretrained:
            study.evaluate(system, ())

    baselines = [System(name, "") for name in BASELINES]
    rows = [study.metrics(system, evaluated_with=pretrained) for system in baselines]
    rows += [study.metrics(system) for system in trained]
    by_name = {system.name: system for system in trained}
    figures = {
        f"det_{eval_set}": det_figure(
            {**{DISPLAY_NAMES[b.name]: study.score_file(b, eval_set, pretrained) for b in baselines},
             **{s.name: study.score_file(s, eval_set) for s in trained}},
            os.path.join(FIGURES, f"study_det_{eval_set}.png"),
            f"{label} (budget {args.budget:g} min per run)",
        )
        for eval_set, label in EVAL_SETS.items()
    }
    ravdess_rows = read_manifest(study.data.ravdess_test_csv)
    mfcc = EmbeddingTable([row["ID"] for row in ravdess_rows], mfcc_statistics(ravdess_rows, standardize=True))
    figures["embedding_map"] = embedding_map(
        {"MFCC statistics": mfcc, pretrained.name: study.embeddings(pretrained),
         **({rounds[-1].name: study.embeddings(rounds[-1])} if rounds else {})},
        ravdess_rows, os.path.join(FIGURES, "study_embedding_map.png"),
    )
    total_minutes = (time.perf_counter() - started) / 60
    seeds = {name: plain_values(path).get("seed") for name, path in study.presets.items() if name != "pipeline"}
    header = [
        f"Command: `{command}`  ",
        f"Date: {datetime.date.today().isoformat()}; machine: {machine()}  ",
        f"Wall time of this invocation: {total_minutes:.0f} min ({speed_minutes:.0f} min speed and scale). "
        f"Budget {args.budget:g} min per training run, planned from measured step times "
        + ", ".join(f"{key} {value:.2f} s" for key, value in study.step_seconds.items()) + ".  ",
        "Seeds: " + ", ".join(f"{name} {seed}" for name, seed in seeds.items())
        + "; verification/emotion 0. Evaluation speakers and files asserted absent from the "
        "pretraining pool and from every pseudo-label manifest.",
        "",
        *(f"- {name}: {text}" for name, text in describe(study.data).items()),
        "",
    ]
    blocks = {
        "study": "\n".join(header + systems_table(rows, by_name)),
        "figures": "\n".join(
            f"![{name}]({os.path.relpath(path, REPO)})" for name, path in figures.items()
        ),
        "stages": "\n".join(usage_table(study.stage_usage)),
        **{name: "\n".join(lines) for name, lines in sections.items()},
    }
    with open(os.path.join(RESULTS, "study.md"), "w", encoding="utf-8") as fout:
        fout.write("\n\n".join(f"## {name}\n\n{content}" for name, content in blocks.items()) + "\n")
    write_benchmarks(blocks)
    print(blocks["study"])


if __name__ == "__main__":
    main()
