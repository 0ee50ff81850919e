# socks5 - POSIX Makefile, read by GNU make and BSD make alike.
#
#   make                 build ./socks5
#   make GSSAPI=1        ... with GSS-API, method 01 (RFC 1961), linked to
#                        the system's library: krb5-config's flags, or
#                        GSSAPI_CFLAGS and GSSAPI_LIBS (test/gssapi.sh);
#                        `make clean` first if ./socks5 was built without
#   make test            run the test suite against $(SOCKS5): the files
#                        in parallel, JOBS at a time (default: two per
#                        processor, as they mostly wait on timers;
#                        JOBS=1 runs them one after another;
#                        TESTS="a b" picks files).  The files that wait on
#                        a compile-time delay of socks5.c use a second
#                        build from the same source, $(XBIN)/socks5-quick,
#                        with the shorter QUICKDEFS; they read the values
#                        from the environment, so every assertion follows
#                        the build.  Under an emulator or a sanitizer the
#                        other test-* targets run the files 1 (mips,
#                        clock32) or 2 (sanitize, musl) at a time: their
#                        timing margins are scaled by SOCKS5_TEST_SLOW,
#                        not by the load of the neighbours.  The
#                        GSS-API tests run against $(XBIN)/socks5-gssapi,
#                        built when krb5-config is at hand (else they
#                        skip), with a Kerberos realm of their own.
#   make small           ./socks5-small: -Os and the other size flags
#                        the compiler takes (test/small.sh); WITHOUT="udp
#                        bind rules auth" (any of the words) leaves those
#                        features out: all four, a CONNECT-only server
#   make test-small      the suite against that build (and its quick
#                        twin); tests of a left-out feature skip
#   make test-small-each test-small for every single feature left out
#                        and for all four (by hand, about 5 minutes)
#   make sizes           the router builds' sizes on each machine at hand
#                        (test/sizes.sh: x86_64, MIPS, and with zig i386,
#                        armhf and mipsel)
#   make install         install the binary and the man page
#   make portable        build with every compiler at hand, print sizes
#                        (the zig cc rows: macOS x86_64 and aarch64,
#                        static musl mipsel, armhf, aarch64 and i386)
#   make cross           only the binaries the suite can run, into $(XBIN)
#   make zig             install the pinned zig (0.11.0) from the npm
#                        registry into ~/.cache/socks5-zig (ZIG=path uses
#                        another; test/zig-install.sh)
#   make test-musl       the suite against a static musl build
#   make test-mips       the suite against big-endian MIPS under qemu-mips
#   make test-mipsel     CROSSTESTS against a static musl build under
#   make test-armhf      qemu-user: little-endian MIPS (qemu-mipsel),
#   make test-aarch64    ARMv7 hard-float Thumb-2 (qemu-arm), aarch64
#   make test-i386       (qemu-aarch64), i386 (qemu-i386); built by zig cc,
#                        one file at a time; TESTS="*" runs every file
#   make test-cross      the four above, one after another
#   make test-clock32    the time and size tests against a 32-bit (MIPS)
#                        test-clock build whose clock wraps 2.5 s after
#                        each start (CLOCKTESTS)
#   make test-workers    the suite against ./socks5 -w 2 (and the quick
#                        build with -w 2); the files that need one
#                        process skip those tests (constraint oneProcess)
#   make test-sanitize   the suite against an ASan+UBSan build
#   make test-valgrind   the suite under valgrind memcheck (slow)
#   make fuzz            build the libFuzzer target; fuzz-run runs both
#                        fuzzers FUZZSECS each; fuzz-regress replays
#                        test/fuzz/regress/* and the seeds
#   make bench           side-by-side benchmark (by hand, minutes)
#   make mutants         mutation testing: test/mutants/list against the
#                        suite (MUTANTS=id,.. MUTANTS_JOBS=2 MUTANTS_FULL=1
#                        MUTANTS_CHECK=1 MUTANTS_BASELINE=1
#                        MUTANTS_TIMEOUT=secs)
#   make chaos           seeded stress run against $(SOCKS5) (CHAOS_SEED,
#                        CHAOS_SECS=60 per seed; test/chaos/chaos.py)
#   make chaos-ci        the CI's chaos run: ./socks5 and ./socks5-asan,
#                        seeds 1, 2 and a random one, about 75 s in all
.POSIX:

