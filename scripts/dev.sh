#!/usr/bin/env bash
# `make dev`: migrate, start the demo agents, then serve with hot reload. Ctrl-C stops both.
set -euo pipefail
bin="$(dirname "$0")/../.venv/bin"
export API_KEY="${API_KEY:-dev-key}"
"$bin/router-service" migrate
"$bin/router-service" demo-agents --port "${DEMO_AGENTS_PORT:-9100}" &
agents=$!
trap 'kill "$agents" 2>/dev/null || true' EXIT INT TERM
echo "console: http://${HOST:-127.0.0.1}:${PORT:-8000}/console (sign in with an API key)" >&2
"$bin/router-service" serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" --reload
