"""The deployment files in infra/ (and .dockerignore).

Each file is checked by a validator that carries its own schema or binary, installed with
the test extra (nothing is fetched at run time): hadolint for the Dockerfile, ShellCheck
for the entrypoint (as POSIX sh), check-jsonschema's bundled compose-spec schema for the
compose file, kubernetes-validate's bundled schemas (strict: unknown fields refused) for
the manifests. Every validator is also shown a broken copy, which it must refuse. Then
the facts across files that no schema knows: commands, settings, paths, ports, users.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import typer
from fastapi.testclient import TestClient
from pydantic import AliasChoices, ValidationError

import app.cli  # noqa: F401  (registers every command on the root app)
from app.cli.root import cli
from app.config import REPO_ROOT, Settings
from payments_stub import create_stub_app
from tests.infra.deploy_files import (
    COMPOSE,
    DOCKERFILE,
    DOCKERIGNORE,
    ENTRYPOINT,
    K8S,
    dockerfile_instructions,
    entrypoint_roles,
    exec_form,
    healthcheck_command,
    k8s_manifests,
    yaml_documents,
)

# The oldest Kubernetes release the manifests are meant for, and the newest whose schemas
# the pinned kubernetes-validate ships.
K8S_VERSIONS = ("1.29.0", str(kubernetes_validate.latest_version()))

ROLES = {"api", "worker", "migrate", "payments-stub"}
SECRETS = ("CAPSHARE_SECRET_KEY", "CAPSHARE_PAYMENTS_API_KEY", "CAPSHARE_PAYMENTS_WEBHOOK_SECRET")


# --- the validators -----------------------------------------------------------------------


def _tool(name: str) -> str:
    """A validator's executable, from the test extra (beside this Python)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} comes with the test extra: pip install -e '.[test]'"
    return str(path)


def _run(args: list[str]) -> list[str]:
    """A validator's complaints: none when it exits 0, else what it printed."""
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode == 0:
        return []
    return (proc.stdout + proc.stderr).strip().splitlines() or [f"exit {proc.returncode}"]


def hadolint(path: Path) -> list[str]:
    return _run([_tool("hadolint"), "--no-color", str(path)])


def shellcheck(path: Path) -> list[str]:
    return _run([_tool("shellcheck"), "--shell=sh", "--severity=style", "--format=gcc", str(path)])


def compose_spec(path: Path) -> list[str]:
    return _run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])


