#!/usr/bin/python3
"""SOCKS5 client for GSS-API authentication (method X'01', RFC 1961).

Uses python3-gssapi (MIT krb5).  Credentials come from the environment
(KRB5_CONFIG, KRB5CCNAME: source the env file realm.py writes).

  gssclient.py --proxy H:P [--service rcmd@localhost] [--level 0|1|2|3]
               (--connect H:P [--bytes N] | --udp H:P [--udp-sizes A,B,..]
                [--count K]) [fault option]
  gssclient.py --echo-tcp PORT [--bind ADDR]   loopback TCP echo target
  gssclient.py --echo-udp PORT [--bind ADDR]   loopback UDP echo target
      (PORT 0 picks a free one; the first stdout line is "echo: tcp ADDR PORT"
       or "echo: udp ADDR PORT"; runs until killed)

Prints one result line and exits:
  0  "gssclient: ok level=L tcp bytes=N" / "gssclient: ok level=L udp ..."
     (for a fault option this means the server did NOT refuse it)
  1  "gssclient: refused <stage>: <what the server sent>" or
     "gssclient: mismatch <what>"
  2  usage
  3  "gssclient: error <what>": local trouble (no KDC, connect failed,
     timeout waiting for the server, ...)

Wire format, as checked against RFC 1961 and Dante 1.4.2 (sockd/method_gssapi.c,
lib/clientprotocol.c, lib/gssapi.c, sockd/dante_udp.c):

  greeting        C: 05 N METHODS..   S: 05 01   (S: 05 FF = no method)
  context         C: 01 01 LEN(2, network order) TOKEN
                  S: 01 01 LEN TOKEN   -- one answer per client token
                  ... repeated until gss_init_sec_context is complete.
                  We always ask for MUTUAL|REPLAY|INTEG|CONF (+SEQUENCE for
                  TCP only, as RFC 1961 3.2 and Dante do; no DELEG, as Dante).
                  With mutual auth the server's last answer carries the krb5
                  AP-REP and init completes with no further token.
                  Dante's sockd answers EVERY client token, also the last one
                  (then possibly with LEN 0: see --no-mutual).
  failure         S: 01 FF and close (RFC 1961 3.8).  DANTE DIFFERS: sockd
                  never sends 01 FF; on any GSS or protocol error it just
                  closes the connection.  We treat EOF/RST as a refusal too.
  protection      C: 01 02 LEN TOKEN, TOKEN = gss_wrap(conf_req=FALSE, 1 octet)
  level           S: 01 02 LEN TOKEN, same wrapping, the granted level.
                  Levels: 1 integrity, 2 integrity+confidentiality,
                  3 selective (Dante refuses it: closes), 0 = non-RFC "clear"
                  (auth only, no per-message protection: curl always sends it,
                  Dante accepts it only with "gssapi.enctype: clear").
                  DANTE: never grants a level other than the one asked for; a
                  level its rule does not allow is refused by closing.  Its
                  "nec" client compatibility accepts the octet unwrapped
                  (LEN=1, see --unwrapped-level); without it that is refused.
  after level 0   plain SOCKS5 (request, reply, data: no encapsulation).
  after level 1/2 everything is  01 03 LEN TOKEN,  TOKEN = gss_wrap(conf_req =
                  FALSE at 1, TRUE at 2) of the SOCKS request, the SOCKS reply,
                  then the relayed TCP byte stream in both directions (any
                  number of bytes per message, as long as the token fits the
                  16-bit LEN).  DANTE: the SOCKS request must be in ONE token
                  (it parses the request out of a single unwrap); it sends the
                  reply as one token; it cuts relayed data at
                  gss_wrap_size_limit(65531) so its tokens stay <= 65531; it
                  accepts tokens up to LEN 65535.
  UDP at 1/2      each datagram, both directions, is  01 03 LEN TOKEN  where
                  TOKEN = gss_wrap(whole SOCKS UDP header + data) and
                  LEN = datagram length - 4 (Dante checks the datagram is at
                  least 4 + LEN long and unwraps the rest).  At level 0 UDP is
                  plain RFC 1928.
"""

import os
import sys

