#!/bin/sh
# afl.sh - end-to-end fuzzing of the whole server with AFL++.
#
#	sh test/fuzz/afl.sh [SECONDS]		(default 60)
#
# The fuzzed program is the real server in inetd mode, `socks5 -i`: AFL
# hands it one input file on fd 0 (the client's bytes), fd 1 goes to
# /dev/null. poll() on a regular file is always readable and read()
# returns 0 at its end, so every input runs greeting, auth, request and
# whatever follows, then the session ends on EOF and the process exits.
#
# Where the traffic can go: an input can name any destination. Three
# fences keep all of it on this machine:
#  1. afl-fuzz (and so every server it starts) runs in sandbox.sh: a new
#     network namespace (unshare -n) that has nothing but its own
#     loopback: no route to anything else exists, and nothing of the
#     host listens on that loopback, so a CONNECT to 127.0.0.1 is
#     refused at once.
#  2. The server runs with -a 'allow to 127.0.0.0/8' -a 'allow to ::1':
#     any other destination is denied (REP 02) before a socket is made.
#  3. Names: in -i mode the server resolves with getaddrinfo() in the
#     process. sandbox.sh's private mount namespace (unshare -m)
#     bind-mounts an nsswitch.conf with "hosts: files" and a resolv.conf naming
#     127.0.0.1, so a name is looked up in /etc/hosts only and no DNS
#     query is even attempted; names still exercise the DOMAINNAME path
#     and "localhost" resolves.
# Without unshare (not root, or no namespaces) the run is skipped: it
# does not fall back to the host's network.
#
# The server runs with -u (a users file with alice:secret) so that the
# RFC 1929 parser is on the path too, and with -t 1 so that no wait
# (BIND's wait for its peer, handshake) is long; inputs are at most
# 8 KiB (-G), below the 16 KiB spill buffer, so a client's EOF is seen.
# Output, queue and crashes: $FUZZ_WORK (default /tmp/socks5-fuzz)/afl.
# Exit status: 0 no crash, 1 crashes found (listed), 2 setup error,
# 77 skipped (no afl-fuzz or no namespaces).
set -eu

secs=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=${FUZZ_WORK:-/tmp/socks5-fuzz}
out=$work/afl

case $secs in
''|*[!0-9]*) echo "afl.sh: SECONDS must be a number" >&2; exit 2 ;;
esac

# --- the tools --------------------------------------------------------
if ! command -v afl-fuzz >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "afl.sh: installing afl++" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		    --no-install-recommends afl++ >/dev/null 2>&1 || true
	fi
fi
if ! command -v afl-fuzz >/dev/null 2>&1; then
	echo "afl.sh: afl-fuzz not found (apt-get install afl++): skipped"
	exit 77
fi
if ! unshare -n -m true 2>/dev/null; then
	echo "afl.sh: cannot make a network namespace (unshare -n -m):" \
	    "skipped, the server is never fuzzed on the host's network"
	exit 77
fi

# --- build: AFL++ instrumentation with ASan and UBSan -----------------
mkdir -p "$work"
cc=afl-clang-fast
command -v $cc >/dev/null 2>&1 || cc=afl-gcc
AFL_USE_ASAN=1 AFL_USE_UBSAN=1 AFL_QUIET=1 $cc -O1 -g \
    -o "$work/socks5-afl" "$top/socks5.c" || {
	echo "afl.sh: build with $cc failed" >&2
	exit 2
}
printf '# fuzz users\nalice:secret\nbob:x\n' >"$work/users"

# A second run goes on from the queue it left (AFL_AUTORESUME);
# AFL_FRESH=1 starts again from the seeds.
[ "${AFL_FRESH:-}" = 1 ] && rm -rf "$out"
mkdir -p "$out"

# --- replay first: seeds, regress/e2e and the queue left before -------
# afl-fuzz skips an input that crashes at its dry run (AFL_SKIP_CRASHES,
# needed to resume at all), so a crash that an old input brings back
# would go unseen: every one of them is run here first.
rm -rf "$out/replay-crashes"
ASAN_OPTIONS=abort_on_error=1:detect_leaks=0 \
UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1 \
    sh "$here/sandbox.sh" sh -c '
	bin=$1 out=$2
	shift 2
	n=0 bad=0
	for f in "$@"; do
		[ -f "$f" ] || continue
		n=$((n + 1))
		timeout 10 "$bin" -i -t 1 -u "$out/../users" \
		    -a "allow to 127.0.0.0/8" -a "allow to ::1" \
		    <"$f" >/dev/null 2>"$out/replay.err"
		st=$?
		if [ $st -ge 124 ]; then
			bad=$((bad + 1))
			mkdir -p "$out/replay-crashes"
			cp "$f" "$out/replay-crashes/"
			echo "afl: CRASH (exit $st) replaying $f"
			head -30 "$out/replay.err"
		fi
	done
	echo "afl: replayed $n inputs, $bad crashed"
	[ $bad = 0 ]' sh "$work/socks5-afl" "$out" \
    "$here"/corpus/e2e/* "$here"/regress/e2e/* \
    "$out"/default/queue/id:* || {
	st=$?
	[ $st = 77 ] && { echo "afl.sh: no network namespace: skipped"; exit 77; }
	exit 1
}

# --- fuzz, inside the sandbox -------------------------------------------
stats=$out/default/fuzzer_stats
before=0
[ -f "$stats" ] && before=$(sed -n 's/^execs_done *: *//p' "$stats")
echo "afl.sh: fuzzing 'socks5 -i' for ${secs}s (work dir $out)"
st=0
AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 \
AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CRASHES=1 \
AFL_AUTORESUME=1 \
ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=0 \
UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1 \
    sh "$here/sandbox.sh" afl-fuzz -i "$here/corpus/e2e" -o "$out" \
    -m none -t 2000 -G 8192 -V "$secs" -x "$here/socks5.dict" -- \
    "$work/socks5-afl" -i -t 1 -u "$work/users" \
    -a 'allow to 127.0.0.0/8' -a 'allow to ::1' \
    >"$work/afl.log" 2>&1 || st=$?
if [ $st = 77 ]; then
	echo "afl.sh: no network namespace: skipped"
	exit 77
fi
if [ $st -ne 0 ]; then
	tail -20 "$work/afl.log" >&2
	echo "afl.sh: afl-fuzz failed ($st)" >&2
	exit 2
fi

if [ -f "$stats" ]; then
	execs=$(sed -n 's/^execs_done *: *//p' "$stats")
	execs="$((execs - ${before:-0})) (all runs: $execs)"
	eps=$(sed -n 's/^execs_per_sec *: *//p' "$stats")
	paths=$(sed -n 's/^corpus_count *: *//p' "$stats")
	cov=$(sed -n 's/^bitmap_cvg *: *//p' "$stats")
	ncrash=$(sed -n 's/^saved_crashes *: *//p' "$stats")
	nhang=$(sed -n 's/^saved_hangs *: *//p' "$stats")
	echo "afl: execs=$execs execs/s=$eps corpus=$paths bitmap=$cov" \
	    "crashes=$ncrash hangs=$nhang"
fi
found=0
for f in "$out"/default/crashes/id:*; do
	[ -f "$f" ] || continue
	found=1
	echo "afl: CRASH $f"
done
for f in "$out"/default/hangs/id:*; do
	[ -f "$f" ] || continue
	echo "afl: hang (timeout, not counted as a failure) $f"
done
exit $found
