/*
 * fuzz_parsers.c - libFuzzer target for the socks5 server's parsers and
 * its per-session state machine, run in process with no network at all.
 *
 *	clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *	    -fno-sanitize-recover=all -o fuzz_parsers test/fuzz/fuzz_parsers.c
 *
 * The file includes socks5.c itself (with SOCKS5_NO_MAIN) so it reaches
 * the static functions. Before that it routes every socket call of the
 * server (socket, connect, bind, listen, accept, send/recv, getsockname,
 * getaddrinfo, ...) and read/write/open/close to the fakes below, by
 * function-like macros: a socket the server makes is a descriptor of
 * /dev/null that the fakes know, its peer is played from the input, and
 * a call on a descriptor the fakes do not know aborts. Nothing can leave
 * the process: no packet, no connect, no DNS query.
 *
 * The first input byte picks a target (byte % 8):
 *   0 greeting	greeting_parse, greeting_method; gss_msg_parse, the
 *		RFC 1961 framing (01 MTYP LEN TOKEN) of GSS-API builds,
 *		over the same bytes
 *   1 auth	auth_parse (RFC 1929)
 *   2 request	request_parse / socksaddr_parse; reply_build and
 *		socksaddr_build parse back to the same address
 *   3 udp	udp_parse (the UDP request header)
 *   4 rules	rule_add/cidr_parse over '\n'-separated lines, rules_eval
 *   5 users	user_parse, and users_read over the input as a file,
 *		checked against a reference reading of the same bytes
 *   6 session	one whole session through session_run(), driven by
 *		records: client bytes, remote bytes, poll passes,
 *		datagrams, resolver answers, time passing, BIND peers
 *   7 udp	the same, after a built-in UDP ASSOCIATE handshake, so
 *		that records go straight to datagrams and reassembly;
 *		records can make big inputs (R_BULK, padded datagrams)
 *		and take buffers away (R_STEAL) to reach the limits
 *
 * Session input (targets 6 and 7): mode, cfg0, cfg1, then records
 * TYPE LEN_HI LEN_LO PAYLOAD[LEN] (see the R_ names). cfg0 bits: 0 -u
 * (method 02), 1-2 -4/-6, 3 IPv6 client, 4 access rules, 5 -b (::1 for
 * an IPv6 client, else 127.0.0.1), 6 -e,
 * 7 inetd-style split client descriptors. cfg1 bits: 0-2 connect()
 * result, 3-5 SO_ERROR later, 6 short reads and writes, 7 both resolver
 * helpers start busy with lookups nobody wants (lookups queue until a
 * helper answers, dies, or is replaced after SOCKS5_ABANDON_MS). In target 7, cfg1 bit 6 also makes
 * the UDP request name the client port.
 *
 * Invariants checked (abort = a finding): parser results within the
 * input and consistent with it; parsers answer "need more" on every
 * prefix of a complete message; replies round-trip; the user file is
 * read exactly as a reference reading; what the server writes to the
 * client is well-formed replies followed by exactly the remote's bytes;
 * what it writes to the remote is exactly the client's bytes after the
 * handshake; no descriptor, spill buffer, UDP buffer or slot leaks
 * when a session ends; log lines are one printable line each; no
 * write after shutdown; datagrams to the client carry a valid header.
 */

#define _XOPEN_SOURCE 600
#define SOCKS5_NO_MAIN
#define SOCKS5_FUZZ		/* gss_msg_parse without a GSS-API library */

/*
 * Every header socks5.c includes, and a few it may come to include,
 * before the macros below: a header first read after them would have
 * its prototypes renamed (a compile error, not a silent change).
 * When socks5.c starts calling another socket function (send, sendmsg,
 * writev ...), give it a fake here too; the real one would only see a
 * /dev/null descriptor, since socket() itself is always faked.
 */
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The fakes' declarations, and the macros that route the server to    */
/* them. System headers are already in, so their prototypes stand.     */

static int	 fk_socket(int, int, int);
static int	 fk_connect(int, const struct sockaddr *, socklen_t);
static int	 fk_bind(int, const struct sockaddr *, socklen_t);
static int	 fk_listen(int, int);
static int	 fk_accept(int, struct sockaddr *, socklen_t *);
static int	 fk_accept4(int, struct sockaddr *, socklen_t *, int);
static int	 fk_getsockname(int, struct sockaddr *, socklen_t *);
static int	 fk_getpeername(int, struct sockaddr *, socklen_t *);
static int	 fk_getsockopt(int, int, int, void *, socklen_t *);
static int	 fk_setsockopt(int, int, int, const void *, socklen_t);
static int	 fk_shutdown(int, int);
static ssize_t	 fk_read(int, void *, size_t);
static ssize_t	 fk_write(int, const void *, size_t);
static ssize_t	 fk_recv(int, void *, size_t, int);
static ssize_t	 fk_recvfrom(int, void *, size_t, int, struct sockaddr *,
		    socklen_t *);
static ssize_t	 fk_sendto(int, const void *, size_t, int,
		    const struct sockaddr *, socklen_t);
static int	 fk_open(const char *, int, ...);
static int	 fk_close(int);
static int	 fk_fstat(int, struct stat *);
static int	 fk_getaddrinfo(const char *, const char *,
		    const struct addrinfo *, struct addrinfo **);
static pid_t	 fk_fork(void);
static int	 fk_socketpair(int, int, int, int *);
static int	 fk_kill(pid_t, int);
static pid_t	 fk_waitpid(pid_t, int *, int);

#define socket(a, b, c)			fk_socket(a, b, c)
#define connect(a, b, c)		fk_connect(a, b, c)
#define bind(a, b, c)			fk_bind(a, b, c)
#define listen(a, b)			fk_listen(a, b)
#define accept(a, b, c)			fk_accept(a, b, c)
#define accept4(a, b, c, d)		fk_accept4(a, b, c, d)
#define getsockname(a, b, c)		fk_getsockname(a, b, c)
#define getpeername(a, b, c)		fk_getpeername(a, b, c)
#define getsockopt(a, b, c, d, e)	fk_getsockopt(a, b, c, d, e)
#define setsockopt(a, b, c, d, e)	fk_setsockopt(a, b, c, d, e)
#define shutdown(a, b)			fk_shutdown(a, b)
#define read(a, b, c)			fk_read(a, b, c)
#define write(a, b, c)			fk_write(a, b, c)
#define recv(a, b, c, d)		fk_recv(a, b, c, d)
#define recvfrom(a, b, c, d, e, f)	fk_recvfrom(a, b, c, d, e, f)
#define sendto(a, b, c, d, e, f)	fk_sendto(a, b, c, d, e, f)
#define open(...)			fk_open(__VA_ARGS__)
#define close(a)			fk_close(a)
#define fstat(a, b)			fk_fstat(a, b)
#define getaddrinfo(a, b, c, d)		fk_getaddrinfo(a, b, c, d)
#define fork()				fk_fork()
#define socketpair(a, b, c, d)		fk_socketpair(a, b, c, d)
#define kill(a, b)			fk_kill(a, b)
#define waitpid(a, b, c)		fk_waitpid(a, b, c)

#include "../../socks5.c"

#undef socket
#undef connect
#undef bind
#undef listen
#undef accept
#undef getsockname
#undef getpeername
#undef getsockopt
#undef setsockopt
#undef shutdown
#undef read
#undef write
#undef recv
#undef recvfrom
#undef sendto
#undef open
#undef close
#undef fstat
#undef getaddrinfo
#undef fork
#undef socketpair
#undef kill
#undef waitpid

/* ------------------------------------------------------------------ */
/* Checks.                                                             */

#define CHECK(c)	do { if (!(c)) check_failed(#c, __LINE__); } while (0)

static void
check_failed(const char *what, int line)
{
	fprintf(stderr, "fuzz_parsers.c:%d: invariant failed: %s\n", line,
	    what);
	abort();
}

/* ------------------------------------------------------------------ */
/* Fake descriptors: real fds of /dev/null, so fcntl() works on them.  */

#define FK_MAX		1024
#define STREAM_MAX	(1 << 18)

enum {
	K_NONE, K_CLIENT, K_CLIENT_IN, K_CLIENT_OUT, K_SOCK, K_HELPER,
	K_HELPER_PEER, K_USERS
};

static struct fake {
	unsigned char	 kind;
	unsigned char	 shut;		/* SHUT_WR done */
	unsigned char	 udp;
	unsigned char	 listening;
	int		 fam;
} fk[FK_MAX];
static int	 fk_live;		/* sockets made and not yet closed */

struct stream {
	unsigned char	 buf[STREAM_MAX];
	size_t		 len, pos;
	size_t		 peeked;	/* seen by MSG_PEEK: there for sure */
	int		 eof;
	int		 reset;		/* reads fail: ECONNRESET */
};
static struct stream	 client_in, remote_in, users_in;
static unsigned char	 client_out[STREAM_MAX], remote_out[STREAM_MAX];
static size_t		 client_outlen, remote_outlen;
static int		 remote_fd_seen = -1;	/* the remote that got data */

static struct session	*g_s;		/* the session being played */
static int		 g_short;	/* short reads and writes */
static unsigned		 g_tick;	/* alternates EAGAIN and 1 byte */
static int		 g_users_chunk;	/* read size for the user file */
static int		 g_connect_err;	/* first connect(): 0 or errno */
static int		 g_so_error;	/* SO_ERROR after EINPROGRESS */
static int		 g_nconnect;
static int		 g_fork_fail;	/* the next fork() fails */
static int		 g_log_strict;	/* log lines must be printable */
static int		 g_null = -1;	/* /dev/null, to dup from */
static int		 g_trace;	/* FUZZ_TRACE=1: say what each record did */

/* A datagram or a connection waiting for recvfrom() or accept(). */
static struct {
	int		 fd;		/* -1: none */
	unsigned char	 data[UB_DATA + UDP_DATA_MAX + 16];
	size_t		 len;
	union sockaddr_any src;
} pend;

/*
 * The resolver helpers: each is a fake process (a pid that is no real
 * one, far above any pid_max) with the server's end of a fake socket
 * pair (K_HELPER). A helper takes one request at a time and answers it
 * when a record says so; it can die (its socket ends, waitpid() finds
 * it). kill() and waitpid() reach only these fake processes: any other
 * pid aborts, so the real calls are never made.
 */
#define FAKE_PID0	0x40000000
#define FP_MAX		256

enum { P_LIVE = 1, P_DEAD, P_KILLED, P_REAPED };

