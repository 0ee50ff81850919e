/*
 * embed.c - embedding test for socks5.h (the C side; embed.cc is the C++
 * one). Build: cc -c -DSOCKS5_NO_MAIN socks5.c && cc -I.. embed.c socks5.o
 *
 * A) The program starts the server with socks5_open() on 127.0.0.1, port
 *    0, finds the port the kernel picked (the listening socket is among
 *    the descriptors socks5_pollfds() hands out: the one that is a
 *    listening TCP socket), and drives it from its OWN poll() loop, in
 *    which its own descriptors (an echo server, its listener, the client)
 *    sit after the server's. Through it: CONNECT to the echo server by
 *    IPv4 literal and by DOMAINNAME "localhost" (resolver helpers), byte
 *    checks both ways, half-close, BND.PORT equal to the port the echo
 *    server sees. Then socks5_close().
 * B) socks5_serve_fd() in a forked child serves one pre-connected socket,
 *    a socketpair and then a connected TCP pair; the parent runs a CONNECT
 *    through it to its echo server and checks the child's exit status 0.
 *
 * Regression probes for bugs found earlier, each run on its own with -k
 * (a run without -k does not run them; embed.test runs each, embed-4.x):
 *   -k inherit   descriptors the program had open before socks5_open()
 *                must not be kept open by the resolver helpers.
 *   -k forkopen  socks5_serve_fd() in a child forked while socks5_open()
 *                is active (with a session in progress) must serve its one
 *                connection and exit, and not touch the parent's server.
 *   -k forkfds   socks5_serve_fd() in a child of a running server must let
 *                go of every descriptor of the parent's server, its
 *                sessions' sockets too: when a session of the parent ends
 *                (the parent closes its sockets), its client and target
 *                see EOF at once, not when the child exits.
 *   -k once      one server per process: while socks5_open() is active, a
 *                second socks5_open() and a socks5_serve_fd() in the same
 *                process return -1 (and close the fd), the first server
 *                keeps serving; after socks5_close() a new open works.
 *                (First, an open with a name for external_addr fails.)
 *
 * Prints "ok: ..." per check and "embed: all ok" at the end; exit 0 on
 * success, 1 on a failed check (with "FAIL: ..." on stdout).
 */

#define _XOPEN_SOURCE 600

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "socks5.h"

#define PAYLOAD		(256 * 1024)
#define ECHO_BUF	65536
#define MAXECHO		8
#define OWN_FDS		(2 + MAXECHO + 2)

static const char *progname = "embed";

static void
fail(const char *what)
{
	printf("FAIL: %s\n", what);
	fflush(stdout);
	exit(1);
}

static void
fail_errno(const char *what)
{
	printf("FAIL: %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void
ok(const char *what)
{
	printf("ok: %s\n", what);
	fflush(stdout);
}

static long
now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long)tv.tv_sec * 1000L + (long)(tv.tv_usec / 1000);
}

static void
nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		fail_errno("fcntl");
}

/* ------------------------------------------------------------------ */
/* The program's own echo server: a listener and up to MAXECHO conns.   */

struct echo_conn {
	int		 fd;
	unsigned char	 buf[ECHO_BUF];
	size_t		 off, len;
	int		 eof;
	unsigned	 peer_port;	/* as the echo server sees it */
};

static int		 echo_lfd = -1;
static unsigned		 echo_port;
static struct echo_conn	 echo[MAXECHO];
static unsigned		 echo_last_peer;	/* port of the last accepted */
static unsigned long	 echo_accepted;

/* When each connection (by the peer's port) saw EOF or an error. */
#define MAXEOF		64
static unsigned		 eof_port[MAXEOF];
static long		 eof_ms[MAXEOF];
static int		 neof;

static void
echo_note_eof(unsigned port)
{
	if (neof < MAXEOF) {
		eof_port[neof] = port;
		eof_ms[neof++] = now_ms();
	}
}

/* When the echo server's connection from port saw EOF, or -1. */
static long
echo_eof_at(unsigned port)
{
	int	 i;

	for (i = 0; i < neof; i++)
		if (eof_port[i] == port)
			return eof_ms[i];
	return -1;
}

