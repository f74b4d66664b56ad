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
