#!/bin/sh
# run.sh -- mutation testing of socks5.c against the black-box suite.
#
# Usage: sh test/mutants/run.sh      (or: make mutants)
#
# Reads test/mutants/list.  For each mutation: copies socks5.c, socks5.h
# and the test files to a fresh temporary directory, applies the ONE
# single-line mutation, builds it with "$CC -O1 -o socks5 socks5.c" and
# runs the test files the mutation names against it, one file at a time,
# stopping at the first failure.  Each mutant ends as
#
#   KILLED     a named test file failed, timed out ("timeout"), or the
#              test run died of a signal (a mutant that signals its own
#              process group; each test run has a process group of its
#              own, made with setsid(1) or perl, so this script survives)
#   SURVIVED   every named test file passed
#   STILLBORN  the mutant does not compile (not in the score)
#   STALE      the snippet is not in socks5.c exactly once, or a test
#              pattern matches no file: the list needs updating
#
# and the last line is
#   mutants: K killed, S survived, B stillborn, T stale (score K/(K+S))
# Exit status 0 only when nothing survived and nothing is stale.
#
# Environment:
#   MUTANTS=id1,id2    run only these ids (default: all)
#   MUTANTS_JOBS=N     run N mutants at a time (default 1)
#   MUTANTS_FULL=1     run every test file, the named ones first
#   MUTANTS_TIMEOUT=s  seconds allowed per test file (default 60); a file
#                      that takes longer counts as killed by timeout
#   MUTANTS_LIST=path  another list file
#   MUTANTS_KEEP=1     keep the temporary directories (paths are printed)
#   MUTANTS_CHECK=1    only apply and build each mutant, run no tests:
#                      lists STALE and STILLBORN ones in seconds
#   MUTANTS_BASELINE=1 first run the named test files against the
#                      unmutated build (MUTANTS_JOBS at a time) and stop
#                      if any fails: a "kill" would then mean nothing
#   CC                 compiler (default cc)
#
# The list format is described at the top of test/mutants/list.

top=$(cd "$(dirname "$0")/../.." && pwd) || exit 2
list=${MUTANTS_LIST:-$top/test/mutants/list}
jobs=${MUTANTS_JOBS:-1}
full=${MUTANTS_FULL:-}
ftimeout=${MUTANTS_TIMEOUT:-60}
cc=${CC:-cc}

case $jobs in
''|*[!0-9]*|0) echo "run.sh: MUTANTS_JOBS must be a positive number" >&2; exit 2 ;;
esac
case $ftimeout in
''|*[!0-9]*|0) echo "run.sh: MUTANTS_TIMEOUT must be a positive number" >&2; exit 2 ;;
esac
[ -f "$list" ] || { echo "run.sh: no list $list" >&2; exit 2; }
command -v tclsh >/dev/null 2>&1 || { echo "run.sh: tclsh not found (sh test/deps.sh)" >&2; exit 2; }

# Seconds since the epoch, portably.
now() {
	awk 'BEGIN { srand(); print srand() }'
}

# No pathname expansion anywhere: test patterns such as udp* are handed
# around unexpanded.
set -f
testfiles=$(ls "$top/test" | awk '/\.test$/')

root=${TMPDIR:-/tmp}/socks5-mutants.$$
mkdir "$root" || exit 2
trap 'cleanup_all; exit 130' INT TERM HUP PIPE
trap 'cleanup_all' EXIT

# Kill, by pid, every process still running something under $1 (servers
# left behind by a test file, a hung run); nothing else is touched.
# (The directory goes to awk through the environment, not its arguments,
# so that awk does not find itself.)
kill_under() {
	ps -e -o pid= -o args= 2>/dev/null | KDIR="$1/" awk '
		index($0, ENVIRON["KDIR"]) > 0 { print $1 }' |
	while read -r p; do
		kill -KILL "$p" 2>/dev/null
	done
}

