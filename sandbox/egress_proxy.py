"""Keel's egress proxy: the only way out of a networked session's sandbox.

One proxy container per networked session, on two Docker networks: the
session's own internal network (where only its sandbox is) and the shared
egress network. The sandbox reaches it as HTTP_PROXY / HTTPS_PROXY. It serves
HTTP CONNECT (tunnels, e.g. for HTTPS) and plain HTTP forwarding, and lets a
request through only when:

- its host name is on the session's allowlist, with the port (an address
  literal never is: there is no name to check), and
- every address the name resolves to is public (not private, loopback,
  link-local, shared, reserved or multicast), so an allowed name that points
  inward is refused. The proxy connects to the address it checked. Names the
  worker pins (`resolve`, test-only) skip both the lookup and this check.

Everything refused gets a 403 and is kept, counted by (host, port, reason),
until the host asks for it (`drain`) and records it as session events.

Plain HTTP requests to a host the worker holds credentials for get those
headers added here, so they never enter the sandbox, and go upstream over TLS
(port 443 unless the URL names one; the certificate is verified), so they
never cross the network in clear. A CONNECT tunnel is opaque and gets none.

The host drives it over stdin/stdout with the executor's JSON-lines protocol:
`{"id", "op", "args"}` in, `{"id", "ok", "result" | "error"}` out. Ops:
`ping`, `configure` (listen address, allowlist, headers, pinned names; sent
again after every start) and `drain`. Nothing it prints holds a header value.
"""

import asyncio
import datetime
import ipaddress
import json
import ssl
import sys
import urllib.parse

PORT = 3128
MAX_HEAD = 64 * 1024
HEAD_TIMEOUT_SEC = 30
CONNECT_TIMEOUT_SEC = 10
MAX_CONNECTIONS = 256
# Distinct refusals kept between drains; more are only counted.
MAX_REFUSALS = 64
HOST_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-_")
HOP_HEADERS = {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive", b"te", b"upgrade"}


class Refused(Exception):
    def __init__(self, reason, address=None):
        super().__init__(reason)
        self.reason = reason
        self.address = address


class Proxy:
    def __init__(self):
        self.allow = []  # [(host or "*.suffix", set of ports)]
        self.headers = {}  # host -> [(name bytes, value bytes)]
        self.resolve = {}  # host -> address
        self.tls = ssl.create_default_context()
        self.refused = {}
        self.dropped = 0
        self.server = None
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)

    # --- control ---------------------------------------------------------

    async def configure(self, args):
        self.allow = [(str(a["host"]).lower(), set(int(p) for p in a["ports"])) for a in args["allow"]]
        self.headers = {
            str(h).lower(): [(str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in hs.items()]
            for h, hs in (args.get("headers") or {}).items()
        }
        self.resolve = {str(h).lower(): str(a) for h, a in (args.get("resolve") or {}).items()}
        self.tls = ssl.create_default_context()
        if args.get("ca"):
            self.tls.load_verify_locations(cadata=str(args["ca"]))
        if self.server is None:
            self.server = await asyncio.start_server(self.serve, host=args["listen"], port=PORT, limit=MAX_HEAD)
        return {"listening": f"{args['listen']}:{PORT}"}

    def drain(self):
        out = {"refused": list(self.refused.values()), "dropped": self.dropped}
        self.refused = {}
        self.dropped = 0
        return out

    def record(self, host, port, reason, address=None):
        key = (host, port, reason)
        entry = self.refused.get(key)
        if entry:
            entry["count"] += 1
        elif len(self.refused) < MAX_REFUSALS:
            at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            self.refused[key] = {"host": host, "port": port, "reason": reason, "count": 1, "at": at}
            if address:
                self.refused[key]["address"] = address
        else:
            self.dropped += 1

    # --- policy ----------------------------------------------------------

    def allowed(self, host, port):
        for pattern, ports in self.allow:
            if port not in ports:
                continue
            if pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return True
        return False

    async def addresses(self, host, port):
        """The addresses to connect to, each checked; raises Refused."""
        try:
            ipaddress.ip_address(host)
            raise Refused("address-literal")
        except ValueError:
            pass
        if not self.allowed(host, port):
            raise Refused("not-allowed")
        if host in self.resolve:
            return [self.resolve[host]]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=1)  # SOCK_STREAM
        except OSError:
            raise Refused("dns-failed")
        out = []
        for info in infos:
            address = info[4][0]
            ip = ipaddress.ip_address(address.split("%")[0])
            if ip.version == 6 and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            if not ip.is_global:
                raise Refused("private-address", address)
            out.append(address)
        if not out:
            raise Refused("dns-failed")
        return out

    # --- serving ---------------------------------------------------------

    async def serve(self, reader, writer):
        async with self.slots:
            try:
                await self.handle(reader, writer)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError):
                pass
            finally:
                writer.close()

    async def handle(self, reader, writer):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_SEC)
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            return await self.refuse(writer, "?", 0, "bad-request")
        method, target, _version = parts
        tls = None
        if method == b"CONNECT":
            host, port = split_authority(target.decode("latin-1"), None)
        else:
            url = urllib.parse.urlsplit(target.decode("latin-1"))
            if url.scheme != "http" or not url.hostname:
                return await self.refuse(writer, clean(url.hostname or "?"), 0, "bad-request")
            host, port = split_authority(url.netloc.rpartition("@")[2], 0)
            if host in self.headers:
                tls = self.tls
            if port == 0:
                port = 443 if tls else 80
        if host is None or port is None:
            return await self.refuse(writer, clean(target.decode("latin-1")), 0, "bad-request")
        try:
            addresses = await self.addresses(host, port)
        except Refused as r:
            return await self.refuse(writer, host, port, r.reason, r.address)
        upstream = await connect(addresses, port, tls, host)
        if upstream is None:
            writer.write(reply(502, f"keel egress proxy could not connect to {host}:{port}"))
            return await writer.drain()
        up_reader, up_writer = upstream
        try:
            if method == b"CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                default_port = 443 if tls else 80
                authority = host if port == default_port else f"{host}:{port}"
                up_writer.write(self.forward_head(method, url, host, authority, lines[1:]))
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()

    def forward_head(self, method, url, host, authority, header_lines):
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        injected = self.headers.get(host, [])
        drop = HOP_HEADERS | {b"host"} | {name.lower() for name, _ in injected}
        out = [method + b" " + path.encode("latin-1") + b" HTTP/1.1"]
        out.append(b"Host: " + authority.encode("latin-1"))
        for line in header_lines:
            if not line:
                continue
            name = line.split(b":", 1)[0].strip().lower()
            if name not in drop:
                out.append(line)
        for name, value in injected:
            out.append(name + b": " + value)
        out.append(b"Connection: close")
        return b"\r\n".join(out) + b"\r\n\r\n"

    async def refuse(self, writer, host, port, reason, address=None):
        self.record(host, port, reason, address)
        writer.write(reply(403, f"keel egress proxy refused {host}:{port}: {reason}"))
        await writer.drain()


