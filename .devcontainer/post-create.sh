#!/usr/bin/env bash
# Runs once when the dev container is created: the README's set-up, then an editable venv
# for the editor (.venv, used by .vscode/settings.json) and the pre-commit hooks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The services, when the docker CLI can reach an engine (docker-outside-of-docker).
if docker info >/dev/null 2>&1; then
    docker compose up -d --wait || echo "post-create: services did not start; tests needing them will skip"
fi

# The README's set-up, verbatim: nox (with uv) runs everything else.
python3 -m pip install "nox[uv]"

# An editor venv with every package installed editable, from the working tree only: the
# family is never resolved by name (SECURITY.md), so each sibling is named by its path.
python3 -m uv venv --allow-existing .venv
editable=()
for pyproject in packages/*/pyproject.toml; do
    editable+=(-e "$(dirname "$pyproject")")
done
VIRTUAL_ENV=.venv python3 -m uv pip install "${editable[@]}" pytest hypothesis "coverage[toml]" mypy ruff pre-commit

.venv/bin/pre-commit install --hook-type pre-commit --hook-type pre-push
python3 -m nox -s demo    # the quickstart: proves the set-up works without a server