cleanup_all() {
	kill_under "$root"
	[ -n "$MUTANTS_KEEP" ] || rm -rf "$root"
}

# ---------------------------------------------------------------------
# Parse the list: "id @ snippet @ replacement @ patterns" per line; blank
# lines and lines starting with # are ignored.  Writes, for entry N (in
# list order), $root/N.id, .snip, .repl, .tests, and $root/count.
awk -v root="$root" -v want="${MUTANTS:-}" '
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
BEGIN {
	n = 0; bad = 0
	if (want != "") {
		k = split(want, w, ",")
		for (i = 1; i <= k; i++) { id = trim(w[i]); if (id != "") { sel[id] = 1; nsel++ } }
	}
}
/^[ \t]*(#|$)/ { next }
{
	k = split($0, f, "@")
	if (k != 4) {
		printf "run.sh: %s line %d: want 4 fields separated by @, got %d: %s\n", FILENAME, FNR, k, $0 > "/dev/stderr"
		bad = 1; next
	}
	id = trim(f[1])
	if (id !~ /^[A-Za-z0-9_.-]+$/) {
		printf "run.sh: %s line %d: bad id \"%s\"\n", FILENAME, FNR, id > "/dev/stderr"
		bad = 1; next
	}
	if (id in seen) {
		printf "run.sh: %s line %d: duplicate id %s\n", FILENAME, FNR, id > "/dev/stderr"
		bad = 1; next
	}
	seen[id] = 1
	if (nsel && !(id in sel)) next
	found[id] = 1
	n++
	print id > (root "/" n ".id")
	print trim(f[2]) > (root "/" n ".snip")
	print trim(f[3]) > (root "/" n ".repl")
	print trim(f[4]) > (root "/" n ".tests")
	close(root "/" n ".id"); close(root "/" n ".snip")
	close(root "/" n ".repl"); close(root "/" n ".tests")
}
END {
	for (id in sel) if (!(id in found)) {
		printf "run.sh: MUTANTS names %s, which is not in the list\n", id > "/dev/stderr"
		bad = 1
	}
	print n > (root "/count")
	exit bad
}' "$list" || exit 2
total=$(cat "$root/count")
[ "$total" -gt 0 ] || { echo "run.sh: no mutants selected" >&2; exit 2; }

# ---------------------------------------------------------------------
# Apply one mutation: SNIP and REPL in the environment, socks5.c on
# stdin, the mutant on stdout.  Blanks are compared as runs (a run of
# spaces and tabs in the snippet matches any run in the line; leading and
# trailing blanks are ignored).  Exit 3 (with the reason on stderr) when
# the snippet is not found exactly once.
apply='
function norm(s) { gsub(/[ \t]+/, " ", s); sub(/^ /, "", s); return s }
function count(hay, nd,    c, p) {
	c = 0
	while ((p = index(hay, nd)) > 0) { c++; hay = substr(hay, p + length(nd)) }
	return c
}
{ line[NR] = $0 }
END {
	snip = norm(ENVIRON["SNIP"]); sub(/ $/, "", snip)
	repl = ENVIRON["REPL"]
	if (snip == "") { print "empty snippet" > "/dev/stderr"; exit 3 }
	hits = 0; where = ""
	for (i = 1; i <= NR; i++) {
		c = count(norm(line[i]), snip)
		if (c > 0) {
			hits += c; at = i
			where = where (where == "" ? "" : ", ") i (c > 1 ? " (" c " times)" : "")
		}
	}
	if (hits != 1) {
		if (hits == 0)
			print "snippet found 0 times in socks5.c" > "/dev/stderr"
		else
			print "snippet found " hits " times in socks5.c, at lines " where > "/dev/stderr"
		exit 3
	}
	raw = line[at]; rsnip = ENVIRON["SNIP"]
	sub(/^[ \t]+/, "", rsnip); sub(/[ \t]+$/, "", rsnip)
	if (count(raw, rsnip) == 1) {
		p = index(raw, rsnip)
		line[at] = substr(raw, 1, p - 1) repl substr(raw, p + length(rsnip))
	} else {
		match(raw, /^[ \t]*/)
		ind = substr(raw, 1, RLENGTH)
		nl = norm(raw); p = index(nl, snip)
		line[at] = ind substr(nl, 1, p - 1) repl substr(nl, p + length(snip))
	}
	print "line " at ": " line[at] > "/dev/stderr"
	for (i = 1; i <= NR; i++) print line[i]
}'

# Test files in $top/test matching pattern $1 (as test/all.tcl does).
files_for() {
	for b in $testfiles; do
		case $b in
		$1|$1.test) echo "$b" ;;
		esac
	done
}

