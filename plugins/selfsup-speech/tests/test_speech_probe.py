"""speech_probe: conformance, a backbone that knows the answer scores 1, the within-source split,
the speaker probe's rules, the layer-weighted probe and the MFCC baseline."""

from __future__ import annotations

import pytest
import speech_models_support as support
import torch
from speech_models_support import synth_cache  # noqa: F401  (fixture)
from torch import nn

from selfsup.components import EvalContext
from selfsup.testing import EvaluatorConformance
from selfsup_speech.evaluators.options import SpeechProbeOptions
from selfsup_speech.evaluators.probe import SpeechProbe, balanced_subset, within_split

pytestmark = pytest.mark.usefixtures("synth_cache")


class Oracle(nn.Module):
    """Features that encode the batch's label (or speaker) exactly, plus per-layer states."""

    output_dim = 8

    def __init__(self, key="label"):
        super().__init__()
        self.key = key
        self.scale = nn.Parameter(torch.ones(()))

    def embed(self, batch):
        return nn.functional.one_hot(batch[self.key], 8).float() * self.scale

    def padding_mask(self, batch):
        return torch.zeros(len(batch[self.key]), 3, dtype=torch.bool)

    def layers(self, batch):  # layer 0 is noise, layer 1 the answer
        g = torch.Generator().manual_seed(int(batch[self.key].sum()))
        noise = torch.randn(len(batch[self.key]), 3, 8, generator=g)
        return [noise, self.embed(batch)[:, None].expand(-1, 3, -1)]


def evaluate(options, data, fit=None, backbone=None, tmp_path=None):
    probe = SpeechProbe(SpeechProbeOptions(**options))
    context = EvalContext(name="probe", step=0, seed=0, device=torch.device("cpu"), backbone=backbone or Oracle(),
                          data=data, fit_data=fit, run_dir=tmp_path, batch_size=16, features=None)
    return probe, probe.evaluate(context)


@pytest.fixture(scope="module")
def splits():
    return support.build("data_source", *support.SYNTH_TRAIN), support.build("data_source", *support.SYNTH_VAL)


class TestSpeechProbeConformance(EvaluatorConformance):
    evaluator = "speech_probe"
    data = support.SYNTH_VAL
    fit_data = support.SYNTH_TRAIN
    backbone = ("wav2vec2_encoder", support.W2V_SMALL)
    bad_options = [{"target": "word"}, {"within_fit_fraction": 1.0}, {"max_iter": 0}]
    # the suite's few utterances: small changes leave the accuracies as they are
    option_variants = {"max_iter": 1, "weight_decay": 100.0}
    inert_options = {
        "n_mfcc": "the MFCC baseline scores 1.0 on the suite's 6 held-out utterances with 4, 13 or 40 coefficients",
        "standardize": "the probe scores 5 of the suite's 6 held-out utterances with and without it",
        "within_fit_fraction": "used only with split_within (TestLayerWeightedSpeakerProbeConformance varies it)",
        "steps": "layer-weighted probe only (TestLayerWeightedSpeakerProbeConformance varies it)",
        "lr": "layer-weighted probe only (TestLayerWeightedSpeakerProbeConformance varies it)",
        "seed": "seeds split_within, fit_limit and noise_snr_db, none of which this suite uses",
        "noise_color": "used only with noise_snr_db, which the suite leaves unset",
    }


class TestLayerWeightedSpeakerProbeConformance(EvaluatorConformance):
    evaluator = "speech_probe"
    evaluator_options = {"target": "speaker", "split_within": True, "layer_weighted": True, "steps": 20}
    data = support.SYNTH_TRAIN
    backbone = ("logmel_encoder", support.LOGMEL_SMALL)
    option_variants = {"n_mfcc": 4, "fit_limit": 3}
    inert_options = {"max_iter": "plain (L-BFGS) probe only; the layer-weighted one takes Adam steps",
                     "noise_color": "used only with noise_snr_db, which the suite leaves unset"}


def test_a_backbone_that_knows_the_keyword_scores_1_and_mfcc_is_reported(splits):
    train, val = splits
    _, metrics = evaluate({}, val, train)
    assert metrics["accuracy"] == 1.0 and metrics["fit_accuracy"] == 1.0
    assert 0.0 <= metrics["mfcc_accuracy"] <= 1.0 and metrics["chance"] == pytest.approx(1 / 3)
    _, without = evaluate({"mfcc_baseline": False}, val, train)
    assert "mfcc_accuracy" not in without


def test_mfcc_baseline_beats_chance_on_keywords(splits):
    train, val = splits
    _, metrics = evaluate({}, val, train, backbone=Oracle())
    assert metrics["mfcc_accuracy"] > metrics["chance"]


def test_within_split_divides_every_class():
    targets = torch.tensor([0] * 5 + [1] * 4 + [2] * 1)
    fit, scored = within_split(targets, 0.5, seed=0)
    assert set(fit.tolist()).isdisjoint(scored.tolist()) and len(fit) + len(scored) == 10
    for c in (0, 1):
        assert (targets[fit] == c).any() and (targets[scored] == c).any()
    assert (targets[fit] == 2).sum() == 1 and not (targets[scored] == 2).any()  # a lone item is fitted on
    again, _ = within_split(targets, 0.5, seed=0)
    assert torch.equal(fit, again)


