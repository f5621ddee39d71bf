#!/usr/bin/env python3
"""Checks deploy/k8s: resolves the kustomize base and overlays, then checks the objects they
render, the way the cluster and engramd will read them.

Kubernetes tools: Debian 12 has no kustomize and no schema validator (kubeconform, kubeval); its
kubernetes-client is kubectl 1.20, whose kustomize (v2.0.3) cannot take a directory in
`resources`. So this script resolves kustomizations itself (resources, patches as strategic
merge patches, images, namespace; anything else is refused, not ignored), and with --kubectl it
also renders every kustomization with `kubectl kustomize` and requires the same objects: the
real tool then vouches for the resolver wherever a kubectl exists.

Checks, per rendered kustomization (base, overlays/cpu, overlays/gpu):
  - exactly the expected kinds and apiVersions;
  - label selectors of the Deployment, Service, PodDisruptionBudget match the pod template;
    Service target ports and probe ports exist on the container; volumes, ConfigMap and
    ServiceAccount references resolve;
  - readiness, liveness and startup probes are native gRPC probes on the gRPC container port,
    readiness and startup on engram.v1.InferenceService;
  - the engramd command line, with $(VAR) resolved from the ConfigMap and the downward API, is
    accepted by the real engramd (--engramd) and listens where the ports say;
  - terminationGracePeriodSeconds > preStop sleep + --drain-timeout + 10 s;
  - memory requests = limits and at least the KV cache + 1 GiB; whole-core CPU requests;
  - the HPA scales the Deployment on a Pods metric that prometheus-adapter's rule produces from
    a metric engramd exports; no `replicas` in the Deployment; the PDB leaves the HPA room;
  - overlays: image tags, and for gpu the nvidia.com/gpu limit, hugepages (requests = limits,
    HugePages volume mounted), node selector and toleration;
  - the Prometheus scrape job for Kubernetes and the PodMonitor select these pods' metrics port
    and give the series the labels the adapter and the alerts need.
"""
import argparse
import copy
import math
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_lib as dl  # noqa: E402

K8S = dl.DEPLOY / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "cpu": K8S / "overlays/cpu", "gpu": K8S / "overlays/gpu"}
EXPECTED_KINDS = {
    ("v1", "ServiceAccount"), ("v1", "ConfigMap"), ("apps/v1", "Deployment"), ("v1", "Service"),
    ("policy/v1", "PodDisruptionBudget"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
}
HEALTH_SERVICE = "engram.v1.InferenceService"

# Strategic-merge-patch merge keys of the lists these manifests patch (the Kubernetes API's
# patchMergeKey); any other list is replaced, as SMP does for lists without one.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name",
              "volumeMounts": "mountPath", "env": "name", "ports": "containerPort",
              "envFrom": None, "imagePullSecrets": "name"}


class ResolveError(Exception):
    pass