OPTIONS = """
Options:
  --proxy H:P          the SOCKS5 server (IPv4, [IPv6] or name)
  --service S          target name: "svc@host" (host-based, default
                       rcmd@localhost) or a krb5 principal "svc/host@REALM"
  --level L            protection level to ask for (default 2); 0 = clear
  --expect-level L     level the server must grant (default: as asked)
  --methods M[,M]      methods offered in the greeting, hex (default 01)
  --connect H:P        CONNECT to a TCP echo target, send --bytes N (default
                       65536) and check the echo byte-exact
  --udp H:P            UDP ASSOCIATE, send datagrams of --udp-sizes (default
                       1,100,1400,8192) --count times to a UDP echo target
  --max-token N        largest wrap token we send (default 65535)
  --source ADDR        local address to bind (e.g. 127.0.0.2)
  --timeout S          per-read timeout (default 10)
  -v                   context-exchange trace on stderr
Faults (expected outcome: exit 1 "refused"; exit 0 means the server let it
through; exit 1 "mismatch" means it answered something unexpected):
  --no-ticket          empty ccache: send an empty context token, then a
                       level message without a context
  --service rcmd@otherhost   ticket for a principal not in the server keytab
  --tamper[=W]         flip a bit in a wrapped token: W = level (the
                       protection-level token), request (the wrapped SOCKS
                       request), data (a relayed data token), udp (a wrapped
                       datagram); default request at level 1/2, else level
  --unwrapped-level    level octet sent unwrapped, LEN=1 (NEC style)
  --bad-version        first context message with VER=02
  --stop-mid-exchange  half a context token, then shutdown(SHUT_WR)
  --oversize-token     context message with LEN=65535 (real token + junk)
  --replay             after a good session, send its first context token
                       (AP-REQ) again on a new connection
  --replay-data        send the same wrapped data token twice
  --downgrade[=W]      at level 2, wrap W (request or data) with
                       conf_req=FALSE
  --no-replay          do not ask for replay detection
  --no-sequence        do not ask for sequence detection (for TCP: it is
                       never asked for UDP)
  --no-mutual          do not ask for mutual auth; report whether the server
                       answers the final context token (final-reply-len=N)
"""

USAGE = """gssclient.py --proxy H:P [--service rcmd@localhost] [--level 0|1|2|3]
         [--methods 01|00,01] (--connect H:P [--bytes N] |
         --udp H:P [--udp-sizes N,N,..] [--count K]) [fault option]
       gssclient.py --echo-tcp PORT | --echo-udp PORT [--bind ADDR]
       gssclient.py --help    (options, exit codes, wire format)"""


def reexec_for_gssapi():
    """pyenv & co. may shadow Debian's python3; python3-gssapi lives there."""
    try:
        import gssapi  # noqa: F401
        return
    except ImportError:
        pass
    debian = "/usr/bin/python3"
    if (os.path.realpath(sys.executable) != os.path.realpath(debian)
            and os.path.exists(debian)
            and not os.environ.get("GSSCLIENT_REEXEC")):
        os.environ["GSSCLIENT_REEXEC"] = "1"
        os.execv(debian, [debian] + sys.argv)
    print("gssclient: error python module gssapi missing (python3-gssapi)")
    sys.exit(3)


import argparse  # noqa: E402
import ipaddress  # noqa: E402
import random  # noqa: E402
import select  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

gssapi = None  # imported lazily: the echo modes do not need it


class Refused(Exception):
    """The server refused (closed, reset, 01 FF, SOCKS error reply)."""


class Mismatch(Exception):
    """The server answered, but not what it should have."""


class LocalError(Exception):
    pass


def hexs(b, n=16):
    s = b[:n].hex(" ")
    return s + (" .." if len(b) > n else "")


def parse_hostport(s):
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
    else:
        host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("want HOST:PORT, got %r" % s)
    return host, int(port)


# --------------------------------------------------------------- echo helpers

def echo_tcp(port, bind):
    import threading
    fam = socket.AF_INET6 if ":" in bind else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((bind, port))
    ls.listen(64)
    print("echo: tcp %s %d" % (bind, ls.getsockname()[1]), flush=True)

    def serve(c):
        try:
            while True:
                b = c.recv(1 << 16)
                if not b:
                    break
                c.sendall(b)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def echo_udp(port, bind):
    fam = socket.AF_INET6 if ":" in bind else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    s.bind((bind, port))
    print("echo: udp %s %d" % (bind, s.getsockname()[1]), flush=True)
    while True:
        b, a = s.recvfrom(1 << 16)
        try:
            s.sendto(b, a)
        except OSError:
            pass


# ------------------------------------------------------------------ the client

