"""The Kubernetes manifests are valid against the API's schemas (offline), and the check bites.

``nox -s examples`` also runs the ``kubernetes-validate`` command on them (see pyproject).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped, unused-ignore]
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

K8S = Path(__file__).resolve().parent.parent / "k8s"
VERSION = "1.30.0"


def manifests() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def test_the_four_manifests_are_there() -> None:
    kinds = {yaml.safe_load(path.read_text())["kind"] for path in manifests()}
    assert kinds == {"ConfigMap", "Deployment", "Secret", "Service"}


@pytest.mark.parametrize("path", manifests(), ids=lambda path: path.name)
def test_manifest_is_valid(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    kubernetes_validate.validate(document, VERSION, strict=True)


def deployment() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((K8S / "deployment.yaml").read_text())
    return document


def test_a_typo_is_caught() -> None:
    document = deployment()
    container = document["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["pth"] = container["readinessProbe"]["httpGet"].pop(
        "path"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, VERSION, strict=True)


def test_the_probes_point_at_the_health_app_and_the_settings_at_the_config() -> None:
    container = deployment()["spec"]["template"]["spec"]["containers"][0]
    paths = {
        probe: container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": "/startupz",
        "livenessProbe": "/livez",
        "readinessProbe": "/readyz",
    }
    sources = {next(iter(source)) for source in container["envFrom"]}
    assert sources == {"configMapRef", "secretRef"}
    configmap = yaml.safe_load((K8S / "configmap.yaml").read_text())
    secret = yaml.safe_load((K8S / "secret.yaml").read_text())
    names = set(configmap["data"]) | set(secret["stringData"])
    assert {"ORDERS_DATABASE_URL", "ORDERS_PRICING_URL", "ORDERS_API_KEYS"} <= names
