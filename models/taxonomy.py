"""The process taxonomy: families, processes and the materials each takes.

The rows are data (seeded by the migrations from ``models/data/taxonomy.json``).
"""

from __future__ import annotations

from enum import StrEnum

from sqlmodel import Field, SQLModel


class Family(StrEnum):
    cnc = "cnc"
    garment = "garment"
    additive = "additive"
    service = "service"


class Process(SQLModel, table=True):
    key: str = Field(primary_key=True, max_length=60)
    family: str = Field(max_length=20, index=True)
    name_en: str = Field(max_length=120)
    name_zh: str = Field(max_length=120)


class Material(SQLModel, table=True):
    key: str = Field(primary_key=True, max_length=60)
    name_en: str = Field(max_length=120)
    name_zh: str = Field(max_length=120)


class ProcessMaterial(SQLModel, table=True):
    __tablename__ = "process_material"

    process_key: str = Field(foreign_key="process.key", primary_key=True, max_length=60)
    material_key: str = Field(foreign_key="material.key", primary_key=True, max_length=60)


class ProcessPublic(SQLModel):
    key: str
    family: str
    name_en: str
    name_zh: str
    materials: list[str]


class MaterialPublic(SQLModel):
    key: str
    name_en: str
    name_zh: str