def kubernetes(path: Path) -> list[str]:
    problems: list[str] = []
    for doc in yaml_documents(path):
        what = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                problems.append(f"{what} (Kubernetes {version}): {where}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(f"{what}: {exc.message}")
    return problems


Validator = Callable[[Path], list[str]]


def test_the_dockerfile_passes_hadolint() -> None:
    assert hadolint(DOCKERFILE) == []


def test_the_entrypoint_passes_shellcheck_as_posix_sh() -> None:
    assert shellcheck(ENTRYPOINT) == []
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert ENTRYPOINT.stat().st_mode & 0o111, "the entrypoint is executable"


def test_the_compose_file_follows_the_compose_spec() -> None:
    assert compose_spec(COMPOSE) == []


@pytest.mark.parametrize("path", k8s_manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_each_kubernetes_manifest_follows_its_schema(path: Path) -> None:
    assert kubernetes(path) == []


@pytest.mark.parametrize(
    ("validator", "source", "old", "new"),
    [
        (hadolint, DOCKERFILE, "USER 10001:10001", "USER root"),
        (hadolint, DOCKERFILE, "FROM ${PYTHON_IMAGE} AS runtime", "FROM python AS runtime"),
        (shellcheck, ENTRYPOINT, 'if [ "$#" -gt 0 ]; then', "if [[ $# -gt 0 ]]; then"),
        (shellcheck, ENTRYPOINT, 'exec capshare worker "$@"', "exec capshare worker $@"),
        (compose_spec, COMPOSE, "service_completed_successfully", "completed"),
        (compose_spec, COMPOSE, '    command: ["worker"]', '    commands: ["worker"]'),
        (kubernetes, K8S / "api-deployment.yaml", "containerPort: 8000", "containerPort: http"),
        (kubernetes, K8S / "api-deployment.yaml", "  replicas: 2", "  replica: 2"),
        (kubernetes, K8S / "api-hpa.yaml", "autoscaling/v2", "autoscaling/v9"),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_each_validator_refuses_a_broken_copy(
    validator: Validator, source: Path, old: str, new: str, tmp_path: Path
) -> None:
    text = source.read_text()
    assert old in text, f"the mutation's anchor is in {source.name}"
    broken = tmp_path / source.name
    broken.write_text(text.replace(old, new, 1))
    assert validator(broken), f"{validator.__name__} accepted {source.name} with {new!r}"


# --- the facts across files ---------------------------------------------------------------


def _capshare_problems(args: list[str]) -> list[str]:
    """Whether ``capshare ARGS`` names a real command and real options of it."""
    command: Any = typer.main.get_command(cli)  # a click command (typer carries its own click)
    words = list(args)
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        command = command.commands.get(words[0])
        if command is None:
            return [f"capshare has no command {' '.join(args)!r}"]
        words = words[1:]
    if hasattr(command, "commands"):
        return [f"capshare {' '.join(args)!r} names a group, not a command"]
    options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    return [
        f"capshare {command.name}: no option {w}"
        for w in words
        if w.startswith("--") and w not in options
    ]


def _capshare_calls(script: str) -> Iterator[list[str]]:
    """Each ``capshare ...`` call in a shell script, up to a redirection, pipe or ``;``."""
    for line in script.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"\bcapshare\s+([^;|&>\n]*)", line):
            words = shlex.split(match.group(1))
            yield [w for w in words if not w.startswith(("$", '"$'))]


def test_the_entrypoint_knows_the_four_roles_and_each_runs_a_real_command() -> None:
    text = ENTRYPOINT.read_text()
    assert entrypoint_roles(text) == ROLES
    assert re.search(r'^\s+\*\)\s*\n\s+exec "\$role" "\$@"', text, re.MULTILINE), "passthrough"
    calls = list(_capshare_calls(text))
    assert len(calls) == len(ROLES)
    for call in calls:
        assert _capshare_problems(call) == []
    api = next(c for c in calls if c[0] == "serve")
    assert "--no-migrate" in api and "--demo" not in api, "the api replicas never migrate"


def _compose() -> dict[str, Any]:
    docs = yaml_documents(COMPOSE)
    assert len(docs) == 1
    return docs[0]


def _capshare_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return {
        n: s
        for n, s in services.items()
        if s.get("build", {}).get("dockerfile") == "infra/Dockerfile"
    }


def _containers() -> Iterator[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """(file, object, container) for every container and init container in the manifests."""
    for path in k8s_manifests():
        for doc in yaml_documents(path):
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in (*pod.get("initContainers", ()), *pod.get("containers", ())):
                yield path, doc, container


def _command_problems(args: list[str]) -> list[str]:
    """What the entrypoint would do with ARGS: a role, a capshare call, or sh -c over them."""
    if args[0] in ROLES:
        return []
    if args[0] == "capshare":
        return _capshare_problems(args[1:])
    if args[:2] == ["sh", "-c"]:
        calls = list(_capshare_calls(args[2]))
        return [p for call in calls for p in _capshare_problems(call)] if calls else [str(args)]
    return [f"{args} is neither a role nor a capshare command"]


def test_every_compose_and_kubernetes_command_is_one_the_entrypoint_knows() -> None:
    services = _capshare_services()
    assert {s["command"][0] for s in services.values()} == ROLES
    for name, service in services.items():
        assert "entrypoint" not in service, name
        assert _command_problems(service["command"]) == [], name
    seen: set[str] = set()
    for path, doc, container in _containers():
        where = f"{path.name}: {doc['metadata']['name']}/{container['name']}"
        assert container["image"].split(":")[0] == "capshare", where
        assert "command" not in container, f"{where} would bypass the entrypoint"
        assert _command_problems(container["args"]) == [], where
        seen.add(container["args"][0])
    assert ROLES <= seen


def _known_settings() -> set[str]:
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c.upper() for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"CAPSHARE_{name.upper()}")
    return names


def test_every_capshare_variable_is_a_real_setting() -> None:
    known = _known_settings()
    files = [COMPOSE, DOCKERFILE, ENTRYPOINT, *K8S.rglob("*.yaml")]
    used = {(f.name, v) for f in files for v in re.findall(r"CAPSHARE_[A-Z0-9_]+", f.read_text())}
    assert {"CAPSHARE_SECRET_KEY", "CAPSHARE_JOBS_IN_PROCESS"} <= {v for _, v in used}
    unknown = sorted((f, v) for f, v in used if v not in known)
    assert unknown == []


def test_the_api_replicas_leave_the_periodic_jobs_to_the_workers() -> None:
    env = _capshare_services()["api"]["environment"]
    assert env["CAPSHARE_JOBS_IN_PROCESS"] == "false"
    [api] = [c for _, _, c in _containers() if c["args"] == ["api"]]
    assert {"name": "CAPSHARE_JOBS_IN_PROCESS", "value": "false"} in api["env"]


def test_the_compose_secrets_have_no_defaults() -> None:
    env = _capshare_services()["api"]["environment"]
    for name in SECRETS:
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env[name]), name


def test_the_placeholder_secret_fails_closed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Applied as shipped, the Secret's values stop capshare at start-up in production."""
    [config] = yaml_documents(K8S / "configmap.yaml")
    [secret] = yaml_documents(K8S / "secret.yaml")
    monkeypatch.chdir(tmp_path)  # no .env
    for key, value in {**config["data"], **secret["stringData"]}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match="development placeholder"):
        Settings()
    for name in SECRETS:
        monkeypatch.setenv(name, f"a-real-{name.lower()}-0123456789abcdef")
    settings = Settings()
    assert settings.environment == "production" and not settings.is_sqlite


def _served(client: TestClient, paths: set[str]) -> set[str]:
    """Those of PATHS that CLIENT's app answers with a 200."""
    return {p for p in paths if client.get(p).status_code == 200}


def _probe_paths(container: dict[str, Any]) -> set[str]:
    probes = [container.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")]
    return {p["httpGet"]["path"] for p in probes if p and "httpGet" in p}


def _k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (d["kind"], d["metadata"]["name"]): d for p in k8s_manifests() for d in yaml_documents(p)
    }


def _probe_problems(container: dict[str, Any], served: set[str], *, port_env: str) -> Iterator[str]:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container.get("env", ())}
    assert int(env["PORT"]) == int(port_env) == ports["http"], container["name"]
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if (probe := container.get(kind)) is None:
            continue
        get = probe["httpGet"]
        if get["path"] not in served:
            yield f"{container['name']} {kind}: {get['path']} is not served"
        if ports.get(get["port"], get["port"]) != int(port_env):
            yield f"{container['name']} {kind}: port {get['port']}"


