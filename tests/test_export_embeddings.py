"""pretrained/ export: loads offline in a fresh process and matches the project's extraction."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.embeddings import EmbeddingTable, extract_embeddings, plan_segments
from speechbrain_dino.inference.export import Architecture, export_pretrained

ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
SMALL_ECAPA = dict(
    input_size=40, channels=[32, 32, 32, 32, 96], lin_neurons=48,
    attention_channels=16, se_channels=16, res2net_scale=4,
)
ARCHITECTURE = Architecture(ECAPA, SMALL_ECAPA, {"n_mels": 40})


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    folder = export_pretrained(tmp_path / "run" / "pretrained", ARCHITECTURE.build_encoder().eval(), ARCHITECTURE)
    return folder


@pytest.fixture
def rows(tmp_path, tone_writer):
    out = []
    for index, seconds in enumerate([2.0, 2.0, 1.5, 1.0]):
        wav = tone_writer(str(tmp_path / f"u{index}.wav"), seconds=seconds, seed=index)
        out.append({"ID": f"u{index}", "duration": str(seconds), "wav": wav, "spk_id": ""})
    return out


def test_pretrained_loads_offline_in_fresh_process_and_matches_extraction(exported, rows, tmp_path):
    table = extract_embeddings(exported, rows, progress=False)
    script = textwrap.dedent(
        f"""
        import json, socket, sys
        def no_network(*args, **kwargs):
            raise OSError("network disabled in this test")
        socket.socket.connect = no_network
        socket.create_connection = no_network
        import torch
        from speechbrain.inference.speaker import EncoderClassifier
        from speechbrain_dino.data.audio import load_audio
        enc = EncoderClassifier.from_hparams(source={str(exported)!r}, savedir={str(tmp_path / 'sd')!r})
        rows = json.loads(sys.argv[1])
        with torch.no_grad():
            out = [enc.encode_batch(load_audio(r["wav"]).unsqueeze(0)).squeeze().tolist() for r in rows]
        print(json.dumps(out))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(rows)],
        capture_output=True, text=True, timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    one_by_one = np.asarray(json.loads(result.stdout.strip().splitlines()[-1]), dtype=np.float32)
    # batches hold lengths within 10% of each other, so the 2 s pair is unpadded (identical)
    # and the others, alone in their batches, too
    np.testing.assert_allclose(table.vectors, one_by_one, rtol=1e-4, atol=1e-5)


def test_cache_is_reused_and_invalidated_by_model_change(exported, rows, tmp_path, monkeypatch):
    cache = tmp_path / "emb.npz"
    first = extract_embeddings(exported, rows, cache_path=cache, progress=False)
    import speechbrain_dino.inference.embeddings as embeddings

    def fail(*args, **kwargs):
        raise AssertionError("should have used the cache")

    monkeypatch.setattr(embeddings, "embed_segments", fail)
    again = extract_embeddings(exported, rows, cache_path=cache, progress=False)
    np.testing.assert_array_equal(first.vectors, again.vectors)
    monkeypatch.undo()
    export_pretrained(exported, ARCHITECTURE.build_encoder().eval(), ARCHITECTURE)  # different random weights
    changed = extract_embeddings(exported, rows, cache_path=cache, progress=False)
    assert not np.allclose(changed.vectors, first.vectors)
    assert EmbeddingTable.load(cache).vectors.shape == (4, 48)


def test_long_utterances_are_chunked_or_cropped():
    rows = [{"ID": "a", "duration": "10.0", "wav": "a.wav"}, {"ID": "b", "duration": "2.0", "wav": "b.wav"}]
    chunks = plan_segments(rows, 16000, chunk_seconds=3.0)
    assert [s["utt"] for s in chunks] == [0, 0, 0, 0, 1]
    assert sum(s["frames"] for s in chunks[:4]) == 160000 and chunks[4]["frames"] == -1
    cropped = plan_segments(rows, 16000, chunk_seconds=3.0, max_seconds=4.0, seed=3)
    assert len(cropped) == 2 and cropped[0]["frames"] == 64000
    assert 0 <= cropped[0]["start"] <= 160000 - 64000


def test_non_folder_source_is_rejected_before_any_hub_lookup(tmp_path):
    with pytest.raises(DataError, match="not a pretrained encoder folder"):
        extract_embeddings(tmp_path / "speechbrain/spkrec-ecapa-voxceleb", [{"ID": "a", "duration": "1", "wav": "x"}])


DISTRIBUTED_SCRIPT = """
import json, sys
import torch.distributed as dist
from speechbrain_dino.inference.embeddings import extract_embeddings
dist.init_process_group("gloo")
rows = json.loads(open(sys.argv[2]).read())
extract_embeddings(sys.argv[1], rows, cache_path=sys.argv[3], progress=False)
dist.barrier()  # nobody tears the group down while another rank still uses it
dist.destroy_process_group()
"""


def test_two_processes_embed_their_shards_and_rank_zero_merges(exported, rows, tmp_path):
    rows = rows * 1 + [dict(row, ID=row["ID"] + "b") for row in rows] + [dict(rows[0], ID="odd")]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "script.py").write_text(DISTRIBUTED_SCRIPT)
    cache = tmp_path / "ddp.npz"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
         str(tmp_path / "script.py"), str(exported), str(tmp_path / "rows.json"), str(cache)],
        capture_output=True, text=True, timeout=300, env=dict(__import__("os").environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    merged = EmbeddingTable.load(cache)
    single = extract_embeddings(exported, rows, progress=False)
    assert merged.ids == [row["ID"] for row in rows]
    np.testing.assert_allclose(merged.vectors, single.vectors, rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob("ddp.npz.rank*"))
