"""Validates rendered deploy/ manifests and deploy/examples offline.

Every object must validate strictly (unknown fields are errors) against
the Kubernetes schemas bundled in kubernetes-validate, for each version in
--k8s. NetworkAttachmentDefinition is a CRD those schemas do not have: it
is checked against network-attachment-definition.schema.json, and its
spec.config must be a CNI config. Any other kind without a schema fails.
Pool configs in ConfigMaps (config.json) must be reference-format JSON,
policies must be YAML, and every resource an example NAD or pod asks for
must be a pool of the base config.

Each --must-fail file must produce at least one error (proof that the
checks can fail); it does not count as invalid when it does.

Usage: check.py --k8s 1.30.0 --k8s 1.37.0 --pools base.yaml \
           [--rendered NAME=FILE ...] [--examples FILE ...] [--must-fail FILE ...]
"""

import argparse
import json
import pathlib
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
NAD_KIND = ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition")
RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
CNI_TYPES = {"fastpath", "sriov"}


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def name_of(doc):
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


def check_nad(doc, schema):
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
    if errors:
        return errors
    try:
        conf = json.loads(doc["spec"]["config"])
    except (KeyError, json.JSONDecodeError) as e:
        return [f"spec.config is not JSON: {e}"]
    missing = [k for k in ("cniVersion", "name") if k not in conf]
    if "type" not in conf and "plugins" not in conf:
        missing.append("type or plugins")
    if missing:
        return [f"spec.config lacks {', '.join(missing)}"]
    annotations = doc["metadata"].get("annotations", {})
    if "k8s.v1.cni.cncf.io/resourceName" in annotations and conf.get("type") not in CNI_TYPES:
        return [f"spec.config type {conf.get('type')!r} is not one of {sorted(CNI_TYPES)}"]
    return []


def check_pool_config(doc):
    """Reference resourceList JSON and YAML policy inside a ConfigMap."""
    data = doc.get("data") or {}
    errors = []
    if "config.json" in data:
        try:
            cfg = json.loads(data["config.json"])
            pools = cfg["resourceList"]
            for i, pool in enumerate(pools):
                name = pool.get("resourceName", "")
                if not RESOURCE_NAME.match(name):
                    errors.append(f"config.json resourceList[{i}].resourceName {name!r} is invalid")
                if not isinstance(pool.get("selectors"), (dict, list)):
                    errors.append(f"config.json resourceList[{i}].selectors must be an object or a list")
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            errors.append(f"config.json is not a reference pool config: {e!r}")
    if "policy.yaml" in data:
        try:
            yaml.safe_load(data["policy.yaml"])
        except yaml.YAMLError as e:
            errors.append(f"policy.yaml is not YAML: {e}")
    return errors


def pool_names(docs, prefix):
    names = set()
    for doc in docs:
        if doc.get("kind") == "ConfigMap" and "config.json" in (doc.get("data") or {}):
            for pool in json.loads(doc["data"]["config.json"])["resourceList"]:
                names.add(f"{pool.get('resourcePrefix', prefix)}/{pool['resourceName']}")
    return names


def requested_resources(doc):
    """Extended resources a NAD names or a pod's containers request."""
    if (doc.get("apiVersion"), doc.get("kind")) == NAD_KIND:
        ann = doc["metadata"].get("annotations", {}).get("k8s.v1.cni.cncf.io/resourceName")
        return {ann} if ann else set()
    if doc.get("kind") != "Pod":
        return set()
    out = set()
    for c in doc["spec"].get("containers", []):
        for section in ("requests", "limits"):
            for r in (c.get("resources") or {}).get(section, {}):
                if "/" in r:
                    out.add(r)
    return out


def validate(label, docs, versions, nad_schema):
    failures = 0
    for doc in docs:
        what = f"{label}: {name_of(doc)}"
        if (doc.get("apiVersion"), doc.get("kind")) == NAD_KIND:
            errors = check_nad(doc, nad_schema)
            scope = "own NAD schema (a CRD: kubernetes-validate has no schema for it)"
        else:
            errors = []
            for v in versions:
                try:
                    kubernetes_validate.validate(doc, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    errors.append(f"k8s {v}: {path}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError:
                    errors.append(f"k8s {v}: no schema for {doc.get('apiVersion')} {doc.get('kind')}")
            errors += check_pool_config(doc) if doc.get("kind") == "ConfigMap" else []
            scope = "strict, k8s " + ", ".join(versions)
        if errors:
            failures += 1
            for e in errors:
                print(f"INVALID {what}: {e}")
        else:
            print(f"ok      {what} ({scope})")
    return failures


def check_example(path, pools, versions, nad_schema):
    docs = load_docs(path)
    label = pathlib.Path(path).name
    failures = validate(label, docs, versions, nad_schema)
    for doc in docs:
        for r in sorted(requested_resources(doc) - pools):
            print(f"INVALID {label}: {name_of(doc)} asks for {r}, not a pool of the base config ({sorted(pools)})")
            failures += 1
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s", action="append", required=True)
    ap.add_argument("--pools", required=True, help="rendered base, whose pools examples may use")
    ap.add_argument("--prefix", default="intel.com")
    ap.add_argument("--rendered", action="append", default=[], metavar="NAME=FILE")
    ap.add_argument("--examples", nargs="*", default=[])
    ap.add_argument("--must-fail", nargs="*", default=[])
    args = ap.parse_args()
    nad_schema = json.loads((HERE / "network-attachment-definition.schema.json").read_text())

    failures = 0
    for item in args.rendered:
        label, _, path = item.partition("=")
        docs = load_docs(path)
        if not docs:
            print(f"INVALID {label}: rendered no objects")
            failures += 1
        failures += validate(label, docs, args.k8s, nad_schema)

    pools = pool_names(load_docs(args.pools), args.prefix)
    for path in args.examples:
        failures += check_example(path, pools, args.k8s, nad_schema)

    for path in args.must_fail:
        print(f"--- known-bad {path}, expected to be rejected:")
        if check_example(path, pools, args.k8s, nad_schema) == 0:
            print(f"INVALID {path}: accepted, but the checks must reject it")
            failures += 1

    if failures:
        print(f"{failures} invalid")
    else:
        print(f"every object is valid; {len(args.must_fail)} known-bad files were rejected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
