"""Options of the core's built-in components (no torch import)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from selfsup.options import ExistingFile, Options, PretrainedOptions


class TensorFileOptions(Options):
    path: ExistingFile = Field(description="A .npz, .npy or .safetensors file.")
    input_key: str = Field("input", description="Array that becomes the sample's 'input' (npz/safetensors).")
    label_key: str | None = Field("label", description="Array of integer labels, if present.")
    split: str = Field("all", pattern="^(all|train|val)$", description="All rows, or a (stratified) train/val split.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Fraction of the rows in the 'val' split.")
    split_seed: int = Field(0, ge=0, description="Seed of the split (independent of the run seed).")


class MLPOptions(PretrainedOptions):
    """A multilayer perceptron; ``pretrained``: a state dict file or folder, an ``hf:`` repository or a
    selfsup export."""

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


# ------------------------------------------------------------------------------------ fine-tuning


class HeadOptions(Options):
    hidden_dims: list[int] = Field(default_factory=list, description="Hidden layers (GELU) before the output "
                                                                     "layer; empty: a linear head.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the features (and after each hidden layer).")

    @model_validator(mode="after")
    def _widths(self) -> "HeadOptions":
        if any(h <= 0 for h in self.hidden_dims):
            raise ValueError("hidden_dims must all be positive")
        return self


class ClassificationHeadOptions(HeadOptions):
    target: str = Field("label", description="Sample key of the integer class.")
    num_classes: int | None = Field(None, gt=1, description="Default: 1 + the largest label in the task's data.")
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none", description="Loss weight per class: 'balanced' = N / (C * count(class)), as scikit-learn's, "
                            "for imbalanced labels; or one weight per class.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")

    @model_validator(mode="after")
    def _weights(self) -> "ClassificationHeadOptions":
        if isinstance(self.class_weights, list):
            if any(w < 0 for w in self.class_weights) or not any(w > 0 for w in self.class_weights):
                raise ValueError("class_weights must be non-negative with at least one above zero")
            if self.num_classes is not None and len(self.class_weights) != self.num_classes:
                raise ValueError(f"class_weights has {len(self.class_weights)} values for {self.num_classes} classes")
        return self


class MultiLabelHeadOptions(HeadOptions):
    target: str = Field("labels", description="Sample key of the 0/1 vector of labels (float or int [C]).")
    num_labels: int | None = Field(None, gt=0, description="Default: the length of the first sample's vector.")
    threshold: float = Field(0.5, gt=0, lt=1, description="A label is predicted when its probability exceeds this.")
    pos_weight: Literal["none", "balanced"] = Field(
        "none", description="'balanced': positives of each label weighted by negatives / positives.")


class RegressionHeadOptions(HeadOptions):
    target: str = Field("target", description="Sample key of the value (float [] or [K]).")
    num_outputs: int = Field(1, gt=0, description="Values predicted per sample (K).")
    loss: Literal["mse", "huber"] = "mse"
    standardize: bool = Field(True, description="Learn standardised targets (mean and std of the task's data, "
                                                "kept as buffers); predictions are mapped back.")


class FineTuneOptions(Options):
    head: str = Field("classification", description="A registered head (`selfsup describe heads`).")
    head_options: dict[str, Any] = Field(default_factory=dict, description="Options of the head.")
    mode: Literal["full", "linear", "partial"] = Field(
        "full", description="'full': every backbone weight trains; 'linear': the backbone is frozen (eval mode, "
                            "no gradients; a linear probe when the head is linear); 'partial': only the top "
                            "unfreeze_last layer groups train.")
    unfreeze_last: int = Field(1, ge=0, description="mode 'partial': trainable layer groups, counted from the top "
                                                    "(selfsup.lib.layer_groups).")
    layer_decay: float = Field(1.0, gt=0, le=1, description="Layer-wise lr decay: group i of L (input side 0) trains "
                                                            "at lr * layer_decay^(L - i); the head at lr.")


class HeadMetricsOptions(Options):
    task: str | None = Field(None, description="The finetune task whose head is measured; default: the only one.")
    report: bool = Field(True, description="Write the per-class table (JSON, CSV) and the confusion matrix (PNG) "
                                           "to <run>/reports/<evaluator>/step-N/.")
    ece_bins: int = Field(15, gt=1, le=1000, description="Bins of the expected calibration error.")


class SubsetOptions(Options):
    wraps_data: ClassVar[bool] = True  # the contract reads the sample keys of `data` (selfsup.contract)
    data: dict[str, Any] = Field(description="The data table to take from: { type = ..., options = {...} }.")
    fraction: float = Field(gt=0, le=1, description="Share of the samples kept (of each class with stratify).")
    seed: int = Field(0, ge=0, description="Seed of the draw (independent of the run seed).")
    stratify: bool = Field(True, description="Keep the fraction of every class (at least one sample each), by "
                                             "the samples' 'label'.")
    complement: bool = Field(False, description="Keep the samples the same draw leaves out instead: two tables "
                                                "with the same seed and fraction, one with complement, split a "
                                                "set in two disjoint parts (a sweep's validation and test halves).")

    @model_validator(mode="after")
    def _table(self) -> "SubsetOptions":
        if not isinstance(self.data.get("type"), str) or set(self.data) - {"type", "options"}:
            raise ValueError("data must be a table { type = \"...\", options = { ... } }")
        return self


# ------------------------------------------------------------------------------------ rounds


class PseudoLabelOptions(Options):
    clusters: int = Field(gt=1, le=100_000, description="k of k-means: the number of pseudo-classes.")
    kmeans_iters: int = Field(30, gt=0, le=1000, description="Lloyd iterations per round.")
    spherical: bool = Field(True, description="Cluster L2-normalised embeddings by cosine similarity.")
    temperature: float = Field(0.1, gt=0, description="Softmax temperature over a sample's similarities to the "
                                                      "centroids; the probability of its own cluster is its "
                                                      "confidence.")
    confidence_power: float = Field(1.0, ge=0, description="Sampling weight proportional to confidence^power "
                                                           "(0: confidence ignored).")
    min_confidence: float = Field(0.0, ge=0, lt=1, description="Samples less confident than this get weight 0: "
                                                               "the next round never draws them.")
    unstable_weight: float = Field(0.5, ge=0, le=1, description="Weight factor of a sample whose pseudo-label "
                                                                "changed since the previous round (1: none).")
    balanced: bool = Field(True, description="Divide each weight by its cluster's size, so every pseudo-class is "
                                             "drawn as often (DeepCluster's sampling): a large cluster cannot take "
                                             "over.")
    field: str = Field("pseudo_label", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                       description="The sample key the pseudo-label is written to.")
    confidence_field: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                         description="Also write each pseudo-label's confidence under this sample "
                                                     "key (float32); unset: not written.")
    measure_labels: str | None = Field(None, description="A key of true labels, read only to measure the "
                                                         "pseudo-labels (NMI, purity in the round record), never "
                                                         "for training; unset: not measured.")

    @model_validator(mode="after")
    def _fields(self) -> "PseudoLabelOptions":
        if self.field == self.confidence_field:
            raise ValueError("field and confidence_field must differ")
        if "index" in (self.field, self.confidence_field):
            raise ValueError("'index' is the core's sample position, not a field")
        return self


# ------------------------------------------------------------------------------------ data2vec


class Data2VecOptions(Options):
    top_k: int = Field(8, gt=0, description="Targets average the teacher's top K transformer block outputs (at most "
                                             "the backbone's number of blocks).")
    layer_norm: Literal["layer", "instance", "none"] = Field(
        "layer", description="Normalisation of each of the K block outputs before averaging: 'layer' (over "
                             "features, no affine: vision and text in the paper), 'instance' (each feature over "
                             "the sequence's valid positions: speech) or 'none'.")
    final_norm: Literal["layer", "instance", "none"] = Field(
        "none", description="Normalisation of the average (the paper's optional final layer norm of vision and "
                            "text targets).")
    loss: Literal["mse", "smooth_l1"] = Field("mse", description="Regression loss at the masked positions.")
    beta: float = Field(1.0, gt=0, description="Smooth L1's beta: squared error below it, absolute above (used "
                                               "with loss = 'smooth_l1').")
    mask_prob: float | None = Field(None, gt=0, lt=1, description="Share of positions masked, as the backbone's "
                                                                  "masking reads it; unset: its default (image "
                                                                  "blocks 0.6, speech spans 0.65, text 0.15).")
    mask_length: int | None = Field(None, gt=0, description="Length of a masked run in positions (speech spans; "
                                                            "the smallest image block); unset: the backbone's "
                                                            "default.")
    base_momentum: float = Field(0.999, ge=0, le=1, description="Teacher EMA momentum at the first step (tau_0).")
    final_momentum: float = Field(0.9999, ge=0, le=1, description="Momentum reached after ramp_steps (tau_e), "
                                                                  "linearly; constant after.")
    ramp_steps: int | None = Field(None, gt=0, description="Steps of the linear momentum ramp (tau_n); unset: "
                                                           "the whole run.")
