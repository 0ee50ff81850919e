#!/bin/sh
# valgrind.sh - run the test suite with every server process under
# valgrind memcheck, then read valgrind's logs.
#
#	sh test/valgrind.sh [TEST-PATTERNS]
#
# valgrind runs quiet (-q): it writes a log only for a memory error or an
# invalid system call argument; the exit status is 1 when any log has
# something in it. (Descriptor leaks are fault.test's business: it counts
# the server's descriptors before and after each kind of session.) The
# suite's own verdict is printed as well, but a server ten times slower
# misses some of the suite's time limits (SOCKS5_TEST_SLOW=4 widens
# them), so only the memcheck verdict decides the exit status. The files
# run one at a time (TEST_JOBS=1 unless set): valgrind is CPU-bound.
set -u

here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "$here/.." && pwd)/socks5
logs=$(mktemp -d "${TMPDIR:-/tmp}/socks5-valgrind.XXXXXX") || exit 1

if ! command -v valgrind >/dev/null 2>&1; then
	echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)"
	exit 1
fi
SOCKS5="valgrind -q --log-file=$logs/vg.%p $bin" \
SOCKS5_TEST_SLOW=${SOCKS5_TEST_SLOW:-4} TEST_JOBS=${TEST_JOBS:-1} \
tclsh "$here/all.tcl" "$@" |
    tail -1 | sed 's/^/suite under valgrind: /'

n=0
bad=0
for f in "$logs"/vg.*; do
	[ -e "$f" ] || continue
	n=$((n + 1))
	if [ -s "$f" ]; then
		bad=$((bad + 1))
		echo "== $f"
		cat "$f"
	fi
done
echo "valgrind: $n server processes, $bad with errors (logs in $logs)"
[ "$bad" -eq 0 ]
