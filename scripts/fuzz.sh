#!/usr/bin/env bash
# Runs every cargo-fuzz target in turn for the given seconds each (default 600), one
# job at a time. Not run in CI. Needs `cargo install cargo-fuzz --locked` and nightly.
# Crashes land in fuzz/artifacts/<target>/; keep each, once fixed, under
# fuzz/regressions/<target>/ with a unit test in the decoder's crate.
set -euo pipefail
secs="${1:-600}"
cd "$(dirname "$0")/../fuzz"
for t in json cloudevents csv lineproto config; do
    mkdir -p "corpus/$t"
    seeds=()
    [ -d "regressions/$t" ] && seeds=("regressions/$t")
    echo "== $t for ${secs}s"
    cargo +nightly fuzz run -O "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -max_len=4096 -rss_limit_mb=1024 -timeout=10
done
