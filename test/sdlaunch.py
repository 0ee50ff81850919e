#!/usr/bin/env python3
"""sdlaunch.py -- start a program the way systemd's socket activation does.

Usage: python3 sdlaunch.py [--dual] ADDR:PORT|[ADDR]:PORT ... -- PROGRAM ARGS

Opens a listening TCP socket for each address (port 0: the kernel picks),
IPv6 ones dual-stack with --dual (IPV6_V6ONLY 0, so IPv4 clients arrive as
::ffff:a.b.c.d), puts them on descriptors 3, 4, ..., sets LISTEN_FDS to
their count and LISTEN_PID to this process's pid, and execs PROGRAM in
this same process, so that LISTEN_PID is PROGRAM's pid. The tests use it
where systemd-socket-activate cannot make the socket they need.
"""
import fcntl
import os
import socket
import sys


def listener(spec, dual):
    host, _, port = spec.rpartition(':')
    fam = socket.AF_INET
    if host.startswith('['):
        host = host[1:-1]
        fam = socket.AF_INET6
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
    s.bind((host, int(port)))
    s.listen(128)
    return s


def main(argv):
    dual = False
    if argv and argv[0] == '--dual':
        dual = True
        argv = argv[1:]
    if '--' not in argv:
        sys.exit(__doc__)
    cut = argv.index('--')
    specs, cmd = argv[:cut], argv[cut + 1:]
    socks = [listener(sp, dual) for sp in specs]
    # out of the way of 3, 4, ... first, then into place
    high = []
    for s in socks:
        high.append(fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100))
        s.close()
    for i, h in enumerate(high):
        os.dup2(h, 3 + i)
        os.set_inheritable(3 + i, True)
        os.close(h)
    os.environ['LISTEN_FDS'] = str(len(specs))
    os.environ['LISTEN_PID'] = str(os.getpid())
    os.execvp(cmd[0], cmd)


if __name__ == '__main__':
    main(sys.argv[1:])
