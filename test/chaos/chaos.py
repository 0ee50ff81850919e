#!/usr/bin/env python3
# chaos.py -- seeded, reproducible stress ("chaos") run against socks5.
#
# Usage (from the top of the tree; `make chaos` and `make chaos-ci` wrap it):
#
#   python3 test/chaos/chaos.py [--seed N | --seeds A-B[,C...]] [--secs S]
#                               [--socks5 CMD]... [--ci] [--keep] [-v]
#
# Environment (the options win):
#   CHAOS_SEED    seed of the run (or A-B, A,B,C); default: a random one,
#                 printed first
#   CHAOS_SECS    seconds per seed (and per server command), default 60;
#                 a run ends up to one handshake timeout later
#   SOCKS5        server command, split like a shell line, default ./socks5
#                 (e.g. "qemu-i386 -L /usr/i686-linux-gnu ./socks5.i386")
#   CHAOS_SLOW    multiplier for every time allowance (default: 1, 2 for a
#                 command naming "asan", 4 for qemu or valgrind)
#   CHAOS_STATUS  auto (default), 1 or 0: use the SIGUSR1 status line; auto
#                 uses it when the binary contains "status sessions=" (or a
#                 native server catches SIGUSR1)
#   CHAOS_ARGS    fix the server options instead of drawing them, e.g.
#                 "-c 16 -m 2 -t 5 -u" (-c -m -t -f -u -4 -6 understood)
#   CHAOS_NOFILE  fix the descriptor limit (ulimit -n; 0: none)
#   CHAOS_DNS     1 or 0: always or never use the fake DNS
#   CHAOS_NETNS   0: stay in the host's network namespace (default as root:
#                 a private one, unshare -n, so nothing else on the host
#                 sees our ports, nor we theirs; port 53 included)
#   CHAOS_KEEP    1: keep the work directory (server logs) even on success
#   CHAOS_CI_BUDGET  seconds for the whole of --ci (default 75)
#   CHAOS_WATCHDOG   seconds after which a hung run is stopped (default:
#                 the planned time plus generous slack)
#
# What it does: for each seed (and each server command) a series of
# episodes, each a fresh server ("-l 127.0.0.1 -p 0 -v" plus options drawn
# from the seed: -c, -m, -t, -f, -u, -4, a low descriptor limit, a fake DNS
# in a private mount namespace) and a random mix of clients drawn from the
# seed with random.Random: CONNECT/BIND/UDP ASSOCIATE with and without
# RFC 1929 logins, pipelined and one-byte-at-a-time handshakes, slow readers
# and writers, clients vanishing (FIN or RST) at every step, bursts of wrong
# passwords, BIND peers from the wrong address, DOMAINNAME requests answered
# fast, slowly, too late, never or with NXDOMAIN by our own DNS responder
# (127.53.0.1:53, bound into the server's view with unshare -m and
# mount --bind over /etc/resolv.conf), resolver helpers stopped (SIGSTOP,
# SIGCONT) and killed, hundreds of lookups queued at once while every
# helper is stopped, UDP fragment sequences in order, interleaved,
# reordered, duplicated, too long or timed out, SIGHUP reloads of a changing
# user file, and SIGTERM under load. Scenario choices come from the seed;
# timing does not.
#
# Invariants, each counted as one check passed or one violation:
#   - every byte of every stream arrives exactly (both directions, checked
#     against the seeded generator at the far end);
#   - CONNECT to a live target succeeds (REP 00) unless the table or the
#     descriptors are full (then 05 FF and close); replies are the
#     documented ones (04 for a name that fails or is late, 05 refused,
#     06 no BIND peer, 07, 08) and come in time;
#   - every connection the server accepted ends with exactly one
#     "socks5: session ..." line, with the expected result, up/down byte
#     counts and a sane time=, by its deadline; no line for anything we did
#     not open; the line parses unambiguously;
#   - UDP: whatever arrives is exactly a datagram or reassembled sequence
#     the documented rules let through (never an abandoned sequence, never
#     one from a foreign address), at the address its name resolves to;
#     counts agree with the session line;
#   - after the load: no session left, ~0 % CPU, as many descriptors as at
#     startup, every resolver helper alive (a killed one restarted within
#     about a second), and, when the binary has it, a status line (SIGUSR1)
#     at baseline;
#   - no crash, exit status 0 soon after SIGTERM, no sanitizer report.
#
# A violation is reported once per cause where it can be told: a client
# that sees a failure looks up its session line first (a session the
# server ended for lack of a buffer is reported as that), and repeats of
# one kind in an episode are counted but printed twice at most.
#
# Output: progress lines, a summary, and last "chaos: N passed, N failed".
# Exit status 0 only without violations. Everything runs on loopback; every
# process started here is stopped by pid at the end, also on errors and on
# the global watchdog. Reproduce a violation with the seed, the server
# command and the seconds it names (choices follow the seed; timing not).

import argparse
import collections
import contextlib
import errno
import faulthandler
import hashlib
import heapq
import ipaddress
import os
import random
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
MONO = time.monotonic
HZ = os.sysconf('SC_CLK_TCK')
IS_ROOT = os.geteuid() == 0
SO_RCVBUFFORCE = getattr(socket, 'SO_RCVBUFFORCE', 33)

RESULTS = set('succeeded general-failure not-allowed net-unreachable '
              'host-unreachable conn-refused ttl-expired cmd-unsupported '
              'atyp-unsupported closed timeout idle-timeout bad-version '
              'no-method auth-failed auth-paced client-gone '
              'client-not-reading '
              'remote-gone read-error error no-buffer bad-descriptor'.split())
REP_NAMES = {0: 'succeeded', 1: 'general-failure', 2: 'not-allowed',
             3: 'net-unreachable', 4: 'host-unreachable', 5: 'conn-refused',
             6: 'ttl-expired', 7: 'cmd-unsupported', 8: 'atyp-unsupported'}
LINGER_S = 2.0          # the server's time to deliver a final reply
SAN_RE = re.compile(r'ERROR: AddressSanitizer|runtime error:|'
                    r'ERROR: LeakSanitizer|AddressSanitizer:DEADLYSIGNAL|'
                    r'SUMMARY: (?:Address|UndefinedBehavior)Sanitizer')


# ---------------------------------------------------------------------------
# Output, checks and violations

OUT_LOCK = threading.Lock()


def say(msg):
    with OUT_LOCK:
        sys.stdout.write('chaos: %s\n' % msg)
        sys.stdout.flush()


class Tally:
    """Counts over the whole invocation: checks, violations, work done."""

    def __init__(self):
        self.lock = threading.Lock()
        self.passed = 0
        self.failed = 0
        self.violations = []
        self.sessions = collections.Counter()   # scenario -> instances
        self.outcomes = collections.Counter()   # (scenario, outcome)
        self.bytes = 0
        self.notes = []
        self.harness_errors = 0

    def ok(self, n=1):
        with self.lock:
            self.passed += n

    def bad(self, where, what, expected, seen, detail=''):
        with self.lock:
            self.failed += 1
            v = {'where': where, 'what': what, 'expected': expected,
                 'seen': seen, 'detail': detail}
            self.violations.append(v)
            n = self.failed
        text = 'VIOLATION %d: %s: %s; expected: %s; seen: %s' % (
            n, where, what, expected, seen)
        if detail:
            text += '\n         ' + str(detail).replace('\n', '\n         ')
        say(text)

    def note(self, msg):
        with self.lock:
            if msg in self.notes:
                return
            self.notes.append(msg)
        say('note: ' + msg)

    def add_bytes(self, n):
        with self.lock:
            self.bytes += n


TALLY = Tally()


# ---------------------------------------------------------------------------
# Processes we started: stopped by pid on every way out

class Procs:
    def __init__(self):
        self.lock = threading.Lock()
        self.popens = []
        self.stopped = {}       # pid -> starttime (helpers we SIGSTOPped)
        self.helpers = {}       # pid -> starttime (helpers we have seen)

    def add(self, p):
        with self.lock:
            self.popens.append(p)

    def cleanup(self):
        with self.lock:
            stopped = dict(self.stopped)
            helpers = dict(self.helpers)
            popens = list(self.popens)
        for pid, st in stopped.items():
            if proc_starttime(pid) == st:
                try_kill(pid, signal.SIGCONT)
        for p in popens:
            if p.poll() is None:
                try_kill(p.pid, signal.SIGKILL)
                try:
                    p.wait(5)
                except Exception:
                    pass
        for pid, st in helpers.items():
            if proc_starttime(pid) == st:
                try_kill(pid, signal.SIGKILL)


PROCS = Procs()


