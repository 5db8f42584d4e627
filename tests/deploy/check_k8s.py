#!/usr/bin/env python3
"""Offline check of the Kubernetes manifests in deploy/k8s (no cluster needed).

kubectl cannot validate without an API server (its client-side dry run still
downloads the server's OpenAPI schema), so this checks what a schema check and
a review would, for the kinds the manifests use:

- yamllint --strict with deploy/k8s/.yamllint (syntax, indentation, keys);
- every document: a known apiVersion/kind pair, metadata.name a DNS-1123 name,
  no unknown top-level or spec fields for these kinds (typos like `replica:`);
- workloads (Deployment, StatefulSet, Job): spec.selector.matchLabels is a
  subset of the pod template's labels; containers and initContainers have a
  unique DNS-1123 label name and an image; ports have valid numbers and
  unique names of at most 15 characters; env entries have a name and exactly
  one of value/valueFrom; every $(VAR) in command/args is defined in env;
  volumeMounts name a volume of the pod and have an absolute mountPath;
  resources quantities parse and requests do not exceed limits;
- Services select the pods of a workload in the manifests, and a named
  targetPort is a port name of those pods;
- ferry's own: every ferry container runs image ferry:<project version> (the
  version in CMakeLists.txt, i.e. the image deploy/Containerfile builds), its
  command is one of the packaged executables /usr/bin/{ferry-coordinator,
  ferry-worker,ferryctl}, and every --flag in its command/args is one that
  executable's --help lists (run from --bin-dir).

Usage: check_k8s.py [--bin-dir build/bin] [--dir deploy/k8s]
Exit 0 if everything holds; 1 with one line per problem.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
KINDS = {
    ("v1", "PersistentVolumeClaim"), ("v1", "Service"), ("v1", "ConfigMap"), ("v1", "Secret"),
    ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("batch/v1", "Job"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
}
TOP = {"apiVersion", "kind", "metadata", "spec", "data", "stringData", "type"}
SPEC_FIELDS = {
    "Deployment": {"replicas", "selector", "template", "strategy", "minReadySeconds",
                   "revisionHistoryLimit", "progressDeadlineSeconds", "paused"},
    "StatefulSet": {"replicas", "selector", "template", "serviceName", "volumeClaimTemplates",
                    "podManagementPolicy", "updateStrategy", "revisionHistoryLimit",
                    "minReadySeconds", "persistentVolumeClaimRetentionPolicy", "ordinals"},
    "Job": {"parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "selector",
            "manualSelector", "template", "ttlSecondsAfterFinished", "completionMode", "suspend"},
    "Service": {"selector", "ports", "type", "clusterIP", "publishNotReadyAddresses",
                "sessionAffinity", "externalTrafficPolicy", "internalTrafficPolicy"},
    "PersistentVolumeClaim": {"accessModes", "resources", "storageClassName", "volumeMode",
                              "volumeName", "selector", "dataSource"},
}
POD_FIELDS = {"containers", "initContainers", "volumes", "securityContext",
              "terminationGracePeriodSeconds", "restartPolicy", "serviceAccountName",
              "nodeSelector", "affinity", "tolerations", "imagePullSecrets", "hostname",
              "priorityClassName", "topologySpreadConstraints", "dnsPolicy"}
CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "command", "args", "env", "envFrom",
                    "ports", "volumeMounts", "resources", "readinessProbe", "livenessProbe",
                    "startupProbe", "securityContext", "workingDir", "lifecycle"}
FERRY_EXES = ("ferry-coordinator", "ferry-worker", "ferryctl")

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def quantity(q):
    m = QUANTITY.match(str(q))
    if not m:
        return None
    scale = {None: 1, "m": 1e-3, "k": 1e3, "Ki": 1024, "M": 1e6, "Mi": 1024**2, "G": 1e9,
             "Gi": 1024**3, "T": 1e12, "Ti": 1024**4}[m.group(3)]
    return float(m.group(1)) * scale


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"project\(ferry VERSION ([0-9.]+)", f.read())
    return m.group(1) if m else None


def help_text(bin_dir, exe, sub=None, cache={}):
    key = (exe, sub)
    if key not in cache:
        path = os.path.join(bin_dir, exe)
        try:
            cache[key] = subprocess.run([path] + ([sub] if sub else []) + ["--help"],
                                        capture_output=True, text=True, timeout=20).stdout
        except OSError as e:
            cache[key] = None
            problem(path, f"cannot run it for --help ({e}); build first or pass --bin-dir")
    return cache[key]


def check_container(where, c, pod_volumes, bin_dir, version):
    for key in c:
        if key not in CONTAINER_FIELDS:
            problem(where, f"unknown container field {key!r}")
    name = c.get("name")
    if not isinstance(name, str) or not DNS_LABEL.match(name) or len(name) > 63:
        problem(where, f"container name {name!r} is not a DNS-1123 label")
    where = f"{where} container {name}"
    image = c.get("image")
    if not isinstance(image, str) or not image:
        problem(where, "has no image")
        image = ""
    env_names = set()
    for e in c.get("env") or []:
        if not isinstance(e, dict) or not e.get("name"):
            problem(where, f"env entry without a name: {e!r}")
            continue
        if ("value" in e) == ("valueFrom" in e):
            problem(where, f"env {e['name']}: needs exactly one of value / valueFrom")
        env_names.add(e["name"])
    words = [str(w) for w in (c.get("command") or []) + (c.get("args") or [])]
    for w in words:
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", w):
            if var not in env_names:
                problem(where, f"$({var}) is used but not defined in env")
    port_names = set()
    for p in c.get("ports") or []:
        n = p.get("containerPort")
        if not isinstance(n, int) or not 1 <= n <= 65535:
            problem(where, f"containerPort {n!r} is not a port number")
        pn = p.get("name")
        if pn is not None:
            if not DNS_LABEL.match(str(pn)) or len(str(pn)) > 15:
                problem(where, f"port name {pn!r}: a DNS label of at most 15 characters")
            if pn in port_names:
                problem(where, f"port name {pn!r} used twice")
            port_names.add(pn)
    for m in c.get("volumeMounts") or []:
        if m.get("name") not in pod_volumes:
            problem(where, f"volumeMount {m.get('name')!r} names no volume of the pod")
        if not str(m.get("mountPath", "")).startswith("/"):
            problem(where, f"volumeMount {m.get('name')!r}: mountPath must be absolute")
    res = c.get("resources") or {}
    for section in ("requests", "limits"):
        for k, v in (res.get(section) or {}).items():
            if quantity(v) is None:
                problem(where, f"resources.{section}.{k} = {v!r} is not a quantity")
    for k, v in (res.get("requests") or {}).items():
        lim = (res.get("limits") or {}).get(k)
        if lim is not None and quantity(v) and quantity(lim) and quantity(v) > quantity(lim):
            problem(where, f"resources: request {k} {v} exceeds the limit {lim}")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        pr = c.get(probe)
        if pr and "exec" in pr and not pr["exec"].get("command"):
            problem(where, f"{probe}.exec has no command")
        if pr and "exec" in pr:
            words += [str(w) for w in pr["exec"]["command"]]
            check_ferry_command(f"{where} {probe}", pr["exec"]["command"], image, bin_dir,
                                version)
    check_ferry_command(where, (c.get("command") or []) + (c.get("args") or []), image, bin_dir,
                        version)
    return port_names


def check_ferry_command(where, words, image, bin_dir, version):
    if not re.match(r"^(.*/)?ferry:", image):
        return
    if image != f"ferry:{version}":
        problem(where, f"image {image} is not ferry:{version}, the image deploy/Containerfile builds")
    if not words:
        problem(where, "a ferry container needs an explicit command")
        return
    exe = str(words[0])
    if exe not in [f"/usr/bin/{e}" for e in FERRY_EXES]:
        problem(where, f"command {exe} is not one of the packaged /usr/bin/{{{','.join(FERRY_EXES)}}}")
        return
    text = help_text(bin_dir, os.path.basename(exe))
    if text is None:
        return
    # ferryctl SUBCOMMAND: its options are in `ferryctl SUBCOMMAND --help`
    subs = re.findall(r"^  ([a-z]+) ", text.split("Subcommands:")[1], re.M) if "Subcommands:" in text else []
    for w in words[1:]:
        if str(w) in subs:
            text += help_text(bin_dir, os.path.basename(exe), str(w)) or ""
    for w in words[1:]:
        m = re.match(r"^(--[a-z0-9-]+)", str(w))
        if m and not re.search(re.escape(m.group(1)) + r"\b", text):
            problem(where, f"{os.path.basename(exe)} does not know {m.group(1)} (not in its --help)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--dir", default=os.path.join(ROOT, "deploy", "k8s"))
    a = ap.parse_args()
    version = project_version()

    if shutil.which("yamllint") is None:
        problem("yamllint", "not installed (apt-get install yamllint)")
    else:
        r = subprocess.run(["yamllint", "--strict", "-f", "parsable", "-c",
                            os.path.join(a.dir, ".yamllint"), a.dir],
                           capture_output=True, text=True)
        for line in r.stdout.splitlines():
            problem("yamllint", line)
        if r.returncode != 0 and not r.stdout:
            problem("yamllint", r.stderr.strip())

    docs = []
    files = sorted(glob.glob(os.path.join(a.dir, "*.yaml")))
    if not files:
        problem(a.dir, "no manifests")
    for path in files:
        with open(path) as f:
            try:
                for i, d in enumerate(yaml.safe_load_all(f)):
                    if d is not None:
                        docs.append((f"{os.path.basename(path)}#{i + 1}", d))
            except yaml.YAMLError as e:
                problem(path, f"not valid YAML: {e}")

    pod_sets = []  # (labels, port names) of every workload's pod template
    services = []
    for where, d in docs:
        if not isinstance(d, dict):
            problem(where, "a document must be a mapping")
            continue
        for key in d:
            if key not in TOP:
                problem(where, f"unknown top-level field {key!r}")
        kind, api = d.get("kind"), d.get("apiVersion")
        if (api, kind) not in KINDS:
            problem(where, f"unknown apiVersion/kind {api}/{kind}")
        name = (d.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not DNS_SUBDOMAIN.match(name) or len(name) > 253:
            problem(where, f"metadata.name {name!r} is not a DNS-1123 name")
        where = f"{where} {kind} {name}"
        spec = d.get("spec") or {}
        for key in spec:
            if kind in SPEC_FIELDS and key not in SPEC_FIELDS[kind]:
                problem(where, f"unknown spec field {key!r}")
        if kind in ("Deployment", "StatefulSet", "Job"):
            tmpl = spec.get("template") or {}
            labels = (tmpl.get("metadata") or {}).get("labels") or {}
            sel = (spec.get("selector") or {}).get("matchLabels")
            if kind != "Job" and not sel:
                problem(where, "spec.selector.matchLabels is required")
            for k, v in (sel or {}).items():
                if labels.get(k) != v:
                    problem(where, f"selector {k}={v} does not match the pod template's labels")
            pod = tmpl.get("spec") or {}
            for key in pod:
                if key not in POD_FIELDS:
                    problem(where, f"unknown pod spec field {key!r}")
            volumes = set()
            for v in pod.get("volumes") or []:
                if v.get("name") in volumes:
                    problem(where, f"volume {v.get('name')!r} declared twice")
                volumes.add(v.get("name"))
                if len([k for k in v if k != "name"]) != 1:
                    problem(where, f"volume {v.get('name')!r} needs exactly one source")
            if not pod.get("containers"):
                problem(where, "the pod template has no containers")
            names, ports = set(), set()
            for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                if c.get("name") in names:
                    problem(where, f"container name {c.get('name')!r} used twice")
                names.add(c.get("name"))
                ports |= check_container(where, c, volumes, a.bin_dir, version)
            pod_sets.append((labels, ports))
        elif kind == "Service":
            services.append((where, spec))
        elif kind == "PersistentVolumeClaim":
            modes = spec.get("accessModes") or []
            if not modes or any(m not in ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany",
                                          "ReadWriteOncePod") for m in modes):
                problem(where, f"accessModes {modes!r}")
            if quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage")) is None:
                problem(where, "resources.requests.storage is missing or not a quantity")

    for where, spec in services:
        sel = spec.get("selector") or {}
        matching = [ports for labels, ports in pod_sets
                    if sel and all(labels.get(k) == v for k, v in sel.items())]
        if not matching:
            problem(where, f"selector {sel} selects no workload in the manifests")
        for p in spec.get("ports") or []:
            if not isinstance(p.get("port"), int):
                problem(where, f"port {p!r}: port must be a number")
            tp = p.get("targetPort")
            if isinstance(tp, str) and matching and not any(tp in ports for ports in matching):
                problem(where, f"targetPort {tp!r} is no port name of the selected pods")

    for p in problems:
        print(p)
    print(f"k8s manifests: {len(docs)} documents in {len(files)} files, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