def smp_merge(base, patch):
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif k in out and isinstance(v, dict):
            out[k] = smp_merge(out[k], v)
        elif k in out and isinstance(v, list) and MERGE_KEYS.get(k):
            key = MERGE_KEYS[k]
            # kustomize (kyaml) puts the patch's new items first, in patch order.
            merged, new = copy.deepcopy(out[k]), []
            for item in v:
                idx = next((i for i, b in enumerate(merged) if b.get(key) == item.get(key)), None)
                if idx is None:
                    new.append(copy.deepcopy(item))
                else:
                    merged[idx] = smp_merge(merged[idx], item)
            out[k] = new + merged
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve(directory, seen=()):
    """The objects a kustomization directory renders (a subset of kustomize, see the module
    docstring)."""
    directory = Path(directory).resolve()
    if directory in seen:
        raise ResolveError(f"{directory}: kustomization cycle")
    kfile = next((directory / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
                  if (directory / n).is_file()), None)
    if kfile is None:
        raise ResolveError(f"{directory}: no kustomization.yaml")
    k = dl.load_yaml(kfile)
    supported = {"apiVersion", "kind", "resources", "patches", "images", "namespace"}
    unknown = set(k) - supported
    if unknown:
        raise ResolveError(f"{kfile}: fields this resolver does not implement: {sorted(unknown)}")
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        raise ResolveError(f"{kfile}: apiVersion/kind is not kustomize.config.k8s.io/v1beta1 Kustomization")
    objects = []
    for r in k.get("resources", []):
        path = directory / r
        if path.is_dir():
            objects += resolve(path, seen + (directory,))
        elif path.is_file():
            objects += dl.load_yaml_docs(path)
        else:
            raise ResolveError(f"{kfile}: resource {r} does not exist")
    for p in k.get("patches", []):
        if set(p) != {"path"}:
            raise ResolveError(f"{kfile}: only `patches: - path: FILE` is implemented, got {p}")
        path = directory / p["path"]
        if not path.is_file():
            raise ResolveError(f"{kfile}: patch {p['path']} does not exist")
        for patch in dl.load_yaml_docs(path):
            ident = (patch.get("kind"), patch.get("metadata", {}).get("name"))
            hits = [i for i, o in enumerate(objects)
                    if (o.get("kind"), o.get("metadata", {}).get("name")) == ident]
            if len(hits) != 1:
                raise ResolveError(f"{path}: patch target {ident} matches {len(hits)} objects")
            objects[hits[0]] = smp_merge(objects[hits[0]], patch)
    for img in k.get("images", []):
        for o in objects:
            for c in pod_containers(o, init=True):
                name = re.split(r"[:@]", c.get("image", ""))[0]
                if name == img["name"]:
                    new = img.get("newName", name)
                    if "digest" in img:
                        new += "@" + img["digest"]
                    elif "newTag" in img:
                        new += ":" + str(img["newTag"])
                    c["image"] = new
    if "namespace" in k:
        for o in objects:
            o.setdefault("metadata", {})["namespace"] = k["namespace"]
    return objects


def pod_containers(obj, init=False):
    spec = obj.get("spec", {}).get("template", {}).get("spec", {}) if obj.get("kind") == "Deployment" else {}
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


def kubectl_render(kubectl, directory):
    r = dl.run_quiet([kubectl, "kustomize", str(directory)], timeout=120)
    if r.returncode != 0:
        raise ResolveError(f"kubectl kustomize {directory}: {r.stderr.strip()}")
    import yaml

    return [d for d in yaml.safe_load_all(r.stdout) if d is not None]


