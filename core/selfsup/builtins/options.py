"""Options of the core's built-in components (no torch import)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from selfsup.options import ExistingFile, Options


class TensorFileOptions(Options):
    path: ExistingFile = Field(description="A .npz, .npy or .safetensors file.")
    input_key: str = Field("input", description="Array that becomes the sample's 'input' (npz/safetensors).")
    label_key: str | None = Field("label", description="Array of integer labels, if present.")
    split: str = Field("all", pattern="^(all|train|val)$", description="All rows, or a (stratified) train/val split.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Fraction of the rows in the 'val' split.")
    split_seed: int = Field(0, ge=0, description="Seed of the split (independent of the run seed).")


class MLPOptions(Options):
    in_dim: int = Field(gt=0, description="Size of each (flattened) 'input' sample.")
    hidden_dims: list[int] = Field(default_factory=lambda: [256], description="Hidden layer widths.")
    out_dim: int = Field(128, gt=0, description="Size of the features (output_dim).")
    norm: bool = Field(True, description="LayerNorm after each hidden layer.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after each hidden layer.")

    @model_validator(mode="after")
    def _widths(self) -> "MLPOptions":
        if any(h <= 0 for h in self.hidden_dims):
            raise ValueError("hidden_dims must all be positive")
        return self


class NoiseOptions(Options):
    std: float = Field(0.1, gt=0, description="Standard deviation of the noise.")
    key: str = Field("input", description="Sample field holding the float tensor.")


class KNNOptions(Options):
    needs_fit_data: ClassVar[bool] = True  # checked when recipes are validated
    k: int = Field(200, gt=0, description="Neighbours that vote.")
    temperature: float = Field(0.1, gt=0, description="Vote weight exp(similarity / temperature).")
    raw_baseline: str | None = Field(
        None, description="Also report kNN on this raw sample field (e.g. 'image'), same k and temperature."
    )


class LinearProbeOptions(Options):
    needs_fit_data: ClassVar[bool] = True
    max_iter: int = Field(200, gt=0, description="L-BFGS iterations on the full feature set.")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty on the weights.")
    standardize: bool = Field(True, description="Standardise features with the fit set's mean and std.")