def test_speaker_probe_on_disjoint_voices_is_refused_and_split_within_works(splits):
    train, val = splits
    with pytest.raises(ValueError, match="share no voice"):
        evaluate({"target": "speaker"}, val, train, backbone=Oracle("speaker"))
    probe, metrics = evaluate({"target": "speaker", "split_within": True}, train, None, backbone=Oracle("speaker"))
    assert probe.needs_fit_data is False and metrics["accuracy"] == 1.0
    assert metrics["chance"] == pytest.approx(1 / 3)  # 3 training voices
    with pytest.raises(ValueError, match="needs fit_data"):
        evaluate({}, val, None)


def test_layer_weighted_probe_learns_to_weight_the_informative_layer(splits):
    train, val = splits
    _, metrics = evaluate({"layer_weighted": True, "steps": 200, "lr": 0.05}, val, train)
    assert metrics["accuracy"] == 1.0
    assert metrics["layer_weight_0"] + metrics["layer_weight_1"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["layer_weight_1"] > metrics["layer_weight_0"]


def test_options_need_fit_data_only_without_split_within():
    assert SpeechProbe(SpeechProbeOptions()).needs_fit_data is True
    assert SpeechProbe(SpeechProbeOptions(split_within=True)).needs_fit_data is False


def test_balanced_subset_spreads_over_classes_and_is_seeded():
    targets = torch.tensor([0] * 10 + [1] * 6 + [2] * 2)
    keep = balanced_subset(targets, 9, seed=0)
    assert keep.tolist() == sorted(keep.tolist()) and len(set(keep.tolist())) == 9
    counts = torch.bincount(targets[keep], minlength=3).tolist()
    assert sorted(counts[:2]) == [3, 4] and counts[2] == 2  # round-robin; 2 of class 2 is all there is
    assert torch.equal(keep, balanced_subset(targets, 9, seed=0))
    assert not torch.equal(keep, balanced_subset(targets, 9, seed=1))
    assert balanced_subset(targets, 100, seed=0).tolist() == list(range(18))


def test_fit_limit_fits_on_a_balanced_subset(splits):
    train, val = splits
    probe, metrics = evaluate({"fit_limit": 6}, val, train)
    fit = probe.prepared(train, "fit")
    assert len(fit) == 6 and sorted(s["label"] for s in fit) == [0, 0, 1, 1, 2, 2]
    assert len(probe.prepared(val, "data")) == len(val)  # the scored set is never cut
    assert metrics["accuracy"] == 1.0


def test_noise_condition_is_seeded_and_applies_to_the_mfcc_baseline_too(splits, monkeypatch):
    train, val = splits
    options = {"noise_snr_db": (0.0, 10.0)}
    probe, metrics = evaluate(options, val, train)
    noisy, clean = probe.prepared(val, "data")[0]["audio"], val[0]["audio"]
    assert noisy.shape == clean.shape and not torch.equal(noisy, clean)
    added = noisy * (clean.abs().max() / noisy.abs().max()) - clean
    snr = 10 * torch.log10(clean.pow(2).mean() / added.pow(2).mean())
    assert -1.0 < snr < 11.0  # within the range (the mixture may have been scaled down as a whole)
    again, _ = evaluate(options, val, train)
    assert torch.equal(again.prepared(val, "data")[0]["audio"], noisy)  # the same noise at every evaluation
    assert not torch.equal(again.prepared(train, "fit")[0]["audio"], train[0]["audio"])
    _, clean_metrics = evaluate({}, val, train)
    assert "mfcc_accuracy" in metrics and metrics["mfcc_accuracy"] <= clean_metrics["mfcc_accuracy"] + 0.1
    with pytest.raises(ValueError):
        SpeechProbeOptions(noise_snr_db=(10.0, 0.0))


def test_mfcc_statistics_are_computed_once_per_data(splits, monkeypatch):
    import selfsup_speech.evaluators.probe as probe_module

    train, val = splits
    calls = []
    real = probe_module.mfcc_statistics
    monkeypatch.setattr(probe_module, "mfcc_statistics",
                        lambda samples, **kw: calls.append(len(samples)) or real(samples, **kw))
    monkeypatch.setattr(probe_module, "_MFCC_CACHE", probe_module.OrderedDict())
    first = evaluate({"n_mfcc": 12}, val, train)[1]["mfcc_accuracy"]
    assert calls == [len(val), len(train)]
    rebuilt = support.build("data_source", *support.SYNTH_VAL), support.build("data_source", *support.SYNTH_TRAIN)
    assert evaluate({"n_mfcc": 12}, rebuilt[0], rebuilt[1])[1]["mfcc_accuracy"] == first  # a new run, same data
    assert calls == [len(val), len(train)]
