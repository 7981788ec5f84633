#!/usr/bin/env bash
# Runs the whole test suite (restore, build, test) and ends with one line: "N passed, N failed, N skipped".
# Usage: bash tools/run-tests.sh [extra dotnet test arguments]
set -uo pipefail
cd "$(dirname "$0")/.."

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
bash tools/setup.sh
# Keep glibc from hoarding freed tensor buffers (see feasibility §1); the code also sets this at start-up.
export MALLOC_MMAP_THRESHOLD_=1048576

# Formatting is part of the contract (fast: no build needed).
if ! dotnet format whitespace OmniTune.slnx --verify-no-changes; then
  echo "formatting differs: run 'dotnet format OmniTune.slnx'"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi

results="artifacts/test-results"
rm -rf "$results"
dotnet test OmniTune.slnx -c Release \
  --logger "console;verbosity=normal" \
  --logger "trx;LogFileName=results.trx" \
  --results-directory "$results" "$@"
status=$?

passed=0 failed=0 skipped=0
shopt -s nullglob
for trx in "$results"/*.trx "$results"/*/*.trx; do
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  get() { echo "$counters" | grep -o "$1=\"[0-9]*\"" | grep -o '[0-9]*'; }
  total=$(get total); executed=$(get executed); p=$(get passed); f=$(get failed); e=$(get error)
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0} + ${e:-0}))
  skipped=$((skipped + ${total:-0} - ${executed:-0}))
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; echo "dotnet test exited with $status (build or host failure)"; fi
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
