#!/bin/sh
# portable.sh -- build socks5.c with every compiler and target at hand and
# print a table: build, result, stripped size of the binary.
#
# Usage: sh test/portable.sh [--build-only] [OUTDIR]
#
#   (no option)      every build below, a table, and informational warning
#                    counts; binaries go to OUTDIR (default: a temporary
#                    directory that is removed afterwards).
#   --build-only D   only the binaries the test suite can run, into D:
#                    socks5.gcc, socks5.clang, socks5.tcc, socks5.pcc,
#                    socks5.musl (static), socks5.mips (dynamic, run with
#                    "qemu-mips -L /usr/mips-linux-gnu"), socks5.mips-static,
#                    socks5.mips-qemu (socks5.mips plus test/qemu_soerror.c,
#                    which undoes qemu-user 7.2's untranslated SO_ERROR).
#
# Required (a failure makes the exit status 1): gcc and clang with
# -std=c89 -pedantic -Wall -Wextra -Werror, as a program and as an object
# with -DSOCKS5_NO_MAIN.  Optional, "SKIPPED" (loudly) when the tool is not
# installed, but a failure when it is installed and the build breaks: tcc,
# pcc, musl-gcc -static, mips-linux-gnu-gcc (dynamic and -static).  The
# "info" rows (clang -Wconversion, clang -Weverything, g++ -x c++) only
# report warning/error counts and never fail.
#
# Environment: CC_FLAGS_EXTRA (added to every C build), SRC (default: the
# socks5.c next to test/).

set -u

here=$(cd "$(dirname "$0")" && pwd)
SRC=${SRC:-$here/../socks5.c}
SRCDIR=$(cd "$(dirname "$SRC")" && pwd)
SRC=$SRCDIR/$(basename "$SRC")
EXTRA=${CC_FLAGS_EXTRA:-}
STRICT="-std=c89 -pedantic -Wall -Wextra -Werror"

buildonly=0
outdir=""
while [ $# -gt 0 ]; do
	case $1 in
	--build-only) buildonly=1 ;;
	-h|--help) sed -n '2,23p' "$0"; exit 0 ;;
	-*) echo "portable.sh: unknown option $1" >&2; exit 64 ;;
	*) outdir=$1 ;;
	esac
	shift
done
if [ $buildonly = 1 ] && [ -z "$outdir" ]; then
	echo "portable.sh: --build-only needs an output directory" >&2
	exit 64
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/socks5-portable.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
if [ -z "$outdir" ]; then
	outdir=$tmp/out
fi
mkdir -p "$outdir" || exit 1
outdir=$(cd "$outdir" && pwd)

if [ ! -r "$SRC" ]; then
	echo "portable.sh: cannot read $SRC" >&2
	exit 1
fi

have() { command -v "$1" >/dev/null 2>&1; }

failures=0
skips=""
rows=$tmp/rows
: > "$rows"

# row NAME RESULT SIZE DETAIL
row() {
	printf '%-26s %-9s %9s  %s\n' "$1" "$2" "$3" "$4" >> "$rows"
}

# size_of STRIP FILE -- bytes of FILE after stripping a copy with STRIP.
size_of() {
	cp "$2" "$tmp/strip.tmp" || { echo "?"; return; }
	if "$1" "$tmp/strip.tmp" 2>/dev/null; then
		wc -c < "$tmp/strip.tmp" | tr -d ' '
	else
		echo "?"
	fi
	rm -f "$tmp/strip.tmp"
}

