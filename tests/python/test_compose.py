"""docker-compose.yml and deploy/: no Docker engine runs here, so the stack is checked without one.

* the file against the Compose specification's JSON schema (the copy Debian's ``docker-compose``
  package ships, compose/config/compose_spec.json) and by ``docker-compose config``, which
  validates and resolves it offline;
* semantic checks: every service has a health check, images are official ones, every build
  context, Dockerfile and mounted file exists, dependencies wait for health, no port is taken twice;
* Prometheus config and alert rules (promtool when installed), the Grafana provisioning and
  dashboard, the Dovecot config (doveconf): they parse and use only metric names that
  dte_native.metrics exports;
* natively: the simulator and ``dte metrics-serve`` start from the same commands the stack uses,
  and a real Prometheus (Debian's) scrapes the metrics with the bearer token and loads the rules.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from dte_native import metrics

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DEPLOY = REPO / "deploy"
SPEC_PATHS = [Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")]
DTE = [sys.executable, "-c", "import sys; from dte_native.cli import main; sys.exit(main())"]

# Docker Official Images, plus the images the projects themselves publish (verified publishers).
OFFICIAL = {"postgres", "redis", "odoo", "debian", "python"}
VENDOR_OFFICIAL = {"prom/prometheus", "grafana/grafana-oss", "grafana/grafana", "dovecot/dovecot"}
METRIC_RE = re.compile(r"\b(dte_[a-z_]+)\b")


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def spec_schema() -> dict[str, Any]:
    for p in SPEC_PATHS:
        if p.is_file():
            return dict(json.loads(p.read_text()))
    pytest.skip("the Compose spec JSON schema is not installed (Debian package docker-compose; scripts/setup)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=3) as r:
                return bytes(r.read())
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: {last}")


# --------------------------------------------------------------------------- compose file


def test_compose_validates_against_the_compose_spec() -> None:
    schema = spec_schema()
    validator = jsonschema.Draft201909Validator(schema)
    doc = compose()
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, errors
    # The validator does catch mistakes (a typo in a health check, an unknown service key).
    broken = copy.deepcopy(doc)
    broken["services"]["db"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["redis"]["imagee"] = "redis:7"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_docker_compose_config_resolves_the_file_offline() -> None:
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.skip("docker-compose (Debian package) not installed")
    r = subprocess.run([exe, "-f", str(COMPOSE), "config", "-q"], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent"})
    assert r.returncode == 0, r.stderr


def one_shot(svc: dict[str, Any]) -> bool:
    """A job that runs once and exits (the test kit): no health check, waited for by completion."""
    return svc.get("restart") == "no"


def test_every_service_is_healthchecked_and_waits_for_healthy_dependencies() -> None:
    services = compose()["services"]
    assert {"odoo", "db", "redis", "simulator", "imap", "prometheus", "grafana", "worker", "metrics"} <= set(services)
    for name, svc in services.items():
        if not one_shot(svc):
            hc = svc.get("healthcheck")
            assert hc and hc.get("test") and not hc.get("disable"), f"{name}: no health check"
            assert hc["test"][0] in ("CMD", "CMD-SHELL"), name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            wanted = "service_completed_successfully" if one_shot(services[dep]) else "service_healthy"
            assert cond == {"condition": wanted}, f"{name} -> {dep}: {cond}"
    order = {"odoo": {"db", "redis", "simulator"}, "worker": {"redis", "simulator", "odoo"},
             "simulator": {"kit"}, "metrics": {"redis", "kit"},
             "prometheus": {"odoo", "metrics"}, "grafana": {"prometheus"}}
    for name, deps in order.items():
        assert deps <= set(services[name]["depends_on"]), name


def test_dte_commands_of_the_stack_parse() -> None:
    """Every `dte ...` command and health check in the file is accepted by this checkout's CLI
    (the simulator's by its own parser): a renamed option fails here, not at `docker compose up`."""
    from dte_native import cli, simulator

    parser = cli.build_parser()
    checked = 0
    for name, svc in compose()["services"].items():
        if svc.get("image") != "dte-native:dev":
            continue
        commands = []
        if svc.get("entrypoint") is None and svc.get("command"):
            commands.append(list(svc["command"]))
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[:2] == ["CMD", "dte"]:
            commands.append(test[2:])
        for argv in commands:
            if argv[0] == "simulator":
                simulator._parse_args(argv[1:])
            else:
                parser.parse_args(argv)
            checked += 1
    assert checked >= 4


def test_images_are_official_and_builds_exist() -> None:
    for name, svc in compose()["services"].items():
        if "build" in svc:
            ctx = REPO / svc["build"]["context"]
            dockerfile = ctx / svc["build"].get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile}"
            for line in dockerfile.read_text().splitlines():
                if line.startswith("FROM "):
                    base = line.split()[1].split(":")[0]
                    assert base in OFFICIAL, f"{name}: base image {base} is not an official image"
                if line.startswith("COPY ") and "--from" not in line:
                    for src in line.split()[1:-1]:
                        assert (ctx / src).exists(), f"{dockerfile.name}: COPY {src} missing"
            continue
        repo = svc["image"].rsplit(":", 1)[0]
        assert repo in OFFICIAL or repo in VENDOR_OFFICIAL, f"{name}: {svc['image']} is not an official image"
        assert ":" in svc["image"] and not svc["image"].endswith(":latest"), f"{name}: pin a version"
    odoo_file = (DEPLOY / "odoo.Dockerfile").read_text()
    assert re.search(r"^FROM odoo:19\b", odoo_file, re.M), "Odoo must be the official odoo:19 image"


