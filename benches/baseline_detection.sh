#!/usr/bin/env bash
# Measures how reliably `--baseline` detects an injected 15% slowdown, and that it does
# not flag unchanged runs: records one baseline run of experiments/baseline_detection.toml,
# then runs it RUNS times with `slowdown = 1.15` and RUNS times unchanged (A/A), each
# compared with that baseline, and counts the runs that failed. Reports go to a
# temporary directory. Usage: benches/baseline_detection.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
spec=experiments/baseline_detection.toml
run() {
    local dir=$1
    shift
    cargo xtask run "$spec" --plain --allow-outside --set "experiment.output=\"$out/$dir\"" "$@" >/dev/null 2>&1
}
summary() {
    python3 - "$out/$1" <<'PY'
import glob, json, sys
ratios = []
for path in sorted(glob.glob(sys.argv[1] + "/baseline_detection/*Z-*/detect/report.json")):
    for verdict in json.load(open(path))["verdicts"]:
        if verdict["check"] == "baseline":
            low, high = verdict["measured"]["interval"]
            ratios.append((verdict["measured"]["observed"], low, high, verdict["status"]))
ratios.sort()
median = ratios[len(ratios) // 2]
print(f"  ratio of medians: min {ratios[0][0]:.3f}, median {median[0]:.3f}, max {ratios[-1][0]:.3f}; "
      f"lowest interval bound {min(r[1] for r in ratios):.3f}, highest {max(r[2] for r in ratios):.3f}")
print("  verdicts: " + ", ".join(f"{s}: {sum(1 for r in ratios if r[3] == s)}" for s in sorted({r[3] for r in ratios})))
PY
}

cargo build --quiet --profile measure --package xtask
run base
baseline="$out/base/baseline_detection/$(readlink "$out/base/baseline_detection/latest")"

detected=0
for _ in $(seq "$runs"); do
    status=0
    run slow --baseline "$baseline" --set phase.detect.workload.work.params.slowdown=1.15 || status=$?
    if [ "$status" -eq 1 ]; then detected=$((detected + 1)); fi
done
flagged=0
for _ in $(seq "$runs"); do
    status=0
    run same --baseline "$baseline" || status=$?
    if [ "$status" -ne 0 ]; then flagged=$((flagged + 1)); fi
done

echo "15% slowdown, failed (exit 1): $detected of $runs runs"
summary slow
echo "A/A, failed or inconclusive (exit != 0): $flagged of $runs runs"
summary same

# The targets: the slowdown fails at least 19 runs in 20, an unchanged run never.
if [ $((detected * 20)) -lt $((runs * 19)) ] || [ "$flagged" -gt 0 ]; then
    echo "target missed: at least 19 in 20 slowdowns detected and no A/A run flagged" >&2
    exit 1
fi