static struct fproc {
	int		 state;
	int		 died;		/* exited by itself (not killed) */
	int		 polls;		/* killed: WNOHANG polls it has seen */
} fp[FP_MAX];
static int	 fp_n;			/* fake pids handed out this input */
static unsigned	 g_kills;		/* fake kill()s this input */

static struct fchan {
	int		 busy;		/* holds a request, not fully answered */
	struct lookup_req req;
	unsigned char	 out[sizeof(struct lookup_ans)];
	size_t		 outlen, outpos;	/* its answer, being read */
	int		 eof;		/* the helper died: its socket ends */
} fch[FK_MAX];

static pid_t	 g_hpid[SOCKS5_RESOLVERS];	/* each helper's pid, as seen */

/* What the server's sendto() calls carried. */
static unsigned long	 sent_out, sent_client;

static int
is_fake(int fd)
{
	return fd >= 0 && fd < FK_MAX && fk[fd].kind != K_NONE;
}

static int
fake_new(int kind)
{
	int	 fd = dup(g_null);

	if (fd < 0 || fd >= FK_MAX) {
		fprintf(stderr, "fuzz: out of descriptors (%d)\n", fd);
		abort();
	}
	memset(&fk[fd], 0, sizeof(fk[fd]));
	fk[fd].kind = (unsigned char)kind;
	if (kind == K_SOCK)
		fk_live++;
	return fd;
}

static void
not_fake(const char *call, int fd)
{
	fprintf(stderr, "fuzz: %s on descriptor %d that no fake made\n",
	    call, fd);
	abort();
}

static int
fk_socket(int dom, int type, int proto)
{
	int	 fd;

	(void)proto;
	if (dom != AF_INET && dom != AF_INET6) {
		errno = EAFNOSUPPORT;
		return -1;
	}
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
	type &= ~(SOCK_NONBLOCK | SOCK_CLOEXEC);	/* Linux's socket_new() */
#endif
	fd = fake_new(K_SOCK);
	fk[fd].fam = dom;
	fk[fd].udp = type == SOCK_DGRAM;
	return fd;
}

static int
fk_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	if (!is_fake(fd))
		not_fake("connect", fd);
	CHECK(sa->sa_family == fk[fd].fam);
	CHECK(len == (sa->sa_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
	if (fk[fd].udp)		/* bind_local's route probe */
		return 0;
	if (g_nconnect++ == 0 && g_connect_err != 0) {
		errno = g_connect_err;
		return -1;
	}
	if (g_nconnect > 1) {
		errno = EINPROGRESS;
		return -1;
	}
	return 0;
}

static int
fk_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	if (!is_fake(fd))
		not_fake("bind", fd);
	CHECK(sa->sa_family == fk[fd].fam);
	(void)len;
	return 0;
}

static int
fk_listen(int fd, int n)
{
	if (!is_fake(fd))
		not_fake("listen", fd);
	(void)n;
	fk[fd].listening = 1;
	return 0;
}

static void
fill_addr(struct sockaddr *sa, socklen_t *len, const union sockaddr_any *a)
{
	socklen_t	 n = a->sa.sa_family == AF_INET6 ?
			    sizeof(a->sin6) : sizeof(a->sin);

	if (*len > n)
		*len = n;
	memcpy(sa, a, *len);
	*len = n;
}

static int
fk_accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	int	 nfd;

	if (!is_fake(fd))
		not_fake("accept", fd);
	CHECK(fk[fd].listening);
	if (pend.fd != fd) {
		errno = EAGAIN;
		return -1;
	}
	pend.fd = -1;
	nfd = fake_new(K_SOCK);
	fk[nfd].fam = pend.src.sa.sa_family;
	if (sa != NULL)
		fill_addr(sa, len, &pend.src);
	return nfd;
}

/* accept4(), as socks5.c's accept_new() calls it on Linux: the flags are
   the fakes' business (their descriptors are /dev/null's). */
static int
fk_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	(void)flags;
	return fk_accept(fd, sa, len);
}

static int
fk_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	union sockaddr_any	 a;
	int			 fam;

	if (!is_fake(fd))
		not_fake("getsockname", fd);
	memset(&a, 0, sizeof(a));
	if (fk[fd].kind == K_SOCK)
		fam = fk[fd].fam;
	else if (fk[fd].kind == K_CLIENT || fk[fd].kind == K_CLIENT_IN)
		fam = g_s != NULL ? g_s->peer.sa.sa_family : AF_INET;
	else {
		errno = ENOTSOCK;
		return -1;
	}
	if (fam == AF_INET6) {
		a.sin6.sin6_family = AF_INET6;
		a.sin6.sin6_addr.s6_addr[15] = 1;
		a.sin6.sin6_port = htons((unsigned short)(40000 + fd));
	} else {
		a.sin.sin_family = AF_INET;
		a.sin.sin_addr.s_addr = htonl(0x7f000001UL);
		a.sin.sin_port = htons((unsigned short)(40000 + fd));
	}
	fill_addr(sa, len, &a);
	return 0;
}

static int
fk_getpeername(int fd, struct sockaddr *sa, socklen_t *len)
{
	(void)fd;
	(void)sa;
	(void)len;
	errno = ENOTSOCK;
	return -1;
}

static int
fk_getsockopt(int fd, int lvl, int opt, void *v, socklen_t *len)
{
	if (!is_fake(fd))
		not_fake("getsockopt", fd);
	if (lvl == SOL_SOCKET && opt == SO_ERROR && *len >= sizeof(int)) {
		memcpy(v, &g_so_error, sizeof(int));
		*len = sizeof(int);
		return 0;
	}
	errno = ENOPROTOOPT;
	return -1;
}

static int
fk_setsockopt(int fd, int lvl, int opt, const void *v, socklen_t len)
{
	(void)lvl;
	(void)opt;
	(void)v;
	(void)len;
	if (!is_fake(fd))
		not_fake("setsockopt", fd);
	return 0;
}

static int
fk_shutdown(int fd, int how)
{
	if (!is_fake(fd))
		not_fake("shutdown", fd);
	CHECK(how == SHUT_WR);
	if (fk[fd].kind == K_CLIENT_OUT) {	/* a pipe, as under inetd */
		errno = ENOTSOCK;
		return -1;
	}
	fk[fd].shut = 1;
	return 0;
}

/*
 * Take up to n bytes of a stream; short reads when asked (lim: the
 * bytes that have "arrived"). What a MSG_PEEK saw has arrived: a read
 * after it gets at least that much, as from a TCP socket.
 */
static ssize_t
stream_take(struct stream *st, void *b, size_t n, int peek, size_t lim)
{
	size_t	 k = st->len - st->pos;

	if (st->reset) {
		errno = ECONNRESET;
		return -1;
	}
	if (k == 0) {
		if (st->eof)
			return 0;
		errno = EAGAIN;
		return -1;
	}
	if (lim > 0 && lim < st->peeked)
		lim = st->peeked;
	if (lim > 0 && k > lim)
		k = lim;
	if (k > n)
		k = n;
	memcpy(b, st->buf + st->pos, k);
	if (peek) {
		st->peeked = k;
	} else {
		st->pos += k;
		st->peeked = st->peeked > k ? st->peeked - k : 0;
	}
	return (ssize_t)k;
}

static size_t
short_lim(void)
{
	return g_short ? 1 + (g_tick++ % 7) : 0;
}

static ssize_t
fake_read(int fd, void *b, size_t n, int peek)
{
	if (fk[fd].kind == K_USERS)
		return stream_take(&users_in, b, n, 0, (size_t)g_users_chunk);
	if (fk[fd].kind == K_HELPER) {	/* an answer's bytes, or an EOF */
		struct fchan	*c = &fch[fd];
		size_t		 k = c->outlen - c->outpos, lim = short_lim();

		CHECK(!peek);
		if (k == 0) {
			if (c->eof)
				return 0;
			errno = EAGAIN;
			return -1;
		}
		if (lim > 0 && k > lim)
			k = lim;
		if (k > n)
			k = n;
		memcpy(b, c->out + c->outpos, k);
		if ((c->outpos += k) == c->outlen) {
			c->outlen = c->outpos = 0;
			c->busy = 0;
		}
		return (ssize_t)k;
	}
	if (fk[fd].kind == K_HELPER_PEER)
		not_fake("read (the helper's own end)", fd);
	if (g_s != NULL && fd == g_s->fd[FD_CLIENT])
		return stream_take(&client_in, b, n, peek, short_lim());
	if (g_s != NULL && fd == g_s->fd[FD_REMOTE] && fk[fd].kind == K_SOCK)
		return stream_take(&remote_in, b, n, peek, short_lim());
	errno = EAGAIN;
	return -1;
}

static ssize_t
fk_read(int fd, void *b, size_t n)
{
	if (!is_fake(fd))
		return read(fd, b, n);
	return fake_read(fd, b, n, 0);
}

static ssize_t
fk_recv(int fd, void *b, size_t n, int flags)
{
	if (!is_fake(fd))
		not_fake("recv", fd);
	return fake_read(fd, b, n, (flags & MSG_PEEK) != 0);
}

static void
log_check(const unsigned char *p, size_t n)
{
	size_t	 i;

	CHECK(n >= 9 && n <= 1200);
	CHECK(memcmp(p, "socks5: ", 8) == 0);
	CHECK(p[n - 1] == '\n');
	if (g_log_strict)
		for (i = 0; i < n - 1; i++)
			if (p[i] < 0x20 || p[i] > 0x7e) {
				fprintf(stderr, "fuzz: log line with byte "
				    "0x%02x: %.*s\n", p[i], (int)n, p);
				abort();
			}
}

