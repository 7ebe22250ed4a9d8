"""Validate compose.yaml without docker: ``python tools/compose_check.py compose.yaml``.

Where docker is installed with the compose plugin, ``docker compose config --quiet`` is the
real check and runs as well. Otherwise (this repository's CI host has no docker engine)
a structural check of the Compose Specification subset this project uses: known top-level
keys, every service has an image, ports are ``[host_ip:]host:container`` strings,
healthchecks have a test, and the services the test suite expects exist. Needs PyYAML.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "volumes",
    "healthcheck", "depends_on", "tmpfs", "restart", "networks", "profiles", "labels",
    "container_name", "user", "working_dir", "expose", "ulimits", "shm_size",
}  # fmt: skip
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "disable"}
REQUIRED_SERVICES = {"postgres", "redis", "moto"}
PORT_RE = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}:)?\d{1,5}:\d{1,5}(?:/(?:tcp|udp))?$")


def check(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return ["the file is not a mapping"]
    errors = [
        f"unknown top-level key {k!r}"
        for k in data
        if k not in TOP_LEVEL and not k.startswith("x-")
    ]
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        return [*errors, "no services"]
    errors += [f"missing service {s!r}" for s in sorted(REQUIRED_SERVICES - set(services))]
    for name, svc in services.items():
        if not isinstance(svc, dict):
            errors.append(f"{name}: not a mapping")
            continue
        errors += [
            f"{name}: unknown key {k!r}"
            for k in svc
            if k not in SERVICE_KEYS and not k.startswith("x-")
        ]
        if not isinstance(svc.get("image"), str) and "build" not in svc:
            errors.append(f"{name}: needs an image (or build)")
        for port in svc.get("ports", []):
            if not isinstance(port, str) or not PORT_RE.match(port):
                errors.append(
                    f"{name}: port {port!r} is not a quoted '[ip:]host:container' string"
                )
        env = svc.get("environment", {})
        if not isinstance(env, (dict, list)):
            errors.append(f"{name}: environment must be a mapping or a list")
        elif isinstance(env, dict):
            errors += [
                f"{name}: environment {k} must be a string"
                for k, v in env.items()
                if not isinstance(v, str)
            ]
        health = svc.get("healthcheck")
        if health is not None:
            if not isinstance(health, dict) or "test" not in health:
                errors.append(f"{name}: healthcheck needs a test")
            else:
                errors += [
                    f"{name}: unknown healthcheck key {k!r}"
                    for k in health
                    if k not in HEALTHCHECK_KEYS
                ]
    return errors


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "compose.yaml")
    errors = check(yaml.safe_load(path.read_text(encoding="utf-8")))
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        result = subprocess.run(
            [docker, "compose", "-f", str(path), "config", "--quiet"], check=False
        )
        if result.returncode:
            errors.append("docker compose config failed")
    for error in errors:
        print(f"{path}: {error}", file=sys.stderr)
    if not errors:
        print(f"{path}: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
