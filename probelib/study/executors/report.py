"""The progress line and the :class:`StudyReport` of a run."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..units import Plan, UnitOutcome, read_record


class Progress:
    """One status line: done / running / queued / failed (``\\r`` on a terminal; otherwise a
    line when something changed, at most every ``every`` seconds)."""

    def __init__(self, total: int, label: str, enabled: bool = True, stream=None, every: float = 10.0):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every, self._last, self._last_text = every, 0.0, ""

    def update(self, counts: dict[str, int], force: bool = False) -> None:
        if not self.enabled:
            return
        text = (f"[{self.label}] {counts.get('done', 0)}/{self.total} done · {counts.get('running', 0)} running · "
                f"{counts.get('queued', 0)} queued · {counts.get('waiting', 0)} waiting · "
                f"{counts.get('failed', 0)} failed")
        if counts.get("skipped"):
            text += f" · {counts['skipped']} skipped"
        now = time.time()
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self._last_text)))
            if force:
                self.stream.write("\n")
            self.stream.flush()
        elif text != self._last_text and (force or now - self._last >= self.every):
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now
        else:
            return
        self._last_text = text


@dataclass
class StudyReport:
    """What a study run did, unit by unit.

    ``status[unit_id]``: ``"done before"`` (its record was complete: not run), ``"computed"``,
    ``"failed"``, ``"skipped"`` (a unit it needs failed). ``outcomes`` hold what came back
    (seconds, cached calls hit / computed, digest of the results, log path, error).
    """

    study: str
    executor: str
    plan: Plan
    status: dict[str, str]
    outcomes: dict[str, UnitOutcome]
    seconds: float
    cache_dir: str
    log_dir: str
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(s in ("failed", "skipped") for s in self.status.values())

    def ids(self, status: str) -> list[str]:
        return [uid for uid, s in self.status.items() if s == status]

    @property
    def failed(self) -> list[UnitOutcome]:
        return [self.outcomes[uid] for uid in self.ids("failed")]

    def digests(self) -> dict[str, str]:
        """unit id -> digest of its results (from what came back, or from its record)."""
        out = {}
        for uid, unit in self.plan.units.items():
            o = self.outcomes.get(uid)
            if o is not None and o.digest:
                out[uid] = o.digest
            else:
                rec = read_record(unit, self.cache_dir)
                if rec:
                    out[uid] = rec.get("digest", "")
        return out

    def table(self):
        import pandas as pd
        rows = []
        for uid, unit in self.plan.units.items():
            o = self.outcomes.get(uid)
            rows.append({"unit": uid, "kind": unit.kind, "label": unit.label, "status": self.status.get(uid),
                         "seconds": o.seconds if o else None, "computed": o.computed if o else None,
                         "hits": o.hits if o else None, "digest": (o.digest if o else "") or "",
                         "error": (o.error if o else self.errors.get(uid, "")) or "",
                         "log": (o.log if o else "") or ""})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        counts = {s: len(self.ids(s)) for s in ("done before", "computed", "failed", "skipped")}
        lines = [f"study {self.study} ({self.executor}): {len(self.plan)} units: "
                 + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" in {self.seconds:.1f} s"]
        hits = sum(o.hits for o in self.outcomes.values())
        computed = sum(o.computed for o in self.outcomes.values())
        if self.outcomes:
            lines.append(f"cached calls of the units that ran: {computed} computed, {hits} read from the cache")
        for uid in self.ids("failed"):
            o = self.outcomes.get(uid)
            err = o.error if o else self.errors.get(uid, "")
            lines.append(f"FAILED {self.plan.units[uid].label} (unit {uid}): {err.splitlines()[0] if err else '?'}")
            if o and o.log:
                lines.append(f"       log: {o.log}")
        for uid in self.ids("skipped"):
            lines.append(f"skipped {self.plan.units[uid].label}: {self.errors.get(uid, '')}")
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(
            {"study": self.study, "executor": self.executor, "seconds": self.seconds,
             "units": {uid: {"label": self.plan.units[uid].label, "status": self.status.get(uid),
                             **({k: v for k, v in self.outcomes[uid].to_dict().items() if k != "traceback"}
                                if uid in self.outcomes else {}), "error": self.errors.get(uid, "")}
                       for uid in self.plan.units}}, indent=1, default=str))
