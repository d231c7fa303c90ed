"""The preparation command line: in process (options, report), and in a subprocess (exit status)."""

from __future__ import annotations

import json
import subprocess
import sys

from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.prepare.__main__ import build_parser, main


def _run(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "speechbrain_dino.prepare", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_manifest_and_reports(tmp_path, tone_writer, capsys):
    tone_writer(str(tmp_path / "rav" / "Actor_03" / "03-01-04-01-02-01-03.wav"), 0.3)
    tone_writer(str(tmp_path / "rav" / "Actor_03" / "03-01-05-01-02-01-03.wav"), 0.3)
    status = main(
        [
            "ravdess",
            "--data_folder",
            str(tmp_path / "rav"),
            "--save_csv",
            str(tmp_path / "out.csv"),
            "--emotions",
            "sad",
            "--strict",
        ]
    )
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["utterances"], report["skipped"]) == (1, {"label_not_kept": 1})
    assert [
        (row["ID"], row["spk_id"], row["emotion"]) for row in read_manifest(tmp_path / "out.csv")
    ] == [("03-01-04-01-02-01-03", "03", "sad")]


def test_cli_missing_folder_is_one_line_and_exit_2(tmp_path):
    result = _run(
        "librispeech", "--data_folder", tmp_path / "absent", "--save_csv", tmp_path / "out.csv"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'absent'}: data folder not found"
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_options_left_out_take_the_function_defaults(tmp_path, capsys):
    options = vars(
        build_parser().parse_args(
            ["iemocap", "--data_folder", "d", "--save_csv", "s", "--keep_excited", "--resample"]
        )
    )
    assert {
        key: options[key] for key in ("data_folder", "save_csv", "merge_excited", "resample")
    } == {
        "data_folder": "d",
        "save_csv": "s",
        "merge_excited": False,
        "resample": True,
    }
    assert (
        "emotions" not in options
        and "min_duration" not in options
        and "skip_invalid" not in options
    )
    assert (
        main(
            [
                "folder",
                "--data_folder",
                str(tmp_path / "x"),
                "--save_csv",
                str(tmp_path / "y.csv"),
                "--speaker_regex",
                "(?P<spk>",
            ]
        )
        == 2
    )
    assert "error: speaker_regex" in capsys.readouterr().err
