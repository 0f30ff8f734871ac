#!/usr/bin/env python3
"""Checks that every thinsnap_* series the alert rules and the Grafana
dashboard name is in a real scrape of thinsnapd, and that each expression
names at least one series (thinsnap_* or Prometheus' own `up`).

usage: check_names.py SCRAPE RULES_YAML DASHBOARD_JSON
"""
import json
import re
import sys

import yaml

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Series Prometheus itself records for every target.
PROMETHEUS_SERIES = {"up"}


def exported(scrape_path):
    names = set()
    with open(scrape_path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            names.add(NAME.match(line).group(0))
    return names


def strip_strings(expr):
    # Label values and legend text are not series names.
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def expressions(rules_path, dashboard_path):
    out = []
    with open(rules_path) as f:
        for group in yaml.safe_load(f)["groups"]:
            for rule in group["rules"]:
                out.append((f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]))
    with open(dashboard_path) as f:
        dashboard = json.load(f)
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel '{panel['title']}'", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if query:
            out.append((f"variable ${variable['name']}", query))
    return out


def main():
    scrape, rules, dashboard = sys.argv[1:4]
    names = exported(scrape)
    problems = []
    checked = set()
    exprs = expressions(rules, dashboard)
    for where, expr in exprs:
        tokens = set(NAME.findall(strip_strings(expr)))
        series = {t for t in tokens if t.startswith("thinsnap_")}
        for name in sorted(series - names):
            problems.append(f"{where}: {name} is not exported")
        if not series and not tokens & PROMETHEUS_SERIES:
            problems.append(f"{where}: names no series: {expr}")
        checked |= series
    for problem in problems:
        print("check_names: " + problem)
    if problems:
        return 1
    print(f"check_names: {len(exprs)} expressions name {len(checked)} series, all exported:")
    for name in sorted(checked):
        print("  " + name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
