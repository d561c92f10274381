"""Where a swept value is chosen (sweep -> select -> confirm; grid files declare it, grid.py expands it).

Per group (a sweep block's matrix point without its seed), every swept value runs on the selection seed. Once all
of them have finished, the value with the best score on the held-out part (split holdout: 10% of the training set;
split sora: SoRA's validation part) is chosen; `metrics.json["test"]`, the reported part, is never read here. With a
tolerance t (score points x100) and prefer 'fewest_params', the smallest adapter within t of the best wins
(SoRA: the sparsest lambda that costs at most t). Runs that collapsed or diverged are chosen only when nothing else
has a score; ties go to the value declared first. The choice and its evidence go to `selection.json` in the grid's
output folder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from . import rundir
from .rundir import Status

PREFER = ("", "fewest_params")
SELECTION_FILE = "selection.json"
RULE = ("per group, the swept value with the best held-out score (the selection part of the split, never the "
        "reported test part) on the selection seed; runs that collapsed or diverged only when nothing else has a "
        "score; with a tolerance, the fewest adapter parameters within it; ties: the value declared first")


@dataclass
class Selection:
    group: str  # e.g. "minilm/task=rte,method=lora,r=8"
    source: str  # grid file and block
    swept: list[str]  # parameter names
    candidates: list  # PlannedRun per swept value, on the selection seed
    seed: int  # the selection seed
    tolerance: float = 0.0  # score points x100
    prefer: str = ""  # "" | "fewest_params"
    name_keys: list = field(default_factory=list)  # run-name keys of candidates and confirm runs
    confirm_params: list = field(default_factory=list)  # parameters of the other seeds, swept keys still unset
    chosen: dict | None = None  # the chosen values, once resolved
    reason: str = ""  # why nothing could be chosen, or what waits

    def evidence(self) -> list[dict | None]:
        return [candidate_evidence(run, self.swept) for run in self.candidates]

    def resolve(self) -> bool:
        """Choose once every candidate has finished; True when chosen (now or before)."""
        if self.chosen is not None:
            return True
        evidence = self.evidence()
        waiting = [run.name for run, e in zip(self.candidates, evidence) if e is None]
        if waiting:
            self.reason = f"waits for {len(waiting)} of {len(evidence)} sweep runs"
            return False
        index, self.reason = choose(evidence, self.tolerance, self.prefer)
        if index is None:
            return False
        self.chosen = dict(evidence[index]["values"])
        return True


def candidate_evidence(run, swept) -> dict | None:
    """What selection may know of a finished sweep run: status, held-out score at its best epoch, epochs, adapter
    size. None while the run has not finished with its planned parameters."""
    if not rundir.is_finished(run.run_dir, run.hashes):
        return None
    m = rundir.read_json(run.run_dir / rundir.METRICS)
    state, counts = m.get("method_state") or {}, m.get("parameters") or {}
    return {"run": run.name, "values": {k: run.params[k] for k in swept}, "status": m["status"],
            "heldout_score": (m.get("best") or {}).get(m["primary_metric"]), "metric": m["primary_metric"],
            "best_epoch": m.get("best_epoch"), "epochs_run": m.get("epochs_run"),
            "adapter_params": state.get("effective_params", counts.get("total_trainable"))}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def choose(evidence: list[dict], tolerance: float = 0.0, prefer: str = "") -> tuple[int | None, str]:
    """Index of the chosen candidate (see the module docstring) and a note; None when no score is finite."""
    scored = [i for i, e in enumerate(evidence) if _finite(e["heldout_score"])]
    ok = [i for i in scored if evidence[i]["status"] == Status.OK]
    eligible = ok or scored
    if not eligible:
        return None, "no sweep run has a held-out score (all diverged); widen the sweep"
    best = max(evidence[i]["heldout_score"] for i in eligible)
    near = [i for i in eligible if evidence[i]["heldout_score"] >= best - tolerance / 100 - 1e-12]
    if prefer == "fewest_params":
        index = min(near, key=lambda i: (evidence[i]["adapter_params"] or math.inf, i))
    else:
        index = next(i for i in near if evidence[i]["heldout_score"] == best)
    return index, "" if ok else "every sweep run collapsed or diverged; chosen among them"


def selection_record(sel: Selection, confirm_runs: list[str]) -> dict:
    """One group's entry of selection.json: the rule's settings, every candidate's evidence, the choice."""
    evidence = sel.evidence()
    params = sel.candidates[0].params
    return {"group": sel.group, "source": sel.source, "swept": sel.swept, "selection_seed": sel.seed,
            "split": params.get("split"), "tolerance": sel.tolerance, "prefer": sel.prefer or "best score",
            "status": "chosen" if sel.chosen is not None else ("waiting" if "waits" in sel.reason else "no choice"),
            "note": sel.reason,
            "candidates": [e or {"run": run.name, "values": {k: run.params[k] for k in sel.swept},
                                 "status": "pending"} for run, e in zip(sel.candidates, evidence)],
            "chosen": sel.chosen, "confirm_runs": confirm_runs}


def write_selection_file(plan) -> Path | None:
    """selection.json in the plan's output folder (atomically); None for a plan without sweeps."""
    if not plan.selections:
        return None
    confirm = {}
    for run in plan.runs:
        if run.stage == "confirm":
            confirm.setdefault(run.group, []).append(run.name)
    path = Path(plan.output_root) / SELECTION_FILE
    rundir.write_json(path, {"grid": str(plan.grid_file), "rule": RULE,
                             "groups": [selection_record(s, confirm.get(s.group, [])) for s in plan.selections]})
    return path


def read_selection(root) -> dict:
    """selection.json of a grid's output folder ({} when there is none)."""
    path = Path(root) / SELECTION_FILE
    return rundir.read_json(path) if path.is_file() else {}


def selection_roles(root) -> dict[str, str]:
    """Run name -> its part in a sweep: 'chosen' (the chosen value's sweep run and the confirm runs), 'not chosen'
    (the other swept values) or 'sweep' (its group has not been chosen yet); from selection.json."""
    roles = {}
    for group in read_selection(root).get("groups", []):
        chosen = group.get("chosen")
        for c in group["candidates"]:
            roles[c["run"]] = "sweep" if chosen is None else "chosen" if c["values"] == chosen else "not chosen"
        roles.update({name: "chosen" for name in group.get("confirm_runs", [])})
    return roles


def _score(e: dict) -> str:
    if e.get("status") == "pending":
        return "pending"
    score = e["heldout_score"]
    text = f"{100 * score:.1f}" if _finite(score) else "n/a"
    epochs = f" (best epoch {e['best_epoch']} of {e['epochs_run']})" if e.get("epochs_run") else ""
    return text + epochs + ("" if e["status"] == Status.OK else f" {e['status']}")


def selection_lines(plan) -> list[str]:
    """The sweep groups for `lora-nb run --dry-run`: held-out score x100 per swept value and the choice."""
    if not plan.selections:
        return []
    lines = [f"selection ({SELECTION_FILE}): {RULE}"]
    for sel in plan.selections:
        chosen = ", ".join(f"{k}={v}" for k, v in sel.chosen.items()) if sel.chosen is not None else sel.reason
        lines.append(f"  {sel.group} (seed {sel.seed}): {chosen}")
        for run, e in zip(sel.candidates, sel.evidence()):
            values = ", ".join(f"{k}={run.params[k]}" for k in sel.swept)
            lines.append(f"      {values}: {_score(e or {'status': 'pending'})}")
    return lines
