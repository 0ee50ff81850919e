#!/bin/sh
# test/bench/run.sh - benchmark ./socks5 (one process, and -w 2) and
# socks5-small (the size-optimized build of test/small.sh with every
# feature in, one process, the same options as socks5) against
# microsocks, Dante and a direct (no proxy) baseline, on loopback only.
# Run by hand:
#
#     sh test/bench/run.sh [--quick] [--only NAME] [--keep] [--no-rerun]
#
#   --quick      one repetition, short durations (about a minute)
#   --only NAME  one row or group: stream stream-up stream-down streams
#                streams-up streams-down sessions sessions-seq sessions-c32
#                rtt cpu udp idle memory rss-session rss-idle size
#   --keep       keep the work directory (raw loadgen output, logs)
#   --no-rerun   do not rerun a figure whose spread is over 25 %
#
# Everything runs on 127.0.0.1: the load generator (test/bench/loadgen.c)
# runs its own target (sink/source/echo) in a forked child. Each row is
# measured for every server in turn, servers alternating, three
# repetitions (rotating the order), and the median is printed with the
# spread of the repetitions, (max - min) / median. A figure whose spread
# is over 25 % is measured again (three more repetitions of that server
# alone); the set with the smaller spread is kept, both are printed, and
# a figure still over 25 % is marked with a '*'. A fresh server is
# started for every measurement and stopped (by pid) after it. Every
# loadgen run has its own time bound (alarm), every wait here too.

set -u

cd "$(dirname "$0")/../.." || exit 1
TOP=$(pwd)

QUICK=0
ONLY=
KEEP=0
RERUN=1
SPREADMAX=25
while [ $# -gt 0 ]; do
	case $1 in
	--quick)	QUICK=1 ;;
	--only)		shift; ONLY=${1:-} ;;
	--only=*)	ONLY=${1#--only=} ;;
	--keep)		KEEP=1 ;;
	--no-rerun)	RERUN=0 ;;
	-h|--help)	sed -n '2,27p' "$0"; exit 0 ;;
	*)		echo "run.sh: unknown option $1" >&2; exit 64 ;;
	esac
	shift
done

if [ $QUICK = 1 ]; then
	REPS=1 T=1 W=0.3 RTT_T=1 BULK=268435456 HOLD=1000 NSTREAMS=50
else
	REPS=3 T=3 W=0.5 RTT_T=2 BULK=2147483648 HOLD=1000 NSTREAMS=50
fi

# which groups run
want() {
	[ -z "$ONLY" ] && return 0
	case $ONLY in
	"$1"|"$1"-*)	return 0 ;;
	esac
	case "$1:$ONLY" in
	memory:rss-session|memory:rss-idle|memory:hold) return 0 ;;
	esac
	return 1
}
case $ONLY in
''|stream|stream-up|stream-down|streams|streams-up|streams-down|\
sessions|sessions-seq|sessions-c32|rtt|rtt-p50|cpu|udp|idle|memory|hold|\
rss-session|rss-idle|size) ;;
*)	echo "run.sh: unknown row $ONLY" >&2; exit 64 ;;
esac

WORK=$(mktemp -d /tmp/socks5-bench.XXXXXX) || exit 1
RES=$WORK/res
RAW=$WORK/raw
mkdir -p "$RES" "$RAW"
SPID=
LGPID=
HOLDFD=0

cleanup() {
	if [ $HOLDFD = 1 ]; then
		exec 8>&-
		HOLDFD=0
	fi
	if [ -n "$LGPID" ]; then
		kill -TERM "$LGPID" 2>/dev/null
		wait "$LGPID" 2>/dev/null
		LGPID=
	fi
	stop_server
	if [ $KEEP = 1 ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap 'cleanup' EXIT
trap 'exit 130' INT TERM HUP

say() { printf '%s\n' "$*" >&2; }

# ------------------------------------------------------------------
# Descriptors: 1000 held sessions need > 2000 in the server and in
# loadgen. The project raises its own soft limit to the hard one; the
# peers inherit ours.

hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then
	ulimit -n 65536 2>/dev/null
else
	ulimit -n "$hard" 2>/dev/null
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4200 ]; then
	ulimit -Hn 65536 2>/dev/null && ulimit -n 65536 2>/dev/null
fi
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt 4200 ]; then
	HOLD=$(( (NOFILE - 100) / 4 ))
	say "run.sh: descriptor limit $NOFILE: holding only $HOLD sessions"
fi

# ------------------------------------------------------------------
# Build: the project with its Makefile (cc -O2), loadgen, the -Os
# stripped binary for the size row, and the size-optimized builds of
# test/small.sh: socks5-small (every feature: a column of its own) and,
# for the size rows only, the CONNECT-only one.

say "== build"
make >/dev/null || { say "run.sh: make failed"; exit 1; }
# a private copy: a rebuild of ./socks5 during the run changes nothing
cp socks5 "$WORK/socks5" || exit 1
CC=${CC:-cc}
$CC -std=c99 -O2 -Wall -pthread -o "$WORK/loadgen" test/bench/loadgen.c ||
	{ say "run.sh: cannot build loadgen"; exit 1; }
