"""Starting or joining the Ray cluster: a local cluster on loopback only, token auth always on.

What listens where (Ray 2.60, measured by ``tests/test_ray_loopback.py``)
------------------------------------------------------------------------
Ray binds every server that other nodes must reach (GCS, raylet node manager and object
manager, each worker's and the driver's core-worker gRPC server, the dashboard agent's gRPC,
HTTP and metrics ports, the runtime-env agent, the autoscaler monitor's and the dashboard's
metrics ports) to the *node IP*, and the servers only its own node uses to loopback. So a
local cluster is on loopback exactly when its node IP is 127.0.0.1, and on Linux Ray does
not let you ask for that directly: ``ray.init(_node_ip_address="127.0.0.1")`` and
``ray start --node-ip-address=127.0.0.1`` both go through ``resolve_ip_for_localhost``,
which swaps a loopback address for the host's routable one (here 192.0.2.2). Everything then
listened on that address or on all interfaces (``::``/``0.0.0.0``), metrics endpoints
included, with only the token in front of the gRPC services.

Ray's one switch that keeps the node IP on loopback is the single-machine mode it uses on
macOS and Windows: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (``ray_constants.ENABLE_RAY_CLUSTER``)
makes ``get_node_ip_address()`` answer 127.0.0.1. :func:`start_local` turns it on while
``ray.init`` starts the head's processes (they inherit it, and the workers the raylet starts
inherit it from the raylet), then restores the caller's value, so later ``ray start`` or
``ray.init(address=...)`` calls from this process (e.g. a multi-node test) are unaffected. With
it every listener of the local cluster, the driver's own gRPC port included, is on
127.0.0.1 (IPv4, or an IPv6 socket bound to ``::ffff:127.0.0.1``). The dashboard, when
enabled, is on ``dashboard_host="127.0.0.1"`` (Ray's default, passed explicitly). ``ray.init``
starts no Ray Client server (only ``ray start --head --ray-client-server-port`` does). The
remaining unix sockets (plasma store, raylet) live in the session dir under /tmp/ray.

Knobs that do not help on Linux: ``_node_ip_address`` (rewritten as above, still passed to
state the intent), ``dashboard_host`` (only the dashboard's HTTP port), ``_metrics_export_port``
(a port, not an address); there is no ``_system_config`` entry or ``RAY_GRPC_*`` variable for
a bind address in 2.60.

Token auth: the servers on loopback still serve every local user of the machine, so
``RAY_AUTH_MODE=token`` is set unless the caller set it already, and ``RAY_AUTH_MODE=disabled``
(or any mode other than ``token``) is refused with :class:`RayAuthError`. Ray reads the token
from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` (it writes a new one
there for a local cluster when none exists). The metrics endpoints (HTTP, Prometheus format)
answer without a token: on a local cluster they are on loopback; on a real cluster firewall
them (``deploy/README.md``, "Network exposure of a local cluster").
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

AUTH_MODE_ENV = "RAY_AUTH_MODE"
WORKER_NICENESS_ENV = "RAY_worker_niceness"  # read by the raylet when it starts
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": node IP = loopback
LOOPBACK = "127.0.0.1"


class RayAuthError(ValueError):
    """The environment asks Ray to run without token authentication."""


def check_auth_mode() -> None:
    """Refuse ``RAY_AUTH_MODE`` set to anything but ``token`` (``disabled``: the cluster would be open)."""
    mode = os.environ.get(AUTH_MODE_ENV)
    if mode is not None and mode.strip().lower() != "token":
        raise RayAuthError(
            f"{AUTH_MODE_ENV}={mode!r} would run Ray without token auth, open to anyone who reaches its ports; "
            f"unset {AUTH_MODE_ENV} or set {AUTH_MODE_ENV}=token (token from RAY_AUTH_TOKEN or ~/.ray/auth_token)"
        )


def _enable_token_auth() -> None:
    """``RAY_AUTH_MODE=token`` for this process and the ones it starts; only before ``ray.init``."""
    check_auth_mode()
    os.environ[AUTH_MODE_ENV] = "token"
    # Ray's C++ config caches the mode when first read: refresh it, as ray.init does when it
    # enables token auth itself, so this process (not only its children) sends the token.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextmanager
def _single_machine() -> Iterator[None]:
    """Ray's single-machine mode (node IP 127.0.0.1) while the local cluster starts."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False  # read by services.get_node_ip_address()
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = saved_env


def start_local(num_cpus: int | None, include_dashboard: bool, resources: dict | None = None) -> None:
    """Start a one-machine Ray cluster on loopback with token auth; reuse a running session.
    ``resources``: custom resources it advertises (e.g. ``{"optical_chip": 1}`` for a rig)."""
    import ray

    check_auth_mode()  # also when reusing a session: say it loudly
    if ray.is_initialized():
        return
    _enable_token_auth()
    # Ray starts workers at nice 15; a chip actor is the work itself, so it must not starve
    # behind every other process on a busy machine (set RAY_worker_niceness to keep Ray's choice)
    os.environ.setdefault(WORKER_NICENESS_ENV, "0")
    with _single_machine():
        ray.init(
            num_cpus=num_cpus,
            resources=dict(resources) if resources else None,
            include_dashboard=include_dashboard,
            dashboard_host=LOOPBACK,
            log_to_driver=False,
            _node_ip_address=LOOPBACK,
        )
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:  # a Ray upgrade changed the rules: say so
        ray.shutdown()
        raise RuntimeError(
            f"the local Ray cluster came up on node IP {node_ip}, not {LOOPBACK}; see pipeline/ray_cluster.py"
        )


def connect(address: str) -> None:
    """Join a running cluster (``auto``, ``HOST:PORT`` or ``ray://``) with token auth."""
    import ray

    check_auth_mode()  # also when reusing a session: say it loudly
    if ray.is_initialized():
        return
    _enable_token_auth()
    if _nodes_on_loopback(address):  # a cluster started by start_local: join it on loopback
        with _single_machine():
            ray.init(address=address, log_to_driver=False, _node_ip_address=LOOPBACK)
        return
    ray.init(address=address, log_to_driver=False)  # `ray start` nodes register the host address


def _nodes_on_loopback(address: str) -> bool:
    """Does the GCS at ``address`` (a loopback HOST:PORT) hold a live node registered on 127.0.0.1?"""
    host = address.rsplit(":", 1)[0]
    if address.startswith("ray://") or not (host.startswith("127.") or host == "localhost"):
        return False
    try:
        from ray._raylet import GcsClient

        nodes = GcsClient(address=address).get_all_node_info(timeout=5).values()
    except Exception:  # noqa: BLE001  (no answer: let ray.init say what is wrong)
        return False
    return any(n.node_manager_address == LOOPBACK and n.state == 0 for n in nodes)
