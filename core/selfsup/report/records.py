"""What a report reads from a run's metric history (``metrics.jsonl`` records), without plotting.

Train records hold ``loss``, ``loss/<task>``, ``<task>/<metric>``, ``lr`` and throughput figures;
eval records ``<evaluator>/<metric>``. Both may hold health diagnostics ``health/<task>/<metric>``
(``std``, ``rankme``, ``alignment``, ``uniformity``, ``code_perplexity``, ``cluster_entropy``), and
``health/<task>/collapsed`` is 1.0 at a step where a collapse warning fired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

META = ("kind", "step", "time")
HEALTH = "health/"
#: Where each health metric goes when representations collapse: -1 it falls, +1 it rises.
COLLAPSE_DIRECTION = {"std": -1, "rankme": -1, "code_perplexity": -1, "cluster_entropy": -1, "uniformity": +1,
                      "alignment": -1}
#: Names of the baselines evaluators report beside a metric (``raw_accuracy`` beside ``accuracy``).
EVALUATOR_BASELINES = {"raw": "raw input", "mfcc": "MFCC", "unigram": "unigram", "chance": "chance",
                       "majority": "majority class"}


def as_float(value: Any) -> float | None:
    """A metric value as a float: numbers as they are, the strings the writer stores for non-finite
    values (``"nan"``, ``"inf"``) parsed, anything else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def keys_of(records: Sequence[Mapping[str, Any]], kind: str) -> list[str]:
    """The metric keys of the records of ``kind``, in first-seen order."""
    return list(dict.fromkeys(k for r in records if r.get("kind") == kind for k in r if k not in META))


def series(records: Sequence[Mapping[str, Any]], key: str, kind: str | None) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of ``key`` in the records of ``kind`` (``None``: any)."""
    steps, values = [], []
    for record in records:
        if (kind is None or record.get("kind") == kind) and key in record:
            value = as_float(record[key])
            if value is not None and isinstance(record.get("step"), (int, float)):
                steps.append(int(record["step"]))
                values.append(value)
    return steps, values


def train_groups(records: Sequence[Mapping[str, Any]], tasks: Sequence[str]) -> dict[str, list[str]]:
    """Train metric keys by chart: ``"loss"`` (the total and each ``loss/<task>``), one group per task
    (``<task>/<metric>``), ``"learning rate"``, and the rest (``samples_per_s``, other prefixes)."""
    groups: dict[str, list[str]] = {"loss": []}
    for key in keys_of(records, "train"):
        if key.startswith(HEALTH):
            continue
        head, _, _ = key.partition("/")
        if key == "loss" or head == "loss":
            group = "loss"
        elif key == "lr" or head == "lr":
            group = "learning rate"
        elif "/" in key:
            group = f"task {head}" if head in tasks else head
        else:
            group = "throughput and other"
        groups.setdefault(group, []).append(key)
    return {name: keys for name, keys in groups.items() if keys}


def eval_groups(records: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Eval metric keys by evaluator (``<evaluator>/<metric>``), health keys left out."""
    groups: dict[str, list[str]] = {}
    for key in keys_of(records, "eval"):
        if not key.startswith(HEALTH):
            groups.setdefault(key.partition("/")[0] if "/" in key else "other", []).append(key)
    return groups


def health_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """``{task: [metric, ...]}`` of the ``health/<task>/<metric>`` keys in any record (``collapsed`` excluded)."""
    out: dict[str, list[str]] = {}
    for key in dict.fromkeys(k for r in records for k in r if k.startswith(HEALTH)):
        parts = key[len(HEALTH):].split("/")
        if len(parts) >= 2 and not parts[1].startswith("collapsed"):
            out.setdefault(parts[0], []).append("/".join(parts[1:]))
    return out


@dataclass
class Collapse:
    """A collapse warning: ``task`` at ``step`` (in a ``kind`` record), and ``reasons``: which health
    metrics crossed their threshold (``"std = 0.03 < 0.05: ..."``), or the one that moved furthest
    toward collapse when none is below its threshold here."""

    task: str
    step: int
    kind: str
    reasons: list[str]

    def message(self) -> str:
        where = f"Collapse warning: task {self.task!r} at step {self.step}"
        return f"{where}: {'; '.join(self.reasons)}." if self.reasons else f"{where}."


