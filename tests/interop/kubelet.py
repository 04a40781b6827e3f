"""kubelet's side of fastpath's gRPC faces, written with Python grpcio.

grpcio sits on gRPC C-core, an HTTP/2 implementation of its own: nothing
here shares code with tonic, hyper or h2, so a wire-level disagreement
between fastpath and a non-Rust peer shows up here and not in the tonic
fake kubelet (testing/fake-kubelet).

The modules imported below are generated at test time by grpcio-tools
from device-plugin/proto/*.proto (hack/interop puts them on PYTHONPATH);
a new .proto there (the DRA service) becomes importable the same way.
"""

import concurrent.futures
import os
import queue
import threading
import time

import grpc

import deviceplugin_pb2 as dp
import deviceplugin_pb2_grpc as dp_grpc
import pluginregistration_pb2 as reg
import pluginregistration_pb2_grpc as reg_grpc
import podresources_pb2 as pr
import podresources_pb2_grpc as pr_grpc

# What kubelet >= 1.26 sends as :authority when it dials a unix socket
# (kubernetes PR 112597: grpc.WithAuthority("localhost")).
KUBELET_AUTHORITY = "localhost"
# Marks "send what grpcio sends by itself" (no authority option).
GRPCIO_DEFAULT = None
# kubelet's plugin-watcher constants (pluginregistration v1).
DEVICE_PLUGIN_TYPE = "DevicePlugin"
DEVICE_PLUGIN_VERSION = "v1beta1"

T = 5.0


def dial(socket, authority=KUBELET_AUTHORITY):
    """A channel to a unix socket; `authority` is the :authority sent
    (GRPCIO_DEFAULT: whatever grpcio picks for a unix: target)."""
    options = []
    if authority is not GRPCIO_DEFAULT:
        options.append(("grpc.default_authority", authority))
    return grpc.insecure_channel("unix://" + os.path.abspath(socket), options=options)


def wait_for(pred, what, timeout=T):
    """Polls `pred` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def _server(max_workers=4):
    return grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=max_workers))


def _listen(server, socket):
    # add_insecure_port reports a failed bind by returning 0, not raising.
    if server.add_insecure_port("unix://" + os.path.abspath(socket)) == 0:
        raise RuntimeError(f"cannot listen on {socket}")


class Registration(dp_grpc.RegistrationServicer):
    """kubelet's Registration service on <device-plugins>/kubelet.sock
    (the device-plugin directory mode)."""

    def __init__(self, dp_dir):
        self.dir = dp_dir
        self.socket = os.path.join(dp_dir, "kubelet.sock")
        self._requests = queue.Queue()
        self._server = _server()
        dp_grpc.add_RegistrationServicer_to_server(self, self._server)
        _listen(self._server, self.socket)
        self._server.start()

    def Register(self, request, context):
        if request.version != DEVICE_PLUGIN_VERSION:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported version {request.version}")
        self._requests.put(request)
        return dp.Empty()

    def registrations(self, n, timeout=T):
        """The next `n` RegisterRequests, in arrival order."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            try:
                out.append(self._requests.get(timeout=max(left, 0.001)))
            except queue.Empty:
                raise AssertionError(f"{len(out)} of {n} registrations after {timeout}s") from None
        return out

    def endpoint_path(self, request):
        """The plugin's socket: the endpoint is relative to the directory."""
        return os.path.join(self.dir, request.endpoint)

    def stop(self):
        self._server.stop(grace=None).wait()


def discover_plugins(
    registry,
    expected,
    kind=DEVICE_PLUGIN_TYPE,
    version=DEVICE_PLUGIN_VERSION,
    authority=KUBELET_AUTHORITY,
    timeout=T,
):
    """kubelet's plugin watcher with the handler for plugins of type
    `kind` (DevicePlugin; a DRA plugin registers the same way with its
    own type and version): waits for `expected` sockets in `registry`,
    GetInfo on each; a plugin of that type gets NotifyRegistrationStatus
    (registered when it supports `version`), one of another type is left
    to its own handler. Returns {socket path: PluginInfo} of that type."""

    def sockets():
        found = sorted(f for f in os.listdir(registry) if f.endswith(".sock"))
        return found if len(found) >= expected else None

    found = {}
    for name in wait_for(sockets, f"{expected} sockets in {registry}", timeout):
        path = os.path.join(registry, name)
        with dial(path, authority) as ch:
            stub = reg_grpc.RegistrationStub(ch)
            # A socket file appears at bind(), a moment before its owner
            # listens; kubelet dials it blocking (grpc.WithBlock) and so
            # waits that moment out: wait_for_ready is grpcio's spelling.
            info = stub.GetInfo(reg.InfoRequest(), timeout=T, wait_for_ready=True)
            if info.type != kind:
                continue
            ok = version in info.supported_versions
            stub.NotifyRegistrationStatus(
                reg.RegistrationStatus(plugin_registered=ok, error="" if ok else "unsupported plugin"),
                timeout=T,
            )
        found[path] = info
    return found


