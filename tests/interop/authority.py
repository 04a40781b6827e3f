"""A client that does not send `:authority: localhost` (kubelet < 1.26, a
grpc-go client dialing a bare socket path, grpcio with its defaults):
h2 refuses every call (RST_STREAM PROTOCOL_ERROR, grpcio's INTERNAL), and
the agent must say why in its log and count it in /metrics and status."""

import grpc

import kubelet as k
from agent import Agent
from device_plugin import CONFIG, NET, expect

REFUSED_METRIC = "fastpath_grpc_authority_refused_total"
MIN_KUBELET = "1.26"


def refused_calls(socket, authority, calls):
    """Makes `calls` GetDevicePluginOptions calls; each must be reset."""
    c = k.PluginClient(socket, authority)
    try:
        for _ in range(calls):
            try:
                c.options()
            except grpc.RpcError as e:
                expect(e.code() == grpc.StatusCode.INTERNAL, f"{authority!r}: {e.code()} {e.details()}")
                expect("RST_STREAM" in e.details(), f"{authority!r}: not a stream reset: {e.details()}")
            else:
                raise AssertionError(f"a call with authority {authority!r} succeeded")
    finally:
        c.close()


def warnings(agent):
    return [
        e for e in agent.log_lines()
        if e.get("level") == "WARN" and "authority" in e.get("fields", {})
    ]


def check(ctx, authority_of, calls):
    """`calls` refused calls with the authority `authority_of(socket)`
    gives for the plugin's socket: one warning (the rest held
    back by the rate limit) naming the authority sent and the minimum
    kubelet version, the count in /metrics and `fastpath status`, and
    kubelet's own dialing still works. Returns the authority reported."""
    with Agent(ctx.binary, ctx.repo, CONFIG) as agent:
        kubelet = k.Registration(agent.dp_dir)
        try:
            regs = {r.resource_name: r for r in kubelet.registrations(2)}
            socket = kubelet.endpoint_path(regs[NET])
            authority = authority_of(socket)
            refused_calls(socket, authority, calls)
            got = k.wait_for(lambda: warnings(agent), "the agent's warning")
            expect(len(got) == 1, f"{len(got)} warnings for {calls} refusals (rate limit)")
            fields = got[0]["fields"]
            seen = fields["authority"]
            if authority is not k.GRPCIO_DEFAULT:
                expect(seen == authority, f"the warning names {seen!r}, the client sent {authority!r}")
            expect(seen not in ("", k.KUBELET_AUTHORITY), f"authority reported: {seen!r}")
            expect(fields.get("min_kubelet") == MIN_KUBELET, f"warning fields {fields}")
            expect(f"kubelet {MIN_KUBELET} or later" in fields.get("message", ""), f"warning {fields}")
            m = agent.metrics()
            expect(m.get(REFUSED_METRIC) == calls, f"{REFUSED_METRIC} = {m.get(REFUSED_METRIC)}, {calls} refused")
            st = agent.status()["refusedAuthorities"]
            expect(st == {"count": calls, "lastAuthority": seen}, f"status refusedAuthorities {st}")
            # kubelet's way still works on the same socket.
            c = k.PluginClient(socket)
            expect(c.options().get_preferred_allocation_available, "a call with authority localhost")
            c.close()
            return seen
        finally:
            kubelet.stop()


def grpcio_default(ctx):
    """grpcio without grpc.default_authority (what a new user's stand-in
    sends by default)."""
    check(ctx, lambda socket: k.GRPCIO_DEFAULT, 3)


def socket_path(ctx):
    """The socket path as authority: what kubelet < 1.26 and grpc-go
    dialing a bare path send."""
    check(ctx, lambda socket: socket, 2)