def collapses(records: Sequence[Mapping[str, Any]], thresholds: Mapping[str, Any] | None = None) -> list[Collapse]:
    """Every collapse warning that fired: a record where ``health/<task>/collapsed`` is 1 after one
    where it was not (or at the first record), per task. ``thresholds``: the recipe's
    ``train.health.thresholds`` (default: :class:`selfsup.lib.health.HealthThresholds`)."""
    found: list[Collapse] = []
    state: dict[str, bool] = {}
    first: dict[str, float] = {}
    for record in records:
        for key, raw in record.items():
            value = as_float(raw)
            if key.startswith(HEALTH) and value is not None and not key.endswith("/collapsed"):
                first.setdefault(key, value)
        for key, raw in record.items():
            if not (key.startswith(HEALTH) and key.endswith("/collapsed")):
                continue
            task = key[len(HEALTH):-len("/collapsed")]
            fired = as_float(raw) == 1.0
            if fired and not state.get(task, False):
                reasons = below_threshold(record, task, thresholds) or furthest(record, task, first)
                found.append(Collapse(task, int(record.get("step") or 0), str(record.get("kind")), reasons))
            state[task] = fired
    return found


def task_health(record: Mapping[str, Any], task: str) -> dict[str, dict[str, float]]:
    """``{role: {metric: value}}`` of ``task`` in ``record`` (role ``""`` for a task with one backbone,
    whose keys are ``health/<task>/<metric>``; else ``health/<task>/<role>/<metric>``)."""
    prefix = f"{HEALTH}{task}/"
    out: dict[str, dict[str, float]] = {}
    for key, raw in record.items():
        value = as_float(raw)
        if key.startswith(prefix) and not key.endswith("/collapsed") and value is not None:
            role, _, metric = key[len(prefix):].rpartition("/")
            out.setdefault(role, {})[metric] = value
    return out


def below_threshold(record: Mapping[str, Any], task: str, thresholds: Mapping[str, Any] | None) -> list[str]:
    """The health metrics of ``task`` in ``record`` below their collapse threshold, as the training
    loop words them (the rankme threshold without the probe's size: its floor ``rankme``)."""
    from dataclasses import fields

    from selfsup.lib.health import HealthThresholds, collapse_warnings

    names = {f.name for f in fields(HealthThresholds)}
    limits = HealthThresholds(**{k: v for k, v in (thresholds or {}).items() if k in names})
    return [f"{role}: {text}" if role else text
            for role, values in task_health(record, task).items() for text in collapse_warnings(values, 0, limits)]


def furthest(record: Mapping[str, Any], task: str, first: Mapping[str, float]) -> list[str]:
    """The health metric of ``task`` that moved furthest from its first value toward collapse
    (:data:`COLLAPSE_DIRECTION`), as ``["<metric> = v (first f)"]``; empty when there is none."""
    best, score = "", float("-inf")
    for role, values in task_health(record, task).items():
        for metric, value in values.items():
            key = f"{HEALTH}{task}/{role + '/' if role else ''}{metric}"
            start = first.get(key, value)
            moved = COLLAPSE_DIRECTION.get(metric, -1) * (value - start) / max(abs(start), 1e-12)
            if moved > score:
                name = f"{role}/{metric}" if role else metric
                best, score = f"{name} = {value:.4g} (first {start:.4g})", moved
    return [best] if best else []


def last_eval(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], int | None]:
    """The last value of every evaluation metric (health keys left out) and the last eval step."""
    values: dict[str, float] = {}
    step = None
    for record in records:
        if record.get("kind") == "eval":
            step = record.get("step", step)
            for key, raw in record.items():
                value = as_float(raw)
                if key not in META and not key.startswith(HEALTH) and value is not None:
                    values[key] = value
    return values, step


def evaluation_rows(trained: Mapping[str, float], baseline: Mapping[str, float] | None,
                    baseline_label: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows ``metric, trained, <baseline_label>, <evaluator baselines>...`` and the column names.
    An evaluator's own baseline (``knn/raw_accuracy`` beside ``knn/accuracy``) becomes a column of
    the metric it is the baseline of, named by :data:`EVALUATOR_BASELINES`, instead of a row."""
    own: dict[str, tuple[str, str]] = {}  # baseline key -> (metric key, column)
    for key in trained:
        evaluator, _, name = key.rpartition("/")
        prefix, _, rest = name.partition("_")
        base = f"{evaluator}/{rest}" if evaluator else rest
        if rest and prefix in EVALUATOR_BASELINES and base in trained:
            own[key] = (base, EVALUATOR_BASELINES[prefix])
    extra = list(dict.fromkeys(column for _, column in own.values()))
    columns = ["metric", "trained", *([baseline_label] if baseline is not None else []), *extra]
    rows: dict[str, dict[str, Any]] = {}
    for key, value in trained.items():
        if key in own:
            continue
        row = {"metric": key, "trained": value}
        if baseline is not None:
            row[baseline_label] = baseline.get(key)
        rows[key] = row
    for key, (base, column) in own.items():
        rows[base][column] = trained[key]
    return list(rows.values()), columns
