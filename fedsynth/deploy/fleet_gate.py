"""A filtering TLS proxy in front of a SuperLink: only the Fleet API (what SuperNodes use) passes.

Flower 1.42 serves the Fleet, Control and Runtime APIs on one port, and its Control API takes no
credential here, so anyone holding the CA certificate could register a key or submit, list and
stop runs. The SuperLink listens on 127.0.0.1; the gate, on the address the sites reach, forwards
a request to it only if its target is a Fleet API endpoint or ``/health`` (403 otherwise), with
``Connection: close``, its body no longer than ``--max-body-bytes`` (413, unread) and its SuperNode
signature (Flower signs only a timestamp) not seen before and inside Flower's window (401).
docs/deployment.md ("Who can join a deployment") and docs/reliability.md ("Deployment security")
give the reasons and the tests.

    python -m fedsynth.deploy.fleet_gate --listen 203.0.113.10:9092 --upstream 127.0.0.1:9093 \\
        --certfile server.pem --keyfile server.key --upstream-ca ca.pem
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import re
import ssl
import sys

ALLOWED_PATH = re.compile(rb"/v1/fleet/[a-z][a-z-]*|/health")
"""Request targets that pass: the Fleet API's endpoints and the health check (no query)."""
MAX_HEAD = 65536
TIMEOUT_S = 60.0
DEFAULT_MAX_BODY_BYTES = 256 * 2**20
"""The body bound when none is given (``fedsynth-deploy`` passes one sized to the experiment)."""
CLOCK_TOLERANCE_S = 10.0
"""How far ahead of the gate's clock a timestamp may be (twice Flower 1.42's ``SYSTEM_TIME_TOLERANCE``, 5 s)."""
SIGNATURE_WINDOW_S = 300.0 + CLOCK_TOLERANCE_S
"""How long the gate remembers a signed timestamp: Flower 1.42 accepts one for 300 s plus its 5 s of
clock drift (``TIMESTAMP_TOLERANCE``, ``SYSTEM_TIME_TOLERANCE``), so this covers that window with a margin."""
PUBLIC_KEY_HEADER = b"flwr-public-key"
TIMESTAMP_HEADER = b"flwr-timestamp"


def allowed(target: bytes) -> bool:
    """Whether a request target may pass (exact match: no query, no ``..``, no encoding tricks)."""
    return ALLOWED_PATH.fullmatch(target) is not None


def _refusal(status: bytes, reason: bytes = b"only the Fleet API is served on this address") -> bytes:
    body = b"fedsynth fleet gate: " + reason + b"\n"
    return b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body


def forwarded_head(head: bytes) -> tuple[bytes, int] | None:
    """The request head to send upstream (``Connection: close`` instead of the client's) and
    the body length; None if the request is not a plain request with a Content-Length body."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    kept, length = [lines[0]], 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name in (b"connection", b"keep-alive", b"upgrade", b"proxy-connection"):
            continue
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            if not value.strip().isdigit():
                return None
            length = int(value.strip())
        kept.append(line)
    return b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n", length


def header_value(head: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lower case) in a request head, or None when absent."""
    for line in head.rstrip(b"\r\n").split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


class ReplayGuard:
    """Admits each signed (public key, timestamp) pair once, within Flower's signature window.

    A request without the signature headers is admitted (the SuperLink decides whether it needs
    them). ``now`` is injectable for tests; by default the wall clock in UTC.
    """

    def __init__(self, window_s: float = SIGNATURE_WINDOW_S, now=None) -> None:
        self.window_s = window_s
        self.now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.seen: dict[tuple[bytes, bytes], datetime.datetime] = {}

    def admit(self, head: bytes) -> bool:
        """Whether a request head may pass: unsigned, or signed at a fresh timestamp not seen before."""
        key, stamp = header_value(head, PUBLIC_KEY_HEADER), header_value(head, TIMESTAMP_HEADER)
        if key is None and stamp is None:
            return True
        try:
            signed_at = datetime.datetime.fromisoformat(stamp.decode("ascii"))  # type: ignore[union-attr]
            if signed_at.tzinfo is None:
                return False
        except (AttributeError, UnicodeError, ValueError):
            return False
        now = self.now()
        self.seen = {pair: at for pair, at in self.seen.items() if (now - at).total_seconds() < self.window_s}
        age = (now - signed_at).total_seconds()
        if not -CLOCK_TOLERANCE_S < age < self.window_s or (key, stamp) in self.seen:
            return False
        self.seen[(key, stamp)] = signed_at
        return True