class Conn:
    def __init__(self, sock, timeout, stage="greeting"):
        self.s = sock
        self.timeout = timeout
        self.stage = stage

    def send(self, b):
        try:
            self.s.sendall(b)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Refused("%s: %s while sending" % (self.stage, e.strerror))

    def recvn(self, n, what=""):
        buf = b""
        deadline = time.time() + self.timeout
        while len(buf) < n:
            left = deadline - time.time()
            if left <= 0:
                raise LocalError("timeout in %s waiting for %s (have %s)"
                                 % (self.stage, what or "%d bytes" % n,
                                    hexs(buf) or "nothing"))
            self.s.settimeout(left)
            try:
                b = self.s.recv(n - len(buf))
            except socket.timeout:
                continue
            except ConnectionResetError:
                raise Refused("%s: connection reset%s" % (
                    self.stage, (" after " + hexs(buf)) if buf else ""))
            if not b:
                raise Refused("%s: eof%s" % (
                    self.stage, (" after " + hexs(buf)) if buf else ""))
            buf += b
        return buf

    def wait_close(self, wait):
        """After a fault: does the server close (refusal) or answer?"""
        self.s.settimeout(wait)
        try:
            b = self.s.recv(65536)
        except socket.timeout:
            raise LocalError("%s: server neither answered nor closed within "
                             "%gs" % (self.stage, wait))
        except ConnectionResetError:
            raise Refused("%s: connection reset" % self.stage)
        if not b:
            raise Refused("%s: eof" % self.stage)
        if b[:2] == b"\x01\xff":
            raise Refused("%s: %s (abort)" % (self.stage, hexs(b)))
        return b


def gss_header(conn, want_mtyp):
    h = conn.recvn(2, "GSS header")
    if h == b"\x01\xff":
        raise Refused("%s: 01 ff (abort)" % conn.stage)
    if h[0] != 1 or h[1] != want_mtyp:
        raise Mismatch("%s: expected 01 %02x, server sent %s"
                       % (conn.stage, want_mtyp, hexs(h)))
    (n,) = struct.unpack("!H", conn.recvn(2, "GSS token length"))
    return conn.recvn(n, "GSS token of %d bytes" % n) if n else b""


def gss_msg(mtyp, token, ver=1):
    if len(token) > 0xFFFF:
        raise LocalError("token of %d bytes does not fit LEN" % len(token))
    return struct.pack("!BBH", ver, mtyp, len(token)) + token


def flip(token):
    """Flip a bit in the last byte: inside the checksum of a krb5 wrap token."""
    t = bytearray(token)
    t[-1] ^= 0x01
    return bytes(t)


def socks_addr(host, port):
    try:
        ip = ipaddress.ip_address(host)
        if ip.version == 4:
            return b"\x01" + ip.packed + struct.pack("!H", port)
        return b"\x04" + ip.packed + struct.pack("!H", port)
    except ValueError:
        h = host.encode()
        return b"\x03" + bytes([len(h)]) + h + struct.pack("!H", port)


def parse_socks_addr(b, off=0):
    """-> (host, port, next offset) or raise ValueError when short."""
    atyp = b[off]
    if atyp == 1:
        end = off + 1 + 4
        host = str(ipaddress.IPv4Address(b[off + 1:end]))
    elif atyp == 4:
        end = off + 1 + 16
        host = str(ipaddress.IPv6Address(b[off + 1:end]))
    elif atyp == 3:
        n = b[off + 1]
        end = off + 2 + n
        host = b[off + 2:end].decode(errors="replace")
    else:
        raise Mismatch("unknown ATYP %d in %s" % (atyp, hexs(b)))
    if len(b) < end + 2:
        raise ValueError("short")
    (port,) = struct.unpack("!H", b[end:end + 2])
    return host, port, end + 2


class Protected:
    """The byte stream after the level sub-negotiation: plain at level 0,
    01 03 LEN wrap(...) messages at levels 1 and 2."""

    def __init__(self, conn, ctx, level, max_token, args):
        self.c = conn
        self.ctx = ctx
        self.level = level
        self.conf = level == 2
        self.args = args
        self.plain = bytearray()   # unwrapped bytes not yet consumed
        self.eof = False
        self.tokens_in = 0
        self.max_in_token = 0
        self.chunk = None
        if level in (1, 2):
            lim = gssapi.raw.wrap_size_limit(ctx, max_token, self.conf)
            self.chunk = max(1, lim)

    def wrap(self, data, conf=None):
        w = self.ctx.wrap(data, self.conf if conf is None else conf)
        if self.conf and conf is None and not w.encrypted:
            raise LocalError("gss_wrap did not encrypt at level 2")
        return w.message

    def encode(self, data):
        """-> wire bytes for data (split into tokens when needed)."""
        if self.level not in (1, 2):
            return data
        out = []
        for i in range(0, len(data), self.chunk):
            out.append(gss_msg(3, self.wrap(data[i:i + self.chunk])))
        return b"".join(out)

    def unwrap(self, token):
        try:
            r = self.ctx.unwrap(token)
        except gssapi.exceptions.GSSError as e:
            raise Mismatch("%s: gss_unwrap of a %d-byte token from the "
                           "server failed: %s" % (self.c.stage, len(token),
                                                  e.gen_message()))
        if self.conf and not r.encrypted:
            raise Mismatch("%s: level 2 but the server's token is not "
                           "encrypted" % self.c.stage)
        if self.level == 1 and r.encrypted:
            raise Mismatch("%s: level 1 but the server's token is "
                           "encrypted" % self.c.stage)
        return r.message

    def need(self, n):
        """Read until n unwrapped bytes are buffered."""
        while len(self.plain) < n:
            if self.level in (1, 2):
                tok = gss_header(self.c, 3)
                self.tokens_in += 1
                self.max_in_token = max(self.max_in_token, len(tok))
                self.plain += self.unwrap(tok)
            else:
                self.plain += self.c.recvn(1)

    def take(self, n):
        self.need(n)
        b = bytes(self.plain[:n])
        del self.plain[:n]
        return b


