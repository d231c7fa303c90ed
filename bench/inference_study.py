"""Using a trained encoder, measured on real speech: thresholds without labels, sbdino-cluster, ONNX.

    python -m bench.inference_study --init NAME=PRETRAINED_DIR [--aam_epochs 8] [--demo DEMO_OUTPUT]

From an exported label-free encoder (``--init``, e.g. the contrastive baseline pretrained on the
study pool), on the study's sets (bench.study_data; evaluation speakers never trained on):

1. One pseudo-label round as the pipeline runs it (the first parts of
   ``speechbrain_dino.pipeline.rounds.RoundRunner`` with ``hparams/demo/pipeline.yaml``'s settings:
   ``hparams/demo/pseudo_label.yaml`` on the pool, ``hparams/demo/train_aam.yaml`` for
   ``--aam_epochs``, no validation trials), with 20% of the cluster members held out of the
   fine-tuning (the round gate's split): the round's export records the threshold estimated from
   its training clusters.
2. Thresholds, per encoder and held-out set: the EER threshold of the set's labelled trials against
   the label-free estimates: the round's recorded one, the same estimator on the held-out cluster
   members (unseen by the fine-tuning), and ``sbdino-cluster``'s from the set's own clusters.
3. ``sbdino-cluster`` on the held-out speechocean762 and RAVDESS speakers: clusters against the
   true speakers (NMI, ARI, purity).
4. ONNX: the round's encoder exported with ``sbdino-export-onnx``; cosine of onnxruntime's
   embeddings against ``EncoderClassifier.encode_batch`` on real clips of varied length (one at a
   time, and all as one zero-padded batch with relative lengths), and onnxruntime's CPU time
   against PyTorch's on the same clips, one clip per call, one thread each, in the same run.
5. With ``--demo``: the demo pipeline's round-1 export (its recorded estimate) against the EER
   threshold of the demo's held-out trials.

Writes ``bench/results/inference.md``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from bench.common import REPO, SHARED_DATA, write_result
from bench.study import GATE_SHARE, pipeline_round_settings
from bench.study_data import StudyData, assert_unseen, prepare_study_data
from speechbrain_dino.data.audio import load_audio
from speechbrain_dino.data.manifest import Row, read_manifest
from speechbrain_dino.inference.cluster import cluster_folder
from speechbrain_dino.inference.embeddings import extract_embeddings, load_encoder
from speechbrain_dino.inference.export import recorded_threshold
from speechbrain_dino.inference.onnx_export import export_onnx
from speechbrain_dino.inference.threshold_estimate import cluster_threshold
from speechbrain_dino.pipeline.rounds import Round, RoundRunner
from speechbrain_dino.pipeline.stages import StageRunner
from speechbrain_dino.verification.scoring import cosine_scores
from speechbrain_dino.verification.trials import read_trials
from speechbrain_dino.verification.validation import eer_point

#: Held-out sets: (name, StudyData manifest attribute, trials attribute).
SETS = [
    ("speechocean762 (25 speakers)", "speechocean_test_csv", "speechocean_trials"),
    ("RAVDESS 17-24", "ravdess_test_csv", "ravdess_trials"),
    ("LibriSpeech halves (59 speakers)", "librispeech_test_csv", "librispeech_trials"),
    ("dev: speechocean762 (17 speakers)", "dev_csv", "dev_trials"),
]
#: Sets sbdino-cluster is run on.
CLUSTER_SETS = SETS[:2]
#: Clips of the ONNX measurement: this many from each held-out set, spread over their durations.
ONNX_CLIPS_PER_SET = 12


@dataclass
class HeldOut:
    """A labelled trial list scored by one encoder: EER (%), its threshold, the scores and labels."""

    eer: float
    threshold: float
    scores: np.ndarray
    labels: np.ndarray

    def rates_at(self, threshold: float) -> str:
        """``"FA x% / miss y%"`` when deciding at ``threshold`` (accept above it)."""
        accepted = self.scores > threshold
        false_alarms = 100 * accepted[self.labels == 0].mean()
        misses = 100 * (~accepted[self.labels == 1]).mean()
        return f"FA {false_alarms:.1f}% / miss {misses:.1f}%"


def held_out(pretrained: str, csv_path: str, trials_path: str, cache: str) -> HeldOut:
    """A labelled trial list scored with ``pretrained``."""
    rows = read_manifest(csv_path)
    table = extract_embeddings(pretrained, rows, cache_path=cache, progress=False)
    trials = read_trials(trials_path, table.ids)
    eer, threshold = eer_point(table.vectors, trials)
    return HeldOut(100 * eer, threshold, cosine_scores(table.vectors, trials.enrol, trials.test), trials.labels)


def heldout_members_estimate(pretrained: str, heldout_csv: str, cache: str) -> float:
    """The cluster estimator on the round's held-out pseudo-labelled members, embedded by ``pretrained``."""
    rows = read_manifest(heldout_csv)
    table = extract_embeddings(pretrained, rows, cache_path=cache, progress=False)
    return cluster_threshold(table.vectors, [row["spk_id"] for row in rows]).value