def canonical(objects):
    import json

    return sorted(json.dumps(o, sort_keys=True) for o in objects)


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_rendered(c, name, objects, engramd, engram_model, adapter, scrape_job, podmonitor, server_metrics):
    where = f"[{name}]"
    kinds = [(o.get("apiVersion"), o.get("kind")) for o in objects]
    c.check(sorted(kinds) == sorted(EXPECTED_KINDS),
            f"{where} kinds/apiVersions: got {sorted(kinds)}, expected one each of {sorted(EXPECTED_KINDS)}")
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o.get("kind"), []).append(o)
    one = lambda kind: (by_kind.get(kind) or [None])[0]  # noqa: E731
    dep, svc, pdb, hpa, cm, sa = (one(k) for k in ("Deployment", "Service", "PodDisruptionBudget",
                                                   "HorizontalPodAutoscaler", "ConfigMap", "ServiceAccount"))
    if not all((dep, svc, pdb, hpa, cm, sa)):
        return
    tmpl = dep["spec"]["template"]
    pod_labels = tmpl["metadata"].get("labels", {})
    pod = tmpl["spec"]
    c.check(matches(dep["spec"]["selector"].get("matchLabels"), pod_labels),
            f"{where} Deployment selector does not match its pod template labels")
    c.check(matches(svc["spec"].get("selector"), pod_labels), f"{where} Service selector does not select the pods")
    c.check(matches(pdb["spec"]["selector"].get("matchLabels"), pod_labels),
            f"{where} PodDisruptionBudget selector does not select the pods")
    c.check(pod.get("serviceAccountName") == sa["metadata"]["name"],
            f"{where} serviceAccountName {pod.get('serviceAccountName')} is not the ServiceAccount")
    c.check(pod.get("automountServiceAccountToken") is False, f"{where} pod mounts a service account token")

    containers = {x["name"]: x for x in pod.get("containers", [])}
    c.check("engramd" in containers, f"{where} no container named engramd")
    if "engramd" not in containers:
        return
    e = containers["engramd"]
    ports = {p.get("name"): p["containerPort"] for p in e.get("ports", [])}
    c.check(set(ports) >= {"grpc", "metrics"}, f"{where} engramd ports must be named grpc and metrics, got {ports}")
    grpc_port, metrics_port = ports.get("grpc"), ports.get("metrics")

    # Probes: native gRPC on the health service.
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = e.get(kind)
        if not c.check(probe is not None, f"{where} engramd has no {kind}"):
            continue
        handlers = {"grpc", "httpGet", "tcpSocket", "exec"} & set(probe)
        c.check(handlers == {"grpc"}, f"{where} {kind} must be a grpc probe, has {sorted(handlers)}")
        g = probe.get("grpc", {})
        c.check(g.get("port") == grpc_port, f"{where} {kind} grpc.port {g.get('port')} is not the grpc port {grpc_port}")
        if kind != "livenessProbe":
            c.check(g.get("service") == HEALTH_SERVICE, f"{where} {kind} must ask about {HEALTH_SERVICE}")
        else:
            c.check(g.get("service", "") in ("", HEALTH_SERVICE), f"{where} livenessProbe service {g.get('service')}")
    sp = e.get("startupProbe", {})
    c.check(sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3) >= 300,
            f"{where} startupProbe allows under 5 minutes for the table load")

    # Environment: ConfigMap keys and downward API values, then $(VAR) in command/args.
    env = {}
    for ef in e.get("envFrom", []):
        ref = ef.get("configMapRef", {}).get("name")
        c.check(ref == cm["metadata"]["name"], f"{where} envFrom references ConfigMap {ref}, which is not rendered")
        if ref == cm["metadata"]["name"]:
            env.update({k: str(v) for k, v in cm.get("data", {}).items()})
    requests = e.get("resources", {}).get("requests", {})
    limits = e.get("resources", {}).get("limits", {})
    for ev in e.get("env", []):
        if "value" in ev:
            env[ev["name"]] = str(ev["value"])
        elif "resourceFieldRef" in ev.get("valueFrom", {}):
            ref = ev["valueFrom"]["resourceFieldRef"]
            section, _, res = ref["resource"].partition(".")
            qty = (requests if section == "requests" else limits).get(res)
            c.check(qty is not None, f"{where} env {ev['name']} reads {ref['resource']}, which is not set")
            if qty is not None:
                env[ev["name"]] = str(math.ceil(dl.k8s_quantity(qty) / dl.k8s_quantity(ref.get("divisor", "1"))))
    cmdline = list(e.get("command", [])) + list(e.get("args", []))

    def subst(word):
        def one(m):
            if m.group(1) not in env:
                c.fail(f"{where} $({m.group(1)}) in the engramd command line is defined nowhere")
                return ""
            return env[m.group(1)]
        return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, word)

    cmdline = [subst(w) for w in cmdline]
    c.check(cmdline[:1] == ["engramd"], f"{where} engramd container command must be [engramd], got {cmdline[:1]}")
    args = cmdline[1:]
    if engramd:
        ok, msg = dl.engramd_accepts(engramd, args)
        c.check(ok, f"{where} the real engramd rejects the Deployment's command line: {msg}")
    listen = dl.flag_value(args, "listen") or ""
    c.check(listen.startswith("0.0.0.0:") and listen.endswith(f":{grpc_port}"),
            f"{where} --listen {listen} must be 0.0.0.0:<grpc port {grpc_port}>")
    c.check(dl.flag_value(args, "metrics-port") == str(metrics_port),
            f"{where} --metrics-port {dl.flag_value(args, 'metrics-port')} is not the metrics port {metrics_port}")
    ann = tmpl["metadata"].get("annotations", {})
    c.check(ann.get("prometheus.io/port") == str(metrics_port), f"{where} prometheus.io/port annotation")

    # Shutdown: the grace period covers preStop + drain + engramd's own 10 s after it.
    drain = float(dl.flag_value(args, "drain-timeout") or 30)
    pre = e.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_s = float(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else 0.0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    c.check(grace > pre_s + drain + 10,
            f"{where} terminationGracePeriodSeconds {grace} <= preStop {pre_s} + --drain-timeout {drain} + 10")

    # Resources.
    c.check("memory" in requests and requests.get("memory") == limits.get("memory"),
            f"{where} engramd memory requests must equal limits (got {requests.get('memory')} / {limits.get('memory')})")
    kv = dl.flag_value(args, "kv-cache-bytes")
    if "memory" in requests and kv:
        try:
            # auto: 1 GiB of host memory on the CPU backend; on a GPU pod the KV cache lives in
            # device memory, sized by --gpu-memory-utilization.
            if kv == "auto":
                kv_host = 0 if "nvidia.com/gpu" in limits else 2**30
            else:
                kv_host = dl.engramd_bytes(kv)
            c.check(dl.k8s_quantity(requests["memory"]) >= kv_host + 2**30,
                    f"{where} memory request {requests['memory']} < --kv-cache-bytes {kv} + 1Gi")
        except ValueError as err:
            c.fail(f"{where} {err}")
    cpu = requests.get("cpu")
    c.check(cpu is not None and dl.k8s_quantity(cpu) >= 1 and float(dl.k8s_quantity(cpu)).is_integer(),
            f"{where} engramd cpu request {cpu} should be whole cores (it sets --threads)")

    # Security context and the image's user.
    psc, csc = pod.get("securityContext", {}), e.get("securityContext", {})
    c.check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001,
            f"{where} pod must run as non-root uid 10001 (the images' engram user)")
    c.check(csc.get("allowPrivilegeEscalation") is False and csc.get("readOnlyRootFilesystem") is True
            and "ALL" in csc.get("capabilities", {}).get("drop", []),
            f"{where} engramd securityContext: no privilege escalation, read-only root, drop ALL")

    # Volumes and the init container.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for x in pod.get("containers", []) + pod.get("initContainers", []):
        for vm in x.get("volumeMounts", []):
            c.check(vm["name"] in volumes, f"{where} {x['name']} mounts undefined volume {vm['name']}")
    model_dir = dl.flag_value(args, "model") or ""
    mounts = [vm["mountPath"] for vm in e.get("volumeMounts", [])]
    c.check(any(model_dir.startswith(m.rstrip("/") + "/") for m in mounts),
            f"{where} --model {model_dir} is on no mounted volume")
    for ic in pod.get("initContainers", []):
        script = " ".join(ic.get("command", []) + ic.get("args", []))
        m = re.search(r"engram-model (create [^;|&]*)", script)
        if m and engram_model:
            words = [w.replace('"$ENGRAMD_MODEL"', "/nonexistent/x").replace("$ENGRAMD_MODEL", "/nonexistent/x")
                     for w in m.group(1).split()]
            r = dl.run_quiet([str(engram_model)] + words + ["--help"], timeout=60)
            c.check(r.returncode == 0, f"{where} init container: engram-model {' '.join(words)}: {r.stderr.strip()}")

    # Autoscaling.
    ref = hpa["spec"]["scaleTargetRef"]
    c.check((ref.get("apiVersion"), ref.get("kind"), ref.get("name")) == ("apps/v1", "Deployment", dep["metadata"]["name"]),
            f"{where} HPA scaleTargetRef {ref} is not the Deployment")
    c.check("replicas" not in dep["spec"], f"{where} Deployment sets replicas while the HPA owns them")
    mins, maxs = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
    c.check(2 <= mins <= maxs, f"{where} HPA minReplicas {mins} / maxReplicas {maxs}")
    metrics = hpa["spec"].get("metrics", [])
    pods_metrics = [m["pods"]["metric"]["name"] for m in metrics if m.get("type") == "Pods"]
    c.check(len(pods_metrics) == 1, f"{where} HPA needs one Pods metric, has {pods_metrics}")
    for mname in pods_metrics:
        c.check(":" not in mname, f"{where} HPA metric {mname} contains ':' (the custom metrics API cannot serve it)")
        c.check(mname in adapter, f"{where} HPA metric {mname} is not produced by prometheus-adapter/rules.yaml ({sorted(adapter)})")
        if mname in adapter:
            c.check(adapter[mname] in server_metrics,
                    f"{where} adapter source metric {adapter[mname]} is not one engramd exports")
    if "minAvailable" in pdb["spec"]:
        c.check(int(pdb["spec"]["minAvailable"]) < mins, f"{where} PDB minAvailable blocks every drain at minReplicas")
    else:
        c.check(int(pdb["spec"].get("maxUnavailable", 0)) >= 1, f"{where} PDB maxUnavailable must be >= 1")

    # Service ports.
    for sp_ in svc["spec"]["ports"]:
        tp = sp_.get("targetPort")
        c.check(tp in ports or tp in ports.values(), f"{where} Service port {sp_.get('name')} targets {tp}, not a container port")

    # Prometheus: the Kubernetes scrape job keeps exactly this pod's metrics port and labels
    # namespace and pod; the PodMonitor selects the pods and gives job a name the alerts match.
    keep = next((r for r in scrape_job["relabel_configs"] if r.get("action") == "keep"), None)
    if c.check(keep is not None, "kubernetes-scrape-config.yml: engramd-kubernetes has no keep rule"):
        kept = []
        for pname in ports:
            values = []
            for sl in keep["source_labels"]:
                if sl == "__meta_kubernetes_pod_container_port_name":
                    values.append(pname or "")
                elif sl.startswith("__meta_kubernetes_pod_label_"):
                    want = sl[len("__meta_kubernetes_pod_label_"):]
                    values.append(next((v for k, v in pod_labels.items() if re.sub(r"[^a-zA-Z0-9_]", "_", k) == want), ""))
                else:
                    values.append("")
            if re.fullmatch(keep.get("regex", "(.*)"), keep.get("separator", ";").join(values)):
                kept.append(pname)
        c.check(kept == ["metrics"], f"{where} the engramd-kubernetes scrape job keeps ports {kept}, expected only metrics")
    targets = {r.get("target_label") for r in scrape_job["relabel_configs"]}
    c.check({"namespace", "pod"} <= targets, "kubernetes-scrape-config.yml must set namespace and pod labels (adapter)")
    pm = podmonitor["spec"]
    c.check(matches(pm["selector"].get("matchLabels"), pod_labels), f"{where} the PodMonitor does not select the pods")
    c.check(all(ep.get("port") in ports for ep in pm["podMetricsEndpoints"]), f"{where} PodMonitor port is not a container port")
    job = pod_labels.get(pm.get("jobLabel", ""), "")
    c.check(re.fullmatch(r"engramd.*", job) is not None,
            f"{where} PodMonitor jobLabel gives job={job!r}; the alerts select job=~\"engramd.*\"")

    # Overlay specifics.
    image = e.get("image", "")
    gpu_limit = limits.get("nvidia.com/gpu")
    if name == "gpu":
        c.check(image.endswith(":cuda"), f"{where} image {image} is not the cuda image")
        c.check(gpu_limit is not None and int(gpu_limit) >= 1, f"{where} no nvidia.com/gpu limit")
        hp_req, hp_lim = requests.get("hugepages-2Mi"), limits.get("hugepages-2Mi")
        c.check(hp_req is not None and hp_req == hp_lim, f"{where} hugepages-2Mi requests {hp_req} != limits {hp_lim}")
        hp_vols = [v for v, d in volumes.items() if d.get("emptyDir", {}).get("medium") == "HugePages-2Mi"]
        c.check(len(hp_vols) == 1 and any(vm["name"] == hp_vols[0] for vm in e.get("volumeMounts", [])),
                f"{where} no HugePages-2Mi volume mounted in engramd")
        c.check(any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])), f"{where} no nvidia.com/gpu toleration")
        c.check(bool(pod.get("nodeSelector")), f"{where} no nodeSelector for GPU nodes")
    else:
        c.check(gpu_limit is None, f"{where} asks for a GPU")
        c.check(image.endswith(":cpu"), f"{where} image {image} is not the cpu image")
    for ic in pod.get("initContainers", []):
        c.check(ic.get("image") == image, f"{where} init container image {ic.get('image')} differs from engramd's {image}")