LG=$WORK/loadgen
if command -v gcc >/dev/null 2>&1; then
	gcc -Os -o "$WORK/socks5-Os" socks5.c && strip "$WORK/socks5-Os" ||
	    rm -f "$WORK/socks5-Os"
fi
# socks5-small: a private copy too, built straight into $WORK
SMALL_FLAGS=
if sh test/small.sh "$CC" "" "$WORK/socks5-small" >"$WORK/small.log" 2>&1
then
	SMALL_FLAGS=$(sed -n '1s/^small: //p' "$WORK/small.log")
else
	say "run.sh: test/small.sh failed: the socks5-small column is skipped"
	tail -5 "$WORK/small.log" >&2
	rm -f "$WORK/socks5-small"
fi
if want size && ! sh test/small.sh "$CC" "udp bind rules auth" \
    "$WORK/socks5-small-connect" >>"$WORK/small.log" 2>&1; then
	say "run.sh: test/small.sh failed for the CONNECT-only build"
	rm -f "$WORK/socks5-small-connect"
fi

# ------------------------------------------------------------------
# Peers: install when missing and root, else skip with a message.

apt_install() {
	[ "$(id -u)" = 0 ] || return 1
	command -v apt-get >/dev/null 2>&1 || return 1
	say "run.sh: installing $1 with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" \
	    >/dev/null 2>&1 && return 0
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" \
	    >/dev/null 2>&1
}

find_bin() {
	for p in "$@"; do
		[ -x "$p" ] && { echo "$p"; return 0; }
	done
	return 1
}

MICROSOCKS_V=
DANTE_V=
MICROSOCKS=$(find_bin /usr/bin/microsocks /usr/local/bin/microsocks)
[ -z "$MICROSOCKS" ] && apt_install microsocks &&
	MICROSOCKS=$(find_bin /usr/bin/microsocks)
DANTED=$(find_bin /usr/sbin/danted /usr/bin/danted /usr/local/sbin/danted)
[ -z "$DANTED" ] && apt_install dante-server &&
	DANTED=$(find_bin /usr/sbin/danted)

# socks5-w2 is ./socks5 -w 2: a supervisor and two workers, each with
# its own SO_REUSEPORT listening socket on Linux.
SERVERS="socks5 socks5-w2"
# socks5-small is test/small.sh's build with every feature: it runs as
# socks5 does (one process, the same options)
[ -x "$WORK/socks5-small" ] && SERVERS="$SERVERS socks5-small"
if [ -n "$MICROSOCKS" ]; then
	SERVERS="$SERVERS microsocks"
else
	say "run.sh: microsocks not available: its column is skipped"
fi
if [ -n "$DANTED" ]; then
	SERVERS="$SERVERS dante"
	# Dante stops its children itself on SIGTERM; pkill is never used
	# here, see stop_server.
else
	say "run.sh: danted not available: its column is skipped"
fi
SERVERS="$SERVERS direct"

# ------------------------------------------------------------------
# Servers.

# pids of all descendants of $1
descendants() {
	ps -e -o pid= -o ppid= 2>/dev/null | awk -v root="$1" '
	{ par[$1] = $2 }
	END {
		t[root] = 1
		do {
			more = 0
			for (k in par)
				if (!(k in t) && (par[k] in t)) {
					t[k] = 1
					more = 1
				}
		} while (more)
		for (k in t)
			if (k != root)
				print k
	}'
}

# SOCKS5_OPT: more options for socks5 (-c 64 in the idle group); the
# peers have no session limit to set (see the notes at the end).
SOCKS5_OPT=

start_server() {	# name [taskset prefix words...]
	name=$1
	shift
	SPID=
	PORT=
	[ "$name" = direct ] && return 0
	PORT=$("$LG" freeport) || return 1
	log=$WORK/$name.log
	case $name in
	socks5)
		"$@" "$WORK/socks5" -p "$PORT" $SOCKS5_OPT >>"$log" 2>&1 &
		SPID=$! ;;
	socks5-w2)
		"$@" "$WORK/socks5" -w 2 -p "$PORT" $SOCKS5_OPT >>"$log" 2>&1 &
		SPID=$! ;;
	socks5-small)
		"$@" "$WORK/socks5-small" -p "$PORT" $SOCKS5_OPT >>"$log" 2>&1 &
		SPID=$! ;;
	microsocks)
		"$@" "$MICROSOCKS" -i 127.0.0.1 -p "$PORT" >>"$log" 2>&1 &
		SPID=$! ;;
	dante)
		cat >"$WORK/danted.conf" <<EOF
logoutput: stderr
internal: 127.0.0.1 port = $PORT
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
	from: 127.0.0.0/8 to: 127.0.0.0/8
}
socks pass {
	from: 127.0.0.0/8 to: 127.0.0.0/8
	command: bind connect udpassociate bindreply udpreply
}
EOF
		"$@" "$DANTED" -f "$WORK/danted.conf" -p "$WORK/danted.pid" \
		    >>"$log" 2>&1 &
		SPID=$! ;;
	esac
	if ! "$LG" -x "$PORT" -t 10 probe >/dev/null 2>&1; then
		say "run.sh: $name did not answer on port $PORT (see below)"
		tail -5 "$log" >&2
		stop_server
		return 1
	fi
	return 0
}