def try_kill(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except OSError:
        return False


def proc_stat(pid):
    """Fields of /proc/PID/stat after the command name, or None."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rfind(')') + 2:].split()


def proc_starttime(pid):
    f = proc_stat(pid)
    return f[19] if f else None


def proc_children(pid):
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    out = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            f = proc_stat(int(d))
            if f and f[1] == str(pid):
                out.append(int(d))
    return out


def proc_cpu_ticks(pid):
    f = proc_stat(pid)
    return int(f[11]) + int(f[12]) if f else None


def proc_fds(pid):
    d = '/proc/%d/fd' % pid
    out = {}
    try:
        for n in os.listdir(d):
            try:
                out[int(n)] = os.readlink(os.path.join(d, n))
            except OSError:
                pass
    except OSError:
        return None
    return out


def udp_drops(ports):
    """Kernel drop counters of the UDP sockets on these local ports."""
    want = set(ports)
    out = {}
    for name in ('/proc/net/udp', '/proc/net/udp6'):
        try:
            with open(name) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            w = line.split()
            if len(w) < 13:
                continue
            port = int(w[1].rsplit(':', 1)[1], 16)
            if port in want:
                out[port] = out.get(port, 0) + int(w[-1])
    return out


# ---------------------------------------------------------------------------
# Seeded data: the same bytes whatever the read and write sizes

class Stream:
    BLOCK = 65536

    def __init__(self, seed):
        self.r = random.Random(seed)
        self.buf = b''
        self.pos = 0

    def take(self, n):
        out = []
        while n > 0:
            if self.pos >= len(self.buf):
                self.buf = self.r.randbytes(self.BLOCK)
                self.pos = 0
            k = min(n, len(self.buf) - self.pos)
            out.append(self.buf[self.pos:self.pos + k])
            self.pos += k
            n -= k
        return b''.join(out)


class Verifier:
    """Compares received bytes with the stream they must be."""

    def __init__(self, seed, expect=None):
        self.s = Stream(seed)
        self.count = 0
        self.bad_at = None
        self.expect = expect

    def feed(self, data):
        if self.bad_at is None:
            exp = self.s.take(len(data))
            if exp != data:
                i = 0
                while data[i] == exp[i]:
                    i += 1
                self.bad_at = self.count + i
        self.count += len(data)

    def exact(self):
        return self.bad_at is None and (self.expect is None or
                                        self.count == self.expect)

    def describe(self):
        s = '%d bytes' % self.count
        if self.expect is not None:
            s += ' of %d' % self.expect
        if self.bad_at is not None:
            s += ', first wrong byte at offset %d' % self.bad_at
        return s


def down_seed(token):
    return token * 2 + 1


# ---------------------------------------------------------------------------
# Sockets with deadlines

class Gone(Exception):
    """The peer closed (how: 'eof' or 'reset') or the deadline passed."""

    def __init__(self, how, data=b''):
        Exception.__init__(self, how)
        self.how = how
        self.data = data


def left(deadline):
    return max(0.001, deadline - MONO())


def recv_exact(s, n, deadline):
    buf = b''
    while len(buf) < n:
        if MONO() >= deadline:
            raise Gone('timeout', buf)
        s.settimeout(left(deadline))
        try:
            d = s.recv(n - len(buf))
        except socket.timeout:
            raise Gone('timeout', buf)
        except (ConnectionResetError, ConnectionAbortedError):
            raise Gone('reset', buf)
        except OSError as e:
            raise Gone('reset' if e.errno in (errno.ECONNRESET, errno.EPIPE)
                       else 'error:%s' % e, buf)
        if not d:
            raise Gone('eof', buf)
        buf += d
    return buf


def recv_until_end(s, deadline, limit=1 << 20):
    """Read until EOF/reset/deadline; returns (how, data)."""
    buf = b''
    while True:
        try:
            buf += recv_exact(s, 1, deadline)
            s.setblocking(False)
            try:
                while len(buf) < limit:
                    d = s.recv(65536)
                    if not d:
                        return 'eof', buf
                    buf += d
            except BlockingIOError:
                pass
            except OSError:
                return 'reset', buf
            finally:
                s.setblocking(True)
        except Gone as g:
            return g.how, buf + g.data


def send_all(s, data, deadline):
    view = memoryview(data)
    while len(view):
        if MONO() >= deadline:
            raise Gone('timeout')
        s.settimeout(left(deadline))
        try:
            n = s.send(view)
        except socket.timeout:
            raise Gone('timeout')
        except (ConnectionResetError, BrokenPipeError,
                ConnectionAbortedError):
            raise Gone('reset')
        except OSError as e:
            raise Gone('error:%s' % e)
        view = view[n:]


def close_rst(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack('ii', 1, 0))
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def close_quiet(s):
    if s is None:
        return
    try:
        s.close()
    except OSError:
        pass


def duplex(s, send_len, send_seed, recv_verifier, deadline, chunk=65536,
           wdelay=0.0, rdelay=0.0, rchunk=65536, half_close=True,
           offset=0, recv_to_eof=True, activity=None, stop=None):
    """Send send_len bytes of Stream(send_seed) (the first offset of them
    already sent) while reading into recv_verifier, with select.
    Returns a dict: sent, how ('eof', 'reset', 'timeout', 'done',
    'stopped'), wclosed."""
    src = Stream(send_seed)
    if offset:
        src.take(offset)
    sent = offset
    pending = b''
    wdone = sent >= send_len
    wclosed = False
    how = None
    s.setblocking(False)
    next_w = next_r = MONO()
    last = MONO()
    try:
        while True:
            if wdone and half_close and not wclosed:
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                wclosed = True
            want = recv_verifier.expect
            rdone = (not recv_to_eof and want is not None and
                     recv_verifier.count >= want)
            if wdone and rdone:
                how = 'done'
                break
            now = MONO()
            if now >= deadline:
                how = 'timeout'
                break
            if stop is not None and stop.is_set():
                how = 'stopped'
                break
            rl = [s] if now >= next_r and not rdone else []
            wl = [s] if not wdone and now >= next_w else []
            t = min(deadline - now, 0.2)
            if not rl and not rdone:
                t = min(t, max(0.0, next_r - now))
            if not wl and not wdone:
                t = min(t, max(0.0, next_w - now))
            try:
                r, w, _ = select.select(rl, wl, [], max(0.0, t))
            except (OSError, ValueError):
                how = 'error'
                break
            if r:
                try:
                    d = s.recv(rchunk)
                except BlockingIOError:
                    d = None
                except OSError:
                    how = 'reset'
                    break
                if d is not None:
                    if not d:
                        how = 'eof'
                        break
                    recv_verifier.feed(d)
                    last = MONO()
                    if rdelay:
                        next_r = MONO() + rdelay
            if w:
                if not pending:
                    pending = src.take(min(chunk, send_len - sent))
                try:
                    n = s.send(pending)
                except BlockingIOError:
                    n = 0
                except OSError:
                    how = 'reset'
                    break
                if n:
                    pending = pending[n:]
                    sent += n
                    last = MONO()
                    if sent >= send_len:
                        wdone = True
                    if wdelay:
                        next_w = MONO() + wdelay
            if activity is not None:
                activity[0] = max(activity[0], MONO() - last)
    finally:
        try:
            s.setblocking(True)
        except OSError:
            pass
    return {'sent': sent, 'how': how, 'wclosed': wclosed}


# ---------------------------------------------------------------------------
# SOCKS5 messages

def addr_bytes(host):
    """ATYP + address for an IPv4/IPv6 literal or a name (bytes or str)."""
    if isinstance(host, str):
        try:
            a = ipaddress.ip_address(host)
            if a.version == 4:
                return b'\x01' + a.packed
            return b'\x04' + a.packed
        except ValueError:
            host = host.encode('latin-1')
    return b'\x03' + bytes([len(host)]) + host


def request(cmd, host, port):
    return b'\x05' + bytes([cmd, 0]) + addr_bytes(host) + struct.pack(
        '!H', port)


def greeting(methods):
    return b'\x05' + bytes([len(methods)]) + bytes(methods)


def auth_msg(user, pw):
    u = user.encode('latin-1')
    p = pw.encode('latin-1')
    return b'\x01' + bytes([len(u)]) + u + bytes([len(p)]) + p


def read_reply(s, deadline):
    """One reply: dict rep, host, port; raises Gone."""
    head = recv_exact(s, 4, deadline)
    if head[0] != 5:
        return {'rep': -1, 'raw': head, 'host': None, 'port': 0,
                'bad': 'version byte %d' % head[0]}
    atyp = head[3]
    if atyp == 1:
        a = recv_exact(s, 6, deadline)
        host = socket.inet_ntop(socket.AF_INET, a[:4])
    elif atyp == 4:
        a = recv_exact(s, 18, deadline)
        host = socket.inet_ntop(socket.AF_INET6, a[:16])
    elif atyp == 3:
        n = recv_exact(s, 1, deadline)
        a = n + recv_exact(s, n[0] + 2, deadline)
        host = a[1:-2].decode('latin-1')
        a = a[1:]
    else:
        return {'rep': head[1], 'raw': head, 'host': None, 'port': 0,
                'bad': 'atyp %d' % atyp}
    port = struct.unpack('!H', a[-2:])[0]
    return {'rep': head[1], 'raw': head + a, 'host': host, 'port': port,
            'bad': None}


def is_loopback(host):
    try:
        a = ipaddress.ip_address(host)
    except ValueError:
        return False
    if a.version == 6 and a.ipv4_mapped:
        a = a.ipv4_mapped
    return a.is_loopback


def is_unspecified(host):
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def fmt_key(key):
    ip, port = key
    if ':' in ip:
        return '[%s]:%d' % (ip, port)
    return '%s:%d' % (ip, port)


# Target protocol: the first 24 bytes a target (or BIND peer) reads.
HDR = struct.Struct('!4sBBHQQ')     # magic, mode, slow_ms, flags, n, token
M_ECHO, M_SOURCE, M_SINK, M_HOLD = 1, 2, 3, 4
MODE_NAMES = {M_ECHO: 'echo', M_SOURCE: 'source', M_SINK: 'sink',
              M_HOLD: 'hold'}
TRAILER = struct.Struct('!QQ')      # sink: bytes seen, first bad offset + 1


# ---------------------------------------------------------------------------
# Targets on loopback: TCP (echo, source, sink, hold) and UDP (echo)

def bind_same_port(hosts, kind, tries=60):
    """Sockets on every host, all on one port (the first is required)."""
    for _ in range(tries):
        socks = []
        port = 0
        try:
            for h in hosts:
                fam = socket.AF_INET6 if ':' in h else socket.AF_INET
                s = socket.socket(fam, kind)
                socks.append((s, h))
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((h, port))
                port = s.getsockname()[1]
            return port, socks
        except OSError:
            for s, _ in socks:
                close_quiet(s)
    raise RuntimeError('cannot bind one port on %s' % ' '.join(hosts))


class Targets:
    """Sockets on every host, one port, served by one thread: the
    subclass prepares each socket and handles one that is ready."""

    def __init__(self, hosts, kind, name):
        self.port, self.socks = bind_same_port(hosts, kind)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        for s, _ in self.socks:
            self.prepare(s)
            s.setblocking(False)
        self.thread = threading.Thread(target=self.loop, daemon=True,
                                       name=name)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            try:
                r, _, _ = select.select([s for s, _ in self.socks], [], [],
                                        0.2)
            except (OSError, ValueError):
                return
            for s in r:
                self.ready(s, [h for t, h in self.socks if t is s][0])

    def close(self):
        self.stop.set()
        for s, _ in self.socks:
            close_quiet(s)


class TcpTargets(Targets):
    def __init__(self, hosts):
        self.records = {}
        self.badheaders = []
        Targets.__init__(self, hosts, socket.SOCK_STREAM, 'tcp-targets')

    def prepare(self, s):
        s.listen(512)

    def ready(self, ls, host):
        while True:
            try:
                c, _ = ls.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            c.setblocking(True)
            self.serve(c, host)

    def serve(self, c, host):
        threading.Thread(target=self.handle, args=(c, host), daemon=True,
                         name='target').start()

    def record(self, token):
        with self.lock:
            return self.records.get(token)

    def handle(self, c, host):
        rec = {'local': host, 'in': 0, 'bad_at': None, 'out': 0,
               'end': None, 'done': False, 't_open': MONO()}
        try:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        try:
            try:
                hdr = recv_exact(c, HDR.size, MONO() + 300)
            except Gone:
                return
            magic, mode, slow, flags, n, token = HDR.unpack(hdr)
            if magic != b'CHAO':
                with self.lock:
                    self.badheaders.append(hdr)
                return
            rec.update(mode=mode, token=token, n=n)
            with self.lock:
                self.records[token] = rec
            c.settimeout(300)
            v = Verifier(token)
            if mode == M_SOURCE:
                src = Stream(down_seed(token))
                while rec['out'] < n:
                    chunk = src.take(min(65536, n - rec['out']))
                    c.sendall(chunk)
                    rec['out'] += len(chunk)
                    if slow:
                        time.sleep(slow / 1000.0)
                c.shutdown(socket.SHUT_WR)
            while True:
                d = c.recv(16384 if slow else 65536)
                if not d:
                    break
                v.feed(d)
                rec['in'] = v.count
                rec['bad_at'] = v.bad_at
                if mode == M_ECHO:
                    c.sendall(d)
                    rec['out'] += len(d)
                if slow:
                    time.sleep(slow / 1000.0)
            rec['end'] = 'eof'
            if mode == M_SINK:
                c.sendall(TRAILER.pack(v.count, 0 if v.bad_at is None
                                       else v.bad_at + 1))
                rec['out'] += TRAILER.size
            if mode in (M_ECHO, M_SINK):
                c.shutdown(socket.SHUT_WR)
        except socket.timeout:
            rec['end'] = 'timeout'
        except OSError:
            rec['end'] = 'reset'
        finally:
            rec['done'] = True
            rec['t_end'] = MONO()
            close_quiet(c)

    def forget(self):
        with self.lock:
            self.records = {}


UDP_MAGIC = b'CHUD'
UDP_ACK = b'CHUA'
UDP_ID = struct.Struct('!4sQI')     # magic, association, message
UDP_ECHO_MAX = 60000


class UdpTargets(Targets):
    def __init__(self, hosts):
        self.arrivals = collections.defaultdict(list)
        self.unknown = []
        Targets.__init__(self, hosts, socket.SOCK_DGRAM, 'udp-targets')

    def prepare(self, s):
        set_rcvbuf(s, 8 << 20)

    def ready(self, us, host):
        for _ in range(256):
            try:
                data, src = us.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            self.got(us, host, data, src)

    def got(self, us, host, data, src):
        t = MONO()
        if len(data) < UDP_ID.size or data[:4] != UDP_MAGIC:
            with self.lock:
                self.unknown.append((host, len(data), src, t))
            return
        _, assoc, msg = UDP_ID.unpack(data[:UDP_ID.size])
        sha = hashlib.sha256(data).digest()
        with self.lock:
            self.arrivals[assoc].append((msg, len(data), sha, host, t))
        if len(data) <= UDP_ECHO_MAX:
            out = data
        else:
            out = UDP_ACK + data[4:UDP_ID.size] + sha + struct.pack(
                '!I', len(data))
        try:
            us.sendto(out, src)
        except OSError:
            pass

    def take(self, assoc):
        with self.lock:
            return list(self.arrivals.get(assoc, []))

    def drops(self):
        return sum(udp_drops([self.port]).values())

    def forget(self):
        with self.lock:
            self.arrivals = collections.defaultdict(list)


def set_rcvbuf(s, n):
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, n)
    except OSError:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, n)
        except OSError:
            pass


# ---------------------------------------------------------------------------
# DNS responder (UDP, loopback only) for the names the scenarios use:
#   fast-hN-TAG.test         A 127.0.0.N at once
#   slow-MS-hN-TAG.test      A 127.0.0.N after MS ms
#   fail-TAG.test, fail-MS-TAG.test   NXDOMAIN (after MS ms)
#   drop-TAG.test            never answered
# AAAA queries get an empty NOERROR (NXDOMAIN for fail) after the same
# delay; anything else NXDOMAIN at once.

DNS_NAME_RE = re.compile(r'^(fast|slow|fail|drop)(?:-(\d+))?(?:-h(\d+))?-'
                         r'([a-z0-9]+)\.test$')


class Dns:
    def __init__(self, addr):
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # SO_REUSEADDR: the test suite's own responder (slowdns.test) may
        # want the wildcard address on port 53 while we run
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((addr, 53))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.lock = threading.Lock()
        self.tags = {}
        self.heap = []
        self.seq = 0
        self.queries = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True,
                                       name='dns')
        self.thread.start()

    def forget(self):
        with self.lock:
            self.tags = {}

    def info(self, tag):
        with self.lock:
            d = self.tags.get(tag)
            return dict(d) if d else None

    def loop(self):
        while not self.stop.is_set():
            now = MONO()
            while self.heap and self.heap[0][0] <= now:
                _, _, pkt, peer, tag = heapq.heappop(self.heap)
                self.send(pkt, peer, tag)
            t = 0.2
            if self.heap:
                t = min(t, max(0.0, self.heap[0][0] - now))
            try:
                r, _, _ = select.select([self.sock], [], [], t)
            except (OSError, ValueError):
                return
            if not r:
                continue
            for _ in range(64):
                try:
                    pkt, peer = self.sock.recvfrom(4096)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if not peer[0].startswith('127.'):
                    continue
                self.query(pkt, peer)

    def send(self, pkt, peer, tag):
        # counted before it leaves: the server may act on it (and a client
        # ask about it) before sendto() even returns here
        if tag:
            with self.lock:
                d = self.tags.get(tag)
                if d is not None:
                    d['answered'] = MONO()
                    if d['first_answer'] is None:
                        d['first_answer'] = d['answered']
                    d['answers'] += 1
        try:
            self.sock.sendto(pkt, peer)
        except OSError:
            pass

    @staticmethod
    def parse(pkt):
        if len(pkt) < 12:
            return None
        off = 12
        labels = []
        while True:
            if off >= len(pkt):
                return None
            n = pkt[off]
            off += 1
            if n == 0:
                break
            if n > 63 or off + n > len(pkt):
                return None
            labels.append(pkt[off:off + n])
            off += n
        if off + 4 > len(pkt):
            return None
        qtype = struct.unpack('!H', pkt[off:off + 2])[0]
        name = b'.'.join(labels).decode('latin-1').lower()
        return name, qtype, off + 4

    @staticmethod
    def reply(pkt, qend, rcode, ip=None):
        qid, flags = struct.unpack('!HH', pkt[:4])
        flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
        out = struct.pack('!HHHHHH', qid, flags, 1, 1 if ip else 0, 0, 0)
        out += pkt[12:qend]
        if ip:
            out += struct.pack('!HHHIH', 0xC00C, 1, 1, 0, 4)
            out += socket.inet_aton(ip)
        return out

    def query(self, pkt, peer):
        q = self.parse(pkt)
        if q is None:
            return
        name, qtype, qend = q
        self.queries += 1
        m = DNS_NAME_RE.match(name)
        if not m:
            self.send(self.reply(pkt, qend, 3), peer, None)
            return
        kind, ms, host, tag = m.group(1), m.group(2), m.group(3), m.group(4)
        delay = int(ms) / 1000.0 if ms else 0.0
        with self.lock:
            d = self.tags.setdefault(tag, {'first': MONO(), 'answered': None,
                                           'first_answer': None,
                                           'answers': 0, 'queries': 0,
                                           'kind': kind})
            d['queries'] += 1
            d['last'] = MONO()
        if kind == 'drop':
            return
        if kind == 'fail':
            r = self.reply(pkt, qend, 3)
        elif qtype == 1:
            r = self.reply(pkt, qend, 0, '127.0.0.%d' % int(host or 1))
        else:
            r = self.reply(pkt, qend, 0)
        if delay <= 0:
            self.send(r, peer, tag)
        else:
            self.seq += 1
            heapq.heappush(self.heap, (MONO() + delay, self.seq, r, peer, tag))

    def close(self):
        self.stop.set()
        close_quiet(self.sock)


def dns_address():
    """A loopback address on which nothing listens on UDP port 53 (not
    127.0.0.1, which the test suite's own DNS fixture prefers)."""
    taken = set()
    try:
        with open('/proc/net/udp') as f:
            for line in f.readlines()[1:]:
                w = line.split()
                a, p = w[1].split(':')
                if int(p, 16) == 53:
                    taken.add(socket.inet_ntoa(struct.pack('<I', int(a, 16))))
    except OSError:
        pass
    for a in ('127.53.0.1', '127.53.0.2', '127.53.0.3', '127.53.1.1'):
        if a not in taken:
            return a
    return None


# ---------------------------------------------------------------------------
# The server under test

class StartError(Exception):
    pass


SESSION_KEYS = ['method', 'user', 'cmd', 'dst', 'result', 'up', 'down']
SESSION_RE = re.compile(
    r'^socks5: session (\S+) method=(\S*) user=(.*) cmd=(\S*) dst=(.*) '
    r'result=(\S*) up=(\d+) down=(\d+)(?: datagrams=(\d+)/(\d+) '
    r'dropped=(\d+))?.* time=(\d+)\.(\d+)s(?: .*)?$')
DST_RE = re.compile(r'^(?:\[[0-9a-fA-F:.]+\]|[^\s:\[\]]*):\d+$|^-$')


def parse_key(text):
    m = re.match(r'^\[([^\]]+)\]:(\d+)$', text) or \
        re.match(r'^([^:]+):(\d+)$', text)
    if not m:
        return None
    return (m.group(1), int(m.group(2)))


def session_ambiguity(line):
    """Why a session line does not parse as unambiguous key=value fields,
    or None."""
    toks = line.split(' ')[3:]
    keys = []
    for t in toks:
        if '=' not in t:
            return 'field %r is not key=value' % t
        keys.append(t.split('=', 1)[0])
    if keys[:len(SESSION_KEYS)] != SESSION_KEYS:
        return 'keys %s, expected %s first' % (' '.join(keys),
                                               ' '.join(SESSION_KEYS))
    if len(set(keys)) != len(keys):
        return 'repeated keys: %s' % ' '.join(keys)
    dst = toks[3].split('=', 1)[1]
    if not DST_RE.match(dst):
        return 'dst=%s is not HOST:PORT with an unambiguous host' % dst
    return None


class SessionLine:
    __slots__ = ('t', 'line', 'key', 'method', 'user', 'cmd', 'dst',
                 'result', 'up', 'down', 'dgram_up', 'dgram_down',
                 'dropped', 'time', 'ambiguous', 'rec')

    def __init__(self, t, line):
        self.t = t
        self.line = line
        self.rec = None
        m = SESSION_RE.match(line)
        if not m:
            raise ValueError('unparsable session line')
        self.key = parse_key(m.group(1))
        (self.method, self.user, self.cmd, self.dst, self.result) = \
            m.group(2, 3, 4, 5, 6)
        self.up, self.down = int(m.group(7)), int(m.group(8))
        self.dgram_up = int(m.group(9)) if m.group(9) else None
        self.dgram_down = int(m.group(10)) if m.group(10) else None
        self.dropped = int(m.group(11)) if m.group(11) else None
        self.time = int(m.group(12)) + int(m.group(13)) / 1000.0
        self.ambiguous = session_ambiguity(line)


def binary_has_status(words):
    for w in words:
        p = w if '/' in w else shutil.which(w)
        if not p or not os.path.isfile(p):
            continue
        try:
            with open(p, 'rb') as f:
                if b'status sessions=' in f.read():
                    return True
        except OSError:
            pass
    return False


class Server:
    def __init__(self, argv, env, logpath):
        self.argv = argv
        self.env = env
        self.logpath = logpath
        self.cond = threading.Condition()
        self.lines = []
        self.sessions = []
        self.by_key = collections.defaultdict(list)
        self.statuses = []
        self.san = []
        self.refusals = []
        self.reloads = []
        self.deaths = []
        self.bind_refused = []
        self.unparsed = []
        self.pool_full = False
        self.eof = False
        self.port = None
        self.p = None
        self.exit_code = None

    def start(self, timeout):
        self.log = open(self.logpath, 'wb')
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env=self.env,
                                  start_new_session=True, close_fds=True)
        PROCS.add(self.p)
        self.pid = self.p.pid
        self.reader = threading.Thread(target=self.read, daemon=True,
                                       name='server-log')
        self.reader.start()
        deadline = MONO() + timeout
        with self.cond:
            while self.port is None:
                if self.eof or MONO() >= deadline:
                    break
                self.cond.wait(0.1)
        if self.port is None:
            self.kill()
            raise StartError('no "listening on" line within %.0f s; log:\n%s'
                             % (timeout, self.tail(20)))

    def read(self):
        lre = re.compile(r'^socks5: listening on (?:\[[^\]]+\]|[^\s:]+):(\d+)')
        for raw in iter(self.p.stderr.readline, b''):
            t = MONO()
            try:
                self.log.write(raw)
                self.log.flush()
            except (OSError, ValueError):
                pass
            line = raw.decode('latin-1').rstrip('\r\n')
            with self.cond:
                self.lines.append((t, line))
                self.parse(t, line, lre)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def parse(self, t, line, lre):
        if SAN_RE.search(line):
            self.san.append(line)
        if not line.startswith('socks5: '):
            return
        if 'refusing clients' in line or 'session table full' in line or \
                'out of descriptors' in line:
            self.refusals.append((t, line))
            return
        if line.startswith('socks5: session '):
            try:
                sl = SessionLine(t, line)
            except ValueError:
                self.unparsed.append(line)
                return
            self.sessions.append(sl)
            self.by_key[sl.key].append(sl)
            return
        if line.startswith('socks5: status '):
            d = {}
            for tok in line[len('socks5: status '):].split():
                if '=' in tok:
                    k, v = tok.split('=', 1)
                    d[k] = v
            self.statuses.append((t, d, line))
            return
        m = lre.match(line)
        if m and self.port is None:
            self.port = int(m.group(1))
            return
        if line.startswith('socks5: reloaded '):
            m = re.match(r'^socks5: reloaded (\d+) users', line)
            self.reloads.append((t, True, int(m.group(1)) if m else None,
                                 line))
        elif line.startswith('socks5: reload of '):
            m = re.search(r'keeping (\d+) users', line)
            self.reloads.append((t, False, int(m.group(1)) if m else None,
                                 line))
        elif 'resolver' in line and ('died' in line or 'replaced' in line):
            self.deaths.append((t, line))
        elif 'no reassembly buffer free' in line:
            self.pool_full = True
        elif line.startswith('socks5: bind: refused '):
            self.bind_refused.append((t, line))

    def tail(self, n=30):
        with self.cond:
            return '\n'.join(l for _, l in self.lines[-n:])

    def wait(self, pred, timeout):
        deadline = MONO() + timeout
        with self.cond:
            while True:
                r = pred()
                if r or MONO() >= deadline:
                    return r
                self.cond.wait(min(0.1, left(deadline)))

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def catches(self, sig):
        """Does our child catch sig? (SIGUSR1 and SIGHUP would end a
        wrapper process that does not, e.g. timeout(1).)"""
        try:
            with open('/proc/%d/status' % self.pid) as f:
                for line in f:
                    if line.startswith('SigCgt:'):
                        return bool(int(line.split()[1], 16) &
                                    (1 << (sig - 1)))
        except (OSError, ValueError):
            pass
        return False

    def send(self, sig):
        if self.alive():
            try_kill(self.pid, sig)

    def helpers(self):
        if not self.alive():
            return []
        pids = proc_children(self.pid)
        with PROCS.lock:
            for pid in pids:
                st = proc_starttime(pid)
                if st:
                    PROCS.helpers[pid] = st
        return pids

    def status(self, timeout):
        """Ask for the status line (SIGUSR1); its dict, or None."""
        with self.cond:
            n = len(self.statuses)
        self.send(signal.SIGUSR1)
        ok = self.wait(lambda: len(self.statuses) > n, timeout)
        if not ok:
            return None
        with self.cond:
            return self.statuses[n][1]

    def stop(self, timeout, sig=signal.SIGTERM):
        """Send sig, wait; the exit status, or None after a SIGKILL."""
        if self.p is None:
            return None
        if self.p.poll() is None:
            try_kill(self.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.exit_code = self.p.returncode
        self.reader.join(5)
        return self.exit_code

    def kill(self):
        if self.p is not None and self.p.poll() is None:
            try_kill(self.pid, signal.SIGKILL)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            self.reader.join(5)
        except Exception:
            pass


# ---------------------------------------------------------------------------
# Episode configuration: one server's options, drawn from the seed

class Cfg:
    def __init__(self, rng, runner, secs):
        short = secs < 25
        self.t = rng.choice([3, 4, 5, 8] if short else
                            [3, 5, 8, 15, 3600, 3600])
        self.c = rng.choice([None, None, None, 2, 4, 16, 64, 300])
        self.m = rng.choice([None, None, None, 2, 3, 8])
        self.f = rng.choice([5, 5, 5, 6])
        self.nofile = rng.choice([None, None, None, 48, 64, 96])
        self.auth = rng.random() < 0.45
        self.dns = runner.dns is not None and rng.random() < 0.6
        self.family = None
        r = rng.random()
        if r < 0.08:
            self.family = 4
        elif r < 0.16 and runner.v6:
            self.family = 6
            self.dns = False
        self.term_under_load = rng.random() < 0.35
        self.conc = rng.choice([4, 8, 12, 16, 24])
        self.override(runner)
        self.hs = min(30, self.t)
        self.bind_s = min(120, self.t)

    def override(self, runner):
        """CHAOS_ARGS, CHAOS_NOFILE, CHAOS_DNS fix what they name."""
        o = runner.force
        if 'args' in o:
            w = o['args']
            self.c = self.m = None
            self.t, self.f, self.auth, self.family = 3600, 5, False, None
            i = 0
            while i < len(w):
                a = w[i]
                v = w[i + 1] if i + 1 < len(w) else None
                if a in ('-c', '-m', '-t', '-f') and v is not None:
                    setattr(self, a[1], int(v))
                    i += 1
                elif a == '-u':
                    self.auth = True
                elif a in ('-4', '-6'):
                    self.family = int(a[1])
                i += 1
            if self.family == 6 and not runner.v6:
                self.family = None
        if 'nofile' in o:
            self.nofile = o['nofile'] or None
        if 'dns' in o:
            self.dns = o['dns'] and runner.dns is not None
        if self.family == 6:
            self.dns = False

    def table(self):
        return self.c or 1024

    def args(self):
        a = []
        if self.c:
            a += ['-c', str(self.c)]
        if self.m:
            a += ['-m', str(self.m)]
        if self.t != 3600:
            a += ['-t', str(self.t)]
        if self.f != 5:
            a += ['-f', str(self.f)]
        if self.family:
            a += ['-%d' % self.family]
        return a

    def describe(self, userfile=False):
        a = self.args()
        if self.auth:
            a += ['-u', 'USERS']
        s = ' '.join(a) or 'defaults'
        extra = []
        if self.nofile:
            extra.append('ulimit -n %d' % self.nofile)
        if self.dns:
            extra.append('fake DNS')
        if self.term_under_load:
            extra.append('SIGTERM under load')
        extra.append('%d concurrent' % self.conc)
        return '%s (%s)' % (s, ', '.join(extra))


class ConnRec:
    """One TCP connection to the proxy, and what its session line must say."""

    def __init__(self, sc, key):
        self.sc = sc
        self.key = key
        self.opened = MONO()
        self.closed = None
        self.expect = 'maybe'       # 'yes' (answered), 'maybe', 'no' (refused)
        self.want_result = None     # set of results
        self.want_up = None         # ('==' | '<=', n)
        self.want_down = None
        self.want_cmd = None
        self.want_time = None       # (lo, hi) seconds
        self.close_bound = None     # seconds from close to line
        self.why_bound = ''
        self.lenient = False        # no line required, few checks
        self.line = None
        self.assoc = None

    def close_time(self):
        if self.closed is None:
            self.closed = MONO()


class Vanished(Exception):
    pass


class Refused(Exception):
    pass


class Sc:
    """One scenario instance: a client (or a few) doing one thing."""

    def __init__(self, ep, kind, n, seed, lenient=False):
        self.ep = ep
        self.kind = kind
        self.n = n
        self.seed = seed
        self.rng = random.Random(seed)
        # each scenario its own loopback address: failed logins pace only
        # their own address, and session keys rarely repeat
        self.src = '127.%d.%d.%d' % (self.rng.randint(4, 254),
                                     self.rng.randint(0, 255),
                                     self.rng.randint(1, 254))
        self.name = '%s#%d' % (kind, n)
        self.lenient = lenient
        self.vanish_at = None
        self.vanish_how = 'fin'
        self.sock = None
        self.rec = None
        self.slow = ep.slow
        self.until = MONO() + 60
        self.t_req = MONO()

    def where(self):
        return '%s scenario=%s' % (self.ep.where(), self.name)

    def check(self, cond, what, expected='', seen='', detail='', key=None,
              strict_data=False, rec=None):
        """One invariant. A lenient scenario (SIGTERM burst) only reports
        wrong bytes (strict_data), nothing after a crash is reported. With
        rec, a failure seen by the client is explained by the server's
        session line: one that ended for lack of a spill buffer is
        reported once, as that, when the lines are checked."""
        if cond:
            TALLY.ok()
            return True
        if self.ep.crashed or (self.lenient and not strict_data):
            return False
        if rec is not None:
            line = self.session_line(rec)
            if line is not None:
                if line.result == 'no-buffer' and not strict_data:
                    return False
                detail = ((detail + '\n') if detail else '') + \
                    'server: ' + line.line
        self.ep.violation(self.where(), what, expected, seen, detail, key)
        return False

    @contextlib.contextmanager
    def guarded(self, s, rec, what):
        """How a simple scenario ends: a client refused or gone before
        its scenario began is no finding, a session gone mid-way is
        judged against rec (what: the step), and the socket is closed and
        its close noted, whatever happened."""
        try:
            yield
        except (Refused, Vanished):
            pass
        except Gone as g:
            self.gone(g, what, rec)
        finally:
            close_quiet(s)
            rec.close_time()

    def gone(self, g, what, rec, key=None):
        """The connection ended or stalled unexpectedly."""
        rec.close_time()
        if rec.expect == 'maybe' and g.how in ('eof', 'reset'):
            self.outcome('closed-at-greeting')     # judged by its record
            return
        self.check(False, what, 'the exchange completes', g.how,
                   key=key or ('gone', self.kind, g.how), rec=rec)
        self.outcome('gone-%s' % g.how)

    def session_line(self, rec, wait=1.5):
        """The server's line for rec, waiting a little for it."""
        srv = self.ep.server

        def find():
            for l in srv.by_key.get(rec.key, ()):
                if l.t >= rec.opened:
                    return l
            return None
        return srv.wait(find, wait * self.slow)

    def outcome(self, o):
        with TALLY.lock:
            TALLY.outcomes[(self.kind, o)] += 1

    def dl(self, secs):
        return MONO() + secs * self.slow

    def token(self):
        return self.rng.getrandbits(62) | 1

    def open(self, src=None, register=True):
        """A TCP connection to the proxy (blocking, with timeouts)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((src or self.src, 0))
            s.settimeout(10 * self.slow)
            s.connect(('127.0.0.1', self.ep.server.port))
        except OSError as e:
            close_quiet(s)
            raise Gone('connect: %s' % e)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rec = None
        if register:
            rec = ConnRec(self, s.getsockname()[:2])
            rec.lenient = self.lenient
            self.ep.add_rec(rec)
        return s, rec

    def point(self, name):
        """A place where this client may vanish."""
        if self.vanish_at == name:
            if self.vanish_how == 'rst':
                close_rst(self.sock)
            else:
                close_quiet(self.sock)
            if self.rec:
                self.rec.close_time()
            self.outcome('vanished-%s-%s' % (name, self.vanish_how))
            raise Vanished(name)

    # -- the handshake --------------------------------------------------

    def creds(self):
        """(user, password, good) for a login."""
        ep = self.ep
        r = self.rng.random()
        if r < 0.03:
            u, p = 'e v=il', 'sp ace'
        elif r < 0.35:
            u = 'rot'
            p = ep.rot_password()
        else:
            u, p = self.rng.choice([('alice', 's3cret'),
                                    ('bob', 'pass:with:colons')])
        good = True
        if self.rng.random() < 0.04:
            p = p + 'x'
            good = False
        return u, p, good

    def method_reply(self, s, rec, offered, deadline):
        """Read the method selection; raise Refused when turned away."""
        want = 2 if self.ep.cfg.auth else 0
        try:
            r = recv_exact(s, 2, deadline)
        except Gone as g:
            if g.how == 'timeout':
                self.check(False, 'no method selection reply',
                           '05 %02X within %.0f s' % (want, deadline -
                                                      rec.opened),
                           'nothing (%s)' % g.how)
                raise Refused('timeout')
            rec.close_time()
            if g.data == b'\x05':
                rec.expect = 'maybe'
            self.outcome('closed-at-greeting')
            raise Refused(g.how)
        if r == b'\x05\xff' and want in offered:
            rec.expect = 'no'
            rec.close_time()
            how, rest = recv_until_end(s, self.dl(LINGER_S + 3))
            rec.close_time()
            self.check(how != 'timeout' and rest == b'',
                       'refused client (05 FF) is closed at once',
                       'EOF right after 05 FF', '%s after %r' % (how, rest))
            self.ep.refused += 1
            self.outcome('refused')
            raise Refused('refused')
        rec.expect = 'yes'
        exp = b'\x05' + bytes([want if want in offered else 0xff])
        self.check(r == exp, 'method selection reply', exp.hex(' '),
                   r.hex(' '))
        if r != exp:
            raise Refused('bad method reply')
        return r

    def login(self, s, rec, user, pw, good, deadline, style='normal'):
        """Send (unless already sent) and judge the RFC 1929 exchange.
        Returns True when logged in."""
        ep = self.ep
        t0 = MONO()
        if style == 'normal':
            send_all(s, auth_msg(user, pw), deadline)
        elif style == 'onebyte':
            self.trickle(s, auth_msg(user, pw), deadline, 'auth-part')
        self.point('auth')
        try:
            r = recv_exact(s, 2, deadline)
        except Gone as g:
            r = g.data
            if g.how == 'timeout' and good:
                self.check(False, 'no reply to a good login', '01 00',
                           'nothing within %.0f s' % (MONO() - t0))
                raise Refused('timeout')
        t1 = MONO()
        ok = r == b'\x01\x00'
        if user == 'rot':
            possible = ep.rot_possible(t0, t1)
            if good and len(possible) == 1:
                good = pw in possible
            elif good:
                good = None      # a reload was in flight: either is fine
        if good is None:
            pass
        elif good:
            self.check(ok, 'good login (user %r) accepted' % user, '01 00',
                       r.hex(' ') or 'close')
        else:
            self.check(not ok and r in (b'\x01\x01', b''),
                       'wrong password (user %r) refused' % user,
                       '01 01 and close, or close',
                       r.hex(' ') or 'close')
            rec.want_result = {'auth-failed', 'auth-paced'}
        if not ok:
            how, rest = recv_until_end(s, self.dl(ep.cfg.hs + LINGER_S + 3))
            rec.close_time()
            self.outcome('auth-failed')
            raise Refused('auth-failed')
        self.point('authreply')
        return True

    def trickle(self, s, data, deadline, part_point):
        for i in range(len(data)):
            send_all(s, data[i:i + 1], deadline)
            if i == 0:
                self.point(part_point)
            time.sleep(self.rng.choice([0, 0.001, 0.005, 0.02]))

    def handshake(self, s, rec, req, style, deadline, after=b''):
        """Greeting, login, request (plus after, pipelined). Returns the
        reply dict; raises Refused/Vanished/Gone."""
        ep = self.ep
        offered = [2] if ep.cfg.auth else [0]
        if self.rng.random() < 0.2:
            offered = self.rng.sample([0, 1, 2, 0x80], self.rng.randint(2, 4))
            if (2 if ep.cfg.auth else 0) not in offered:
                offered.append(2 if ep.cfg.auth else 0)
        user = pw = None
        good = True
        if ep.cfg.auth:
            user, pw, good = self.creds()
        rec.method = 'userpass' if ep.cfg.auth else 'none'
        self.point('connected')
        if style == 'pipelined':
            msg = greeting(offered)
            if ep.cfg.auth:
                msg += auth_msg(user, pw)
            msg += req + after
            self.t_req = MONO()
            send_all(s, msg, deadline)
            self.point('request')
            self.method_reply(s, rec, offered, deadline)
            if ep.cfg.auth:
                self.login(s, rec, user, pw, good, deadline, 'sent')
        else:
            g = greeting(offered)
            if style == 'onebyte':
                self.trickle(s, g, deadline, 'greeting-part')
            else:
                send_all(s, g, deadline)
            self.point('greeting')
            self.method_reply(s, rec, offered, deadline)
            self.point('method')
            if ep.cfg.auth:
                self.login(s, rec, user, pw, good, deadline, style)
            self.t_req = MONO()
            if style == 'onebyte':
                self.trickle(s, req, deadline, 'request-part')
            else:
                send_all(s, req, deadline)
            if after:
                send_all(s, after, deadline)
            self.point('request')
        t0 = MONO()
        r = read_reply(s, deadline)
        r['t'] = MONO() - t0
        self.check(r['bad'] is None, 'reply parses', 'VER 05, ATYP 1/3/4',
                   r['raw'].hex(' '))
        return r

    def expect_rep(self, r, want, what, fd_budget=False):
        """Judge a reply code: want is an int or a set. fd_budget: a BIND
        or UDP ASSOCIATE request, which may get REP 01 when the descriptor
        budget cannot hold its extra descriptors (documented); CONNECT
        never may."""
        if fd_budget and self.ep.cfg.nofile and r['rep'] == 1:
            self.outcome('rep01-descriptor-budget')
            TALLY.ok()
            return False
        ok = r['rep'] in want if isinstance(want, set) else r['rep'] == want
        if isinstance(want, set):
            exp = ' or '.join('REP %02d (%s)' % (w, REP_NAMES.get(w, '?'))
                              for w in sorted(want))
        else:
            exp = 'REP %02d (%s)' % (want, REP_NAMES.get(want, '?'))
        seen = 'REP %02d (%s)' % (r['rep'], REP_NAMES.get(r['rep'], '?'))
        hint = ''
        if not ok and r['rep'] == 1 and self.ep.cfg.nofile:
            hint = ('the server accepted the client but could not get a '
                    'descriptor for it (ulimit -n %d)' % self.ep.cfg.nofile)
        if getattr(self, 'dns_info', None):
            hint = (hint + '; ' if hint else '') + 'DNS: %s' % self.dns_info
        key = ('rep', self.kind, r['rep'])
        if hint:
            key = ('rep-nofile',)
            what += ' while descriptors are short'
        return self.check(ok, what, exp, seen, hint, key=key)


# ---------------------------------------------------------------------------
# Scenarios. Each takes an Sc; checks as it goes; sets what the session line
# must say on its ConnRec(s).

VANISH_POINTS = ['connected', 'greeting-part', 'greeting', 'method',
                 'auth-part', 'auth', 'authreply', 'request-part', 'request',
                 'reply', 'relay-mid', 'relay-halfclose']


def tcp_dest(sc, names=True):
    """(host, expected target host or None) for a CONNECT or BIND."""
    ep = sc.ep
    r = sc.rng.random()
    if ep.cfg.family == 6:
        return '::1', '::1'
    if ep.cfg.dns and names and r < 0.25:
        h = sc.rng.randint(1, 3)
        return ep.name('fast', host=h), '127.0.0.%d' % h
    if ep.runner.v6 and ep.cfg.family is None and r < 0.4:
        return '::1', '::1'
    return '127.0.0.1', '127.0.0.1'


def pick_size(rng, sc=None):
    n = rng.choice([0, 1, 17, 100, 1000, 4096, 10000, 65535, 65536,
                    65537, 100000, 250000, 1 << 20, 3 << 20])
    if sc is not None and sc.until - MONO() < 3 * sc.slow:
        n = min(n, 100000)      # late in the load phase: keep it short
    return n


def scn_connect(sc, style=None, mode=None, slow=None, vanish=None,
                dest=None, rst_at_once=False):
    """CONNECT to a target and move seeded data both ways."""
    ep = sc.ep
    rng = sc.rng
    style = style or rng.choice(['normal'] * 6 + ['pipelined', 'onebyte'])
    mode = mode or rng.choice([M_ECHO] * 4 + [M_SOURCE, M_SINK])
    n = pick_size(rng, sc)
    if style == 'onebyte':
        n = min(n, 100000)
    wdelay = rdelay = 0.0
    tslow = 0
    chunk = rchunk = 65536
    if slow:
        kind = rng.choice(['reader', 'writer', 'target'])
        if kind == 'reader':
            rdelay, rchunk = rng.choice([0.002, 0.01, 0.03]), 16384
            n = min(max(n, 300000), 1 << 20)
        elif kind == 'writer':
            wdelay, chunk = rng.choice([0.002, 0.01, 0.03]), rng.choice(
                [1, 100, 1000])
            n = min(n, 60 * chunk) if chunk < 1000 else min(n, 200000)
        else:
            tslow = rng.choice([2, 10, 30])
            n = min(max(n, 300000), 1 << 20)
    if sc.lenient:
        n = max(n, 1 << 20)
    elif sc.until - MONO() < 3 * sc.slow:
        n = min(n, 100000)
    if dest is None:
        host, exp_host = tcp_dest(sc)
    else:
        host, exp_host = dest
    port = ep.runner.tcp.port
    token = sc.token()
    hdr = HDR.pack(b'CHAO', mode, tslow, 0, n, token)
    up_first = Stream(token).take(min(n, 2000)) if mode != M_SOURCE else b''
    sc.vanish_at = vanish
    sc.vanish_how = rng.choice(['fin', 'rst'])
    s, rec = sc.open()
    sc.sock, sc.rec = s, rec
    rec.want_cmd = 'connect'
    if rst_at_once and sc.vanish_how == 'rst':
        # README: a reset while the lookup is pending is noticed at once
        rec.close_bound = 2.0 * sc.slow
        rec.why_bound = 'client reset while its lookup runs'
    deadline = sc.dl(2 * ep.cfg.hs + 20 + n / 200000.0 *
                     (1 + 20 * (rdelay + wdelay) + tslow / 5.0))
    try:
        after = b''
        if style == 'pipelined':
            after = hdr + (up_first if mode != M_SOURCE else b'')
        r = sc.handshake(s, rec, request(1, host, port), style, deadline,
                         after)
        want, desc = 0, 'live target'
        if host.endswith('.test'):
            want, desc = dns_want(sc, host, sc.t_req, MONO())
        sc.expect_rep(r, want, 'CONNECT %s:%d (%s)' % (host, port, desc))
        if r['rep'] != 0:
            rec.want_result = {REP_NAMES.get(r['rep'], '?')}
            recv_until_end(s, sc.dl(LINGER_S + 3))
            rec.close_time()
            sc.outcome('rep%02d' % r['rep'])
            return
        sc.point('reply')
        sent0 = len(after) - len(hdr) if after else 0
        if not after:
            send_all(s, hdr, deadline)
        if mode == M_SOURCE:
            exp_down = n
            v = Verifier(down_seed(token), n)
            send_len = 0
        elif mode == M_ECHO:
            exp_down = n
            v = Verifier(token, n)
            send_len = n
        else:
            exp_down = TRAILER.size
            v = Verifier(0, None)       # trailer checked below
            send_len = n
        if vanish in ('relay-mid', 'relay-halfclose'):
            part = rng.randint(0, max(0, send_len - 1)) if send_len else 0
            part = max(part, sent0)
            if mode == M_ECHO:
                pv, v.expect = v, part          # wait for part's echo
            elif mode == M_SOURCE:
                pv, v.expect = v, min(n, rng.randint(0, 100000))
            else:
                pv = Verifier(0, 0)
            duplex(s, part, token, pv, min(deadline, sc.dl(5)),
                   offset=sent0, half_close=False, recv_to_eof=False)
            if vanish == 'relay-halfclose':
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                time.sleep(rng.choice([0, 0.01, 0.1]))
            sc.point(vanish)
        act = [0.0]
        if mode == M_SINK:
            tr = bytearray()

            class Cap:
                expect = None
                count = 0

                def feed(self, d):
                    tr.extend(d)
                    self.count += len(d)
            cap = Cap()
            res = duplex(s, send_len, token, cap, deadline, chunk=chunk,
                         wdelay=wdelay, offset=sent0, activity=act,
                         stop=ep.abort)
        else:
            res = duplex(s, send_len, token, v, deadline, chunk=chunk,
                         wdelay=wdelay, rdelay=rdelay, rchunk=rchunk,
                         offset=sent0, activity=act, stop=ep.abort,
                         half_close=True)
        rec.close_time()
        close_quiet(s)
        if res['how'] == 'stopped':
            rec.lenient = True
            return
        where = 'CONNECT %s %s %d bytes' % (host, MODE_NAMES[mode], n)
        if mode == M_SINK:
            ok = len(tr) == TRAILER.size and res['how'] == 'eof'
            cnt, bad = TRAILER.unpack(bytes(tr)) if len(tr) == 16 else (-1, 0)
            sc.check(ok and cnt == n and bad == 0,
                     '%s: every byte up arrives, then EOF' % where,
                     'target saw %d bytes, all right; EOF' % n,
                     'target saw %d bytes%s; %d trailer bytes; end %s' % (
                         cnt, ', first wrong at %d' % (bad - 1) if bad
                         else '', len(tr), res['how']), rec=rec,
                     strict_data=bool(bad))
            TALLY.add_bytes(max(0, cnt))
        else:
            trec = ep.runner.tcp.record(token)
            ok = v.exact() and res['how'] == 'eof'
            detail = ''
            if trec and trec['bad_at'] is not None:
                detail = 'the target saw a wrong byte at offset %d going up' \
                    % trec['bad_at']
            sc.check(ok, '%s: every byte arrives both ways, then EOF' % where,
                     '%d bytes down, exact; then EOF' % n,
                     '%s; end %s (sent %d up)' % (v.describe(), res['how'],
                                                  res['sent']), detail,
                     rec=rec, strict_data=v.bad_at is not None or bool(
                         trec and trec['bad_at'] is not None))
            TALLY.add_bytes(v.count + (res['sent'] if mode == M_ECHO else 0))
        trec = ep.runner.tcp.record(token)
        if exp_host and trec:
            sc.check(trec['local'] == exp_host,
                     'CONNECT %s reached the address the name stands for'
                     % host, exp_host, trec['local'])
        rec.want_result = {'succeeded'}
        rec.want_up = ('==', HDR.size + send_len)
        rec.want_down = ('==', exp_down)
        if act[0] > ep.cfg.t - 1.5 * sc.slow:
            rec.want_result = None      # we were too slow ourselves
        sc.outcome('ok')
    except Vanished:
        rec.lenient_result = True
        rec.want_up = ('<=', HDR.size + n + 10 ** 6)
    except Refused:
        pass
    except Gone as g:
        sc.gone(g, 'connection usable until the exchange ends (%s '
                'handshake)' % style, rec)
    finally:
        close_quiet(s)
        rec.close_time()


def scn_vanish(sc):
    """A client that goes away (FIN or RST) at one step."""
    ep = sc.ep
    what = sc.rng.choice(['connect'] * 3 + ['bind', 'udp'])
    threading.current_thread().name += '/' + what
    points = [p for p in VANISH_POINTS
              if ep.cfg.auth or not p.startswith('auth')]
    if what == 'connect':
        v = sc.rng.choice(points)
        style = 'onebyte' if v.endswith('-part') else sc.rng.choice(
            ['normal', 'normal', 'pipelined'])
        if style == 'pipelined' and v in ('greeting', 'method', 'auth',
                                          'authreply', 'request-part'):
            style = 'normal'
        if v == 'request' and ep.cfg.dns and sc.rng.random() < 0.5 and \
                MONO() + 4 * sc.slow < sc.until:
            # gone while its lookup runs
            scn_connect(sc, style='normal', vanish='request',
                        dest=(ep.name('slow', ms=sc.rng.choice(
                            [500, 1500, 3000]), host=1), None),
                        rst_at_once=True)
            return
        scn_connect(sc, style=style, vanish=v)
    elif what == 'bind':
        scn_bind(sc, vanish=sc.rng.choice(['request', 'reply', 'bind-wait',
                                           'relay-mid']))
    else:
        scn_udp(sc, end=sc.rng.choice(['rst', 'fin-early']))


def scn_refused_port(sc):
    """CONNECT to a port nobody listens on: REP 05."""
    ep = sc.ep
    s, rec = sc.open()
    sc.sock, sc.rec = s, rec
    rec.want_cmd = 'connect'
    with sc.guarded(s, rec, 'failure reply to CONNECT to a closed port'):
        host = '::1' if ep.cfg.family == 6 else '127.0.0.1'
        r = sc.handshake(s, rec, request(1, host, ep.runner.closed_port),
                         'normal', sc.dl(ep.cfg.hs + 10))
        sc.expect_rep(r, 5, 'CONNECT to a closed port')
        rec.want_result = {REP_NAMES.get(r['rep'], '?')}
        how, rest = recv_until_end(s, sc.dl(LINGER_S + 3))
        sc.check(how in ('eof', 'reset') and rest == b'',
                 'closed after the failure reply', 'EOF',
                 '%s %r' % (how, rest))
        sc.outcome('rep%02d' % r['rep'])


def scn_garbage(sc):
    """Malformed or unsupported messages get the documented answer."""
    ep = sc.ep
    v = sc.rng.choice(['version', 'cmd', 'atyp', 'method', 'emptyname',
                       'authver'] if ep.cfg.auth else
                      ['version', 'cmd', 'atyp', 'method', 'emptyname'])
    s, rec = sc.open()
    rec.expect = 'yes'      # unless refused, below
    sc.sock, sc.rec = s, rec
    dl = sc.dl(ep.cfg.hs + 10)
    want = 2 if ep.cfg.auth else 0
    with sc.guarded(s, rec, 'answer to a bad message (%s)' % v):
        if v == 'version':
            send_all(s, b'\x04\x01\x00\x50\x7f\x00\x00\x01\x00', dl)
            how, rest = recv_until_end(s, sc.dl(3))
            rec.close_time()
            rec.expect = 'maybe'        # may also have been refused
            if rest == b'\x05\xff':
                rec.expect = 'no'
                ep.refused += 1
                sc.outcome('refused')
                return
            sc.check(rest == b'' and how != 'timeout',
                     'wrong version byte: closed, no reply', 'close',
                     '%s %r' % (how, rest), rec=rec)
            rec.want_result = {'bad-version'}
            return
        if v == 'method':
            send_all(s, greeting([0x80, 1] + ([0] if ep.cfg.auth else [2])),
                     dl)
            how, rest = recv_until_end(s, sc.dl(LINGER_S + 3))
            rec.close_time()
            sc.check(rest == b'\x05\xff' and how != 'timeout',
                     'no acceptable method: 05 FF and close', '05 FF, EOF',
                     '%r %s' % (rest, how))
            rec.want_result = {'no-method'}
            rec.expect = 'maybe'        # 05 FF is also what a refusal says
            return
        send_all(s, greeting([want]), dl)
        sc.method_reply(s, rec, [want], dl)
        if ep.cfg.auth:
            if v == 'authver':
                send_all(s, b'\x02\x01a\x01b', dl)
                how, rest = recv_until_end(s, sc.dl(3))
                rec.close_time()
                sc.check(rest == b'' and how != 'timeout',
                         'wrong RFC 1929 version: closed, no reply', 'close',
                         '%s %r' % (how, rest))
                rec.want_result = {'bad-version'}
                return
            sc.login(s, rec, 'alice', 's3cret', True, dl)
        if v == 'cmd':
            req, rep = request(9, '127.0.0.1', 80), 7
        elif v == 'atyp':
            req, rep = b'\x05\x01\x00\x09\x7f\x00\x00\x01\x00\x50', 8
        else:
            req, rep = b'\x05\x01\x00\x03\x00\x00\x50', 1
        send_all(s, req, dl)
        raw = recv_exact(s, 10, dl)
        exp = b'\x05' + bytes([rep]) + b'\x00\x01' + b'\x00' * 6
        sc.check(raw == exp, 'reply to a bad request (%s)' % v, exp.hex(' '),
                 raw.hex(' '))
        how, rest = recv_until_end(s, sc.dl(LINGER_S + 3))
        sc.check(how != 'timeout' and rest == b'', 'closed after it',
                 'EOF', '%s %r' % (how, rest))
        rec.want_result = {REP_NAMES[rep]}
        sc.outcome('ok')


def peer_addr_for(reply_host, want_src):
    """Where a BIND peer connects to, and from which source address."""
    host = reply_host
    if host is None or is_unspecified(host):
        host = '::1' if host and ':' in host else '127.0.0.1'
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    src = want_src
    if src is None or (':' in src) != (fam == socket.AF_INET6):
        src = '::1' if fam == socket.AF_INET6 else '127.0.0.1'
    return fam, host, src


def bind_failed(sc, s, rec):
    """Did the BIND session fail (second reply not 00)? Judged here."""
    try:
        r, _, _ = select.select([s], [], [], 1.0 * sc.slow)
        if not r:
            return False
        r2 = read_reply(s, sc.dl(2))
    except (Gone, OSError, ValueError):
        return False
    if r2['rep'] == 0:
        return False
    sc.expect_rep(r2, 0, 'BIND second reply')
    rec.want_result = {REP_NAMES.get(r2['rep'], '?')}
    return True


def scn_bind(sc, vanish=None, timeout=False):
    """BIND: first reply, a peer (maybe first one from the wrong address),
    second reply naming the peer, then seeded data both ways."""
    ep = sc.ep
    rng = sc.rng
    variants = ['specific'] * 3 + ['any', 'wrongpeer', 'wrongpeer', 'early']
    if ep.cfg.dns:
        variants.append('name')
    variant = rng.choice(variants)
    if ep.cfg.family == 6:
        dst, src = '::1', '::1'
        if variant in ('wrongpeer', 'name', 'any'):
            variant = 'specific'
    elif variant == 'any':
        dst, src = '0.0.0.0', None
    elif variant == 'name':
        dst, src = ep.name('fast', host=1), '127.0.0.1'
    else:
        dst, src = '127.0.0.1', '127.0.0.1'
    mode = rng.choice([M_ECHO, M_ECHO, M_SOURCE, M_SINK])
    n = min(pick_size(rng, sc), 1 << 20)
    token = sc.token()
    sc.vanish_at = vanish
    sc.vanish_how = rng.choice(['fin', 'rst'])
    s, rec = sc.open()
    sc.sock, sc.rec = s, rec
    peer = wrong = None
    deadline = sc.dl(2 * ep.cfg.hs + ep.cfg.bind_s + 20 + n / 100000.0)
    try:
        r1 = sc.handshake(s, rec, request(2, dst, rng.randint(1, 65535)),
                          'normal', deadline)
        want, desc = 0, 'first reply'
        if dst.endswith('.test'):
            want, desc = dns_want(sc, dst, sc.t_req, MONO())
            desc = 'first reply; ' + desc
        t_r1 = MONO()
        sc.expect_rep(r1, want, 'BIND %s (%s)' % (dst, desc), fd_budget=True)
        if r1['rep'] != 0:
            rec.want_result = {REP_NAMES.get(r1['rep'], '?')}
            recv_until_end(s, sc.dl(LINGER_S + 3))
            sc.outcome('rep%02d' % r1['rep'])
            return
        sc.check(is_loopback(r1['host']) or is_unspecified(r1['host']),
                 'BIND listener address for a loopback client',
                 'a loopback address', r1['host'])
        fam, lhost, src = peer_addr_for(r1['host'], src)
        sc.point('reply')
        hdr = HDR.pack(b'CHAO', mode, 0, 0, n, token)
        early = 0
        hdr_sent = False
        if variant == 'early' or rng.random() < 0.25 or vanish == 'bind-wait':
            early = 0 if mode == M_SOURCE else rng.randint(0, min(n, 30000))
            if vanish == 'bind-wait' and ep.cfg.bind_s > 10 and \
                    sc.vanish_how == 'fin':
                # an EOF behind 520 bytes or more is only seen when the
                # wait ends (socks5.1): not with a wait this long
                early = min(early, 519 - HDR.size)
            send_all(s, hdr + Stream(token).take(early), deadline)
            hdr_sent = True
        sc.vanish_at = vanish
        if vanish == 'bind-wait':
            # README: EOF (or a reset) from the client while it waits ends
            # the session at once; an EOF behind 520 bytes or more of early
            # data (the session's own buffer, full: the client is no longer
            # read) only when the wait ends
            sent = (early + HDR.size) if hdr_sent else 0
            if sc.vanish_how == 'fin' and sent >= 520:
                rec.close_bound = max(0.0, t_r1 + ep.cfg.bind_s - MONO()) + \
                    2.0 * sc.slow
                rec.why_bound = 'EOF while its BIND waits, %d bytes sent ' \
                    'early: by the end of the wait' % sent
            else:
                rec.close_bound = 2.0 * sc.slow
                rec.why_bound = 'client gone (%s) while its BIND waits for ' \
                    'the peer (%d bytes sent early): at once' % (
                        sc.vanish_how.upper(), sent)
            time.sleep(rng.choice([0, 0.05, 0.3]))
            sc.point('bind-wait')
        if timeout:
            r2 = read_reply(s, sc.dl(ep.cfg.bind_s + 5))
            el = MONO() - rec.opened
            sc.expect_rep(r2, 6, 'BIND without a peer: second reply')
            sc.check(el >= ep.cfg.bind_s - 0.3,
                     'BIND wait lasts -t (or 120 s)',
                     '>= %.1f s' % ep.cfg.bind_s, '%.2f s' % el)
            rec.want_result = {'ttl-expired'}
            rec.want_time = (ep.cfg.bind_s - 0.3, ep.cfg.bind_s + 2 * sc.slow)
            recv_until_end(s, sc.dl(LINGER_S + 3))
            sc.outcome('ttl-expired')
            return
        if variant == 'wrongpeer' and lhost == '127.0.0.1':
            wrong = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            wrong.bind(('127.0.0.2', 0))
            wrong.settimeout(5 * sc.slow)
            wrong.connect((lhost, r1['port']))
            wport = wrong.getsockname()[1]
            how, rest = recv_until_end(wrong, sc.dl(3))
            sc.check(how in ('eof', 'reset') and rest == b'',
                     'BIND peer from the wrong address (127.0.0.2) is closed',
                     'EOF or reset', '%s %r' % (how, rest))
            close_quiet(wrong)
            pat = 'refused 127.0.0.2:%d' % wport
            got = ep.server.wait(lambda: any(pat in l for _, l in
                                             ep.server.bind_refused),
                                 3 * sc.slow)
            if not got and bind_failed(sc, s, rec):
                return
            sc.check(got, 'refused BIND peer is logged',
                     '"bind: refused 127.0.0.2:%d, waiting for %s"' % (
                         wport, dst), 'no such line')
        peer = socket.socket(fam, socket.SOCK_STREAM)
        peer.bind((src, 0))
        peer.settimeout(5 * sc.slow)
        peer.connect((lhost, r1['port']))
        pa = peer.getsockname()[:2]
        r2 = read_reply(s, deadline)
        if not sc.expect_rep(r2, 0, 'BIND second reply'):
            rec.want_result = {REP_NAMES.get(r2['rep'], '?')}
            recv_until_end(s, sc.dl(LINGER_S + 3))
            close_quiet(peer)
            return
        sc.check((r2['host'], r2['port']) == pa or (
            r2['port'] == pa[1] and ipaddress.ip_address(r2['host']) ==
            ipaddress.ip_address(pa[0])),
            'BIND second reply names the peer', '%s:%d' % pa,
            '%s:%d' % (r2['host'], r2['port']))
        ep.runner.tcp.serve(peer, src)
        peer = None
        if not hdr_sent:
            send_all(s, hdr, deadline)
        if vanish == 'relay-mid':
            time.sleep(rng.choice([0, 0.01, 0.1]))
            sc.point('relay-mid')
        send_len = 0 if mode == M_SOURCE else n
        if mode == M_SINK:
            v = Verifier(0, None)
            tr = bytearray()
            v.feed = lambda d: (tr.extend(d), None)[1]
            res = duplex(s, n, token, v, deadline, offset=early,
                         stop=ep.abort)
        else:
            v = Verifier(token if mode == M_ECHO else down_seed(token), n)
            res = duplex(s, send_len, token, v, deadline, offset=early,
                         stop=ep.abort)
        rec.close_time()
        close_quiet(s)
        if res['how'] == 'stopped':
            rec.lenient = True
            return
        if mode == M_SINK:
            cnt, bad = TRAILER.unpack(bytes(tr)) if len(tr) == 16 else (-1, 0)
            sc.check(cnt == n and bad == 0 and res['how'] == 'eof',
                     'BIND sink %d bytes: all arrive at the peer' % n,
                     '%d bytes, exact' % n,
                     '%d%s, end %s' % (cnt, ' bad at %d' % (bad - 1) if bad
                                       else '', res['how']))
            down = TRAILER.size
            TALLY.add_bytes(max(cnt, 0))
        else:
            sc.check(v.exact() and res['how'] == 'eof',
                     'BIND %s %d bytes: every byte arrives, then EOF' % (
                         MODE_NAMES[mode], n), '%d bytes exact, EOF' % n,
                     '%s, end %s' % (v.describe(), res['how']),
                     strict_data=v.bad_at is not None)
            down = n
            TALLY.add_bytes(v.count + send_len)
        rec.want_result = {'succeeded'}
        rec.want_up = ('==', HDR.size + send_len)
        rec.want_down = ('==', down)
        sc.outcome('ok-%s' % variant)
    except Vanished:
        pass
    except Refused:
        pass
    except Gone as g:
        sc.gone(g, 'BIND exchange (%s)' % variant, rec)
    except OSError as e:
        if not bind_failed(sc, s, rec):
            sc.check(False, 'BIND peer connects (%s)' % variant,
                     'connect to the announced address works', str(e),
                     rec=rec)
    finally:
        close_quiet(s)
        close_quiet(peer)
        close_quiet(wrong)
        rec.close_time()


# -- UDP ASSOCIATE ------------------------------------------------------------

def udp_hdr(host, port):
    return addr_bytes(host) + struct.pack('!H', port)


def name_host(name):
    m = re.search(r'-h(\d+)-', name)
    return '127.0.0.%s' % m.group(1) if m else '127.0.0.1'


class Assoc:
    """One UDP association: what was sent, what the rules let through."""

    def __init__(self, sc, rec, relay, usock, fixed):
        self.sc = sc
        self.ep = sc.ep
        self.rec = rec
        self.id = sc.ep.runner.next_id()
        self.relay = relay
        self.usock = usock
        self.uport = usock.getsockname()[1]
        self.fixed = fixed
        self.msg = 0
        self.pred = []
        self.forbidden = {}
        self.r = None           # the server's reassembly state, modelled
        self.echoes = []
        self.bad_echoes = []
        self.strays = 0         # late DNS answers relayed (see got_echo)
        self.sent = 0
        self.send_errors = 0
        self.relay_drops = 0
        self.client_drops = 0
        self.kept_open = False
        self.ended = None
        self.lenient_down = False
        self.pool_excuse = False
        self.margin = 1.5 * sc.slow
        self.keepalive = None
        self.last = MONO()
        self.maxgap = 0.0

    def activity(self):
        now = MONO()
        self.maxgap = max(self.maxgap, now - self.last)
        self.last = now

    def payload(self, size):
        self.msg += 1
        size = max(size, UDP_ID.size)
        return (UDP_ID.pack(UDP_MAGIC, self.id, self.msg) +
                Stream((self.id << 20) + self.msg).take(size - UDP_ID.size))

    def family_ok(self, host):
        fam = self.ep.cfg.family
        if fam == 4 and ':' in host:
            return False
        if fam == 6 and ':' not in host:
            return False
        return True

    def predict(self, data, host, desc, must, name=False):
        ok = self.family_ok(host) or name
        sha = hashlib.sha256(data).digest()
        if not ok or len(data) > (65527 if ':' in host else 65507):
            self.forbidden.setdefault(sha, desc + (
                ' (family not allowed)' if not ok else ' (too big to send)'))
            return None
        p = {'sha': sha, 'len': len(data), 'host': host, 'desc': desc,
             'must': must and not name, 'got': False, 'echo': False,
             'name': name, 't': MONO()}
        self.pred.append(p)
        return p

    def model(self, frag, hdr, host, data, desc, name):
        """The documented reassembly rules; returns a prediction or None."""
        if frag == 0:
            return self.predict(data, host, desc, not name, name)
        now = MONO()
        f = self.ep.cfg.f
        if self.r is not None:
            age = now - self.r['start']
            # too close to the -f timer to know what the server does: wait
            # until it has surely expired, keeping the association alive
            while f - self.margin < age < f + self.margin:
                if self.keepalive:
                    self.keepalive()
                time.sleep(min(0.5, f + self.margin - age))
                now = MONO()
                age = now - self.r['start']
            if age >= f:
                self.abandon('reassembly timer expired')
        pos, last = frag & 0x7f, frag & 0x80
        if self.r is not None and (pos != self.r['pos'] + 1 or
                                   hdr != self.r['hdr']):
            self.abandon('fragment out of sequence')
        if self.r is None:
            if pos != 1:
                return None
            self.r = {'hdr': hdr, 'host': host, 'parts': [], 'len': 0,
                      'start': now, 'pos': 0, 'name': name, 'desc': desc}
        if self.r['len'] + len(data) > 65535:
            self.abandon('sequence too long')
            return None
        self.r['parts'].append(data)
        self.r['len'] += len(data)
        self.r['pos'] = pos
        if last:
            whole = b''.join(self.r['parts'])
            r = self.r
            self.r = None
            return self.predict(whole, r['host'], r['desc'] + ' (whole)',
                                True, r['name'])
        return None

    def abandon(self, why):
        self.r = None

    def intend(self, whole, desc):
        """A sequence the client meant; forbidden unless predicted."""
        sha = hashlib.sha256(whole).digest()
        if not any(p['sha'] == sha for p in self.pred):
            self.forbidden.setdefault(sha, desc)

    def send(self, frag, host, port, data, desc, name=False, src=None):
        hdr = udp_hdr(host, port)
        p = self.model(frag, hdr, name_host(host) if name else host, data,
                       desc, name)
        pkt = b'\x00\x00' + bytes([frag]) + hdr + data
        try:
            (src or self.usock).sendto(pkt, self.relay)
            self.sent += 1
            self.activity()
        except OSError:
            self.send_errors += 1
        return p

    def drain(self, secs, until=None):
        """Read echoes for secs, or until until() is true."""
        end = MONO() + secs
        while True:
            if until is not None and until():
                return True
            now = MONO()
            if now >= end:
                return until() if until else True
            try:
                r, _, _ = select.select([self.usock], [], [],
                                        min(0.1, end - now))
            except (OSError, ValueError):
                return False
            if not r:
                continue
            for _ in range(256):
                try:
                    d, src = self.usock.recvfrom(70000)
                except (BlockingIOError, InterruptedError, socket.timeout):
                    break
                except OSError:
                    break
                self.got_echo(d, src)
                self.activity()
                self.usock.setblocking(False)
            self.usock.setblocking(True)

    def got_echo(self, d, src):
        runner = self.ep.runner
        bad = None
        if src[:2] != self.relay:
            bad = 'from %s:%d, not the relay' % src[:2]
        elif len(d) < 10 or d[:3] != b'\x00\x00\x00':
            bad = 'bad header %s' % d[:10].hex(' ')
        else:
            atyp = d[3]
            if atyp == 1:
                host = socket.inet_ntop(socket.AF_INET, d[4:8])
                port = struct.unpack('!H', d[8:10])[0]
                data = d[10:]
            elif atyp == 4 and len(d) >= 22:
                host = socket.inet_ntop(socket.AF_INET6, d[4:20])
                port = struct.unpack('!H', d[20:22])[0]
                data = d[22:]
            else:
                host, port, data = None, 0, b''
                bad = 'header ATYP %d' % atyp
            if bad is None:
                if runner.dns is not None and host == runner.dns.addr and \
                        port == 53:
                    # a late DNS answer to a helper that was replaced,
                    # on a port this association's socket has since
                    # taken: relayed, as socks5.1 says of any remote
                    self.strays += 1
                elif port != runner.udp.port or host not in runner.hosts:
                    bad = 'header names %s:%d, not a target' % (host, port)
                elif data[:4] == UDP_ACK and len(data) == 16 + 32 + 4:
                    self.echoes.append((data[16:48], host, MONO()))
                elif data[:4] == UDP_MAGIC:
                    self.echoes.append((hashlib.sha256(data).digest(), host,
                                        MONO()))
                else:
                    bad = 'DATA is none of ours (%d bytes)' % len(data)
        if bad:
            self.bad_echoes.append(bad)

    def echoed(self, p):
        return any(e[0] == p['sha'] for e in self.echoes)

    def evaluate(self, tally_sc):
        """After the association and its session line: judge it all."""
        sc = tally_sc
        ep = self.ep
        runner = ep.runner
        arr = runner.udp.take(self.id)
        lossy = self.relay_drops > 0 or ep.udp_target_drops > 0
        excuse = []
        if self.relay_drops:
            excuse.append('relay socket dropped %d' % self.relay_drops)
        if ep.udp_target_drops:
            excuse.append('targets dropped %d' % ep.udp_target_drops)
        unpred = []
        for (msg, n, sha, host, t) in arr:
            m = [p for p in self.pred if p['sha'] == sha and not p['got']]
            if not m:
                m2 = [p for p in self.pred if p['sha'] == sha]
                unpred.append((msg, n, sha, host, bool(m2)))
                continue
            p = m[0]
            p['got'] = True
            sc.check(host == p['host'] or (p['host'] == '127.0.0.1' and
                                           host == '127.0.0.1'),
                     'datagram (%s) goes to the address it names' % p['desc'],
                     p['host'], host,
                     'a lookup answer for another name?' if p['name'] else '',
                     key=('udp-addr',))
        for (msg, n, sha, host, dup) in unpred:
            if dup:
                what = 'datagram delivered twice'
            elif sha in self.forbidden:
                what = 'datagram that must not arrive arrived: %s' % \
                    self.forbidden[sha]
            else:
                what = 'datagram nobody sent (or a wrong mix of fragments)'
            if lossy:
                TALLY.note('udp: ignored an unexpected datagram on a lossy '
                           'association (%s)' % ', '.join(excuse))
                continue
            sc.check(False, what, 'only datagrams and whole sequences the '
                     'rules let through', 'message %d, %d bytes at %s' % (
                         msg, n, host), key=('udp-unexpected', what[:30]))
        lost = []
        must = 0
        end = self.ended if self.ended is not None else float('inf')
        if self.rec.line is not None:
            end = min(end, self.rec.line.t)    # the server ended it then
        for p in self.pred:
            if not p['must']:
                continue
            if lossy or (ep.server.pool_full and 'whole' in p['desc']):
                continue
            if p['t'] >= end - 0.5 * sc.slow:
                continue
            must += 1
            if not p['got']:
                lost.append(p)
        line = self.rec.line
        hint = ''
        if ep.cfg.nofile:
            hint = ' (ulimit -n %d: no descriptor for the outgoing UDP ' \
                'socket?)' % ep.cfg.nofile
        sc.check(not lost, 'every datagram and whole sequence the rules let '
                 'through is relayed' + hint, '%d relayed' % must,
                 '%d never arrived, e.g. %s, %d bytes to %s' % (
                     len(lost), lost[0]['desc'], lost[0]['len'],
                     lost[0]['host']) if lost else '',
                 'server: ' + line.line if line else '',
                 key=('udp-lost',))
        arrived = set(x[2] for x in arr)
        for (sha, host, t) in self.echoes:
            ok = any(p['sha'] == sha and p['got'] for p in self.pred)
            if not ok and not lossy and sha not in arrived:
                sc.check(False, 'reply datagram matches one the target got',
                         'an echo of a relayed datagram', 'unknown echo',
                         key=('udp-echo',))
        for b in self.bad_echoes:
            sc.check(False, 'reply datagram to the client is well formed',
                     '00 00 00, a target address, our DATA', b,
                     key=('udp-echo-bad',))
        line = self.rec.line
        if line is None or line.dgram_up is None:
            return
        got = len(arr)
        if not ep.udp_target_drops:
            sc.check(line.dgram_up == got,
                     'session line datagrams= up count equals what arrived',
                     '%d' % got, '%d' % line.dgram_up, line.line,
                     key=('udp-count-up',))
            sc.check(line.up == sum(a[1] for a in arr),
                     'session line up= equals the DATA bytes that arrived',
                     '%d' % sum(a[1] for a in arr), '%d' % line.up,
                     line.line, key=('udp-bytes-up',))
        if self.kept_open and not self.client_drops and not self.lenient_down:
            got = len(self.echoes) + len(self.bad_echoes) + self.strays
            sc.check(line.dgram_down == got, 'session line datagrams= down '
                'count equals what the client got', '%d' % got,
                '%d' % line.dgram_down, line.line, key=('udp-count-down',))


def scn_udp(sc, end=None):
    """UDP ASSOCIATE: standalone datagrams and fragment sequences, in
    order, interleaved, reordered, duplicated, too long, timed out; names;
    datagrams from foreign addresses."""
    ep = sc.ep
    rng = sc.rng
    cfg = ep.cfg
    s, rec = sc.open()
    sc.sock, sc.rec = s, rec
    usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    foreign = None
    a = None
    try:
        usock.bind((sc.src, 0))
        set_rcvbuf(usock, 4 << 20)
        fixed = rng.random() < 0.3
        req = request(3, sc.src if fixed else '0.0.0.0',
                      usock.getsockname()[1] if fixed else 0)
        r = sc.handshake(s, rec, req, rng.choice(['normal'] * 3 +
                                                 ['pipelined']),
                         sc.dl(cfg.hs + 10))
        if not sc.expect_rep(r, 0, 'UDP ASSOCIATE', fd_budget=True):
            rec.want_result = {REP_NAMES.get(r['rep'], '?')}
            recv_until_end(s, sc.dl(LINGER_S + 3))
            return
        sc.check(r['host'] == '127.0.0.1', 'UDP relay address',
                 '127.0.0.1 (the control connection\'s local address)',
                 str(r['host']))
        a = Assoc(sc, rec, ('127.0.0.1', r['port']), usock, fixed)
        rec.assoc = a
        with ep.lock:
            ep.assocs.append(a)
        sc.point('reply')
        port = ep.runner.udp.port
        until = sc.until
        ipdests = ['127.0.0.1', '127.0.0.2', '127.0.0.3']
        if ep.runner.v6:
            ipdests.append('::1')
        if cfg.family == 6:
            ipdests = ['::1']
        steps = rng.randint(3, 14)
        acts = (['single'] * 4 + ['seq'] * 3 +
                ['reorder', 'dup', 'duplast', 'gap', 'interleave',
                 'interleave', 'oversize', 'big', 'burst', 'foreign'])
        if cfg.dns:
            acts += ['name'] * 3 + ['latename']
        if cfg.family in (4, 6):
            acts += ['wrongfamily'] * 2
        acts.append('timer')
        keepalive = min(1.0, cfg.t / 3.0)
        a.keepalive = lambda: (single(16, rng.choice(ipdests),
                                      desc='keepalive'), a.drain(0.05))

        def single(size, dest, must=True, await_echo=False, desc='single'):
            data = a.payload(size)
            p = a.send(0, dest, port, data, desc)
            if p and await_echo:
                if not a.drain(min(2 * sc.slow, cfg.t / 2.0),
                               lambda: a.echoed(p)):
                    a.late = True
            return p

        def frags(data, k, firstmin=UDP_ID.size):
            if k <= 1:
                return [data]
            cuts = sorted(rng.sample(range(firstmin, max(firstmin + k,
                                                         len(data))), k - 1))
            cuts = [c for c in cuts if c < len(data)]
            out, prev = [], 0
            for c in cuts + [len(data)]:
                out.append(data[prev:c])
                prev = c
            return out

        def seq(dest, order, parts, desc, name=False):
            """Send fragments: order lists indexes into parts (0-based)."""
            k = len(parts)
            for i in order:
                frag = (i + 1) | (0x80 if i == k - 1 else 0)
                a.send(frag, dest, port, parts[i], desc, name)
            a.intend(b''.join(parts), desc)

        for step in range(steps):
            if ep.abort.is_set() or MONO() > until:
                break
            act = rng.choice(acts)
            dest = rng.choice(ipdests)
            with TALLY.lock:
                TALLY.outcomes[('udp (datagram cases)', act)] += 1
            if act == 'single':
                size = rng.choice([16, 100, 1400, 8000, 30000, 61000])
                single(size, dest, await_echo=rng.random() < 0.7)
            elif act == 'burst':
                for _ in range(rng.randint(5, 40)):
                    single(rng.choice([16, 200, 1400]), dest, desc='burst')
            elif act in ('seq', 'big'):
                k = rng.randint(1, 6)
                size = rng.choice([16, 500, 3000, 20000]) if act == 'seq' \
                    else rng.randint(60000, 65497 - 3 * 20)
                if act == 'big':
                    k = rng.randint(3, 6)
                data = a.payload(size)
                parts = frags(data, k)
                seq(dest, range(len(parts)), parts, act + ' %d frags' % len(
                    parts))
                if rng.random() < 0.5:
                    a.drain(min(2 * sc.slow, cfg.t / 2.0), lambda: any(
                        p['echo'] or a.echoed(p) for p in a.pred[-1:]))
            elif act in ('reorder', 'dup', 'duplast', 'gap'):
                k = rng.randint(3, 6)
                data = a.payload(rng.choice([100, 3000, 12000]))
                parts = frags(data, k)
                k = len(parts)
                if k < 3:
                    continue
                order = list(range(k))
                if act == 'reorder':
                    i = rng.randint(1, k - 2)
                    order[i], order[i + 1] = order[i + 1], order[i]
                elif act == 'dup':
                    i = rng.randint(1, k - 2)
                    order.insert(i + 1, order[i])
                elif act == 'duplast':
                    order.append(k - 1)
                else:
                    del order[rng.randint(1, k - 1)]
                if rng.random() < 0.3:
                    single(rng.choice([16, 300]), dest, desc='standalone '
                           'inside a sequence')
                seq(dest, order, parts, '%s %s' % (act, [i + 1 for i in
                                                         order]))
            elif act == 'interleave':
                d2 = dest if rng.random() < 0.5 else rng.choice(ipdests)
                pa = frags(a.payload(rng.choice([100, 3000])),
                           rng.randint(2, 4))
                pb = frags(a.payload(rng.choice([100, 3000])),
                           rng.randint(2, 4))
                ia = [('a', i) for i in range(len(pa))]
                ib = [('b', i) for i in range(len(pb))]
                merged = []
                while ia or ib:
                    src = ia if (ia and (not ib or rng.random() < 0.5)) else ib
                    merged.append(src.pop(0))
                for which, i in merged:
                    parts, dd = (pa, dest) if which == 'a' else (pb, d2)
                    frag = (i + 1) | (0x80 if i == len(parts) - 1 else 0)
                    a.send(frag, dd, port, parts[i], 'interleaved %s' % (
                        ''.join('%s%d' % (w, i + 1) for w, i in merged)))
                    if rng.random() < 0.2:
                        single(16, rng.choice(ipdests), desc='standalone '
                               'among sequences')
                a.intend(b''.join(pa), 'sequence a of an interleaving')
                a.intend(b''.join(pb), 'sequence b of an interleaving')
            elif act == 'oversize':
                k = rng.randint(3, 5)
                parts = [a.payload(rng.randint(65536 // k + 200, 30000))] + [
                    Stream(rng.getrandbits(32)).take(rng.randint(
                        65536 // k + 200, 30000)) for _ in range(k - 1)]
                seq(dest, range(k), parts, 'oversized sequence (%d bytes)' %
                    sum(len(p) for p in parts))
            elif act == 'foreign':
                fs = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                fs.bind(('127.0.0.2', 0) if not fixed or rng.random() < 0.5
                        else (sc.src, 0))
                foreign = fs
                data = a.payload(rng.choice([16, 500]))
                a.forbidden[hashlib.sha256(data).digest()] = \
                    'datagram from %s:%d, not the client' % fs.getsockname()
                try:
                    fs.sendto(b'\x00\x00\x00' + udp_hdr(dest, port) + data,
                              a.relay)
                except OSError:
                    pass
                close_quiet(fs)
                foreign = None
            elif act == 'wrongfamily':
                dest = '127.0.0.1' if cfg.family == 6 else '::1'
                if dest == '::1' and not ep.runner.v6:
                    continue
                single(100, dest, desc='to %s under -%d' % (dest, cfg.family))
            elif act == 'name':
                kind = rng.choice(['fast', 'fast', 'slow', 'fail'])
                h = rng.randint(1, 3)
                nm = ep.name(kind, ms=rng.choice([100, 400]) if kind ==
                             'slow' else None, host=h if kind != 'fail'
                             else None)
                data = a.payload(rng.choice([16, 1000]))
                if rng.random() < 0.3:
                    parts = frags(data, rng.randint(2, 3))
                    for i, pp in enumerate(parts):
                        a.send((i + 1) | (0x80 if i == len(parts) - 1 else 0),
                               nm, port, pp, 'sequence to %s' % nm, True)
                else:
                    a.send(0, nm, port, data, 'datagram to %s' % nm, True)
                if kind == 'fail':
                    a.forbidden[hashlib.sha256(data).digest()] = \
                        'datagram to a name that does not resolve'
                    a.pred = [p for p in a.pred if p['sha'] !=
                              hashlib.sha256(data).digest()]
                a.drain(rng.choice([0.05, 0.5, 1.0]))
            elif act == 'latename':
                if MONO() + cfg.hs + 3 > until:
                    continue
                n1 = ep.name('slow', ms=cfg.hs * 1000 + 800, host=2)
                a.send(0, n1, port, a.payload(100), 'datagram to %s' % n1,
                       True)
                t1 = MONO()
                while MONO() < t1 + cfg.hs + 0.3 * sc.slow:
                    single(16, rng.choice(ipdests), desc='keepalive')
                    a.drain(keepalive)
                n2 = ep.name('slow', ms=1500, host=3)
                a.send(0, n2, port, a.payload(100), 'datagram to %s (a late '
                       'answer for %s is due meanwhile)' % (n2, n1), True)
                a.drain(min(2.0 * sc.slow, cfg.t / 2.0))
            elif act == 'timer':
                if MONO() + cfg.f + 2 * a.margin + 1 > until:
                    continue
                k = rng.randint(2, 4)
                data = a.payload(rng.choice([100, 3000]))
                parts = frags(data, k)
                first = rng.randint(1, len(parts) - 1)
                t0 = MONO()
                for i in range(first):
                    a.send(i + 1, dest, port, parts[i], 'timed-out sequence')
                while MONO() < t0 + cfg.f + a.margin + 0.2:
                    single(16, rng.choice(ipdests), desc='keepalive')
                    a.drain(keepalive)
                for i in range(first, len(parts)):
                    a.send((i + 1) | (0x80 if i == len(parts) - 1 else 0),
                           dest, port, parts[i], 'timed-out sequence')
                a.intend(data, 'sequence whose reassembly timer (-f %d) '
                         'expired' % cfg.f)
            a.drain(rng.choice([0, 0, 0.01, 0.1]))
        # the end
        end = end or rng.choice(['fin'] * 5 + ['rst', 'fin-early'] +
                                (['idle'] if cfg.t <= 5 and
                                 MONO() + cfg.t + 3 < until + 5 else []))
        if end in ('fin', 'idle'):
            a.drain(0.3 * sc.slow)
        if end != 'idle':
            a.maxgap = max(a.maxgap, MONO() - a.last)   # the last pause too
        a.relay_drops = sum(udp_drops([a.relay[1]]).values())
        t_end = MONO()
        if end == 'idle':
            how, rest = recv_until_end(s, sc.dl(cfg.t + 5))
            el = MONO() - a.last
            sc.check(how in ('eof', 'reset') and el >= cfg.t - 0.3,
                     'idle UDP association ends after -t %d s' % cfg.t,
                     'closed %d s after the last datagram' % cfg.t,
                     '%s %.2f s after it' % (how, el), rec=rec)
            rec.want_result = {'idle-timeout'}
            rec.close_time()
            a.kept_open = True
        elif end == 'rst':
            a.lenient_down = True
            close_rst(s)
            rec.close_time()
        else:
            if end == 'fin-early':
                a.lenient_down = True
            close_quiet(s)
            rec.close_time()
            rec.want_result = {'succeeded'} if end == 'fin' else None
            a.kept_open = end == 'fin'
        a.ended = t_end
        ep.server.wait(lambda: rec.key in ep.server.by_key and any(
            l.t >= rec.opened for l in ep.server.by_key[rec.key]),
            (cfg.hs + LINGER_S + 3) * sc.slow)
        a.drain(0.2)
        a.client_drops = sum(udp_drops([a.uport]).values())
        rec.want_cmd = 'udp'
        sc.outcome('ok-%s' % end)
    except Vanished:
        if a:
            a.lenient_down = True
    except Refused:
        pass
    except Gone as g:
        sc.gone(g, 'UDP association control connection stays up until '
                'the client closes it', rec)
        if a:
            a.lenient_down = True
    finally:
        close_quiet(s)
        close_quiet(usock)
        close_quiet(foreign)
        rec.close_time()


def small_echo(sc, s, token, n, deadline):
    """After a successful CONNECT: header + n bytes echoed; judged."""
    send_all(s, HDR.pack(b'CHAO', M_ECHO, 0, 0, n, token), deadline)
    v = Verifier(token, n)
    res = duplex(s, n, token, v, deadline, stop=sc.ep.abort)
    ok = v.exact() and res['how'] == 'eof'
    sc.check(ok or res['how'] == 'stopped', 'echo of %d bytes' % n,
             '%d bytes exact, EOF' % n, '%s, end %s' % (v.describe(),
                                                       res['how']),
             strict_data=v.bad_at is not None)
    TALLY.add_bytes(v.count + res['sent'])
    return ok


def dns_want(sc, name, t_req, t_rep):
    """The reply a request for name (one of ours) must get, judged from
    what our DNS responder did and when: REP 00 when every query was
    answered well before the lookup deadline and no helper was stopped or
    killed meanwhile, REP 04 when no answer left before the deadline (or
    the name fails), else either. Also returns a description."""
    ep = sc.ep
    hs = ep.cfg.hs
    tag = name.rsplit('-', 1)[1].split('.')[0]
    kind = name.split('-', 1)[0]
    info = ep.runner.dns.info(tag)
    dist = ep.disturbed(t_req, t_rep)
    margin = 0.5 * sc.slow
    if kind in ('fail', 'drop'):
        want = 4
    else:
        first_ans = info and info['first_answer']
        last_ans = info and info['answered']
        all_ans = info is not None and info['answers'] >= info['queries']
        if all_ans and last_ans is not None and \
                last_ans < t_req + hs - margin and not dist:
            want = 0
        elif first_ans is None or first_ans > t_req + hs + margin:
            want = 4
        else:
            want = {0, 4}
    desc = 'DNS %s' % ('answered %.2f s after the request' % (
        info['answered'] - t_req) if info and info['answered'] else
        'never asked' if not info else 'not answered')
    if dist:
        desc += '; a resolver helper was stopped or killed meanwhile'
    sc.dns_info = info and dict(info, first=info['first'] - t_req,
                                answered=(info['answered'] or t_req) - t_req,
                                last=info['last'] - t_req,
                                first_answer=(info['first_answer'] or
                                              t_req) - t_req)
    return want, desc


def scn_dns(sc):
    """CONNECT to a name answered fast, slowly, too late, never or with
    NXDOMAIN; the reply must follow from what the DNS did and when."""
    ep = sc.ep
    rng = sc.rng
    cfg = ep.cfg
    hs = cfg.hs
    kinds = ['fast', 'fast', 'slow', 'slow', 'late', 'fail', 'failslow']
    if hs <= 8:
        kinds.append('drop')
    kind = rng.choice(kinds)
    if kind in ('late', 'drop', 'slow') and \
            MONO() + (hs + 1) * sc.slow > sc.until:
        kind = rng.choice(['fast', 'fail'])     # no time left to wait
    h = rng.randint(1, 3)
    if kind == 'fast':
        name = ep.name('fast', host=h)
    elif kind == 'slow':
        name = ep.name('slow', ms=rng.choice([100, 400, 900, hs * 500]),
                       host=h)
    elif kind == 'late':
        name = ep.name('slow', ms=hs * 1000 + rng.randint(300, 2500), host=h)
    elif kind == 'fail':
        name = ep.name('fail')
    elif kind == 'failslow':
        name = ep.name('fail', ms=rng.choice([300, 1200]))
    else:
        name = ep.name('drop')
    s, rec = sc.open()
    sc.sock, sc.rec = s, rec
    n = rng.choice([0, 10, 5000, 100000])
    with sc.guarded(s, rec, 'reply to CONNECT %s' % name):
        r = sc.handshake(s, rec, request(1, name, ep.runner.tcp.port),
                         rng.choice(['normal', 'normal', 'pipelined']),
                         sc.dl(2 * hs + 10))
        t_rep = MONO()
        t_req = sc.t_req
        want, desc = dns_want(sc, name, t_req, t_rep)
        sc.expect_rep(r, want, 'CONNECT %s (%s; %s)' % (name, kind, desc))
        el = t_rep - t_req
        sc.check(el <= hs + 2 * sc.slow, 'reply to a DOMAINNAME request '
                 'within the lookup time (%d s)' % hs,
                 '<= %.1f s' % (hs + 2 * sc.slow), '%.2f s' % el)
        if kind == 'late' and r['rep'] == 4:
            sc.check(el >= hs - 0.3, 'REP 04 for a late name comes at the '
                     'lookup timeout, not before', '>= %.1f s' % (hs - 0.3),
                     '%.2f s' % el)
        rec.want_result = {REP_NAMES.get(r['rep'], '?')}
        if r['rep'] == 0:
            token = sc.token()
            small_echo(sc, s, token, n, sc.dl(20))
            trec = ep.runner.tcp.record(token)
            sc.check(trec is not None and trec['local'] == '127.0.0.%d' % h,
                     'CONNECT %s reaches the address of that name' % name,
                     '127.0.0.%d' % h, trec and trec['local'],
                     key=('dns-addr',))
            rec.want_up = ('==', HDR.size + n)
            rec.want_down = ('==', n)
            sc.outcome('ok-%s' % kind)
        else:
            how, rest = recv_until_end(s, sc.dl(LINGER_S + 3))
            sc.outcome('rep%02d-%s' % (r['rep'], kind))


def scn_weird_names(sc):
    """Names with blanks, '=', ':' and backslashes: NXDOMAIN, REP 04, and
    a session line that still parses one way only."""
    ep = sc.ep
    name = sc.rng.choice(['we ird.test', 'k=v.test', 'c:d.test',
                          'x result=succeeded up=7.test', 'b\\s.test',
                          'tab\there.test', 'dst=evil:1.test'])
    s, rec = sc.open()
    with sc.guarded(s, rec, 'reply to CONNECT %r' % name):
        r = sc.handshake(s, rec, request(1, name, ep.runner.tcp.port),
                         'normal', sc.dl(2 * ep.cfg.hs + 10))
        sc.expect_rep(r, 4, 'CONNECT to %r (NXDOMAIN)' % name)
        rec.want_result = {REP_NAMES.get(r['rep'], '?')}
        recv_until_end(s, sc.dl(LINGER_S + 3))
        sc.outcome('rep%02d' % r['rep'])


# Answers' arrival times from the kernel (Linux SO_TIMESTAMPNS): this
# process's threads share one interpreter and may read a socket a second
# or more after its data came, which would put two answers sent a second
# apart at the same moment.  Each socket read this way gets one segment
# of data after the option is set (a login answer), so the stamp is its
# arrival; without the option, the time of reading.
SO_TIMESTAMPNS = getattr(socket, 'SO_TIMESTAMPNS', 35)


def arrival_stamps(s):
    """Ask for kernel receive times on s, where the system has them."""
    if sys.platform.startswith('linux'):
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass


def recv_stamped(s, n):
    """(data, arrival time in seconds) of one read of at most n bytes."""
    d, anc, _, _ = s.recvmsg(n, 64)
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and \
                len(raw) in (8, 16):
            sec, nsec = struct.unpack('ii' if len(raw) == 8 else 'qq', raw)
            return d, sec + nsec / 1e9
    return d, time.time()


def scn_auth_burst(sc):
    """Wrong passwords in a burst from one address: answered 1 s apart or
    closed unanswered; a good login from that address meanwhile is not
    held up."""
    ep = sc.ep
    rng = sc.rng
    hs = ep.cfg.hs
    src = '127.0.%d.%d' % (rng.randint(1, 254), rng.randint(1, 254))
    n = rng.randint(3, 7)
    good_i = rng.randint(1, n - 1) if rng.random() < 0.6 else None
    conns = []
    deadline = sc.dl(hs + 15)
    try:
        for i in range(n):
            try:
                s, rec = sc.open(src)
            except Gone:
                break
            conns.append({'s': s, 'rec': rec, 'good': i == good_i,
                          'data': b'', 'end': None, 't': None})
        live = []
        for c in conns:
            try:
                send_all(c['s'], greeting([2]), deadline)
                sc.method_reply(c['s'], c['rec'], [2], deadline)
                live.append(c)
            except (Refused, Gone):
                c['rec'].close_time()
        for c in live:
            if c['good']:
                msg = auth_msg('alice', 's3cret')
            else:
                msg = auth_msg(rng.choice(['alice', 'bob', 'mallory']),
                               'wrong%d' % rng.randint(0, 99))
                c['rec'].want_result = {'auth-failed', 'auth-paced'}
                c['rec'].close_bound = (hs + LINGER_S + 3) * sc.slow
            c['t0'] = MONO()
            try:
                send_all(c['s'], msg, deadline)
            except Gone:
                c['end'] = 'reset'
        pending = [c for c in live if c['end'] is None]
        for c in pending:
            arrival_stamps(c['s'])
        while pending and MONO() < deadline:
            r, _, _ = select.select([c['s'] for c in pending], [], [], 0.2)
            for c in pending:
                if c['s'] not in r:
                    continue
                try:
                    d, arrived = recv_stamped(c['s'], 64)
                except OSError:
                    d = None
                if d:
                    if not c['data']:
                        c['t'] = MONO()
                        c['arrived'] = arrived
                    c['data'] += d
                    if c['good'] and c['data'] == b'\x01\x00':
                        c['end'] = 'ok'
                else:
                    c['end'] = 'eof' if d == b'' else 'reset'
                    c['rec'].close_time()
            pending = [c for c in pending if c['end'] is None]
        answered = []
        for c in live:
            if c['good']:
                # answered at its slot (current rules: every login from the
                # address waits) or at once (older rules), or closed
                # unanswered when its slot is past the handshake time;
                # never refused
                el = (c['t'] or MONO()) - c['t0']
                sc.check(c['data'] in (b'\x01\x00', b'') and
                         el <= hs + 2 * sc.slow,
                         'good login from an address with failed logins: '
                         'accepted at its slot or closed unanswered',
                         '01 00 within %d s, or close' % hs,
                         '%r after %.2f s' % (c['data'], el), rec=c['rec'])
                c['rec'].want_result = None
            else:
                sc.check(c['end'] in ('eof', 'reset') and c['data'] in (
                    b'', b'\x01\x01'), 'failed login: 01 01 and close, '
                    'or close unanswered', '01 01 then EOF, or EOF',
                    '%r then %s' % (c['data'], c['end']), rec=c['rec'])
                if c['data']:
                    answered.append(c['arrived'])
        answered.sort()
        gaps = [b - a for a, b in zip(answered, answered[1:])]
        sc.check(all(g >= 0.5 for g in gaps),
                 'failed logins from one address are answered about 1 s '
                 'apart', 'gaps >= 1 s (0.5 s allowed)',
                 ' '.join('%.2f' % g for g in gaps))
        sc.outcome('burst-%d' % n)
    finally:
        for c in conns:
            close_quiet(c['s'])
            c['rec'].close_time()


def scn_idle_hold(sc):
    """An established session with no data: closed after -t seconds."""
    ep = sc.ep
    t = ep.cfg.t
    host, _ = tcp_dest(sc, names=False)
    s, rec = sc.open()
    with sc.guarded(s, rec, 'idle session closed after -t'):
        r = sc.handshake(s, rec, request(1, host, ep.runner.tcp.port),
                         'normal', sc.dl(ep.cfg.hs + 10))
        if not sc.expect_rep(r, 0, 'CONNECT %s (live target)' % host):
            rec.want_result = {REP_NAMES.get(r['rep'], '?')}
            return
        token = sc.token()
        send_all(s, HDR.pack(b'CHAO', M_HOLD, 0, 0, 0, token) + b'x' * 10,
                 sc.dl(5))
        t0 = MONO()
        how, rest = recv_until_end(s, sc.dl(t + 5))
        el = MONO() - t0
        rec.close_time()
        sc.check(how in ('eof', 'reset') and rest == b'' and
                 t - 0.3 <= el <= t + 2 * sc.slow,
                 'an idle session is closed after -t %d s' % t,
                 'EOF after %d s' % t, '%s after %.2f s' % (how, el))
        rec.want_result = {'idle-timeout'}
        rec.want_up = ('==', HDR.size + 10)
        rec.want_down = ('==', 0)
        sc.outcome('idle-timeout')


def scn_stall(sc):
    """A handshake that stops half way (or trickles on forever): closed
    when the handshake time (30 s, or -t) is up."""
    ep = sc.ep
    rng = sc.rng
    hs = ep.cfg.hs
    stages = ['greeting', 'method', 'request', 'slowloris']
    if ep.cfg.auth:
        stages.append('auth')
        if hs >= 6:
            stages += ['paced', 'paced']
    stage = rng.choice(stages)
    want = 2 if ep.cfg.auth else 0
    bad = []
    t_answer = None
    if stage == 'paced':
        # failed logins from our address first: ours is answered at its
        # slot, about 4 s later
        for i in range(4):
            try:
                b, brec = sc.open()
                bad.append(b)
                send_all(b, greeting([2]) + auth_msg('mallory', 'x%d' % i),
                         sc.dl(3))
                brec.want_result = None
            except Gone:
                pass
        time.sleep(0.1)
    s, rec = sc.open()
    dl = sc.dl(hs + 10)
    try:
        if stage == 'greeting':
            send_all(s, rng.choice([b'\x05', b'\x05\x02\x00']), dl)
        elif stage == 'slowloris':
            send_all(s, b'\x05\xff', dl)
        else:
            send_all(s, greeting([want]), dl)
            sc.method_reply(s, rec, [want], dl)
            if stage == 'auth':
                send_all(s, b'\x01\x05al', dl)
            elif stage == 'paced':
                send_all(s, auth_msg('alice', 's3cret'), dl)
                r = recv_exact(s, 2, dl)
                t_answer = MONO()
                sc.check(r == b'\x01\x00', 'paced good login answered at '
                         'its slot', '01 00', r.hex(' '), rec=rec)
                send_all(s, b'\x05\x01\x00', dl)
            else:
                if ep.cfg.auth:
                    sc.login(s, rec, 'alice', 's3cret', True, dl)
                send_all(s, rng.choice([b'\x05', b'\x05\x01\x00\x01\x7f']),
                         dl)
        how = None
        rest = b''
        while MONO() < dl:
            if stage == 'slowloris':
                try:
                    s.send(bytes([rng.randint(0, 255)]))
                except OSError:
                    how = 'reset'
                    break
            h, d = recv_until_end(s, min(dl, MONO() + 0.5))
            rest += d
            if h != 'timeout':
                how = h
                break
        el = MONO() - rec.opened
        rec.close_time()
        if rest in (b'', b'\x05\xff') and stage in ('greeting',
                                                    'slowloris') and \
                el < min(1.0 * sc.slow, hs - 0.5):
            # turned away at once (table or descriptors full): 05 FF, or a
            # reset that took the 05 FF with it; the records judge it
            rec.expect = 'no' if rest else 'maybe'
            if rest:
                ep.refused += 1
            sc.outcome('refused')
            return
        # README: the handshake time runs from accept; a login that waited
        # for its pacing turn has that time again from its answer
        hi = hs
        if t_answer is not None:
            hi = max(hs, t_answer - rec.opened + hs)
        ok = sc.check(how in ('eof', 'reset') and rest == b'' and
                      hs - 0.3 <= el <= hi + 2 * sc.slow,
                      'a stalled handshake (%s) is closed after the '
                      'handshake time' % stage,
                      'close after %.1f s' % hi, '%s %r after %.2f s' % (
                          how, rest, el), rec=rec, key=('stall', stage))
        rec.expect = 'yes'
        rec.want_result = {'timeout'}
        if ok:
            rec.want_time = (hs - 0.3, hi + 2 * sc.slow)
        sc.outcome('timeout-%s' % stage)
    except (Refused, Vanished):
        pass
    except Gone as g:
        sc.gone(g, 'stalled handshake (%s) closed after %d s' % (stage, hs),
                rec)
    finally:
        close_quiet(s)
        rec.close_time()
        for b in bad:
            close_quiet(b)


def scn_family(sc):
    """-4/-6: destinations of the other family are refused, IPv4-mapped
    IPv6 addresses included."""
    ep = sc.ep
    fam = ep.cfg.family
    if fam == 4:
        dest = '::1'
    else:
        dest = sc.rng.choice(['127.0.0.1', '::ffff:127.0.0.1'])
    token = sc.token()
    s, rec = sc.open()
    with sc.guarded(s, rec, 'reply to CONNECT %s under -%d' % (dest, fam)):
        r = sc.handshake(s, rec, request(1, dest, ep.runner.tcp.port),
                         'normal', sc.dl(ep.cfg.hs + 10))
        if r['rep'] == 0:
            try:
                send_all(s, HDR.pack(b'CHAO', M_ECHO, 0, 0, 0, token),
                         sc.dl(3))
            except Gone:
                pass
        if r['rep'] == 0:
            time.sleep(0.2)
            tr = ep.runner.tcp.record(token)
            sc.check(False, '-%d keeps traffic off the other family: '
                     'CONNECT %s' % (fam, dest), 'REP 08 (or another '
                     'failure), no connection to the target',
                     'REP 00, the target got a connection on %s' % (
                         tr and tr['local']), key=('family', dest))
        elif dest != '::ffff:127.0.0.1':
            sc.expect_rep(r, 8, 'CONNECT %s under -%d' % (dest, fam))
        rec.want_result = {REP_NAMES.get(r['rep'], '?')}
        if r['rep'] != 0:
            recv_until_end(s, sc.dl(LINGER_S + 3))
        sc.outcome('rep%02d' % r['rep'])


def scn_flood(sc):
    """Many pipelined DOMAINNAME requests at once (more than the request
    pipe holds), maybe with every resolver helper stopped for longer than
    the lookup time, and a UDP association asking for names meanwhile."""
    ep = sc.ep
    rng = sc.rng
    cfg = ep.cfg
    hs = cfg.hs
    stall = hs <= 8 and rng.random() < 0.6
    k = 260 if stall else rng.randint(30, 150)
    k = min(k, cfg.table() - 30)
    port = ep.runner.tcp.port
    conns = []
    deadline = sc.dl(2 * hs + 15)
    stopper = None
    if stall:
        stopper = threading.Thread(target=ep.stall_all,
                                   args=(hs + 2.5 * sc.slow,), daemon=True)
        stopper.start()
        time.sleep(0.1)
    udp = None
    try:
        for i in range(k):
            try:
                s, rec = sc.open()
            except Gone:
                break
            nm = ep.name('fast' if stall else 'slow', host=1,
                         ms=None if stall else rng.choice([20, 100, 300]))
            msg = greeting([2 if cfg.auth else 0])
            if cfg.auth:
                msg += auth_msg('alice', 's3cret')
            msg += request(1, nm, port)
            c = {'s': s, 'rec': rec, 'data': b'', 'end': None}
            conns.append(c)
            try:
                send_all(s, msg, deadline)
            except Gone as g:
                c['end'] = g.how
            c['t0'] = MONO()
        if stall:
            # the request pipe is full now: this association's lookups
            # wait in the server's queue
            udp = threading.Thread(target=flood_udp, args=(sc,), daemon=True)
            udp.start()
        need = 2 + (2 if cfg.auth else 0) + 10
        pending = [c for c in conns if c['end'] is None]
        while pending and MONO() < deadline:
            try:
                r, _, _ = select.select([c['s'] for c in pending], [], [],
                                        0.2)
            except (OSError, ValueError):
                break
            for c in pending:
                if c['s'] in r:
                    try:
                        d = c['s'].recv(need - len(c['data']))
                    except OSError:
                        d = None
                    if not d:
                        c['end'] = 'eof' if d == b'' else 'reset'
                        c['rec'].close_time()
                    else:
                        c['data'] += d
                        if len(c['data']) >= need:
                            c['end'] = 'ok'
                            c['t1'] = MONO()
            pending = [c for c in pending if c['end'] is None]
        counts = collections.Counter()
        for c in conns:
            rec = c['rec']
            d = c['data']
            if d[:2] == b'\x05\xff':
                rec.expect = 'no'
                ep.refused += 1
                counts['refused'] += 1
                continue
            if len(d) >= 2:
                rec.expect = 'yes'
            if c['end'] != 'ok':
                if not ep.crashed:
                    sc.check(c['end'] in ('eof', 'reset') and len(d) < 2,
                             'flooded name request gets a reply',
                             'method reply, login, REP 00/04',
                             '%r then %s' % (d, c['end']),
                             key=('flood-noreply',))
                counts[c['end'] or 'none'] += 1
                continue
            rep = d[need - 9]
            el = c['t1'] - c['t0']
            sc.check(rep in (0, 4) and d[need - 10] == 5,
                     'flooded name request: REP 00 or 04',
                     'REP 00 or 04', d.hex(' '), key=('flood-rep',))
            sc.check(el <= hs + 2 * sc.slow, 'flooded name request answered '
                     'within the lookup time', '<= %.1f s' % (
                         hs + 2 * sc.slow), '%.2f s' % el,
                     key=('flood-late',))
            rec.want_result = {REP_NAMES.get(rep, '?')}
            if rep == 0 and MONO() - c['t1'] >= cfg.t - 0.5:
                # held open and idle until the whole flood was answered,
                # past -t: the server rightly ends it as idle
                rec.want_result.add('idle-timeout')
            counts['rep%02d' % rep] += 1
        sc.outcome('flood-%s' % ('stall' if stall else 'plain'))
        say('  %s: %d name requests%s: %s' % (
            sc.name, len(conns), ', every helper stopped %.1f s' % (
                hs + 2.5 * sc.slow) if stall else '',
            ' '.join('%s=%d' % kv for kv in sorted(counts.items()))))
    finally:
        for c in conns:
            close_quiet(c['s'])
            c['rec'].close_time()
        if stopper:
            stopper.join(hs + 10)
        if udp:
            udp.join(2 * hs + 15)


def flood_udp(sc0):
    """A UDP association sending to names while the helpers are stopped."""
    ep = sc0.ep
    sc = Sc(ep, 'udp', sc0.n * 1000 + 1, sc0.rng.getrandbits(64))
    sc.until = sc0.until
    s, rec = sc.open()
    usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        usock.bind((sc.src, 0))
        r = sc.handshake(s, rec, request(3, '0.0.0.0', 0), 'normal',
                         sc.dl(ep.cfg.hs + 10))
        if r['rep'] != 0:
            return
        a = Assoc(sc, rec, ('127.0.0.1', r['port']), usock, False)
        rec.assoc = a
        with ep.lock:
            ep.assocs.append(a)
        port = ep.runner.udp.port
        # a name while the request pipe is full (the lookup is queued), then
        # another once that lookup has timed out, the pipe still full
        for i in range(2):
            nm = ep.name('fast', host=2)
            a.send(0, nm, port, a.payload(64), 'datagram to %s (helpers '
                   'stopped)' % nm, True)
            t0 = MONO()
            while MONO() < t0 + (ep.cfg.hs + 0.3 * sc.slow if i == 0
                                 else 1.0):
                a.send(0, '127.0.0.1', port, a.payload(16), 'keepalive')
                a.drain(min(0.5, ep.cfg.t / 3.0))
        a.drain(0.3)
        a.maxgap = max(a.maxgap, MONO() - a.last)
        a.relay_drops = sum(udp_drops([a.relay[1]]).values())
        a.ended = MONO()
        close_quiet(s)
        rec.close_time()
        rec.want_result = {'succeeded'}
        ep.server.wait(lambda: any(l.t >= rec.opened for l in
                                   ep.server.by_key.get(rec.key, [])),
                       (ep.cfg.hs + LINGER_S + 3) * sc.slow)
        a.drain(0.2)
        a.kept_open = True
        a.client_drops = sum(udp_drops([a.uport]).values())
    except (Refused, Vanished, Gone):
        pass
    finally:
        close_quiet(s)
        close_quiet(usock)
        rec.close_time()


SCENARIOS = {
    'connect': (lambda sc: scn_connect(sc), 5),
    'pipelined': (lambda sc: scn_connect(sc, style='pipelined'), 5),
    'onebyte': (lambda sc: scn_connect(sc, style='onebyte'), 6),
    'slow': (lambda sc: scn_connect(sc, slow=True), 8),
    'vanish': (scn_vanish, 5),
    'bind': (scn_bind, 6),
    'bind-timeout': (lambda sc: scn_bind(sc, timeout=True), None),
    'udp': (scn_udp, 8),
    'garbage': (scn_garbage, 3),
    'refused-port': (scn_refused_port, 3),
    'dns': (scn_dns, None),
    'weird-names': (scn_weird_names, 3),
    'auth-burst': (scn_auth_burst, None),
    'idle-hold': (scn_idle_hold, None),
    'stall-handshake': (scn_stall, None),
    'family': (scn_family, 3),
    'dns-flood': (scn_flood, None),
}


# ---------------------------------------------------------------------------
# An episode: one server, one configuration, a load phase, then checks

STATE_KEYS = ['greeting', 'auth', 'request', 'authwait', 'resolve', 'connect',
              'bind', 'relay', 'udp', 'closing', 'queued', 'resolving']
USERS_FIXED = [('alice', 's3cret'), ('bob', 'pass:with:colons'),
               ('e v=il', 'sp ace')]


class Episode:
    def __init__(self, runner, cmd, seed, idx, secs):
        self.runner = runner
        self.cmd = cmd
        self.seed = seed
        self.idx = idx
        self.secs = secs
        self.slow = cmd.slow
        self.rng = random.Random('%d/%d' % (seed, idx))
        self.cfg = Cfg(self.rng, runner, secs)
        self.act_rng = random.Random(self.rng.getrandbits(64))
        self.lock = threading.Lock()
        self.rot_lock = threading.Lock()
        self.helper_lock = threading.Lock()
        self.records = []
        self.assocs = []
        self.threads = []
        self.burst = []
        self.events = []
        self.abort = threading.Event()
        self.load_over = threading.Event()
        self.crashed = False
        self.terminating = False
        self.refused = 0
        self.tagn = 0
        self.dedupe = collections.Counter()
        self.dedupe_what = {}
        self.rot_pw = 'r0'
        self.rot_n = 0
        self.rot_hist = []
        self.rot_pending = None
        self.status_on = False
        self.udp_target_drops = 0
        self.server = None

    # -- bookkeeping ------------------------------------------------------

    def where(self):
        return 'seed=%d server=%s episode=%d [%s]' % (
            self.seed, self.cmd.label, self.idx, self.cfg.describe())

    def violation(self, where, what, expected, seen, detail='', key=None):
        if key is not None:
            with self.lock:
                self.dedupe[key] += 1
                n = self.dedupe[key]
                self.dedupe_what.setdefault(key, what)
            if n > 2:
                with TALLY.lock:
                    TALLY.failed += 1
                return
        TALLY.bad(where, what, expected, seen, detail)

    def check(self, cond, what, expected='', seen='', detail='', key=None):
        if cond:
            TALLY.ok()
            return True
        self.violation(self.where(), what, expected, seen, detail, key)
        return False

    def add_rec(self, rec):
        with self.lock:
            self.records.append(rec)
            if self.terminating:
                rec.lenient = True

    def name(self, kind, ms=None, host=None):
        tag = '%sn%d' % (self.runner.run_id, self.runner.next_id())
        parts = [kind]
        if ms is not None:
            parts.append(str(int(ms)))
        if host is not None:
            parts.append('h%d' % host)
        parts.append(tag)
        return '-'.join(parts) + '.test'

    def rot_password(self):
        with self.rot_lock:
            return self.rot_pw

    def rot_possible(self, t0, t1):
        with self.rot_lock:
            hist = list(self.rot_hist)
            pend = self.rot_pending
        eff = 'r0'
        for ts, tl, pw in hist:
            if tl <= t0 and pw is not None:
                eff = pw
        poss = {eff}
        for ts, tl, pw in hist:
            if pw is not None and ts <= t1 and tl > t0:
                poss.add(pw)
        if pend and pend[1] and pend[0] <= t1:
            poss.add(pend[1])
        return poss

    def disturbed(self, t0, t1):
        with self.lock:
            return any(e['t0'] <= t1 and e['t1'] >= t0 for e in self.events)

    def write_users(self, rotpw, invalid=False):
        lines = ['# socks5 chaos users']
        lines += ['%s:%s' % up for up in USERS_FIXED]
        lines.append('rot:%s' % rotpw)
        if invalid:
            lines.append('this line has no colon')
        tmp = self.users + '.tmp'
        with open(tmp, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        os.rename(tmp, self.users)

    def crash(self):
        if self.crashed or self.terminating:
            return
        self.crashed = True
        self.abort.set()
        code = self.server.p.poll()
        TALLY.bad(self.where(), 'the server keeps running under load',
                  'running until SIGTERM', 'exited: %s' % exit_text(code),
                  'last log lines:\n' + self.server.tail(25))

    # -- the server -------------------------------------------------------

    def argv(self):
        cfg = self.cfg
        base = list(self.cmd.words) + ['-l', '127.0.0.1', '-p', '0', '-v']
        base += cfg.args()
        if cfg.auth:
            base += ['-u', self.users]
        steps = []
        if cfg.nofile:
            steps.append('ulimit -n %d' % cfg.nofile)
        if cfg.dns:
            steps.append('mount --bind "$0" /etc/resolv.conf')
        if not steps:
            return base
        argv = ['sh', '-c', ' && '.join(steps + ['exec "$@"']),
                self.resolv if cfg.dns else 'sh'] + base
        if cfg.dns:
            argv = ['unshare', '-m'] + argv
        return argv

    def start(self):
        cfg = self.cfg
        wd = self.runner.workdir
        stem = 'seed%d-%s-ep%d' % (self.seed, self.cmd.tag, self.idx)
        self.users = os.path.join(wd, stem + '.users')
        self.write_users('r0')
        self.resolv = os.path.join(wd, stem + '.resolv.conf')
        with open(self.resolv, 'w') as f:
            f.write('nameserver %s\noptions timeout:%d attempts:1\n' % (
                self.runner.dns.addr if self.runner.dns else '127.0.0.1',
                min(30, cfg.hs + 3)))
        env = dict(os.environ)
        env.setdefault('ASAN_OPTIONS', 'detect_leaks=0:abort_on_error=1')
        env.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1')
        self.server = Server(self.argv(), env, os.path.join(wd, stem + '.log'))
        self.server.start(10 * self.slow)

    def baseline(self):
        srv = self.server
        # helpers are forked by lookups and exit after a minute idle:
        # the startup count (none) is not what the load ends with, and
        # each one that runs holds one descriptor of the server's
        self.base_nhelpers = len(srv.helpers())
        self.base_fds = proc_fds(srv.pid) or {}
        self.udp_drops0 = self.runner.udp.drops()
        self.status_on = self.runner.status_supported(self.cmd, srv)
        self.base_status = None
        if self.status_on:
            st = srv.status(3 * self.slow)
            self.check(st is not None, 'status line on SIGUSR1 at startup',
                       '"socks5: status sessions=..."', 'no such line')
            self.base_status = st
            if st is None:
                self.status_on = False

    # -- chaos actions: reloads, helpers stopped and killed ----------------

    def actions(self):
        rng = self.act_rng
        cfg = self.cfg
        choices = []
        if cfg.auth and self.server.catches(signal.SIGHUP):
            choices += ['hup'] * 3
        elif cfg.auth:
            TALLY.note('the server process does not catch SIGHUP (a wrapper '
                       'command?): no reloads')
        if cfg.dns:
            choices += ['stall', 'stall', 'kill']
        if self.status_on:
            choices += ['status']
        if not choices:
            return
        try:
            while not self.load_over.wait(rng.uniform(0.3, 2.0)):
                if self.crashed or self.abort.is_set():
                    return
                a = rng.choice(choices)
                if a == 'hup':
                    self.do_hup(rng)
                elif a == 'stall':
                    self.do_stall(rng)
                elif a == 'kill':
                    self.do_kill(rng)
                else:
                    st = self.server.status(3 * self.slow)
                    if st is not None:
                        self.check_status_sane(st)
                    elif self.server.alive():
                        self.check(False, 'status line on SIGUSR1 under load',
                                   'a line within %.0f s' % (3 * self.slow),
                                   'none', key=('status-missing',))
        except Exception:
            harness_error(self.where() + ' actions')
        finally:
            self.cont_all()

    def do_hup(self, rng):
        srv = self.server
        with self.rot_lock:
            self.rot_n += 1
            invalid = rng.random() < 0.15
            pw = 'r%d' % self.rot_n
            self.write_users(pw, invalid)
            n0 = len(srv.reloads)
            t_sent = MONO()
            self.rot_pending = (t_sent, None if invalid else pw)
        srv.send(signal.SIGHUP)
        ok = srv.wait(lambda: len(srv.reloads) > n0, 3 * self.slow)
        with self.rot_lock:
            if ok:
                t_log, good, cnt, text = srv.reloads[n0]
                self.rot_hist.append((t_sent, t_log, pw if good else None))
                if good:
                    self.rot_pw = pw
            else:
                self.rot_hist.append((t_sent, float('inf'),
                                      None if invalid else pw))
            self.rot_pending = None
        if not srv.alive():
            return
        if self.check(ok, 'SIGHUP re-reads the user file',
                      'a "reloaded"/"reload of ... failed" line within '
                      '%.0f s' % (3 * self.slow), 'no line'):
            want = 'failure, keeping 4 users' if invalid else '4 users'
            seen = '%s, %s users' % ('reloaded' if good else 'failure', cnt)
            what = 'reload of a %s user file' % (
                'broken' if invalid else 'changed')
            if not invalid and not good and 'Too many open files' in text:
                what = ('SIGHUP reload works while clients use up the '
                        'descriptors')
            self.check(good == (not invalid) and cnt == 4, what, want,
                       seen, text, key=('reload', what))

    def do_stall(self, rng):
        srv = self.server
        with self.helper_lock:
            hel = sorted(srv.helpers())
            if not hel:
                return
            pid = rng.choice(hel)
            st = proc_starttime(pid)
            dur = rng.uniform(0.2, min(3.0, self.cfg.hs + 1))
            ev = {'t0': MONO(), 't1': float('inf'), 'what': 'stop'}
            with self.lock:
                self.events.append(ev)
            with PROCS.lock:
                PROCS.stopped[pid] = st
            try_kill(pid, signal.SIGSTOP)
            self.load_over.wait(dur)
            try_kill(pid, signal.SIGCONT)
            with PROCS.lock:
                PROCS.stopped.pop(pid, None)
            ev['t1'] = MONO()

    def stall_all(self, dur):
        """Stop every helper for dur seconds (the resolver flood)."""
        srv = self.server
        with self.helper_lock:
            hel = sorted(srv.helpers())
            ev = {'t0': MONO(), 't1': float('inf'), 'what': 'stop all'}
            with self.lock:
                self.events.append(ev)
            for pid in hel:
                with PROCS.lock:
                    PROCS.stopped[pid] = proc_starttime(pid)
                try_kill(pid, signal.SIGSTOP)
            self.abort.wait(dur)
            for pid in hel:
                try_kill(pid, signal.SIGCONT)
                with PROCS.lock:
                    PROCS.stopped.pop(pid, None)
            ev['t1'] = MONO()

    def do_kill(self, rng):
        srv = self.server
        with self.helper_lock:
            hel = sorted(srv.helpers())
            if not hel:
                return
            pid = rng.choice(hel)
            ev = {'t0': MONO(), 't1': float('inf'), 'what': 'kill'}
            with self.lock:
                self.events.append(ev)
            n0 = len(srv.deaths)
            t0 = MONO()
            try_kill(pid, signal.SIGKILL)
            ok = False
            now = []
            while MONO() < t0 + 1.0 + 2 * self.slow:
                now = srv.helpers()
                if pid not in now:
                    ok = True
                    break
                time.sleep(0.02)
            el = MONO() - t0
            ev['t1'] = MONO()
        if not srv.alive():
            return
        # (a new helper is forked when a lookup needs one: the lookups
        # of the scenarios check that names are still resolved)
        self.check(ok and el <= 1.0 + self.slow,
                   'a killed resolver helper is reaped within about 1 s',
                   'its pid gone within %.1f s' % (1.0 + self.slow),
                   '%d helpers after %.2f s%s' % (
                       len(now), el, '' if pid not in now else
                       ', the killed one not reaped'))
        # (the server may have killed it first, replacing a helper
        # busy with a lookup nobody wants: that is logged with -v)
        named = ' %d ' % pid
        self.check(srv.wait(lambda: any(named in ln for _, ln in
                                        srv.deaths[n0:]), self.slow),
                   'a dead resolver helper is logged',
                   '"resolver %d died, restarting it" (or "resolver %d '
                   'replaced: ...", killed by the server first)' % (pid, pid),
                   'no line')

    def cont_all(self):
        with PROCS.lock:
            stopped = dict(PROCS.stopped)
        for pid, st in stopped.items():
            if proc_starttime(pid) == st:
                try_kill(pid, signal.SIGCONT)
        with PROCS.lock:
            for pid in stopped:
                PROCS.stopped.pop(pid, None)

    # -- the load -----------------------------------------------------------

    def mix(self):
        cfg = self.cfg
        w = {'connect': 26, 'pipelined': 6, 'onebyte': 5, 'slow': 6,
             'vanish': 16, 'bind': 8, 'udp': 12, 'garbage': 4,
             'refused-port': 3}
        if cfg.dns:
            w.update({'dns': 14, 'weird-names': 1})
            if cfg.table() >= 300 and not cfg.nofile:
                w['dns-flood'] = 2
        if cfg.auth:
            w['auth-burst'] = 4
        if cfg.t <= 10:
            w['idle-hold'] = 2
            w['bind-timeout'] = 1
        if cfg.hs <= 10:
            w['stall-handshake'] = 3
        if cfg.family:
            w['family'] = 4
        kinds = sorted(w)
        return kinds, [w[k] for k in kinds]

    def estimate(self, kind):
        cfg = self.cfg
        est = {'connect': 1, 'pipelined': 1, 'onebyte': 2, 'slow': 4,
               'vanish': 1, 'bind': 1.5, 'udp': 3, 'garbage': 0.5,
               'refused-port': 0.5, 'weird-names': 0.5, 'family': 0.5,
               'dns': cfg.hs * 0.5, 'auth-burst': cfg.hs,
               'idle-hold': cfg.t + 1, 'stall-handshake': cfg.hs + 1,
               'bind-timeout': cfg.bind_s + 1, 'dns-flood': 2 * cfg.hs + 2}
        return est[kind] * self.slow

    def launch(self, kind, n, seed, lenient=False, until=None):
        sc = Sc(self, kind, n, seed, lenient)
        sc.until = until or self.hard_end
        th = threading.Thread(target=self.run_sc, args=(sc,), daemon=True,
                              name=sc.name)
        with TALLY.lock:
            TALLY.sessions[kind] += 1
        th.start()
        return th

    def run_sc(self, sc):
        try:
            SCENARIOS[sc.kind][0](sc)
        except (Vanished, Refused):
            pass
        except Gone as g:
            if not self.server.alive():
                self.crash()
            elif not sc.lenient and not self.crashed:
                sc.check(False, 'a client can connect and talk to the '
                         'server', 'accepted', g.how, key=('gone-top', g.how))
        except Exception:
            harness_error(sc.where())

    def load(self):
        kinds, weights = self.mix()
        n = 0
        next_note = MONO() + 10
        while MONO() < self.load_end and not self.abort.is_set():
            if MONO() >= next_note:
                next_note += 10
                with TALLY.lock:
                    say('  progress: %.0f s into episode %d, %d scenarios; '
                        'run so far: %d checks passed, %d violations, '
                        '%.1f MB checked' % (
                            MONO() - self.t0, self.idx, n, TALLY.passed,
                            TALLY.failed, TALLY.bytes / 1e6))
            if not self.server.alive():
                self.crash()
                break
            live = sum(1 for t in self.threads if t.is_alive())
            if live < self.cfg.conc:
                kind = self.rng.choices(kinds, weights)[0]
                seed = self.rng.getrandbits(48)
                if MONO() + self.estimate(kind) <= self.hard_end:
                    n += 1
                    self.threads.append(self.launch(kind, n, seed))
            time.sleep(self.rng.choice([0.0, 0.002, 0.01, 0.03]))
        self.launched = n

    def wind_down(self):
        self.load_over.set()
        self.act_thread.join(10 * self.slow + self.cfg.hs)
        self.cont_all()
        cfg = self.cfg
        deadline = MONO() + (2 * cfg.hs + cfg.f + 25) * self.slow
        t1 = MONO() + 2.0
        for t in self.threads:
            t.join(max(0.0, min(deadline, t1) - MONO()))
        late = [t.name for t in self.threads if t.is_alive()]
        if late and VERBOSE:
            say('  still running 2 s after the load: %s' % ' '.join(late))
        for t in self.threads:
            t.join(max(0.0, deadline - MONO()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        if stuck:
            self.abort.set()
            for t in self.threads:
                t.join(max(0.0, deadline + 10 - MONO()))
            stuck = [t.name for t in self.threads if t.is_alive()]
            if stuck:
                TALLY.harness_errors += 1
                TALLY.bad(self.where(), 'harness: scenario threads finish',
                          'all done', 'still running: ' + ' '.join(stuck))
        if not self.server.alive():
            self.crash()

    # -- after the load -----------------------------------------------------

    def match(self):
        by_key = collections.defaultdict(list)
        with self.lock:
            recs = list(self.records)
        for r in recs:
            if r.expect != 'no':
                by_key[r.key].append(r)
        with self.server.cond:
            lines = list(self.server.sessions)
        for line in lines:
            if line.rec is not None or line.key is None:
                continue
            cands = [r for r in by_key.get(line.key, ())
                     if r.line is None and r.opened <= line.t + 0.001]
            if not cands:
                continue
            start = line.t - line.time
            before = [r for r in cands if r.opened <= start + 0.05]
            r = max(before, key=lambda r: r.opened) if before else \
                min(cands, key=lambda r: r.opened)
            r.line = line
            line.rec = r

    def open_records(self):
        refusals = bool(self.server.refusals)
        with self.lock:
            recs = list(self.records)
        return [r for r in recs if r.line is None and not r.lenient and
                (r.expect == 'yes' or (r.expect == 'maybe' and
                                       not refusals))]

    def quiesce(self):
        srv = self.server
        cfg = self.cfg
        bound = (cfg.hs + LINGER_S + 4) * self.slow
        t0 = MONO()
        while MONO() < t0 + bound and srv.alive():
            self.match()
            recs = self.open_records()
            if not recs:
                break
            # no use waiting past every open session's own deadline: a
            # line that comes later is a violation anyway
            due = max((r.closed or t0) + (r.close_bound or (
                cfg.hs + LINGER_S + 3) * self.slow) for r in recs)
            if MONO() > due + 0.5:
                break
            time.sleep(0.1)
        time.sleep(0.2)
        self.match()
        if not srv.alive():
            self.crash()
            return
        hel = srv.helpers()
        self.check(len(hel) <= 4,
                   'at most 4 resolver helpers after the load',
                   '<= 4 helpers', '%d' % len(hel))
        window = 1.5 if self.slow < 4 else 3.0
        c0 = proc_cpu_ticks(srv.pid)
        time.sleep(window)
        c1 = proc_cpu_ticks(srv.pid)
        limit = max(2, int(0.02 * window * HZ + 0.999))
        if c0 is not None and c1 is not None:
            used = c1 - c0
            self.check(used <= limit,
                       'the idle server uses ~0 % CPU after the load',
                       '<= %d ticks (2 %% of a core) in %.1f s' % (
                           limit, window),
                       '%d ticks (%.0f %% of a core)' % (
                           used, 100.0 * used / HZ / window),
                       'sessions still open by our count: %d' % len(
                           self.open_records()))
        overdue = [r for r in self.open_records()]
        why = ''
        if overdue:
            why = '; %d session(s) still open past their deadline (%s), ' \
                'reported on their own' % (len(overdue), ', '.join(sorted(
                    set(r.sc.name.split('#')[0] for r in overdue))))
        self.overdue_why = why
        # the helpers' sockets apart (one each); a helper that exits
        # while we count is counted again
        for _ in range(3):
            hel = srv.helpers()
            fds = proc_fds(srv.pid)
            if srv.helpers() == hel:
                break
        nhel = len(hel) - self.base_nhelpers
        if fds is not None:
            extra = ['%d -> %s' % (fd, t) for fd, t in sorted(fds.items())
                     if self.base_fds.get(fd) != t]
            gone = ['%d -> %s' % (fd, t) for fd, t in
                    sorted(self.base_fds.items()) if fd not in fds]
            self.check(len(fds) - nhel == len(self.base_fds),
                       'descriptors back to the startup count after the load '
                       '(less one per running helper)',
                       '%d' % len(self.base_fds), '%d' % (len(fds) - nhel),
                       'new or changed: %s; gone: %s%s' % (
                           ', '.join(extra[:12]) or '-',
                           ', '.join(gone[:12]) or '-', why))
        if self.status_on:
            for _ in range(3):
                hel = srv.helpers()
                st = srv.status(3 * self.slow)
                if srv.helpers() == hel:
                    break
            self.check_status_base(st, len(hel))

    def check_status_sane(self, st):
        def pair(k):
            try:
                a, b = st[k].split('/')
                return int(a), int(b)
            except (KeyError, ValueError):
                return None
        probs = []
        for k in ('sessions', 'spill', 'udpbufs', 'fds', 'helpers'):
            p = pair(k)
            if p is None:
                probs.append('%s=%s' % (k, st.get(k, '(missing)')))
            elif p[0] > p[1] or p[0] < 0:
                probs.append('%s=%s' % (k, st[k]))
        self.check(not probs, 'status line under load is consistent',
                   'keys sessions spill udpbufs fds helpers as N/M, N <= M',
                   ' '.join(probs), key=('status-sane',))

    def check_status_base(self, st, nhel):
        if not self.check(st is not None, 'status line on SIGUSR1 after the '
                          'load', 'a line', 'none'):
            return
        cfg = self.cfg
        table = cfg.table()
        base = self.base_status or {}

        def pair(k):
            try:
                a, b = st[k].split('/')
                return int(a), int(b)
            except (KeyError, ValueError):
                return None
        probs = []
        p = pair('sessions')
        if p != (0, table):
            probs.append('sessions=%s (want 0/%d)' % (st.get('sessions'),
                                                       table))
        for k in STATE_KEYS:
            if st.get(k) != '0':
                probs.append('%s=%s (want 0)' % (k, st.get(k, 'missing')))
        for k in ('spill', 'udpbufs'):
            p = pair(k)
            b = pair_of(base, k)
            if p is None or p[0] != p[1] or (b and p[1] != b[1]):
                probs.append('%s=%s (want all free, %s at startup)' % (
                    k, st.get(k), base.get(k)))
        p = pair('helpers')
        b = pair_of(base, 'helpers')
        if p is None or p[0] != nhel or (b and p[1] != b[1]):
            probs.append('helpers=%s (want %d running of %s)' % (
                st.get('helpers'), nhel, b and b[1]))
        b = self.base_status and pair_of(self.base_status, 'fds')
        p = pair('fds')
        extra = nhel - self.base_nhelpers
        if p is None or (b and p[0] - extra != b[0]):
            probs.append('fds=%s (want %s as at startup, plus %d helper '
                         'sockets)' % (st.get('fds'), b and '%d/%d' % b,
                                       extra))
        self.check(not probs, 'status line at baseline after the load',
                   'no sessions, every buffer free, nothing queued, fds as '
                   'at startup (plus one per running helper)',
                   '; '.join(probs),
                   getattr(self, 'overdue_why', '').lstrip('; '))

    def terminate(self):
        srv = self.server
        cfg = self.cfg
        self.terminating = True
        with self.lock:
            for r in self.records:
                if r.line is None and r.expect != 'yes':
                    pass
        if cfg.term_under_load and srv.alive():
            kinds = ['connect', 'slow', 'udp', 'bind', 'pipelined']
            if cfg.dns:
                kinds.append('dns')
            for i in range(self.rng.randint(3, 10)):
                self.burst.append(self.launch(
                    self.rng.choice(kinds), 10000 + i,
                    self.rng.getrandbits(48), lenient=True,
                    until=MONO() + 5))
            time.sleep(self.rng.uniform(0.2, 1.0))
        t0 = MONO()
        code = srv.stop(5 * self.slow)
        el = MONO() - t0
        self.check(code == 0, 'SIGTERM%s: exit status 0 within %.0f s' % (
            ' under load' if cfg.term_under_load else '', 5 * self.slow),
            'status 0', exit_text(code) + ' after %.2f s' % el,
            '' if code == 0 else 'last log lines:\n' + srv.tail(15))
        self.abort.set()
        for t in self.burst:
            t.join(10 * self.slow)
        # the helpers go with the server
        with PROCS.lock:
            seen = dict(PROCS.helpers)
        t1 = MONO()
        left_over = []
        while MONO() < t1 + 3 * self.slow:
            left_over = [p for p, s in seen.items()
                         if proc_starttime(p) == s and
                         (proc_stat(p) or ['', '0'])[1] in
                         (str(srv.pid), '1')]
            if not left_over:
                break
            time.sleep(0.05)
        self.check(not left_over, 'resolver helpers exit with the server',
                   'none left', 'still running: %s' % left_over)

    def check_records(self):
        srv = self.server
        cfg = self.cfg
        refusals = bool(srv.refusals)
        amb = 0
        with self.lock:
            recs = list(self.records)
        for rec in recs:
            sc = rec.sc
            line = rec.line
            tag = '%s client %s' % (sc.name, fmt_key(rec.key))
            if line is None:
                if rec.lenient:
                    continue
                if rec.expect == 'yes':
                    self.violation(sc.where(), 'a session line for every '
                                   'accepted connection', 'a line for %s'
                                   % fmt_key(rec.key), 'none',
                                   'opened %.2f s into the episode, closed '
                                   '%s' % (rec.opened - self.t0,
                                           '%.2f s' % (rec.closed - self.t0)
                                           if rec.closed else 'never'),
                                   key=('noline',))
                elif rec.expect == 'maybe' and not refusals:
                    self.violation(sc.where(), 'a connection is refused or '
                                   'logged', 'a session line for %s (no '
                                   'refusal was logged)' % fmt_key(rec.key),
                                   'none', key=('noline-maybe',))
                else:
                    TALLY.ok()
                continue
            TALLY.ok()
            if line.ambiguous:
                amb += 1
                self.violation(sc.where(), 'session line parses one way only',
                               'key=value fields, names escaped',
                               line.ambiguous, line.line, key=('ambiguous',))
            else:
                TALLY.ok()
            life = line.t - rec.opened
            sc.check(0 <= line.time <= life + 0.3 * self.slow,
                     'session line time= fits the connection\'s life',
                     '<= %.2f s' % life, '%.3f s' % line.time, line.line,
                     key=('time-field',))
            if rec.lenient:
                continue
            if line.result == 'no-buffer':
                why = 'pinned by partial handshakes'
                if any('auth failed' in l for _, l in srv.lines):
                    why += ' or by failed logins waiting for their answer'
                self.violation(sc.where(), 'a client is served (or refused '
                               'with 05 FF) while the table has room',
                               'served', 'result=no-buffer: the spill pool '
                               '(-m %s) is empty, %s' % (
                                   cfg.m or 'default', why),
                               line.line, key=('no-buffer',))
                continue
            if rec.closed is not None:
                bound = rec.close_bound or (cfg.hs + LINGER_S + 3) * self.slow
                late = line.t - rec.closed
                sc.check(late <= bound, 'the session ends soon after its '
                         'client is gone' + (' (%s, says the README)' %
                                             rec.why_bound
                                             if rec.why_bound else ''),
                         '<= %.1f s' % bound, '%.2f s (%s)' % (late, tag),
                         line.line, key=('late-line', rec.why_bound[:20]))
            if rec.want_time:
                lo, hi = rec.want_time
                sc.check(lo <= line.time <= hi, 'session time=',
                         '%.1f..%.1f s' % (lo, hi), '%.3f s' % line.time,
                         line.line)
            if rec.want_result and rec.assoc is not None and \
                    line.result == 'idle-timeout' and \
                    'idle-timeout' not in rec.want_result:
                gap = rec.assoc.maxgap
                if gap >= cfg.t - 0.5 * self.slow:
                    TALLY.note('a UDP association of ours paused %.1f s '
                               '(-t %d): its idle timeout is no fault' % (
                                   gap, cfg.t))
                else:
                    sc.check(False, 'a UDP association with traffic is not '
                             'closed as idle', 'no idle-timeout: datagrams '
                             'at most %.2f s apart (-t %d)' % (gap, cfg.t),
                             'result=idle-timeout', line.line,
                             key=('udp-idle',))
            elif rec.want_result:
                sc.check(line.result in rec.want_result,
                         'session line result=', '/'.join(sorted(
                             rec.want_result)), line.result,
                         line.line, key=('result', line.result))
            for what, want, got in (('up', rec.want_up, line.up),
                                    ('down', rec.want_down, line.down)):
                if want is None:
                    continue
                op, n = want
                ok = got == n if op == '==' else got <= n
                sc.check(ok, 'session line %s= counts the bytes relayed'
                         % what, '%s %d' % (op, n), '%d' % got, line.line,
                         key=('bytes', what))
            if rec.want_cmd and line.result == 'succeeded':
                sc.check(line.cmd == rec.want_cmd, 'session line cmd=',
                         rec.want_cmd, line.cmd, line.line)
            if line.result not in RESULTS:
                TALLY.note('unknown result=%s in %s' % (line.result,
                                                       line.line))
        for line in srv.sessions:
            if line.rec is None:
                self.violation(self.where(), 'session lines only for '
                               'connections we opened (and not for refused '
                               'ones)', 'no line', line.line,
                               key=('phantom',))
        if self.refused:
            self.check(refusals, 'clients turned away with 05 FF are '
                       'announced in the log', '"session table full" or '
                       '"out of descriptors"', 'no such line (%d refused)' %
                       self.refused)

    def final(self):
        srv = self.server
        if srv.san:
            self.violation(self.where(), 'no sanitizer report', 'none',
                           srv.san[0], '\n'.join(srv.san[:12]))
        else:
            TALLY.ok()
        for l in srv.unparsed:
            self.violation(self.where(), 'session lines parse',
                           'socks5: session CLIENT method=... time=S.MSs',
                           l, key=('unparsed',))
        if self.crashed:
            return
        self.match()
        self.check_records()
        self.udp_target_drops = self.runner.udp.drops() - self.udp_drops0
        with self.lock:
            assocs = list(self.assocs)
        for a in assocs:
            if a.rec.lenient:
                continue
            a.evaluate(a.sc)
        with self.runner.udp.lock:
            unknown = list(self.runner.udp.unknown)
            self.runner.udp.unknown = []
        if unknown and not self.udp_target_drops:
            self.violation(self.where(), 'every datagram at a UDP target is '
                           'one the harness sent', 'none unknown',
                           '%d unknown, e.g. %d bytes at %s' % (
                               len(unknown), unknown[0][1], unknown[0][0]))
        with self.runner.tcp.lock:
            bad = list(self.runner.tcp.badheaders)
            self.runner.tcp.badheaders = []
        if bad:
            self.violation(self.where(), 'every stream reaching a target '
                           'starts with the header a client sent',
                           'CHAO header', bad[0].hex(' '))
        for key, n in sorted(self.dedupe.items(), key=str):
            if n > 2:
                say('  ... and %d more violation(s) like "%s" in this '
                    'episode' % (n - 2, self.dedupe_what[key]))

    def run(self):
        cfg = self.cfg
        say('seed %d episode %d (%.0f s): %s -l 127.0.0.1 -p 0 -v %s' % (
            self.seed, self.idx, self.secs, self.cmd.label,
            cfg.describe()))
        self.t0 = MONO()
        tail = 2.5 + 1.5 * self.slow
        self.hard_end = self.t0 + self.secs - tail
        self.load_end = max(self.t0 + 2.0, self.hard_end - 1.0)
        self.hard_end = max(self.hard_end, self.load_end + 1.0)
        try:
            self.start()
        except StartError as e:
            self.crashed = True
            TALLY.bad(self.where(), 'the server starts and listens',
                      '"socks5: listening on 127.0.0.1:PORT"', str(e))
            return
        try:
            self.baseline()
            self.act_thread = threading.Thread(target=self.actions,
                                               daemon=True, name='actions')
            self.act_thread.start()
            ph = self.phases = []
            self.load()
            ph.append(('load', MONO()))
            self.wind_down()
            ph.append(('wind-down', MONO()))
            if not self.crashed:
                self.quiesce()
            ph.append(('quiesce', MONO()))
            if not self.crashed:
                self.terminate()
            ph.append(('sigterm', MONO()))
            self.final()
        finally:
            self.abort.set()
            self.load_over.set()
            self.cont_all()
            self.server.kill()
            # one episode at a time: what the targets and the DNS kept for
            # this one is no longer needed (an hour's run stays small)
            self.runner.tcp.forget()
            self.runner.udp.forget()
            if self.runner.dns:
                self.runner.dns.forget()
        with self.lock:
            nrec = len(self.records)
        prev, times = self.t0, []
        for name, t in getattr(self, 'phases', []):
            times.append('%s %.1f' % (name, t - prev))
            prev = t
        say('seed %d episode %d done in %.1f s (%s): %d scenarios, %d '
            'connections' % (self.seed, self.idx, MONO() - self.t0,
                             ', '.join(times), getattr(self, 'launched', 0),
                             nrec))


def pair_of(st, k):
    try:
        a, b = st[k].split('/')
        return int(a), int(b)
    except (KeyError, ValueError, AttributeError):
        return None


def exit_text(code):
    if code is None:
        return 'still running (killed)'
    if code < 0:
        try:
            return 'killed by %s' % signal.Signals(-code).name
        except ValueError:
            return 'killed by signal %d' % -code
    return 'status %d' % code


def harness_error(where):
    TALLY.harness_errors += 1
    TALLY.bad(where, 'harness error (a bug in chaos.py, not necessarily '
              'in the server)', 'no exception', traceback.format_exc(
                  limit=6).strip().splitlines()[-1], traceback.format_exc())


# ---------------------------------------------------------------------------
# The run: shared targets and DNS, seeds, server commands, summary

class Cmd:
    def __init__(self, text, slow=None):
        self.text = text
        self.words = shlex.split(text)
        self.label = text
        low = text.lower()
        self.tag = re.sub(r'[^A-Za-z0-9]+', '_', os.path.basename(
            self.words[-1] if self.words else 'socks5'))[:30]
        if slow is None:
            slow = 1.0
            if 'asan' in low or 'sanit' in low:
                slow = 2.0
            if 'qemu' in low or 'valgrind' in low:
                slow = 4.0
        self.slow = slow
        self.has_status = binary_has_status(self.words)


class Runner:
    def __init__(self, status_mode, keep):
        self.status_mode = status_mode
        self.keep = keep
        self.workdir = tempfile.mkdtemp(prefix='socks5-chaos.')
        self.run_id = 'r' + ''.join(random.SystemRandom().choice(
            'abcdefghjkmnpqrstuvwxyz') for _ in range(4))
        self.idn = 0
        self.idlock = threading.Lock()
        self.v6 = False
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.bind(('::1', 0))
            s.close()
            self.v6 = True
        except OSError:
            pass
        self.hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3'] + (
            ['::1'] if self.v6 else [])
        self.tcp = TcpTargets(self.hosts)
        self.udp = UdpTargets(self.hosts)
        self.closed_port, self.closed = bind_same_port(
            ['127.0.0.1'] + (['::1'] if self.v6 else []), socket.SOCK_STREAM)
        self.dns = None
        self.dns_why = self.dns_setup()
        self.force = {}
        env = os.environ
        if env.get('CHAOS_ARGS'):
            self.force['args'] = shlex.split(env['CHAOS_ARGS'])
        if env.get('CHAOS_NOFILE'):
            self.force['nofile'] = int(env['CHAOS_NOFILE'])
        if env.get('CHAOS_DNS') in ('0', '1'):
            self.force['dns'] = env['CHAOS_DNS'] == '1'

    def dns_setup(self):
        if not IS_ROOT:
            return 'not root (needs UDP port 53 and mount in a namespace)'
        if not shutil.which('unshare'):
            return 'unshare(1) not installed'
        dns = None
        t0 = MONO()
        while dns is None:
            addr = dns_address()
            if addr is None:
                return 'UDP port 53 is taken on every loopback address tried'
            try:
                dns = Dns(addr)
            except OSError as e:
                if MONO() > t0 + 10:
                    return 'cannot listen on %s:53: %s (another DNS ' \
                        'responder on the wildcard address?)' % (addr, e)
                time.sleep(0.5)
        probe = os.path.join(self.workdir, 'probe.resolv.conf')
        text = 'nameserver %s\n' % addr
        with open(probe, 'w') as f:
            f.write(text)
        try:
            out = subprocess.run(
                ['unshare', '-m', 'sh', '-c',
                 'mount --bind "$0" /etc/resolv.conf && cat /etc/resolv.conf',
                 probe], stdin=subprocess.DEVNULL, capture_output=True,
                timeout=10)
            ok = out.returncode == 0 and out.stdout.decode() == text
            why = (out.stderr.decode().strip() or 'status %d' %
                   out.returncode)
        except (OSError, subprocess.TimeoutExpired) as e:
            ok, why = False, str(e)
        if not ok:
            dns.close()
            return 'unshare -m / mount --bind failed: %s' % why
        self.dns = dns
        return None

    def next_id(self):
        with self.idlock:
            self.idn += 1
            return self.idn

    def status_supported(self, cmd, srv):
        if self.status_mode == '0':
            return False
        if not srv.catches(signal.SIGUSR1):
            if cmd.has_status or self.status_mode == '1':
                TALLY.note('the server process (pid %d) does not catch '
                           'SIGUSR1 (a wrapper command?): no status line' %
                           srv.pid)
            return False
        if self.status_mode == '1' or cmd.has_status:
            return True
        try:
            exe = os.path.basename(os.readlink('/proc/%d/exe' % srv.pid))
            if exe.startswith('qemu'):
                return False
            with open('/proc/%d/status' % srv.pid) as f:
                for line in f:
                    if line.startswith('SigCgt:'):
                        return bool(int(line.split()[1], 16) &
                                    (1 << (signal.SIGUSR1 - 1)))
        except (OSError, ValueError):
            pass
        return False

    def run_seed(self, cmd, seed, secs):
        rng = random.Random(seed)
        t0 = MONO()
        end = t0 + secs
        idx = 0
        while True:
            rest = end - MONO()
            if idx > 0 and rest < 6:
                break
            if rest < 22:
                ep_secs = rest
            else:
                ep_secs = min(rest, rng.uniform(10, 25))
                if rest - ep_secs < 8:
                    ep_secs = rest
            ep = Episode(self, cmd, seed, idx, max(ep_secs, 6))
            ep.run()
            idx += 1
            if STOP.is_set():
                break

    def close(self):
        self.tcp.close()
        self.udp.close()
        for s, _ in self.closed:
            close_quiet(s)
        if self.dns:
            self.dns.close()


STOP = threading.Event()
VERBOSE = False


def parse_seeds(text):
    out = []
    for part in text.split(','):
        part = part.strip()
        if not part:
            continue
        m = re.match(r'^(\d+)-(\d+)$', part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a or b - a > 100000:
                raise ValueError('bad seed range %s' % part)
            out.extend(range(a, b + 1))
        elif part == 'random':
            out.append(random.SystemRandom().randrange(1, 10 ** 9))
        else:
            out.append(int(part))
    if not out:
        raise ValueError('no seeds in %r' % text)
    return out


def summary(runner, cmds, seeds, secs, t_start, interrupted=None):
    say('summary')
    say('  server(s): %s' % '; '.join(c.label for c in cmds))
    say('  seed(s): %s; %.0f s per seed%s; %.1f s in all' % (
        ' '.join(str(s) for s in seeds), secs,
        ' and server' if len(cmds) > 1 else '', MONO() - t_start))
    if runner is not None:
        say('  DNS part: %s' % ('on, responder on %s:53' % runner.dns.addr
                                if runner.dns else 'skipped: ' +
                                runner.dns_why))
    with TALLY.lock:
        sess = sorted(TALLY.sessions.items())
        outs = TALLY.outcomes
        total = sum(n for _, n in sess)
        say('  scenarios driven: %d: %s' % (total, ', '.join(
            '%s %d' % kv for kv in sess)))
        kinds = [k for k, _ in sess]
        kinds += sorted(set(k[0] for k in outs) - set(kinds))
        for kind in kinds:
            o = sorted(((k[1], v) for k, v in outs.items() if k[0] == kind),
                       key=lambda kv: -kv[1])
            if o:
                say('    %-16s %s' % (kind, ', '.join(
                    '%s %d' % kv for kv in o[:8 if kind != 'udp (datagram '
                                            'cases)' else 20])))
        say('  bytes checked: %d (%.1f MB)' % (TALLY.bytes,
                                               TALLY.bytes / 1e6))
        say('  violations: %d%s' % (TALLY.failed, ' (%d harness errors)' %
                                    TALLY.harness_errors
                                    if TALLY.harness_errors else ''))
        for i, v in enumerate(TALLY.violations[:40]):
            say('    %d. %s' % (i + 1, v['where']))
            say('       %s; expected: %s; seen: %s' % (
                v['what'], v['expected'], v['seen']))
        if len(TALLY.violations) > 40:
            say('    ... %d more above' % (len(TALLY.violations) - 40))
        if TALLY.failed > len(TALLY.violations):
            say('    (%d repeats of the above not listed one by one)' % (
                TALLY.failed - len(TALLY.violations)))
    if interrupted:
        say('  stopped early: %s' % interrupted)


def lo_up():
    """Bring up lo in a fresh network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS)."""
    import fcntl
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack('16sh', b'lo', 0)
        flags = struct.unpack('16sh', fcntl.ioctl(s, 0x8913, ifr))[1]
        fcntl.ioctl(s, 0x8914, struct.pack('16sh', b'lo', flags | 1))
    finally:
        s.close()


def enter_netns():
    """As root, run the whole harness in a private network namespace:
    nothing else on the host sees our ports (DNS on port 53 included), and
    we see nobody else's. Re-executes this script under unshare -n."""
    env = os.environ
    if env.get('CHAOS_IN_NETNS') == '1':
        lo_up()
        return 'private (unshare -n)'
    if not IS_ROOT or env.get('CHAOS_NETNS', '1') == '0':
        return 'the host\'s' + ('' if IS_ROOT else ' (not root)')
    if not shutil.which('unshare'):
        return 'the host\'s (no unshare)'
    try:
        r = subprocess.run(['unshare', '-n', 'true'], timeout=10,
                           stdin=subprocess.DEVNULL, capture_output=True)
        if r.returncode != 0:
            return 'the host\'s (unshare -n failed: %s)' % (
                r.stderr.decode(errors='replace').strip())
    except (OSError, subprocess.TimeoutExpired) as e:
        return 'the host\'s (unshare -n failed: %s)' % e
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe('unshare', ['unshare', '-n', sys.executable,
                           os.path.abspath(__file__)] + sys.argv[1:],
               dict(env, CHAOS_IN_NETNS='1'))


def local_path(name):
    p = os.path.relpath(os.path.join(TOP, name))
    return p if '/' in p else './' + p


def main():
    ap = argparse.ArgumentParser(
        description='Seeded chaos run against a socks5 server '
        '(see the comment at the top of this file).')
    ap.add_argument('--seed', type=int, help='one seed (CHAOS_SEED)')
    ap.add_argument('--seeds', help='seeds: A-B, A,B,C, "random" allowed')
    ap.add_argument('--secs', type=float, help='seconds per seed (CHAOS_SECS)')
    ap.add_argument('--socks5', action='append',
                    help='server command (SOCKS5); may be repeated')
    ap.add_argument('--ci', action='store_true',
                    help='CI run: ./socks5 and ./socks5-asan, seeds 1, 2 '
                    'and a random one, CHAOS_CI_BUDGET (75) s in all')
    ap.add_argument('--keep', action='store_true',
                    help='keep the work directory (CHAOS_KEEP=1)')
    ap.add_argument('-v', '--verbose', action='store_true',
                    help='say more about what takes time')
    opts = ap.parse_args()
    global VERBOSE
    VERBOSE = opts.verbose
    netns = enter_netns()
    env = os.environ
    t_start = MONO()
    faulthandler.enable()
    try:
        if opts.ci:
            cmds = [Cmd(local_path('socks5')), Cmd(local_path('socks5-asan'))]
            seeds = parse_seeds(opts.seeds or '1,2,random')
            budget = float(env.get('CHAOS_CI_BUDGET', '75'))
            runs = len(cmds) * len(seeds)
            secs = opts.secs or max(8.0, budget / runs)
        else:
            text = opts.socks5 or [env.get('SOCKS5') or './socks5']
            cmds = [Cmd(t) for t in text]
            if opts.seeds:
                seeds = parse_seeds(opts.seeds)
            elif opts.seed is not None:
                seeds = [opts.seed]
            elif env.get('CHAOS_SEED'):
                seeds = parse_seeds(env['CHAOS_SEED'])
            else:
                seeds = [random.SystemRandom().randrange(1, 10 ** 9)]
            secs = opts.secs or float(env.get('CHAOS_SECS') or 60)
    except ValueError as e:
        print('chaos: %s' % e, file=sys.stderr)
        return 64
    if len(seeds) == 1:
        say('seed %d (repeat: CHAOS_SEED=%d CHAOS_SECS=%g SOCKS5=%s)' % (
            seeds[0], seeds[0], secs, shlex.quote(cmds[0].text)))
    else:
        say('seeds %s, %g s each' % (' '.join(str(s) for s in seeds), secs))
    for c in cmds:
        if not c.words or not (shutil.which(c.words[0]) or
                               os.path.isfile(c.words[0])):
            print('chaos: cannot run %r (build it first: make)' % c.text,
                  file=sys.stderr)
            return 64
    slow = max(c.slow for c in cmds)
    env_slow = env.get('CHAOS_SLOW')
    if env_slow:
        for c in cmds:
            c.slow = float(env_slow)
        slow = float(env_slow)
    keep = opts.keep or env.get('CHAOS_KEEP') == '1'
    runs = len(cmds) * len(seeds)
    if opts.ci:
        limit = float(env.get('CHAOS_CI_BUDGET', '75')) * 1.5 + 30
    else:
        limit = runs * (secs + (2 * (30 if secs >= 25 else 8) + 40) * slow)
    if env.get('CHAOS_WATCHDOG'):
        limit = float(env['CHAOS_WATCHDOG'])
    done = threading.Event()
    runner = None
    state = {'runner': None}

    def watchdog():
        if done.wait(limit):
            return
        say('watchdog: the run has taken %.0f s, more than its %.0f s; '
            'thread stacks follow on stderr' % (MONO() - t_start, limit))
        faulthandler.dump_traceback(all_threads=True)
        TALLY.harness_errors += 1
        TALLY.failed += 1
        PROCS.cleanup()
        summary(state['runner'], cmds, seeds, secs, t_start, 'watchdog')
        say('%d passed, %d failed' % (TALLY.passed, TALLY.failed))
        sys.stdout.flush()
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True, name='watchdog').start()

    def on_signal(sig, frame):
        STOP.set()
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    interrupted = None
    try:
        runner = Runner(env.get('CHAOS_STATUS', 'auto'), keep)
        state['runner'] = runner
        say('network namespace %s; work directory %s' % (netns,
                                                          runner.workdir))
        say('DNS part %s; IPv6 loopback %s' % (
            'on (%s:53, unshare -m)' % runner.dns.addr
            if runner.dns else 'skipped: ' + runner.dns_why,
            'yes' if runner.v6 else 'no'))
        for c in cmds:
            say('server %s: status line (SIGUSR1) %s' % (
                c.label, 'in the binary' if c.has_status else
                'not seen in the binary; used if the process catches '
                'SIGUSR1' if runner.status_mode == 'auto' else
                'forced' if runner.status_mode == '1' else 'off'))
        left = len(cmds) * len(seeds)
        for c in cmds:
            for seed in seeds:
                if STOP.is_set():
                    break
                s = secs
                if opts.ci:
                    # keep to the budget: each run gets its share of what
                    # is left (an overrun shortens the runs after it)
                    s = max(6.0, min(secs, (t_start + budget - MONO()) /
                                     left))
                runner.run_seed(c, seed, s)
                left -= 1
    except KeyboardInterrupt:
        interrupted = 'interrupted'
        TALLY.bad('harness', 'run completes', 'no interruption',
                  'interrupted by a signal')
    except Exception:
        harness_error('harness')
    finally:
        PROCS.cleanup()
        done.set()
        if runner is not None:
            runner.close()
    summary(runner, cmds, seeds, secs, t_start, interrupted)
    if runner is not None:
        if TALLY.failed or keep:
            say('server logs kept in %s' % runner.workdir)
        else:
            shutil.rmtree(runner.workdir, ignore_errors=True)
    say('%d passed, %d failed' % (TALLY.passed, TALLY.failed))
    return 0 if TALLY.failed == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