def test_mounted_files_and_secrets_exist() -> None:
    doc = compose()
    for name, svc in doc["services"].items():
        for vol in svc.get("volumes", []):
            if vol.startswith("${"):  # ${VAR:-default}:/target: the default must exist
                src = vol[2:vol.index("}")].split(":-", 1)[1]
            else:
                src = vol.split(":")[0]
            if src.startswith("."):
                assert (REPO / src).exists(), f"{name}: mount source {src} missing"
            else:
                assert src in doc["volumes"], f"{name}: undeclared volume {src}"
        for secret in svc.get("secrets", []):
            assert secret in doc["secrets"], f"{name}: unknown secret {secret}"
    for secret in doc["secrets"].values():
        assert (REPO / secret["file"]).is_file()
    # The addon is mounted where the image's addons_path looks.
    assert "./l10n_cl_dte:/mnt/extra-addons/l10n_cl_dte:ro" in doc["services"]["odoo"]["volumes"]
    conf = (DEPLOY / "odoo" / "odoo.conf").read_text()
    assert "/mnt/extra-addons" in conf and "dte_key_file = /var/lib/odoo/dte-keys/" in conf
    # The Fernet key lives on its own volume, not in the database nor the filestore volume.
    assert any(v.startswith("dtekeys:/var/lib/odoo/dte-keys") for v in doc["services"]["odoo"]["volumes"])


def test_published_ports_are_unique_and_match_the_scrape_targets() -> None:
    doc = compose()
    host_ports = [p.split(":")[0] for svc in doc["services"].values() for p in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), host_ports
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for job in prom["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            if host == "localhost":
                continue
            assert host in doc["services"], f"scrape target {target}: no such service"
            svc = doc["services"][host]
            text = json.dumps(svc)
            assert port in text, f"scrape target {target}: service {host} does not use port {port}"
            if job.get("authorization"):
                assert "metrics_token" in svc.get("secrets", [])
    assert "metrics_token" in doc["services"]["prometheus"]["secrets"]


# --------------------------------------------------------------------------- Prometheus, Grafana, Dovecot


def expressions_in(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("expr",) and isinstance(v, str):
                yield v
            else:
                yield from expressions_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from expressions_in(v)


def assert_known_metrics(exprs: list[str], where: str) -> set[str]:
    used: set[str] = set()
    for e in exprs:
        used |= set(METRIC_RE.findall(e))
    unknown = used - metrics.exported_names()
    assert not unknown, f"{where} uses metrics the code does not export: {sorted(unknown)}"
    return used


def test_alert_rules_parse_and_use_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    used = assert_known_metrics([r["expr"] for r in alerts.values()], "alerts.yml")
    # The alerts the issue asks for.
    for metric in ("dte_certificate_days_left", "dte_caf_folios_left", "dte_circuit_breaker_state",
                   "dte_queue_depth", "dte_documents_processed_total"):
        assert metric in used, metric
    assert re.search(r"dte_certificate_days_left\)?\s*<\s*30", alerts["DteCertificateExpiringSoon"]["expr"])
    assert "DteHighRejectionRate" in alerts and "DteCircuitBreakerOpen" in alerts
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def test_grafana_provisioning_and_dashboard() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "dte.json").read_text())
    assert dash["uid"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    exprs = list(expressions_in(dash["panels"]))
    assert len(exprs) >= len(dash["panels"])
    used = assert_known_metrics(exprs, "dte.json")
    for metric in ("dte_documents", "dte_sii_request_duration_seconds_bucket", "dte_sii_retries_total",
                   "dte_circuit_breaker_state", "dte_queue_depth", "dte_caf_folios_left",
                   "dte_certificate_days_left"):
        assert metric in used, metric
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in ds["datasources"]}
    for p in dash["panels"]:
        assert p["datasource"]["uid"] in uids
    prov = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "dte.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    grafana = compose()["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana["volumes"]
    assert any(d["url"] == "http://prometheus:9090" for d in ds["datasources"])


