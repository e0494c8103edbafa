"""Reading ``fleet.yaml`` and ``deploy.yaml`` into a :class:`~modelport.deploy.model.Problem`.

Both files are validated with pydantic: unknown fields, wrong types and out-of-range
values fail with :class:`~modelport.core.errors.InvalidArgument` naming the file and the
field (``deploy.yaml: deployments[1].latency_p99_ms: Input should be greater than 0``).
References across the files (sites, nodes) are checked next, with the same kind of
message. YAML and JSON are both accepted.

``fleet.yaml``::

    nodes:
      - {name: edge-1, kind: edge, cpu: 4, memory_mb: 4096, cost_per_hour: 0,
         site: plant-a, labels: {camera: "yes"}}
    sites:
      - {name: plant-a, latency_ms: {edge-1: 1, cloud-1: 25}}

``deploy.yaml``::

    deployments:
      - name: detector
        model: detector@production
        demand: {plant-a: 40}
        latency_p99_ms: 30
        min_replicas: 1
        constraints: {site: plant-a, labels: {camera: "yes"}, spread: node}
        profile: {cpu: 1, memory_mb: 900, rps_per_replica: 60, latency_ms: 12}

Extensions beyond those shapes: node ``speed`` and ``node_class``, site ``default_ms``,
deployment ``max_replicas``, ``profiles`` (per node class), ``canary`` and
``constraints.kind``.

Example:
    >>> problem = load_problem("fleet.yaml", "deploy.yaml")    # doctest: +SKIP
    >>> [d.name for d in problem.deployments]                 # doctest: +SKIP
    ['detector']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelport.core.errors import InvalidArgument, MissingDependency, NotFound
from modelport.core.types import ModelRef
from modelport.deploy.model import (
    Canary,
    Constraints,
    Deployment,
    Node,
    Problem,
    ReplicaProfile,
    Site,
)

MAX_FILE_BYTES = 16 * 1024 * 1024
#: Kubernetes names: DNS-1123 subdomain (nodes) and label (deployments, which name Services).
NODE_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
DEPLOYMENT_NAME = r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)

#: ``model ref -> {node class: profile}`` of stored profiles (``default`` is the reference).
ProfileLookup = Callable[[str], Mapping[str, ReplicaProfile] | None]

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Labels = dict[Annotated[str, Field(pattern=LABEL_KEY)], Annotated[str, Field(pattern=LABEL_VALUE)]]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSpec(_Spec):
    name: Annotated[str, Field(pattern=NODE_NAME)]
    kind: Literal["cloud", "edge"]
    cpu: Positive
    memory_mb: Positive
    accelerators: Annotated[int, Field(ge=0)] = 0
    cost_per_hour: NonNegative = 0.0
    site: Annotated[str, Field(min_length=1, max_length=63)]
    labels: Labels = {}
    speed: Positive = 1.0
    node_class: str | None = None


class SiteSpec(_Spec):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    latency_ms: dict[str, NonNegative] = {}
    default_ms: NonNegative | None = None


class FleetSpec(_Spec):
    nodes: Annotated[list[NodeSpec], Field(min_length=1)]
    sites: list[SiteSpec] = []


class ProfileSpec(_Spec):
    cpu: Positive
    memory_mb: Positive
    rps_per_replica: Positive
    latency_ms: NonNegative = 0.0
    accelerators: Annotated[int, Field(ge=0)] = 0

    def to_profile(self) -> ReplicaProfile:
        return ReplicaProfile(
            self.cpu, self.memory_mb, self.rps_per_replica, self.latency_ms, self.accelerators
        )


class ConstraintsSpec(_Spec):
    site: str | None = None
    labels: Labels = {}
    spread: Literal["node", "site"] | None = None
    kind: Literal["cloud", "edge"] | None = None


class CanarySpec(_Spec):
    model: str
    traffic_percent: Annotated[int, Field(ge=0, le=100)]

    @field_validator("model")
    @classmethod
    def _ref(cls, v: str) -> str:
        ModelRef.parse(v)
        return v


class DeploymentSpec(_Spec):
    name: Annotated[str, Field(pattern=DEPLOYMENT_NAME)]
    model: str
    demand: dict[str, NonNegative] = {}
    latency_p99_ms: Positive | None = None
    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] | None = None
    constraints: ConstraintsSpec = ConstraintsSpec()
    profile: ProfileSpec | None = None
    profiles: dict[str, ProfileSpec] = {}
    canary: CanarySpec | None = None

    @field_validator("model")
    @classmethod
    def _ref(cls, v: str) -> str:
        try:
            ModelRef.parse(v)
        except InvalidArgument as e:
            raise ValueError(str(e)) from e
        return v


class DeploymentsSpec(_Spec):
    deployments: Annotated[list[DeploymentSpec], Field(min_length=1)]


def read_document(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or JSON file (NotFound, or InvalidArgument with the line)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError as e:
        raise NotFound(f"no such file: {p}") from e
    except OSError as e:
        raise InvalidArgument(f"{p}: cannot read: {e.strerror}") from e
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidArgument(f"{p.name}: larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is in the deploy extra
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise MissingDependency.for_extra("yaml", "deploy", "YAML files") from e
    else:
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(e, "problem", None) or type(e).__name__
            raise InvalidArgument(f"{p.name}: not valid YAML{where}: {problem}") from e
    if not isinstance(data, dict):
        raise InvalidArgument(f"{p.name}: the top level must be a mapping")
    return data


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _validate(spec: type[_Spec], data: dict[str, Any], where: str) -> Any:
    try:
        return spec.model_validate(data)
    except ValidationError as e:
        lines = [f"{where}: {_loc(err['loc'])}: {err['msg']}" for err in e.errors()[:5]]
        more = f" (and {e.error_count() - 5} more)" if e.error_count() > 5 else ""
        raise InvalidArgument("; ".join(lines) + more) from None


def parse_fleet(data: dict[str, Any], where: str = "fleet") -> FleetSpec:
    """Validate a fleet document; errors name ``where`` and the field."""
    fleet: FleetSpec = _validate(FleetSpec, data, where)
    names = [n.name for n in fleet.nodes]
    for k, n in enumerate(names):
        if n in names[:k]:
            raise InvalidArgument(f"{where}: nodes[{k}].name: duplicate node name {n!r}")
    site_names = [s.name for s in fleet.sites]
    for k, s in enumerate(fleet.sites):
        if s.name in site_names[:k]:
            raise InvalidArgument(f"{where}: sites[{k}].name: duplicate site name {s.name!r}")
        for node in s.latency_ms:
            if node not in names:
                raise InvalidArgument(
                    f"{where}: sites[{k}].latency_ms.{node}: unknown node {node!r}"
                )
    return fleet


def parse_deployments(data: dict[str, Any], where: str = "deployments") -> DeploymentsSpec:
    """Validate a deployments document; errors name ``where`` and the field."""
    deps: DeploymentsSpec = _validate(DeploymentsSpec, data, where)
    names = [d.name for d in deps.deployments]
    for k, n in enumerate(names):
        if n in names[:k]:
            raise InvalidArgument(f"{where}: deployments[{k}].name: duplicate name {n!r}")
    for k, d in enumerate(deps.deployments):
        if d.max_replicas is not None and d.max_replicas < d.min_replicas:
            raise InvalidArgument(
                f"{where}: deployments[{k}].max_replicas: {d.max_replicas} is below "
                f"min_replicas {d.min_replicas}"
            )
    return deps


def build_problem(
    fleet: FleetSpec,
    deployments: DeploymentsSpec,
    profiles: ProfileLookup | None = None,
    *,
    where: str = "deployments",
) -> Problem:
    """Check references between the two documents and build the :class:`Problem`."""
    nodes = tuple(
        Node(
            n.name, n.kind, n.cpu, n.memory_mb, n.cost_per_hour, n.site, n.accelerators,
            dict(n.labels), n.speed, n.node_class,
        )
        for n in fleet.nodes
    )  # fmt: skip
    sites = tuple(Site(s.name, dict(s.latency_ms), s.default_ms) for s in fleet.sites)
    known = {s.name for s in sites} | {n.site for n in nodes}
    out = []
    for k, d in enumerate(deployments.deployments):
        at = f"{where}: deployments[{k}]"
        for site in d.demand:
            if site not in known:
                raise InvalidArgument(
                    f"{at}.demand.{site}: unknown site {site!r}; known: {sorted(known)}"
                )
        if d.constraints.site is not None and d.constraints.site not in known:
            raise InvalidArgument(
                f"{at}.constraints.site: unknown site {d.constraints.site!r}; "
                f"known: {sorted(known)}"
            )
        base, classes = _profiles(d, profiles, at)
        out.append(
            Deployment(
                name=d.name,
                model=d.model,
                profile=base,
                demand=dict(d.demand),
                latency_p99_ms=d.latency_p99_ms or float("inf"),
                min_replicas=d.min_replicas,
                max_replicas=d.max_replicas,
                constraints=Constraints(
                    d.constraints.site,
                    dict(d.constraints.labels),
                    d.constraints.spread,
                    d.constraints.kind,
                ),
                class_profiles=classes,
                canary=Canary(d.canary.model, d.canary.traffic_percent) if d.canary else None,
            )
        )
    return Problem(nodes, sites, tuple(out))


def _profiles(
    d: DeploymentSpec, lookup: ProfileLookup | None, at: str
) -> tuple[ReplicaProfile, dict[str, ReplicaProfile]]:
    classes = {name: p.to_profile() for name, p in d.profiles.items()}
    if d.profile is not None:
        return d.profile.to_profile(), classes
    stored = dict(lookup(d.model) or {}) if lookup is not None else {}
    if not stored:
        raise InvalidArgument(
            f"{at}.profile: missing, and {d.model!r} has no stored profile; run "
            f"`modelport profile {d.model}` or give profile: {{cpu, memory_mb, "
            "rps_per_replica, latency_ms}"
        )
    base = stored.pop("default", None) or stored.pop(sorted(stored)[0])
    return base, {**stored, **classes}


def load_problem(
    fleet_path: str | Path,
    deployments_path: str | Path,
    profiles: ProfileLookup | None = None,
) -> Problem:
    """Read, validate and combine ``fleet.yaml`` and ``deploy.yaml``.

    ``profiles`` resolves a model reference to its stored profiles, for deployments
    that give none.
    """
    fp, dp = Path(fleet_path), Path(deployments_path)
    fleet = parse_fleet(read_document(fp), fp.name)
    deps = parse_deployments(read_document(dp), dp.name)
    return build_problem(fleet, deps, profiles, where=dp.name)