stop_server() {
	[ -n "$SPID" ] || return 0
	kids=$(descendants "$SPID")
	kill -TERM "$SPID" 2>/dev/null
	i=0
	while kill -0 "$SPID" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -0 "$SPID" 2>/dev/null && kill -KILL "$SPID" 2>/dev/null
	wait "$SPID" 2>/dev/null
	# children it left behind (started by us, through it): by pid
	for k in $kids; do
		[ -d "/proc/$k" ] || continue
		grep -q -e danted -e socks5 -e microsocks "/proc/$k/cmdline" \
		    2>/dev/null || continue
		kill -TERM "$k" 2>/dev/null
		sleep 0.2
		[ -d "/proc/$k" ] && kill -KILL "$k" 2>/dev/null
	done
	SPID=
}

# CPU ticks of a process and its descendants (live ones, and reaped
# ones through cutime/cstime).
cpu_ticks() {
	for p in "$1" $(descendants "$1"); do
		cat "/proc/$p/stat" 2>/dev/null
	done | awk '{ sub(/^.*\) /, ""); s += $12 + $13 + $14 + $15 }
	    END { print s + 0 }'
}

# Sum of a /proc/PID/status or smaps_rollup field (kB) over pids.
kb_sum() {	# field file pids...
	f=$1
	file=$2
	shift 2
	for p in "$@"; do
		cat "/proc/$p/$file" 2>/dev/null
	done | awk -v f="$f:" '$1 == f { s += $2 } END { print s + 0 }'
}

# ------------------------------------------------------------------
# Results: one value per line in $RES/ROW.SERVER; medians at the end.

get() {	# key file
	awk -F= -v k="$1" '$1 == k { print $2; exit }' "$2"
}

put() {	# row server value
	[ -n "$3" ] && echo "$3" >>"$RES/$1.$2"
}

median() {	# file
	[ -s "$1" ] || { echo; return; }
	sort -g "$1" | awk '{ v[NR] = $1 }
	    END { if (NR % 2) print v[(NR + 1) / 2];
		  else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# servers in the order for repetition $1 (rotated each time)
order() {
	set -- $1 $SERVERS
	r=$(( ($1 - 1) % ($# - 1) ))
	shift
	i=0
	while [ $i -lt "$r" ]; do
		first=$1
		shift
		set -- "$@" "$first"
		i=$((i + 1))
	done
	echo "$@"
}

# run one measurement: group server rep
measure() {
	g=$1
	s=$2
	rep=$3
	out=$RAW/$g.$s.$rep
	pin=
	[ "$g" = rtt ] && pin="taskset -c 0"
	case $g:$s in
	udp:microsocks|cpu:direct|memory:direct|idle:direct)
		return 0 ;;
	esac
	SOCKS5_OPT=
	[ "$g" = idle ] && SOCKS5_OPT="-c 64"
	start_server "$s" $pin || return 0
	xp=
	[ -n "$PORT" ] && xp="-x $PORT"
	case $g in
	stream)
		$LG $xp -t "$T" -w "$W" stream >"$out" 2>&1
		put stream-up "$s" "$(get up_gibps "$out")"
		put stream-down "$s" "$(get down_gibps "$out")"
		;;
	streams)
		c0=
		[ -n "$SPID" ] && c0=$(cpu_ticks "$SPID")
		$LG $xp -t "$T" -w "$W" streams $NSTREAMS >"$out" 2>&1
		put streams-up "$s" "$(get up_gibps "$out")"
		put streams-down "$s" "$(get down_gibps "$out")"
		put streams-up-fair "$s" "$(get up_fair "$out")"
		put streams-down-fair "$s" "$(get down_fair "$out")"
		# CPU per GiB at $NSTREAMS streams: every byte of the run
		# (warm-up included) against the server's CPU over the run
		bu=$(get up_total_bytes "$out")
		bd=$(get down_total_bytes "$out")
		if [ -n "$c0" ] && [ -n "$bu" ] && [ -n "$bd" ]; then
			sleep 0.2
			c1=$(cpu_ticks "$SPID")
			hz=$(getconf CLK_TCK)
			put cpu50 "$s" "$(awk -v a="$c0" -v b="$c1" -v hz="$hz" \
			    -v u="$bu" -v d="$bd" 'BEGIN { printf "%.4f",
			    (b - a) / hz / ((u + d) / 1073741824) }')"
			echo "cpu_ticks=$((c1 - c0)) hz=$hz" >>"$out"
		fi
		;;
	sessions)
		$LG $xp -t "$T" -w "$W" -c 32 sessions >"$out" 2>&1
		put sessions-seq "$s" "$(get seq_per_s "$out")"
		put sessions-c32 "$s" "$(get conc_per_s "$out")"
		put sessions-err "$s" \
		    "$(( $(get seq_errors "$out") + $(get conc_errors "$out") ))"
		;;
	rtt)
		$pin $LG $xp -t "$RTT_T" rtt >"$out" 2>&1
		put rtt-p50 "$s" "$(get rtt_p50_us "$out")"
		put rtt-p99 "$s" "$(get rtt_p99_us "$out")"
		;;
	udp)
		$LG $xp -t "$T" -w "$W" -W 32 udp >"$out" 2>&1
		put udp "$s" "$(get udp_dgram_per_s "$out")"
		put udp-loss "$s" "$(get udp_loss_pct "$out")"
		;;
	cpu)
		c0=$(cpu_ticks "$SPID")
		$LG $xp bulk "$BULK" >"$out" 2>&1
		sleep 0.2
		c1=$(cpu_ticks "$SPID")
		hz=$(getconf CLK_TCK)
		if grep -q '^bulk_bytes=' "$out"; then
			put cpu "$s" "$(awk -v a="$c0" -v b="$c1" -v hz="$hz" \
			    -v n="$BULK" 'BEGIN { printf "%.4f",
			    (b - a) / hz / (2 * n / 1073741824) }')"
			echo "cpu_ticks=$((c1 - c0)) hz=$hz" >>"$out"
		fi
		;;
	idle)
		measure_idle "$s" "$out"
		;;
	memory)
		measure_memory "$s" "$out"
		;;
	esac
	if grep -q 'loadgen:' "$out" 2>/dev/null; then
		say "run.sh: $g/$s: $(grep 'loadgen:' "$out" | head -1)"
	fi
	stop_server
}