# build NAME REQUIRED STRIP OUTPUT COMMAND... -- run the compiler; the
# output file is OUTPUT (a program, or an object when it ends in .o).
build() {
	name=$1 req=$2 strip=$3 out=$4
	shift 4
	log=$tmp/$name.log
	if "$@" > "$log" 2>&1 && [ -s "$out" ]; then
		nwarn=$(grep -c 'warning:' "$log")
		detail="$*"
		size=$(size_of "$strip" "$out")
		case $out in
		*.o) size="obj $size" ;;
		esac
		if [ "$nwarn" -gt 0 ]; then
			row "$name" "ok" "$size" "$nwarn warning line(s), see below"
			echo "== $name: warnings" >> "$tmp/notes"
			sed 's/^/   /' "$log" >> "$tmp/notes"
		else
			row "$name" "ok" "$size" ""
		fi
		echo "   $name: $detail" >> "$tmp/cmds"
		return 0
	fi
	row "$name" "FAILED" "-" "$*"
	echo "== $name: FAILED: $*" >> "$tmp/notes"
	sed 's/^/   /' "$log" | head -40 >> "$tmp/notes"
	# an optional tool that is installed must still build: both count
	failures=$((failures + 1))
	return 1
}

skip() {
	row "$1" "SKIPPED" "-" "$2"
	skips="$skips $1"
}

# info NAME COMMAND... -- count warnings and errors; never fails.
info() {
	name=$1
	shift
	log=$tmp/$name.log
	"$@" > "$log" 2>&1
	rc=$?
	nw=$(grep -c 'warning:' "$log")
	ne=$(grep -c 'error:' "$log")
	row "$name" "info" "-" "$nw warnings, $ne errors (exit $rc)"
	if [ "$nw" -gt 0 ] || [ "$ne" -gt 0 ]; then
		echo "== $name: $*" >> "$tmp/notes"
		grep -E 'warning:|error:' "$log" | sed 's/^/   /' | head -60 \
		    >> "$tmp/notes"
	fi
}

: > "$tmp/notes"
: > "$tmp/cmds"

# --- host compilers --------------------------------------------------------

for cc in gcc clang; do
	if ! have $cc; then
		row "$cc" "MISSING" "-" "required compiler not installed"
		failures=$((failures + 1))
		continue
	fi
	build "$cc" required strip "$outdir/socks5.$cc" \
	    $cc $STRICT -O2 $EXTRA -o "$outdir/socks5.$cc" "$SRC"
	if [ $buildonly = 0 ]; then
		build "$cc -DSOCKS5_NO_MAIN" required strip \
		    "$tmp/socks5-$cc.o" \
		    $cc $STRICT -O2 $EXTRA -DSOCKS5_NO_MAIN -c \
		    -o "$tmp/socks5-$cc.o" "$SRC"
	fi
done

if [ $buildonly = 0 ] && have clang; then
	info "clang -Wconversion" clang -std=c89 -pedantic -Wall -Wextra \
	    -Wconversion -Wsign-conversion -Wshorten-64-to-32 -O2 \
	    -fsyntax-only "$SRC"
	info "clang -Weverything" clang -std=c89 -Weverything -O2 \
	    -fsyntax-only "$SRC"
fi
if [ $buildonly = 0 ] && have gcc; then
	info "gcc -Wconversion etc." gcc -std=c89 -pedantic -Wall -Wextra \
	    -Wconversion -Wsign-conversion -Wshadow -Wcast-align=strict \
	    -Wcast-qual -Wstrict-prototypes -Wmissing-prototypes \
	    -Wwrite-strings -Wformat=2 -Wundef -O2 -fsyntax-only "$SRC"
fi
if [ $buildonly = 0 ] && have g++; then
	info "g++ -x c++ (syntax)" g++ -x c++ -fsyntax-only "$SRC"
fi

# --- other C compilers -----------------------------------------------------

if have tcc; then
	# tcc knows no -std=c89 / -pedantic; -Wall -Werror is what it offers.
	build tcc optional strip "$outdir/socks5.tcc" \
	    tcc -Wall -Werror $EXTRA -o "$outdir/socks5.tcc" "$SRC"
else
	skip tcc "tcc not installed (apt-get install tcc)"
fi

if have pcc; then
	# pcc's own crtend.o has no .note.GNU-stack: without -z noexecstack
	# the linker warns and the program gets an executable stack.
	build pcc optional strip "$outdir/socks5.pcc" \
	    pcc -O -Wl,-z,noexecstack $EXTRA -o "$outdir/socks5.pcc" "$SRC"
else
	skip pcc "pcc not installed (apt-get install pcc)"