@dataclasses.dataclass
class FleetGate:
    """The proxy: accepts connections, forwards allowed requests to ``upstream``; over TLS both
    ways, or in plain text both ways when the contexts are ``None`` (``--insecure``)."""

    upstream: tuple[str, int]
    server_context: ssl.SSLContext | None
    upstream_context: ssl.SSLContext | None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    replay_guard: ReplayGuard = dataclasses.field(default_factory=ReplayGuard)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection: one request, checked, then forwarded or refused."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
            parts = head.split(b"\r\n", 1)[0].split(b" ")
            if len(parts) != 3 or not allowed(parts[1]):
                writer.write(_refusal(b"403 Forbidden"))
                return
            forwarded = forwarded_head(head)
            if forwarded is None:
                writer.write(_refusal(b"411 Length Required", b"a request needs a Content-Length body"))
                return
            new_head, length = forwarded
            if length > self.max_body_bytes:
                writer.write(_refusal(b"413 Content Too Large", b"the request body is longer than this federation's largest honest message"))
                return
            if not self.replay_guard.admit(head):
                writer.write(_refusal(b"401 Unauthorized", b"a SuperNode signature is used once, within its time window"))
                return
            body = await asyncio.wait_for(reader.readexactly(length), TIMEOUT_S)
            up_reader, up_writer = await asyncio.open_connection(
                *self.upstream, ssl=self.upstream_context,
                server_hostname=self.upstream[0] if self.upstream_context else None,
            )
            try:
                up_writer.write(new_head + body)
                await up_writer.drain()
                while chunk := await asyncio.wait_for(up_reader.read(65536), TIMEOUT_S):
                    writer.write(chunk)
                    await writer.drain()
            finally:
                up_writer.close()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            writer.close()

    async def serve(self, host: str, port: int) -> None:
        """Listen on ``host:port`` until cancelled; print one line once listening."""
        server = await asyncio.start_server(self.handle, host, port, ssl=self.server_context, limit=MAX_HEAD)
        print(
            f"fleet gate listening on {host}:{port}, forwarding the Fleet API to {self.upstream[0]}:{self.upstream[1]}"
            f" (request bodies up to {self.max_body_bytes} bytes; each SuperNode signature once)",
            flush=True,
        )
        async with server:
            await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT the sites reach")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the SuperLink (127.0.0.1)")
    parser.add_argument("--certfile", help="the SuperLink's certificate (PEM)")
    parser.add_argument("--keyfile", help="its private key (PEM)")
    parser.add_argument("--upstream-ca", help="the CA certificate to verify the SuperLink with")
    parser.add_argument("--insecure", action="store_true", help="plain text both ways (a SuperLink started with --insecure)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="refuse (413) a request body longer than this")
    args = parser.parse_args(argv)
    certificates = (args.certfile, args.keyfile, args.upstream_ca)
    if any(certificates) if args.insecure else not all(certificates):
        parser.error("give --certfile, --keyfile and --upstream-ca (TLS), or --insecure alone")
    server_context = upstream_context = None
    if not args.insecure:
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(args.certfile, args.keyfile)
        upstream_context = ssl.create_default_context(cafile=args.upstream_ca)
    gate = FleetGate(_address(args.upstream), server_context, upstream_context, args.max_body_bytes)
    try:
        asyncio.run(gate.serve(*_address(args.listen)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