/* A listening TCP socket on 127.0.0.1 (port chosen by the kernel). */
static int
loopback_listener(int backlog, unsigned *port, const char *what)
{
	struct sockaddr_in	 a;
	socklen_t		 alen = sizeof(a);
	int			 l;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((l = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    bind(l, (struct sockaddr *)&a, sizeof(a)) == -1 ||
	    listen(l, backlog) == -1 ||
	    getsockname(l, (struct sockaddr *)&a, &alen) == -1)
		fail_errno(what);
	*port = ntohs(a.sin_port);
	return l;
}

static void
echo_start(void)
{
	int	 i;

	for (i = 0; i < MAXECHO; i++)
		echo[i].fd = -1;
	echo_lfd = loopback_listener(16, &echo_port, "echo listener");
	nonblock(echo_lfd);
}

static void
echo_accept(void)
{
	struct sockaddr_in	 p;
	socklen_t		 plen;
	int			 fd, i;

	for (;;) {
		plen = sizeof(p);
		fd = accept(echo_lfd, (struct sockaddr *)&p, &plen);
		if (fd == -1)
			return;
		for (i = 0; i < MAXECHO && echo[i].fd >= 0; i++)
			;
		if (i == MAXECHO) {
			(void)close(fd);
			continue;
		}
		nonblock(fd);
		echo[i].fd = fd;
		echo[i].off = echo[i].len = 0;
		echo[i].eof = 0;
		echo[i].peer_port = ntohs(p.sin_port);
		echo_last_peer = echo[i].peer_port;
		echo_accepted++;
	}
}

static short
echo_events(const struct echo_conn *e)
{
	short	 ev = 0;

	if (!e->eof && e->len < sizeof(e->buf))
		ev |= POLLIN;
	if (e->len > 0)
		ev |= POLLOUT;
	return ev;
}

static void
echo_io(struct echo_conn *e, short rev)
{
	ssize_t	 n;

	if ((rev & (POLLIN | POLLHUP | POLLERR)) && !e->eof &&
	    e->len < sizeof(e->buf)) {
		if (e->off > 0) {
			memmove(e->buf, e->buf + e->off, e->len);
			e->off = 0;
		}
		n = read(e->fd, e->buf + e->len, sizeof(e->buf) - e->len);
		if (n > 0)
			e->len += (size_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			e->eof = 1;
			echo_note_eof(e->peer_port);
		}
	}
	if (e->len > 0) {
		n = write(e->fd, e->buf + e->off, e->len);
		if (n > 0) {
			e->off += (size_t)n;
			e->len -= (size_t)n;
		}
	}
	if (e->eof && e->len == 0) {
		(void)shutdown(e->fd, SHUT_WR);
		(void)close(e->fd);
		e->fd = -1;
	}
}

/* ------------------------------------------------------------------ */
/* A SOCKS client, as a non-blocking state machine.                     */

enum { C_IDLE, C_CONNECTING, C_GREETING, C_REPLY, C_RELAY, C_EOF, C_DONE };

struct client {
	int		 fd;
	int		 step;
	int		 pipelined;	/* greeting + request + data at once */
	unsigned char	 req[300];
	size_t		 reqlen;
	const unsigned char *out;	/* what is to be sent ... */
	size_t		 outlen, outoff;
	unsigned char	 in[PAYLOAD + 64];
	size_t		 inlen;
	unsigned char	 rep;		/* REP and BND of the reply */
	unsigned char	 atyp;
	unsigned char	 bnd[16];
	unsigned	 bnd_port;
	char		 why[200];
};

static unsigned char	 payload[PAYLOAD];
static unsigned char	 sendbuf[PAYLOAD + 400];

static void
payload_fill(unsigned seed)
{
	unsigned long	 x = seed;
	size_t		 i;

	for (i = 0; i < sizeof(payload); i++) {
		x = (x * 1103515245UL + 12345UL) & 0x7fffffffUL;
		payload[i] = (unsigned char)(x >> 16);
	}
}

/* CONNECT request to host (IPv4 literal or a name) : port. */
static void
client_request(struct client *c, const char *host, unsigned port)
{
	struct in_addr	 ia;
	size_t		 n = 0, hl;

	c->req[n++] = SOCKS5_VERSION;
	c->req[n++] = SOCKS5_CMD_CONNECT;
	c->req[n++] = 0;
	if (inet_pton(AF_INET, host, &ia) == 1) {
		c->req[n++] = SOCKS5_ATYP_IPV4;
		memcpy(c->req + n, &ia, 4);
		n += 4;
	} else {
		hl = strlen(host);
		c->req[n++] = SOCKS5_ATYP_DOMAIN;
		c->req[n++] = (unsigned char)hl;
		memcpy(c->req + n, host, hl);
		n += hl;
	}
	c->req[n++] = (unsigned char)(port >> 8);
	c->req[n++] = (unsigned char)(port & 0xff);
	c->reqlen = n;
}

/* Start a client on fd: connecting (in progress) or already connected. */
static void
client_start(struct client *c, int fd, int connecting, const char *host,
    unsigned port, int pipelined)
{
	memset(c->why, 0, sizeof(c->why));
	c->fd = fd;
	c->pipelined = pipelined;
	c->inlen = 0;
	c->rep = 0xff;
	client_request(c, host, port);
	sendbuf[0] = SOCKS5_VERSION;
	sendbuf[1] = 1;
	sendbuf[2] = SOCKS5_METHOD_NONE;
	if (pipelined) {
		memcpy(sendbuf + 3, c->req, c->reqlen);
		memcpy(sendbuf + 3 + c->reqlen, payload, sizeof(payload));
		c->out = sendbuf;
		c->outlen = 3 + c->reqlen + sizeof(payload);
	} else {
		c->out = sendbuf;
		c->outlen = 3;
	}
	c->outoff = 0;
	c->step = connecting ? C_CONNECTING : C_GREETING;
}

static void
client_fail(struct client *c, const char *why)
{
	if (c->why[0] == '\0')
		(void)sprintf(c->why, "%.190s", why);
	c->step = C_DONE;
}

static short
client_events(const struct client *c)
{
	short	 ev = 0;

	if (c->step == C_IDLE || c->step == C_DONE)
		return 0;
	if (c->step == C_CONNECTING)
		return POLLOUT;
	ev = POLLIN;
	if (c->outoff < c->outlen)
		ev |= POLLOUT;
	return ev;
}

/* Bytes of a complete reply at c->in, or 0 while incomplete. */
static size_t
reply_len(const struct client *c, size_t at)
{
	size_t	 have = c->inlen - at;

	if (have < 5)
		return 0;
	switch (c->in[at + 3]) {
	case SOCKS5_ATYP_IPV4:
		return have >= 10 ? 10 : 0;
	case SOCKS5_ATYP_IPV6:
		return have >= 22 ? 22 : 0;
	case SOCKS5_ATYP_DOMAIN:
		return have >= 7U + c->in[at + 4] ? 7U + c->in[at + 4] : 0;
	default:
		return (size_t)-1;
	}
}

static void
client_io(struct client *c, short rev)
{
	ssize_t	 n;
	size_t	 rl;
	int	 err = 0;
	socklen_t elen = sizeof(err);

	if (c->step == C_CONNECTING) {
		if (!(rev & (POLLOUT | POLLERR | POLLHUP)))
			return;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1 ||
		    err != 0) {
			client_fail(c, "connect to the server failed");
			return;
		}
		c->step = C_GREETING;
	}
	if ((rev & POLLOUT) && c->outoff < c->outlen) {
		n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
		if (n > 0)
			c->outoff += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			client_fail(c, "write to the server failed");
			return;
		}
		if (c->step == C_RELAY && c->outoff == c->outlen)
			(void)shutdown(c->fd, SHUT_WR);	/* half-close */
	}
	if (!(rev & (POLLIN | POLLHUP | POLLERR)))
		return;
	n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			client_fail(c, "read from the server failed");
		return;
	}
	if (n == 0) {
		if (c->step == C_EOF || (c->step == C_RELAY &&
		    c->inlen == sizeof(payload)))
			c->step = C_DONE;
		else
			client_fail(c, "server closed early");
	} else {
		c->inlen += (size_t)n;
	}
	for (;;) {
		switch (c->step) {
		case C_GREETING:
			if (c->inlen < 2)
				return;
			if (c->in[0] != 5 || c->in[1] != 0) {
				client_fail(c, "greeting reply is not 05 00");
				return;
			}
			memmove(c->in, c->in + 2, c->inlen - 2);
			c->inlen -= 2;
			c->step = C_REPLY;
			if (!c->pipelined) {
				c->out = c->req;
				c->outlen = c->reqlen;
				c->outoff = 0;
			}
			continue;
		case C_REPLY:
			if ((rl = reply_len(c, 0)) == 0)
				return;
			if (rl == (size_t)-1 || c->in[0] != 5) {
				client_fail(c, "malformed reply");
				return;
			}
			c->rep = c->in[1];
			c->atyp = c->in[3];
			if (c->rep != 0) {
				client_fail(c, "CONNECT reply REP is not 00");
				return;
			}
			if (c->atyp == SOCKS5_ATYP_IPV4)
				memcpy(c->bnd, c->in + 4, 4);
			c->bnd_port = (unsigned)c->in[rl - 2] << 8 |
			    c->in[rl - 1];
			memmove(c->in, c->in + rl, c->inlen - rl);
			c->inlen -= rl;
			c->step = C_RELAY;
			if (!c->pipelined) {
				c->out = payload;
				c->outlen = sizeof(payload);
				c->outoff = 0;
			} else if (c->outoff == c->outlen) {
				(void)shutdown(c->fd, SHUT_WR);
			}
			continue;
		case C_RELAY:
			if (c->inlen > sizeof(payload)) {
				client_fail(c, "more bytes echoed than sent");
				return;
			}
			if (c->inlen == sizeof(payload)) {
				if (memcmp(c->in, payload, sizeof(payload)) != 0) {
					client_fail(c, "echoed bytes differ");
					return;
				}
				c->step = C_EOF;
			}
			return;
		default:
			return;
		}
	}
}

