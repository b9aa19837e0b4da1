"""``ffm-rig``: serve a rig's SLMs and cameras with slmsuite's ``Server``, or ping one.

``ffm-rig serve`` hosts the hardware that ``--config`` maps to the rig's roles (see
:mod:`optics.rig.hardware`), or the emulated rig (``--emulated``), for slmsuite's
``RemoteSLM`` / ``RemoteCamera``. :class:`RigServer` differs from slmsuite's stock ``Server``
in what it binds and when it refuses: it binds one host (127.0.0.1 by default; the stock
server binds every interface) and closes a connection from outside its allow-list before
reading a byte of it. The protocol has no authentication (docs/rig.md, Security): reach a lab
PC through an SSH tunnel. ``ffm-rig ping --address HOST:PORT`` lists what a server hosts.

Every error is one line on stderr, ``ffm-rig: error: <what>; <the fix>``, with exit code 2,
before any hardware is opened.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import selectors
import signal
import socket
import sys
import threading
import urllib.parse

from slmsuite.hardware.remote import (  # the stock wire format, reused as is
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    SERVER_WAIT_TIMEOUT,
    Server,
    _Client,
    _NpEncoder,
    _recv,
)

from optics.rig.hardware import build_hardware, close_hardware, load_hardware_config

log = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
EXIT_ERROR = 2
_NO_AUTH = "slmsuite's protocol has no authentication"


def resolve_host(host: str) -> str:
    """The IPv4 address ``host`` names (slmsuite's clients speak IPv4 only)."""
    try:
        return socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except (socket.gaierror, UnicodeError):
        raise ValueError(f"--host '{host}' does not resolve to an IPv4 address; give one of this machine's") from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) is reachable only from this machine."""
    return ipaddress.ip_address(resolve_host(host)).is_loopback


def bind_socket(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one; ``getsockname()`` tells which)."""
    if not isinstance(port, int) or not (port == 0 or 1 <= port <= 65535):
        raise ValueError(f"--port must be 0 (any free port) or 1..65535, got {port!r}")
    address = resolve_host(host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Windows' SO_REUSEADDR would let another process take the port; exclusive use there
    option = getattr(socket, "SO_EXCLUSIVEADDRUSE", socket.SO_REUSEADDR)
    sock.setsockopt(socket.SOL_SOCKET, option, 1)
    try:
        sock.bind((address, port))
        sock.listen(5)
    except OSError as exc:
        sock.close()
        raise ValueError(
            f"cannot listen on {address}:{port} ({exc.strerror or exc}); free the port or choose another --host/--port"
        ) from None
    return sock


def normalize_allowlist(addresses) -> list[str] | None:
    """The client IP addresses allowed, as the server compares them (``None``: every client)."""
    if addresses is None:
        return None
    out = []
    for address in addresses:
        try:
            out.append(str(ipaddress.ip_address(str(address).strip())))
        except ValueError:
            raise ValueError(f"--allow '{address}' is not an IP address; give a client's, e.g. 127.0.0.1") from None
    return out


class RigServer(Server):
    """slmsuite's ``Server`` bound to one host, refusing clients outside ``allowlist`` unread.

    ``hardware``: slmsuite SLMs and cameras, served under their ``name``. ``host``/``port``:
    where to listen (port 0: any free port; :attr:`port` holds the bound one after :meth:`bind`).
    ``sock``: an already listening socket to serve instead (``host``/``port`` then come from it).
    ``allowlist``: client IP addresses served (``None``: every client that reaches ``host``).
    ``recv_timeout_s``: how long a connected client may stall mid-request. :attr:`listening`
    is set once the socket accepts connections; :meth:`stop` ends :meth:`listen` from any thread.
    """

    def __init__(
        self,
        hardware: list,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        allowlist: list[str] | None = None,
        recv_timeout_s: float = DEFAULT_TIMEOUT,
        sock: socket.socket | None = None,
    ):
        super().__init__(hardware, port=DEFAULT_PORT, timeout=SERVER_WAIT_TIMEOUT, recv_timeout=recv_timeout_s)
        self.allowlist = normalize_allowlist(allowlist)
        self.host, self.port = host, port
        self.listening = threading.Event()
        self._stopping = threading.Event()
        self._sock = None
        self._wake_recv, self._wake_send = socket.socketpair()
        if sock is not None:
            self._adopt(sock)

    def _adopt(self, sock: socket.socket) -> None:
        self._sock = sock
        self.host, self.port = sock.getsockname()[:2]

    def bind(self) -> int:
        """Bind and listen now (if not yet); returns the bound port."""
        if self._sock is None:
            self._adopt(bind_socket(self.host, self.port))
        return self.port

    def address(self) -> str:
        """``host:port`` as bound (what ``ffm-rig ping --address`` and ``rig.address`` take)."""
        return f"{self.host}:{self.port}"

    def listen(self) -> None:
        """Serve one request per connection until :meth:`stop` (or Ctrl-C); closes the socket."""
        self.bind()
        self._sock.setblocking(False)  # a client gone between readiness and accept() must not block the loop
        self._listening = True  # the stock Server's flag, kept for code that reads it
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ)
        selector.register(self._wake_recv, selectors.EVENT_READ)
        log.debug("serving %s on %s", ", ".join(self.hardware), self.address())
        self.listening.set()
        try:
            while not self._stopping.is_set():
                if any(key.fileobj is self._sock for key, _ in selector.select()):
                    self._accept_one()
        except KeyboardInterrupt:
            pass
        finally:
            self._listening = False
            self.listening.clear()
            selector.close()
            self._sock.close()
            self._wake_recv.close()
            self._wake_send.close()

    def stop(self) -> None:
        """Make :meth:`listen` return after the request in hand (safe from any thread, even before it)."""
        self._stopping.set()
        self._listening = False
        try:
            self._wake_send.send(b"\0")
        except OSError:  # listen() already returned and closed it
            pass

    def _accept_one(self) -> None:
        try:
            connection, client = self._sock.accept()
        except OSError:  # the client gave up between readiness and accept
            return
        with connection:
            connection.settimeout(self.recv_timeout)  # bounds the reply's sendall to a client that stops reading
            if self.allowlist is not None and client[0] not in self.allowlist:
                log.warning("refused %s:%s: not in the allow-list %s", client[0], client[1], self.allowlist)
                self._reply(connection, (False, f"Client {client[0]} not in allowlist."))
                return
            try:
                message = _recv(connection, self.recv_timeout)
                result = self._handle(message, client) if isinstance(message, dict) else message
                self._reply(connection, result)
            except Exception:  # one client's bad payload or disconnect must not end the server
                log.exception("error serving %s:%s", client[0], client[1])

    @staticmethod
    def _reply(connection: socket.socket, result) -> None:
        reply = urllib.parse.quote_plus(json.dumps(result, cls=_NpEncoder)) + "\n"
        try:
            connection.sendall(reply.encode())
        except OSError:  # the client is gone
            pass


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), one-line ValueError otherwise."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--address '{address}' must be HOST:PORT, e.g. 127.0.0.1:5025")
    return host, int(port)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the usage too)
        _fail(f"{message}; see {self.prog} --help")


