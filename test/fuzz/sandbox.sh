#!/bin/sh
# sandbox.sh CMD [ARG...] - run CMD where its traffic cannot leave:
# a new network namespace (unshare -n) with nothing but its own
# loopback, and a private mount namespace (unshare -m) in which
# /etc/nsswitch.conf says "hosts: files" and /etc/resolv.conf names
# 127.0.0.1, so getaddrinfo() reads /etc/hosts and sends no query.
# Needs root (or user namespaces); exits 77 when it cannot be made.
set -eu
work=${FUZZ_WORK:-/tmp/socks5-fuzz}
if [ "${SOCKS5_FUZZ_INNS:-}" != 1 ]; then
	unshare -n -m true 2>/dev/null || {
		echo "sandbox.sh: cannot make a network namespace" >&2
		exit 77
	}
	SOCKS5_FUZZ_INNS=1 FUZZ_WORK=$work exec unshare -n -m sh "$0" "$@"
fi
ip link set lo up 2>/dev/null || ifconfig lo up 2>/dev/null || true
mkdir -p "$work/etc"
printf 'hosts: files\n' >"$work/etc/nsswitch.conf"
printf 'nameserver 127.0.0.1\noptions attempts:1 timeout:1\n' \
    >"$work/etc/resolv.conf"
mount --bind "$work/etc/nsswitch.conf" /etc/nsswitch.conf
mount --bind "$work/etc/resolv.conf" /etc/resolv.conf
exec "$@"
