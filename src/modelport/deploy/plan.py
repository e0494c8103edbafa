"""What placement produces: placements, per-node utilisation, and the plan file.

A *placement* says how many replicas of a deployment run on a node and how much of each
client site's demand they answer. :func:`check_placements` re-checks any answer (the
solver's, the greedy baseline's, or a hand-edited plan) against the original problem in
floating point, so rounding inside the solver can never hide a violation.

Example:
    >>> from modelport.deploy.model import Deployment, Node, Problem, ReplicaProfile
    >>> n = Node("a", "cloud", cpu=4, memory_mb=8192, cost_per_hour=0.2, site="eu")
    >>> d = Deployment("m", "m:1", ReplicaProfile(1, 1024, 100), demand={"eu": 150},
    ...                latency_p99_ms=50)
    >>> p = Problem((n,), (), (d,))
    >>> ps = [Placement("m", "a", 2, {"eu": 150.0})]
    >>> check_placements(p, ps), placement_cost(p, ps)
    ([], 0.2)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.deploy.model import EPS, Problem

PLAN_SCHEMA = "modelport.plan/v1"
STATUSES = ("optimal", "feasible", "infeasible", "unknown")


@dataclass(frozen=True, slots=True)
class Placement:
    """``replicas`` of ``deployment`` on ``node``, answering ``serves[site]`` rps."""

    deployment: str
    node: str
    replicas: int
    serves: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "node": self.node,
            "replicas": self.replicas,
            "serves": {s: round(v, 6) for s, v in sorted(self.serves.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Placement:
        return cls(
            str(d["deployment"]),
            str(d["node"]),
            int(d["replicas"]),
            {str(k): float(v) for k, v in dict(d.get("serves", {})).items()},
        )


@dataclass(frozen=True, slots=True)
class NodeUsage:
    """How much of a node the placements use."""

    node: str
    kind: str
    site: str
    cost_per_hour: float
    replicas: int
    cpu: float
    cpu_used: float
    memory_mb: float
    memory_mb_used: float
    accelerators: int
    accelerators_used: int

    @property
    def used(self) -> bool:
        return self.replicas > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "kind": self.kind,
            "site": self.site,
            "cost_per_hour": self.cost_per_hour,
            "replicas": self.replicas,
            "cpu_used": round(self.cpu_used, 6),
            "cpu": self.cpu,
            "cpu_pct": round(100 * self.cpu_used / self.cpu, 2),
            "memory_mb_used": round(self.memory_mb_used, 6),
            "memory_mb": self.memory_mb,
            "memory_pct": round(100 * self.memory_mb_used / self.memory_mb, 2),
            "accelerators_used": self.accelerators_used,
            "accelerators": self.accelerators,
        }


def placement_cost(problem: Problem, placements: Iterable[Placement]) -> float:
    """Sum of ``cost_per_hour`` over nodes hosting at least one replica."""
    by_name = {n.name: n for n in problem.nodes}
    used = {p.node for p in placements if p.replicas > 0}
    return round(sum(by_name[n].cost_per_hour for n in used), 9)


def utilisation(problem: Problem, placements: Iterable[Placement]) -> list[NodeUsage]:
    """Per-node usage of every node of the fleet, in fleet order."""
    deployments = {d.name: d for d in problem.deployments}
    cpu: dict[str, float] = defaultdict(float)
    mem: dict[str, float] = defaultdict(float)
    acc: dict[str, int] = defaultdict(int)
    reps: dict[str, int] = defaultdict(int)
    nodes = {n.name: n for n in problem.nodes}
    for p in placements:
        prof = problem.profile_on(deployments[p.deployment], nodes[p.node])
        cpu[p.node] += prof.cpu * p.replicas
        mem[p.node] += prof.memory_mb * p.replicas
        acc[p.node] += prof.accelerators * p.replicas
        reps[p.node] += p.replicas
    return [
        NodeUsage(
            n.name,
            n.kind,
            n.site,
            n.cost_per_hour,
            reps[n.name],
            n.cpu,
            cpu[n.name],
            n.memory_mb,
            mem[n.name],
            n.accelerators,
            acc[n.name],
        )
        for n in problem.nodes
    ]


def mean_network_latency(problem: Problem, placements: Iterable[Placement]) -> float | None:
    """Request-weighted mean network latency (ms) of the served demand."""
    nodes = {n.name: n for n in problem.nodes}
    total = weighted = 0.0
    for p in placements:
        for site, rps in p.serves.items():
            lat = problem.network_latency(nodes[p.node], site)
            if lat is not None and rps > 0:
                total += rps
                weighted += rps * lat
    return round(weighted / total, 6) if total > 0 else None


def check_placements(problem: Problem, placements: Sequence[Placement]) -> list[str]:
    """Every way ``placements`` break the problem's rules (empty when they are valid)."""
    errors: list[str] = []
    nodes = {n.name: n for n in problem.nodes}
    deployments = {d.name: d for d in problem.deployments}
    per_dep: dict[str, list[Placement]] = defaultdict(list)
    for p in placements:
        if p.node not in nodes or p.deployment not in deployments:
            errors.append(f"{p.deployment}@{p.node}: unknown deployment or node")
            continue
        if p.replicas < 0:
            errors.append(f"{p.deployment}@{p.node}: negative replicas")
            continue
        per_dep[p.deployment].append(p)
    for u in utilisation(problem, [p for ps in per_dep.values() for p in ps]):
        if u.cpu_used > u.cpu + EPS or u.memory_mb_used > u.memory_mb + EPS:
            errors.append(f"node {u.node}: over capacity (cpu or memory)")
        if u.accelerators_used > u.accelerators:
            errors.append(f"node {u.node}: over its accelerators")
    for d in problem.deployments:
        ps = [p for p in per_dep.get(d.name, []) if p.replicas > 0]
        total = sum(p.replicas for p in ps)
        if total < d.min_replicas:
            errors.append(f"{d.name}: {total} replicas < min_replicas {d.min_replicas}")
        if d.max_replicas is not None and total > d.max_replicas:
            errors.append(f"{d.name}: {total} replicas > max_replicas {d.max_replicas}")
        served: dict[str, float] = defaultdict(float)
        per_site: dict[str, int] = defaultdict(int)
        for p in ps:
            node = nodes[p.node]
            if not problem.allowed(d, node):
                errors.append(f"{d.name}: node {node.name} breaks its constraints or is too small")
            if d.constraints.spread == "node" and p.replicas > 1:
                errors.append(f"{d.name}: {p.replicas} replicas on {node.name} with spread=node")
            per_site[node.site] += p.replicas
            cap = problem.profile_on(d, node).rps_per_replica * p.replicas
            if sum(p.serves.values()) > cap * (1 + EPS) + EPS:
                errors.append(f"{d.name}@{node.name}: serves more than its replicas sustain")
            for site, rps in p.serves.items():
                if rps > EPS and not problem.serves(d, node, site):
                    errors.append(f"{d.name}@{node.name}: cannot serve {site} within latency")
                served[site] += rps
        if d.constraints.spread == "site":
            errors += [f"{d.name}: {k} replicas at site {s}" for s, k in per_site.items() if k > 1]
        for site, rps in d.demand.items():
            if served[site] < rps * (1 - 1e-6) - EPS:
                errors.append(f"{d.name}: site {site} gets {served[site]:g} of {rps:g} rps")
    return errors


