"""Running the relay for real: docker-compose.yml, deploy/kubernetes/, deploy/prometheus/.

Users apply these files as they are, so each is checked against what the code really does:
command lines parse with the bridge's own parser, environment variables are the contract's
names, probes ask the receiver's endpoints, the config file loads, and the alert rules name
only metrics a receiver's /metrics page exposes. Schemas are checked where a validator is
installed (check-jsonschema has Compose's; Kubernetes' needs kubernetes-validate, optional).
No Docker engine or cluster needed.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_packaging import (
    RELAY_UID,
    REPOSITORY,
    check_schema,
    dockerfile_instructions,
    load_release_script,
)

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
KUBE = ROOT / "deploy" / "kubernetes"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"

RELAY_IMAGE = "ghcr.io/cortex-deploy-bridge/cortex-deploy-bridge-relay"
# PRODUCT.md, "Package and commands": the environment the bridge reads.
CONTRACT_ENV = {
    "CORTEX_API_TOKEN",
    "CORTEX_API_URL",
    "BRIDGE_CONFIG",
    "BRIDGE_DATABASE_URL",
    "GITHUB_WEBHOOK_SECRET",
    "GITLAB_WEBHOOK_TOKEN",
    "BRIDGE_ADMIN_TOKEN",
}
SECRETS = {
    "CORTEX_API_TOKEN",
    "BRIDGE_DATABASE_URL",
    "GITHUB_WEBHOOK_SECRET",
    "GITLAB_WEBHOOK_TOKEN",
    "BRIDGE_ADMIN_TOKEN",
}
SECRET_NAME = "cortex-deploy-bridge"


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def parse_command(argv: list[str]) -> Any:
    """The bridge's own parse of a container's arguments (argparse exits on a bad flag)."""
    from bridge.cli import build_parser

    try:
        return build_parser(argv[0]).parse_args(argv)
    except SystemExit:
        pytest.fail(f"not a valid command line: {argv}")


def allowed_env(name: str) -> bool:
    """A contract variable, or the ``*_FILE`` variant of a secret."""
    return name in CONTRACT_ENV or name.removesuffix("_FILE") in SECRETS


# --- docker-compose.yml -----------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed (merge keys resolved)."""
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def relay_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the relay image, by name."""
    return {
        name: spec
        for name, spec in compose["services"].items()
        if spec.get("build", {}).get("dockerfile") == "Dockerfile.relay"
    }


def by_command(compose: dict[str, Any], command: str) -> dict[str, dict[str, Any]]:
    """The relay services running one subcommand."""
    return {
        name: spec
        for name, spec in relay_services(compose).items()
        if spec["command"][0] == command
    }


INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (error: fail)."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match[1], match[2] or "", match[3] or ""
        value = env.get(name)
        unset = value is None or (operator.startswith(":") and value == "")
        if operator.endswith("?") and unset:
            pytest.fail(f"compose would stop: {name}: {argument}")
        if operator.endswith("-") and unset:
            return argument
        return value or ""

    return INTERPOLATION.sub(one, text)


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a .env file."""
    pairs = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: not NAME=value: {line!r}"
            pairs[name] = value
    return pairs


def test_compose_matches_the_compose_spec() -> None:
    check_schema("vendor.compose-spec", COMPOSE)