/* ------------------------------------------------------------------ */
/* The program's own poll loop: the server's descriptors first, then    */
/* the echo server and the client.                                      */

static struct pollfd	*fds;
static int		 fds_max;

/*
 * Fill fds with the server's descriptors (with_server: socks5_open is
 * active; *n of them, *t its timeout) and then the echo server's (its
 * listener at *echo_at, connection k at own_at[k] or -1). Returns how
 * many entries there are.
 */
static int
fds_fill(int with_server, int *n, int *t, int *echo_at, int *own_at)
{
	int	 total, k;

	*n = 0;
	*t = -1;
	if (with_server && (*n = socks5_pollfds(fds, fds_max - OWN_FDS, t)) < 0)
		fail("socks5_pollfds: array too small");
	total = *n;
	fds[total].fd = echo_lfd;
	fds[total].events = POLLIN;
	fds[total].revents = 0;
	*echo_at = total++;
	for (k = 0; k < MAXECHO; k++) {
		own_at[k] = -1;
		if (echo[k].fd < 0)
			continue;
		fds[total].fd = echo[k].fd;
		fds[total].events = echo_events(&echo[k]);
		fds[total].revents = 0;
		own_at[k] = total++;
	}
	return total;
}

/* After poll(): hand the server and the echo server their events. */
static void
fds_serve(int with_server, int n, int echo_at, const int *own_at)
{
	int	 k;

	if (with_server)
		socks5_dispatch(fds, n);
	if (fds[echo_at].revents & POLLIN)
		echo_accept();
	for (k = 0; k < MAXECHO; k++)
		if (own_at[k] >= 0 && fds[own_at[k]].revents && echo[k].fd >= 0)
			echo_io(&echo[k], fds[own_at[k]].revents);
}