@dataclass(frozen=True, slots=True)
class Baseline:
    """The greedy first-fit-decreasing answer, for comparison."""

    status: str
    cost: float | None
    nodes_used: int | None
    placements: tuple[Placement, ...] = ()
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": "first-fit-decreasing",
            "status": self.status,
            "cost": self.cost,
            "nodes_used": self.nodes_used,
            "reason": self.reason,
            "placements": [p.to_dict() for p in self.placements],
        }


@dataclass(frozen=True, slots=True)
class PlannedDeployment:
    """What rendering needs to know about a placed deployment.

    ``cpu``/``memory_mb``/``accelerators`` are per-replica requests (the largest over the
    node classes it landed on); ``nodes`` maps node name to replica count.
    """

    name: str
    model: str
    replicas: int
    min_replicas: int
    max_replicas: int | None
    latency_p99_ms: float | None
    cpu: float
    memory_mb: float
    accelerators: int
    rps_per_replica: float
    spread: str | None
    nodes: Mapping[str, int]
    canary_model: str | None = None
    canary_percent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "replicas": self.replicas,
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "latency_p99_ms": self.latency_p99_ms,
            "resources": {
                "cpu": self.cpu,
                "memory_mb": self.memory_mb,
                "accelerators": self.accelerators,
            },
            "rps_per_replica": self.rps_per_replica,
            "spread": self.spread,
            "nodes": dict(sorted(self.nodes.items())),
            "canary": (
                {"model": self.canary_model, "traffic_percent": self.canary_percent}
                if self.canary_model
                else None
            ),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlannedDeployment:
        res = d["resources"]
        canary = d.get("canary") or {}
        lat = d.get("latency_p99_ms")
        return cls(
            name=str(d["name"]),
            model=str(d["model"]),
            replicas=int(d["replicas"]),
            min_replicas=int(d["min_replicas"]),
            max_replicas=None if d.get("max_replicas") is None else int(d["max_replicas"]),
            latency_p99_ms=None if lat is None else float(lat),
            cpu=float(res["cpu"]),
            memory_mb=float(res["memory_mb"]),
            accelerators=int(res.get("accelerators", 0)),
            rps_per_replica=float(d.get("rps_per_replica", 0.0)),
            spread=d.get("spread"),
            nodes={str(k): int(v) for k, v in dict(d["nodes"]).items()},
            canary_model=canary.get("model"),
            canary_percent=int(canary.get("traffic_percent", 0)),
        )