def clean(text):
    """A host name as recorded: lower-case, only host-name characters, bounded (events must stay storable)."""
    return "".join(c if c in HOST_CHARS else "?" for c in text.lower()[:255]) or "?"


def split_authority(authority, default_port):
    """(host, port) from `host[:port]` (`default_port` when it names none), or (None, None) when it is not one."""
    host, sep, port = authority.rpartition(":")
    if not sep or "]" in port:
        host, port = authority, default_port
    host = host.strip("[]").lower().rstrip(".")
    if port != default_port:
        try:
            port = int(port)
        except ValueError:
            return None, None
        if not 0 < port < 65536:
            return None, None
    if not host or port is None:
        return None, None
    if not set(host) <= HOST_CHARS | set(":"):
        return None, None
    return host, port


def reply(status, text):
    body = (text + "\n").encode("utf-8")
    phrase = {403: "Forbidden", 502: "Bad Gateway"}[status]
    return (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n"
    ).encode() + body


async def connect(addresses, port, tls=None, host=None):
    """A connection to the first address that answers (over TLS for `host` when `tls` is a context)."""
    for address in addresses:
        try:
            opened = asyncio.open_connection(address, port, ssl=tls, server_hostname=host if tls else None)
            return await asyncio.wait_for(opened, CONNECT_TIMEOUT_SEC)
        except (OSError, asyncio.TimeoutError):
            continue
    return None


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass


def answer(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


async def control(proxy):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            rid, op, args = msg["id"], msg["op"], msg.get("args") or {}
        except (ValueError, KeyError, TypeError):
            answer({"id": None, "ok": False, "error": {"code": "BadRequest", "message": "not a request"}})
            continue
        try:
            if op == "ping":
                result = {"proxy": "keel-egress", "configured": proxy.server is not None}
            elif op == "configure":
                result = await proxy.configure(args)
            elif op == "drain":
                result = proxy.drain()
            else:
                raise ValueError(f"unknown op {op}")
            answer({"id": rid, "ok": True, "result": result})
        except (ValueError, KeyError, TypeError, OSError) as e:
            # Never echo the arguments: a configure carries credentials.
            answer({"id": rid, "ok": False, "error": {"code": "BadRequest", "message": f"{op}: {type(e).__name__}"}})


if __name__ == "__main__":
    asyncio.run(control(Proxy()))
