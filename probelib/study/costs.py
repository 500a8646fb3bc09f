"""Cost estimates of units, and the order in which ready units are submitted (longest first).

With a few workers, the wall time of a study is set by how its costly units are spread: a model
whose probes cost ten times the others' must start first, or one worker ends alone with them.
:func:`run_study` therefore submits the ready units in decreasing *priority*: a unit's estimated
cost plus the largest priority among the units that need it (the longest chain of work that
starts with it, "bottom level" list scheduling), so a costly model's fit goes before a cheap
model's fit, and its probes before the cheap fits still waiting.

The cost of a unit is computed from its model(s), not measured: the multiply-accumulates of one
forward pass of the encoder up to its layer at the dataset's image size
(:func:`probelib.zoo.encoder_macs`, forward hooks on the ``meta`` device: no weights, a second or
so per architecture), times the noise draws of a smoothed model (``fit.n_samples``). Why MACs:
they follow the network and the image size (a table of measured seconds would have to be
measured again for every new model, image size and machine, and says nothing of a user's model);
only the order matters, and between the demo's networks MACs span two orders of magnitude, far
more than their error as a measure of CPU time. When a network cannot be built on ``meta``, its
parameter count (built on ``meta`` too) stands in; when neither can be had, every model costs the
same (the plan's order). A small per-kind weight says how many passes a kind makes relative to a
fit; it only matters between units of different kinds of different models.

Costs change only the order of submission, never a unit's inputs: results do not depend on them.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from .units import Plan, Unit

# passes per unit relative to a fit (a forward pass of every image of the dataset); rough, from
# what each kind computes (a sweep: forward and backward passes over its images at each budget and
# control). Units without a model (the dataset) cost a constant.
KIND_WEIGHT: dict[str, float] = {"dataset": 0.0, "fit": 1.0}
DEFAULT_WEIGHT = 1.0
DATASET_COST = 1.0

_MODEL_COSTS: dict[tuple[str, int], float] = {}
_LOCK = threading.Lock()


def model_cost(spec: str, image_size: int) -> float:
    """Relative cost of one pass of ``spec`` at ``image_size`` px (kept per process): its
    multiply-accumulates, else its parameter count, else 1."""
    from ..zoo import parse_spec, split_network

    try:
        base = spec if split_network(spec) else parse_spec(spec).name
    except Exception:
        base = spec
    key = (base, int(image_size))
    with _LOCK:
        if key in _MODEL_COSTS:
            return _MODEL_COSTS[key]
    cost = 1.0
    try:
        from ..zoo import encoder_macs
        cost = float(encoder_macs(base, image_size)) or 1.0
    except Exception:
        try:
            from ..encoders import load_encoder
            enc = load_encoder(base, weights=None, device="meta")
            cost = float(sum(p.numel() for p in enc.parameters())) or 1.0
        except Exception:
            cost = 1.0
    with _LOCK:
        _MODEL_COSTS[key] = cost
    return cost


def unit_cost(unit: Unit, model_cost: Callable[[str, int], float] = model_cost) -> float:
    """Estimated relative cost of ``unit``: the kind's weight times the cost of a pass of each
    of its models (times the noise draws of a smoothed one)."""
    if not unit.models:
        return DATASET_COST
    from ..zoo import parse_spec

    total = 0.0
    for spec in unit.models:
        c = model_cost(spec, unit.dataset.image_size)
        try:
            smoothed = parse_spec(spec).sigma > 0
        except Exception:
            smoothed = False
        if smoothed and unit.fit is not None:
            c *= max(1, int(unit.fit.n_samples))
        total += c
    return KIND_WEIGHT.get(unit.kind, DEFAULT_WEIGHT) * total


def priorities(deps: Mapping[str, Sequence[str]], costs: Mapping[str, float]) -> dict[str, float]:
    """unit id -> its cost plus the largest priority of the units that need it (0 for none):
    the cost of the longest chain of work that starts with it."""
    needed_by: dict[str, list[str]] = {u: [] for u in deps}
    for u, ds in deps.items():
        for d in ds:
            needed_by.setdefault(d, []).append(u)
    nodes = list(needed_by)
    waiting = {u: len(set(deps.get(u, ()))) for u in nodes}
    topo = [u for u in nodes if not waiting[u]]
    for u in topo:  # Kahn: every unit after its needs
        for v in dict.fromkeys(needed_by[u]):
            waiting[v] -= 1
            if not waiting[v]:
                topo.append(v)
    if len(topo) < len(nodes):
        raise ValueError("the dependencies have a cycle: " + ", ".join(u for u in nodes if waiting[u]))
    out: dict[str, float] = {}
    for u in reversed(topo):
        out[u] = float(costs.get(u, 0.0)) + max((out[v] for v in needed_by[u]), default=0.0)
    return out


def submission_order(deps: Mapping[str, Sequence[str]], costs: Mapping[str, float],
                     order: Iterable[str] | None = None) -> list[str]:
    """The order in which :func:`run_study` submits the units when each is ready as soon as its
    needs are submitted: repeatedly, of the units whose needs all come earlier, the one of highest
    priority (:func:`priorities`); ties keep ``order`` (default: the order of ``deps``)."""
    rank = {u: i for i, u in enumerate(order if order is not None else deps)}
    prio = priorities(deps, costs)
    placed: set[str] = set()
    out: list[str] = []
    left = sorted(deps, key=lambda u: rank.get(u, len(rank)))
    while left:
        ready = [u for u in left if all(d in placed for d in deps[u])]
        if not ready:
            raise ValueError("the dependencies have a cycle: " + ", ".join(left))
        best = min(ready, key=lambda u: (-prio[u], rank.get(u, len(rank))))
        out.append(best)
        placed.add(best)
        left.remove(best)
    return out


class PlanCosts:
    """The priorities of a plan's units, computed in a background thread (building the networks
    on ``meta`` imports their libraries: seconds, overlapped with the first units' run);
    :meth:`get` waits for them. Any error leaves every unit the same priority (plan order)."""

    def __init__(self, plan: Plan, background: bool = True):
        self.plan = plan
        self._prio: dict[str, float] | None = None
        self._thread = threading.Thread(target=self._compute, name="probelib-study-costs", daemon=True)
        if background:
            self._thread.start()
        else:
            self._compute()

    def _compute(self) -> None:
        try:
            costs = {uid: unit_cost(u) for uid, u in self.plan.units.items()}
            self._prio = priorities(self.plan.deps, costs)
        except Exception:
            self._prio = {uid: 0.0 for uid in self.plan.units}

    def get(self) -> dict[str, float]:
        if self._prio is None and self._thread.is_alive():
            self._thread.join()
        return self._prio if self._prio is not None else {uid: 0.0 for uid in self.plan.units}