/*
 * Run until every client in cs[0..nc-1] is done, or timeout_ms passes.
 * with_server: include socks5's descriptors (socks5_open is active).
 * Returns 0 when all succeeded.
 */
static int
loop(struct client *cs, int nc, int with_server, long timeout_ms)
{
	long	 deadline = now_ms() + timeout_ms, left;
	int	 n, total, t, i, done, own_at[MAXECHO], client_at[4];
	int	 echo_at;

	for (;;) {
		done = 1;
		for (i = 0; i < nc; i++)
			if (cs[i].step != C_DONE)
				done = 0;
		if (done)
			break;
		left = deadline - now_ms();
		if (left <= 0) {
			for (i = 0; i < nc; i++)
				if (cs[i].step != C_DONE) {
					(void)sprintf(cs[i].why,
					    "timed out in step %d (%lu of %lu "
					    "bytes back)", cs[i].step,
					    (unsigned long)cs[i].inlen,
					    (unsigned long)sizeof(payload));
					cs[i].step = C_DONE;
				}
			break;
		}
		/* our own descriptors after the server's */
		total = fds_fill(with_server, &n, &t, &echo_at, own_at);
		for (i = 0; i < nc; i++) {
			client_at[i] = -1;
			if (client_events(&cs[i]) == 0)
				continue;
			fds[total].fd = cs[i].fd;
			fds[total].events = client_events(&cs[i]);
			fds[total].revents = 0;
			client_at[i] = total++;
		}
		if (t < 0 || t > left)
			t = (int)left;
		if (t > 200)
			t = 200;
		if (poll(fds, (nfds_t)total, t) == -1 && errno != EINTR)
			fail_errno("poll");
		fds_serve(with_server, n, echo_at, own_at);
		for (i = 0; i < nc; i++)
			if (client_at[i] >= 0 && fds[client_at[i]].revents)
				client_io(&cs[i], fds[client_at[i]].revents);
	}
	for (i = 0; i < nc; i++)
		if (cs[i].why[0] != '\0')
			return -1;
	return 0;
}

/* ------------------------------------------------------------------ */

/* The server's listening port: its fd is among those it polls. */
static unsigned
server_port(void)
{
	struct sockaddr_in	 a;
	socklen_t		 alen, olen;
	int			 n, t, i, acc;

	n = socks5_pollfds(fds, fds_max, &t);
	for (i = 0; i < n; i++) {
		acc = 0;
		olen = sizeof(acc);
		if (getsockopt(fds[i].fd, SOL_SOCKET, SO_ACCEPTCONN, &acc,
		    &olen) == -1 || !acc)
			continue;
		alen = sizeof(a);
		if (getsockname(fds[i].fd, (struct sockaddr *)&a, &alen) == 0 &&
		    a.sin_family == AF_INET)
			return ntohs(a.sin_port);
	}
	return 0;
}

static int
tcp_connect(unsigned port, int *connecting)
{
	struct sockaddr_in	 a;
	int			 fd;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((unsigned short)port);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		fail_errno("socket");
	nonblock(fd);
	*connecting = 0;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1) {
		if (errno != EINPROGRESS)
			fail_errno("connect");
		*connecting = 1;
	}
	return fd;
}