static ssize_t
fk_write(int fd, const void *b, size_t n)
{
	size_t	 k;

	if (fd == 2) {
		log_check(b, n);
		return (ssize_t)n;
	}
	if (!is_fake(fd))
		return write(fd, b, n);
	if (fk[fd].kind == K_HELPER) {
		const struct lookup_req *q = b;
		const struct session	*qs;

		CHECK(n == sizeof(*q));
		CHECK(memchr(q->name, '\0', sizeof(q->name)) != NULL);
		CHECK(q->name[0] != '\0');
		CHECK(q->slot < (unsigned)srv.nsess);
		/* A lookup its session wants now, from the queue. */
		qs = &srv.sess[q->slot];
		CHECK(qs->state != S_FREE && qs->queued);
		CHECK(q->id != 0 && q->id == qs->lookup_id);
		CHECK(strcmp(q->name, qs->cmd == SOCKS5_CMD_UDP ?
		    qs->to.udp.name : qs->dname) == 0);
		if (fch[fd].eof) {	/* it died: nobody reads */
			errno = EPIPE;
			return -1;
		}
		CHECK(!fch[fd].busy);	/* one lookup at a time */
		fch[fd].busy = 1;
		fch[fd].req = *q;
		fch[fd].outlen = fch[fd].outpos = 0;
		return (ssize_t)n;
	}
	if (fk[fd].kind == K_HELPER_PEER)
		not_fake("write (the helper's own end)", fd);
	if (fk[fd].shut) {
		fprintf(stderr, "fuzz: write of %zu bytes to descriptor %d "
		    "after shutdown(SHUT_WR)\n", n, fd);
		abort();
	}
	k = n;
	if (g_short) {
		if (g_tick++ % 3 == 0) {
			errno = EAGAIN;
			return -1;
		}
		k = 1 + g_tick % 5;
		if (k > n)
			k = n;
	}
	if (fk[fd].kind == K_CLIENT || fk[fd].kind == K_CLIENT_OUT) {
		if (client_outlen + k <= sizeof(client_out))
			memcpy(client_out + client_outlen, b, k);
		client_outlen += k;
		return (ssize_t)k;
	}
	if (fk[fd].kind == K_SOCK && g_s != NULL &&
	    fd == g_s->fd[FD_REMOTE]) {
		CHECK(remote_fd_seen == -1 || remote_fd_seen == fd);
		remote_fd_seen = fd;
		if (remote_outlen + k <= sizeof(remote_out))
			memcpy(remote_out + remote_outlen, b, k);
		remote_outlen += k;
		return (ssize_t)k;
	}
	return (ssize_t)k;
}

static ssize_t
fk_recvfrom(int fd, void *b, size_t n, int flags, struct sockaddr *sa,
    socklen_t *len)
{
	size_t	 k;

	(void)flags;
	if (!is_fake(fd))
		not_fake("recvfrom", fd);
	if (pend.fd != fd) {
		errno = EAGAIN;
		return -1;
	}
	pend.fd = -1;
	k = pend.len < n ? pend.len : n;
	memcpy(b, pend.data, k);
	fill_addr(sa, len, &pend.src);
	return (ssize_t)k;
}

/*
 * A datagram from the client was just read and something goes out: an
 * unfragmented one to an address is sent as it came, to where its
 * header says; a last fragment ends what is sent, to the same place.
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address, as
 * socks5.1 and the README say: such a datagram goes out over IPv4.
 */
static int	 g_dgram_live;	/* pend holds the datagram being handled */

