#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for a bounded time each (FUZZTIME, default 10s).
# The committed corpora under testdata/fuzz/ also run as plain tests in `make test`. Minimising a new
# interesting input is capped (FUZZMINIMIZETIME, default 1s): Go's default of 60s each stalls a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
status=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
    echo "== $dir $target ($fuzztime)"
    if ! go test "./$dir" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "${FUZZMINIMIZETIME:-1s}"; then
      status=1
    fi
  done
done < <(grep -rlE '^func Fuzz' --include='*_test.go' contracts services deploy 2>/dev/null | sort)
exit $status