CC	= cc
CFLAGS	= -O2
LDFLAGS	=
LDLIBS	=
PREFIX	= /usr/local
MANPREFIX = $(PREFIX)/share/man
MANDIR	= $(MANPREFIX)/man1
DESTDIR	=
SOCKS5	= ./socks5
TESTS	=
FUZZSECS = 60
WITHOUT	=
GSSAPI	=
GSSAPI_CFLAGS =
GSSAPI_LIBS =
XBIN	= test/tmp-bin
QEMU_MIPS = qemu-mips -L /usr/mips-linux-gnu
ZIG	=
# The cross suites' files: every command (CONNECT in request, BIND, UDP
# ASSOCIATE), the greeting, logins and the user file, access rules, UDP
# reassembly (its limits and its timer), inetd mode on a socket and on
# pipes, half-close, 64 MiB each way, IPv4-mapped addresses, the command
# line and signals, and a real client (curl); about 70 s per machine
# under qemu-user.
CROSSTESTS = greeting request auth rules bind udp udp-reasm udp-frag \
	udp-names inetd inetdpipe halfclose bigtransfer family options \
	userfile curl
CLOCKTESTS = clockwrap sizes timeout bruteforce pacing udp-frag udplate \
	lookupqueue tablefull spillpool handshakepool status halfclose \
	bigtransfer
JOBS	=
# The quick build: the delays the tests wait on, shortened.  One source of
# truth: the same words are passed to the tests (SOCKS5_QUICK_DEFS).
QUICKDEFS = -DSOCKS5_AUTH_DELAY_MS=300 -DSOCKS5_FRAG_SECS=2 -DSOCKS5_HELPER_IDLE_MS=2000 \
	-DSOCKS5_LINGER_MS=500 -DSOCKS5_STOP_MS=1000
SANFLAGS = -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer

# (GNU and BSD make: test/ is a directory, and the other names are no files)
.PHONY: all small sizes test-small test-small-each test test-workers test-sanitize test-valgrind portable cross zig \
	test-musl test-mips test-mipsel test-armhf test-aarch64 test-i386 \
	test-cross \
	test-clock32 fuzz fuzz-run fuzz-regress bench mutants chaos chaos-ci \
	install clean

all: socks5

socks5: socks5.c socks5.h
	@if [ -n "$(GSSAPI)" ] && [ "$(GSSAPI)" != 0 ]; then \
	    GSSAPI_CFLAGS="$(GSSAPI_CFLAGS)" GSSAPI_LIBS="$(GSSAPI_LIBS)" \
	    sh test/gssapi.sh "$(CC) $(CFLAGS) $(LDFLAGS)" socks5 \
	    "$(LDLIBS)"; \
	else \
	    echo "$(CC) $(CFLAGS) $(LDFLAGS) -o socks5 socks5.c $(LDLIBS)"; \
	    $(CC) $(CFLAGS) $(LDFLAGS) -o socks5 socks5.c $(LDLIBS); \
	fi

test: socks5 $(XBIN)/socks5-quick $(XBIN)/socks5-gssapi
	sh test/deps.sh
	SOCKS5="$(SOCKS5)" SOCKS5_QUICK="$$(pwd)/$(XBIN)/socks5-quick" \
	SOCKS5_GSSAPI="$$(pwd)/$(XBIN)/socks5-gssapi" \
	SOCKS5_QUICK_DEFS="$(QUICKDEFS)" TEST_JOBS="$(JOBS)" \
	tclsh test/all.tcl $(TESTS)