# The test files to run for mutant N, in order, one per line.
files_of() {
	for p in $(cat "$root/$1.tests"); do
		files_for "$p"
	done | awk '!seen[$0]++'
	if [ -n "$full" ]; then
		for b in $testfiles; do echo "$b"; done
	fi
}

# Run a command in a process group of its own, so that a mutant that
# signals its process group (kill(0, ...)) hits its own test run, not this
# script: setsid(1) where there is one, else perl, else as it is.
if command -v setsid >/dev/null 2>&1; then
	isolation=setsid
elif command -v perl >/dev/null 2>&1; then
	isolation=perl
else
	isolation=
fi
isolated() {
	case $isolation in
	setsid) exec setsid "$@" ;;
	perl) exec perl -e 'setpgrp(0, 0); exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n"' "$@" ;;
	*) exec "$@" ;;
	esac
}

# Run test file $2 for the mutant in directory $1; log to $3.  Returns
# 0 passed, 1 failed, 2 timed out, 3 the runner itself failed, 4 the test
# run was killed by a signal it did not get from us.
run_file() {
	# the tests' temporary files go under $1 too: a test file that is
	# killed cannot remove its own
	mkdir -p "$1/tmp"
	(
		SOCKS5="$1/socks5" SOCKS5_TEST_FILE_TIMEOUT=$ftimeout TMPDIR="$1/tmp"
		export SOCKS5 SOCKS5_TEST_FILE_TIMEOUT TMPDIR
		isolated tclsh "$1/test/all.tcl" "$2"
	) < /dev/null > "$3" 2>&1 &
	tp=$!
	# Outer limit: all.tcl stops a file after $ftimeout s by itself.
	(
		i=0
		while [ $i -lt $((ftimeout + 30)) ]; do
			sleep 1
			kill -0 $tp 2>/dev/null || exit 0
			i=$((i + 1))
		done
		kill -KILL $tp 2>/dev/null
		echo "run.sh: killed the test run after $((ftimeout + 30)) s" >> "$3"
	) &
	wp=$!
	wait $tp
	st=$?
	wait $wp
	kill_under "$1"
	# test/all.tcl's own list of server pids, left when it was killed
	set +f
	rm -f /tmp/socks5-test-pids-$tp-*
	set -f
	if grep -q -e "timed out after" -e "run.sh: killed the test run" "$3"; then
		return 2
	fi
	if ! tail -1 "$3" | grep -q '^[0-9][0-9]* passed, [0-9][0-9]* failed, [0-9][0-9]* skipped$'; then
		if [ $st -gt 128 ]; then
			echo "run.sh: the test run died of signal $((st - 128))" >> "$3"
			return 4
		fi
		return 3
	fi
	[ $st -eq 0 ] && return 0
	return 1
}

