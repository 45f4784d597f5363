#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 60) from the checked-in
# corpus (fuzz/corpus/<target>, read only; new inputs go to
# fuzz/target/corpus/<target>), then print one line per target: its name,
# executions, seconds. Exits non-zero at the first target that finds a
# crash (libFuzzer leaves the input under fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O
summary=()
for target in $(cargo +nightly fuzz list); do
    work="target/corpus/$target"
    mkdir -p "$work" "corpus/$target"
    log="target/fuzz-$target.log"
    echo "== fuzz $target for ${seconds}s"
    if ! cargo +nightly fuzz run -O "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4096 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz $target: FAILED (see fuzz/artifacts/$target)"
        exit 1
    fi
    runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' | tail -1)
    summary+=("$target ${runs:-?} runs in ${seconds}s")
done
printf '%s\n' "${summary[@]}"