# the whole process tree: the server and all its descendants
tree_of() {
	echo "$1" $(descendants "$1")
}

# idle footprint (socks5 with -c 64): PSS and RSS of the whole tree,
# from /proc/PID/smaps_rollup, 1 s after the server answered
measure_idle() {
	s=$1
	out=$2
	sleep 1
	tree=$(tree_of "$SPID")
	p0=$(kb_sum Pss smaps_rollup $tree)
	r0=$(kb_sum Rss smaps_rollup $tree)
	{
		echo "tree=$tree"
		echo "tree_pss_kb=$p0"
		echo "tree_rss_kb=$r0"
		for p in $tree; do
			echo "pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" \
			    2>/dev/null) pss_kb=$(kb_sum Pss smaps_rollup $p)" \
			    "rss_kb=$(kb_sum Rss smaps_rollup $p)"
		done
	} >"$out"
	put pss-idle64 "$s" "$p0"
	put rss-idle64 "$s" "$r0"
}

# memory rows (defaults: socks5 -c 1024): PSS and RSS of the whole tree
# idle, then with $HOLD idle sessions held; per held session
measure_memory() {
	s=$1
	out=$2
	sleep 0.5
	tree=$(tree_of "$SPID")
	r0=$(kb_sum Rss smaps_rollup $tree)
	p0=$(kb_sum Pss smaps_rollup $tree)
	rm -f "$WORK/hold.fifo"
	mkfifo "$WORK/hold.fifo" || return 0
	"$LG" -x "$PORT" -t 300 hold "$HOLD" <"$WORK/hold.fifo" \
	    >"$out.hold" 2>&1 &
	LGPID=$!
	exec 8>"$WORK/hold.fifo"
	HOLDFD=1
	i=0
	while ! grep -qs '^held=' "$out.hold" && kill -0 "$LGPID" 2>/dev/null &&
	    [ $i -lt 1200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	sleep 1
	tree=$(tree_of "$SPID")
	r1=$(kb_sum Rss smaps_rollup $tree)
	p1=$(kb_sum Pss smaps_rollup $tree)
	nproc=$(echo $tree | wc -w)
	held=$(get held "$out.hold")
	exec 8>&-
	HOLDFD=0
	i=0
	while kill -0 "$LGPID" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -0 "$LGPID" 2>/dev/null && kill -TERM "$LGPID"
	wait "$LGPID" 2>/dev/null
	LGPID=
	{
		echo "tree_rss0_kb=$r0"
		echo "tree_rss1_kb=$r1"
		echo "tree_pss0_kb=$p0"
		echo "tree_pss1_kb=$p1"
		echo "tree_procs_held=$nproc"
		cat "$out.hold"
	} >"$out"
	put rss-idle "$s" "$r0"
	put pss-idle "$s" "$p0"
	if [ -n "$held" ] && [ "$held" -gt 0 ]; then
		[ "$held" -lt "$HOLD" ] &&
			say "run.sh: $s: only $held of $HOLD sessions held"
		put rss-session "$s" "$(awk -v a="$r0" -v b="$r1" \
		    -v n="$held" 'BEGIN { printf "%.2f", (b - a) / n }')"
		put pss-session "$s" "$(awk -v a="$p0" -v b="$p1" \
		    -v n="$held" 'BEGIN { printf "%.2f", (b - a) / n }')"
		put procs-held "$s" "$nproc"
		put held "$s" "$held"
	fi
}

# rows each group measures (for the spread and its reruns)
group_keys() {
	case $1 in
	stream)		echo stream-up stream-down ;;
	streams)	echo streams-up streams-down cpu50 ;;
	sessions)	echo sessions-seq sessions-c32 ;;
	rtt)		echo rtt-p50 ;;
	cpu)		echo cpu ;;
	udp)		echo udp ;;
	idle)		echo pss-idle64 rss-idle64 ;;
	memory)		echo rss-idle pss-idle rss-session pss-session ;;
	esac
}

