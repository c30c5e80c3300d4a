"""A seeded, optionally stratified subset of another data source: a share of the labels, for
label-efficiency runs (fine-tuning on 1% or 10% of a labelled set)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from selfsup.builtins.options import SubsetOptions
from selfsup.components import BuildContext
from selfsup.lib.data import is_iterable_source, scan_targets


class Subset:
    def __init__(self, options: SubsetOptions, context: BuildContext):
        self.source = context.build("data", options.data["type"], options.data.get("options") or {})
        if is_iterable_source(self.source):
            raise ValueError(f"subset takes a map-style source; {options.data['type']!r} streams")
        n = len(self.source)
        rng = np.random.default_rng(options.seed)
        if options.stratify:
            labels = np.asarray([int(v) for v in scan_targets(self.source, "label")])
            groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        else:
            groups = [np.arange(n)]
        keep = [rng.permutation(g)[: max(1, math.ceil(len(g) * options.fraction))] for g in groups]
        self.indices = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=np.int64)
        if options.complement:
            self.indices = np.setdiff1d(np.arange(n), self.indices)
            if not len(self.indices):
                raise ValueError(f"the complement of a {options.fraction:g} subset of {n} samples is empty")
        self.collate = getattr(self.source, "collate", None)
        if self.collate is None:
            del self.collate  # sources without a collate: torch's default_collate
        self.classes = getattr(self.source, "classes", None)
        self.bad_files = getattr(self.source, "bad_files", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.source[int(self.indices[index])]

    def targets(self, key: str) -> list[Any] | None:
        own = getattr(self.source, "targets", None)
        values = own(key) if callable(own) else None
        return None if values is None else [values[int(i)] for i in self.indices]

    def lengths(self) -> list[int]:
        lengths = list(self.source.lengths())
        return [lengths[int(i)] for i in self.indices]