/* A connected TCP pair on loopback: sv[0] ours, sv[1] the server's. */
static void
tcp_pair(int sv[2])
{
	struct sockaddr_in	 a;
	unsigned		 port;
	int			 l;

	l = loopback_listener(1, &port, "tcp pair listener");
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((unsigned short)port);
	if ((sv[0] = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    connect(sv[0], (struct sockaddr *)&a, sizeof(a)) == -1 ||
	    (sv[1] = accept(l, NULL, NULL)) == -1)
		fail_errno("tcp pair");
	(void)close(l);
}

static void
check_client(struct client *c, const char *what)
{
	char	 msg[400];

	if (c->why[0] != '\0') {
		(void)sprintf(msg, "%.100s: %.250s", what, c->why);
		fail(msg);
	}
	(void)close(c->fd);
	c->fd = -1;
}

/* Wait up to ms for pid; returns its wait status, or -1 on timeout. */
static int
wait_child(pid_t pid, long ms)
{
	long	 deadline = now_ms() + ms;
	int	 st;

	while (now_ms() < deadline) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return st;
		(void)poll(NULL, 0, 20);
	}
	return -1;
}

/*
 * How a probe's child ended (st from waitpid, -1: it did not exit in
 * time, and is killed): 0 when it exited 0, else 1 and a line.
 */
static int
child_bad(const char *probe, pid_t pid, int st)
{
	if (st == -1) {
		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		printf("probe %s: the child did not exit\n", probe);
		return 1;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		printf("probe %s: child wait status %d\n", probe, st);
		return 1;
	}
	return 0;
}

/* Fork a child that serves fd with socks5_serve_fd() and exits. */
static pid_t
serve_child(const struct socks5_config *cf, int fd, int other)
{
	pid_t	 pid;
	int	 r;

	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1)
		fail_errno("fork");
	if (pid == 0) {
		(void)close(other);
		r = socks5_serve_fd(cf, fd);
		_exit(r == 0 ? 0 : 3);
	}
	(void)close(fd);
	return pid;
}

static struct client	 cl[4];

static void
part_b(const char *kind)
{
	struct socks5_config	 cf;
	int			 sv[2], st;
	pid_t			 pid;
	char			 msg[200];

	socks5_config_init(&cf);
	cf.verbose = 1;
	if (strcmp(kind, "socketpair") == 0) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
			fail_errno("socketpair");
	} else {
		tcp_pair(sv);
	}
	pid = serve_child(&cf, sv[1], sv[0]);
	nonblock(sv[0]);
	client_start(&cl[0], sv[0], 0, "127.0.0.1", echo_port, 0);
	if (loop(cl, 1, 0, 20000) == -1) {
		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
	}
	(void)sprintf(msg, "socks5_serve_fd over a %s: CONNECT, %d bytes "
	    "echoed, half-close", kind, PAYLOAD);
	check_client(&cl[0], msg);
	ok(msg);
	st = wait_child(pid, 5000);
	if (st == -1) {
		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		fail("socks5_serve_fd child did not exit after the session");
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		(void)sprintf(msg, "socks5_serve_fd child status %d (want "
		    "exit 0)", st);
		fail(msg);
	}
	(void)sprintf(msg, "socks5_serve_fd over a %s returned 0 and the "
	    "child exited 0", kind);
	ok(msg);
}

/* Regression probe: descriptors open before socks5_open() stay ours. */
static void
probe_inherit(void)
{
	struct socks5_config	 cf;
	struct pollfd		 p;
	int			 sv[2];
	char			 c;
	ssize_t			 n;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		fail_errno("socketpair");
	socks5_config_init(&cf);
	cf.port = 0;
	if (socks5_open(&cf) == -1)
		fail("socks5_open");
	(void)close(sv[1]);
	p.fd = sv[0];
	p.events = POLLIN;
	p.revents = 0;
	n = -1;
	if (poll(&p, 1, 2000) == 1)
		n = read(sv[0], &c, 1);
	socks5_close();
	(void)close(sv[0]);
	if (n != 0)
		fail("a descriptor the program opened before socks5_open() "
		    "is kept open by the resolver helpers (its peer never "
		    "sees EOF)");
	ok("descriptors opened before socks5_open() are not inherited by "
	    "the resolver helpers");
}

/*
 * A session of the running server left waiting for its request: connect,
 * send the greeting, drive the server until "05 00" is back.
 */
static int
hold_session(unsigned port)
{
	unsigned char	 r[2];
	size_t		 got = 0;
	ssize_t		 n;
	long		 deadline = now_ms() + 5000;
	int		 fd, connecting, cnt, t, sent = 0;

	fd = tcp_connect(port, &connecting);
	(void)connecting;
	while (got < 2 && now_ms() < deadline) {
		cnt = socks5_pollfds(fds, fds_max, &t);
		if (poll(fds, (nfds_t)cnt, 50) == -1 && errno != EINTR)
			fail_errno("poll");
		socks5_dispatch(fds, cnt);
		if (!sent) {
			if (write(fd, "\5\1\0", 3) == 3)
				sent = 1;
			continue;
		}
		n = read(fd, r + got, 2 - got);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0)
			fail("held session closed by the server");
	}
	if (!sent)
		fail("held session: could not send the greeting");
	if (got < 2 || r[0] != 5 || r[1] != 0)
		fail("held session: no 05 00");
	return fd;
}