# spread of a file of repetitions: (max - min) / |median|, in percent
spread() {
	[ -s "$1" ] || { echo; return; }
	sort -g "$1" | awk '{ v[NR] = $1 }
	    END {
		if (NR < 2)
			exit
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		if (m < 0)
			m = -m
		if (m == 0)
			print (v[NR] == v[1] ? 0 : 100)
		else
			printf "%.1f\n", 100 * (v[NR] - v[1]) / m
	}'
}

# over SPREAD: is a spread (percent) over $SPREADMAX?
over() {
	awk -v a="$1" -v b="$SPREADMAX" 'BEGIN { exit !(a > b) }'
}

# A server's figures of group $1 whose spread is over $SPREADMAX: measure
# that server $REPS more times; per figure keep the set with the smaller
# spread (the other stays in $RES/KEY.SERVER.first or .rerun).
rerun_spread() {
	g=$1
	for sv in $SERVERS; do
		bad=
		for key in $(group_keys "$g"); do
			sp=$(spread "$RES/$key.$sv")
			[ -n "$sp" ] && over "$sp" && bad="$bad $key"
		done
		[ -n "$bad" ] || continue
		say "run.sh: $g/$sv: spread over $SPREADMAX %:$bad; rerun"
		for key in $bad; do
			mv "$RES/$key.$sv" "$RES/$key.$sv.first"
		done
		for key in $(group_keys "$g"); do
			[ -f "$RES/$key.$sv" ] && mv "$RES/$key.$sv" "$RES/$key.$sv.kept"
		done
		rr=1
		while [ $rr -le $REPS ]; do
			measure "$g" "$sv" "rerun$rr"
			rr=$((rr + 1))
		done
		for key in $(group_keys "$g"); do
			if [ -f "$RES/$key.$sv.kept" ]; then
				# not over: its first set stays; the rerun's aside
				[ -f "$RES/$key.$sv" ] &&
				    mv "$RES/$key.$sv" "$RES/$key.$sv.extra"
				mv "$RES/$key.$sv.kept" "$RES/$key.$sv"
				continue
			fi
			[ -f "$RES/$key.$sv.first" ] || continue
			a=$(spread "$RES/$key.$sv.first")
			b=$(spread "$RES/$key.$sv")
			if [ -z "$b" ] || ! awk -v a="$a" -v b="$b" \
			    'BEGIN { exit !(b < a) }'; then
				[ -f "$RES/$key.$sv" ] &&
				    mv "$RES/$key.$sv" "$RES/$key.$sv.rerun"
				mv "$RES/$key.$sv.first" "$RES/$key.$sv"
				kept=first
			else
				kept=rerun
			fi
			echo "$key $sv first=$a% rerun=${b:--}% kept=$kept" \
			    >>"$RES/reruns"
		done
	done
}

# ------------------------------------------------------------------
# Run.

GITREV=$(git rev-parse --short HEAD 2>/dev/null || echo "not a git tree")
git diff --quiet HEAD -- socks5.c socks5.h 2>/dev/null ||
	GITREV="$GITREV + uncommitted changes to socks5.c/socks5.h"
GITREV="$GITREV, socks5.c $(wc -l <socks5.c | tr -d ' ') lines"
[ -n "$MICROSOCKS" ] && MICROSOCKS_V="microsocks $(dpkg-query -W \
    -f '${Version}' microsocks 2>/dev/null)"
[ -n "$DANTED" ] && DANTE_V="$("$DANTED" -v 2>/dev/null | head -1 |
    awk '{ print $1, $2 }')"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

say "== environment"
say "$(uname -sr), $(nproc 2>/dev/null) CPUs, $(gcc --version 2>/dev/null | head -1)"
say "servers: $SERVERS; repetitions: $REPS; descriptors: $NOFILE"
say "load average at start: $LOAD0"
busy=$(ps -e -o pcpu= -o pid= -o args= --sort=-pcpu 2>/dev/null |
    awk '$1 > 5 { print }' | head -5)
[ -n "$busy" ] && say "run.sh: warning: other busy processes:
$busy"

START=$(date +%s)
for g in stream streams sessions rtt cpu udp idle memory; do
	want $g || continue
	say "== $g (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	rep=1
	while [ $rep -le $REPS ]; do
		for s in $(order $rep); do
			measure "$g" "$s" "$rep"
		done
		rep=$((rep + 1))
	done
	[ $RERUN = 1 ] && [ $REPS -gt 1 ] && rerun_spread "$g"
done