test-workers: socks5 $(XBIN)/socks5-quick
	sh test/deps.sh
	SOCKS5="$$(pwd)/socks5 -w 2" \
	SOCKS5_QUICK="$$(pwd)/$(XBIN)/socks5-quick -w 2" \
	SOCKS5_QUICK_DEFS="$(QUICKDEFS)" TEST_JOBS="$(JOBS)" \
	tclsh test/all.tcl $(TESTS)

small:
	sh test/small.sh "$(CC)" "$(WITHOUT)" socks5-small

test-small:
	mkdir -p $(XBIN)
	sh test/small.sh "$(CC)" "$(WITHOUT)" $(XBIN)/socks5-small
	sh test/small.sh "$(CC)" "$(WITHOUT)" $(XBIN)/socks5-small-quick \
	    $(QUICKDEFS)
	sh test/deps.sh
	SOCKS5="$$(pwd)/$(XBIN)/socks5-small" SOCKS5_WITHOUT="$(WITHOUT)" \
	SOCKS5_QUICK="$$(pwd)/$(XBIN)/socks5-small-quick" \
	SOCKS5_QUICK_DEFS="$(QUICKDEFS)" TEST_JOBS="$(JOBS)" \
	tclsh test/all.tcl $(TESTS)

sizes:
	ZIG="$(ZIG)" CC="$(CC)" sh test/sizes.sh

test-small-each:
	for w in udp bind rules auth "udp bind rules auth"; do \
	    $(MAKE) test-small WITHOUT="$$w" || exit 1; \
	done

$(XBIN)/socks5-gssapi: socks5.c socks5.h Makefile
	mkdir -p $(XBIN)
	GSSAPI_CFLAGS="$(GSSAPI_CFLAGS)" GSSAPI_LIBS="$(GSSAPI_LIBS)" \
	    sh test/gssapi.sh "$(CC) $(CFLAGS) $(LDFLAGS)" $@ "$(LDLIBS)" \
	    --optional

$(XBIN)/socks5-quick: socks5.c socks5.h Makefile
	mkdir -p $(XBIN)
	$(CC) $(CFLAGS) $(QUICKDEFS) $(LDFLAGS) -o $(XBIN)/socks5-quick \
	    socks5.c $(LDLIBS)

$(XBIN)/socks5-asan-quick: socks5.c socks5.h Makefile
	mkdir -p $(XBIN)
	clang $(SANFLAGS) $(QUICKDEFS) -o $(XBIN)/socks5-asan-quick socks5.c

socks5-asan: socks5.c socks5.h
	clang $(SANFLAGS) -o socks5-asan socks5.c

test-sanitize: socks5-asan $(XBIN)/socks5-asan-quick
	sh test/deps.sh
	j="$(JOBS)"; ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1 SOCKS5_SANITIZED=1 \
	SOCKS5="$$(pwd)/socks5-asan" \
	SOCKS5_QUICK="$$(pwd)/$(XBIN)/socks5-asan-quick" \
	SOCKS5_QUICK_DEFS="$(QUICKDEFS)" TEST_JOBS="$${j:-2}" \
	tclsh test/all.tcl $(TESTS)

test-valgrind: socks5
	sh test/deps.sh
	sh test/valgrind.sh $(TESTS)

portable:
	ZIG="$(ZIG)" sh test/portable.sh

cross:
	ZIG="$(ZIG)" sh test/portable.sh --build-only $(XBIN)

zig:
	sh test/zig-install.sh

test-musl:
	sh test/portable.sh --build-only --only musl $(XBIN)
	j="$(JOBS)"; SOCKS5="$$(pwd)/$(XBIN)/socks5.musl" TEST_JOBS="$${j:-2}" \
	tclsh test/all.tcl $(TESTS)

test-mips:
	sh test/portable.sh --build-only --only mips $(XBIN)
	j="$(JOBS)"; SOCKS5="$(QEMU_MIPS) $$(pwd)/$(XBIN)/socks5.mips-qemu" \
	TEST_JOBS="$${j:-1}" tclsh test/all.tcl $(TESTS)

