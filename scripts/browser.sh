#!/usr/bin/env bash
# Installs what the dashboard's browser test needs, where missing: Debian's chromium,
# and playwright-core (npm) in ~/.cache/reckon-node. Prints where they are.
set -euo pipefail
node_dir="$HOME/.cache/reckon-node"
# Tests run in parallel: one installer at a time (apt and npm refuse a second; the
# others wait, then find it done).
mkdir -p "$HOME/.cache"
exec 9>"$node_dir.lock"
flock 9
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  # A fresh machine may have no package lists yet: fetch them once and retry.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } || true
fi
command -v chromium >/dev/null 2>&1 || { echo "chromium: missing" >&2; exit 1; }
if [ ! -d "$node_dir/node_modules/playwright-core" ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm: missing" >&2; exit 1; }
  mkdir -p "$node_dir"
  [ -f "$node_dir/package.json" ] || echo '{"private":true}' >"$node_dir/package.json"
  (cd "$node_dir" && npm install --silent --no-audit --no-fund playwright-core@1.65 >/dev/null)
fi
echo "chromium: $(command -v chromium)"
echo "playwright-core: $node_dir/node_modules/playwright-core"