# size: nothing to run
if want size; then
	[ -f "$WORK/socks5-Os" ] && put size socks5 \
	    "$(wc -c <"$WORK/socks5-Os" | tr -d ' ')"
	[ -f "$WORK/socks5-small" ] && put size socks5-small \
	    "$(wc -c <"$WORK/socks5-small" | tr -d ' ')"
	# the CONNECT-only build, and microsocks stripped (a copy), for
	# the line after the table
	[ -f "$WORK/socks5-small-connect" ] && put size-connect socks5-small \
	    "$(wc -c <"$WORK/socks5-small-connect" | tr -d ' ')"
	if [ -n "$MICROSOCKS" ]; then
		cp "$MICROSOCKS" "$WORK/microsocks-stripped" &&
		    { ${STRIP:-strip} "$WORK/microsocks-stripped" 2>/dev/null ||
		    true; } &&
		    put size-connect microsocks \
		    "$(wc -c <"$WORK/microsocks-stripped" | tr -d ' ')"
	fi
	[ -n "$MICROSOCKS" ] && put size microsocks \
	    "$(wc -c <"$MICROSOCKS" | tr -d ' ')"
	[ -n "$DANTED" ] && put size dante "$(wc -c <"$DANTED" | tr -d ' ')"
fi

# ------------------------------------------------------------------
# Table.

COLS="socks5 socks5-w2 socks5-small microsocks dante direct"

med() { median "$RES/$1.$2"; }

# fmt value format -> formatted, or "-" when empty
fmt() {
	[ -z "$1" ] && { echo "-"; return; }
	awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }'
}

# best peer of a row: max (hi) or min (lo) of microsocks and dante
best() {	# row hi|lo
	m=$(med "$1" microsocks)
	d=$(med "$1" dante)
	awk -v m="$m" -v d="$d" -v b="$2" 'BEGIN {
		best = ""
		if (m != "") best = m
		if (d != "" && (best == "" || (b == "hi" ? d > best : d < best)))
			best = d
		print best
	}'
}

# ratio row server better(hi|lo) -> server / best peer
ratio() {
	v=$(med "$1" "$2")
	bp=$(best "$1" "$3")
	awk -v s="$v" -v b="$bp" 'BEGIN {
		if (s == "" || b == "" || b == 0) { print "-"; exit }
		printf "%.2fx", s / b
	}'
}

W1=38
W2=14
# label, the six columns of $COLS, then socks5/best -w 2/best small/best
LINEFMT="%-${W1}s %${W2}s %${W2}s %${W2}s %${W2}s %${W2}s %${W2}s"
LINEFMT="$LINEFMT %11s %9s %10s\n"
line() {
	printf "$LINEFMT" "$@"
}

# row: key label format better [extra: pct|fair]
row() {
	key=$1 label=$2 f=$3 better=$4 extra=${5:-}
	[ -n "$(cat "$RES/$key".* 2>/dev/null)" ] || return 0
	set --
	for sv in $COLS; do
		v=$(med "$key" "$sv")
		c=$(fmt "$v" "$f")
		if [ -n "$v" ] && [ "$extra" = pct ] && [ "$sv" != direct ]; then
			dv=$(med "$key" direct)
			[ -n "$dv" ] && c="$c ($(awk -v a="$v" -v b="$dv" \
			    'BEGIN { printf "%.0f%%", 100 * a / b }'))"
		fi
		if [ -n "$v" ] && [ "$extra" = fair ]; then
			fv=$(med "$key-fair" "$sv")
			[ -n "$fv" ] && c="$c f=$(fmt "$fv" %.2f)"
		fi
		sp=$(spread "$RES/$key.$sv")
		[ -n "$sp" ] && over "$sp" && c="$c*"
		set -- "$@" "$c"
	done
	line "$label" "$@" "$(ratio "$key" socks5 "$better")" \
	    "$(ratio "$key" socks5-w2 "$better")" \
	    "$(ratio "$key" socks5-small "$better")"
}

# spread row: (max - min) / median of the repetitions kept, percent
srow() {
	key=$1 label=$2
	[ "$key" = size ] && return 0
	[ -n "$(cat "$RES/$key".* 2>/dev/null)" ] || return 0
	set --
	for sv in $COLS; do
		sp=$(spread "$RES/$key.$sv")
		c=-
		if [ -n "$sp" ]; then
			c=$(awk -v a="$sp" 'BEGIN { printf "%.0f%%", a }')
			over "$sp" && c="$c*"
		fi
		set -- "$@" "$c"
	done
	line "$label" "$@" "" "" ""
}

# ROWS: key|label|format|better|extra, one a line
ROWS="stream-up|single-stream up GiB/s (% direct)|%.2f|hi|pct
stream-down|single-stream down GiB/s (% direct)|%.2f|hi|pct
streams-up|$NSTREAMS streams up GiB/s (f=min/max)|%.2f|hi|fair
streams-down|$NSTREAMS streams down GiB/s (f=min/max)|%.2f|hi|fair
sessions-seq|sessions/s sequential|%.0f|hi|
sessions-c32|sessions/s 32 concurrent|%.0f|hi|
rtt-p50|64B RTT p50 us, 1 CPU (lower better)|%.1f|lo|
cpu|CPU s/GiB, 1 stream (lower better)|%.3f|lo|
cpu50|CPU s/GiB, $NSTREAMS streams (lower better)|%.3f|lo|
udp|UDP 512B datagrams/s (window 32)|%.0f|hi|
pss-idle64|idle tree PSS KiB, -c 64 (lower b.)|%.0f|lo|
rss-idle64|idle tree RSS KiB, -c 64 (lower b.)|%.0f|lo|
pss-idle|idle tree PSS KiB, defaults|%.0f|lo|
rss-idle|idle tree RSS KiB, defaults|%.0f|lo|
rss-session|tree RSS KiB/held session (lower b.)|%.2f|lo|
pss-session|tree PSS KiB/held session (lower b.)|%.2f|lo|
size|binary bytes, stripped (lower better)|%.0f|lo|"