def adapter_metrics(c):
    """{metric name the adapter serves: engramd metric it comes from}."""
    cfg = dl.load_yaml(K8S / "prometheus-adapter/rules.yaml")
    out = {}
    for rule in cfg.get("rules", []):
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"].strip("'\""))
        source = m.group(1)
        ov = rule.get("resources", {}).get("overrides", {})
        c.check({ov.get("namespace", {}).get("resource"), ov.get("pod", {}).get("resource")} == {"namespace", "pod"},
                "prometheus-adapter rule must map the namespace and pod labels to their resources")
        c.check("<<.Series>>" in rule.get("metricsQuery", "") and "<<.LabelMatchers>>" in rule.get("metricsQuery", ""),
                "prometheus-adapter metricsQuery must use <<.Series>> and <<.LabelMatchers>>")
        pattern = rule.get("name", {}).get("matches", "^(.*)$")
        as_ = rule.get("name", {}).get("as", "$1")
        mm = re.search(pattern, source)
        if c.check(mm is not None, f"adapter name.matches {pattern} does not match {source}"):
            name = re.sub(r"\$\{?(\d+)\}?", lambda g: mm.group(int(g.group(1))), as_)
            out[name] = source
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engramd", help="built engramd: judge the Deployment's command line")
    ap.add_argument("--engram-model", help="built engram-model: judge the init container's command")
    ap.add_argument("--kubectl", help="render with `kubectl kustomize` too and compare")
    ap.add_argument("--require-kubectl", action="store_true", help="fail (exit 77: skip) without kubectl")
    a = ap.parse_args()
    c = dl.Checker("check_k8s")
    if a.require_kubectl and not a.kubectl:
        print("SKIP: no kubectl on PATH (Debian 12 has no kustomize >= 4)")
        sys.exit(77)
    if a.kubectl:
        import json

        r = dl.run_quiet([a.kubectl, "version", "--client", "-o", "json"], timeout=60)
        try:
            v = json.loads(r.stdout)
            minor = int(re.match(r"\d+", v["clientVersion"]["minor"]).group(0))
        except (ValueError, KeyError, AttributeError):
            minor = 0
        if minor < 21:
            print(f"SKIP: {a.kubectl} is kubectl 1.{minor}: its kustomize predates directories in "
                  "`resources` (kubectl >= 1.21 needed)")
            sys.exit(77)
        print(f"kubectl 1.{minor}, kustomize {v.get('kustomizeVersion', '?')}")

    _, server_metrics = dl.source_metric_names()
    adapter = adapter_metrics(c)
    scrape = dl.load_yaml(dl.DEPLOY / "prometheus/kubernetes-scrape-config.yml")
    scrape_job = next((j for j in scrape.get("scrape_configs", []) if j.get("job_name") == "engramd-kubernetes"), None)
    podmonitor_objs = resolve(K8S / "monitoring")
    c.check(scrape_job is not None, "kubernetes-scrape-config.yml has no engramd-kubernetes job")
    c.check([(o["apiVersion"], o["kind"]) for o in podmonitor_objs] == [("monitoring.coreos.com/v1", "PodMonitor")],
            "deploy/k8s/monitoring must render one monitoring.coreos.com/v1 PodMonitor")

    for name, directory in KUSTOMIZATIONS.items():
        try:
            objects = resolve(directory)
        except ResolveError as err:
            c.fail(f"[{name}] {err}")
            continue
        print(f"[{name}] resolved {len(objects)} objects from {directory.relative_to(dl.REPO)}")
        if a.kubectl:
            try:
                real = kubectl_render(a.kubectl, directory)
                if c.check(canonical(real) == canonical(objects),
                           f"[{name}] `kubectl kustomize` renders different objects than this resolver"):
                    print(f"[{name}] kubectl kustomize renders the same {len(real)} objects")
                objects = real  # check what the real tool renders
            except (ResolveError, subprocess.TimeoutExpired) as err:
                c.fail(f"[{name}] {err}")
                continue
        check_rendered(c, name, objects, a.engramd, a.engram_model, adapter, scrape_job or {"relabel_configs": []},
                       podmonitor_objs[0], server_metrics)
    if a.kubectl:
        real = kubectl_render(a.kubectl, K8S / "monitoring")
        c.check(canonical(real) == canonical(podmonitor_objs), "[monitoring] kubectl kustomize renders different objects")
    c.finish()


if __name__ == "__main__":
    main()