# Mutant N: prints one result line and writes it to $root/N.result as
# "STATUS<tab>id<tab>seconds<tab>detail".
mutant() {
	n=$1
	id=$(cat "$root/$n.id")
	dir=$root/m.$n
	t0=$(now)
	mkdir "$dir" "$dir/test" || return
	cp "$top/socks5.h" "$dir/"
	for f in $(ls "$top/test"); do
		[ -f "$top/test/$f" ] && cp "$top/test/$f" "$dir/test/"
	done
	status= detail=
	# a test pattern that matches nothing is as stale as a lost snippet
	for p in $(cat "$root/$n.tests"); do
		if [ -z "$(files_for "$p")" ]; then
			status=STALE detail="test pattern '$p' matches no file in test/"
			break
		fi
	done
	if [ -z "$status" ] && [ -z "$(cat "$root/$n.tests")" ]; then
		status=STALE detail="no test files named"
	fi
	if [ -z "$status" ] && [ "$(cat "$root/$n.snip")" = "$(cat "$root/$n.repl")" ]; then
		status=STALE detail="replacement equals the snippet"
	fi
	if [ -z "$status" ]; then
		if ! SNIP=$(cat "$root/$n.snip") REPL=$(cat "$root/$n.repl") \
		    awk "$apply" < "$top/socks5.c" > "$dir/socks5.c" 2> "$dir/apply.log"; then
			status=STALE
			detail="$(cat "$dir/apply.log"): $(cat "$root/$n.snip")"
		fi
	fi
	if [ -z "$status" ] &&
	    ! (cd "$dir" && $cc -O1 -o socks5 socks5.c) > "$dir/build.log" 2>&1; then
		status=STILLBORN
		detail=$(awk '/error/ { print; exit }' "$dir/build.log")
	fi
	if [ -z "$status" ] && [ -f "$root/orig/socks5" ] &&
	    cmp -s "$dir/socks5" "$root/orig/socks5"; then
		detail="(same binary as the original: equivalent at -O1) "
	fi
	if [ -z "$status" ] && [ -n "$MUTANTS_CHECK" ]; then
		status=BUILT
		detail="${detail}$(sed -n 's/^line /line /p' "$dir/apply.log")"
	fi
	if [ -z "$status" ]; then
		status=SURVIVED
		for f in $(files_of "$n"); do
			run_file "$dir" "$f" "$dir/run.log"
			r=$?
			if [ $r -eq 1 ]; then
				status=KILLED
				detail="$detail$f"
				break
			elif [ $r -eq 2 ]; then
				status=KILLED
				detail="$detail$f (timeout)"
				break
			elif [ $r -eq 4 ]; then
				status=KILLED
				detail="$detail$f (the test run died of signal $(sed -n 's/^run.sh: the test run died of signal //p' "$dir/run.log"))"
				break
			elif [ $r -eq 3 ]; then
				status=ERROR
				detail="$detail$f: no summary line from test/all.tcl: $(tail -3 "$dir/run.log" | tr '\n' ' ')"
				break
			fi
			s=$(tail -1 "$dir/run.log" | awk '{ print $5 }')
			[ "$s" = 0 ] || detail="$detail$f: $s skipped; "
		done
		[ $status = SURVIVED ] && detail="${detail}passed: $(files_of "$n" | tr '\n' ' ')"
	fi
	secs=$(( $(now) - t0 ))
	printf '%-9s %-6s %4ss  %s\n' "$status" "$id" "$secs" "$detail"
	printf '%s\t%s\t%s\t%s\n' "$status" "$id" "$secs" "$detail" > "$root/$n.result"
	if [ -n "$MUTANTS_KEEP" ]; then
		echo "          kept: $dir"
	else
		rm -rf "$dir"
	fi
}

# ---------------------------------------------------------------------
start=$(now)
echo "mutants: $total from $list, $jobs at a time, ${ftimeout}s per test file${full:+, full suite}"

# The unmutated build, to spot mutants that compile to the same binary.
mkdir "$root/orig"
cp "$top/socks5.c" "$top/socks5.h" "$root/orig/"
if ! (cd "$root/orig" && $cc -O1 -o socks5 socks5.c) > "$root/orig/build.log" 2>&1; then
	echo "run.sh: socks5.c itself does not build:" >&2
	cat "$root/orig/build.log" >&2
	exit 2
fi

