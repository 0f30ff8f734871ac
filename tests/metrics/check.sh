#!/bin/bash
# Lints a real scrape with `promtool check metrics`, checks deploy/'s alert
# rules with `promtool check rules`, and checks that every series the rules
# and the dashboard name is exported (check_names.py).
# usage: check.sh METRICS_DUMP DEPLOY_DIR
set -euo pipefail
dump=$1
deploy=$2
here=$(dirname "$0")
fail() { echo "metrics check: FAIL: $*" >&2; exit 1; }
command -v promtool >/dev/null || fail "promtool not found (Debian package prometheus; run tools/install-deps)"
python3 -c 'import yaml' 2>/dev/null || fail "python3-yaml not installed (run tools/install-deps)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$dump" >"$work/scrape.txt" || fail "metrics_dump failed"
echo "--- scrape: $(grep -vc '^#' "$work/scrape.txt") samples"
# promtool prints lint findings and exits non-zero on any.
promtool check metrics <"$work/scrape.txt" || fail "promtool check metrics found problems (above)"
echo "promtool check metrics: clean"
promtool check rules "$deploy/prometheus-rules.yml" || fail "promtool check rules"
python3 "$here/check_names.py" "$work/scrape.txt" "$deploy/prometheus-rules.yml" \
  "$deploy/grafana-dashboard.json" || fail "rules or dashboard name series thinsnapd does not export"