static const unsigned char v4mapped_ref[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

static void
dgram_sent_check(const unsigned char *b, size_t n, const struct sockaddr *sa)
{
	const union sockaddr_any *to = (const void *)sa;
	struct request	 h;
	size_t		 dlen;
	int		 hl, frag;

	hl = udp_parse(pend.data, pend.len, &h);
	if (hl < 0 || h.atyp == SOCKS5_ATYP_DOMAIN)
		return;
	frag = pend.data[2];
	dlen = pend.len - (size_t)hl;
	if (frag != 0 && !(frag & 0x80))
		return;
	if (frag == 0)
		CHECK(n == dlen);
	CHECK(n >= dlen && memcmp(b + n - dlen, pend.data + hl, dlen) == 0);
	if (h.atyp == SOCKS5_ATYP_IPV4)
		CHECK(to->sa.sa_family == AF_INET &&
		    memcmp(&to->sin.sin_addr, h.addr, 4) == 0 &&
		    ntohs(to->sin.sin_port) == h.port);
	else if (memcmp(h.addr, v4mapped_ref, 12) == 0)
		CHECK(to->sa.sa_family == AF_INET &&
		    memcmp(&to->sin.sin_addr, h.addr + 12, 4) == 0 &&
		    ntohs(to->sin.sin_port) == h.port);
	else
		CHECK(to->sa.sa_family == AF_INET6 &&
		    memcmp(&to->sin6.sin6_addr, h.addr, 16) == 0 &&
		    ntohs(to->sin6.sin6_port) == h.port);
}

static ssize_t
fk_sendto(int fd, const void *b, size_t n, int flags,
    const struct sockaddr *sa, socklen_t len)
{
	struct request	 h;
	int		 hl;

	(void)flags;
	if (!is_fake(fd))
		not_fake("sendto", fd);
	CHECK(fk[fd].udp);
	CHECK(sa->sa_family == fk[fd].fam);
	CHECK(len == (sa->sa_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
	CHECK(n <= UDP_DATA_MAX + 22);
	if (g_s != NULL && fd == g_s->fd[FD_UDP]) {
		/* To the client: a header naming the source, then data. */
		hl = udp_parse(b, n, &h);
		CHECK(hl > 0 && (size_t)hl <= n);
		CHECK(h.frag == 0);
		CHECK(h.atyp == SOCKS5_ATYP_IPV4 || h.atyp == SOCKS5_ATYP_IPV6);
		sent_client++;
	} else {
		CHECK(n <= UDP_DATA_MAX);
		sent_out++;
		if (g_dgram_live)
			dgram_sent_check(b, n, sa);
	}
	return (ssize_t)n;
}

static int
fk_open(const char *path, int flags, ...)
{
	int	 fd;

	if (strcmp(path, "fuzz:users") == 0) {
		fd = fake_new(K_USERS);
		fk_live++;
		return fd;
	}
	fprintf(stderr, "fuzz: open(%s, %d) not expected\n", path, flags);
	abort();
}

/* The user file is a regular file; the fake is /dev/null underneath. */
static int
fk_fstat(int fd, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	if (is_fake(fd) && fk[fd].kind == K_USERS) {
		st->st_mode = S_IFREG | 0600;
		return 0;
	}
	return fstat(fd, st);
}

static int
fk_close(int fd)
{
	if (!is_fake(fd))
		not_fake("close", fd);
	if (fk[fd].kind == K_SOCK || fk[fd].kind == K_USERS)
		fk_live--;
	memset(&fk[fd], 0, sizeof(fk[fd]));
	memset(&fch[fd], 0, sizeof(fch[fd]));
	return close(fd);
}

static int
fk_getaddrinfo(const char *n, const char *s, const struct addrinfo *h,
    struct addrinfo **r)
{
	(void)s;
	(void)h;
	(void)r;
	fprintf(stderr, "fuzz: getaddrinfo(%s) called in process\n", n);
	abort();
}

/* Only resolver_spawn() forks here: a fake pid, never 0 (no child). */
static pid_t
fk_fork(void)
{
	if (g_fork_fail) {
		g_fork_fail = 0;
		errno = EAGAIN;
		return -1;
	}
	if (fp_n >= FP_MAX) {
		fprintf(stderr, "fuzz: more than %d forks in one input\n",
		    FP_MAX);
		abort();
	}
	fp[fp_n].state = P_LIVE;
	fp[fp_n].died = 0;
	return (pid_t)(FAKE_PID0 + fp_n++);
}

static struct fproc *
fake_proc(const char *call, pid_t pid)
{
	if (pid < FAKE_PID0 || pid >= FAKE_PID0 + fp_n) {
		fprintf(stderr, "fuzz: %s(%ld): not a fake helper's pid\n",
		    call, (long)pid);
		abort();
	}
	return &fp[pid - FAKE_PID0];
}

static int
fk_socketpair(int dom, int type, int proto, int *sv)
{
	CHECK(dom == AF_UNIX && type == SOCK_STREAM && proto == 0);
	sv[0] = fake_new(K_HELPER_PEER);	/* the helper's, closed here */
	sv[1] = fake_new(K_HELPER);		/* the server's */
	return 0;
}

/*
 * Only a helper that died, or one holding a lookup nobody wants for
 * SOCKS5_ABANDON_MS while others wait, is killed; never another pid.
 */
static int
fk_kill(pid_t pid, int sig)
{
	struct fproc	*p = fake_proc("kill", pid);
	int		 i;

	CHECK(sig == SIGKILL);
	CHECK(p->state == P_LIVE || p->state == P_DEAD);
	for (i = 0; i < srv.nresolvers; i++)
		if (srv.helpers[i].pid == pid)
			break;
	CHECK(i < srv.nresolvers);
	CHECK(srv.helpers[i].fd >= 0 && fk[srv.helpers[i].fd].kind == K_HELPER);
	CHECK(fch[srv.helpers[i].fd].eof ||
	    (helper_abandoned(&srv.helpers[i]) && srv.nqueued > 0 &&
	    DUE(srv.helpers[i].since + SOCKS5_ABANDON_MS, srv.now)));
	p->state = P_KILLED;
	p->polls = 0;
	g_kills++;
	return 0;
}

static pid_t
fk_waitpid(pid_t pid, int *status, int opt)
{
	struct fproc	*p = fake_proc("waitpid", pid);

	CHECK(p->state != P_REAPED);	/* a pid reaped twice: maybe reused */
	if (p->state == P_LIVE) {
		if (opt & WNOHANG)
			return 0;
		fprintf(stderr, "fuzz: waitpid(%ld) would block\n", (long)pid);
		abort();
	}
	/* A killed helper is not always gone by the first look. */
	if (p->state == P_KILLED && (opt & WNOHANG) && p->polls++ == 0 &&
	    (pid & 1))
		return 0;
	if (status != NULL)
		*status = p->state == P_KILLED ? SIGKILL : 0;
	p->state = P_REAPED;
	return pid;
}

/* ------------------------------------------------------------------ */
/* Setup, once: the server's own startup with a small table.           */

#define T_SESS	2
#define T_POOL	2
#define T_UDP	2

static const char *const rule_set[] = {
	"deny to 10.0.0.0/8",
	"deny user bob cmd bind",
	"allow from 127.0.0.0/8 to 127.0.0.0/8 port 1-1024 cmd connect,bind",
	"allow from ::1 to ::1",
	"deny to 8.8.8.8/32 port 53",
	"allow cmd udp to 192.0.2.0/24",
	"allow cmd udp",
	"allow user alice"
};
#define NRULESET	(sizeof(rule_set) / sizeof(rule_set[0]))

static struct socks5_config	 base;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct user	*u;
	int		 i;

	(void)argc;
	(void)argv;
	g_trace = getenv("FUZZ_TRACE") != NULL;
	if ((g_null = open("/dev/null", O_RDWR)) < 0)
		abort();
	socks5_config_init(&base);
	base.verbose = 2;	/* every log line is formatted and checked */
	if (startup_common(&base, T_SESS, T_POOL, T_UDP) != 0)
		abort();
	/* tables_alloc() makes user tables only with -u: make them here. */
	srv.users[0] = calloc(SOCKS5_MAXUSERS, sizeof(struct user));
	srv.users[1] = calloc(SOCKS5_MAXUSERS, sizeof(struct user));
	if (srv.users[0] == NULL || srv.users[1] == NULL)
		abort();
	u = srv.users[0];
	if (user_parse(&u[0], "alice:secret", 12) != 0 ||
	    user_parse(&u[1], "bob:x", 5) != 0)
		abort();
	srv.ucur = 0;
	srv.nusers[0] = 2;
	pend.fd = -1;
	/* The helpers "run" as fake processes; made anew for each input. */
	for (i = 0; i < SOCKS5_RESOLVERS; i++) {
		srv.helpers[i].pid = -1;
		srv.helpers[i].fd = -1;
		srv.helpers[i].pi = -1;
		srv.helpers[i].slot = -1;
	}
	return 0;
}

/*
 * A fresh set of nres helpers, as resolvers_start() makes them (through
 * resolver_spawn(), with the fake socketpair() and fork()); with busy,
 * each holds a lookup nobody wants (as if its client had left), so
 * that lookups queue until one answers or is replaced.
 */
static void
helpers_reset(int nres, int busy)
{
	struct helper	*h;
	int		 i;

	for (i = 0; i < SOCKS5_RESOLVERS; i++) {
		h = &srv.helpers[i];
		if (h->fd >= 0)
			close_fd(&h->fd);
		h->pid = -1;
		h->pi = -1;
		h->slot = -1;
		h->got = 0;
	}
	fp_n = 0;
	g_kills = 0;
	g_fork_fail = 0;
	srv.nkilled = 0;
	srv.nqueued = 0;
	srv.nresolvers = nres;
	for (i = 0; i < nres; i++) {
		h = &srv.helpers[i];
		if (resolver_spawn(i) != 0)
			abort();
		g_hpid[i] = h->pid;
		if (busy) {
			h->slot = T_SESS - 1 - i % T_SESS;
			h->id = 0xfffffff0u - (unsigned)i;
			h->since = srv.now;
			fch[h->fd].busy = 1;
			memset(&fch[h->fd].req, 0, sizeof(fch[h->fd].req));
			fch[h->fd].req.slot = (unsigned)h->slot;
			fch[h->fd].req.id = h->id;
			(void)strcpy(fch[h->fd].req.name, "gone.example");
		}
	}
}

/* ------------------------------------------------------------------ */
/* Targets 0-3: the stream and datagram parsers.                        */

#define PREFIX_MAX	400	/* prefixes tried per input */

static void
check_prefixes(int full, size_t n, int (*parse)(const unsigned char *,
    size_t, void *), const unsigned char *p, void *arg)
{
	size_t	 k, lim = n < PREFIX_MAX ? n : PREFIX_MAX;
	int	 v;

	for (k = 0; k < lim; k++) {
		v = parse(p, k, arg);
		if (full > 0)
			CHECK(k < (size_t)full ? v == 0 : v == full);
		else if (full == 0)
			CHECK(v == 0);
		else
			CHECK(v == 0 || v == full);
	}
}

static int
greet_p(const unsigned char *p, size_t n, void *arg)
{
	(void)arg;
	return greeting_parse(p, n);
}

static int
auth_p(const unsigned char *p, size_t n, void *arg)
{
	return auth_parse(p, n, arg);
}

static int
req_p(const unsigned char *p, size_t n, void *arg)
{
	return request_parse(p, n, arg);
}

static void
t_greeting(const unsigned char *p, size_t n)
{
	int	 len, m, want, i, has;

	len = greeting_parse(p, n);
	CHECK(len == 0 || len == PARSE_BADVER || (len >= 2 && (size_t)len <= n));
	if (n > 0 && p[0] != SOCKS5_VERSION)
		CHECK(len == PARSE_BADVER);
	check_prefixes(len, n, greet_p, p, NULL);
	if (len <= 0) {
		if (n >= 2 && p[0] == SOCKS5_VERSION)
			CHECK(n < 2 + (size_t)p[1]);
		return;
	}
	CHECK(len == 2 + p[1]);
	for (want = 0; want < 4; want++) {
		m = greeting_method(p, want);
		for (has = 0, i = 0; i < p[1]; i++)
			has |= p[2 + i] == want;
		CHECK(m == (has ? want : SOCKS5_METHOD_REJECT));
	}
}

static int
gss_p(const unsigned char *p, size_t n, void *arg)
{
	return (int)gss_msg_parse(p, n, *(int *)arg);
}

/* RFC 1961's framing, for each message type: VER MTYP LEN(2) TOKEN. */
static void
t_gss_frame(const unsigned char *p, size_t n)
{
	long	 len;
	size_t	 whole;
	int	 want;

	for (want = 1; want <= 3; want++) {
		len = gss_msg_parse(p, n, want);
		CHECK(len == 0 || len == PARSE_BADVER || len == PARSE_BADTYPE ||
		    (len >= 4 && len <= 65539 && (size_t)len <= n));
		if (n >= 1 && p[0] != 1)
			CHECK(len == PARSE_BADVER);
		else if (n >= 2 && p[1] != want)
			CHECK(len == PARSE_BADTYPE);
		else if (n >= 4) {
			whole = 4 + (((size_t)p[2] << 8) | p[3]);
			CHECK(n >= whole ? len == (long)whole : len == 0);
		} else
			CHECK(len == 0);
		check_prefixes((int)len, n, gss_p, p, &want);
	}
}

static void
t_auth(const unsigned char *p, size_t n)
{
	struct credentials	 c;
	int			 len;

	len = auth_parse(p, n, &c);
	CHECK(len == 0 || len == PARSE_BADVER || (len >= 3 && (size_t)len <= n));
	check_prefixes(len, n, auth_p, p, &c);
	len = auth_parse(p, n, &c);
	if (len <= 0)
		return;
	CHECK(p[0] == SOCKS5_AUTH_VERSION);
	CHECK(c.ulen == p[1] && c.name == p + 2);
	CHECK(c.plen == p[2 + c.ulen] && c.pass == p + 3 + c.ulen);
	CHECK((size_t)len == 3 + c.ulen + c.plen);
	CHECK(c.pass + c.plen <= p + n);
	/* The comparison reads both fully; it must not mind any content. */
	(void)users_check(c.name, c.ulen, c.pass, c.plen);
}

static void
t_request(const unsigned char *p, size_t n)
{
	struct request		 r, r2;
	union sockaddr_any	 a;
	unsigned char		 out[32];
	size_t			 alen, blen;
	int			 len, len2, fam;

	len = request_parse(p, n, &r);
	CHECK(len == 0 || len == PARSE_BADVER || len == PARSE_BADATYP ||
	    (len >= 7 && (size_t)len <= n));
	check_prefixes(len, n, req_p, p, &r2);
	len = request_parse(p, n, &r);
	if (len <= 0)
		return;
	CHECK(p[0] == SOCKS5_VERSION && r.cmd == p[1] && r.atyp == p[3]);
	alen = r.atyp == SOCKS5_ATYP_IPV4 ? 4 : r.atyp == SOCKS5_ATYP_IPV6 ?
	    16 : 1 + (size_t)p[4];
	CHECK((size_t)len == 4 + alen + 2);
	CHECK(r.port == ((unsigned)p[4 + alen] << 8 | p[5 + alen]));
	if (r.atyp == SOCKS5_ATYP_DOMAIN) {
		CHECK(r.namelen == p[4]);
		CHECK(memcmp(r.name, p + 5, r.namelen) == 0);
		CHECK(r.name[r.namelen] == '\0');
		CHECK(strlen(r.name) <= r.namelen);
		return;
	}
	CHECK(r.atyp == SOCKS5_ATYP_IPV4 || r.atyp == SOCKS5_ATYP_IPV6);
	CHECK(memcmp(r.addr, p + 4, alen) == 0);
	/* Our reply for that address parses back to the same one. */
	fam = r.atyp == SOCKS5_ATYP_IPV4 ? AF_INET : AF_INET6;
	(void)addr_make(&a, fam, r.addr, r.port);
	blen = reply_build(out, r.cmd % 9, &a);
	CHECK(blen == (fam == AF_INET ? 10u : 22u));
	len2 = request_parse(out, blen, &r2);
	CHECK(len2 == (int)blen);
	CHECK(r2.cmd == r.cmd % 9 && r2.atyp == r.atyp);
	CHECK(memcmp(r2.addr, r.addr, 16) == 0 && r2.port == r.port);
	CHECK(socksaddr_parse(out + 3, blen - 3, &r2) == (int)blen - 3);
	CHECK(socksaddr_build(out, &a) == blen - 3);
	CHECK(memcmp(out + 1, r.addr, alen) == 0);
	/* No address: 0.0.0.0:0. */
	blen = reply_build(out, 1, NULL);
	CHECK(blen == 10 && out[3] == SOCKS5_ATYP_IPV4);
	CHECK(request_parse(out, blen, &r2) == 10 && r2.port == 0);
}

static void
t_udp(const unsigned char *p, size_t n)
{
	struct request	 h;
	int		 len, alen;

	len = udp_parse(p, n, &h);
	CHECK(len == -1 || (len >= 7 && (size_t)len <= n));
	if (len < 0)
		return;
	CHECK(p[0] == 0 && p[1] == 0 && h.frag == p[2] && h.atyp == p[3]);
	alen = socksaddr_parse(p + 3, n - 3, &h);
	CHECK(alen + 3 == len);
	if (h.atyp == SOCKS5_ATYP_DOMAIN) {
		CHECK(h.namelen > 0 && h.namelen == p[4]);
		CHECK(strlen(h.name) == h.namelen);
		CHECK(memchr(p + 5, '\0', h.namelen) == NULL);
	}
}

/* ------------------------------------------------------------------ */
/* Target 4: access rules.                                             */

static char	 rule_text[SOCKS5_MAXRULES + 8][300];

static void
cidr_check(const struct cidr *c)
{
	CHECK(c->fam == 0 || c->fam == AF_INET || c->fam == AF_INET6);
	if (c->fam == 0)
		CHECK(c->bits == 0);
	else
		CHECK(c->bits <= (c->fam == AF_INET ? 32 : 128) &&
		    cidr_match(c, c->fam, c->addr));
}

static void
t_rules(const unsigned char *p, size_t n)
{
	unsigned char		 q[40], ip[16];
	union sockaddr_any	 peer;
	const char		*user, *users_sel[] = { NULL, "", "alice", "bob" };
	size_t			 i, k, len;
	int			 nr = 0, r, ok, fam, cmd;
	struct rule		*ru;

	memset(q, 0, sizeof(q));
	k = n < sizeof(q) ? n : sizeof(q);
	memcpy(q, p, k);
	p += k;
	n -= k;
	srv.nrules = 0;
	while (n > 0 && nr < (int)(sizeof(rule_text) / sizeof(rule_text[0]))) {
		const unsigned char *nl = memchr(p, '\n', n);

		len = nl ? (size_t)(nl - p) : n;
		k = len < sizeof(rule_text[0]) - 1 ? len :
		    sizeof(rule_text[0]) - 1;
		memcpy(rule_text[nr], p, k);
		rule_text[nr][k] = '\0';
		r = srv.nrules;
		ok = rule_add(rule_text[nr]);
		if (r == SOCKS5_MAXRULES)
			CHECK(ok == -1);
		CHECK(ok == 0 ? srv.nrules == r + 1 : srv.nrules == r);
		if (ok == 0) {
			ru = &srv.rules[r];
			CHECK(ru->text == rule_text[nr]);
			CHECK(ru->plo <= ru->phi && ru->phi <= 65535);
			CHECK((ru->cmds & ~0x0eu) == 0);
			cidr_check(&ru->from);
			cidr_check(&ru->to);
			if (ru->user != NULL) {
				CHECK(ru->ulen >= 1 && ru->ulen <= 255);
				CHECK(ru->user > ru->text && ru->user + ru->ulen
				    <= ru->text + strlen(ru->text));
			}
			CHECK(strncmp(rule_text[nr] + strspn(rule_text[nr],
			    " \t"), ru->allow ? "allow" : "deny",
			    ru->allow ? 5 : 4) == 0);
		}
		nr++;
		p += len;
		n -= len;
		if (nl) {
			p++;
			n--;
		}
	}
	/* Evaluate one query: a peer, maybe a user, command, destination. */
	memset(&peer, 0, sizeof(peer));
	if (q[0] & 1) {
		peer.sin6.sin6_family = AF_INET6;
		memcpy(&peer.sin6.sin6_addr, q + 1, 16);
	} else {
		peer.sin.sin_family = AF_INET;
		memcpy(&peer.sin.sin_addr, q + 1, 4);
	}
	fam = q[17] % 3 == 0 ? 0 : q[17] % 3 == 1 ? AF_INET : AF_INET6;
	memcpy(ip, q + 18, 16);
	cmd = q[36] % 4;
	user = users_sel[q[37] % 4];
	r = rules_eval(&peer, user, cmd, fam, fam ? ip : NULL,
	    (unsigned)q[34] << 8 | q[35]);
	CHECK(r >= -1 && r <= srv.nrules);
	if (srv.nrules == 0)
		CHECK(r == -1);
	if (r >= 0 && r < srv.nrules)
		CHECK(!srv.rules[r].allow);
	/* Every rule's own "to" network matches its base address. */
	for (i = 0; i < (size_t)srv.nrules; i++)
		if (srv.rules[i].to.fam != 0)
			CHECK(cidr_match(&srv.rules[i].to, srv.rules[i].to.fam,
			    srv.rules[i].to.addr));
	srv.nrules = 0;
}

/* ------------------------------------------------------------------ */
/* Target 5: the user file.                                            */

static struct user	 utab[SOCKS5_MAXUSERS];

/* What users_read() must make of the bytes: -1, or the user count. */
static int
users_ref(const unsigned char *p, size_t n, struct user *t)
{
	size_t	 i = 0, len, k;
	int	 count = 0;
	const unsigned char *nl, *colon;

	while (i < n) {
		nl = memchr(p + i, '\n', n - i);
		len = nl ? (size_t)(nl - (p + i)) : n - i;
		if (len > 520 && p[i] != '#')	/* a comment may run on */
			return -1;
		k = len;
		if (k > 0 && p[i + k - 1] == '\r')
			k--;
		if (k > 0 && p[i] != '#') {
			if (count == SOCKS5_MAXUSERS)
				return -1;
			colon = memchr(p + i, ':', k);
			if (colon == NULL)
				return -1;
			if ((size_t)(colon - (p + i)) < 1 ||
			    (size_t)(colon - (p + i)) > 255 ||
			    k - (size_t)(colon - (p + i)) - 1 < 1 ||
			    k - (size_t)(colon - (p + i)) - 1 > 255)
				return -1;
			memset(&t[count], 0, sizeof(t[count]));
			t[count].ulen = (unsigned char)(colon - (p + i));
			t[count].plen = (unsigned char)(k - t[count].ulen - 1);
			memcpy(t[count].name, p + i, t[count].ulen);
			memcpy(t[count].pass, colon + 1, t[count].plen);
			count++;
		}
		i += len + (nl != NULL);
	}
	return count;
}

static struct user	 rtab[SOCKS5_MAXUSERS];

static void
t_users(const unsigned char *p, size_t n)
{
	struct user	 u;
	const char	*why = NULL;
	const unsigned char *nl;
	size_t		 len;
	int		 got, want, lineno, i;

	if (n < 1)
		return;
	g_users_chunk = 1 + p[0] * 17;		/* 1 .. 4336 bytes a read */
	p++;
	n--;
	/* One line through user_parse. */
	nl = memchr(p, '\n', n);
	len = nl ? (size_t)(nl - p) : n;
	if (user_parse(&u, (const char *)p, len) == 0) {
		CHECK((size_t)u.ulen + u.plen + 1 == len);
		CHECK(u.ulen >= 1 && u.plen >= 1);
		CHECK(p[u.ulen] == ':' && memchr(p, ':', u.ulen) == NULL);
		CHECK(memcmp(u.name, p, u.ulen) == 0);
		CHECK(memcmp(u.pass, p + u.ulen + 1, u.plen) == 0);
	}
	/* The whole input as a file. */
	if (n > sizeof(users_in.buf))
		return;
	memcpy(users_in.buf, p, n);
	users_in.len = n;
	users_in.pos = users_in.peeked = 0;
	users_in.eof = 1;
	got = users_read("fuzz:users", utab, &why, &lineno);
	CHECK(fk_live == 0);	/* the file was closed */
	want = users_ref(p, n, rtab);
	if (got < 0)
		CHECK(why != NULL && lineno >= 0);
	if (got != want) {
		fprintf(stderr, "fuzz: users_read gave %d, reference %d (%s)\n",
		    got, want, got < 0 ? why : "-");
		abort();
	}
	for (i = 0; i < got; i++) {
		CHECK(utab[i].ulen == rtab[i].ulen &&
		    utab[i].plen == rtab[i].plen);
		CHECK(memcmp(utab[i].name, rtab[i].name, 255) == 0);
		CHECK(memcmp(utab[i].pass, rtab[i].pass, 255) == 0);
	}
}

/* ------------------------------------------------------------------ */
/* Targets 6 and 7: one session, played record by record.              */

enum {
	R_CLIENT,	/* client bytes (none: EOF), then a pass */
	R_REMOTE,	/* remote bytes (none: EOF), then a pass */
	R_POLL,		/* a pass with chosen revents, a byte per fd */
	R_DGRAM,	/* a datagram from the client (2 bytes: port) */
	R_DGRAM_OTHER,	/* a datagram from another host */
	R_DGRAM_REMOTE,	/* a reply datagram: 0/1 fam, addr, port, data */
	R_LOOKUP,	/* the resolver answers: count, then fam+16 each */
	R_TIME,		/* time passes (16 ms units), deadlines run */
	R_HELPER,	/* a helper: 0 answers another lookup, 1 dies, 2 the
			   next fork fails, 3 helpers reaped (SIGCHLD) */
	R_PEER,		/* a BIND peer connects: fam, addr, port */
	R_STEAL,	/* another session takes a spill and a UDP buffer */
	R_BULK,		/* 0/1 client/remote, count: count*256 bytes */
	R_NTYPES
};

static const int errs[8] = {
	0, EINPROGRESS, ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ETIMEDOUT,
	EACCES, EINVAL
};

static int	 g_done;		/* the session was freed */
static int	 stolen_buf = -1;	/* R_STEAL: held by "another session" */
static int	 stolen_ub = -1;
static int	 g_split;		/* inetd-style descriptors */

static void
stream_add(struct stream *st, const unsigned char *p, size_t n)
{
	if (n == 0) {
		st->eof = 1;
		return;
	}
	if (st->eof)
		return;		/* nothing after a FIN */
	if (n > sizeof(st->buf) - st->len)
		n = sizeof(st->buf) - st->len;
	memcpy(st->buf + st->len, p, n);
	st->len += n;
}

/* Free a finished session the way the loop does. */
static void
reap(void)
{
	if (!g_done && g_s->state == S_DONE) {
		session_free(g_s);
		g_done = 1;
	}
	if (!g_done && g_s->state == S_FREE)	/* sessions_expire freed it */
		g_done = 1;
}

/*
 * The helpers' entries of a poll pass, first as in poll_build(): one
 * is readable when its answer has bytes to read, or it died. Returns
 * how many are.
 */
static int
helpers_poll(void)
{
	struct helper	*h;
	struct fchan	*c;
	int		 i, n = 0;

	for (i = 0; i < srv.nresolvers; i++) {
		h = &srv.helpers[i];
		h->pi = pfd_add(h->fd, POLLIN);
		if (h->pi < 0)
			continue;
		c = &fch[h->fd];
		if (c->outpos < c->outlen)
			srv.pfd[h->pi].revents = POLLIN;
		if (c->eof)
			srv.pfd[h->pi].revents = POLLIN | POLLHUP;
		n += srv.pfd[h->pi].revents != 0;
	}
	return n;
}

/* Right after lookups_dispatch(): nothing waits that could go out. */
static void
dispatch_check(void)
{
	const struct helper	*h;
	int			 i;

	if (srv.nqueued == 0)
		return;
	for (i = 0; i < srv.nresolvers; i++) {
		h = &srv.helpers[i];
		if (h->pid <= 0 || fch[h->fd].eof)
			continue;	/* gone, or its death not yet seen */
		CHECK(h->slot >= 0);	/* no idle helper while one waits */
		CHECK(!(helper_abandoned(h) &&
		    DUE(h->since + SOCKS5_ABANDON_MS, srv.now)));
	}
}

/* The loop's end of a pass: helpers' answers read, the queue handed out. */
static void
lookups_pass(void)
{
	lookup_answers_read();
	lookups_dispatch();
	dispatch_check();
	reap();
}

/* Passes in which only helpers are ready, until none is (bounded). */
static void
helpers_pass(void)
{
	int	 i, k;

	for (k = 0; k < 400; k++) {
		srv.npfd = 0;
		if (helpers_poll() == 0)
			break;
		for (i = 0; i < NFD; i++)
			g_s->pi[i] = -1;
		lookups_pass();
	}
}

/*
 * One poll pass, built as poll_build() does (the helpers, then the
 * session; a shared client descriptor is one entry with both sides'
 * events); sel, a byte per descriptor, says which of the polled events
 * came back (1 in, 2 out, 4 hup, 8 err), or NULL: all of them. Then
 * the helpers' answers and the queue, as the loop does.
 */
static void
pass(const unsigned char *sel)
{
	short	 ev[NFD];
	int	 i, same;

	if (g_done)
		return;
	session_events(g_s, ev);
	same = g_s->fd[FD_CLIENT_OUT] == g_s->fd[FD_CLIENT];
	if (same) {
		ev[FD_CLIENT] |= ev[FD_CLIENT_OUT];
		ev[FD_CLIENT_OUT] = 0;
	}
	srv.npfd = 0;
	(void)helpers_poll();
	for (i = 0; i < NFD; i++) {
		g_s->pi[i] = -1;
		if (g_s->fd[i] < 0 || ev[i] == 0)
			continue;
		srv.pfd[srv.npfd].fd = g_s->fd[i];
		srv.pfd[srv.npfd].events = ev[i];
		srv.pfd[srv.npfd].revents = ev[i] & (POLLIN | POLLOUT);
		if (sel != NULL) {
			srv.pfd[srv.npfd].revents = 0;
			if (sel[i] & 1)
				srv.pfd[srv.npfd].revents |= ev[i] & POLLIN;
			if (sel[i] & 2)
				srv.pfd[srv.npfd].revents |= ev[i] & POLLOUT;
			if (sel[i] & 4)
				srv.pfd[srv.npfd].revents |= POLLHUP;
			if (sel[i] & 8)
				srv.pfd[srv.npfd].revents |= POLLERR;
		}
		g_s->pi[i] = srv.npfd++;
	}
	if (same)
		g_s->pi[FD_CLIENT_OUT] = g_s->pi[FD_CLIENT];
	session_run(g_s);
	reap();
	lookups_pass();
}

/*
 * The queue and the helpers, between passes: nqueued counts exactly the
 * queued sessions; a helper holds a lookup exactly when its fake holds
 * that request; a helper's pid changes only after it was killed (by
 * the fake kill()) or died and was reaped.
 */
static void
helpers_check(void)
{
	const struct helper	*h;
	const struct fchan	*c;
	const struct fproc	*p;
	int			 i, j, nq = 0;

	for (i = 0; i < srv.nsess; i++) {
		if (srv.sess[i].state == S_FREE) {
			CHECK(!srv.sess[i].queued);
			continue;
		}
		if (srv.sess[i].queued) {
			CHECK(srv.sess[i].lookup_id != 0);
			nq++;
		}
	}
	CHECK(nq == srv.nqueued);
	CHECK(srv.nkilled >= 0 && srv.nkilled <= (int)(sizeof(srv.killed) /
	    sizeof(srv.killed[0])));
	for (i = 0; i < srv.nkilled; i++)
		CHECK(fake_proc("killed[]", srv.killed[i])->state == P_KILLED);
	for (i = 0; i < srv.nresolvers; i++) {
		h = &srv.helpers[i];
		if (g_hpid[i] != h->pid) {
			if (g_hpid[i] > 0) {
				p = fake_proc("old helper", g_hpid[i]);
				CHECK(p->state == P_KILLED ||
				    p->state == P_REAPED);
			}
			g_hpid[i] = h->pid;
		}
		if (h->pid <= 0) {
			CHECK(h->fd == -1 && h->slot == -1);
			continue;
		}
		p = fake_proc("helper", h->pid);
		CHECK(p->state == P_LIVE || p->state == P_DEAD);
		for (j = 0; j < i; j++)
			CHECK(srv.helpers[j].pid != h->pid);
		CHECK(h->fd >= 0 && fk[h->fd].kind == K_HELPER);
		c = &fch[h->fd];
		if (c->eof)
			continue;
		CHECK((h->slot >= 0) == c->busy);
		if (c->busy)
			CHECK(c->req.slot == (unsigned)h->slot &&
			    c->req.id == h->id);
		CHECK(h->got == c->outpos);
	}
}

/* Invariants that hold between passes. */
static void
session_check(void)
{
	struct session	*s = g_s;

	if (g_done)
		return;
	CHECK(s->state != S_FREE && s->state != S_DONE);
	CHECK(s->outlen <= sizeof(s->out));
	CHECK(s->up.len <= SOCKS5_BUFSIZE && s->down.len <= SOCKS5_BUFSIZE);
	CHECK(s->up.off + s->up.len <= SOCKS5_BUFSIZE);
	CHECK(s->down.off + s->down.len <= SOCKS5_BUFSIZE);
	/* Pending bytes live in a spill buffer, or (up) in hs. */
	CHECK(s->up.len == 0 || (s->up.buf >= 0 ? s->up.data ==
	    BUF(s->up.buf) : s->up.data == s->hs));
	CHECK(s->down.buf >= 0 || s->down.len == 0);
	CHECK(s->hslen <= sizeof(s->hs));
	CHECK(s->up.buf < T_POOL && s->down.buf < T_POOL);
	CHECK(s->up.buf < 0 || s->up.buf != s->down.buf);
	CHECK(stolen_buf < 0 || (s->up.buf != stolen_buf &&
	    s->down.buf != stolen_buf));
	CHECK(stolen_ub < 0 || (s->rbuf != stolen_ub && s->held != stolen_ub));
	CHECK(s->rbuf < T_UDP && s->held < T_UDP);
	CHECK(s->rbuf < 0 || s->rbuf != s->held);
	CHECK(s->rlen <= UDP_DATA_MAX);
	/* The union: a destination list, or (UDP) the name cache. */
	if (s->cmd == SOCKS5_CMD_UDP)
		CHECK(s->to.udp.have <= 1 && memchr(s->to.udp.name, '\0',
		    sizeof(s->to.udp.name)) != NULL);
	else
		CHECK(s->to.dst.naddr <= SOCKS5_MAXADDR &&
		    s->to.dst.next <= s->to.dst.naddr);
	CHECK(srv.npoolfree >= 0 && srv.npoolfree <= T_POOL);
	CHECK(srv.nudpfree >= 0 && srv.nudpfree <= T_UDP);
	CHECK(memchr(s->dname, '\0', sizeof(s->dname)) != NULL);
	CHECK(memchr(s->user, '\0', sizeof(s->user)) != NULL);
	if (s->state == S_RELAY || s->state == S_CONNECT)
		CHECK(s->fd[FD_REMOTE] >= 0);
	if (s->state == S_UDP)
		CHECK(s->fd[FD_UDP] >= 0);
	/*
	 * A session waiting (for a lookup, a connect, a paced login) reads
	 * its client: what came after the handshake so far is kept in hs,
	 * as it came; an EOF is noted only after all of it.
	 */
	if (s->state == S_RESOLVE || s->state == S_CONNECT ||
	    s->state == S_AUTH_WAIT) {
		CHECK(s->hslen <= client_in.pos);
		CHECK(memcmp(s->hs, client_in.buf + client_in.pos - s->hslen,
		    s->hslen) == 0);
		if (s->up.eof)
			CHECK(client_in.eof && client_in.pos == client_in.len);
	}
	/* Bytes to the remote are counted exactly; an EOF passed on. */
	if (s->cmd == SOCKS5_CMD_CONNECT || s->cmd == SOCKS5_CMD_BIND) {
		if (remote_outlen <= sizeof(remote_out))
			CHECK(s->up.bytes.hi == 0 &&
			    s->up.bytes.lo == remote_outlen);
		if (s->state == S_RELAY && s->up.eof && s->up.len == 0 &&
		    s->fd[FD_REMOTE] >= 0)
			CHECK(s->up.shut && fk[s->fd[FD_REMOTE]].shut);
	}
}

/* The handshake's length in the client's bytes, as the parsers see it. */
static size_t
handshake_len(int userpass)
{
	struct credentials	 c;
	struct request		 r;
	size_t			 n = 0;
	int			 k;

	k = greeting_parse(client_in.buf, client_in.len);
	if (k <= 0)
		return (size_t)-1;
	n += (size_t)k;
	if (userpass) {
		k = auth_parse(client_in.buf + n, client_in.len - n, &c);
		if (k <= 0)
			return (size_t)-1;
		n += (size_t)k;
	}
	k = request_parse(client_in.buf + n, client_in.len - n, &r);
	if (k <= 0)
		return (size_t)-1;
	return n + (size_t)k;
}

/* Is what went to the client replies, then a prefix of the remote's? */
static void
client_stream_check(int userpass, int cmd)
{
	struct request	 r;
	const unsigned char *o = client_out;
	size_t		 n = client_outlen, pos = 0;
	int		 k, nrep = 0;

	if (n > sizeof(client_out))
		return;
	if (n < 2)
		return;
	CHECK(o[0] == SOCKS5_VERSION);
	CHECK(o[1] == SOCKS5_METHOD_NONE || o[1] == SOCKS5_METHOD_USERPASS ||
	    o[1] == SOCKS5_METHOD_REJECT);
	CHECK(o[1] == SOCKS5_METHOD_REJECT ||
	    o[1] == (userpass ? SOCKS5_METHOD_USERPASS : SOCKS5_METHOD_NONE));
	pos = 2;
	if (o[1] == SOCKS5_METHOD_REJECT) {
		CHECK(n == 2);
		return;
	}
	if (o[1] == SOCKS5_METHOD_USERPASS) {
		if (n - pos < 2)
			return;
		CHECK(o[pos] == SOCKS5_AUTH_VERSION && o[pos + 1] <= 1);
		if (o[pos + 1] == 1) {
			CHECK(n == pos + 2);
			return;
		}
		pos += 2;
	}
	while (pos < n && nrep < 2) {
		k = request_parse(o + pos, n - pos, &r);
		if (k == 0)
			return;		/* cut short by the session's end */
		CHECK(k > 0);
		CHECK(r.cmd <= SOCKS5_REP_ATYP_UNSUPPORTED);
		CHECK(r.atyp == SOCKS5_ATYP_IPV4 || r.atyp == SOCKS5_ATYP_IPV6);
		CHECK(o[pos + 2] == 0);
		pos += (size_t)k;
		nrep++;
		if (r.cmd != SOCKS5_REP_SUCCEEDED) {
			CHECK(pos == n);	/* a failure is the last word */
			return;
		}
		if (cmd != SOCKS5_CMD_BIND)
			break;
	}
	if (pos == n)
		return;
	CHECK(cmd == SOCKS5_CMD_CONNECT || (cmd == SOCKS5_CMD_BIND &&
	    nrep == 2));
	/* The rest is the remote's bytes, in order, nothing else. */
	if (n - pos > remote_in.len || memcmp(o + pos, remote_in.buf,
	    n - pos) != 0) {
		fprintf(stderr, "fuzz: client got %zu bytes after the replies"
		    " that are not the remote's (remote sent %zu)\n", n - pos,
		    remote_in.len);
		abort();
	}
}

/* Is what went to the remote the client's bytes after the handshake? */
static void
remote_stream_check(int userpass)
{
	size_t	 h;

	if (remote_outlen == 0 || remote_outlen > sizeof(remote_out))
		return;
	h = handshake_len(userpass);
	CHECK(h != (size_t)-1);
	if (remote_outlen > client_in.len - h || memcmp(remote_out,
	    client_in.buf + h, remote_outlen) != 0) {
		fprintf(stderr, "fuzz: remote got %zu bytes that are not the "
		    "client's after its %zu-byte handshake\n", remote_outlen,
		    h);
		abort();
	}
}

static void
dgram_queue(int fd, const union sockaddr_any *src, const unsigned char *p,
    size_t n)
{
	if (n > sizeof(pend.data))
		n = sizeof(pend.data);
	pend.fd = fd;
	memcpy(pend.data, p, n);
	pend.len = n;
	pend.src = *src;
}

static void
addr_from(union sockaddr_any *a, const unsigned char *p, size_t n)
{
	unsigned char	 b[19];

	memset(b, 0, sizeof(b));
	memcpy(b, p, n < sizeof(b) ? n : sizeof(b));
	memset(a, 0, sizeof(*a));
	if (b[0] & 1) {
		a->sin6.sin6_family = AF_INET6;
		memcpy(&a->sin6.sin6_addr, b + 1, 16);
		a->sin6.sin6_port = htons((unsigned short)(b[17] << 8 | b[18]));
	} else {
		a->sin.sin_family = AF_INET;
		memcpy(&a->sin.sin_addr, b + 1, 4);
		a->sin.sin_port = htons((unsigned short)(b[5] << 8 | b[6]));
	}
}

static void
record(int type, const unsigned char *p, size_t n)
{
	union sockaddr_any	 a;
	struct lookup_ans	 ans;
	unsigned char		 sel[NFD];
	size_t			 i, n0 = n;
	unsigned long		 up, so;
	size_t			 pad, k;
	enum state		 st;
	struct fchan		*c;
	int			 fd, stale, was_done;

	switch (type) {
	case R_CLIENT:
		stream_add(&client_in, p, n);
		pass(NULL);
		break;
	case R_REMOTE:
		stream_add(&remote_in, p, n);
		pass(NULL);
		break;
	case R_POLL:
		memset(sel, 0, sizeof(sel));
		memcpy(sel, p, n < NFD ? n : NFD);
		/* 0x10 on the client: it resets (its reads fail from now). */
		if (sel[FD_CLIENT] & 0x10)
			client_in.reset = 1;
		st = g_s->state;
		k = waiting_reads(g_s) && (sel[FD_CLIENT] & 1);
		was_done = g_done;
		pass(sel);
		/* Waiting for a lookup, a reset client ends the session. */
		if (!was_done && client_in.reset && st == S_RESOLVE && k)
			CHECK(g_done);
		break;
	case R_DGRAM:
	case R_DGRAM_OTHER:
		if (g_s->fd[FD_UDP] < 0)
			break;
		a = g_s->peer;
		if (type == R_DGRAM_OTHER) {
			if (a.sa.sa_family == AF_INET)
				a.sin.sin_addr.s_addr = htonl(0xc0000202UL);
			else
				a.sin6.sin6_addr.s6_addr[0] = 0x20;
		}
		pad = 0;
		if (n >= 2) {
			if (p[0] & 0x40)	/* padded to a size: 1 KiB units */
				pad = (size_t)(p[1] >> 2) * 1024;
			if (a.sa.sa_family == AF_INET)
				a.sin.sin_port = htons((unsigned short)(
				    g_s->uport_fixed && p[0] & 0x80 ?
				    g_s->uport : 5000 + (p[1] & 3)));
			else
				a.sin6.sin6_port = htons(5000);
			p += 2;
			n -= 2;
		} else if (a.sa.sa_family == AF_INET)
			a.sin.sin_port = htons(5000);
		else
			a.sin6.sin6_port = htons(5000);
		dgram_queue(g_s->fd[FD_UDP], &a, p, n);
		if (pad > pend.len && pad <= sizeof(pend.data)) {
			for (i = pend.len; i < pad; i++)
				pend.data[i] = (unsigned char)(i * 7);
			pend.len = pad;
		}
		up = g_s->dgrams_up;
		so = sent_out;
		g_dgram_live = 1;
		pass(NULL);
		g_dgram_live = 0;
		pend.fd = -1;
		if (type == R_DGRAM_OTHER)	/* never relayed */
			CHECK(sent_out == so && (g_done || g_s->dgrams_up == up));
		break;
	case R_DGRAM_REMOTE:
		addr_from(&a, p, n);
		fd = g_s->fd[a.sa.sa_family == AF_INET ? FD_UDP4 : FD_UDP6];
		if (fd < 0)
			break;
		i = n < 19 ? n : 19;
		dgram_queue(fd, &a, p + i, n - i);
		pass(NULL);
		pend.fd = -1;
		break;
	case R_LOOKUP:
		/*
		 * The helper holding the session's lookup answers it; with
		 * stale, one holding another lookup (an earlier session's,
		 * or one it gave up) answers that: it is dropped.
		 */
		stale = n > 0 && (p[0] & 0x80) != 0;
		c = NULL;
		for (k = 0; k < (size_t)srv.nresolvers; k++) {
			fd = srv.helpers[k].fd;
			if (fd < 0 || !fch[fd].busy || fch[fd].eof ||
			    fch[fd].outlen != 0)
				continue;
			if ((!g_done && g_s->lookup_id != 0 &&
			    fch[fd].req.slot == (unsigned)(g_s - srv.sess) &&
			    fch[fd].req.id == g_s->lookup_id) != stale) {
				c = &fch[fd];
				break;
			}
		}
		if (c == NULL)
			break;
		memset(&ans, 0, sizeof(ans));
		ans.slot = c->req.slot;
		ans.id = c->req.id;
		if (n > 0) {
			ans.naddr = (p[0] & 0x7f) % (SOCKS5_MAXADDR + 1);
			stale = (p[0] & 0x80) != 0;
			p++;
			n--;
		}
		for (i = 0; i < (size_t)ans.naddr; i++) {
			unsigned char	 e[17];

			memset(e, 0, sizeof(e));
			if (n > 0) {
				memcpy(e, p, n < 17 ? n : 17);
				p += n < 17 ? n : 17;
				n -= n < 17 ? n : 17;
			} else {
				e[1] = 127;
				e[4] = 1;
			}
			ans.afam[i] = e[0] & 1 ? AF_INET6 : AF_INET;
			memcpy(ans.aaddr[i], e + 1, 16);
		}
		/* Through the helper's socket, maybe a few bytes a read. */
		memcpy(c->out, &ans, sizeof(ans));
		c->outlen = sizeof(ans);
		c->outpos = 0;
		st = g_s->state;
		was_done = g_done;
		helpers_pass();
		/* All read; the helper may have taken a queued lookup since. */
		CHECK(c->outlen == 0 && (!c->busy || c->req.id != ans.id));
		if (stale)	/* not the lookup it has out: ignored */
			CHECK(g_done == was_done && g_s->state == st);
		else		/* given to it: no longer out */
			CHECK(g_done || g_s->lookup_id != ans.id);
		break;
	case R_TIME:
		srv.now += 16UL * (n >= 2 ? (unsigned)p[0] << 8 | p[1] :
		    n == 1 ? p[0] : 64);
		sessions_expire();
		reap();
		if (srv.now - srv.last_reap >= 1000UL) {	/* as the loop */
			srv.last_reap = srv.now;
			resolvers_reap();
		}
		lookups_dispatch();	/* a pass with nothing ready */
		dispatch_check();
		reap();
		break;
	case R_HELPER:
		k = n > 1 ? p[1] % (size_t)srv.nresolvers : 0;
		fd = srv.helpers[k].fd;
		switch (n > 0 ? p[0] & 3 : 0) {
		case 0:		/* the first busy with another lookup answers */
			for (k = 0; k < (size_t)srv.nresolvers; k++) {
				fd = srv.helpers[k].fd;
				if (fd < 0 || !fch[fd].busy || fch[fd].eof ||
				    fch[fd].outlen != 0 || (!g_done &&
				    fch[fd].req.slot == (unsigned)(g_s -
				    srv.sess) && fch[fd].req.id ==
				    g_s->lookup_id))
					continue;
				memset(&ans, 0, sizeof(ans));
				ans.slot = fch[fd].req.slot;
				ans.id = fch[fd].req.id;
				memcpy(fch[fd].out, &ans, sizeof(ans));
				fch[fd].outlen = sizeof(ans);
				fch[fd].outpos = 0;
				break;
			}
			helpers_pass();
			break;
		case 1:		/* helper k dies: seen by its socket, or reaped */
			if (fd < 0 || fch[fd].eof)
				break;
			fake_proc("die", srv.helpers[k].pid)->state = P_DEAD;
			fake_proc("die", srv.helpers[k].pid)->died = 1;
			fch[fd].eof = 1;
			if (p[0] & 8) {
				/* seen later: maybe a request is sent first */
			} else if (p[0] & 4) {
				resolvers_reap();
				lookups_dispatch();
				dispatch_check();
				reap();
			} else {
				helpers_pass();
			}
			break;
		case 2:
			g_fork_fail = 1;
			break;
		case 3:		/* SIGCHLD: the loop reaps */
			resolvers_reap();
			lookups_dispatch();
			dispatch_check();
			reap();
			break;
		}
		break;
	case R_STEAL:
		if (stolen_buf < 0)
			stolen_buf = buf_get();
		if (stolen_ub < 0)
			stolen_ub = udpbuf_get();
		break;
	case R_BULK:
		if (n < 2)
			break;
		{
			struct stream	*st2 = p[0] & 1 ? &remote_in : &client_in;
			unsigned char	 chunk[256];

			for (k = 0; k < p[1]; k++) {
				for (i = 0; i < sizeof(chunk); i++)
					chunk[i] = (unsigned char)(k + i * 13);
				stream_add(st2, chunk, sizeof(chunk));
			}
		}
		pass(NULL);
		break;
	case R_PEER:
		if (g_s->fd[FD_LISTEN] < 0)
			break;
		addr_from(&a, p, n);
		if (g_s->state == S_BIND_WAIT && n > 0 && (p[0] & 2)) {
			/* The expected peer: the address the client named. */
			if (g_s->to.dst.fam[0] == AF_INET) {
				a.sin.sin_family = AF_INET;
				memcpy(&a.sin.sin_addr, g_s->to.dst.addr[0], 4);
			} else {
				memset(&a, 0, sizeof(a));
				a.sin6.sin6_family = AF_INET6;
				memcpy(&a.sin6.sin6_addr, g_s->to.dst.addr[0],
				    16);
			}
		}
		dgram_queue(g_s->fd[FD_LISTEN], &a, sel, 0);
		pass(NULL);
		pend.fd = -1;
		break;
	}
	if (g_trace)
		fprintf(stderr, "fuzz: record %d len %zu -> %s state %d "
		    "result %s client_out %zu remote_out %zu up %lu dropped "
		    "%lu sent %lu/%lu\n", type, n0, g_done ? "freed" : "live",
		    (int)g_s->state, g_s->result ? g_s->result : "-",
		    client_outlen, remote_outlen, g_s->dgrams_up,
		    g_s->dgrams_dropped, sent_out, sent_client);
	session_check();
	helpers_check();
}

/* Start a session with the input's configuration. */
static void
session_begin(unsigned char cfg0, unsigned char cfg1, int udp)
{
	union sockaddr_any	 peer;
	unsigned char		 hs[40];
	size_t			 hn;
	int			 cfd, wfd, userpass = cfg0 & 1;

	g_nconnect = 0;
	client_in.len = client_in.pos = client_in.peeked = 0;
	client_in.eof = client_in.reset = 0;
	remote_in.reset = 0;
	remote_in.len = remote_in.pos = remote_in.peeked = 0;
	remote_in.eof = 0;
	client_outlen = remote_outlen = 0;
	remote_fd_seen = -1;
	pend.fd = -1;
	g_done = 0;

	memset(&peer, 0, sizeof(peer));
	if (cfg0 & 8) {
		peer.sin6.sin6_family = AF_INET6;
		peer.sin6.sin6_addr.s6_addr[15] = 1;
		peer.sin6.sin6_port = htons(5000);
	} else {
		peer.sin.sin_family = AF_INET;
		peer.sin.sin_addr.s_addr = htonl(0x7f000001UL);
		peer.sin.sin_port = htons(5000);
	}
	if (g_split) {
		cfd = fake_new(K_CLIENT_IN);
		wfd = fake_new(K_CLIENT_OUT);
	} else {
		cfd = wfd = fake_new(K_CLIENT);
	}
	g_s = session_new(cfd, wfd, &peer.sa, peer.sa.sa_family == AF_INET ?
	    sizeof(peer.sin) : sizeof(peer.sin6));
	CHECK(g_s != NULL);

	if (udp) {
		/* Greeting, maybe auth, UDP ASSOCIATE from 0.0.0.0:port. */
		hn = 0;
		hs[hn++] = 5;
		hs[hn++] = 1;
		hs[hn++] = userpass ? 2 : 0;
		if (userpass) {
			memcpy(hs + hn, "\1\5alice\6secret", 14);
			hn += 14;
		}
		memcpy(hs + hn, "\5\3\0\1\0\0\0\0", 8);
		hn += 8;
		hs[hn++] = (cfg1 & 0x40) ? 5000 >> 8 : 0;
		hs[hn++] = (cfg1 & 0x40) ? 5000 & 0xff : 0;
		record(R_CLIENT, hs, hn);
	}
}

/* End it (a last pass, then as if the loop closed it) and check. */
static void
session_finish(int userpass)
{
	if (!g_done) {
		/* R_STEAL's other session ends first: buffers come back. */
		if (stolen_buf >= 0)
			srv.poolfree[srv.npoolfree++] = stolen_buf;
		if (stolen_ub >= 0)
			udpbuf_put(&stolen_ub);
		stolen_buf = stolen_ub = -1;
		pass(NULL);
		if (!g_done) {
			session_free(g_s);
			g_done = 1;
		}
	}
	if (stolen_buf >= 0)
		srv.poolfree[srv.npoolfree++] = stolen_buf;
	if (stolen_ub >= 0)
		udpbuf_put(&stolen_ub);
	stolen_buf = stolen_ub = -1;
	/* Nothing leaked; the streams were what they should be. */
	CHECK(srv.nactive == 0 && srv.nfree == T_SESS);
	CHECK(srv.npoolfree == T_POOL);
	CHECK(srv.nudpfree == T_UDP);
	CHECK(srv.nqueued == 0);
	CHECK(fk_live == 0);
	client_stream_check(userpass, g_s->cmd);
	remote_stream_check(userpass);
	CHECK(g_s->fd[FD_CLIENT] == -1 && g_s->fd[FD_CLIENT_OUT] == -1);
	g_s = NULL;
}

#define SESSIONS_MAX	4	/* one after another, in one input */

/* -b and -e as startup_common() parses them. */
static void
config_addrs(void)
{
	socklen_t	 alen;

	memset(&srv.bind_sa, 0, sizeof(srv.bind_sa));
	memset(&srv.ext_sa, 0, sizeof(srv.ext_sa));
	srv.have_bind = srv.conf.bind_addr != NULL &&
	    addr_parse(&srv.bind_sa, &alen, srv.conf.bind_addr, 0) == 0;
	srv.have_ext = srv.conf.external_addr != NULL &&
	    addr_parse(&srv.ext_sa, &alen, srv.conf.external_addr, 0) == 0;
	CHECK(srv.have_bind == (srv.conf.bind_addr != NULL));
	CHECK(srv.have_ext == (srv.conf.external_addr != NULL));
}

static void
t_session(const unsigned char *p, size_t n, int udp)
{
	unsigned char		 cfg0 = 0, cfg1 = 0;
	size_t			 len;
	int			 type, k;

	if (n > 0) {
		cfg0 = p[0];
		p++;
		n--;
	}
	if (n > 0) {
		cfg1 = p[0];
		p++;
		n--;
	}
	/* Per-input configuration; deterministic time. */
	srv.conf.user_file = (cfg0 & 1) ? "fuzz:users" : NULL;
	srv.conf.family = (cfg0 >> 1 & 3) == 1 ? 4 :
	    (cfg0 >> 1 & 3) == 2 ? 6 : 0;
	/*
	 * -b and -e change from one input to the next. socks5.c parses
	 * them once, in startup_common() (srv.have_bind/bind_sa,
	 * srv.have_ext/ext_sa): parse them here the same way, so that
	 * nothing of the previous input's -b is kept (socks5.c once kept
	 * one in a static of family_allowed(), now connect_family_ok();
	 * fixed in 6c52386).
	 */
	srv.conf.bind_addr = (cfg0 & 0x20) ? (cfg0 & 8 ? "::1" : "127.0.0.1") :
	    NULL;
	srv.conf.external_addr = (cfg0 & 0x40) ? "192.0.2.7" : NULL;
	config_addrs();
	srv.nrules = 0;
	if (cfg0 & 0x10) {
		size_t	 i;

		for (i = 0; i < NRULESET; i++)
			if (rule_add(rule_set[i]) != 0)
				abort();
	}
	g_split = (cfg0 & 0x80) != 0;
	g_connect_err = errs[cfg1 & 7];
	g_so_error = errs[(cfg1 >> 3) & 7] == EINPROGRESS ? 0 :
	    errs[(cfg1 >> 3) & 7];
	g_short = (cfg1 & 0x40) != 0 && !udp;
	g_tick = 0;
	g_log_strict = 1;
	srv.now = 1000000UL;
	srv.last_reap = srv.now;
	srv.lookup_ids = 0;
	srv.queue_seq = 0;
	helpers_reset(2, (cfg1 & 0x80) != 0);
	memset(srv.authpace, 0, sizeof(srv.authpace));
	srv.authpace_used = 0;

	/*
	 * Sessions one after another, each until it is freed; the failed
	 * login pacing and the clock carry over from one to the next.
	 */
	for (k = 0; k < SESSIONS_MAX && (k == 0 || n >= 3); k++) {
		session_begin(cfg0, cfg1, udp);
		while (n >= 3 && !g_done) {
			type = p[0] % R_NTYPES;
			len = (size_t)p[1] << 8 | p[2];
			p += 3;
			n -= 3;
			if (len > n)
				len = n;
			record(type, p, len);
			p += len;
			n -= len;
		}
		session_finish(cfg0 & 1);
	}
	srv.nrules = 0;
	srv.conf.user_file = NULL;
	srv.conf.bind_addr = srv.conf.external_addr = NULL;
	config_addrs();
	srv.conf.family = 0;
}

/* ------------------------------------------------------------------ */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	g_log_strict = 0;
	switch (data[0] % 8) {
	case 0:
		t_greeting(data + 1, size - 1);
		t_gss_frame(data + 1, size - 1);
		break;
	case 1:
		t_auth(data + 1, size - 1);
		break;
	case 2:
		t_request(data + 1, size - 1);
		break;
	case 3:
		t_udp(data + 1, size - 1);
		break;
	case 4:
		t_rules(data + 1, size - 1);
		break;
	case 5:
		t_users(data + 1, size - 1);
		break;
	case 6:
		t_session(data + 1, size - 1, 0);
		break;
	case 7:
		t_session(data + 1, size - 1, 1);
		break;
	}
	return 0;
}