def read_socks_reply(p):
    h = p.take(4)
    if h[0] != 5:
        raise Mismatch("request: reply version %d (%s)" % (h[0], hexs(h)))
    if h[1] != 0:
        raise Refused("request: SOCKS reply %s (REP=%d)" % (hexs(h), h[1]))
    atyp = h[3]
    if atyp == 1:
        rest = p.take(6)
    elif atyp == 4:
        rest = p.take(18)
    elif atyp == 3:
        n = p.take(1)
        rest = n + p.take(n[0] + 2)
    else:
        raise Mismatch("request: reply ATYP %d" % atyp)
    host, port, _ = parse_socks_addr(bytes([atyp]) + rest)
    return host, port


def make_context(args, udp):
    f = gssapi.RequirementFlag
    flags = (f.mutual_authentication | f.replay_detection | f.integrity |
             f.confidentiality)
    if not udp:
        flags |= f.out_of_sequence_detection
    if args.no_mutual:
        flags &= ~f.mutual_authentication
    if args.no_replay:
        flags &= ~f.replay_detection
    if args.no_sequence:
        flags &= ~f.out_of_sequence_detection
    if "@" in args.service or "/" not in args.service:
        name = gssapi.Name(args.service, gssapi.NameType.hostbased_service)
    else:
        name = gssapi.Name(args.service, gssapi.NameType.kerberos_principal)
    return gssapi.SecurityContext(name=name, usage="initiate", flags=flags)