/* Regression probe: socks5_serve_fd() in a child forked while open. */
static void
probe_forkopen(void)
{
	struct socks5_config	 cf;
	unsigned		 port;
	int			 hold_fd;
	int			 sv[2], connecting, i, bad = 0;
	pid_t			 pid;
	char			 msg[200];

	socks5_config_init(&cf);
	cf.port = 0;
	if (socks5_open(&cf) == -1)
		fail("socks5_open");
	if ((port = server_port()) == 0)
		fail("no listening socket among socks5_pollfds()");
	/* a session of the parent in progress: greeting answered */
	hold_fd = hold_session(port);
	/* now the child */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		fail_errno("socketpair");
	pid = serve_child(&cf, sv[1], sv[0]);
	nonblock(sv[0]);
	client_start(&cl[0], sv[0], 0, "127.0.0.1", echo_port, 0);
	/* meanwhile the parent's server must go on serving */
	for (i = 1; i < 4; i++) {
		int fd = tcp_connect(port, &connecting);
		client_start(&cl[i], fd, connecting, "localhost", echo_port,
		    1);
	}
	(void)loop(cl, 4, 1, 20000);
	for (i = 1; i < 4; i++) {
		if (cl[i].why[0] != '\0') {
			printf("probe forkopen: parent client %d: %s\n", i,
			    cl[i].why);
			bad++;
		}
		(void)close(cl[i].fd);
	}
	if (cl[0].why[0] != '\0') {
		printf("probe forkopen: child client: %s\n", cl[0].why);
		bad++;
	}
	(void)close(cl[0].fd);
	bad += child_bad("forkopen", pid, wait_child(pid, 5000));
	(void)close(hold_fd);
	socks5_close();
	if (bad) {
		(void)sprintf(msg, "socks5_serve_fd in a child forked while "
		    "socks5_open() is active: %d problem(s)", bad);
		fail(msg);
	}
	ok("socks5_serve_fd in a child forked while socks5_open() is active");
}

/*
 * One pass of a loop that runs the server (with_server: socks5_open is
 * active) and our echo server, waiting at most ms.
 */
static void
step(int with_server, int ms)
{
	int	 n, t, total, echo_at, own_at[MAXECHO];

	total = fds_fill(with_server, &n, &t, &echo_at, own_at);
	if (t < 0 || t > ms)
		t = ms;
	if (poll(fds, (nfds_t)total, t) == -1 && errno != EINTR)
		fail_errno("poll");
	fds_serve(with_server, n, echo_at, own_at);
}

/* A blocking connect to 127.0.0.1:port; the socket is then non-blocking. */
static int
connect_to(unsigned port)
{
	struct sockaddr_in	 a;
	int			 fd;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((unsigned short)port);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1)
		fail_errno("connect");
	nonblock(fd);
	return fd;
}

/*
 * A CONNECT to our echo server over fd (a client of a socks5 server):
 * greeting, request and "ping" in one write; drive the loop until the
 * replies and the echo are back. Returns BND.PORT, the port the echo
 * server sees as its peer.
 */
static unsigned
through(int with_server, int fd, const char *what)
{
	unsigned char	 req[17], in[16];
	size_t		 got = 0;
	ssize_t		 n;
	long		 deadline = now_ms() + 10000;
	char		 msg[200];

	req[0] = SOCKS5_VERSION;
	req[1] = 1;
	req[2] = SOCKS5_METHOD_NONE;
	req[3] = SOCKS5_VERSION;
	req[4] = SOCKS5_CMD_CONNECT;
	req[5] = 0;
	req[6] = SOCKS5_ATYP_IPV4;
	req[7] = 127;
	req[8] = req[9] = 0;
	req[10] = 1;
	req[11] = (unsigned char)(echo_port >> 8);
	req[12] = (unsigned char)(echo_port & 0xff);
	memcpy(req + 13, "ping", 4);
	if (write(fd, req, sizeof(req)) != (ssize_t)sizeof(req))
		fail_errno("write");
	while (got < sizeof(in) && now_ms() < deadline) {
		step(with_server, 20);
		n = read(fd, in + got, sizeof(in) - got);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			break;
	}
	if (got < sizeof(in) || in[0] != 5 || in[1] != 0 || in[2] != 5 ||
	    in[3] != 0 || in[5] != SOCKS5_ATYP_IPV4 ||
	    memcmp(in + 12, "ping", 4) != 0) {
		(void)sprintf(msg, "%.100s: no 05 00, REP 00 and echo (%lu "
		    "bytes back)", what, (unsigned long)got);
		fail(msg);
	}
	return (unsigned)in[10] << 8 | in[11];
}