def planned_deployments(
    problem: Problem, placements: Sequence[Placement]
) -> tuple[PlannedDeployment, ...]:
    """Summaries of every deployment of ``problem`` under ``placements``."""
    nodes = {n.name: n for n in problem.nodes}
    out = []
    for d in problem.deployments:
        ps = [p for p in placements if p.deployment == d.name and p.replicas > 0]
        profiles = [problem.profile_on(d, nodes[p.node]) for p in ps] or [d.profile]
        lat = d.latency_p99_ms
        out.append(
            PlannedDeployment(
                name=d.name,
                model=d.model,
                replicas=sum(p.replicas for p in ps),
                min_replicas=d.min_replicas,
                max_replicas=d.max_replicas,
                latency_p99_ms=None if lat == float("inf") else lat,
                cpu=max(p.cpu for p in profiles),
                memory_mb=max(p.memory_mb for p in profiles),
                accelerators=max(p.accelerators for p in profiles),
                rps_per_replica=min(p.rps_per_replica for p in profiles),
                spread=d.constraints.spread,
                nodes={p.node: p.replicas for p in ps},
                canary_model=d.canary.model if d.canary else None,
                canary_percent=d.canary.traffic_percent if d.canary else 0,
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Blocker:
    """One reason a deployment cannot be placed.

    ``constraint`` names what blocks it (``labels``, ``site``, ``kind``, ``resources``,
    ``accelerators``, ``latency``, ``demand``, ``spread``, ``min_replicas``,
    ``max_replicas``, ``memory``, ``cpu``, ``packing``); ``hint`` says what to change.
    """

    deployment: str
    constraint: str
    message: str
    hint: str = ""
    nodes: tuple[str, ...] = ()
    with_deployments: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "constraint": self.constraint,
            "message": self.message,
            "hint": self.hint,
            "nodes": list(self.nodes),
            "with_deployments": list(self.with_deployments),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Blocker:
        return cls(
            str(d["deployment"]),
            str(d["constraint"]),
            str(d["message"]),
            str(d.get("hint", "")),
            tuple(d.get("nodes", ())),
            tuple(d.get("with_deployments", ())),
        )


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why no placement exists, as a summary and the blocking constraints."""

    summary: str
    blockers: tuple[Blocker, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "blockers": [b.to_dict() for b in self.blockers]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Explanation:
        return cls(str(d["summary"]), tuple(Blocker.from_dict(b) for b in d.get("blockers", ())))

    def __str__(self) -> str:
        lines = [self.summary]
        for b in self.blockers:
            lines.append(f"- {b.deployment} [{b.constraint}]: {b.message}")
            if b.hint:
                lines.append(f"  fix: {b.hint}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Plan:
    """The answer of ``deploy plan``: what runs where, what it costs, how sure we are.

    ``bound`` is the best proven lower bound on the cost and ``gap`` is
    ``(cost - bound) / cost`` (0 when ``status`` is ``optimal``).
    """

    status: str
    cost: float | None
    bound: float | None
    gap: float | None
    placements: tuple[Placement, ...]
    utilisation: tuple[NodeUsage, ...]
    greedy: Baseline | None
    explanation: Explanation | None
    deployments: tuple[PlannedDeployment, ...]
    mean_latency_ms: float | None = None
    solve_seconds: float = 0.0
    solver: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``plan.json`` document (keys in a fixed order)."""
        return {
            "schema": PLAN_SCHEMA,
            "status": self.status,
            "cost": self.cost,
            "bound": self.bound,
            "gap": self.gap,
            "mean_latency_ms": self.mean_latency_ms,
            "solve_seconds": round(self.solve_seconds, 3),
            "solver": dict(self.solver),
            "placements": [p.to_dict() for p in self.placements],
            "utilisation": [u.to_dict() for u in self.utilisation if u.used],
            "greedy": self.greedy.to_dict() if self.greedy else None,
            "explanation": self.explanation.to_dict() if self.explanation else None,
            "deployments": [d.to_dict() for d in self.deployments],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        """Read a ``plan.json`` document back (utilisation and greedy are not re-read)."""
        from modelport.core.errors import InvalidArgument

        try:
            if d.get("schema") != PLAN_SCHEMA:
                raise InvalidArgument(
                    f"not a placement plan: schema is {d.get('schema')!r}, "
                    f"expected {PLAN_SCHEMA!r} (write one with `modelport deploy plan`)"
                )
            status = str(d["status"])
            if status not in STATUSES:
                raise InvalidArgument(f"plan status {status!r} is not one of {STATUSES}")
            expl = d.get("explanation")
            return cls(
                status=status,
                cost=d.get("cost"),
                bound=d.get("bound"),
                gap=d.get("gap"),
                placements=tuple(Placement.from_dict(p) for p in d.get("placements", ())),
                utilisation=(),
                greedy=None,
                explanation=Explanation.from_dict(expl) if expl else None,
                deployments=tuple(PlannedDeployment.from_dict(x) for x in d["deployments"]),
                mean_latency_ms=d.get("mean_latency_ms"),
                solve_seconds=float(d.get("solve_seconds", 0.0)),
                solver=dict(d.get("solver", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InvalidArgument(f"malformed plan: {type(e).__name__}: {e}") from e