def onnx_clips(data: StudyData) -> List[Row]:
    """Real clips of varied length: :data:`ONNX_CLIPS_PER_SET` per held-out set, evenly spaced in
    duration order (shortest to longest)."""
    clips = []
    for _, csv_attribute, _ in SETS:
        rows = sorted(read_manifest(getattr(data, csv_attribute)), key=lambda row: float(row["duration"]))
        clips += [rows[int(i)] for i in np.linspace(0, len(rows) - 1, ONNX_CLIPS_PER_SET)]
    return clips


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``[N, D]`` arrays."""
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def onnx_measurement(pretrained: str, onnx_path: str, clips: Sequence[Row], repeats: int = 3) -> List[str]:
    """Parity and speed of the ONNX export against ``EncoderClassifier.encode_batch`` (module docstring)."""
    import onnxruntime

    export_onnx(pretrained, onnx_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    encoder = load_encoder(pretrained)
    torch.set_num_threads(1)
    wavs = [load_audio(row["wav"], 16000) for row in clips]
    one = torch.ones(1)

    def run_torch(wav: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return encoder.encode_batch(wav[None], one).reshape(-1).numpy()

    def run_onnx(wav: torch.Tensor) -> np.ndarray:
        return session.run(None, {"wavs": wav[None].numpy(), "lengths": one.numpy()})[0][0]

    reference = np.stack([run_torch(wav) for wav in wavs])
    single = np.stack([run_onnx(wav) for wav in wavs])
    longest = max(len(wav) for wav in wavs)
    padded = torch.stack([torch.nn.functional.pad(wav, (0, longest - len(wav))) for wav in wavs])
    lengths = torch.tensor([len(wav) / longest for wav in wavs])
    batch = session.run(None, {"wavs": padded.numpy(), "lengths": lengths.numpy()})[0]
    with torch.no_grad():
        torch_padded = encoder.encode_batch(padded, lengths).squeeze(1).numpy()
    seconds = {"PyTorch": [], "onnxruntime": []}
    for _ in range(repeats):  # alternated, so that both see the same machine load
        for name, run in (("PyTorch", run_torch), ("onnxruntime", run_onnx)):
            start = time.perf_counter()
            for wav in wavs:
                run(wav)
            seconds[name].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in seconds.items()}
    audio = sum(len(wav) for wav in wavs) / 16000
    durations = [len(wav) / 16000 for wav in wavs]
    return [
        f"{len(wavs)} clips ({min(durations):.1f}-{max(durations):.1f} s, {audio:.0f} s of audio) from the four "
        f"held-out sets; model {os.path.getsize(onnx_path) / 1e6:.1f} MB.",
        "",
        "| comparison | cosine min | cosine mean |",
        "|---|---|---|",
        f"| onnxruntime vs encode_batch, one clip per call | {cosine(single, reference).min():.7f} | "
        f"{cosine(single, reference).mean():.7f} |",
        f"| onnxruntime vs encode_batch, the {len(wavs)} clips as one zero-padded batch with relative lengths | "
        f"{cosine(batch, torch_padded).min():.7f} | {cosine(batch, torch_padded).mean():.7f} |",
        f"| a padded batch's rows vs each clip alone (onnxruntime; SpeechBrain's encode_batch: "
        f"{cosine(torch_padded, reference).min():.6f} min) | {cosine(batch, reference).min():.6f} | "
        f"{cosine(batch, reference).mean():.6f} |",
        "",
        "| runtime (CPU, 1 thread, one clip per call) | s for all clips (best of "
        f"{repeats}) | real-time factor | ratio |",
        "|---|---|---|---|",
        *(f"| {name} | {best[name]:.2f} | {best[name] / audio:.4f} | {best[name] / best['PyTorch']:.2f} |"
          for name in ("PyTorch", "onnxruntime")),
    ]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init", required=True, help="NAME=PRETRAINED_DIR: the label-free encoder to start from")
    parser.add_argument("--aam_epochs", type=int, default=8)
    parser.add_argument("--output_folder", default=os.path.join(REPO, "bench", "work", "inference"))
    parser.add_argument("--demo", default=None, help="output folder of a demo pipeline run (its round1/)")
    args = parser.parse_args(argv)
    started = datetime.datetime.now()
    init_name, init_dir = args.init.split("=", 1)
    out = os.path.abspath(args.output_folder)
    data = prepare_study_data(SHARED_DATA, os.path.join(out, "data"))

    # 1. one pseudo-label round, 20% of the members held out of its fine-tuning (no gate verification)
    rounds = RoundRunner(StageRunner(), pipeline_round_settings(gate_share=GATE_SHARE, aam_overrides={}),
                         data.pretrain_csv, out, aam_overrides={"number_of_epochs": args.aam_epochs},
                         check_labels=lambda path: assert_unseen(path, data, labelled=False))
    round_ = Round(1, init_dir)
    rounds.cluster(round_)
    if not rounds.hold_out(round_):
        raise SystemExit("error: round 1's clusters are too small to hold members out")
    rounds.fine_tune(round_)
    split, round_dir = round_.split, round_.encoder
    encoders = {init_name: os.path.abspath(init_dir), "round 1": round_dir}
    recorded = recorded_threshold(round_dir)
    heldout_estimate = heldout_members_estimate(round_dir, split.heldout_csv, os.path.join(out, "round1", "heldout.npz"))

    # 2 and 3. thresholds and clusters per encoder and held-out set
    threshold_rows = ["| encoder | held-out set | EER % | EER threshold | at SpeechBrain's 0.25 | recorded estimate "
                      "(distance) | at the estimate | estimate on held-out members | sbdino-cluster estimate on the set |",
                      "|---|---|---|---|---|---|---|---|---|"]
    cluster_rows = ["| encoder | set | true speakers | clusters | outliers | NMI all | ARI all | purity all | NMI kept |",
                    "|---|---|---|---|---|---|---|---|---|"]
    for name, pretrained in encoders.items():
        for set_name, csv_attribute, trials_attribute in SETS:
            slug = f"{name.replace(' ', '')}_{csv_attribute}"
            scored = held_out(pretrained, getattr(data, csv_attribute), getattr(data, trials_attribute),
                              os.path.join(out, "emb", slug + ".npz"))
            cells = [name, set_name, f"{scored.eer:.2f}", f"{scored.threshold:.4f}", scored.rates_at(0.25)]
            if name == "round 1":
                cells += [f"{recorded.value:.4f} ({recorded.value - scored.threshold:+.4f})", scored.rates_at(recorded.value),
                          f"{heldout_estimate:.4f} ({heldout_estimate - scored.threshold:+.4f})"]
            else:
                cells += ["- (no round)", "-", "-"]
            if (set_name, csv_attribute, trials_attribute) in CLUSTER_SETS:
                summary = cluster_folder(getattr(data, csv_attribute), pretrained, os.path.join(out, "cluster", slug))
                estimate = summary["decision_threshold_estimate"]["value"]
                cells.append("-" if estimate is None else f"{estimate:.4f} ({estimate - scored.threshold:+.4f})")
                against = summary["against_spk_id"]
                speakers = len({row["spk_id"] for row in read_manifest(getattr(data, csv_attribute))})
                cluster_rows.append(
                    f"| {name} | {set_name} | {speakers} | {summary['clusters']} | {summary['outliers']} of {summary['files']} | "
                    f"{against['all_files']['nmi']:.3f} | {against['all_files']['ari']:.3f} | "
                    f"{against['all_files']['purity']:.3f} | {against['kept']['nmi']:.3f} |")
            else:
                cells.append("-")
            threshold_rows.append("| " + " | ".join(cells) + " |")

    # 4. ONNX
    onnx_lines = onnx_measurement(round_dir, os.path.join(out, "round1.onnx"), onnx_clips(data))

    # 5. the demo pipeline's round 1
    demo_lines: List[str] = []
    if args.demo:
        demo_round = os.path.join(args.demo, "round1", "aam", "pretrained")
        demo_recorded = recorded_threshold(demo_round)
        scored = held_out(demo_round, os.path.join(args.demo, "data", "test.csv"),
                          os.path.join(args.demo, "data", "trials.txt"), os.path.join(out, "emb", "demo.npz"))
        demo_lines = [
            "", "### Demo pipeline (synthetic corpus), round 1", "",
            f"Recorded estimate {demo_recorded.value:.4f} ({demo_recorded.details}); EER threshold of the demo's "
            f"held-out trials {scored.threshold:.4f} (EER {scored.eer:.2f}%): distance "
            f"{demo_recorded.value - scored.threshold:+.4f}; at the estimate {scored.rates_at(demo_recorded.value)}, "
            f"at 0.25 {scored.rates_at(0.25)}.",
        ]

    minutes = (datetime.datetime.now() - started).total_seconds() / 60
    lines = [
        f"Wall time {minutes:.0f} min (stages and embeddings that an earlier run of the same command finished "
        f"are reused). Encoders: `{init_name}` (label-free, no threshold recorded) and its "
        f"round 1 (pseudo-labels of the study pool, AAM for {args.aam_epochs} epochs on 80% of the kept members; "
        f"{GATE_SHARE:.0%} held out). The round's export records {recorded.value:.4f} "
        f"({recorded.source}: {recorded.details}).",
        "",
        "### Label-free thresholds against the held-out EER thresholds",
        "",
        *threshold_rows,
        "",
        "### sbdino-cluster on held-out speakers",
        "",
        *cluster_rows,
        "",
        "### ONNX export of the round-1 encoder",
        "",
        *onnx_lines,
        *demo_lines,
    ]
    shown = " ".join([f"--init {init_name}=<folder>", f"--aam_epochs {args.aam_epochs}"]
                     + (["--demo <folder>"] if args.demo else []))
    print(write_result("inference", f"python -m bench.inference_study {shown}", lines))


if __name__ == "__main__":
    main()