/* Drive the loop until fd reads EOF (or an error); ms that took, or -1. */
static long
until_eof(int with_server, int fd, long ms)
{
	unsigned char	 buf[512];
	long		 t0 = now_ms();
	ssize_t		 n;

	for (;;) {
		/* (checked once more after the deadline: a loaded machine
		 * may not have run us in between) */
		int last = now_ms() - t0 >= ms;

		step(with_server, last ? 0 : 20);
		n = read(fd, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return now_ms() - t0;
		if (last)
			return -1;
	}
}

/* Drive the loop until the echo server's connection from port saw EOF. */
static long
until_target_eof(int with_server, unsigned port, long ms)
{
	long	 t0 = now_ms();

	for (;;) {
		int last = now_ms() - t0 >= ms;	/* one more check after it */

		step(with_server, last ? 0 : 20);
		if (echo_eof_at(port) >= 0)
			return echo_eof_at(port) - t0;
		if (last)
			return -1;
	}
}

/*
 * Regression probe: the child keeps none of the parent's descriptors. The
 * child serves its own session until we close our end of it, after the
 * checks, so a child that kept the parent's sockets would keep them for
 * the whole of each 3 s wait: the waits can allow for a loaded machine.
 */
static void
probe_forkfds(void)
{
	struct socks5_config	 cf, cf2;
	struct linger		 lg;
	unsigned		 port, bnd_a, bnd_b;
	int			 a, b, sv[2], k, r, st = -1, bad = 0;
	long			 ms;
	pid_t			 pid;

	socks5_config_init(&cf);
	cf.port = 0;
	if (socks5_open(&cf) == -1)
		fail("socks5_open");
	if ((port = server_port()) == 0)
		fail("no listening socket among socks5_pollfds()");
	/* two sessions of the parent, relaying to our echo server */
	a = connect_to(port);
	bnd_a = through(1, a, "parent's session A");
	b = connect_to(port);
	bnd_b = through(1, b, "parent's session B");
	/* the child: ours it closes itself, the server's is socks5's job */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		fail_errno("socketpair");
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1)
		fail_errno("fork");
	if (pid == 0) {
		(void)close(a);
		(void)close(b);
		(void)close(sv[0]);
		(void)close(echo_lfd);
		for (k = 0; k < MAXECHO; k++)
			if (echo[k].fd >= 0)
				(void)close(echo[k].fd);
		socks5_config_init(&cf2);
		r = socks5_serve_fd(&cf2, sv[1]);
		_exit(r == 0 ? 0 : 3);
	}
	(void)close(sv[1]);
	nonblock(sv[0]);
	/* the child's session: up, and held open until the checks are done */
	(void)through(1, sv[0], "the child's session");
	/* A: its client resets; the parent's server closes the session */
	lg.l_onoff = 1;
	lg.l_linger = 0;
	(void)setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	(void)close(a);
	if ((ms = until_target_eof(1, bnd_a, 3000)) < 0) {
		printf("probe forkfds: the target of the parent's session saw "
		    "no EOF within 3 s after its client reset it (the child "
		    "keeps the session's socket)\n");
		bad++;
	}
	/* B: the parent closes its server, sessions and all */
	socks5_close();
	if ((ms = until_eof(0, b, 3000)) < 0) {
		printf("probe forkfds: the client of the parent's session saw "
		    "no EOF within 3 s after socks5_close()\n");
		bad++;
	}
	if ((ms = until_target_eof(0, bnd_b, 3000)) < 0) {
		printf("probe forkfds: the target of the parent's session saw "
		    "no EOF within 3 s after socks5_close()\n");
		bad++;
	}
	if (waitpid(pid, &st, WNOHANG) != 0) {
		printf("probe forkfds: the child exited early (status %d)\n", st);
		bad++;
	}
	/* the child's session ends when we close our end */
	(void)close(sv[0]);
	for (ms = now_ms(); now_ms() - ms < 5000; step(0, 20))
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
	bad += child_bad("forkfds", pid, now_ms() - ms >= 5000 ? -1 : st);
	(void)close(b);
	if (bad)
		fail("socks5_serve_fd in a child of a running server keeps "
		    "the parent's descriptors");
	ok("socks5_serve_fd in a child of a running server keeps none of its "
	    "descriptors: the parent's sessions end at once");
}

/* One server per process: a second one is refused, the first serves on. */
static void
probe_once(void)
{
	struct socks5_config	 cf;
	unsigned char		 c;
	int			 sv[2], fd, i;

	socks5_config_init(&cf);
	cf.port = 0;
	cf.external_addr = "example.com";	/* not a literal */
	if (socks5_open(&cf) != -1)
		fail("socks5_open with external_addr \"example.com\" did not "
		    "return -1");
	cf.external_addr = NULL;
	for (i = 0; i < 2; i++) {
		if (socks5_open(&cf) == -1)
			fail(i == 0 ? "socks5_open" :
			    "socks5_open after socks5_close");
		if (socks5_open(&cf) != -1)
			fail("a second socks5_open() while one is open did not "
			    "return -1");
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
			fail_errno("socketpair");
		if (socks5_serve_fd(&cf, sv[0]) != -1)
			fail("socks5_serve_fd() in a process with an open "
			    "server did not return -1");
		if (read(sv[1], &c, 1) != 0)
			fail("socks5_serve_fd() refused but kept its fd open");
		(void)close(sv[1]);
		fd = connect_to(server_port());
		(void)through(1, fd, "the first server, after the refusals");
		(void)close(fd);
		socks5_close();
	}
	ok("one server per process: a second open and serve_fd are refused, "
	    "the first serves on, and a new one opens after close");
}

