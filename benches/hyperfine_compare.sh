#!/usr/bin/env bash
# Times one short external command with phasegate's `command` kernel and with
# hyperfine, alternating ROUNDS times (so drift hits both), and prints both medians and
# their ratio. phasegate's median should be within 5% of hyperfine's.
# Needs hyperfine (Debian: `apt-get install hyperfine`) and python3.
# Usage: benches/hyperfine_compare.sh [ROUNDS] [RUNS_PER_ROUND]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
runs=${2:-40}
command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install hyperfine" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# About 10 ms of work in one process, no shell and no files.
program=awk
script='BEGIN { s = 0; for (i = 0; i < 400000; i++) s += i % 7; print s > "/dev/null" }'
cat >"$out/spec.toml" <<SPEC
[experiment]
name = "hyperfine_compare"
seed = 1
output = "$out/reports"

[defaults]
warmup = 3
repeats = $runs

[[phase]]
id = "p"
title = "one short command"

[[phase.workload]]
id = "awk"
kernel = "command"
[phase.workload.params]
program = "$program"
args = ['$script']
SPEC
cargo build --quiet --profile measure --package xtask
for round in $(seq "$rounds"); do
    hyperfine --style none --shell=none --warmup 3 --runs "$runs" \
        --export-json "$out/hyperfine_$round.json" "$program '$script'" >/dev/null
    cargo xtask run "$out/spec.toml" --plain --allow-outside >/dev/null 2>&1
done
python3 - "$out" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
hyperfine = []
for path in sorted(glob.glob(out + "/hyperfine_*.json")):
    hyperfine += json.load(open(path))["results"][0]["times"]
phasegate = []
for path in sorted(glob.glob(out + "/reports/hyperfine_compare/*Z-*/p/report.json")):
    for run in json.load(open(path))["runs"]:
        phasegate += [s["seconds"] for s in run["samples"] if s["mode"] == "warm" and not s["warmup"]]
h, p = statistics.median(hyperfine), statistics.median(phasegate)
print(f"hyperfine: median {h * 1e3:.3f} ms over {len(hyperfine)} runs")
print(f"phasegate: median {p * 1e3:.3f} ms over {len(phasegate)} runs")
print(f"phasegate / hyperfine = {p / h:.4f} ({(p / h - 1) * 100:+.2f}%)")
if abs(p / h - 1) > 0.05:
    sys.exit("target missed: phasegate's median is not within 5% of hyperfine's")
PY
