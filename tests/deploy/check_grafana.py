#!/usr/bin/env python3
"""Checks deploy/grafana/engram-serve.json (Grafana is not packaged in Debian 12).

  - the JSON parses; dashboard structure: uid, title, schemaVersion, unique panel ids, gridPos,
    a `datasource` variable of type datasource (prometheus) that every panel and query uses,
    every $variable a query mentions is defined;
  - every PromQL expression (panel targets and template variable queries) names only metrics
    engramd exports: by default the metric names registered in server/ sources; with
    --metrics-url, the names a live engramd actually serves (the stronger check), plus `up`,
    which Prometheus itself writes per target;
  - with --prometheus-url (a Prometheus scraping that engramd), every expression, with the
    dashboard variables replaced by match-all values, is accepted by the real PromQL parser and
    returns data.
"""
import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_lib as dl  # noqa: E402

DASHBOARD = dl.DEPLOY / "grafana/engram-serve.json"
PROMETHEUS_OWN = {"up"}
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h", "__interval_ms": "30000",
                    "__range_s": "3600"}


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def expressions(dash):
    """[(where, expr, is_label_values)]"""
    out = []
    for p in all_panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append((f"panel {p.get('id')} '{p.get('title')}' {t.get('refId')}", t["expr"], False))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            out.append((f"variable ${v['name']}", q, True))
    return out


def substitute(expr, variables):
    def one(m):
        name = m.group(1) or m.group(2)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        return ".*" if name in variables else m.group(0)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)


def label_values_selector(q):
    m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", q, re.S)
    return (m.group(1), m.group(2)) if m else (None, None)


def prom_get(base, path, params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=15) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"{}") or {"status": "error", "error": str(e)}


def check(c, dash, exported, prometheus=None):
    c.check(dash.get("uid") and dash.get("title") and isinstance(dash.get("schemaVersion"), int),
            "dashboard needs uid, title and a numeric schemaVersion")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    c.check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
            "a `datasource` variable of type datasource, query prometheus, is needed")
    ids = [p.get("id") for p in all_panels(dash.get("panels", []))]
    c.check(len(ids) == len(set(ids)) and None not in ids, f"panel ids must be unique: {ids}")
    want_ds = {"type": "prometheus", "uid": "${datasource}"}
    for p in all_panels(dash.get("panels", [])):
        c.check(all(k in p.get("gridPos", {}) for k in "hwxy"), f"panel {p.get('id')} has no full gridPos")
        if p.get("type") == "row":
            continue
        c.check(p.get("datasource") == want_ds, f"panel {p.get('id')} '{p.get('title')}' must use ${{datasource}}")
        c.check(bool(p.get("targets")), f"panel {p.get('id')} '{p.get('title')}' has no queries")
        refs = [t.get("refId") for t in p.get("targets", [])]
        c.check(len(refs) == len(set(refs)) and None not in refs, f"panel {p.get('id')} refIds {refs}")
        for t in p.get("targets", []):
            c.check(t.get("datasource") == want_ds, f"panel {p.get('id')} query {t.get('refId')} must use ${{datasource}}")
    for name, v in variables.items():
        if v.get("type") == "query":
            c.check(v.get("datasource") == want_ds, f"variable ${name} must query ${{datasource}}")

    exprs = expressions(dash)
    c.check(len(exprs) >= 20, f"only {len(exprs)} expressions found")
    covered = set()
    for where, expr, is_lv in exprs:
        used = set(re.findall(r"\$\{?(\w+)", expr)) - set(GRAFANA_BUILTINS)
        c.check(used <= set(variables), f"{where}: undefined variables {sorted(used - set(variables))}")
        promql = expr
        if is_lv:
            promql, label = label_values_selector(expr)
            if not c.check(promql is not None, f"{where}: not label_values(selector, label): {expr}"):
                continue
        names = dl.promql_metric_names(promql)
        c.check(names, f"{where}: selects no metric: {expr}")
        unknown = names - exported - PROMETHEUS_OWN
        c.check(not unknown, f"{where}: metrics engramd does not export: {sorted(unknown)}")
        covered |= names
        if prometheus:
            q = substitute(promql, variables)
            if is_lv:
                r = prom_get(prometheus, "/api/v1/series", {"match[]": q})
                ok = r.get("status") == "success" and any(label in s for s in r.get("data", []))
            else:
                r = prom_get(prometheus, "/api/v1/query", {"query": q})
                ok = r.get("status") == "success" and len(r.get("data", {}).get("result", [])) > 0
            c.check(ok, f"{where}: Prometheus: {r.get('error') or 'no data'} for {q}")
    return covered


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics-url", help="a live engramd's /metrics: the names it serves")
    ap.add_argument("--prometheus-url", help="a Prometheus scraping that engramd: run every query")
    a = ap.parse_args()
    c = dl.Checker("check_grafana")
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    if a.metrics_url:
        with urllib.request.urlopen(a.metrics_url, timeout=15) as r:
            _, exported = dl.exposition_names(r.read().decode())
        source = f"the live {a.metrics_url}"
    else:
        _, exported = dl.source_metric_names()
        source = "server/ sources"
    covered = check(c, dash, exported, a.prometheus_url)
    print(f"{len(expressions(dash))} expressions over {len(covered)} metrics, checked against {source}"
          + (f" and run on {a.prometheus_url}" if a.prometheus_url else ""))
    c.finish()


if __name__ == "__main__":
    main()