def test_compose_runs_postgres_16_with_a_healthcheck_and_a_named_volume(
    compose: dict[str, Any],
) -> None:
    postgres = compose["services"]["postgres"]
    assert re.fullmatch(r"postgres:16([.-][^@]*)?(@sha256:[0-9a-f]{64})?", postgres["image"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume, _, target = postgres["volumes"][0].partition(":")
    assert target == "/var/lib/postgresql/data"
    assert volume in compose["volumes"], "the database must live in a named volume"
    assert "ports" not in postgres, "the database is for the relay only"


def test_compose_runs_two_receivers_and_a_worker(compose: dict[str, Any]) -> None:
    receivers = by_command(compose, "serve")
    workers = by_command(compose, "worker")
    assert len(receivers) >= 2
    assert len(workers) >= 1
    for spec in receivers.values():
        args = parse_command(spec["command"])
        assert args.bind == "0.0.0.0:8080"
        # Delivery runs in the worker service, so the receivers must not deliver too.
        assert args.no_worker
        (port,) = spec["ports"]
        assert port.endswith(":8080")
    for spec in workers.values():
        args = parse_command(spec["command"])
        # The image's check asks :8080; a worker answers /healthz on its --metrics-bind port.
        port = args.metrics_bind.port
        check = " ".join(spec["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in check and "disable" not in spec["healthcheck"]
    published = [spec["ports"][0].rsplit(":", 2)[-2] for spec in receivers.values()]
    assert len(set(published)) == len(published), "two receivers on one host port"


def test_compose_relay_waits_for_a_healthy_database(compose: dict[str, Any]) -> None:
    for name, spec in relay_services(compose).items():
        assert spec["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert spec["read_only"] is True, name
        assert "/tmp" in spec["tmpfs"], f"{name}: gunicorn and metrics need a writable /tmp"


def test_compose_environment_names_are_the_contract(compose: dict[str, Any]) -> None:
    for name, spec in relay_services(compose).items():
        unknown = [var for var in spec["environment"] if not allowed_env(var)]
        assert not unknown, f"{name}: {unknown} are not variables the bridge reads"


def test_compose_gives_each_service_only_the_secrets_it_uses(compose: dict[str, Any]) -> None:
    for spec in by_command(compose, "serve").values():
        assert "CORTEX_API_TOKEN" not in spec["environment"]  # --no-worker: never calls Cortex
        assert {"GITHUB_WEBHOOK_SECRET", "GITLAB_WEBHOOK_TOKEN"} <= set(spec["environment"])
    for spec in by_command(compose, "worker").values():
        assert "CORTEX_API_TOKEN" in spec["environment"]
        assert not {"GITHUB_WEBHOOK_SECRET", "GITLAB_WEBHOOK_TOKEN"} & set(spec["environment"])


def test_compose_secrets_come_from_the_env_file(compose: dict[str, Any]) -> None:
    example = read_env_file(ENV_EXAMPLE)
    referenced = {m[1] for m in INTERPOLATION.finditer(COMPOSE.read_text(encoding="utf-8"))}
    assert referenced <= set(example), f".env.example lacks {sorted(referenced - set(example))}"
    for spec in relay_services(compose).values():
        for var, value in spec["environment"].items():
            if var in SECRETS:
                assert "${" in str(value), f"{var} is written into docker-compose.yml"
    # A template: no secret has a value in it.
    filled = {var for var in SECRETS | {"POSTGRES_PASSWORD"} if example.get(var)}
    assert not filled, f".env.example carries values for {sorted(filled)}"


def test_compose_database_url_resolves_to_the_postgres_service(compose: dict[str, Any]) -> None:
    import sqlalchemy as sa

    from bridge.config import load_config

    env = read_env_file(ENV_EXAMPLE) | {
        "POSTGRES_PASSWORD": "pw-from-dotenv",
        "CORTEX_API_TOKEN": "ctx-token",
    }
    postgres = compose["services"]["postgres"]["environment"]
    for name, spec in relay_services(compose).items():
        url = interpolate(spec["environment"]["BRIDGE_DATABASE_URL"], env)
        config = load_config(None, {"BRIDGE_DATABASE_URL": url})
        parsed = sa.make_url(config.database)
        assert parsed.drivername == "postgresql+psycopg", name
        assert (parsed.host, parsed.port) == ("postgres", 5432), name
        assert parsed.username == postgres["POSTGRES_USER"], name
        assert parsed.database == postgres["POSTGRES_DB"], name
        assert parsed.password == "pw-from-dotenv", name
        assert "${" in postgres["POSTGRES_PASSWORD"]


def test_compose_fails_fast_without_the_required_secrets(compose: dict[str, Any]) -> None:
    (worker,) = by_command(compose, "worker").values()
    with pytest.raises(pytest.fail.Exception, match="CORTEX_API_TOKEN"):
        interpolate(worker["environment"]["CORTEX_API_TOKEN"], read_env_file(ENV_EXAMPLE))


# --- deploy/kubernetes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    """deploy/kubernetes/kustomization.yaml, parsed."""
    data = load_yaml(KUBE / "kustomization.yaml")
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def resources(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the kustomization applies (the generated ConfigMap aside)."""
    objects = []
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((KUBE / name).read_text(encoding="utf-8")):
            if document:
                objects.append(document)
    return objects


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def deployment(resources: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """The one Deployment whose container runs ``command``."""
    found = [
        d
        for d in of_kind(resources, "Deployment").values()
        if d["spec"]["template"]["spec"]["containers"][0]["args"][0] == command
    ]
    assert len(found) == 1, f"expected one Deployment running {command!r}"
    return found[0]


def containers(resources: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(deployment name, container) for every container of every Deployment."""
    for name, d in of_kind(resources, "Deployment").items():
        for container in d["spec"]["template"]["spec"]["containers"]:
            yield name, container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {entry["name"]: entry for entry in container.get("env", [])}


def quantity(text: str | int) -> float:
    """A Kubernetes quantity (``100m``, ``1``, ``256Mi``) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    assert match, f"not a quantity: {text!r}"
    return float(match[1]) * units.get(match[2], 1)


def test_kustomization_lists_files_that_exist(kustomization: dict[str, Any]) -> None:
    listed = set(kustomization["resources"])
    generated = {f for g in kustomization["configMapGenerator"] for f in g["files"]}
    for name in listed | generated:
        assert (KUBE / name).is_file(), name
    # Every file here is applied, generated from, or an opt-in left out on purpose.
    optional = {"hpa.yaml", "secret.example.yaml"}
    present = {p.name for p in KUBE.iterdir()} - {"kustomization.yaml"}
    assert present == listed | generated | optional
    # The Secret template is never applied: that would run the relay on placeholders.
    assert "secret.example.yaml" not in listed


def test_kustomization_renders(kustomization: dict[str, Any]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (kubectl kustomize renders offline)")
    done = subprocess.run(
        [kubectl, "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    kinds = sorted(doc["kind"] for doc in rendered)
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "PodDisruptionBudget", "Service"]
    # The Deployments mount the generated, content-hashed ConfigMap.
    (configmap,) = of_kind(rendered, "ConfigMap")
    for d in of_kind(rendered, "Deployment").values():
        volumes = d["spec"]["template"]["spec"]["volumes"]
        assert configmap in {v["configMap"]["name"] for v in volumes if "configMap" in v}


def test_kubernetes_objects_match_kubernetes_schemas(
    kustomization: dict[str, Any], resources: list[dict[str, Any]]
) -> None:
    validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (optional)"
    )
    optional = [load_yaml(KUBE / "hpa.yaml"), load_yaml(KUBE / "secret.example.yaml")]
    for obj in resources + optional:
        validate.validate(obj, "1.28.0", strict=True)


def test_config_map_file_is_a_valid_bridge_config(kustomization: dict[str, Any]) -> None:
    from bridge.config import load_config

    for generator in kustomization["configMapGenerator"]:
        for name in generator["files"]:
            load_config(str(KUBE / name), {})  # raises ConfigError naming the bad key


def test_deployments_run_the_relay_image_released(
    kustomization: dict[str, Any], resources: list[dict[str, Any]]
) -> None:
    # The release pushes the relay as <image>-relay, under relay-image-tags.
    release = load_release_script()
    names = release.release_names("1.0.0", REPOSITORY)
    assert names.image + release.RELAY_SUFFIX == RELAY_IMAGE
    assert "${{ needs.names.outputs.relay-image-tags }}" in RELEASE.read_text(encoding="utf-8")
    assert [i["name"] for i in kustomization["images"]] == [RELAY_IMAGE]
    for name, container in containers(resources):
        assert container["image"].partition(":")[0] == RELAY_IMAGE, name
        parse_command(container["args"])


def test_pods_run_as_the_image_user_with_nothing_writable(resources: list[dict[str, Any]]) -> None:
    users = [a for kw, a in dockerfile_instructions(ROOT / "Dockerfile.relay") if kw == "USER"]
    assert users[-1] == f"{RELAY_UID}:{RELAY_UID}"
    for name, d in of_kind(resources, "Deployment").items():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert str(pod["securityContext"]["runAsUser"]) == RELAY_UID, name
        assert pod.get("automountServiceAccountToken") is False, name
        tmp = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp, f"{name}: /tmp must be a writable emptyDir"


def test_containers_have_requests_and_limits(resources: list[dict[str, Any]]) -> None:
    for name, container in containers(resources):
        resources_ = container["resources"]
        for kind in ("cpu", "memory"):
            request = quantity(resources_["requests"][kind])
            limit = quantity(resources_["limits"][kind])
            assert 0 < request <= limit, f"{name}: {kind} request {request} > limit {limit}"
        # A gunicorn process is ~60 MB resident: the serve pod runs three of them.
        if container["args"][0] == "serve":
            assert quantity(resources_["limits"]["memory"]) >= 384 * 2**20


def test_secrets_come_only_from_the_secret(resources: list[dict[str, Any]]) -> None:
    template = load_yaml(KUBE / "secret.example.yaml")
    assert template["kind"] == "Secret"
    assert template["metadata"]["name"] == SECRET_NAME
    assert set(template["stringData"]) == SECRETS
    assert all("REPLACE_ME" in value for value in template["stringData"].values())
    referenced = set()
    for name, container in containers(resources):
        for var, entry in env_of(container).items():
            assert allowed_env(var), f"{name}: {var} is not a variable the bridge reads"
            if var in SECRETS:
                ref = entry["valueFrom"]["secretKeyRef"]
                assert "value" not in entry, f"{name}: {var} written into the manifest"
                assert (ref["name"], ref["key"]) == (SECRET_NAME, var), name
                referenced.add(var)
    assert referenced == SECRETS


def test_each_deployment_gets_the_secrets_it_uses(resources: list[dict[str, Any]]) -> None:
    serve = env_of(deployment(resources, "serve")["spec"]["template"]["spec"]["containers"][0])
    worker = env_of(deployment(resources, "worker")["spec"]["template"]["spec"]["containers"][0])
    assert {"BRIDGE_DATABASE_URL", "GITHUB_WEBHOOK_SECRET", "GITLAB_WEBHOOK_TOKEN"} <= set(serve)
    assert {"BRIDGE_DATABASE_URL", "CORTEX_API_TOKEN"} <= set(worker)
    assert "CORTEX_API_TOKEN" not in serve, "the receivers run --no-worker"
    assert not {"GITHUB_WEBHOOK_SECRET", "GITLAB_WEBHOOK_TOKEN"} & set(worker)
    # Required where the process cannot work without it.
    assert not serve["BRIDGE_DATABASE_URL"]["valueFrom"]["secretKeyRef"].get("optional")
    assert not worker["CORTEX_API_TOKEN"]["valueFrom"]["secretKeyRef"].get("optional")


def test_config_is_mounted_where_bridge_config_points(
    kustomization: dict[str, Any], resources: list[dict[str, Any]]
) -> None:
    (generator,) = kustomization["configMapGenerator"]
    for name, d in of_kind(resources, "Deployment").items():
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        container = pod["containers"][0]
        path = env_of(container)["BRIDGE_CONFIG"]["value"]
        mount = next(
            m for m in container["volumeMounts"] if m["mountPath"] == posixpath.dirname(path)
        )
        assert mount.get("readOnly") is True, name
        assert volumes[mount["name"]]["configMap"]["name"] == generator["name"], name
        assert posixpath.basename(path) in generator["files"], name


def test_receivers_are_probed_and_scraped(resources: list[dict[str, Any]]) -> None:
    d = deployment(resources, "serve")
    template = d["spec"]["template"]
    (container,) = template["spec"]["containers"]
    args = parse_command(container["args"])
    assert args.no_worker, "delivery runs in the worker Deployment"
    port = int(args.bind.rpartition(":")[2])
    assert args.bind.startswith("0.0.0.0:"), "the probes and the Service reach the pod's IP"
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named["http"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", port), probe
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_service_pdb_and_hpa_select_the_receivers(resources: list[dict[str, Any]]) -> None:
    serve = deployment(resources, "serve")
    worker = deployment(resources, "worker")
    labels = serve["spec"]["template"]["metadata"]["labels"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], pod: dict[str, str]) -> bool:
        return all(pod.get(key) == value for key, value in selector.items())

    assert selects(serve["spec"]["selector"]["matchLabels"], labels)
    assert selects(worker["spec"]["selector"]["matchLabels"], worker_labels)
    (service,) = of_kind(resources, "Service").values()
    assert selects(service["spec"]["selector"], labels)
    assert not selects(service["spec"]["selector"], worker_labels)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    (pdb,) = of_kind(resources, "PodDisruptionBudget").values()
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)
    assert not selects(pdb["spec"]["selector"]["matchLabels"], worker_labels)
    assert 0 < pdb["spec"]["minAvailable"] < serve["spec"]["replicas"]
    hpa = load_yaml(KUBE / "hpa.yaml")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", serve["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2


# --- deploy/prometheus/alerts.yml -------------------------------------------------------

PROMQL_WORDS = {
    "absent", "and", "avg", "bool", "count", "delta", "increase", "max", "min", "or",
    "rate", "sum", "unless", "vector",
}  # fmt: skip
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!=|!~|=)\s*\"([^\"]*)\"")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (functions, labels and durations left out)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = GROUPING.sub("", expr)
    expr = re.sub(r"\boffset\s+\w+", "", expr)
    return set(re.findall(r"(?<![\w.])[A-Za-z_:][\w:]*", expr)) - PROMQL_WORDS


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml."""
    data = load_yaml(ALERTS)
    return [rule for group in data["groups"] for rule in group["rules"]]


@pytest.fixture
def exposed(tmp_path: Path) -> dict[str, set[frozenset[tuple[str, str]]]]:
    """What a receiver's /metrics page shows, after one webhook with a wrong signature:
    ``{sample name: {label sets}}``, plus every name each family may expose."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.receiver_kit import client_for, github_post, make_runtime

    runtime = make_runtime(tmp_path)
    try:
        client = client_for(runtime)
        assert github_post(client, "ping", "ping", secret="wrong").status_code == 401
        page = client.get("/metrics")
        assert page.status_code == 200
        text = page.get_data(as_text=True)
    finally:
        runtime.store.close()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    names: dict[str, set[frozenset[tuple[str, str]]]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes.get(family.type, ("",)):
            names.setdefault(family.name + suffix, set())
        for sample in family.samples:
            names.setdefault(sample.name, set()).add(frozenset(sample.labels.items()))
    return names


def test_alert_rules_are_complete(rules: list[dict[str, Any]]) -> None:
    assert rules
    for rule in rules:
        assert re.fullmatch(r"CortexDeployBridge[A-Z]\w+", rule["alert"])
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert isinstance(rule["expr"], str) and rule["expr"].count("(") == rule["expr"].count(")")
    names = {rule["alert"] for rule in rules}
    assert len(names) == len(rules), "alert names repeat"


def test_alert_rules_read_only_metrics_the_receiver_exposes(
    rules: list[dict[str, Any]], exposed: dict[str, set[frozenset[tuple[str, str]]]]
) -> None:
    labels = {key for sets in exposed.values() for labelset in sets for key, _ in labelset}
    for rule in rules:
        expr = rule["expr"]
        unknown = metric_names(expr) - set(exposed)
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} are not on /metrics"
        for group in GROUPING.findall(expr):
            grouped = {label.strip() for label in group.split(",") if label.strip()}
            assert grouped <= labels, f"{rule['alert']}: no metric has labels {grouped}"


def test_alert_label_matchers_name_series_the_receiver_produces(
    rules: list[dict[str, Any]], exposed: dict[str, set[frozenset[tuple[str, str]]]]
) -> None:
    for rule in rules:
        for metric, matchers in re.findall(r"(\w+)\{([^}]*)\}", rule["expr"]):
            wanted = set(MATCHER.findall(matchers))
            assert any(wanted <= labelset for labelset in exposed[metric]), (
                f"{rule['alert']}: no {metric} series with {sorted(wanted)}"
            )


@pytest.mark.parametrize(
    ("metric", "why"),
    [
        pytest.param("bridge_queue_oldest_due_seconds", "delivery age", id="age"),
        pytest.param("bridge_dead_letters", "dead letters", id="dead"),
        pytest.param("bridge_webhooks_total", "unauthorized webhooks", id="unauthorized"),
        pytest.param("bridge_cortex_unauthorized", "a refused Cortex token", id="token"),
    ],
)
def test_alert_rules_cover(rules: list[dict[str, Any]], metric: str, why: str) -> None:
    assert any(metric in metric_names(rule["expr"]) for rule in rules), f"no alert on {why}"


def test_alert_rules_cover_readiness_and_aggregate_queue_gauges_with_max(
    rules: list[dict[str, Any]],
) -> None:
    assert any(rule["expr"].startswith("absent(") for rule in rules), "no alert on readiness"
    for rule in rules:
        # Every replica reports the same database-wide gauges: a sum would multiply them.
        for gauge in ("bridge_queue_oldest_due_seconds", "bridge_dead_letters"):
            assert not re.search(rf"sum[^(]*\(\s*{gauge}", rule["expr"]), rule["alert"]
