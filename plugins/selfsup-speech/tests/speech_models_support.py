"""Shared pieces of the model tests (backbones, tasks, probe): a tiny synthesized set, a
fixed-length test source (the conformance suites batch with ``default_collate``), small
component settings and a one-thread fixture."""

from __future__ import annotations

import math

import pytest
import torch

import selfsup
from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager

#: 3 keywords x 5 voices x 2 utterances; 1 voice for val, 1 for test (about 3 s to synthesize).
SMALL_SYNTH = {"words": ["yes", "no", "up"],
               "voices": ["en-us+m1", "en+f2", "en-029+m3", "en-gb-scotland+f4", "en-us-nyc+m1"],
               "utterances_per_pair": 2, "val_voices": 1, "test_voices": 1, "workers": 1}
SYNTH_TRAIN = ("synth_speech", {**SMALL_SYNTH, "split": "train"})
SYNTH_VAL = ("synth_speech", {**SMALL_SYNTH, "split": "val"})
TONES = ("speech_test_tones", {})

W2V_SMALL = {"conv_layers": [[32, 10, 5], [32, 8, 4], [32, 4, 4], [32, 4, 2], [32, 4, 2]], "embed_dim": 32,
             "layers": 2, "heads": 2, "ffn_dim": 64, "pos_conv_kernel": 8, "pos_conv_groups": 4}
LOGMEL_SMALL = {"n_mels": 20, "hidden_dim": 32, "layers": 2, "heads": 2, "ffn_dim": 64}


@pytest.fixture(scope="module")
def synth_cache(tmp_path_factory):
    """Synthesized sets go to a fresh cache for the module (never the user's ~/.cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SELFSUP_CACHE_DIR", str(tmp_path_factory.mktemp("speech-cache")))
        yield


#: End-to-end runs of the quickstart recipes, shrunk: 2 utterances per (word, voice) pair (720
#: training clips, 120 scored ones from the 3 held-out voices, generated once per test session
#: into a shared cache, see e2e_cache) and a smaller conv feature encoder and transformer.
E2E_DATA = [f"data.{split}.options.utterances_per_pair=2" for split in ("train", "val")]
E2E_W2V_ENCODER = ["backbones.encoder.options.conv_layers=[[64,10,5],[64,8,4],[64,4,4],[64,4,2],[64,4,2]]",
                   "backbones.encoder.options.embed_dim=64", "backbones.encoder.options.ffn_dim=128",
                   "backbones.encoder.options.layers=2"]


@pytest.fixture(scope="module")
def e2e_cache(tmp_path_factory):
    """The end-to-end tests' synthesized set: one cache for the whole session (shared by the test
    modules), never the user's ~/.cache."""
    root = tmp_path_factory.getbasetemp() / "speech-e2e-cache"
    root.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SELFSUP_CACHE_DIR", str(root))
        yield root


@pytest.fixture
def one_thread():
    """One torch thread for end-to-end runs: the machine's 2 cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(kind, name, options, **context):
    comp = get_plugin_manager().registry.get(kind, name)
    assert comp is not None, f"no {kind} {name!r}"
    return comp.build(options, BuildContext(name=name, **context))


class Tones:
    """Fixed-length (0.5 s, 16 kHz) chirps: a label per pitch, a speaker per amplitude."""

    sample_rate = 16000

    def __init__(self, n: int = 12):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        t = torch.arange(8000) / 16000.0
        f0 = 200.0 + 150.0 * (i % 3)
        audio = (0.2 + 0.2 * (i % 2)) * torch.sin(2 * math.pi * (f0 + 200.0 * t) * t) + 0.01 * torch.cos(i + t * 900.0)
        return {"audio": audio.float(), "label": i % 3, "speaker": i % 2}

    def collate(self, samples):
        from selfsup_speech.data.collate import pad_audio

        return pad_audio(samples)


@selfsup.hookimpl
def register_data_sources(register):
    register("speech_test_tones", lambda options, context: Tones(), summary="Fixed-length test chirps.")
