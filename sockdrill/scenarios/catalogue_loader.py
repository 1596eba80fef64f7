"""Loading and cross-checking scenario files: every error, with file, line and field path, at once.

Beyond the schema, a scenario is checked against the code that will run it: fault kinds and their
parameters (chaos registry), fault targets and ground-truth components (the shop's topology), the
diagnosis category (evaluate.taxonomy), journeys (load), and remediation tools (agent tool registry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sockdrill.errors import ScenarioError, did_you_mean
from sockdrill.scenarios.schema import Scenario, Variant

CATALOGUE_PACKAGE = "sockdrill.scenarios.catalogue"


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Follow a field path through the YAML node tree; the line of the deepest node found (1-based)."""
    cur = node
    line = cur.start_mark.line + 1 if cur is not None else None
    for part in loc:
        if isinstance(cur, yaml.MappingNode):
            nxt = next((v for k, v in cur.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
        elif isinstance(cur, yaml.SequenceNode) and isinstance(part, int) and part < len(cur.value):
            nxt = cur.value[part]
        else:
            nxt = None
        if nxt is None:
            break
        cur = nxt
        line = cur.start_mark.line + 1
    return line


@dataclass
class Problems:
    path: str
    root: yaml.Node | None
    items: list[str] = field(default_factory=list)

    def add(self, loc: tuple[Any, ...], message: str) -> None:
        line = _line_of(self.root, loc)
        where = f"{self.path}:{line}" if line else self.path
        self.items.append(f"{where}: {_loc_text(loc) or '(top)'}: {message}")


def _known_topology() -> tuple[set[str], set[tuple[str, str]]]:
    names, edges, _stores = _manifest()
    return names, edges


def _subsets() -> dict[str, set[str]]:
    """Each routed service's subsets, from the manifest."""
    from sockdrill.shop.manifest import shop_deployments

    return {s.name: set(s.subsets) for s in shop_deployments() if s.subsets}


def _manifest() -> tuple[set[str], set[tuple[str, str]], dict[str, bool]]:
    """Deployment names, edges, and each datastore with whether it is optional (a set-up may wake it)."""
    from sockdrill.shop.manifest import shop_deployments

    specs = shop_deployments()
    names = {s.name for s in specs}
    stores = {s.name: s.optional for s in specs if s.is_store}
    edges = {(s.name, d) for s in specs for d in s.calls} | {("host", s.name) for s in specs}
    return names, edges, stores


def _redis_stores() -> set[str]:
    from sockdrill.shop.manifest import shop_deployments

    return {s.name for s in shop_deployments() if s.kind == "redis"}


def _check_setup(p: Problems, loc: tuple[Any, ...], setup: Any, names: set[str], stores: dict[str, bool]) -> None:
    for part in ("replicas", "balancing"):
        for svc in getattr(setup, part):
            if svc not in names:
                p.add((*loc, part, svc), f"unknown service '{svc}'" + did_you_mean(svc, names))
    subsets = _subsets()
    for svc, weights in setup.routes.items():
        if svc not in subsets:
            p.add((*loc, "routes", svc), f"'{svc}' has no subsets to route between (routed: "
                                         f"{', '.join(sorted(subsets)) or 'none'})")
            continue
        for subset, w in weights.items():
            if subset not in subsets[svc]:
                p.add((*loc, "routes", svc, subset), f"unknown subset '{subset}' of '{svc}'"
                      + did_you_mean(subset, subsets[svc]) + f" (subsets: {', '.join(sorted(subsets[svc]))})")
            elif not 0 <= w <= 100:
                p.add((*loc, "routes", svc, subset), f"a weight is from 0 to 100, got {w}")
        if not any(weights.values()):
            p.add((*loc, "routes", svc), "a route needs one subset with a weight above 0")
    for name in setup.caches:
        if name not in _redis_stores():
            p.add((*loc, "caches", name), f"'{name}' is not a Redis datastore" + did_you_mean(name, _redis_stores()))
    for name, n in setup.replicas.items():
        if name in stores and not stores[name]:
            p.add((*loc, "replicas", name), f"'{name}' is a datastore that always runs one pod: a set-up cannot "
                                            "size it (only optional datastores, which it may wake: 0 or 1)")
        elif name in stores and n not in (0, 1):
            p.add((*loc, "replicas", name), f"optional datastore '{name}' runs 0 or 1 pod, got {n}")


def _check_faults(p: Problems, vi: int, var: Variant, names: set[str]) -> None:
    """Each fault through the chaos room's own validation (kind, params, static target checks)."""
    import sockdrill.chaos  # noqa: F401  - registers the fault kinds
    from sockdrill.chaos.spec import parse_fault
    from sockdrill.errors import FaultError

    for fi, raw in enumerate(var.faults):
        loc = ("variants", vi, "faults", fi)
        try:
            parse_fault(raw)
        except FaultError as exc:
            p.add(loc, str(exc))
        target = str(raw.get("target", "")) if isinstance(raw, dict) else ""
        targets = [t.strip() for t in target.split("->") if t.strip() not in ("", "*")]
        for t in targets:
            if t not in names and t != "host":
                p.add((*loc, "target"), f"unknown component '{t}'" + did_you_mean(t, names))


def _check_tools(p: Problems, vi: int, var: Variant) -> None:
    try:
        from sockdrill.agents.registry import action_tool_names
    except ImportError:
        return
    known = action_tool_names()
    for ai, action in enumerate(var.remediation):
        if action.tool not in known:
            p.add(("variants", vi, "remediation", ai, "tool"),
                  f"unknown action tool '{action.tool}'" + did_you_mean(action.tool, known))


def validate_document(doc: Any, path: str, root: yaml.Node | None) -> Scenario:
    p = Problems(path, root)
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: a scenario file must hold a mapping at the top")
    try:
        scenario = Scenario.model_validate(doc)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            p.add(tuple(err["loc"]), msg)
        raise ScenarioError("\n".join(p.items)) from None
    names, _edges, stores = _manifest()
    _check_setup(p, ("setup",), scenario.setup, names, stores)
    from sockdrill.evaluate.taxonomy import CATEGORIES
    from sockdrill.load.sli import JOURNEYS
    from sockdrill.scenarios.scripted import check_script

    for where, message in check_script(scenario.actions, scenario.probes):
        p.add(where, message)
    probe_journeys = {pr.journey for pr in scenario.probes}
    for pi, pr in enumerate(scenario.probes):
        if pr.journey in JOURNEYS:
            p.add(("probes", pi, "journey"), f"journey '{pr.journey}' is the load's: a probe's journey is its own")
    journeys = set(JOURNEYS) | probe_journeys
    for key, obj_list in (("slo", scenario.slo), ("symptom", scenario.symptom.any if scenario.symptom else [])):
        for oi, obj in enumerate(obj_list):
            if obj.journey not in journeys:
                loc: tuple[Any, ...] = (key, oi, "journey") if key == "slo" else (key, "any", oi, "journey")
                p.add(loc, f"unknown journey '{obj.journey}'" + did_you_mean(obj.journey, journeys))
    for name in scenario.load.journeys:
        if name not in journeys:
            p.add(("load", "journeys", name), f"unknown journey '{name}'" + did_you_mean(name, journeys))
    services = names - set(stores)
    loads: list[tuple[tuple[Any, ...], Any]] = [(("load",), scenario.load)]
    loads += [(("variants", vi, "load"), v.load) for vi, v in enumerate(scenario.variants) if v.load is not None]
    for where, load in loads:
        for name in load.entry:
            if name not in services:
                p.add((*where, "entry", name), f"entry '{name}' is not a service of the shop"
                      + did_you_mean(name, services))
    for vi, var in enumerate(scenario.variants):
        for oi, obj in enumerate(var.symptom.any if var.symptom else []):
            if obj.journey not in journeys:
                p.add(("variants", vi, "symptom", "any", oi, "journey"),
                      f"unknown journey '{obj.journey}'" + did_you_mean(obj.journey, journeys))
        if var.ground_truth is not None:
            if var.ground_truth.category not in CATEGORIES:
                p.add(("variants", vi, "ground_truth", "category"),
                      f"unknown category '{var.ground_truth.category}'" + did_you_mean(var.ground_truth.category,
                                                                                        CATEGORIES))
            for key in ("root_cause", "propagation"):
                for ci, comp in enumerate(getattr(var.ground_truth, key)):
                    if comp not in names:
                        p.add(("variants", vi, "ground_truth", key, ci),
                              f"unknown component '{comp}'" + did_you_mean(comp, names))
        _check_setup(p, ("variants", vi, "setup"), var.setup, names, stores)
        _check_faults(p, vi, var, names)
        _check_tools(p, vi, var)
    if p.items:
        raise ScenarioError("\n".join(p.items))
    return scenario


def load_scenario_file(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    return load_scenario_text(text, str(path))


def load_scenario_text(text: str, name: str) -> Scenario:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        raise ScenarioError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return validate_document(doc, name, root)


@dataclass
class Catalogue:
    scenarios: dict[str, Scenario]

    def get(self, ref: str) -> tuple[Scenario, list[Variant]]:
        """'login-latency' → all its variants; 'login-latency/missing-index' → that one."""
        sid, _, vid = ref.partition("/")
        scenario = self.scenarios.get(sid)
        if scenario is None:
            raise ScenarioError(f"unknown scenario '{sid}'" + did_you_mean(sid, self.scenarios))
        return scenario, [scenario.variant(vid)] if vid else list(scenario.variants)

    def all_refs(self) -> list[str]:
        return [f"{s.id}/{v.id}" for s in self.scenarios.values() for v in s.variants]


def load_catalogue() -> Catalogue:
    """Every scenario file shipped in the package, validated (all errors of all files together)."""
    errors: list[str] = []
    scenarios: dict[str, Scenario] = {}
    folder = resources.files(CATALOGUE_PACKAGE)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith((".yaml", ".yml")):
            continue
        try:
            scenario = load_scenario_text(entry.read_text(), f"scenarios/catalogue/{entry.name}")
        except ScenarioError as exc:
            errors.append(str(exc))
            continue
        if scenario.id in scenarios:
            errors.append(f"scenarios/catalogue/{entry.name}: duplicate scenario id '{scenario.id}'")
        scenarios[scenario.id] = scenario
    if errors:
        raise ScenarioError("\n".join(errors))
    return Catalogue(scenarios)
