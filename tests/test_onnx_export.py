"""sbdino-export-onnx: the graph gives EncoderClassifier.encode_batch's embeddings, for one clip and
for a padded batch with relative lengths, with the model's rate and threshold in its metadata."""
import numpy as np
import pytest
import torch

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from conftest import run_cli  # noqa: E402

from speechbrain_dino.data.audio import load_audio  # noqa: E402
from speechbrain_dino.inference.embeddings import load_encoder  # noqa: E402
from speechbrain_dino.inference.export import Architecture, DecisionThreshold, export_pretrained  # noqa: E402
from speechbrain_dino.inference.onnx_export import main as export_main  # noqa: E402
from speechbrain_dino.synthetic.corpus import generate_corpus  # noqa: E402

ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
SMALL_ECAPA = dict(input_size=40, channels=[32, 32, 32, 32, 96], lin_neurons=24, attention_channels=16,
                   se_channels=16, res2net_scale=4)
ARCHITECTURE = Architecture(ECAPA, SMALL_ECAPA, {"n_mels": 40})


def cosine(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small encoder folder with a recorded threshold, its ONNX export (by the command line) and
    four speech-like clips of 0.05 to 3 s."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    pretrained = export_pretrained(folder / "pretrained", ARCHITECTURE.build_encoder().eval(), ARCHITECTURE,
                                   threshold=DecisionThreshold(0.625, "validation_trials"))
    export_main([str(pretrained), str(folder / "out" / "encoder.onnx")])
    rows = generate_corpus(folder / "audio", speakers=2, utterances=2, emotions=1, seed=4, min_seconds=1.0,
                           max_seconds=3.0)
    clips = [load_audio(row["wav"]) for row in rows]
    clips[0] = clips[0][:800]  # 0.05 s: shorter than the encoder's shortest input, padded inside the graph
    session = onnxruntime.InferenceSession(str(folder / "out" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    return pretrained, session, clips


def test_one_clip_gives_encode_batchs_embedding(exported):
    pretrained, session, clips = exported
    encoder = load_encoder(pretrained)
    for clip in clips[1:]:
        with torch.no_grad():
            expected = encoder.encode_batch(clip[None], torch.ones(1)).reshape(-1).numpy()
        got = session.run(None, {"wavs": clip[None].numpy(), "lengths": np.ones(1, np.float32)})[0]
        assert got.shape == (1, 24) and cosine(got[0], expected) >= 0.99999


def test_a_padded_batch_of_different_lengths_gives_encode_batchs_embeddings(exported):
    pretrained, session, clips = exported
    encoder = load_encoder(pretrained)
    batch_clips = clips[1:]
    longest = max(len(clip) for clip in batch_clips)
    assert len({len(clip) for clip in batch_clips}) == len(batch_clips)  # really different lengths
    wavs = torch.stack([torch.nn.functional.pad(clip, (0, longest - len(clip))) for clip in batch_clips])
    lengths = torch.tensor([len(clip) / longest for clip in batch_clips])
    got = session.run(None, {"wavs": wavs.numpy(), "lengths": lengths.numpy()})[0]
    with torch.no_grad():
        expected = encoder.encode_batch(wavs, lengths).squeeze(1).numpy()
    assert cosine(got, expected).min() >= 0.99999
    # the relative lengths reach the normalisation and the pooling: ignoring them changes the short rows
    ignored = session.run(None, {"wavs": wavs.numpy(), "lengths": np.ones(len(batch_clips), np.float32)})[0]
    assert cosine(ignored, expected).min() < 0.999


def test_a_clip_shorter_than_the_encoders_minimum_is_padded_inside_the_graph(exported):
    pretrained, session, clips = exported
    encoder = load_encoder(pretrained)
    short = clips[0][None]
    got = session.run(None, {"wavs": short.numpy(), "lengths": np.ones(1, np.float32)})[0]
    with torch.no_grad():
        expected = encoder.encode_batch(short, torch.ones(1)).reshape(-1).numpy()
    assert cosine(got[0], expected) >= 0.99999


def test_the_metadata_holds_the_rate_the_size_and_the_threshold_with_its_source(exported):
    _, session, _ = exported
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["sample_rate"] == "16000" and metadata["embedding_size"] == "24"
    assert float(metadata["verification_threshold"]) == 0.625
    assert metadata["threshold_source"] == "validation_trials"
    assert [node.name for node in session.get_inputs()] == ["wavs", "lengths"]


def test_a_folder_that_is_not_an_encoder_is_one_error_line(tmp_path, capsys):
    code, _, err = run_cli(export_main, capsys, tmp_path / "nowhere", tmp_path / "x.onnx")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "not a pretrained encoder folder" in lines[0]
