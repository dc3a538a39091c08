"""Reference data every signed-in user reads: clusters and the process taxonomy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlmodel import Session, col, select

from app.accounts.service import is_admin
from app.db import begin_write
from app.errors import (
    AlreadyExists,
    ClusterNotFound,
    InvalidInput,
    PermissionDenied,
    UnknownMaterial,
    UnknownProcess,
)
from matching.rules import haversine_km
from models import Cluster, Material, Organization, Process, ProcessMaterial, User
from models.cluster import ClusterCreate
from models.taxonomy import ProcessPublic

# A machine within this distance of a cluster's centre belongs to it, and so does an
# order delivered there (its cluster's match runs see it). One radius for both, so that
# a cluster run matches the orders of its area with the machines of the same area.
CLUSTER_RADIUS_KM = 60.0


def list_clusters(*, session: Session) -> list[Cluster]:
    return list(session.exec(select(Cluster).order_by(col(Cluster.id))).all())


def get_cluster_or_raise(*, session: Session, cluster_id: int) -> Cluster:
    cluster = session.get(Cluster, cluster_id)
    if cluster is None:
        raise ClusterNotFound("cluster not found", field="cluster_id")
    return cluster


def create_cluster(*, session: Session, user: User, data: ClusterCreate) -> Cluster:
    begin_write(session)
    if not is_admin(user):
        raise PermissionDenied("only platform admins manage clusters")
    if session.exec(select(Cluster.id).where(Cluster.key == data.key)).first() is not None:
        raise AlreadyExists("a cluster with this key exists", field="key")
    if data.operator_org_id is not None:
        org = session.get(Organization, data.operator_org_id)
        if org is None or not org.is_operator:
            raise InvalidInput("not an operator organization", field="operator_org_id")
    unknown = set(data.families) - {"cnc", "garment", "additive", "service"}
    if unknown:
        raise InvalidInput(f"unknown process families: {sorted(unknown)}", field="families")
    cluster = Cluster.model_validate(data)
    session.add(cluster)
    session.commit()
    session.refresh(cluster)
    return cluster


def nearest_cluster(
    clusters: Sequence[Cluster], lat: float | None, lon: float | None
) -> int | None:
    """The nearest cluster within :data:`CLUSTER_RADIUS_KM` of a point, if any: where a
    machine belongs, and which cluster's match runs see an order delivered there."""
    if lat is None or lon is None:
        return None
    best: tuple[float, int] | None = None
    for cluster in clusters:
        assert cluster.id is not None
        d = haversine_km(lat, lon, cluster.lat, cluster.lon)
        if d <= CLUSTER_RADIUS_KM and (best is None or d < best[0]):
            best = (d, cluster.id)
    return best[1] if best else None


def nearest_cluster_id(*, session: Session, lat: float, lon: float) -> int | None:
    return nearest_cluster(list_clusters(session=session), lat, lon)


def list_processes(*, session: Session, family: str | None = None) -> list[ProcessPublic]:
    query = select(Process).order_by(col(Process.family), col(Process.key))
    if family is not None:
        query = query.where(Process.family == family)
    materials: dict[str, list[str]] = defaultdict(list)
    for link in session.exec(select(ProcessMaterial)).all():
        materials[link.process_key].append(link.material_key)
    return [
        ProcessPublic(**p.model_dump(), materials=sorted(materials[p.key]))
        for p in session.exec(query).all()
    ]


def list_materials(*, session: Session) -> list[Material]:
    return list(session.exec(select(Material).order_by(col(Material.key))).all())


def check_process_materials(
    *,
    session: Session,
    process_key: str,
    materials: list[str],
    process_field: str = "process_key",
    material_field: str = "materials",
) -> Process:
    """The process exists and takes every material; otherwise a 422 naming the field."""
    process = session.get(Process, process_key)
    if process is None:
        raise UnknownProcess(f"unknown process {process_key!r}", field=process_field)
    allowed = set(
        session.exec(
            select(ProcessMaterial.material_key).where(ProcessMaterial.process_key == process_key)
        ).all()
    )
    for material in materials:
        if material not in allowed:
            raise UnknownMaterial(
                f"material {material!r} is not taken by process {process_key!r}",
                field=material_field,
            )
    return process
