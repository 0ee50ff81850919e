#!/bin/sh
# gen_corpus.sh - write the seed corpora from the hex below.
#
#	sh test/fuzz/gen_corpus.sh	(rewrites corpus/parsers, corpus/e2e)
#
# corpus/parsers: inputs of fuzz_parsers (first byte: the target, see
# the comment at the top of fuzz_parsers.c). corpus/e2e: what a client
# sends to `socks5 -i -u users` (afl.sh; the users file has
# alice:secret). The seeds are kept in the repository; this only
# documents and regenerates them.
set -eu
cd "$(dirname "$0")"

# hex (spaces allowed) to bytes, with POSIX printf's octal escapes
bin() {
	h=$(printf '%s' "$*" | tr -d ' \n')
	while [ -n "$h" ]; do
		b=${h%"${h#??}"}
		h=${h#??}
		printf "\\$(printf %03o "$((0x$b))")"
	done
}
# text to hex
hx() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
# a session record: TYPE, then the payload in hex
rec() {
	t=$1
	shift
	p=$(printf '%s' "$*" | tr -d ' \n')
	printf '%02x%04x%s' "$t" "$((${#p} / 2))" "$p"
}

P=corpus/parsers
E=corpus/e2e
rm -rf "$P" "$E"
mkdir -p "$P" "$E"
seed() { d=$1; n=$2; shift 2; bin "$@" >"$d/$n"; }

ALICE="01 05 $(hx alice) 06 $(hx secret)"
GET=$(hx 'GET / HTTP/1.0

')
V4="01 7f000001 0050"
V6="04 00000000000000000000000000000001 01bb"
DN="03 09 $(hx localhost) 0016"

# 0 greeting
seed $P greet-none	00 050100
seed $P greet-both	00 05020002
seed $P greet-zero	00 0500
seed $P greet-v4	00 040100
seed $P greet-many	00 0505 00 01 02 03 ff
# 1 auth
seed $P auth-alice	01 $ALICE
seed $P auth-empty	01 010000
seed $P auth-badver	01 02 01 61 01 62
# 2 request
seed $P req-v4		02 05 01 00 $V4
seed $P req-v6		02 05 01 00 $V6
seed $P req-name	02 05 01 00 $DN
seed $P req-bind	02 05 02 00 01 00000000 0000
seed $P req-udp		02 05 03 00 01 00000000 1388
seed $P req-badatyp	02 05 01 00 05 00
seed $P req-nul		02 05 01 00 03 03 610062 0050
# 3 udp header
seed $P udp-v4		03 000000 $V4 $(hx data)
seed $P udp-v6		03 000000 $V6 $(hx data)
seed $P udp-name	03 000000 $DN $(hx data)
seed $P udp-frag	03 000081 $V4 $(hx data)
seed $P udp-empty	03 000000 03 00 0035
# 4 rules: a 38-byte query, then rule lines
Q="00 7f000001 000000000000000000000000 01 7f000001 000000000000000000000000 0050 01 02"
seed $P rules-basic	04 $Q $(hx 'allow to 127.0.0.0/8
deny from ::1/128 port 1-1023 cmd connect,bind,udp user alice
allow to ::1
deny to fe80::/10 port 80
allow')
seed $P rules-bad	04 $Q $(hx 'allow to 1.2.3.4/33
deny port 5-4
permit
allow cmd connect,,bind
deny user')
# 5 user file: a read-size byte, then the file
seed $P users-basic	05 03 $(hx '# users
alice:secret
bob:x:y') 0d 0a 0d 0a $(hx ':nouser
')
seed $P users-one	05 ff $(hx 'alice:secret')

# 6 session: cfg0 cfg1 records (types: 0 client, 1 remote, 2 poll,
# 3 dgram, 4 dgram-other, 5 dgram-remote, 6 lookup, 7 time, 8 helper,
# 9 peer, 10 steal, 11 bulk); once a session is over, the next records
# play a new one
seed $P sess-connect	06 00 00 \
	$(rec 0 050100 05 01 00 $V4 $GET) $(rec 1 $(hx 'HTTP/1.0 200 OK')) \
	$(rec 0) $(rec 1)
seed $P sess-inprogress	06 00 09 \
	$(rec 0 050100) $(rec 0 05 01 00 $V6) $(rec 2 0000 02) \
	$(rec 0 $(hx hello)) $(rec 1 $(hx world)) $(rec 1) $(rec 0)
seed $P sess-auth	06 01 00 \
	$(rec 0 050102 $ALICE 05 01 00 $V4) $(rec 1 $(hx hi)) $(rec 0)
seed $P sess-authfail	06 01 00 \
	$(rec 0 050102 01 05 $(hx alice) 03 $(hx bad)) $(rec 7 0100) \
	$(rec 0)
seed $P sess-authpace	06 01 00 \
	$(rec 0 050102 01 05 $(hx alice) 03 $(hx bad)) $(rec 0) \
	$(rec 0 050102 01 03 $(hx bob) 01 $(hx y)) $(rec 7 0040) $(rec 0)
seed $P sess-name	06 00 01 \
	$(rec 0 050100 05 01 00 $DN) \
	$(rec 6 02 00 7f000001000000000000000000000000 \
	    01 00000000000000000000000000000001) \
	$(rec 2 0000 02) $(rec 1 $(hx x))
seed $P sess-queued	06 00 81 \
	$(rec 0 050100 05 01 00 $DN) $(rec 8) $(rec 6 01 00 7f000001) \
	$(rec 7 ffff)
seed $P sess-abandon	06 00 80 \
	$(rec 0 050100 05 01 00 $DN) $(rec 0 $(hx early)) $(rec 7 0040) \
	$(rec 6 01 00 7f000001) $(rec 0) $(rec 1 $(hx x)) $(rec 1)
seed $P sess-helperdies	06 00 00 \
	$(rec 0 050100 05 01 00 $DN) $(rec 8 01 00) $(rec 8 05 01) \
	$(rec 8 09 00) $(rec 7 0040) $(rec 8 03) $(rec 6 01 00 7f000001) \
	$(rec 0 $(hx late))
seed $P sess-waitreset	06 00 00 \
	$(rec 0 050100 05 01 00 $DN) $(rec 2 11)
seed $P sess-bind	06 00 00 \
	$(rec 0 050100 05 02 00 01 7f000001 0000) $(rec 0 $(hx early)) \
	$(rec 9 02) $(rec 1 $(hx 'from peer')) $(rec 0) $(rec 1)
seed $P sess-rules	06 10 00 \
	$(rec 0 050100 05 01 00 01 0a000001 0050)
seed $P sess-split	06 80 42 \
	$(rec 0 050100 05 01 00 $V4 $GET) $(rec 1 $(hx reply)) $(rec 1) \
	$(rec 0)
seed $P sess-udp	06 00 00 \
	$(rec 0 050100 05 03 00 01 00000000 0000) \
	$(rec 3 0000 000000 $V4 $(hx ping)) \
	$(rec 5 00 7f000001 0050 $(hx pong))

seed $P sess-bulk	06 00 40 \
	$(rec 0 050100 05 01 00 $V4) $(rec 11 00 64) $(rec 11 01 64) \
	$(rec 2 03030303030303) $(rec 2 03030303030303) $(rec 0) $(rec 1)
seed $P sess-bindfull	06 00 00 \
	$(rec 0 050100 05 02 00 01 7f000001 0000) $(rec 11 00 50) \
	$(rec 9 02) $(rec 2 03030303030303)
seed $P sess-steal	06 00 40 \
	$(rec 10) $(rec 0 050100 05 01 00 $V4) $(rec 11 01 40) \
	$(rec 11 00 40) $(rec 2 03030303030303)

# 7 udp: the association is made by the target; records follow
seed $P udp-plain	07 00 00 $(rec 3 0000 000000 $V4 $(hx one))
seed $P udp-frags	07 00 00 \
	$(rec 3 0000 000001 $V4 $(hx aa)) $(rec 3 0000 000002 $V4 $(hx bb)) \
	$(rec 3 0000 000083 $V4 $(hx cc))
seed $P udp-fraggap	07 00 00 \
	$(rec 3 0000 000001 $V4 $(hx aa)) $(rec 3 0000 000003 $V4 $(hx bb)) \
	$(rec 7 0200) $(rec 3 0000 000001 $V6 $(hx cc))
seed $P udp-name	07 00 00 \
	$(rec 3 0000 000000 $DN $(hx q1)) $(rec 3 0000 000000 03 03 $(hx foo) \
	    0035 $(hx q2)) $(rec 6 01 00 7f000001) \
	$(rec 3 0000 000000 $DN $(hx q3))
seed $P udp-toolong	07 00 00 \
	$(rec 3 40fc 000001 $V4 $(hx a)) $(rec 3 4010 000082 $V4 $(hx b))
seed $P udp-steal	07 00 00 \
	$(rec 10) $(rec 3 0000 000001 $V4 $(hx a)) \
	$(rec 3 0000 000000 $DN $(hx q))
seed $P udp-fixedport	07 10 40 \
	$(rec 4 0000 000000 $V4 $(hx x)) $(rec 3 8000 000000 $V4 $(hx y)) \
	$(rec 5 01 00000000000000000000000000000001 0035 $(hx z))

# e2e: client bytes for `socks5 -i -u users` (alice:secret)
seed $E connect-v4	050102 $ALICE 05 01 00 $V4 $GET
seed $E connect-v6	05020002 $ALICE 05 01 00 $V6 $(hx data)
seed $E connect-name	050102 $ALICE 05 01 00 $DN
seed $E connect-far	050102 $ALICE 05 01 00 01 08080808 0035
seed $E bind		050102 $ALICE 05 02 00 01 7f000001 0000 $(hx x)
seed $E udp		050102 $ALICE 05 03 00 01 00000000 0000
seed $E badauth		050102 01 05 $(hx alice) 05 $(hx wrong)
seed $E noauth		050100 05 01 00 $V4
seed $E badver		040100
seed $E nomethods	0500
seed $E badatyp		050102 $ALICE 05 01 00 07 00
seed $E badcmd		050102 $ALICE 05 09 00 $V4
seed $E namenul		050102 $ALICE 05 01 00 03 03 610062 0050
echo "gen_corpus.sh: $(ls $P | wc -l) parser seeds, $(ls $E | wc -l) e2e seeds"
