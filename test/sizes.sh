#!/bin/sh
# sizes.sh -- the router builds' sizes: socks5.c built by test/small.sh
# (-Os and the size flags the compiler takes) with every feature, each
# one left out, and all four left out (CONNECT only), on each machine at
# hand. Prints one table: for each build, the stripped program and the
# program's own code (text + data of socks5.c's object, which does not
# depend on how the C library is linked).
#
# Usage: sh test/sizes.sh     (make sizes)
#
# Machines: x86_64 with $CC (default cc), dynamic; big-endian MIPS with
# mips-linux-gnu-gcc (glibc), dynamic; and with zig cc (test/zig-install.sh,
# ZIG=path for another) static musl for i386, armhf (ARMv7 Thumb-2) and
# mipsel: there the program holds the C library too, so the object's
# column is the one to compare. A machine whose compiler is missing is
# left out of the table, said so. Sizes need llvm-size and llvm-strip
# (Debian: llvm) for the cross objects.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/socks5-sizes.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
CC=${CC:-cc}

have() { command -v "$1" >/dev/null 2>&1; }

ZIG=${ZIG:-}
if [ -z "$ZIG" ]; then
	if have zig; then
		ZIG=zig
	else
		zd=$(sh "$here/zig-install.sh" --dir 2>/dev/null || true)
		if [ -n "$zd" ] && [ -x "$zd/zig" ]; then
			ZIG=$zd/zig
		fi
	fi
fi

# objsize FILE -- text + data bytes of an object (any machine).
objsize() {
	if have llvm-size; then
		llvm-size "$1" | awk 'NR == 2 { print $1 + $2 }'
	else
		size "$1" | awk 'NR == 2 { print $1 + $2 }'
	fi
}

builds="all:|udp:udp|bind:bind|rules:rules|auth:auth|connect:udp bind rules auth"

# row MACHINE CC [STRIP] -- one line of sizes for MACHINE built with CC.
row() {
	m=$1 cc=$2 st=${3:-strip}
	line=$(printf '%-8s' "$m")
	oline=$(printf '%-8s' "")
	IFS='|'
	for b in $builds; do
		name=${b%%:*} without=${b#*:}
		IFS=' '
		if STRIP=$st sh "$here/small.sh" "$cc" "$without" "$tmp/p" \
		    > "$tmp/log" 2>&1 &&
		    sh "$here/small.sh" "$cc -c" "$without" "$tmp/o.o" \
		    > "$tmp/log" 2>&1; then
			$st "$tmp/p" 2>/dev/null || true
			p=$(wc -c < "$tmp/p" | tr -d ' ')
			o=$(objsize "$tmp/o.o")
		else
			p=failed o=""
			sed 's/^/    /' "$tmp/log" >&2
		fi
		line="$line $(printf '%9s' "$p")"
		oline="$oline $(printf '%9s' "($o)")"
		IFS='|'
	done
	IFS=' '
	echo "$line  program"
	echo "$oline  (its code)"
}

echo "stripped bytes; (text + data of socks5.c's object); -Os, test/small.sh"
echo
echo "machine       all   no-udp   no-bind  no-rules   no-auth  CONNECT"
row x86_64 "$CC"
if have mips-linux-gnu-gcc; then
	row mips mips-linux-gnu-gcc mips-linux-gnu-strip
else
	echo "mips: mips-linux-gnu-gcc not installed, left out"
fi
if [ -n "$ZIG" ] && have llvm-strip; then
	row i386 "$ZIG cc -target x86-linux-musl -static" llvm-strip
	row armhf "$ZIG cc -target thumb-linux-musleabihf -static" llvm-strip
	row mipsel "$ZIG cc -target mipsel-linux-musl -static" llvm-strip
else
	echo "i386, armhf, mipsel: zig cc or llvm-strip missing, left out"
fi
echo
echo "x86_64 and mips: dynamic (glibc); i386, armhf, mipsel: static musl"
echo "(zig cc $("${ZIG:-false}" version 2>/dev/null || echo -)), so their programs hold the C library."
