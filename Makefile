# socks5 - POSIX Makefile, read by GNU make and BSD make alike.
.POSIX:

CC	= cc
CFLAGS	= -O2
LDFLAGS	=
LDLIBS	=
PREFIX	= /usr/local
MANDIR	= $(PREFIX)/share/man
DESTDIR	=
SOCKS5	= ./socks5

all: socks5

socks5: socks5.c socks5.h
	$(CC) $(CFLAGS) $(LDFLAGS) -o socks5 socks5.c $(LDLIBS)

test: socks5
	sh test/deps.sh
	SOCKS5="$(SOCKS5)" tclsh test/all.tcl

clean:
	rm -f socks5 *.o

install: socks5
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1
	cp socks5 $(DESTDIR)$(PREFIX)/bin/socks5
	chmod 755 $(DESTDIR)$(PREFIX)/bin/socks5
	cp socks5.1 $(DESTDIR)$(MANDIR)/man1/socks5.1
	chmod 644 $(DESTDIR)$(MANDIR)/man1/socks5.1

.PHONY: all test clean install
