#!/usr/bin/env bash
# Install safehaven and run the demo on the embedded SQLite default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/safehaven demo "$@"
