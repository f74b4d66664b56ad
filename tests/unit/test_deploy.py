"""docker-compose.yml and the Dockerfile, checked as far as possible without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from streams.config.settings import ENV_KEYS

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_images_are_real_names_with_pinned_tags() -> None:
    for name, svc in compose()["services"].items():
        image = svc.get("image")
        if "build" in svc:
            assert (ROOT / "Dockerfile").exists()
            continue
        assert image and re.fullmatch(r"[a-z0-9./-]+:v?[0-9][\w.-]*", image), (name, image)
    base = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base and re.search(r":\d+\.\d+\.\d+", base.group(1))


def test_mounted_config_files_exist() -> None:
    for svc in compose()["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_worker_env_names_are_settings_the_code_reads_and_ports_match() -> None:
    services = compose()["services"]
    workers = [s for n, s in services.items() if n.startswith("vitals-worker")]
    assert len(workers) == 2
    for worker in workers:
        env = worker["environment"]
        assert set(env) <= set(ENV_KEYS), set(env) - set(ENV_KEYS)
        port = env["VITALS_METRICS_PORT"]
        targets = (ROOT / "deploy/prometheus/targets/compose.json").read_text()
        assert f":{port}" in targets
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER vitals" in dockerfile and "HEALTHCHECK" in dockerfile


def test_dependencies_order_the_stack() -> None:
    services = compose()["services"]
    worker = services["vitals-worker-1"]["depends_on"]
    assert worker["kafka-topics"]["condition"] == "service_completed_successfully"
    assert worker["clickhouse"]["condition"] == "service_healthy"
    topics = services["kafka-topics"]["command"][0]
    for topic in ("vitals.events", "vitals.alerts", "vitals.events.dlq", "vitals-reroute", "vitals-device-obs"):
        assert topic in topics


def test_k8s_manifests_use_the_settings_and_ports() -> None:
    import tomllib

    from streams.config.settings import load_settings

    docs = [d for f in sorted((ROOT / "deploy/k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert {"StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"} <= set(kinds)
    config = tomllib.loads(kinds["ConfigMap"]["data"]["vitals.toml"])
    settings = load_settings(env={}, **{k: v for k, v in config.items() if not isinstance(v, dict)},
                             **{f"{s}__{k}": v for s, sub in config.items() if isinstance(sub, dict)
                                for k, v in sub.items()})
    container = kinds["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == settings.metrics_port
    annotations = kinds["StatefulSet"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.metrics_port)
    env_names = {e["name"] for e in container["env"]} | set(kinds["Secret"]["stringData"])
    assert env_names <= set(ENV_KEYS) | {"VITALS_CONFIG"}
    assert container["resources"]["requests"]


def k8s_docs() -> list[dict]:
    return [d for f in sorted((ROOT / "deploy/k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def k8s_settings():  # type: ignore[no-untyped-def]
    """The settings a pod gets from the ConfigMap's vitals.toml (read as the file it is mounted as)."""
    import tempfile

    from streams.config.settings import load_settings

    config = next(d for d in k8s_docs() if d["kind"] == "ConfigMap")["data"]["vitals.toml"]
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write(config)
    try:
        return load_settings(env={"VITALS_CONFIG": fh.name})
    finally:
        Path(fh.name).unlink()


def test_compose_collector_uses_the_settings_its_port_and_health() -> None:
    from streams.config.settings import load_settings

    svc = compose()["services"]["vitals-collect"]
    env = svc["environment"]
    assert set(env) <= set(ENV_KEYS) | {"VITALS_CONFIG"}, set(env) - set(ENV_KEYS)
    assert svc["command"] == ["collect"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    local = dict(env, VITALS_CONFIG=str(ROOT / mounted[env["VITALS_CONFIG"]]))
    settings = load_settings(env=local)
    assert settings.collect.apps and settings.collect.host == "0.0.0.0"
    port = settings.collect.port
    assert svc["ports"] == [f"{port}:{port}"]
    assert f"127.0.0.1:{port}/health" in " ".join(svc["healthcheck"]["test"])
    assert settings.events_topic in compose()["services"]["kafka-topics"]["command"][0]
    assert f"vitals-collect:{port}" in (ROOT / "deploy/prometheus/targets/collect/compose.json").read_text()
    assert "8090" in re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.M).group(1).split()  # type: ignore[union-attr]


def test_k8s_collector_deployment_service_and_probes_match_the_settings() -> None:
    docs = k8s_docs()
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "vitals-collect")
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "vitals-collector")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["collect"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) <= set(ENV_KEYS) | {"VITALS_CONFIG"}
    settings = k8s_settings()
    port = int(env.get("VITALS_COLLECT_PORT", settings.collect.port))
    assert port == settings.collect.port and settings.collect.apps
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == port
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["livenessProbe"]["httpGet"]["path"] != "/health"  # a Kafka outage is no reason to restart
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert pod["spec"]["terminationGracePeriodSeconds"] > settings.collect.shutdown_timeout_s
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    workers = next(d for d in docs if d["kind"] == "StatefulSet")
    worker_labels = workers["spec"]["template"]["metadata"]["labels"]
    for other in (d for d in docs if d["kind"] == "Service" and d is not service):
        assert not other["spec"]["selector"].items() <= labels.items(), "a worker Service selects collectors"
    assert not service["spec"]["selector"].items() <= worker_labels.items()


def test_no_k8s_service_link_variable_is_a_setting() -> None:
    """Kubernetes sets <SERVICE>_SERVICE_HOST, <SERVICE>_PORT, ... in every pod for each Service: a Service
    named vitals-collect would set VITALS_COLLECT_PORT=tcp://..., which every vitals process reads."""
    names = set(ENV_KEYS) | {"VITALS_CONFIG"}
    for doc in k8s_docs():
        if doc["kind"] != "Service":
            continue
        prefix = doc["metadata"]["name"].upper().replace("-", "_")
        links = {f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"}
        links |= {f"{prefix}_PORT_{p['port']}_TCP{s}" for p in doc["spec"]["ports"] for s in ("", "_PORT", "_ADDR",
                                                                                              "_PROTO")}
        assert not links & names, (doc["metadata"]["name"], links & names)
    for doc in k8s_docs():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            assert doc["spec"]["template"]["spec"].get("enableServiceLinks") is False, doc["metadata"]["name"]
