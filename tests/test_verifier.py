"""SpeakerVerifier: SpeechBrain's SpeakerRecognition deciding at the folder's recorded threshold."""
import pytest
import torch

import speechbrain_dino
from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.export import Architecture, DecisionThreshold, export_pretrained, recorded_threshold

ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
SMALL_ECAPA = dict(input_size=40, channels=[32, 32, 32, 32, 96], lin_neurons=32, attention_channels=16,
                   se_channels=16, res2net_scale=4)
ARCHITECTURE = Architecture(ECAPA, SMALL_ECAPA, {"n_mels": 40})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """One encoder exported three times (no threshold; one just below and one just above the
    score of a pair of files), and that pair."""
    from conftest import write_tone

    folder = tmp_path_factory.mktemp("verifier")
    files = [write_tone(str(folder / f"{name}.wav"), seconds=seconds, seed=seed)
             for name, seconds, seed in (("a", 1.0, 1), ("b", 1.5, 2))]
    torch.manual_seed(0)
    encoder = ARCHITECTURE.build_encoder().eval()
    plain = export_pretrained(folder / "plain", encoder, ARCHITECTURE)
    score = float(speechbrain_dino.SpeakerVerifier.from_hparams(source=plain).verify_files(*files, threshold=0.0)[0])
    folders = {"plain": plain}
    for name, value in (("below", score - 0.001), ("above", score + 0.001)):
        folders[name] = export_pretrained(folder / name, encoder, ARCHITECTURE,
                                          threshold=DecisionThreshold(value, "estimated_from_training_clusters"))
    return folders, files, score


def test_it_is_speechbrains_speaker_recognition_loaded_the_same_way(setup):
    from speechbrain.inference.speaker import SpeakerRecognition

    folders, files, score = setup
    verifier = speechbrain_dino.SpeakerVerifier.from_hparams(source=folders["below"])
    assert isinstance(verifier, SpeakerRecognition)
    reference = SpeakerRecognition.from_hparams(source=folders["below"], savedir=str(folders["below"]) + "-sd")
    assert float(verifier.verify_files(*files)[0]) == pytest.approx(float(reference.verify_files(*files)[0]), abs=1e-6)
    assert float(verifier.verify_files(*files)[0]) == pytest.approx(score, abs=1e-6)


def test_the_recorded_threshold_decides_files_and_batches(setup):
    folders, files, score = setup
    assert score > 0.25  # SpeechBrain's own default would accept the pair in both folders
    for name, expected in (("below", True), ("above", False)):
        verifier = speechbrain_dino.SpeakerVerifier.from_hparams(source=folders[name])
        assert verifier.recorded_threshold.value == pytest.approx(recorded_threshold(folders[name]).value)
        assert verifier.recorded_threshold.source == "estimated_from_training_clusters"
        _, decision = verifier.verify_files(*files)
        assert bool(decision) is expected, name
        wavs = [verifier.load_audio(path).unsqueeze(0) for path in files]
        _, decisions = verifier.verify_batch(*wavs)
        assert bool(decisions.reshape(-1)[0]) is expected, name


def test_an_explicit_threshold_overrides_the_recorded_one(setup):
    folders, files, score = setup
    verifier = speechbrain_dino.SpeakerVerifier.from_hparams(source=folders["below"])
    assert bool(verifier.verify_files(*files, threshold=score + 0.001)[1]) is False
    wavs = [verifier.load_audio(path).unsqueeze(0) for path in files]
    assert bool(verifier.verify_batch(*wavs, threshold=score - 0.5)[1].reshape(-1)[0]) is True
    plain = speechbrain_dino.SpeakerVerifier.from_hparams(source=folders["plain"])
    assert bool(plain.verify_files(*files, threshold=score + 0.001)[1]) is False


def test_without_a_threshold_it_stops_with_one_line_saying_how_to_get_one(setup):
    folders, files, _ = setup
    verifier = speechbrain_dino.SpeakerVerifier.from_hparams(source=folders["plain"])
    assert verifier.recorded_threshold is None
    for call in (lambda: verifier.verify_files(*files),
                 lambda: verifier.verify_batch(*(verifier.load_audio(path).unsqueeze(0) for path in files))):
        with pytest.raises(DataError) as error:
            call()
        message = str(error.value)
        assert "\n" not in message and "no decision threshold" in message and "threshold=" in message


def test_a_missing_folder_or_file_is_one_clear_error_without_the_network(setup, tmp_path):
    folders, files, _ = setup
    for source in (tmp_path / "nowhere", "speechbrain/spkrec-ecapa-voxceleb"):  # the latter: a hub id to SpeechBrain
        with pytest.raises(DataError, match="not a pretrained encoder folder"):
            speechbrain_dino.SpeakerVerifier.from_hparams(source=source)
    verifier = speechbrain_dino.SpeakerVerifier.from_hparams(source=folders["below"])
    with pytest.raises(DataError, match="no such audio file"):
        verifier.verify_files(files[0], tmp_path / "missing.wav")
