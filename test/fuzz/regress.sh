#!/bin/sh
# regress.sh - replay the saved fuzz findings; each must now pass.
#
#	sh test/fuzz/regress.sh
#
# test/fuzz/regress/NAME		an input of fuzz_parsers (libFuzzer),
#					run once through it; the seeds in
#					corpus/parsers/ are run too, so the
#					harness and its checks are tried
# test/fuzz/regress/e2e/NAME		client bytes for `socks5 -i`, run
#					through an ASan/UBSan build of the
#					server with afl.sh's options, in
#					sandbox.sh
# FUZZ_BIN: a fuzz_parsers already built (else it is built in
# $FUZZ_WORK, default /tmp/socks5-fuzz). Ends with "N passed, M failed";
# exits 1 if any failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=${FUZZ_WORK:-/tmp/socks5-fuzz}
export FUZZ_WORK=$work
mkdir -p "$work"
pass=0
fail=0

have=0
for f in "$here"/regress/* "$here"/corpus/parsers/*; do
	[ -f "$f" ] && have=1
done
if [ $have = 1 ]; then
	bin=${FUZZ_BIN:-$work/fuzz_parsers}
	if [ -z "${FUZZ_BIN:-}" ]; then
		${FUZZCC:-clang} -g -O1 -fsanitize=fuzzer,address,undefined \
		    -fno-sanitize-recover=all -o "$bin" \
		    "$here/fuzz_parsers.c" || exit 2
	fi
	for f in "$here"/regress/* "$here"/corpus/parsers/*; do
		[ -f "$f" ] || continue
		case $f in *.txt|*README*) continue ;; esac
		name=${f#"$here"/}
		if "$bin" "$f" >"$work/regress.log" 2>&1; then
			pass=$((pass + 1))
			case $name in regress/*) echo "ok   $name" ;; esac
		else
			fail=$((fail + 1))
			echo "FAIL $name"
			grep -E 'ERROR|invariant|fuzz: |SUMMARY|^    #[0-9] ' \
			    "$work/regress.log" | head -12
		fi
	done
fi

have=0
for f in "$here"/regress/e2e/*; do
	[ -f "$f" ] && have=1
done
if [ $have = 1 ]; then
	${FUZZCC:-clang} -g -O1 -fsanitize=address,undefined \
	    -fno-sanitize-recover=all -o "$work/socks5-asan" \
	    "$top/socks5.c" || exit 2
	printf '# fuzz users\nalice:secret\nbob:x\n' >"$work/users"
	for f in "$here"/regress/e2e/*; do
		[ -f "$f" ] || continue
		ASAN_OPTIONS=detect_leaks=0 timeout 20 sh "$here/sandbox.sh" \
		    "$work/socks5-asan" -i -t 1 -u "$work/users" \
		    -a 'allow to 127.0.0.0/8' -a 'allow to ::1' \
		    <"$f" >/dev/null 2>"$work/regress.log"
		st=$?
		if [ $st = 77 ]; then
			echo "skip $(basename "$f") (no namespaces)"
		elif [ $st -lt 2 ] && ! grep -q 'ERROR: AddressSanitizer\|runtime error' \
		    "$work/regress.log"; then
			pass=$((pass + 1))
			echo "ok   e2e/$(basename "$f")"
		else
			fail=$((fail + 1))
			echo "FAIL e2e/$(basename "$f") (exit $st)"
			head -20 "$work/regress.log"
		fi
	done
fi
echo "$pass passed, $fail failed"
[ $fail = 0 ]
