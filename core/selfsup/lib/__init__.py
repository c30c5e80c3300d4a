"""selfsup.lib: the public library API for plugins (versioned: :data:`API_VERSION`).

Plugins import from here, never from ``selfsup.engine`` or ``selfsup.builtins`` (private, free to
change). Every name is documented in docs/plugin-api.md. Importing ``selfsup.lib`` is cheap and
imports no torch, so a plugin's ``__init__`` may import it when the plugin loads: each name is
loaded from its submodule on first use (``from selfsup.lib import info_nce`` imports torch then).

Submodules, which may also be imported directly:

* :mod:`selfsup.lib.distributed`: ``rank``, ``world_size``, ``barrier``, ``gather_with_grad``,
  ``local_offset``, ``resolve_device``, ``DeviceUnavailable``;
* :mod:`selfsup.lib.seeding`: ``splitmix64``, ``stream_id``, ``sample_seed``, ``sample_seeds``,
  ``sample_generator``, ``batch_seed``, ``batch_generator``;
* :mod:`selfsup.lib.losses`: ``info_nce``;
* :mod:`selfsup.lib.probes`: ``fit_linear_probe``, ``standardize_features``, ``weighted_knn_predict``;
* :mod:`selfsup.lib.clustering`: ``kmeans``, ``KMeansResult``, ``normalized_mutual_info``, ``purity``;
* :mod:`selfsup.lib.data`: ``is_iterable_source``, ``find_inputs``, ``ordered``, ``batches``, ``to_device``,
  ``extract_features``, ``scan_targets``;
* :mod:`selfsup.lib.modules`: ``frozen``, ``masked_mean``, ``sinusoidal_positions``, ``layer_groups``;
* :mod:`selfsup.lib.metrics`: ``confusion_matrix``, ``class_report``, ``ClassReport``, ``multilabel_report``,
  ``regression_report``, ``expected_calibration_error``;
* :mod:`selfsup.lib.runs`: ``latest_checkpoint``;
* :mod:`selfsup.lib.serving`: ``TensorDecoder``;
* :mod:`selfsup.lib.drift`: ``DriftReference``, ``DriftMonitor``;
* :mod:`selfsup.lib.health`: ``embedding_std``, ``rankme``, ``alignment``, ``uniformity``, ``code_perplexity``,
  ``cluster_entropy``, ``collapse_warnings``, ``HealthThresholds``, ``CollapseWarning``;
* :mod:`selfsup.lib.teacher`: ``EMATeacher``, ``cosine_momentum``, ``linear_momentum``;
* :mod:`selfsup.lib.pretrained`: ``parse_pretrained``, ``resolve_pretrained``, ``downloads_allowed``,
  ``read_state_dict``, ``read_export_or_state_dict``, ``load_state``, ``load_timm_pretrained``,
  ``load_pretrained_into``, ``attach_record``, ``LoadReport``,
  ``ResolvedWeights``, ``PretrainedSpec``, ``WeightsNotCached``, ``PretrainedMismatch``;
* :mod:`selfsup.lib.timm_weights`: ``TimmStart``, ``plan_timm_start``, ``load_timm_start``,
  ``torchvision_model_name``, ``check_timm_spec``;
* :mod:`selfsup.lib.shards`: ``ShardStream``, ``tar_samples``, ``check_tar_shard``, ``expand_shards``;
* ``BadFiles`` (from :mod:`selfsup.badfiles`) and ``split_indices`` (from :mod:`selfsup.splits`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: Version of the public plugin API (this package, ``selfsup.components``, ``selfsup.options``,
#: ``selfsup.registry``, ``selfsup.testing``). Within a major version names are only added; a
#: removal or an incompatible change of signature or behaviour bumps the major version.
API_VERSION = "1.8"

_HOME: dict[str, str] = {
    **dict.fromkeys(["DeviceUnavailable", "barrier", "gather_with_grad", "local_offset", "rank", "resolve_device",
                     "world_size"], "selfsup.lib.distributed"),
    **dict.fromkeys(["batch_generator", "batch_seed", "sample_generator", "sample_seed", "sample_seeds", "splitmix64",
                     "stream_id"], "selfsup.lib.seeding"),
    "info_nce": "selfsup.lib.losses",
    **dict.fromkeys(["fit_linear_probe", "standardize_features", "weighted_knn_predict"], "selfsup.lib.probes"),
    **dict.fromkeys(["KMeansResult", "kmeans", "normalized_mutual_info", "purity"], "selfsup.lib.clustering"),
    **dict.fromkeys(["batches", "extract_features", "find_inputs", "is_iterable_source", "ordered", "scan_targets",
                     "to_device"], "selfsup.lib.data"),
    **dict.fromkeys(["frozen", "layer_groups", "masked_mean", "sinusoidal_positions"], "selfsup.lib.modules"),
    **dict.fromkeys(["ClassReport", "class_report", "confusion_matrix", "expected_calibration_error",
                     "multilabel_report", "regression_report"], "selfsup.lib.metrics"),
    "latest_checkpoint": "selfsup.lib.runs",
    **dict.fromkeys(["EMATeacher", "cosine_momentum", "linear_momentum"], "selfsup.lib.teacher"),
    **dict.fromkeys(["LoadReport", "PretrainedMismatch", "PretrainedSpec", "ResolvedWeights", "WeightsNotCached",
                     "attach_record", "downloads_allowed", "load_pretrained_into", "load_state", "load_timm_pretrained",
                     "parse_pretrained", "read_export_or_state_dict", "read_state_dict", "resolve_pretrained"],
                    "selfsup.lib.pretrained"),
    "TensorDecoder": "selfsup.lib.serving",
    **dict.fromkeys(["TimmStart", "check_timm_spec", "load_timm_start", "plan_timm_start", "torchvision_model_name"],
                    "selfsup.lib.timm_weights"),
    **dict.fromkeys(["ShardStream", "check_tar_shard", "expand_shards", "tar_samples"], "selfsup.lib.shards"),
    **dict.fromkeys(["DriftMonitor", "DriftReference"], "selfsup.lib.drift"),
    **dict.fromkeys(["CollapseWarning", "HealthThresholds", "alignment", "cluster_entropy", "code_perplexity",
                     "collapse_warnings", "embedding_std", "rankme", "uniformity"], "selfsup.lib.health"),
    "BadFiles": "selfsup.badfiles",
    "split_indices": "selfsup.splits",
}

__all__ = ["API_VERSION", *sorted(_HOME)]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'selfsup.lib' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
