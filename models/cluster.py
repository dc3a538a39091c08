"""Industrial clusters."""

from __future__ import annotations

from sqlmodel import Field, SQLModel

from models.base import MAX_ID, json_list


class ClusterBase(SQLModel):
    key: str = Field(min_length=2, max_length=60, schema_extra={"pattern": r"^[a-z0-9-]+$"})
    name_en: str = Field(min_length=2, max_length=200)
    name_zh: str = Field(min_length=1, max_length=200)
    city: str = Field(max_length=100)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    specialty: str = Field(default="", max_length=300)
    families: list[str] = Field(default_factory=list)
    operator_org_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class Cluster(ClusterBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=60, unique=True)
    families: list[str] = Field(default_factory=list, sa_column=json_list())
    operator_org_id: int | None = Field(default=None, foreign_key="organization.id", index=True)


class ClusterCreate(ClusterBase):
    pass


class ClusterPublic(ClusterBase):
    id: int
