#!/bin/sh
# cov.sh - line and branch coverage of socks5.c by the libFuzzer corpus.
#
#	sh test/fuzz/cov.sh [CORPUS_DIR...]
#
# Default corpus: $FUZZ_WORK/lf-corpus (left by run.sh) and the seeds.
# Prints llvm-cov's report for socks5.c; the per-line listing goes to
# $FUZZ_WORK/cov.txt.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${FUZZ_WORK:-/tmp/socks5-fuzz}
mkdir -p "$work/cov"
ver=$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1)
prof=llvm-profdata; command -v $prof >/dev/null || prof=llvm-profdata-$ver
cov=llvm-cov; command -v $cov >/dev/null || cov=llvm-cov-$ver
${FUZZCC:-clang} -g -O0 -fsanitize=fuzzer -fprofile-instr-generate \
    -fcoverage-mapping -o "$work/fuzz_parsers-cov" "$here/fuzz_parsers.c"
[ $# -gt 0 ] || set -- "$work/lf-corpus" "$here/corpus/parsers"
rm -f "$work"/cov/*.profraw
LLVM_PROFILE_FILE="$work/cov/%p.profraw" "$work/fuzz_parsers-cov" \
    -runs=0 "$@" >"$work/cov/run.log" 2>&1
$prof merge -sparse -o "$work/cov/all.profdata" "$work"/cov/*.profraw
src=$(cd "$here/../.." && pwd)/socks5.c
$cov report "$work/fuzz_parsers-cov" -instr-profile="$work/cov/all.profdata" \
    "$src"
$cov show "$work/fuzz_parsers-cov" -instr-profile="$work/cov/all.profdata" \
    "$src" >"$work/cov.txt"
echo "cov.sh: per-line listing in $work/cov.txt"
