#!/usr/bin/env python3
"""A real engramd scraped by a real Prometheus (Debian's /usr/bin/prometheus), on loopback.

  1. engramd starts on a tiny generated model with the command line of
     deploy/systemd/engramd.service, expanded from deploy/systemd/engramd.env as systemd would,
     with only the model, the addresses and the KV cache size overridden for the test.
  2. Prometheus starts with deploy/prometheus/prometheus.yml rewritten for the test: its
     `engramd` job pointed at that engramd's metrics port, 1 s scrape and rule intervals, the
     rule files given as absolute paths, no Alertmanager.
  3. Through Prometheus's HTTP API: the target is up (/api/v1/targets, `up`); every engram:
     series the live /metrics serves is stored (/api/v1/label/__name__/values); every rule of
     deploy/prometheus/alerts.yml is loaded and evaluates without error, each recording rule
     yields series from the real metrics, and EngramdDown is not firing.
  4. The Grafana dashboard (check_grafana.py) against the live /metrics names, each query run
     on this Prometheus; prometheus-adapter's source metric is served.
  5. With --engram-client, the HEALTHCHECK command of Dockerfile.cpu (its --server pointed at
     this engramd) exits 0.
  6. SIGTERM: engramd drains and exits 0 in time.
Every child dies with this process (PR_SET_PDEATHSIG), also when ctest kills it at its timeout.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_docker  # noqa: E402
import check_grafana  # noqa: E402
import deploy_lib as dl  # noqa: E402

PROM_DIR = dl.DEPLOY / "prometheus"
CHILDREN = []


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start(cmd, log, env=None):
    f = open(log, "w")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                         preexec_fn=dl.die_with_parent)
    CHILDREN.append(p)
    return p


def stop_all():
    for p in CHILDREN:
        if p.poll() is None:
            p.kill()
            p.wait()


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def api(base, path, **params):
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    try:
        _, body = http_get(url, timeout=10)
        return json.loads(body)
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        return {"status": "error", "error": str(e)}


def poll(what, fn, timeout, procs=()):
    """Calls fn until it returns a truthy value; fails (returns None) after timeout seconds or
    as soon as one of procs has exited."""
    deadline = time.monotonic() + timeout
    last = err = None
    while time.monotonic() < deadline:
        for p, log in procs:
            if p.poll() is not None:
                print(f"FAIL: {what}: {p.args[0]} exited with {p.returncode}; its log:\n"
                      + Path(log).read_text(errors="replace")[-3000:], flush=True)
                return None
        try:
            last = fn()
        except (urllib.error.URLError, OSError, ValueError) as e:
            last, err = None, e
        if last:
            return last
        time.sleep(0.25)
    print(f"waited {timeout} s for {what}" + (f" (last error: {err})" if err else ""), flush=True)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engramd", required=True)
    ap.add_argument("--engram-model", required=True)
    ap.add_argument("--engram-client")
    ap.add_argument("--prometheus", default="/usr/bin/prometheus")
    ap.add_argument("--promtool", default="/usr/bin/promtool")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--timeout", type=float, default=60, help="seconds to wait for each stage")
    a = ap.parse_args()
    c = dl.Checker("live_prometheus_test")
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(1)))
    try:
        run(a, c, work)
    finally:
        stop_all()
    c.finish()


def run(a, c, work):
    import yaml

    r = dl.run_quiet([a.engram_model, "create", "--preset", "tiny", "--out", str(work / "model")], timeout=120)
    if not c.check(r.returncode == 0, f"engram-model create --preset tiny: {r.stderr.strip()}"):
        return
    grpc_port, metrics_port, prom_port = free_ports(3)

    # 1. engramd, as the systemd unit starts it.
    unit = dict(dl.read_unit(dl.DEPLOY / "systemd/engramd.service")["Service"])
    env = dl.read_env_file(dl.DEPLOY / "systemd/engramd.env")
    env.update(ENGRAMD_MODEL=str(work / "model"), ENGRAMD_LISTEN=f"127.0.0.1:{grpc_port}",
               ENGRAMD_METRICS_PORT=str(metrics_port), ENGRAMD_KV_CACHE_BYTES="64M")
    env["ENGRAMD_EXTRA_ARGS"] = env.get("ENGRAMD_EXTRA_ARGS", "") + " --threads=1 --model-name=tiny"
    cmd = [a.engramd] + dl.expand_exec(unit["ExecStart"], env)[1:]
    print("engramd:", " ".join(cmd), flush=True)
    engramd_log = work / "engramd.log"
    engramd = start(cmd, engramd_log, env=dict(os.environ, ENGRAM_CACHE_DIR=str(work / "cache")))
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    body = poll("engramd's /metrics with the model loaded",
                lambda: (lambda b: b if "engram:engram_layers" in b else None)(http_get(metrics_url)[1]),
                a.timeout, [(engramd, engramd_log)])
    if not c.check(body, "engramd serves its metrics with the model loaded"):
        return
    families, samples = dl.exposition_names(body)
    engram_samples = {s for s in samples if s.startswith("engram:")}
    c.check(len(engram_samples) >= 30, f"only {len(engram_samples)} engram: samples in /metrics")

    # 2. Prometheus with the project's scrape config and rules.
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg.get("scrape_configs", [])}
    if not c.check("engramd" in jobs, "prometheus.yml has no `engramd` job"):
        return
    job = jobs["engramd"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    job.pop("scrape_interval", None)
    job.pop("scrape_timeout", None)
    cfg["scrape_configs"] = [job]
    cfg["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    cfg.pop("alerting", None)
    cfg["rule_files"] = [str((PROM_DIR / f).resolve()) for f in cfg.get("rule_files", [])]
    c.check(cfg["rule_files"] == [str((PROM_DIR / "alerts.yml").resolve())], f"rule_files {cfg['rule_files']}")
    prom_cfg = work / "prometheus.yml"
    prom_cfg.write_text(yaml.safe_dump(cfg))
    r = dl.run_quiet([a.promtool, "check", "config", str(prom_cfg)], timeout=60)
    c.check(r.returncode == 0, f"promtool check config (test copy): {r.stdout}{r.stderr}")
    prom_log = work / "prometheus.log"
    prom = start([a.prometheus, f"--config.file={prom_cfg}", f"--storage.tsdb.path={work / 'data'}",
                  f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], prom_log)
    base = f"http://127.0.0.1:{prom_port}"
    procs = [(engramd, engramd_log), (prom, prom_log)]
    if not c.check(poll("Prometheus ready", lambda: http_get(f"{base}/-/ready")[0] == 200, a.timeout, procs),
                   "Prometheus becomes ready"):
        return

    # 3. The target, the series, the rules.
    def target_up():
        t = api(base, "/api/v1/targets").get("data", {}).get("activeTargets", [])
        return [x for x in t if x["labels"].get("job") == "engramd" and x.get("health") == "up"]
    up = poll("the engramd target up", target_up, a.timeout, procs)
    c.check(up and up[0]["scrapeUrl"] == metrics_url, f"/api/v1/targets: engramd target up at {metrics_url}: {up}")
    r = api(base, "/api/v1/query", query='up{job="engramd"}')
    res = r.get("data", {}).get("result", [])
    c.check(len(res) == 1 and res[0]["value"][1] == "1", f"up{{job=\"engramd\"}} == 1: {r}")

    def stored():
        names = set(api(base, "/api/v1/label/__name__/values").get("data", []))
        return names if engram_samples <= names else None
    names = poll("every engram: series in Prometheus", stored, a.timeout, procs)
    if names is None:
        names = set(api(base, "/api/v1/label/__name__/values").get("data", []))
    c.check(engram_samples <= names, f"engram: series missing in Prometheus: {sorted(engram_samples - names)}")
    r = api(base, "/api/v1/query", query='count({__name__=~"engram:.+", job="engramd"})')
    n = int(r.get("data", {}).get("result", [{"value": [0, "0"]}])[0]["value"][1])
    c.check(n >= 100, f"Prometheus holds {n} engram: series (expected >= 100)")
    print(f"Prometheus: target up, {len(engram_samples)} engram: sample names, {n} series", flush=True)

    rules_file = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    want_rules = [r_.get("record") or r_.get("alert") for g in rules_file["groups"] for r_ in g["rules"]]

    def rules_evaluated():
        groups = api(base, "/api/v1/rules").get("data", {}).get("groups", [])
        rules = [r_ for g in groups for r_ in g["rules"]]
        done = [r_ for r_ in rules if not r_.get("lastEvaluation", "0001").startswith("0001")]
        return rules if len(rules) == len(want_rules) and len(done) == len(rules) else None
    rules = poll("every rule evaluated", rules_evaluated, a.timeout, procs) or []
    c.check(sorted(r_["name"] for r_ in rules) == sorted(want_rules), f"rules loaded: {[r_['name'] for r_ in rules]}")
    for r_ in rules:
        c.check(r_.get("health") == "ok", f"rule {r_['name']}: health {r_.get('health')}: {r_.get('lastError')}")

    # rate() needs two samples in its window: wait for a few scrapes, then every recording rule
    # must produce series from the real metrics (a label or metric name that engramd does not
    # serve would leave it empty).
    poll("three scrapes", lambda: (lambda v: v and float(v[0]["value"][1]) >= 3)(
        api(base, "/api/v1/query", query='count_over_time(up{job="engramd"}[1m])').get("data", {}).get("result")),
        a.timeout, procs)
    for g in rules_file["groups"]:
        for r_ in g["rules"]:
            if "record" in r_:
                got = poll(f"series of {r_['record']}", lambda: api(base, "/api/v1/query", query=r_["record"])
                           .get("data", {}).get("result"), 15, procs)
                c.check(got, f"recording rule {r_['record']} yields no series from the live engramd")
    firing = [x["labels"]["alertname"] for x in api(base, "/api/v1/alerts").get("data", {}).get("alerts", [])]
    c.check("EngramdDown" not in firing, f"alerts firing or pending against a healthy engramd: {firing}")

    # 4. Grafana and prometheus-adapter against what the live server serves.
    dash = json.loads(check_grafana.DASHBOARD.read_text())
    before = len(c.failures)
    covered = check_grafana.check(c, dash, samples, base)
    print(f"Grafana: {len(check_grafana.expressions(dash))} expressions over {len(covered)} metrics, all served "
          f"by engramd and answered by Prometheus" if len(c.failures) == before else "Grafana: failures above", flush=True)
    adapter = yaml.safe_load((dl.DEPLOY / "k8s/prometheus-adapter/rules.yaml").read_text())
    for rule in adapter["rules"]:
        metric = dl.promql_metric_names(rule["seriesQuery"])
        c.check(metric and metric <= samples, f"prometheus-adapter seriesQuery {rule['seriesQuery']}: not served")

    # 5. The image's HEALTHCHECK command.
    if a.engram_client:
        ins = check_docker.parse_dockerfile(check_docker.DOCKER / "Dockerfile.cpu")
        hc = [r_ for i, r_, _ in ins if i == "HEALTHCHECK"][-1]
        hcmd = check_docker.exec_form(hc[hc.index("CMD") + 3:].strip())
        hcmd = [a.engram_client] + hcmd[1:]
        i = hcmd.index("--server")
        hcmd[i + 1] = f"127.0.0.1:{grpc_port}"
        r = dl.run_quiet(hcmd, timeout=30)
        c.check(r.returncode == 0, f"Dockerfile HEALTHCHECK {' '.join(hcmd)}: exit {r.returncode}: {r.stdout}{r.stderr}")
        print(f"HEALTHCHECK command: exit {r.returncode}", flush=True)

    # 6. Drain on SIGTERM: exit 0 well within TimeoutStopSec.
    engramd.send_signal(signal.SIGTERM)
    try:
        rc = engramd.wait(timeout=float(env["ENGRAMD_DRAIN_TIMEOUT"]) + 15)
    except subprocess.TimeoutExpired:
        rc = None
    c.check(rc == 0, f"engramd after SIGTERM: exit {rc}; log:\n{engramd_log.read_text(errors='replace')[-2000:]}")
    prom.terminate()
    try:
        prom.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


if __name__ == "__main__":
    main()
