#!/bin/sh
# small.sh -- a size-optimized build of socks5.c, for routers.
#
# Usage: sh test/small.sh CC "WITHOUT" OUT [EXTRA-CFLAGS...]
#
#   CC        the compiler (make's $(CC))
#   WITHOUT   the features to leave out, words of: udp bind rules auth
#             (each becomes -DSOCKS5_NO_UDP and so on; "" keeps them all)
#   OUT       the program to write, stripped
#   EXTRA     more flags, after the size flags (make small passes the
#             quick build's delays this way for make test-small)
#
# STRIP names the strip program (default strip; llvm-strip for cross
# builds).
#
# The size flags: -Os, no unwind tables (C needs none), no .comment
# section, and for the linker no separate code pages
# (-z noseparate-code: binutils 2.31 and later pad the code into pages of
# its own, several KiB on a small program) and no build id.  Each flag
# is used only where the compiler and its linker take it, so the same
# command works with gcc, clang, tcc or a BSD cc.  Prints the flags and
# the stripped size.
set -eu
cc=$1
without=$2
out=$3
shift 3

defs=""
for f in $without; do
	case $f in
	udp) defs="$defs -DSOCKS5_NO_UDP" ;;
	bind) defs="$defs -DSOCKS5_NO_BIND" ;;
	rules) defs="$defs -DSOCKS5_NO_RULES" ;;
	auth) defs="$defs -DSOCKS5_NO_AUTH" ;;
	*)
		echo "small.sh: unknown feature '$f' (udp bind rules auth)" >&2
		exit 64
		;;
	esac
done

src=$(dirname "$0")/../socks5.c
tmp=$(mktemp -d "${TMPDIR:-/tmp}/socks5-small.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
echo 'int main(void) { return 0; }' > "$tmp/t.c"

# Does $cc build and link a program with these flags, without a word?
takes() {
	$cc "$@" -o "$tmp/t" "$tmp/t.c" > "$tmp/out" 2>&1 && ! [ -s "$tmp/out" ]
}

flags="-Os"
for f in -fno-asynchronous-unwind-tables -fno-unwind-tables -fno-ident \
    -Wl,-z,noseparate-code -Wl,--build-id=none; do
	if takes $flags $f; then
		flags="$flags $f"
	fi
done
# shellcheck disable=SC2086
$cc $flags $defs "$@" -o "$out" "$src"
${STRIP:-strip} "$out" 2>/dev/null || true
echo "small: $cc $flags$defs"
echo "small: $out $(wc -c < "$out" | tr -d ' ') bytes stripped"
