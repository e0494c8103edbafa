"""The placement problem as plain data: nodes, sites, deployments and their profiles.

Everything here is a frozen dataclass with no I/O, so the solver, the greedy baseline
and the explanations are pure functions over a :class:`Problem`. Files are turned into
these objects by :mod:`modelport.deploy.fleet`.

Rules shared by every algorithm live here, once:

- a node can host a deployment when it has the labels, site and kind the deployment asks
  for and one replica fits its cores, memory and accelerators;
- a replica on node ``n`` serves client site ``s`` only when the network latency from
  ``n`` to ``s`` plus the replica's compute latency on ``n`` is within the deployment's
  p99 objective;
- a node's speed scales the reference profile (latency divided, throughput multiplied)
  unless the deployment has a profile measured on that node's class.

Example:
    >>> n = Node("edge-1", "edge", cpu=4, memory_mb=4096, site="plant")
    >>> d = Deployment("det", "det:1", demand={"plant": 50}, latency_p99_ms=40,
    ...                profile=ReplicaProfile(cpu=1, memory_mb=512, rps_per_replica=30,
    ...                                       latency_ms=20))
    >>> p = Problem((n,), (), (d,))
    >>> p.network_latency(n, "plant"), p.serves(d, n, "plant"), p.max_replicas_on(d, n)
    (0.0, True, 4)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from modelport.core.errors import InvalidArgument

#: Tolerance for float comparisons of capacities and latencies.
EPS = 1e-9
NODE_KINDS = ("cloud", "edge")
SPREADS = ("node", "site")


@dataclass(frozen=True, slots=True)
class ReplicaProfile:
    """What one replica needs and delivers on a reference node (speed 1.0).

    ``latency_ms`` is the replica's p99 compute latency; ``rps_per_replica`` the request
    rate one replica sustains within it.

    Example:
        >>> ReplicaProfile(1, 512, 100, 10).scaled(0.5)
        ReplicaProfile(cpu=1, memory_mb=512, rps_per_replica=50.0, latency_ms=20.0, accelerators=0)
    """

    cpu: float
    memory_mb: float
    rps_per_replica: float
    latency_ms: float = 0.0
    accelerators: int = 0

    def __post_init__(self) -> None:
        if self.cpu <= 0 or self.memory_mb <= 0 or self.rps_per_replica <= 0:
            raise InvalidArgument("a profile needs cpu, memory_mb and rps_per_replica > 0")
        if self.latency_ms < 0 or self.accelerators < 0:
            raise InvalidArgument("a profile's latency_ms and accelerators must be >= 0")

    def scaled(self, speed: float) -> ReplicaProfile:
        """The same replica on a node ``speed`` times as fast as the reference."""
        if speed <= 0:
            raise InvalidArgument(f"speed factor must be > 0, got {speed}")
        return replace(
            self, rps_per_replica=self.rps_per_replica * speed, latency_ms=self.latency_ms / speed
        )


@dataclass(frozen=True, slots=True)
class Node:
    """A machine that can host replicas. ``cost_per_hour`` is paid when it hosts any."""

    name: str
    kind: str
    cpu: float
    memory_mb: float
    cost_per_hour: float = 0.0
    site: str = ""
    accelerators: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    speed: float = 1.0
    node_class: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in NODE_KINDS:
            raise InvalidArgument(f"node {self.name!r}: kind must be one of {NODE_KINDS}")
        if self.cpu <= 0 or self.memory_mb <= 0 or self.speed <= 0:
            raise InvalidArgument(f"node {self.name!r}: cpu, memory_mb and speed must be > 0")
        if self.cost_per_hour < 0 or self.accelerators < 0:
            raise InvalidArgument(
                f"node {self.name!r}: cost_per_hour and accelerators must be >= 0"
            )


@dataclass(frozen=True, slots=True)
class Site:
    """A place clients send requests from, with the network latency to each node.

    Nodes missing from ``latency_ms`` are ``default_ms`` away when that is set;
    otherwise nodes at this very site are 0 ms away and all others unreachable.
    """

    name: str
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    default_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Constraints:
    """Where replicas may run: a site, required node labels, a node kind, and spreading
    (``node``: at most one replica per node; ``site``: at most one per site)."""

    site: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    spread: str | None = None
    kind: str | None = None

    def __post_init__(self) -> None:
        if self.spread is not None and self.spread not in SPREADS:
            raise InvalidArgument(f"spread must be one of {SPREADS}, got {self.spread!r}")
        if self.kind is not None and self.kind not in NODE_KINDS:
            raise InvalidArgument(f"constraint kind must be one of {NODE_KINDS}")


@dataclass(frozen=True, slots=True)
class Canary:
    """A rollout in progress: ``traffic_percent`` of requests go to ``model``."""

    model: str
    traffic_percent: int

    def __post_init__(self) -> None:
        if not 0 <= self.traffic_percent <= 100:
            raise InvalidArgument("canary traffic_percent must be between 0 and 100")


@dataclass(frozen=True, slots=True)
class Deployment:
    """A model to run: its demand per client site, latency objective and rules.

    ``class_profiles`` holds profiles measured on named node classes; nodes of other
    classes use ``profile`` scaled by their speed.
    """

    name: str
    model: str
    profile: ReplicaProfile
    demand: Mapping[str, float] = field(default_factory=dict)
    latency_p99_ms: float = math.inf
    min_replicas: int = 1
    max_replicas: int | None = None
    constraints: Constraints = field(default_factory=Constraints)
    class_profiles: Mapping[str, ReplicaProfile] = field(default_factory=dict)
    canary: Canary | None = None

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise InvalidArgument(f"deployment {self.name!r}: min_replicas must be >= 0")
        if self.max_replicas is not None and self.max_replicas < max(1, self.min_replicas):
            raise InvalidArgument(
                f"deployment {self.name!r}: max_replicas must be >= max(1, min_replicas)"
            )
        if any(v < 0 for v in self.demand.values()):
            raise InvalidArgument(f"deployment {self.name!r}: demand must be >= 0 rps")
        if self.latency_p99_ms <= 0:
            raise InvalidArgument(f"deployment {self.name!r}: latency_p99_ms must be > 0")

    @property
    def demand_sites(self) -> tuple[str, ...]:
        """Client sites with a positive demand, sorted."""
        return tuple(sorted(s for s, rps in self.demand.items() if rps > 0))

    @property
    def total_demand(self) -> float:
        return float(sum(self.demand.values()))


@dataclass(frozen=True, slots=True)
class Problem:
    """A fleet and the deployments to place on it.

    Construction checks that names are unique and that every site and node a
    deployment or a site refers to exists; an undeclared demand site that is some
    node's ``site`` is added with the default latency rule.
    """

    nodes: tuple[Node, ...]
    sites: tuple[Site, ...]
    deployments: tuple[Deployment, ...]
    _sites: dict[str, Site] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        node_names = [n.name for n in self.nodes]
        _unique(node_names, "node")
        _unique([s.name for s in self.sites], "site")
        _unique([d.name for d in self.deployments], "deployment")
        known = set(node_names)
        for s in self.sites:
            unknown = sorted(set(s.latency_ms) - known)
            if unknown:
                raise InvalidArgument(f"site {s.name!r}: latency_ms names unknown nodes {unknown}")
        sites = {s.name: s for s in self.sites}
        node_sites = {n.site for n in self.nodes}
        for d in self.deployments:
            for s_name in d.demand:
                if s_name not in sites:
                    if s_name not in node_sites:
                        raise InvalidArgument(
                            f"deployment {d.name!r}: demand names unknown site {s_name!r}; "
                            f"known sites: {sorted(set(sites) | node_sites)}"
                        )
                    sites[s_name] = Site(s_name)
        object.__setattr__(self, "_sites", sites)

    def site(self, name: str) -> Site:
        return self._sites[name]

    def network_latency(self, node: Node, site: str) -> float | None:
        """Milliseconds from ``node`` to clients at ``site``; None when unreachable."""
        s = self._sites.get(site)
        if s is None:
            return 0.0 if node.site == site else None
        if node.name in s.latency_ms:
            return float(s.latency_ms[node.name])
        if s.default_ms is not None:
            return float(s.default_ms)
        return 0.0 if node.site == site else None

    def profile_on(self, d: Deployment, node: Node) -> ReplicaProfile:
        """The replica profile of ``d`` on ``node`` (its class's, or scaled by speed)."""
        if node.node_class is not None and node.node_class in d.class_profiles:
            return d.class_profiles[node.node_class]
        return d.profile if node.speed == 1.0 else d.profile.scaled(node.speed)

    def allowed(self, d: Deployment, node: Node) -> bool:
        """Labels, site and kind constraints hold and one replica fits the empty node."""
        c = d.constraints
        if c.site is not None and node.site != c.site:
            return False
        if c.kind is not None and node.kind != c.kind:
            return False
        if any(node.labels.get(k) != v for k, v in c.labels.items()):
            return False
        return self.max_replicas_on(d, node) > 0

    def max_replicas_on(self, d: Deployment, node: Node) -> int:
        """How many replicas of ``d`` fit an empty ``node`` (spread=node caps it at 1)."""
        p = self.profile_on(d, node)
        fit = min(
            math.floor(node.cpu / p.cpu + EPS), math.floor(node.memory_mb / p.memory_mb + EPS)
        )
        if p.accelerators:
            fit = min(fit, node.accelerators // p.accelerators)
        if d.constraints.spread == "node":
            fit = min(fit, 1)
        return max(fit, 0)

    def serves(self, d: Deployment, node: Node, site: str) -> bool:
        """A replica of ``d`` on ``node`` answers ``site`` within the p99 objective."""
        net = self.network_latency(node, site)
        if net is None:
            return False
        return net + self.profile_on(d, node).latency_ms <= d.latency_p99_ms + EPS

    def candidates(self, d: Deployment) -> list[int]:
        """Indexes of nodes worth a replica of ``d``: allowed and, when ``d`` has
        demand, able to serve at least one of its demand sites."""
        sites = d.demand_sites
        return [
            i
            for i, n in enumerate(self.nodes)
            if self.allowed(d, n) and (not sites or any(self.serves(d, n, s) for s in sites))
        ]


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise InvalidArgument(f"duplicate {what} name {n!r}")
        seen.add(n)