def _fail(message: str):
    print(f"ffm-rig: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    sys.exit(EXIT_ERROR)


def _emulator():
    """The lead's emulator module, or None where it is not installed."""
    try:
        from optics.rig import emulator
    except ImportError:
        return None
    return emulator


def build_parser() -> argparse.ArgumentParser:
    """``ffm-rig {serve,ping}``'s arguments (``serve`` takes the emulator's options when it exists)."""
    parser = _Parser(prog="ffm-rig", description="Serve a rig's SLMs and cameras over slmsuite's protocol.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="host the rig's hardware for RemoteSLM/RemoteCamera clients")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 5025; 0: any free port)")
    serve.add_argument("--allow", action="append", metavar="IP", help="a client address to serve (repeatable)")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    which = serve.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", metavar="FILE", help="YAML or JSON mapping the rig's roles to slmsuite drivers")
    which.add_argument("--emulated", action="store_true", help="serve the emulated rig (a simulated chip)")
    emulator = _emulator()
    if emulator is not None:
        emulator.add_emulator_arguments(serve)
    ping = sub.add_parser("ping", help="list the hardware a server hosts")
    ping.add_argument("--address", required=True, metavar="HOST:PORT", help="the server, e.g. 127.0.0.1:5025")
    ping.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait (default 5)")
    return parser


def _serve(args) -> int:
    allowlist = normalize_allowlist(args.allow)
    config = None if args.emulated else load_hardware_config(args.config)
    emulator = _emulator() if args.emulated else None
    if args.emulated and emulator is None:
        raise ValueError("--emulated needs optics.rig.emulator, which this install lacks; use --config")
    loopback = is_loopback(args.host)
    sock = bind_socket(args.host, args.port)  # before opening hardware: a busy port costs nothing
    try:
        hardware = emulator.emulated_hardware_from_args(args) if emulator else build_hardware(config)
    except BaseException:
        sock.close()
        raise
    try:
        server = RigServer(hardware, allowlist=allowlist, sock=sock)
        if not loopback:
            print(
                f"ffm-rig: warning: {server.address()} is reachable from the network and {_NO_AUTH}; "
                "firewall it to the clients' addresses, or bind 127.0.0.1 and use an SSH tunnel (docs/rig.md)",
                file=sys.stderr,
                flush=True,
            )
        print(f"ffm-rig: serving {', '.join(server.hardware)} on {server.address()} (Ctrl-C stops)", flush=True)
        _stop_on_sigterm(server)
        server.listen()
    finally:
        close_hardware(hardware)
    return 0


def _stop_on_sigterm(server: RigServer) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: server.stop())


def _ping(args) -> int:
    host, port = parse_address(args.address)
    try:
        hardware = _Client.info(host=host, port=port, timeout=args.timeout_s, verbose=False)
    except OSError:  # refused, unreachable or silent (slmsuite raises TimeoutError for each)
        raise ValueError(
            f"no slmsuite server answered at {host}:{port}; "
            "start ffm-rig serve there, or check the address and the SSH tunnel"
        ) from None
    except RuntimeError as exc:  # a server that answered with a failure (e.g. not in its allow-list)
        line = " ".join(str(exc).split())
        raise ValueError(f"the server at {host}:{port} refused: {line}; ask for --allow of this address") from None
    print(f"{host}:{port}: " + (", ".join(f"{name} ({kind})" for name, kind in hardware.items()) or "no hardware"))
    return 0


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="ffm-rig: %(levelname)s: %(message)s")
    logging.getLogger("slmsuite").setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """The ``ffm-rig`` console script: ``serve`` or ``ping``; exit 0, or 2 with one line on error."""
    args = build_parser().parse_args(argv)
    _configure_logging(getattr(args, "verbose", False))
    try:
        return _serve(args) if args.command == "serve" else _ping(args)
    except (ValueError, RuntimeError) as exc:
        _fail(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