class Watch:
    """A ListAndWatch stream read on its own thread, so that a test can
    wait for the next list with a timeout."""

    def __init__(self, call):
        self._call = call
        self._lists = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for resp in self._call:
                self._lists.put(resp)
        except grpc.RpcError as e:
            self._lists.put(e)

    def next(self, timeout=T):
        """The next device list; raises when the stream ended or failed."""
        try:
            got = self._lists.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no ListAndWatch update within {timeout}s") from None
        if isinstance(got, grpc.RpcError):
            raise AssertionError(f"ListAndWatch ended: {got.code()} {got.details()}")
        return got

    def until(self, pred, what, timeout=T):
        """Reads lists until one satisfies `pred`; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no ListAndWatch update with {what} within {timeout}s")
            got = self.next(left)
            if pred(got):
                return got

    def close(self):
        self._call.cancel()
        self._thread.join(T)


class PluginClient:
    """kubelet's client of one device plugin (DevicePlugin v1beta1)."""

    def __init__(self, socket, authority=KUBELET_AUTHORITY):
        self.channel = dial(socket, authority)
        self.stub = dp_grpc.DevicePluginStub(self.channel)

    def options(self):
        return self.stub.GetDevicePluginOptions(dp.Empty(), timeout=T)

    def list_and_watch(self):
        return Watch(self.stub.ListAndWatch(dp.Empty()))

    def preferred(self, available, must_include, size):
        req = dp.PreferredAllocationRequest(
            container_requests=[
                dp.ContainerPreferredAllocationRequest(
                    available_deviceIDs=available,
                    must_include_deviceIDs=must_include,
                    allocation_size=size,
                )
            ]
        )
        resp = self.stub.GetPreferredAllocation(req, timeout=T)
        return list(resp.container_responses[0].deviceIDs)

    def allocate(self, ids):
        req = dp.AllocateRequest(container_requests=[dp.ContainerAllocateRequest(devices_ids=ids)])
        return self.stub.Allocate(req, timeout=T).container_responses[0]

    def close(self):
        self.channel.close()


def ids(resp):
    return sorted(d.ID for d in resp.devices)


def pod(namespace, name, resources):
    """A PodResources entry: one container holding `resources`
    ({resource name: [device IDs]})."""
    devices = [pr.ContainerDevices(resource_name=r, device_ids=list(d)) for r, d in resources.items()]
    return pr.PodResources(
        name=name,
        namespace=namespace,
        containers=[pr.ContainerResources(name="c", devices=devices)],
    )


class PodResources(pr_grpc.PodResourcesListerServicer):
    """kubelet's PodResources v1 server on its own socket. `get`: "serve"
    (KubeletPodResourcesGet on) or "unimplemented" (a kubelet predating
    Get). Counts the calls it answered."""

    def __init__(self, socket, pods, get="serve"):
        self.socket = socket
        self.pods = pods
        self.get_mode = get
        self.calls = {"List": 0, "Get": 0}
        self._lock = threading.Lock()
        self._server = _server()
        pr_grpc.add_PodResourcesListerServicer_to_server(self, self._server)
        _listen(self._server, socket)
        self._server.start()

    def _count(self, method):
        with self._lock:
            self.calls[method] += 1

    def List(self, request, context):
        self._count("List")
        return pr.ListPodResourcesResponse(pod_resources=self.pods)

    def Get(self, request, context):
        self._count("Get")
        if self.get_mode == "unimplemented":
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "method Get not implemented")
        for p in self.pods:
            if p.name == request.pod_name and p.namespace == request.pod_namespace:
                return pr.GetPodResourcesResponse(pod_resources=p)
        # kubelet answers an unknown pod with a plain Go error: Unknown.
        context.abort(
            grpc.StatusCode.UNKNOWN,
            f"pod {request.pod_name} in namespace {request.pod_namespace} not found",
        )

    def GetAllocatableResources(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not used by fastpath")

    def stop(self):
        self._server.stop(grace=None).wait()