def test_probe_paths_and_ports_match_what_the_servers_serve(client: TestClient) -> None:
    objects = _k8s_objects()
    api = objects["Deployment", "capshare-api"]
    pod = api["spec"]["template"]
    [container] = pod["spec"]["containers"]
    [stub] = objects["Deployment", "capshare-payments-stub"]["spec"]["template"]["spec"][
        "containers"
    ]
    health = healthcheck_command(DOCKERFILE.read_text())
    image_check = re.findall(r"'(/[^']*)'", health[-1])
    stub_check = _capshare_services()["payments-stub"]["healthcheck"]["test"][-1]
    compose_stub = re.search(r":(\d+)(/[^']+)'", stub_check)
    assert image_check and compose_stub
    notes = pod["metadata"]["annotations"]
    api_wanted = {*_probe_paths(container), *image_check, notes["prometheus.io/path"]}
    api_paths = _served(client, api_wanted)
    with TestClient(create_stub_app(api_key="k", webhook_secret="w")) as stub_client:
        stub_paths = _served(stub_client, {*_probe_paths(stub), compose_stub[2]})
    assert container.keys() >= {"livenessProbe", "readinessProbe"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/ready"
    assert list(_probe_problems(container, api_paths, port_env="8000")) == []
    assert notes["prometheus.io/path"] in api_paths and notes["prometheus.io/port"] == "8000"
    assert list(_probe_problems(stub, stub_paths, port_env="8100")) == []

    worker = objects["Deployment", "capshare-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker.keys() >= {"livenessProbe", "readinessProbe"}

    # the image's own health check, and the compose file's for the stub
    assert image_check == ["/api/v1/health"] and "/api/v1/health" in api_paths
    assert compose_stub[2] in stub_paths
    assert _capshare_services()["payments-stub"]["environment"]["PORT"] == compose_stub[1]

    # the stub's webhooks reach the api, in both files
    hooks = [*_capshare_services()["payments-stub"]["command"], *stub["args"]]
    urls = [hooks[i + 1] for i, w in enumerate(hooks) if w == "--webhook-url"]
    assert urls == [
        "http://api:8000/api/v1/webhooks/payments",
        "http://capshare-api/api/v1/webhooks/payments",
    ]
    assert client.post("/api/v1/webhooks/payments", content=b"{}").status_code != 404


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_the_kubernetes_objects_refer_to_each_other() -> None:
    objects = _k8s_objects()
    api = objects["Deployment", "capshare-api"]
    api_labels = api["spec"]["template"]["metadata"]["labels"]
    service = objects["Service", "capshare-api"]
    assert _selects(service["spec"]["selector"], api_labels)
    [container] = api["spec"]["template"]["spec"]["containers"]
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    assert _selects(
        objects["PodDisruptionBudget", "capshare-api"]["spec"]["selector"]["matchLabels"],
        api_labels,
    )
    target = objects["HorizontalPodAutoscaler", "capshare-api"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "capshare-api")
    stub = objects["Service", "capshare-payments-stub"]
    stub_pod = objects["Deployment", "capshare-payments-stub"]["spec"]["template"]["metadata"]
    assert _selects(stub["spec"]["selector"], stub_pod["labels"])
    staging = (K8S / "staging" / "kustomization.yaml").read_text()
    assert f"http://capshare-payments-stub:{stub['spec']['ports'][0]['port']}" in staging

    for path, doc, container in _containers():
        for source in container.get("envFrom", ()):
            for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if ref in source:
                    assert (kind, source[ref]["name"]) in objects, path.name
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", ())}
        for mount in container.get("volumeMounts", ()):
            claim = volumes[mount["name"]].get("persistentVolumeClaim")
            if claim:
                assert ("PersistentVolumeClaim", claim["claimName"]) in objects


@pytest.mark.parametrize("folder", [K8S, K8S / "staging"], ids=["base", "staging"])
def test_each_kustomization_lists_every_manifest_beside_it(folder: Path) -> None:
    [kustomization] = yaml_documents(folder / "kustomization.yaml")
    resources = set(kustomization["resources"])
    beside = {p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert {r for r in resources if not r.startswith("..")} == beside
    for r in resources:
        assert (folder / r).exists(), r


def _final_stage() -> list[Any]:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def test_the_image_runs_as_the_same_non_root_user_everywhere() -> None:
    users = [i.value for i in _final_stage() if i.keyword == "USER"]
    assert users, "the runtime stage sets a USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid != "0", users[-1]
    for path in k8s_manifests():
        for doc in yaml_documents(path):
            pod = doc.get("spec", {}).get("template", {}).get("spec")
            if pod is None:
                continue
            context = pod["securityContext"]
            assert context["runAsNonRoot"] is True, path.name
            assert context["runAsUser"] == int(uid), path.name
            for container in (*pod.get("initContainers", ()), *pod["containers"]):
                assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_image_enters_through_the_entrypoint_as_the_api() -> None:
    stage = _final_stage()
    copies = [i.value.split() for i in stage if i.keyword == "COPY"]
    [target] = [c[-1] for c in copies if c[-2] == str(ENTRYPOINT.relative_to(REPO_ROOT))]
    [entry] = [exec_form(i.value) for i in stage if i.keyword == "ENTRYPOINT"]
    assert entry == [Path(target).name] and Path(target).parent == Path("/usr/local/bin")
    assert [exec_form(i.value) for i in stage if i.keyword == "CMD"] == [["api"]]


def _ignored(path: str, patterns: list[str]) -> bool:
    return any(
        fnmatch.fnmatch(path, p.rstrip("/")) or path.startswith(p.rstrip("/") + "/")
        for p in patterns
    )


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_local_state() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must in (".git", ".env", ".venv", "var/", "tests/", "test-artifacts/"):
        assert must in patterns, must
    sources: list[str] = []
    for i in dockerfile_instructions(DOCKERFILE.read_text()):
        if i.keyword == "COPY" and not i.value.startswith("--from"):
            sources += i.value.split()[:-1]
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is left out of the build context"
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {s.split("/")[0] for s in sources}
    assert {p.rstrip("*") for p in packages} <= copied
