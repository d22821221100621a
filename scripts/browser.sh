#!/usr/bin/env bash
# Installs what the dashboard's browser test needs, where missing: Debian's chromium,
# and playwright-core (npm) in ~/.cache/reckon-node. Prints where they are.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || true
fi
command -v chromium >/dev/null 2>&1 || { echo "chromium: missing" >&2; exit 1; }
node_dir="$HOME/.cache/reckon-node"
if [ ! -d "$node_dir/node_modules/playwright-core" ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm: missing" >&2; exit 1; }
  mkdir -p "$node_dir"
  [ -f "$node_dir/package.json" ] || echo '{"private":true}' >"$node_dir/package.json"
  (cd "$node_dir" && npm install --silent --no-audit --no-fund playwright-core@1.65 >/dev/null)
fi
echo "chromium: $(command -v chromium)"
echo "playwright-core: $node_dir/node_modules/playwright-core"