each_row() {	# function: called with key label format better extra
	echo "$ROWS" | while IFS='|' read -r k l f b x; do
		"$1" "$k" "$l" "$f" "$b" "$x"
	done
}

echo
echo "socks5 benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr)," \
    "$(nproc 2>/dev/null) CPUs; median of $REPS run(s)"
echo "project: $GITREV; peers: ${MICROSOCKS_V:-no microsocks}, ${DANTE_V:-no dante}"
echo "load average: $LOAD0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
echo
line "row" "socks5" "socks5 -w 2" "socks5-small" "microsocks" "dante" \
    "direct" "socks5/best" "-w 2/best" "small/best"
line "---" "------" "-----------" "------------" "----------" "-----" \
    "------" "-----------" "---------" "----------"
each_row row
# the CONNECT-only small build against microsocks (CONNECT only too)
if want size; then
	sc=$(med size-connect socks5-small)
	sm=$(med size-connect microsocks)
	echo
	echo "stripped size, CONNECT only: socks5-small (WITHOUT=\"udp bind" \
	    "rules auth\") $(fmt "$sc" "%.0f") bytes, microsocks" \
	    "$(fmt "$sm" "%.0f") bytes, ratio $(awk -v a="$sc" -v b="$sm" '
	    BEGIN { if (a == "" || b == "" || b == 0) print "-";
		    else printf "%.2fx", a / b }')"
fi
echo
echo "spread: (max - min) / median of the repetitions behind each figure" \
    "('*': over $SPREADMAX %)"
echo
each_row srow

if [ -s "$RES/reruns" ]; then
	echo
	echo "reruns (spread over $SPREADMAX % in the first set; the set with" \
	    "the smaller spread kept):"
	sed 's/^/  /' "$RES/reruns"
fi

echo
echo "all repetitions (in run order; the table shows the median):"
echo "$ROWS" | while IFS='|' read -r key l f b x; do
	[ "$key" = size ] && continue
	d=
	for sv in $COLS; do
		[ -s "$RES/$key.$sv" ] &&
			d="$d $sv=$(tr '\n' ',' <"$RES/$key.$sv" | sed 's/,$//')"
		for t in first rerun extra; do
			[ -s "$RES/$key.$sv.$t" ] && d="$d $sv($t set)=$(
			    tr '\n' ',' <"$RES/$key.$sv.$t" | sed 's/,$//')"
		done
	done
	[ -n "$d" ] && printf '  %-13s%s\n' "$key" "$d"
done

echo
echo "details (medians):"
for sv in $COLS; do
	d=
	v=$(med rtt-p99 $sv);      [ -n "$v" ] && d="$d rtt_p99_us=$v"
	v=$(med sessions-err $sv); [ -n "$v" ] && d="$d session_errors=$v"
	v=$(med udp-loss $sv);     [ -n "$v" ] && d="$d udp_loss_pct=$v"
	v=$(med procs-held $sv);   [ -n "$v" ] && d="$d procs_while_holding=$v"
	v=$(med held $sv);         [ -n "$v" ] && d="$d held=$v"
	[ -n "$d" ] && echo "  $sv:$d"
done

# ------------------------------------------------------------------
# Targets of issue 12: figure / reference, met or not.

# target label key server ref(dante|direct|microsocks|best|abs) hi|lo limit
target() {
	label=$1 key=$2 sv=$3 ref=$4 b=$5 lim=$6
	v=$(med "$key" "$sv")
	case $ref in
	best)	r=$(best "$key" "$b") ;;
	abs)	r=1 ;;
	*)	r=$(med "$key" "$ref") ;;
	esac
	sp=$(spread "$RES/$key.$sv")
	mark=
	[ -n "$sp" ] && over "$sp" && mark="*"
	awk -v v="$v" -v r="$r" -v b="$b" -v lim="$lim" -v l="$label" \
	    -v sv="$sv" -v ref="$ref" -v mark="$mark" 'BEGIN {
		if (v == "" || r == "" || r == 0) {
			printf "  %-44s %-12s %-10s -\n", l, sv,
			    ref == "abs" ? "-" : ref
			exit
		}
		x = v / r
		ok = (b == "hi") ? x >= lim : x <= lim
		if (ref == "abs")
			printf "  %-44s %-12s %-10s %.2f KiB%s  %s\n", l, sv,
			    "-", x, mark, ok ? "met" : "NOT met"
		else
			printf "  %-44s %-12s %-10s %.2fx%s  %s\n", l, sv, ref,
			    x, mark, ok ? "met" : "NOT met"
	}'
}

