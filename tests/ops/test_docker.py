"""The Dockerfile, supervisord.conf, docker-compose.yml and Prometheus files, checked statically (no Docker here)."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import tomllib
from typing import Any

import pytest
import yaml

from shared.settings import Settings
from tests.service import REPO

DATA_VOLUME = "/var/lib/caipe-audit-service"
S3_ENV = {"AUDIT_SERVICE_BACKEND": "s3", "AUDIT_SERVICE_S3_CREATE_BUCKET": "true"}
METRIC = re.compile(r"\bauditlake_[a-z0-9_]+")


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            result.append((instruction.upper(), rest.strip()))
    return result


def instructions(name: str) -> list[str]:
    return [rest for instruction, rest in dockerfile() if instruction == name]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def supervisord_programs() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "supervisord.conf")
    return {section.split(":", 1)[1]: parser[section]["command"] for section in parser.sections()
            if section.startswith("program:")}


def test_dockerfile_copies_existing_files_and_runs_supervisord_as_uid_1001() -> None:
    """Every COPY source exists; CMD runs supervisord with the copied supervisord.conf; USER 1001; slim base."""
    assert re.fullmatch(r"python:3\.1[1-9]-slim.*", instructions("FROM")[0])
    copied = []
    for rest in instructions("COPY"):
        parts = [part for part in shlex.split(rest) if not part.startswith("--")]
        for source in parts[:-1]:
            assert (REPO / source).exists(), f"COPY source {source} does not exist"
            copied.append(source)
    assert "supervisord.conf" in copied and "pyproject.toml" in copied
    for package in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied, f"package {package} is not copied into the image"
    command = json.loads(instructions("CMD")[-1])
    assert command[0] == "supervisord" and command[command.index("-c") + 1].endswith("/supervisord.conf")
    assert instructions("USER")[-1] in ("1001", "1001:1001")
    assert any("--uid 1001" in rest for rest in instructions("RUN"))


def test_supervisord_programs_are_installed_console_scripts() -> None:
    """Each program in supervisord.conf runs a console script declared in [project.scripts]."""
    scripts = pyproject()["project"]["scripts"]
    programs = supervisord_programs()
    assert set(programs) == {"writer", "ingest"}
    for name, command in programs.items():
        executable = shlex.split(command)[0]
        assert executable in scripts, f"{name}: {executable} is not a console script"
        module = scripts[executable].split(":")[0]
        assert (REPO / module.replace(".", "/")).with_suffix(".py").exists() or (REPO / module.replace(".", "/")).exists()
    assert any(dependency.startswith("prometheus-client") for dependency in pyproject()["project"]["dependencies"])


def test_dockerfile_exposes_8010_declares_the_volume_and_probes_both_processes() -> None:
    """EXPOSE 8010, VOLUME /var/lib/caipe-audit-service, and a HEALTHCHECK hitting ingest and writer."""
    assert "8010" in " ".join(instructions("EXPOSE")).split()
    volumes = " ".join(instructions("VOLUME"))
    assert DATA_VOLUME in volumes
    healthcheck = instructions("HEALTHCHECK")[-1]
    assert "127.0.0.1:8010/healthz" in healthcheck and "127.0.0.1:8011/healthz" in healthcheck
    assert re.search(r"--timeout=\d+s", healthcheck)


def test_compose_example_runs_auditlake_against_minio() -> None:
    """docker-compose.yml: auditlake built here, S3 env pointing at the MinIO service, ports and the volume."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"auditlake", "minio", "prometheus"} <= services.keys()
    app = services["auditlake"]
    env = {key: str(value) for key, value in app["environment"].items()}
    assert S3_ENV.items() <= env.items()
    assert env["AUDIT_SERVICE_S3_BUCKET"]
    assert env["AUDIT_SERVICE_S3_ENDPOINT_URL"].startswith("http://minio:")
    assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    assert env["AUDIT_SERVICE_WRITER_HEALTH_HOST"] == "0.0.0.0"
    settings = Settings.from_env(env)  # the example is a valid configuration of this build
    assert (settings.backend, settings.s3_create_bucket, settings.s3_bucket) == ("s3", True, env["AUDIT_SERVICE_S3_BUCKET"])
    assert app["build"] == "." and "minio" in app["depends_on"]
    assert "8010:8010" in app["ports"]
    assert any(volume.split(":")[1] == DATA_VOLUME for volume in app["volumes"])
    assert set(compose["volumes"]) >= {volume.split(":")[0] for volume in app["volumes"]}
    for volume in services["prometheus"]["volumes"]:
        assert (REPO / volume.split(":")[0]).exists(), volume


def test_prometheus_scrapes_both_processes() -> None:
    """deploy/prometheus.yml scrapes ingest on 8010 and the writer on 8011 and loads the alert rules."""
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    targets = {target for job in config["scrape_configs"] for group in job["static_configs"] for target in group["targets"]}
    assert targets == {"auditlake:8010", "auditlake:8011"}
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


@pytest.fixture(scope="module")
def exposed_names(ops_service) -> set[str]:
    """Every auditlake_ sample name both processes expose (plus the S3-only rows of the writer's table)."""
    from tests.ledger import make_events
    from tests.ops.helpers import Scrape, wait_for
    from writer.metrics import FIELDS

    assert ops_service.post({"events": make_events(2, "names")})[0] == 202  # labelled series appear once used
    assert ops_service.get("/v1/audit/events?window=5m")[0] == 200
    wait_for(lambda: "auditlake_writer_last_flush_timestamp_seconds" in Scrape(f"{ops_service.writer_url}/metrics").samples,
             what="a first flush")
    names = set()
    for url in (f"{ops_service.url}/metrics", f"{ops_service.writer_url}/metrics"):
        scrape = Scrape(url)
        names |= set(scrape.samples) | set(scrape.families)
    names |= {row.name + ("_total" if row.kind == "counter" else "") for row in FIELDS.values()}
    return names


def test_alert_rules_and_the_runbook_use_only_exposed_metrics(exposed_names: set[str]) -> None:
    """Every metric named in deploy/alerts.yml and docs/operations.md exists; every runbook alert has a rule."""
    rules = [rule for group in yaml.safe_load((REPO / "deploy" / "alerts.yml").read_text())["groups"]
             for rule in group["rules"]]
    runbook = (REPO / "docs" / "operations.md").read_text()
    referenced = set(METRIC.findall(runbook))
    for rule in rules:
        referenced |= set(METRIC.findall(rule["expr"]))
        assert rule["alert"] in runbook, f"{rule['alert']} is not explained in docs/operations.md"
    unknown = sorted(name for name in referenced if name not in exposed_names and not name.endswith("_"))
    assert unknown == []