# MUTANTS_BASELINE=1: first run every test file the selected entries name
# against the unmutated build, as many at a time as the mutants will run.
# A file that fails there would "kill" every mutant naming it: stop.
if [ -n "$MUTANTS_BASELINE" ]; then
	# one directory per lane: a lane kills what is left running under its
	# own directory after each file
	k=1
	while [ $k -le "$jobs" ]; do
		mkdir "$root/base.$k" "$root/base.$k/test"
		cp "$root/orig/socks5" "$root/orig/socks5.c" "$root/orig/socks5.h" "$root/base.$k/"
		for f in $(ls "$top/test"); do
			[ -f "$top/test/$f" ] && cp "$top/test/$f" "$root/base.$k/test/"
		done
		k=$((k + 1))
	done
	n=1
	while [ $n -le "$total" ]; do
		files_of $n
		n=$((n + 1))
	done | awk '!seen[$0]++' > "$root/baseline.files"
	echo "baseline: $(wc -l < "$root/baseline.files" | tr -d ' ') test files against the unmutated build"
	bl() {
		awk -v k=$1 -v j=$jobs '(NR - 1) % j == k - 1' "$root/baseline.files" |
		while read -r f; do
			run_file "$root/base.$1" "$f" "$root/base.$1/$f.log"
			case $? in
			0) echo "baseline: pass $f" ;;
			2) echo "baseline: FAIL $f (timeout)"; echo "$f" >> "$root/baseline.bad" ;;
			*) echo "baseline: FAIL $f"; echo "$f" >> "$root/baseline.bad"
			   sed -n '2,$p' "$root/base.$1/$f.log" | sed 's/^/    /' ;;
			esac
		done
	}
	k=1
	while [ $k -le "$jobs" ]; do
		bl $k &
		k=$((k + 1))
	done
	wait
	if [ -s "$root/baseline.bad" ]; then
		echo "run.sh: the unmutated build fails $(tr '\n' ' ' < "$root/baseline.bad"): fix that first" >&2
		exit 2
	fi
	echo "baseline: every file passes"
fi

lane() {
	n=$1
	while [ "$n" -le "$total" ]; do
		mutant "$n"
		n=$((n + jobs))
	done
}

k=1
while [ $k -le "$jobs" ] && [ $k -le "$total" ]; do
	lane $k &
	k=$((k + 1))
done
wait

echo
echo "summary (list order):"
killed=0 survived=0 stillborn=0 stale=0 errors=0 built=0
n=1
while [ $n -le "$total" ]; do
	if [ -f "$root/$n.result" ]; then
		IFS='	' read -r st id secs detail < "$root/$n.result"
		printf '%-9s %-6s %4ss  %s\n' "$st" "$id" "$secs" "$detail"
		case $st in
		KILLED) killed=$((killed + 1)) ;;
		SURVIVED) survived=$((survived + 1)) ;;
		STILLBORN) stillborn=$((stillborn + 1)) ;;
		STALE) stale=$((stale + 1)) ;;
		BUILT) built=$((built + 1)) ;;
		*) errors=$((errors + 1)) ;;
		esac
	else
		echo "ERROR     $(cat "$root/$n.id") no result"
		errors=$((errors + 1))
	fi
	n=$((n + 1))
done
[ $errors -eq 0 ] || echo "$errors runner errors (not in the score): see the lines marked ERROR"
echo "time: $(( $(now) - start ))s"
if [ -n "$MUTANTS_CHECK" ]; then
	echo "mutants: $built built, $stillborn stillborn, $stale stale (MUTANTS_CHECK: no tests run)"
	[ $stale -eq 0 ] && [ $errors -eq 0 ] && exit 0
	exit 1
fi
echo "mutants: $killed killed, $survived survived, $stillborn stillborn, $stale stale (score $killed/$((killed + survived)))"
[ $survived -eq 0 ] && [ $stale -eq 0 ] && [ $errors -eq 0 ] && exit 0
exit 1