echo
echo "targets (issue 12): figure / reference ('*': spread over $SPREADMAX %)"
echo
printf '  %-44s %-12s %-10s %s\n' target server reference "ratio  verdict"
T50="$NSTREAMS streams"
target "$T50 up >= 1.3x Dante (with -w 2)" streams-up socks5-w2 dante hi 1.3
target "$T50 down >= 1.3x Dante (with -w 2)" streams-down socks5-w2 dante hi 1.3
for sv in socks5 socks5-w2; do
	target "one stream up >= 1.5x Dante" stream-up $sv dante hi 1.5
	target "one stream down >= 1.5x Dante" stream-down $sv dante hi 1.5
	target "one stream up >= 45 % of direct" stream-up $sv direct hi 0.45
	target "one stream down >= 45 % of direct" stream-down $sv direct hi 0.45
	target "sessions/s sequential >= 1.5x best peer" sessions-seq $sv \
	    best hi 1.5
	target "sessions/s 32 concurrent >= 1.5x best peer" sessions-c32 $sv \
	    best hi 1.5
	target "64B RTT p50 <= 0.8x best peer" rtt-p50 $sv best lo 0.8
	target "CPU/GiB 1 stream <= 0.6x best peer" cpu $sv best lo 0.6
	target "CPU/GiB $T50 <= 0.6x best peer" cpu50 $sv best lo 0.6
	target "idle tree PSS at -c 64 <= microsocks'" pss-idle64 $sv \
	    microsocks lo 1
	target "tree RSS per held session <= 2 KiB" rss-session $sv abs lo 2
done
# sizes: bytes against a limit in bytes (target prints KiB ratios)
size_target() {	# label key server limit-bytes
	v=$(med "$2" "$3")
	awk -v v="$v" -v lim="$4" -v l="$1" -v sv="$3" 'BEGIN {
		if (v == "") {
			printf "  %-44s %-12s %-10s -\n", l, sv, "-"
			exit
		}
		printf "  %-44s %-12s %-10s %d B = %.2f KiB  %s\n", l, sv, "-",
		    v, v / 1024, v <= lim ? "met" : "NOT met"
	}'
}
size_target "stripped size, CONNECT only <= 22 KiB" size-connect \
    socks5-small 22528
size_target "stripped size, every feature <= 40 KiB" size socks5-small \
    40960

cat <<EOF

notes:
  - ratio: figure / best of microsocks and dante (max where higher is
    better, min where lower is better); direct is the no-proxy baseline.
    socks5 -w 2: a supervisor and two workers, each worker with its own
    SO_REUSEPORT listening socket.
  - spread: (max - min) / median of the $REPS repetitions; a figure over
    $SPREADMAX % was measured $REPS more times, that server alone, and
    the set with the smaller spread kept (see "reruns"); '*' marks a
    figure still over $SPREADMAX %.
  - single-stream and $NSTREAMS-stream rows: $T s measured after $W s of
    warm-up, bytes counted at the client; f = min/max bytes per stream.
  - sessions: connect, greeting, CONNECT, 1 byte echoed; the target then
    closes and the client closes when that EOF reaches it (TIME_WAIT
    stays on listening sides: when the client closed first, Dante, which
    bind()s its outgoing sockets, ran out of ephemeral ports).
  - RTT: server, client and target all pinned to CPU 0 (taskset -c 0).
  - CPU: utime+stime (+cutime+cstime) from /proc/PID/stat of the server
    and its descendants. 1 stream: over $(awk -v b="$BULK" 'BEGIN{print b/1073741824}') GiB up + the same down
    (loadgen bulk). $NSTREAMS streams: over the whole streams run (up,
    then down, warm-up included) against every byte the client moved.
  - UDP: microsocks has no UDP ASSOCIATE.
  - memory: PSS and RSS (Pss:, Rss: of /proc/PID/smaps_rollup) summed
    over the whole process tree, the server and all its descendants
    (RSS counts a shared page once per process, PSS divides it).
    "-c 64": socks5, socks5 -w 2 and socks5-small with -c 64 (64
    sessions a worker);
    microsocks and Dante as in every other row (microsocks -i 127.0.0.1
    -p PORT; Dante with the danted.conf of run.sh): neither has a session
    limit to set. Read 1 s after the server first answered a greeting.
    "defaults" and per held session: socks5 with -c 1024 (the default),
    $HOLD idle sessions held (IPv4 CONNECTs: no name lookup, no resolver
    helper); (tree_held - tree_idle) / sessions held.
  - socks5-small: sh test/small.sh "$CC" "" OUT, the size-optimized
    build with every feature, one process with the same options as
    socks5 in every row; small/best is its ratio. Its build:
    ${SMALL_FLAGS:-(not built)}
  - binary: socks5 built gcc -Os, dynamic, stripped; socks5-small as
    test/small.sh writes it (stripped); peers as shipped (dynamic; their
    shared libraries are not counted). The CONNECT-only line: test/small.sh
    with WITHOUT="udp bind rules auth", and a stripped copy of microsocks.
EOF
say "run.sh: done in $(( $(date +%s) - START )) s"
