from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, Id, SessionDep, SessionRoute
from app.catalog import service as catalog
from models.cluster import ClusterCreate, ClusterPublic
from models.taxonomy import Family, MaterialPublic, ProcessPublic

router = APIRouter(tags=["catalog"], route_class=SessionRoute)


@router.get("/clusters", response_model=list[ClusterPublic])
def list_clusters(session: SessionDep, _user: CurrentUser) -> list[ClusterPublic]:
    return [ClusterPublic.model_validate(c) for c in catalog.list_clusters(session=session)]


@router.get("/clusters/{cluster_id}", response_model=ClusterPublic)
def get_cluster(session: SessionDep, _user: CurrentUser, cluster_id: Id) -> ClusterPublic:
    return ClusterPublic.model_validate(
        catalog.get_cluster_or_raise(session=session, cluster_id=cluster_id)
    )


@router.post("/clusters", response_model=ClusterPublic, status_code=201)
def create_cluster(session: SessionDep, user: CurrentUser, data: ClusterCreate) -> ClusterPublic:
    return ClusterPublic.model_validate(
        catalog.create_cluster(session=session, user=user, data=data)
    )


@router.get("/processes", response_model=list[ProcessPublic])
def list_processes(
    session: SessionDep, _user: CurrentUser, family: Family | None = None
) -> list[ProcessPublic]:
    """The process taxonomy, each process with the materials it takes."""
    return catalog.list_processes(session=session, family=family.value if family else None)


@router.get("/materials", response_model=list[MaterialPublic])
def list_materials(session: SessionDep, _user: CurrentUser) -> list[MaterialPublic]:
    return [MaterialPublic.model_validate(m) for m in catalog.list_materials(session=session)]