def test_dovecot_config_is_valid() -> None:
    doveconf = shutil.which("doveconf") or ("/usr/bin/doveconf" if os.access("/usr/bin/doveconf", os.X_OK) else None)
    if not doveconf:
        pytest.skip("doveconf not installed (Debian dovecot-core; scripts/setup installs dovecot-imapd)")
    conf = DEPLOY / "dovecot" / "dovecot.conf"
    r = subprocess.run([doveconf, "-n", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "protocols = imap" in r.stdout and "port = 143" in r.stdout
    users = (DEPLOY / "dovecot" / "users").read_text()
    assert users.startswith("recepcion:")


# --------------------------------------------------------------------------- natively, without Docker


@pytest.fixture()
def metrics_serve(tmp_path: Path, kit: Any) -> Iterator[tuple[int, Path]]:
    port = free_port()
    token = tmp_path / "metrics_token"
    token.write_text("native-token\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*DTE, "metrics-serve", "--port", str(port), "--token-file", str(token),
                             "--caf", f"{kit.caf_paths[33]}@11", "--cert", str(kit.cert_path),
                             "--password-file", str(kit.password_file), "--company", "native"],
                            cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield port, token
    finally:
        proc.terminate()
        proc.wait(10)


def test_simulator_runs_natively_with_the_stack_command(tmp_path: Path, kit: Any) -> None:
    """The simulator service's command and health check, run without Docker."""
    svc = compose()["services"]["simulator"]
    port = free_port()
    args = list(svc["command"])
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--sii-keys") + 1] = str(kit.sii_keys_dir)
    args[args.index("--state") + 1] = str(tmp_path / "sim-state.json")
    proc = subprocess.Popen([*DTE, *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state = json.loads(wait_http(f"http://127.0.0.1:{port}/_sim/state"))
        assert "envelopes" in state
    finally:
        proc.terminate()
        proc.wait(10)


def native_prometheus_config(tmp_path: Path, port: int, token: Path) -> Path:
    """deploy/prometheus/prometheus.yml with the container names and paths replaced the way
    deploy/README.md says (the same file, not a twin)."""
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    text = text.replace("metrics:9464", f"127.0.0.1:{port}").replace("/run/secrets/metrics_token", str(token))
    text = text.replace("/etc/prometheus/alerts.yml", str(DEPLOY / "prometheus" / "alerts.yml"))
    cfg = yaml.safe_load(text)
    cfg["global"]["scrape_interval"] = "1s"
    cfg["scrape_configs"] = [j for j in cfg["scrape_configs"] if j["job_name"] == "dte-metrics"]
    out = tmp_path / "prometheus.yml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def test_prometheus_scrapes_metrics_natively(tmp_path: Path, metrics_serve: tuple[int, Path]) -> None:
    prometheus = shutil.which("prometheus")
    if not prometheus:
        pytest.skip("prometheus not installed (Debian package prometheus; scripts/setup)")
    port, token = metrics_serve
    cfg = native_prometheus_config(tmp_path, port, token)
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    web = free_port()
    proc = subprocess.Popen([prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{web}/-/ready", timeout=60)
        query = f"http://127.0.0.1:{web}/api/v1/query?query=dte_caf_folios_left"
        deadline = time.monotonic() + 60
        result: list[Any] = []
        while time.monotonic() < deadline and not result:
            result = json.loads(wait_http(query))["data"]["result"]
            time.sleep(0.5)
        assert result, "Prometheus never scraped dte metrics-serve"
        assert result[0]["metric"]["job"] == "dte-metrics" and float(result[0]["value"][1]) > 0
        targets = json.loads(wait_http(f"http://127.0.0.1:{web}/api/v1/targets"))["data"]["activeTargets"]
        assert targets[0]["health"] == "up"
        rules = json.loads(wait_http(f"http://127.0.0.1:{web}/api/v1/rules"))["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"DteCertificateExpiringSoon", "DteFoliosLow"}
    finally:
        proc.terminate()
        proc.wait(20)
