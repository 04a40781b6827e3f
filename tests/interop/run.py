"""Runs the interop scenarios (hack/interop): a grpcio kubelet against the
shipped fastpath binary. Prints PASS or FAIL per scenario; exits 1 when
any failed.

    run.py --bin target/<host>/release/fastpath --repo . \
        [--apiserver target/debug/fake-apiserver] [--only NAME ...]

The generated stubs must be importable (hack/interop sets PYTHONPATH).
A scenario is a function of the context; a kubelet face is a module of
scenarios (dra.py: the DRA service) and its entries in SCENARIOS.
"""

import argparse
import os
import sys
import time
import traceback
from dataclasses import dataclass

import authority
import device_plugin
import dra
import pod_resources

SCENARIOS = [
    ("registration-dir", device_plugin.registration_dir),
    ("plugin-watcher", device_plugin.plugin_watcher),
    ("cdi", device_plugin.cdi),
    ("podresources-get", pod_resources.ownership_get),
    ("podresources-list-fallback", pod_resources.ownership_list_fallback),
    ("authority-grpcio-default", authority.grpcio_default),
    ("authority-socket-path", authority.socket_path),
    ("dra-v1", dra.v1),
    ("dra-v1beta1", dra.v1beta1),
]


@dataclass
class Context:
    binary: str
    repo: str
    apiserver: str | None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the fastpath binary under test")
    ap.add_argument("--repo", required=True, help="the repository (examples/sysfs)")
    ap.add_argument("--apiserver", help="the fake-apiserver binary (the DRA scenarios)")
    ap.add_argument("--only", nargs="*", help="run only these scenarios")
    args = ap.parse_args()
    names = [n for n, _ in SCENARIOS]
    unknown = set(args.only or []) - set(names)
    if unknown:
        ap.error(f"no scenario {sorted(unknown)}; there are {names}")
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        ap.error(f"{binary} is not an executable file")
    apiserver = args.apiserver and os.path.abspath(args.apiserver)
    ctx = Context(binary=binary, repo=os.path.abspath(args.repo), apiserver=apiserver)
    failed = []
    for name, scenario in SCENARIOS:
        if args.only and name not in args.only:
            continue
        start = time.monotonic()
        try:
            scenario(ctx)
        except Exception as e:  # every failure is reported, then the next runs
            print(f"FAIL {name} ({time.monotonic() - start:.1f}s): {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
            failed.append(name)
        else:
            print(f"PASS {name} ({time.monotonic() - start:.1f}s)", flush=True)
    ran = len(args.only) if args.only else len(SCENARIOS)
    print(f"interop: {ran - len(failed)} passed, {len(failed)} failed")
    # Zero scenarios run would otherwise read as a pass.
    return 1 if failed or ran == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
