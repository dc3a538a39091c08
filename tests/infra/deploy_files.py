"""Where the deployment files are and how the tests read them (tests/infra)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.config import REPO_ROOT

INFRA = REPO_ROOT / "infra"
DOCKERFILE = INFRA / "Dockerfile"
ENTRYPOINT = INFRA / "docker" / "entrypoint.sh"
COMPOSE = INFRA / "compose.yml"
K8S = INFRA / "k8s"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    stage: int  # 0 for the first FROM's stage
    keyword: str  # upper case
    value: str  # the rest, continuation lines joined


def dockerfile_instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions in order (comments dropped, continuations joined)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage=max(stage, 0), keyword=keyword, value=value.strip()))
    return out


def exec_form(value: str) -> list[str]:
    """A JSON-array instruction argument (CMD, ENTRYPOINT, HEALTHCHECK's CMD)."""
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(v, str) for v in parsed), value
    return parsed


def healthcheck_command(text: str) -> list[str]:
    """The final stage's HEALTHCHECK command, in exec form."""
    checks = [i for i in dockerfile_instructions(text) if i.keyword == "HEALTHCHECK"]
    assert checks, "the Dockerfile has a HEALTHCHECK"
    _, _, command = checks[-1].value.partition("CMD ")
    return exec_form(command.strip())


def entrypoint_roles(text: str) -> set[str]:
    """The role names the entrypoint's ``case`` knows (``*`` is the passthrough)."""
    return set(re.findall(r"^\s+([a-z][a-z-]*)\)\s*$", text, flags=re.MULTILINE))


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert all(isinstance(d, dict) for d in docs), path
    return docs


def k8s_manifests() -> list[Path]:
    """Every Kubernetes manifest (the kustomizations are not Kubernetes objects)."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
