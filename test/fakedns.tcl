# fakedns.tcl -- a fake DNS responder on loopback and a server that uses
# it, for test files whose names must resolve slowly, late or not at all
# without any query leaving the host.  Sourced after lib.tcl:
#
#   source [file join $::lib::testdir fakedns.tcl]
#   fakedns_setup TABLE   ;# sets the constraint dnsFixture (or prints why not)
#   set h [ns_server ARGS...]   ;# server_start inside the namespace
#   fakedns_answers NAME ?TYPE? ;# how many answers the responder sent
#   fakedns_stop
#
# TABLE is a dict: glob pattern (lower case) -> {ADDR DELAY_MS ?LATER_MS?}.
# An A query for a name matching a pattern is answered with the IPv4
# address ADDR (TTL 1) after DELAY_MS for the first query of that name and
# type, after LATER_MS (default DELAY_MS) for later ones; an AAAA query
# gets an empty NOERROR answer with the same delays.  Every other name:
# NXDOMAIN at once.  The first matching pattern counts.
#
# The responder is a python3 child on UDP port 53 of a loopback address of
# its own, 127.53.X.Y (chosen from this process's pid, the next one when
# taken), so that test files running at the same time, in one suite run or
# in several, each have their own; it answers only loopback peers and logs
# each query and answer on its stderr (a file).  The server runs in a
# private mount namespace in which /etc/resolv.conf is bind-mounted over by
# a file naming it:
#     unshare -m sh -c 'mount --bind FAKE /etc/resolv.conf && exec SERVER'
# Needs root (port 53, mount) and python3; the tests are skipped otherwise.
# slowdns.test uses it too.
#
# argv: first-candidate-address count then PATTERN ADDR DELAY LATER ...;
# prints "ready ADDR" or "error MSG"; exits when its stdin reaches EOF.
set ::fakedns_script {
import fnmatch, heapq, os, select, socket, struct, sys, time
first, count = sys.argv[1], int(sys.argv[2])
rest = sys.argv[3:]
table = [(rest[i], rest[i + 1], int(rest[i + 2]), int(rest[i + 3]))
         for i in range(0, len(rest), 4)]

def log(msg):
    sys.stderr.write('%d %s\n' % (int(time.time() * 1000), msg))
    sys.stderr.flush()

a, b = [int(x) for x in first.split('.')[2:]]
s = None
err = ''
for k in range(count):
    n = (a * 256 + b + k) % 65536
    addr = '127.53.%d.%d' % (n // 256, n % 256)
    if n % 256 in (0, 255):
        continue
    try:
        t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # (next to a wildcard port-53 socket that allows it; the more
        # specific address gets the datagrams)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((addr, 53))
        s = t
        break
    except OSError as x:
        err = '%s:53: %s' % (addr, x)
        t.close()
if s is None:
    print('error ' + err)
    sys.stdout.flush()
    sys.exit(1)

def name_of(pkt):
    # -> (name, qtype, end of question), or None when malformed
    off = 12
    labels = []
    while True:
        if off >= len(pkt):
            return None
        n = pkt[off]
        off += 1
        if n == 0:
            break
        if n > 63:
            return None
        labels.append(pkt[off:off + n].decode('latin-1'))
        off += n
    if off + 4 > len(pkt):
        return None
    qtype = struct.unpack('!H', pkt[off:off + 2])[0]
    return '.'.join(labels).lower(), qtype, off + 4

def reply(pkt, qend, rcode, addr):
    ident, flags = struct.unpack('!HH', pkt[:4])
    flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
    out = struct.pack('!6H', ident, flags, 1, 1 if addr else 0, 0, 0)
    out += pkt[12:qend]
    if addr:
        out += struct.pack('!HHHIH', 0xC00C, 1, 1, 1, 4) + socket.inet_aton(addr)
    return out

def send(peer, data, what):
    try:
        s.sendto(data, peer)
    except OSError as x:
        log('send to %s %d failed: %s' % (peer[0], peer[1], x))
        return
    log('answered ' + what)

seen = {}
pending = []        # (due, seq, peer, data, what)
seq = 0
print('ready ' + addr)
sys.stdout.flush()
while True:
    now = time.time()
    while pending and pending[0][0] <= now:
        due, _, peer, data, what = heapq.heappop(pending)
        send(peer, data, what)
    wait = max(0.0, pending[0][0] - now) if pending else None
    r, _, _ = select.select([s, sys.stdin], [], [], wait)
    if sys.stdin in r:
        if not os.read(sys.stdin.fileno(), 4096):
            sys.exit(0)
    if s not in r:
        continue
    try:
        pkt, peer = s.recvfrom(65536)
    except OSError:
        continue
    p = '%s %d' % peer
    if not peer[0].startswith('127.'):
        log('ignored packet from ' + p)
        continue
    if len(pkt) < 12:
        continue
    q = name_of(pkt)
    if q is None:
        continue
    name, qtype, qend = q
    entry = None
    for pat, a4, delay, later in table:
        if fnmatch.fnmatchcase(name, pat):
            entry = (a4, delay, later)
            break
    if entry is None:
        log('query %s type %d from %s: NXDOMAIN' % (name, qtype, p))
        send(peer, reply(pkt, qend, 3, None), '%s type %d NXDOMAIN' % (name, qtype))
        continue
    a4, delay, later = entry
    seen[(name, qtype)] = seen.get((name, qtype), 0) + 1
    w = delay if seen[(name, qtype)] == 1 else later
    log('query %s type %d from %s: answer in %d ms' % (name, qtype, p, w))
    seq += 1
    heapq.heappush(pending, (time.time() + w / 1000.0, seq, peer,
                             reply(pkt, qend, 0, a4 if qtype == 1 else None),
                             '%s type %d' % (name, qtype)))
}

set ::fakedns_skip ""
set ::fakedns_pid ""
set ::fakedns_pipe ""
set ::fakedns_log ""
set ::fakedns_addr ""

# fakedns_start table -- start the responder; sets ::fakedns_pid and
# ::fakedns_addr, or ::fakedns_skip.  Retries for 40 s while port 53 is
# held for every address (by a wildcard socket of some other program).
proc fakedns_start {table} {
    set script [tmpfile fakedns.py $::fakedns_script]
    set ::fakedns_log [tmpfile fakedns.log]
    set args {}
    dict for {pat e} $table {
        lassign $e addr delay later
        if {$later eq ""} {
            set later $delay
        }
        lappend args $pat $addr $delay $later
    }
    set n [expr {[pid] % 65024 + 256}]
    set first 127.53.[expr {$n / 256}].[expr {$n % 256}]
    set deadline [expr {[clock milliseconds] + 40000}]
    while {1} {
        set pipe [open |[list $::fakedns_python $script $first 512 {*}$args \
                2>> $::fakedns_log] r+]
        fconfigure $pipe -blocking 0 -buffering line
        set line ""
        wait_until {[gets $pipe line] >= 0 || [eof $pipe]} 5000
        if {[regexp {^ready (\S+)$} $line -> ::fakedns_addr]} {
            set ::fakedns_pipe $pipe
            set ::fakedns_pid [lindex [pid $pipe] 0]
            ::lib::register_pid $::fakedns_pid
            return
        }
        catch {exec kill [lindex [pid $pipe] 0]}
        fconfigure $pipe -blocking 1
        catch {close $pipe}
        if {[clock milliseconds] >= $deadline} {
            set ::fakedns_skip "DNS responder cannot listen on UDP port 53:\
                    [expr {$line eq "" ? [::lib::readfile $::fakedns_log] : $line}]"
            return
        }
        pause 500
    }
}

# fakedns_setup table ?options? -- decide whether the fixture can run, start
# the responder and set the constraint dnsFixture.  options: the resolver's
# (resolv.conf "options" line).
proc fakedns_setup {table {options "timeout:10 attempts:1"}} {
    set ::fakedns_python [auto_execok python3]
    if {![testConstraint root]} {
        set ::fakedns_skip "not root (needs UDP port 53 and mount in a namespace)"
    } elseif {[auto_execok unshare] eq ""} {
        set ::fakedns_skip "unshare(1) not installed"
    } elseif {$::fakedns_python eq ""} {
        set ::fakedns_skip "python3 not installed"
    } elseif {[catch {package require udp}]} {
        # (not for the responder: for the UDP clients of the files using it)
        set ::fakedns_skip "Tcl package udp (tcl-udp) not installed"
    } else {
        fakedns_start $table
    }
    if {$::fakedns_skip eq ""} {
        set ::fakedns_resolv [tmpfile resolv.conf \
                "nameserver $::fakedns_addr\noptions $options\n"]
        set probe {mount --bind "$0" /etc/resolv.conf && cat /etc/resolv.conf}
        if {[catch {exec unshare -m sh -c $probe $::fakedns_resolv 2>@1} out] ||
                $out ne [string trimright [::lib::readfile $::fakedns_resolv]]} {
            set ::fakedns_skip "unshare -m / mount --bind failed: $out"
            fakedns_stop
        }
    }
    testConstraint dnsFixture [expr {$::fakedns_skip eq ""}]
    if {$::fakedns_skip ne ""} {
        puts "[file rootname [file tail [info script]]]: DNS tests skipped:\\
                $::fakedns_skip"
    }
}

# ns_command cmd -- cmd (a list) wrapped to run in the namespace with the
# fake resolv.conf (the pid stays the same: unshare and sh exec).
proc ns_command {cmd} {
    return [list unshare -m sh -c \
            {mount --bind "$0" /etc/resolv.conf && exec "$@"} \
            $::fakedns_resolv {*}$cmd]
}

# ns_server ?args? -- server_start inside the namespace.
proc ns_server {args} {
    set saved $::SOCKS5
    set ::SOCKS5 [ns_command $saved]
    try {
        return [server_start {*}$args]
    } finally {
        set ::SOCKS5 $saved
    }
}

# fakedns_answers name ?type? -- answers the responder has sent for name
# (type 1 = A, 28 = AAAA; default: any type).
proc fakedns_answers {name {type *}} {
    set n 0
    foreach line [split [::lib::readfile $::fakedns_log] \n] {
        if {[string match "* answered $name type $type" $line]} {
            incr n
        }
    }
    return $n
}

proc fakedns_stop {} {
    if {$::fakedns_pid ne ""} {
        catch {exec kill $::fakedns_pid}
        catch {close $::fakedns_pipe}
        set ::fakedns_pid ""
    }
}
