#!/usr/bin/env bash
# Energy regression gate on the zoo models against the baselines committed here, as users run it
# in their CI (docs/ci.md). One case per line of cases.txt: NAME and the `edgec report` arguments.
#
#   benchmarks/baselines/gate.sh            check every case: exit 6 if a count changed or energy grew > 5 %
#   benchmarks/baselines/gate.sh --update   rewrite the baselines (review and commit them deliberately)
#
# The Markdown reports (for a pull-request comment) land in edgec-out/ci-reports/NAME.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
EDGEC=${EDGEC:-.venv/bin/edgec}
MAX=${MAX_INCREASE:-5%}
OUT=edgec-out/ci-reports
mkdir -p "$OUT"
status=0
while read -r name args; do
  case "$name" in '' | '#'*) continue ;; esac
  base="benchmarks/baselines/$name.json"
  if [ "${1:-}" = "--update" ]; then
    echo "== $name: edgec report $args --baseline $base --update" >&2
    # shellcheck disable=SC2086  # $args holds several words on purpose
    $EDGEC report $args --baseline "$base" --update -o "$OUT/$name.md" || status=$?
  else
    echo "== $name: edgec report $args --baseline $base --max-increase $MAX" >&2
    # shellcheck disable=SC2086
    $EDGEC report $args --baseline "$base" --max-increase "$MAX" -o "$OUT/$name.md"
    rc=$?
    if [ "$rc" -ne 0 ]; then status=$rc; fi
  fi
done <benchmarks/baselines/cases.txt
exit "$status"