# The static musl cross builds under qemu-user: one file at a time, as for
# MIPS.  Only MIPS needs the SO_ERROR shim (socks5.mipsel-qemu): arm,
# aarch64 and i386 share the host's errno numbers.
test-mipsel:
	ZIG="$(ZIG)" sh test/portable.sh --build-only --only mipsel $(XBIN)
	t="$(TESTS)"; j="$(JOBS)"; \
	SOCKS5="qemu-mipsel $$(pwd)/$(XBIN)/socks5.mipsel-qemu" \
	TEST_JOBS="$${j:-1}" tclsh test/all.tcl $${t:-$(CROSSTESTS)}

test-armhf:
	ZIG="$(ZIG)" sh test/portable.sh --build-only --only armhf $(XBIN)
	t="$(TESTS)"; j="$(JOBS)"; \
	SOCKS5="qemu-arm $$(pwd)/$(XBIN)/socks5.armhf" \
	TEST_JOBS="$${j:-1}" tclsh test/all.tcl $${t:-$(CROSSTESTS)}

test-aarch64:
	ZIG="$(ZIG)" sh test/portable.sh --build-only --only aarch64 $(XBIN)
	t="$(TESTS)"; j="$(JOBS)"; \
	SOCKS5="qemu-aarch64 $$(pwd)/$(XBIN)/socks5.aarch64" \
	TEST_JOBS="$${j:-1}" tclsh test/all.tcl $${t:-$(CROSSTESTS)}

test-i386:
	ZIG="$(ZIG)" sh test/portable.sh --build-only --only i386 $(XBIN)
	t="$(TESTS)"; j="$(JOBS)"; \
	SOCKS5="qemu-i386 $$(pwd)/$(XBIN)/socks5.i386" \
	TEST_JOBS="$${j:-1}" tclsh test/all.tcl $${t:-$(CROSSTESTS)}

test-cross: test-mipsel test-armhf test-aarch64 test-i386

test-clock32:
	mkdir -p $(XBIN)
	mips-linux-gnu-gcc -O2 -DSOCKS5_TEST_CLOCK=60000 \
	    -Wl,--wrap=getsockopt -o $(XBIN)/socks5.mips-clock \
	    socks5.c test/qemu_soerror.c
	j="$(JOBS)"; SOCKS5_CLOCK_LEAD_MS=2500 \
	SOCKS5="$(QEMU_MIPS) $$(pwd)/$(XBIN)/socks5.mips-clock" \
	TEST_JOBS="$${j:-1}" tclsh test/all.tcl $(CLOCKTESTS)

fuzz:
	sh test/fuzz/run.sh --build-only

fuzz-run:
	sh test/fuzz/run.sh $(FUZZSECS)

fuzz-regress:
	sh test/fuzz/regress.sh

bench:
	sh test/bench/run.sh

mutants:
	sh test/deps.sh
	CC="$(CC)" MUTANTS="$(MUTANTS)" MUTANTS_JOBS="$(MUTANTS_JOBS)" \
	MUTANTS_FULL="$(MUTANTS_FULL)" MUTANTS_CHECK="$(MUTANTS_CHECK)" \
	MUTANTS_TIMEOUT="$(MUTANTS_TIMEOUT)" MUTANTS_KEEP="$(MUTANTS_KEEP)" \
	MUTANTS_BASELINE="$(MUTANTS_BASELINE)" \
	sh test/mutants/run.sh

chaos: socks5
	SOCKS5="$(SOCKS5)" python3 test/chaos/chaos.py

chaos-ci: socks5 socks5-asan
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1 python3 test/chaos/chaos.py --ci

install: socks5
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)
	cp socks5 $(DESTDIR)$(PREFIX)/bin/socks5
	chmod 755 $(DESTDIR)$(PREFIX)/bin/socks5
	cp socks5.1 $(DESTDIR)$(MANDIR)/socks5.1
	chmod 644 $(DESTDIR)$(MANDIR)/socks5.1

clean:
	rm -f socks5 socks5-asan socks5-small *.o
	rm -rf $(XBIN)
