"""Options of the speech evaluators (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from selfsup.options import Options


class SpeechProbeOptions(Options):
    """A linear classifier on frozen features, scored on held-out data, with an MFCC baseline.

    ``target = "label"``: keyword classification; fitted on ``fit_data`` (training voices), scored
    on ``data`` (held-out voices), so it measures generalisation to unseen speakers.
    ``target = "speaker"``: voice identification. A classifier can only name voices it was
    fitted on, so either ``fit_data`` and ``data`` hold the same voices (utterance split), or
    ``split_within = true``: the utterances of ``data`` are divided (seeded, per voice) into a fit
    part and a scored part, and ``fit_data`` is not needed."""

    needs_fit_data: ClassVar[bool] = False  # depends on split_within: checked on the evaluator object

    target: Literal["label", "speaker"] = Field("label",
                                                description="Predict the keyword (label) or the voice (speaker).")
    layer_weighted: bool = Field(
        False, description="SUPERB-style: a learned softmax-weighted sum of every layer's mean-pooled states, trained "
                           "with the probe.")
    mfcc_baseline: bool = Field(True, description="Also report mfcc_accuracy: the same probe on mean+std pooled MFCCs.")
    split_within: bool = Field(False, description="Fit and score on disjoint utterances of data (split per voice); "
                                                  "fit_data unused.")
    within_fit_fraction: float = Field(0.5, gt=0, lt=1,
                                       description="split_within: share of every voice's utterances used for fitting.")
    standardize: bool = Field(True, description="Standardise features with the fit set's mean and std.")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty on the classifier weights.")
    max_iter: int = Field(200, ge=1, description="L-BFGS iterations (plain probe).")
    steps: int = Field(300, ge=1, description="Full-batch Adam steps (layer-weighted probe).")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate (layer-weighted probe).")
    n_mfcc: int = Field(13, ge=4, le=40,
                        description="MFCC coefficients of the baseline (plus deltas and delta-deltas).")
    fit_limit: int | None = Field(
        None, ge=1, description="Fit on at most this many utterances (a seeded draw spread evenly over the classes); "
                                "None: all of them. Bounds the evaluation's cost on large fit sets.")
    noise_snr_db: tuple[float, float] | None = Field(
        None, description="A harder condition: add noise at an SNR drawn uniformly from this (low, high) dB range to "
                          "every probe utterance, fitted and scored, for the backbone and the MFCC baseline alike "
                          "(seeded per utterance, the same at every evaluation). None: clean audio.")
    noise_color: Literal["white", "pink"] = Field("white", description="Spectrum of the noise_snr_db noise.")
    seed: int = Field(0, ge=0, description="Seeds the split_within division, the fit_limit draw and the noise.")

    @field_validator("noise_snr_db")
    @classmethod
    def _snr(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (-30 <= v[0] <= v[1] <= 100):
            raise ValueError(f"noise_snr_db must be (low, high) dB with -30 <= low <= high <= 100, got {v}")
        return v