def establish(conn, args, udp):
    """Context establishment; returns the context (complete)."""
    conn.stage = "context"
    ctx = make_context(args, udp)
    try:
        tok = ctx.step()
    except gssapi.exceptions.GSSError as e:
        if not args.no_ticket:
            raise LocalError("gss_init_sec_context: %s" % e.gen_message())
        # No credentials, so no token.  Send what such a client can send,
        # an empty token.  The server may close at once (refusal) or, as
        # MIT's SPNEGO acceptor under Dante does, answer with a continue
        # token (a 73-byte NegTokenInit) - and then the client tries to
        # skip ahead to the level sub-negotiation without a context, which
        # must be refused.
        conn.send(gss_msg(1, b""))
        b = conn.wait_close(args.timeout)
        if b[:2] != b"\x01\x01":
            raise Mismatch("context: server answered an empty token with %s"
                           % hexs(b))
        first = "empty token answered with 01 01 (%d bytes: %s), then " % (
            len(b), hexs(b[4:], 8))
        conn.stage = "context"
        conn.send(gss_msg(2, b"\x00"))
        try:
            b = conn.wait_close(args.timeout)
        except Refused as e:
            raise Refused("context: %s%s to a level message sent without a "
                          "context"
                          % (first, str(e).split(": ", 1)[1]))
        raise Mismatch("context: %sserver answered a level message sent "
                       "without a context with %s" % (first, hexs(b)))
    if args.no_ticket:
        raise LocalError("--no-ticket but gss_init_sec_context made a token")
    first = tok
    rounds = 0
    while True:
        if tok:
            if args.bad_version:
                conn.send(gss_msg(1, tok, ver=2))
                b = conn.wait_close(args.timeout)
                raise Mismatch("context: server answered VER=02 with %s"
                               % hexs(b))
            if args.oversize_token:
                conn.send(struct.pack("!BBH", 1, 1, 0xFFFF))
                conn.send(tok + os.urandom(0xFFFF - len(tok)))
                b = conn.wait_close(args.timeout)
                raise Mismatch("context: server answered a garbage 65535-"
                               "byte token with %s" % hexs(b))
            if args.stop_mid_exchange:
                conn.send(gss_msg(1, tok)[:4 + len(tok) // 2])
                conn.s.shutdown(socket.SHUT_WR)
                b = conn.wait_close(args.timeout)
                raise Mismatch("context: server answered half a token with "
                               "%s" % hexs(b))
            conn.send(gss_msg(1, tok))
        if ctx.complete:
            break
        reply = gss_header(conn, 1)
        rounds += 1
        if args.verbose:
            print("gssclient: context reply %d: %d-byte token" %
                  (rounds, len(reply)), file=sys.stderr)
        try:
            tok = ctx.step(reply)
        except gssapi.exceptions.GSSError as e:
            raise Mismatch("context: gss_init_sec_context rejected the "
                           "server's %d-byte token: %s"
                           % (len(reply), e.gen_message()))
    if args.no_mutual:
        # The context completed on our side with our last token.  RFC 1961
        # 3.3 lets the client go on at once; Dante's server still answers it.
        conn.s.settimeout(1.0)
        try:
            peek = conn.s.recv(4, socket.MSG_PEEK)
        except socket.timeout:
            peek = b""
        if peek[:2] == b"\x01\x01":
            extra = gss_header(conn, 1)
            print("gssclient: note: server answered the final context token "
                  "with 01 01 LEN=%d" % len(extra), file=sys.stderr)
            args.note.append("final-reply-len=%d" % len(extra))
        else:
            args.note.append("final-reply=none")
    return ctx, first


def negotiate_level(conn, ctx, args):
    conn.stage = "level"
    lv = bytes([args.level])
    if args.unwrapped_level:
        conn.send(gss_msg(2, lv))
    else:
        tok = ctx.wrap(lv, False).message
        if args.tamper == "level":
            tok = flip(tok)
        conn.send(gss_msg(2, tok))
    reply = gss_header(conn, 2)
    if args.unwrapped_level and len(reply) == 1:
        granted = reply[0]
    else:
        try:
            r = ctx.unwrap(reply)
        except gssapi.exceptions.GSSError as e:
            raise Mismatch("level: cannot unwrap server's %d-byte token: %s"
                           % (len(reply), e.gen_message()))
        if len(r.message) != 1:
            raise Mismatch("level: unwrapped reply is %d bytes, not 1"
                           % len(r.message))
        if r.encrypted:
            args.note.append("level-reply-encrypted")
        granted = r.message[0]
    want = args.expect_level if args.expect_level is not None else args.level
    if granted != want:
        raise Mismatch("level: asked %d, server granted %d"
                       % (args.level, granted))
    return granted


def connect_proxy(args):
    fam = socket.AF_INET6 if ":" in args.proxy[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    if args.source:
        s.bind((args.source, 0))
    s.settimeout(args.timeout)
    try:
        s.connect(args.proxy)
    except OSError as e:
        raise LocalError("connect to proxy %s:%d: %s"
                         % (args.proxy[0], args.proxy[1], e))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Conn(s, args.timeout)


def greet(conn, args):
    conn.stage = "greeting"
    conn.send(bytes([5, len(args.methods)]) + bytes(args.methods))
    r = conn.recvn(2, "method selection")
    if r[0] != 5:
        raise Mismatch("greeting: server sent %s" % hexs(r))
    if r[1] == 0xFF:
        raise Refused("greeting: 05 ff (no acceptable method)")
    if r[1] not in args.methods:
        raise Mismatch("greeting: server chose method %02x we did not offer"
                       % r[1])
    return r[1]


def payload(n, seed):
    return random.Random(seed).randbytes(n)


def run_tcp(conn, p, args):
    """CONNECT through the proxy, then echo args.bytes both ways."""
    host, port = args.connect
    conn.stage = "request"
    req = b"\x05\x01\x00" + socks_addr(host, port)
    if p.level in (1, 2):
        tok = p.wrap(req, conf=(False if args.downgrade else None))
        if args.tamper == "request":
            tok = flip(tok)
        conn.send(gss_msg(3, tok))
    else:
        conn.send(req)
    if args.tamper == "request" or args.downgrade == "request":
        read_socks_reply(p)
        raise Mismatch("request: server accepted a %s request" %
                       ("tampered" if args.tamper else "conf=FALSE"))
    read_socks_reply(p)
    conn.stage = "data"
    data = payload(args.bytes, 1961)
    if args.tamper == "data" or args.downgrade == "data":
        if p.level not in (1, 2):
            raise LocalError("--tamper=data needs level 1 or 2")
        if args.tamper:
            tok = flip(p.wrap(data[:1000]))
        else:
            tok = p.wrap(data[:1000], conf=False)
        conn.send(gss_msg(3, tok))
        got = p.take(1000)
        if got == data[:1000]:
            raise Mismatch("data: server relayed a %s token" %
                           ("tampered" if args.tamper else "conf=FALSE"))
        raise Mismatch("data: server relayed something else")
    if args.replay_data:
        if p.level not in (1, 2):
            raise LocalError("--replay-data needs level 1 or 2")
        tok = gss_msg(3, p.wrap(data[:1000]))
        conn.send(tok + tok)
        got = p.take(1000)
        if got != data[:1000]:
            raise Mismatch("data: first copy came back altered")
        conn.timeout = 2.0
        try:
            p.need(1)
        except Refused as e:
            raise Refused("data: replayed token: %s (first copy relayed)"
                          % str(e).split(": ", 1)[1])
        except LocalError:
            raise Refused("data: replayed token dropped, connection kept "
                          "(first copy relayed, nothing more in 2s)")
        conn.s.settimeout(0.5)
        try:
            while len(p.plain) < 1000:
                p.need(len(p.plain) + 1)
        except (Refused, LocalError):
            pass
        raise Mismatch("data: server relayed a replayed token (%d more "
                       "bytes came back)" % len(p.plain))

    wire = p.encode(data)
    sent = 0
    got = bytearray(p.plain)   # anything unwrapped along with the reply
    p.plain.clear()
    p.raw = bytearray()
    s = conn.s
    s.setblocking(False)
    deadline = time.time() + max(args.timeout, 30)
    while len(got) < len(data):
        if time.time() > deadline:
            raise LocalError("data: timeout, sent %d/%d wire bytes, got %d/%d"
                             % (sent, len(wire), len(got), len(data)))
        wl = [s] if sent < len(wire) else []
        r, w, _ = select.select([s], wl, [], 1.0)
        if w:
            try:
                sent += s.send(wire[sent:sent + (1 << 18)])
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError) as e:
                raise Refused("data: %s while sending" % e.strerror)
        if r:
            try:
                b = s.recv(1 << 18)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                raise Refused("data: connection reset after %d bytes"
                              % len(got))
            if not b:
                raise Mismatch("data: eof after %d of %d bytes"
                               % (len(got), len(data)))
            if p.level in (1, 2):
                p.raw += b
                while len(p.raw) >= 4:
                    if p.raw[0] != 1 or p.raw[1] != 3:
                        raise Mismatch("data: bad encapsulation header %s"
                                       % hexs(bytes(p.raw)))
                    (n,) = struct.unpack("!H", p.raw[2:4])
                    if len(p.raw) < 4 + n:
                        break
                    tok = bytes(p.raw[4:4 + n])
                    del p.raw[:4 + n]
                    p.tokens_in += 1
                    p.max_in_token = max(p.max_in_token, n)
                    got += p.unwrap(tok)
            else:
                got += b
    s.setblocking(True)
    if bytes(got[:len(data)]) != data:
        i = next(i for i in range(len(data)) if got[i] != data[i])
        raise Mismatch("data: echoed bytes differ at offset %d" % i)
    if len(got) > len(data):
        raise Mismatch("data: %d extra bytes echoed" % (len(got) - len(data)))
    extra = ""
    if p.level in (1, 2):
        extra = " tokens_in=%d max_token_in=%d chunk=%d" % (
            p.tokens_in, p.max_in_token, p.chunk)
    return "tcp bytes=%d%s" % (len(data), extra)


def run_udp(conn, p, args):
    host, port = args.udp
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    u.bind((args.source or ("::1" if fam == socket.AF_INET6 else "127.0.0.1"),
            0))
    uaddr = u.getsockname()
    conn.stage = "request"
    req = b"\x05\x03\x00" + socks_addr(uaddr[0], uaddr[1])
    if p.level in (1, 2):
        conn.send(gss_msg(3, p.wrap(req)))
    else:
        conn.send(req)
    rhost, rport = read_socks_reply(p)
    if rhost in ("0.0.0.0", "::"):
        rhost = args.proxy[0]
    relay = (rhost, rport)
    conn.stage = "udp"
    sizes = args.udp_sizes * args.count
    hdr = b"\x00\x00\x00" + socks_addr(host, port)
    total = 0
    maxtok = 0
    lost = 0
    for i, n in enumerate(sizes):
        data = payload(n, 1000 + i)
        msg = hdr + data
        if p.level in (1, 2):
            tok = p.wrap(msg)
            if args.tamper == "udp":
                tok = flip(tok)
            dgram = gss_msg(3, tok)
        else:
            dgram = msg
        back = None
        for attempt in range(3):          # loopback rarely drops; be nice
            try:
                u.sendto(dgram, relay)
            except OSError as e:
                raise Mismatch("udp: sendto %d-byte datagram: %s"
                               % (len(dgram), e))
            u.settimeout(2.0 if args.tamper != "udp" else 1.0)
            try:
                back, frm = u.recvfrom(1 << 17)
                break
            except socket.timeout:
                lost += 1
                continue
        if back is None:
            if args.tamper == "udp":
                raise Refused("udp: tampered datagram dropped (no echo)")
            raise Mismatch("udp: no echo for datagram %d (%d bytes) after "
                           "3 tries" % (i, n))
        if args.tamper == "udp":
            raise Mismatch("udp: tampered datagram was relayed")
        if p.level in (1, 2):
            if len(back) < 4 or back[0] != 1 or back[1] != 3:
                raise Mismatch("udp: reply datagram header %s" % hexs(back))
            (ln,) = struct.unpack("!H", back[2:4])
            if ln != len(back) - 4:
                raise Mismatch("udp: reply LEN %d but datagram carries %d"
                               % (ln, len(back) - 4))
            maxtok = max(maxtok, ln)
            back = p.unwrap(back[4:])
        if back[:3] != b"\x00\x00\x00":
            raise Mismatch("udp: reply RSV/FRAG %s" % hexs(back[:3]))
        try:
            h, pt, off = parse_socks_addr(back, 3)
        except (ValueError, IndexError):
            raise Mismatch("udp: short reply %s" % hexs(back))
        if (h, pt) != (host, port) and (h, pt) != (
                socket.gethostbyname(host) if fam == socket.AF_INET else h,
                port):
            raise Mismatch("udp: reply from %s:%d, expected %s:%d"
                           % (h, pt, host, port))
        if back[off:] != data:
            raise Mismatch("udp: echo of datagram %d (%d bytes) differs "
                           "(got %d bytes)" % (i, n, len(back) - off))
        total += n
    extra = " max_token_in=%d" % maxtok if p.level in (1, 2) else ""
    if lost:
        extra += " resent=%d" % lost
    return "udp datagrams=%d bytes=%d max=%d%s" % (len(sizes), total,
                                                   max(sizes), extra)


def session(args, replay_token=None):
    conn = connect_proxy(args)
    try:
        method = greet(conn, args)
        if method == 0:
            if args.methods != [0] and 1 in args.methods:
                args.note.append("method=00")
            p = Protected(conn, None, None, 0, args)
            level = "none"
        elif method == 1:
            if replay_token is not None:
                conn.stage = "context(replay)"
                conn.send(gss_msg(1, replay_token))
                b = conn.wait_close(args.timeout)
                raise Mismatch("context(replay): server accepted a replayed "
                               "AP-REQ and answered %s" % hexs(b))
            ctx, first = establish(conn, args, udp=args.udp is not None)
            if args.replay:
                args.replay_first = first
            level = negotiate_level(conn, ctx, args)
            if args.tamper == "level":
                raise Mismatch("level: server accepted a tampered level token")
            if args.unwrapped_level:
                args.note.append("unwrapped-level accepted")
            p = Protected(conn, ctx, level, args.max_token, args)
        else:
            raise Mismatch("greeting: method %02x" % method)
        if args.connect:
            what = run_tcp(conn, p, args)
        elif args.udp:
            what = run_udp(conn, p, args)
        else:
            what = "auth-only"
        return level, what
    finally:
        conn.s.close()


def main(argv):
    ap = argparse.ArgumentParser(prog="gssclient.py", usage=USAGE,
                                 add_help=False)
    ap.error = lambda msg: (print("gssclient: usage: %s\nusage: %s"
                                  % (msg, USAGE), file=sys.stderr),
                            sys.exit(2))
    ap.add_argument("-h", "--help", action="store_true")
    ap.add_argument("--proxy", type=parse_hostport)
    ap.add_argument("--service", default="rcmd@localhost")
    ap.add_argument("--level", type=int, default=2, choices=[0, 1, 2, 3])
    ap.add_argument("--expect-level", type=int, choices=[0, 1, 2, 3])
    ap.add_argument("--methods", default="01")
    ap.add_argument("--connect", type=parse_hostport)
    ap.add_argument("--udp", type=parse_hostport)
    ap.add_argument("--bytes", type=int, default=65536)
    ap.add_argument("--udp-sizes", default="1,100,1400,8192")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--max-token", type=int, default=0xFFFF,
                    help="largest token LEN we produce (<= 65535)")
    ap.add_argument("--source", help="local address to bind")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("-v", "--verbose", action="store_true")
    # faults
    ap.add_argument("--tamper", nargs="?", const="auto",
                    choices=["auto", "level", "request", "data", "udp"])
    ap.add_argument("--downgrade", nargs="?", const="request",
                    choices=["request", "data"],
                    help="at level 2, wrap with conf_req=FALSE")
    ap.add_argument("--unwrapped-level", action="store_true")
    ap.add_argument("--bad-version", action="store_true")
    ap.add_argument("--stop-mid-exchange", action="store_true")
    ap.add_argument("--oversize-token", action="store_true")
    ap.add_argument("--replay", action="store_true")
    ap.add_argument("--replay-data", action="store_true")
    ap.add_argument("--no-ticket", action="store_true")
    ap.add_argument("--no-mutual", action="store_true")
    ap.add_argument("--no-replay", action="store_true")
    ap.add_argument("--no-sequence", action="store_true")
    # echo helpers
    ap.add_argument("--echo-tcp", type=int)
    ap.add_argument("--echo-udp", type=int)
    ap.add_argument("--bind", default="127.0.0.1")
    try:
        args = ap.parse_args(argv)
    except SystemExit:
        return 2
    if args.help:
        print(__doc__ + OPTIONS)
        return 0
    if args.echo_tcp is not None:
        echo_tcp(args.echo_tcp, args.bind)
        return 0
    if args.echo_udp is not None:
        echo_udp(args.echo_udp, args.bind)
        return 0
    if not args.proxy:
        print("gssclient: usage: --proxy HOST:PORT is required",
              file=sys.stderr)
        return 2
    try:
        args.methods = [int(m, 16) for m in args.methods.split(",")]
        args.udp_sizes = [int(x) for x in args.udp_sizes.split(",")]
    except ValueError:
        print("gssclient: usage: --methods 01 or 00,01; --udp-sizes N,N,..",
              file=sys.stderr)
        return 2
    if args.connect and args.udp:
        print("gssclient: usage: --connect or --udp, not both",
              file=sys.stderr)
        return 2
    if not 64 <= args.max_token <= 0xFFFF:
        print("gssclient: usage: --max-token 64..65535", file=sys.stderr)
        return 2
    if args.tamper == "auto":
        if args.level == 0 or not (args.connect or args.udp):
            args.tamper = "level"
        else:
            args.tamper = "request"
    if args.tamper in ("request", "data") and not args.connect:
        print("gssclient: usage: --tamper=%s needs --connect" % args.tamper,
              file=sys.stderr)
        return 2
    if args.tamper == "udp" and not args.udp:
        print("gssclient: usage: --tamper=udp needs --udp", file=sys.stderr)
        return 2
    if (args.tamper in ("request", "data", "udp") or args.downgrade
            or args.replay_data) and args.level not in (1, 2):
        print("gssclient: usage: that fault needs --level 1 or 2",
              file=sys.stderr)
        return 2
    if args.downgrade and args.level != 2:
        print("gssclient: usage: --downgrade needs --level 2",
              file=sys.stderr)
        return 2

    reexec_for_gssapi()
    global gssapi
    import gssapi as _g
    import gssapi.raw  # noqa: F401
    import gssapi.exceptions  # noqa: F401
    gssapi = _g

    args.note = []
    tmpcc = None
    if args.no_ticket:
        tmpcc = tempfile.mkdtemp(prefix="gssclient-")
        os.environ["KRB5CCNAME"] = "FILE:%s/empty.cc" % tmpcc
    try:
        level, what = session(args)
        if args.replay:
            # Same first context token (AP-REQ) again on a new connection.
            args.replay = False
            session(args, replay_token=args.replay_first)
    except Refused as e:
        print("gssclient: refused %s" % e)
        return 1
    except Mismatch as e:
        print("gssclient: mismatch %s" % e)
        return 1
    except LocalError as e:
        print("gssclient: error %s" % e)
        return 3
    except gssapi.exceptions.GSSError as e:
        print("gssclient: error gss: %s" % e.gen_message())
        return 3
    finally:
        if tmpcc:
            import shutil
            shutil.rmtree(tmpcc, ignore_errors=True)
    note = (" " + " ".join(args.note)) if args.note else ""
    print("gssclient: ok level=%s %s%s" % (level, what, note))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
