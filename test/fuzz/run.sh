#!/bin/sh
# run.sh - run both fuzzers for a bounded time.
#
#	sh test/fuzz/run.sh [SECONDS]		(default 60 each)
#	sh test/fuzz/run.sh --build-only	(build fuzz_parsers, no run)
#
# 1. Builds fuzz_parsers (clang, libFuzzer + ASan + UBSan) unless
#    FUZZ_BIN names one already built, and runs it for SECONDS with
#    -max_total_time over a corpus kept in $FUZZ_WORK/lf-corpus (so a
#    second run goes on where the first stopped) and the seeds.
# 2. Runs afl.sh SECONDS (the whole server, `socks5 -i`, under AFL++)
#    when afl-fuzz is there and a network namespace can be made.
# Prints the executions of each. Exits 1 when either found a crash (the
# inputs are listed: minimize with `fuzz_parsers -minimize_crash=1` or
# afl-tmin, then keep them in test/fuzz/regress/), 2 on a setup error.
# FUZZ_WORK defaults to /tmp/socks5-fuzz; FUZZ_JOBS=N runs libFuzzer
# with N workers (-fork=N) instead of one process.
set -u

build_only=0
if [ "${1:-}" = --build-only ]; then
	build_only=1
	shift
fi
secs=${1:-60}
case $secs in
''|*[!0-9]*) echo "run.sh: SECONDS must be a number" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
work=${FUZZ_WORK:-/tmp/socks5-fuzz}
export FUZZ_WORK=$work
mkdir -p "$work/lf-corpus" "$work/lf-artifacts"

# FUZZ_BIN names a target already built; --build-only (re)builds it.
bin=${FUZZ_BIN:-$work/fuzz_parsers}
if [ -z "${FUZZ_BIN:-}" ] || [ $build_only = 1 ]; then
	echo "run.sh: building $bin"
	${FUZZCC:-clang} -g -O1 -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=all -o "$bin" "$here/fuzz_parsers.c" || {
		echo "run.sh: cannot build the libFuzzer target" >&2
		exit 2
	}
fi
[ $build_only = 1 ] && exit 0

failed=0

# --- libFuzzer -------------------------------------------------------
echo "run.sh: libFuzzer fuzz_parsers for ${secs}s"
fork=
[ -n "${FUZZ_JOBS:-}" ] && fork="-fork=$FUZZ_JOBS -ignore_crashes=0"
# shellcheck disable=SC2086
"$bin" -max_total_time="$secs" -max_len=4096 -timeout=25 \
    -rss_limit_mb=2048 -print_final_stats=1 \
    -dict="$here/socks5.dict" -artifact_prefix="$work/lf-artifacts/" \
    $fork "$work/lf-corpus" "$here/corpus/parsers" \
    >"$work/libfuzzer.log" 2>&1
st=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/libfuzzer.log" |
    tail -1)
last=$(grep -E '^#[0-9]+.*cov:' "$work/libfuzzer.log" | tail -1)
cov=$(printf '%s\n' "$last" | sed -n 's/.*\(cov: [0-9]*\).*/\1/p')
ft=$(printf '%s\n' "$last" | sed -n 's/.*\(ft: [0-9]*\).*/\1/p')
corp=$(printf '%s\n' "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
[ -n "$execs" ] || execs=$(printf '%s\n' "$last" |
    sed -n 's/^#\([0-9]*\).*/\1/p')
echo "libfuzzer: execs=${execs:-?} ${cov:-cov: ?} ${ft:-ft: ?}" \
    "corpus=${corp:-?} log=$work/libfuzzer.log"
if [ $st -ne 0 ]; then
	failed=1
	grep -E 'ERROR|invariant failed|fuzz: |SUMMARY|Test unit written' \
	    "$work/libfuzzer.log" | head -20
	echo "libfuzzer: CRASH (exit $st); inputs in $work/lf-artifacts/"
fi

# --- AFL++: the whole server -----------------------------------------
sh "$here/afl.sh" "$secs"
st=$?
case $st in
0) ;;
1) failed=1 ;;
77) echo "run.sh: AFL run skipped" ;;
*) echo "run.sh: AFL run failed to start ($st)"; [ $failed = 1 ] || failed=2 ;;
esac

exit $failed
