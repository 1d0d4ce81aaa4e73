"""Checks compose/docker-compose.yml and compose/Dockerfile without a Docker engine.

Usage: check_compose.py REPO_ROOT. Prints the runnel subcommands the services run (one per line)
for tests/observability.rs to try; exits non-zero naming the first problem.
"""

import os
import re
import sys

import yaml

SERVICES = {"kafka", "clickhouse", "redis", "init", "edge", "processor", "prometheus", "grafana"}


def fail(message):
    sys.exit(f"compose check: {message}")


def main():
    root = sys.argv[1]
    compose_dir = os.path.join(root, "compose")
    with open(os.path.join(compose_dir, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    if set(services) != SERVICES:
        fail(f"services are {sorted(services)}, expected {sorted(SERVICES)}")
    volumes = set(compose.get("volumes") or {})
    config_doc = open(os.path.join(root, "docs", "configuration.md")).read()
    commands = set()
    for name, service in services.items():
        if name != "init" and "healthcheck" not in service:
            fail(f"service {name} has no healthcheck")
        for dep, spec in (service.get("depends_on") or {}).items():
            if dep not in services:
                fail(f"{name} depends on unknown service {dep}")
            condition = spec.get("condition")
            if condition == "service_healthy" and "healthcheck" not in services[dep]:
                fail(f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck")
            if condition not in ("service_healthy", "service_started", "service_completed_successfully"):
                fail(f"{name} depends on {dep} without a condition")
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            if source.startswith("."):
                path = os.path.normpath(os.path.join(compose_dir, source))
                if not os.path.exists(path):
                    fail(f"{name} mounts {source}, which does not exist ({path})")
            elif source not in volumes:
                fail(f"{name} mounts volume {source}, which is not declared")
        for variable in (service.get("environment") or {}):
            if variable.startswith("RUNNEL_") and f"`{variable}`" not in config_doc:
                fail(f"{name} sets {variable}, which docs/configuration.md does not document")
        if "build" in service:
            context = os.path.normpath(os.path.join(compose_dir, service["build"]["context"]))
            dockerfile = os.path.join(context, service["build"]["dockerfile"])
            check_dockerfile(context, dockerfile)
            command = service.get("command") or []
            if command and command[0] != "sh":
                commands.add(command[0])
            else:
                commands.update(re.findall(r"runnel (\w+)", " ".join(command)))

    edge_env, processor_env = services["edge"]["environment"], services["processor"]["environment"]
    ports = {"edge": edge_env["RUNNEL_EDGE_METRICS_ADDR"].rsplit(":", 1)[1],
             "processor": processor_env["RUNNEL_PROCESS_METRICS_ADDR"].rsplit(":", 1)[1]}
    with open(os.path.join(compose_dir, "prometheus", "prometheus.yml")) as f:
        prometheus = yaml.safe_load(f)
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    for service, port in ports.items():
        if f"{service}:{port}" not in targets:
            fail(f"Prometheus does not scrape {service}:{port} (targets: {sorted(targets)})")
    published = {p.split(":")[-1] for s in services.values() for p in s.get("ports") or []}
    for port in ("8080", "9090", "3000"):
        if port not in published:
            fail(f"port {port} is not published")

    with open(os.path.join(root, "grafana", "provisioning", "datasources", "runnel.yml")) as f:
        datasources = yaml.safe_load(f)["datasources"]
    for source in datasources:
        host = source.get("url", "").split("//")[-1].split(":")[0] or source["jsonData"].get("host")
        if host not in services:
            fail(f"Grafana datasource {source['name']} points at {host}, which is not a service")
    with open(os.path.join(root, "grafana", "provisioning", "dashboards", "runnel.yml")) as f:
        provider = yaml.safe_load(f)["providers"][0]["options"]["path"]
    if not any(m.split(":")[1] == provider for m in services["grafana"]["volumes"]):
        fail(f"the dashboard provider reads {provider}, where nothing is mounted")
    if "GF_INSTALL_PLUGINS" not in services["grafana"]["environment"]:
        fail("Grafana does not install the ClickHouse datasource plugin")
    print("\n".join(sorted(commands)))


def check_dockerfile(context, path):
    text = open(path).read()
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, re.M)
    if len(stages) < 2:
        fail(f"{path} is not multi-stage ({stages})")
    for line in text.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            for source in line.split()[1:-1]:
                if not os.path.exists(os.path.join(context, source)):
                    fail(f"{path}: COPY of {source}, which is not in the build context")
        m = re.match(r"COPY --from=(\w+)", line)
        if m and m.group(1) not in stages:
            fail(f"{path}: COPY from unknown stage {m.group(1)}")
    if 'ENTRYPOINT ["runnel"]' not in text:
        fail(f"{path}: the image's entrypoint is not runnel")
    if "cargo build --release --locked --bin runnel" not in text:
        fail(f"{path}: does not build the runnel binary")


if __name__ == "__main__":
    main()