fi

if have musl-gcc; then
	build "musl-gcc -static" optional strip "$outdir/socks5.musl" \
	    musl-gcc -static $STRICT -O2 $EXTRA -o "$outdir/socks5.musl" "$SRC"
else
	skip "musl-gcc -static" "musl-gcc not installed (apt-get install musl-tools)"
fi

# --- big-endian MIPS (run under qemu-mips) -----------------------------------

if have mips-linux-gnu-gcc; then
	build "mips-linux-gnu-gcc" optional mips-linux-gnu-strip \
	    "$outdir/socks5.mips" \
	    mips-linux-gnu-gcc $STRICT -O2 $EXTRA -o "$outdir/socks5.mips" "$SRC"
	# glibc's linker warns that getaddrinfo/getpwnam in a static program
	# need the shared NSS libraries at run time: expected (and not an
	# error under -Werror, which covers the compiler only).
	build "mips-linux-gnu-gcc -static" optional mips-linux-gnu-strip \
	    "$outdir/socks5.mips-static" \
	    mips-linux-gnu-gcc -static $STRICT -O2 $EXTRA \
	    -o "$outdir/socks5.mips-static" "$SRC"
	# For the suite under qemu-user 7.2, whose getsockopt(SO_ERROR) returns
	# host errno values: the same program with test/qemu_soerror.c.
	build "mips (qemu SO_ERROR shim)" optional mips-linux-gnu-strip \
	    "$outdir/socks5.mips-qemu" \
	    mips-linux-gnu-gcc $STRICT -O2 $EXTRA -Wl,--wrap=getsockopt \
	    -o "$outdir/socks5.mips-qemu" "$SRC" "$here/qemu_soerror.c"
	if [ $buildonly = 0 ]; then
		build "mips -DSOCKS5_NO_MAIN" optional mips-linux-gnu-strip \
		    "$tmp/socks5-mips.o" \
		    mips-linux-gnu-gcc $STRICT -O2 $EXTRA -DSOCKS5_NO_MAIN -c \
		    -o "$tmp/socks5-mips.o" "$SRC"
	fi
	if ! have qemu-mips; then
		echo "note: qemu-mips not installed (apt-get install qemu-user):" \
		    "the MIPS binaries cannot be run here" >> "$tmp/notes"
	elif [ ! -d /usr/mips-linux-gnu/lib ]; then
		echo "note: /usr/mips-linux-gnu missing (apt-get install" \
		    "libc6-mips-cross): socks5.mips cannot be run" >> "$tmp/notes"
	elif [ -s "$outdir/socks5.mips" ]; then
		if qemu-mips -L /usr/mips-linux-gnu "$outdir/socks5.mips" -h \
		    > "$tmp/qemu.out" 2>&1; then
			row "qemu-mips socks5.mips -h" "ok" "-" ""
		else
			row "qemu-mips socks5.mips -h" "FAILED" "-" \
			    "$(head -1 "$tmp/qemu.out")"
			failures=$((failures + 1))
		fi
	fi
else
	skip "mips-linux-gnu-gcc" "not installed (apt-get install gcc-mips-linux-gnu libc6-mips-cross qemu-user)"
fi

# --- report -----------------------------------------------------------------

echo "socks5 portability builds of $SRC"
printf '%-26s %-9s %9s  %s\n' "build" "result" "stripped" "notes"
printf '%-26s %-9s %9s  %s\n' "-----" "------" "--------" "-----"
cat "$rows"
if [ -s "$tmp/notes" ]; then
	echo
	cat "$tmp/notes"
fi
if [ -n "$skips" ]; then
	echo
	echo "*** SKIPPED (tool not installed):$skips ***"
fi
if [ $buildonly = 1 ]; then
	echo
	echo "binaries in $outdir:"
	(cd "$outdir" && ls -l socks5.* 2>/dev/null)
fi
echo
if [ $failures -gt 0 ]; then
	echo "portable: $failures build(s) FAILED"
	exit 1
fi
echo "portable: all builds ok"
exit 0