int
main(int argc, char *argv[])
{
	struct socks5_config	 cf;
	unsigned		 port;
	int			 connecting, fd, i;
	const char		*probe = NULL;
	char			 msg[200];
	struct sigaction	 sa;

	if (argc > 0)
		progname = argv[0];
	if (argc == 3 && strcmp(argv[1], "-k") == 0)
		probe = argv[2];
	else if (argc != 1) {
		fprintf(stderr, "usage: %s [-k inherit|forkopen|forkfds|once]\n",
		    progname);
		return 64;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
	payload_fill(7);
	echo_start();
	fds_max = 1024 * 7 + 8 + OWN_FDS;	/* until we know better */
	fds = malloc(sizeof(*fds) * (size_t)fds_max);
	if (fds == NULL)
		fail("malloc");

	if (probe != NULL) {
		if (strcmp(probe, "inherit") == 0)
			probe_inherit();
		else if (strcmp(probe, "forkopen") == 0)
			probe_forkopen();
		else if (strcmp(probe, "forkfds") == 0)
			probe_forkfds();
		else if (strcmp(probe, "once") == 0)
			probe_once();
		else {
			fprintf(stderr, "%s: unknown probe %s\n", progname,
			    probe);
			return 64;
		}
		printf("embed: all ok\n");
		return 0;
	}

	/* A: our own poll loop */
	socks5_config_init(&cf);
	cf.listen_addr = "127.0.0.1";
	cf.port = 0;
	cf.max_sessions = 16;
	cf.verbose = 1;
	if (socks5_open(&cf) == -1)
		fail("socks5_open");
	ok("socks5_open on 127.0.0.1 port 0");
	free(fds);
	fds_max = socks5_pollfds_max() + OWN_FDS;
	if (fds_max < 8 + OWN_FDS)
		fail("socks5_pollfds_max too small");
	fds = malloc(sizeof(*fds) * (size_t)fds_max);
	if (fds == NULL)
		fail("malloc");
	if ((port = server_port()) == 0)
		fail("no listening socket among socks5_pollfds()");
	(void)sprintf(msg, "server listens on 127.0.0.1:%u (found through "
	    "socks5_pollfds)", port);
	ok(msg);
	if (socks5_pollfds(fds, 0, &i) != -1)	/* it has the listener */
		fail("socks5_pollfds with max 0 did not return -1");
	ok("socks5_pollfds returns -1 when max is too small");

	fd = tcp_connect(port, &connecting);
	client_start(&cl[0], fd, connecting, "127.0.0.1", echo_port, 0);
	if (loop(cl, 1, 1, 20000) == 0 && cl[0].atyp == SOCKS5_ATYP_IPV4 &&
	    memcmp(cl[0].bnd, "\177\0\0\1", 4) == 0 &&
	    cl[0].bnd_port != echo_last_peer) {
		(void)sprintf(msg, "BND.PORT %u is not the port the echo "
		    "server sees (%u)", cl[0].bnd_port, echo_last_peer);
		fail(msg);
	}
	check_client(&cl[0], "CONNECT 127.0.0.1 through our own loop");
	if (cl[0].atyp != SOCKS5_ATYP_IPV4 ||
	    memcmp(cl[0].bnd, "\177\0\0\1", 4) != 0)
		fail("BND.ADDR of the CONNECT reply is not 127.0.0.1");
	(void)sprintf(msg, "own loop: CONNECT 127.0.0.1:%u, %d bytes echoed, "
	    "half-close, BND 127.0.0.1:%u = echo's peer", echo_port, PAYLOAD,
	    cl[0].bnd_port);
	ok(msg);

	/* DOMAINNAME (resolver helpers), pipelined, two at once */
	for (i = 0; i < 2; i++) {
		fd = tcp_connect(port, &connecting);
		client_start(&cl[i], fd, connecting, "localhost", echo_port,
		    i == 1);
	}
	(void)loop(cl, 2, 1, 20000);
	check_client(&cl[0], "CONNECT localhost");
	check_client(&cl[1], "CONNECT localhost (pipelined)");
	ok("own loop: two concurrent CONNECTs to localhost (resolver "
	    "helpers), one pipelined");
	socks5_close();
	ok("socks5_close");

	/* B: one pre-connected socket, served in a forked child */
	part_b("socketpair");
	part_b("TCP pair");

	/* the echo server saw every connection */
	if (echo_accepted != 5) {
		(void)sprintf(msg, "echo server accepted %lu connections, "
		    "want 5", echo_accepted);
		fail(msg);
	}
	ok("echo server saw 5 connections");
	free(fds);
	printf("embed: all ok\n");
	return 0;
}
