/*
 * loadgen.c - load generator for the socks5 benchmarks (test/bench/run.sh).
 *
 * A client, not a server: C99, POSIX (poll, pthreads). It runs its own
 * target in a forked child (TCP sink/source/echo and a UDP echo on
 * 127.0.0.1, ports picked by the kernel), and talks to it either through
 * a SOCKS5 proxy (-x PORT: greeting 05 01 00, CONNECT IPv4, UDP
 * ASSOCIATE) or directly when no proxy is given.
 *
 *   loadgen [-x port] [-t secs] [-w warmup] [-q] COMMAND [arg]
 *
 *   stream          single stream, upload then download, GiB/s
 *   streams N       N parallel streams, aggregate GiB/s and fairness
 *                   (and every byte moved, for CPU per GiB)
 *   sessions        sessions/s, sequential then -c concurrent (32)
 *   rtt             64-byte round trip through one session, µs
 *   udp             512-byte datagrams echoed, window -W (32), per second
 *   bulk BYTES      fixed transfer: BYTES up, then BYTES down
 *   hold N          open N idle sessions, print held=N, wait for SIGTERM,
 *                   SIGINT, SIGHUP or stdin EOF (at most -t seconds)
 *   probe           succeed once the proxy answers a greeting (-t secs)
 *   freeport        print a free TCP port on 127.0.0.1
 *
 * Output: key=value lines on stdout. Exit 0 on success, 1 on failure.
 *
 * Wire protocol to the target: the first byte the client sends picks
 * the mode of the connection:
 *   'U'  sink: read and discard until EOF
 *   'D'  source: send data until the peer goes away
 *   'E'  echo: every byte (this one included) is sent back
 *   'e'  this byte is sent back, then the target closes (sessions)
 *   'u'  + 8-byte big-endian length: read exactly that much, answer 'A'
 *   'd'  + 8-byte big-endian length: send exactly that much
 */

#define _GNU_SOURCE 1	/* only for glibc's full POSIX set; no GNU calls */

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IOSIZE		(128 * 1024)
#define MAXTHREADS	1024
#define UDP_PAYLOAD	512

static int		 proxy_port;		/* 0: direct */
static double		 duration = 3.0;	/* measured seconds */
static double		 warmup = 0.5;		/* seconds before measuring */
static int		 concurrency = 32;
static int		 window = 32;
static int		 quiet;

static uint16_t		 target_tcp_port;
static uint16_t		 target_udp_port;
static pid_t		 target_pid = -1;

static volatile sig_atomic_t stop_flag;

/* ------------------------------------------------------------------ */
/* Helpers.                                                            */

static void
die(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (target_pid > 0) {
		kill(target_pid, SIGKILL);
		waitpid(target_pid, NULL, 0);
	}
	exit(1);
}

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
sleep_s(double s)
{
	struct timespec	 ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !stop_flag)
		;
}

static void
set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void
set_nodelay(int fd)
{
	int	 one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
set_timeout(int fd, double secs)
{
	struct timeval	 tv;

	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void
loopback(struct sockaddr_in *a, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->sin_port = htons(port);
}

/* Move exactly n bytes in (out 0) or out; 0, or -1 on an error or EOF. */
static int
move_all(int fd, unsigned char *p, size_t n, int out)
{
	ssize_t	 r;

	while (n > 0) {
		r = out ? write(fd, p, n) : read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

#define readn(fd, buf, n)	move_all((fd), (unsigned char *)(buf), (n), 0)
#define writen(fd, buf, n)	move_all((fd), (unsigned char *)(buf), (n), 1)

static void
raise_fd_limit(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int
cmp_double(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------ */
/* SOCKS5 client side.                                                 */

/* Read a SOCKS5 reply (after VER REP RSV); fill *bnd. 0 or -1. */
static int
socks_reply(int fd, struct sockaddr_in *bnd)
{
	unsigned char	 h[4], a[262];
	size_t		 alen;

	errno = 0;
	if (readn(fd, h, 4) == -1) {
		if (errno == 0)
			errno = ECONNRESET;	/* closed without a reply */
		return -1;
	}
	if (h[0] != 5 || h[1] != 0) {
		errno = h[1] == 5 ? ECONNREFUSED : EPROTO;
		return -1;
	}
	switch (h[3]) {
	case 1:
		alen = 4 + 2;
		break;
	case 4:
		alen = 16 + 2;
		break;
	case 3:
		if (readn(fd, a, 1) == -1)
			return -1;
		alen = (size_t)a[0] + 2;
		break;
	default:
		return -1;
	}
	if (readn(fd, a, alen) == -1)
		return -1;
	if (bnd != NULL) {
		memset(bnd, 0, sizeof(*bnd));
		bnd->sin_family = AF_INET;
		if (h[3] == 1) {
			memcpy(&bnd->sin_addr, a, 4);
			memcpy(&bnd->sin_port, a + 4, 2);
		}
	}
	return 0;
}

static int
socks_greet(int fd)
{
	static const unsigned char g[3] = { 5, 1, 0 };
	unsigned char	 r[2];

	errno = 0;
	if (writen(fd, g, 3) == -1 || readn(fd, r, 2) == -1) {
		if (errno == 0)
			errno = ECONNRESET;
		return -1;
	}
	if (r[0] != 5 || r[1] != 0) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}

/* Send a request for 127.0.0.1:port with command cmd; read the reply. */
static int
socks_request(int fd, int cmd, uint16_t port, struct sockaddr_in *bnd)
{
	unsigned char	 q[10];

	q[0] = 5;
	q[1] = (unsigned char)cmd;
	q[2] = 0;
	q[3] = 1;
	q[4] = 127;
	q[5] = 0;
	q[6] = 0;
	q[7] = 1;
	q[8] = (unsigned char)(port >> 8);
	q[9] = (unsigned char)port;
	if (writen(fd, q, sizeof(q)) == -1)
		return -1;
	return socks_reply(fd, bnd);
}

/* A TCP connection to the target, through the proxy if there is one. */
static int
open_session(void)
{
	struct sockaddr_in	 a;
	int			 fd;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return -1;
	set_nodelay(fd);
	loopback(&a, proxy_port ? (uint16_t)proxy_port : target_tcp_port);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1)
		goto fail;
	if (proxy_port) {
		set_timeout(fd, 10);
		if (socks_greet(fd) == -1 ||
		    socks_request(fd, 1, target_tcp_port, NULL) == -1)
			goto fail;
		set_timeout(fd, 0);
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/* ------------------------------------------------------------------ */
/* The target: a poll() loop in a forked child.                        */

struct conn {
	int		 fd;
	int		 mode;		/* 0 until the first byte */
	unsigned char	 hdr[8];	/* length for 'u' and 'd' */
	int		 hdrlen;
	uint64_t	 left;		/* bytes left for 'u' and 'd' */
	unsigned char	*buf;		/* echo: data not yet sent back */
	size_t		 off, len;
};

static unsigned char	 srcbuf[256 * 1024];

static void
conn_close(struct conn *c)
{
	close(c->fd);
	free(c->buf);
	c->fd = -1;
	c->buf = NULL;
}

/* Echo: send back what is pending; 0 when all went, 1 blocked, -1 error. */
static int
echo_flush(struct conn *c)
{
	ssize_t	 w;

	while (c->len > 0) {
		w = write(c->fd, c->buf + c->off, c->len);
		if (w < 0)
			return errno == EAGAIN || errno == EINTR ? 1 : -1;
		c->off += (size_t)w;
		c->len -= (size_t)w;
	}
	c->off = 0;
	return 0;
}

/* Source: write until blocked or done. -1 ends the connection. */
static int
source_run(struct conn *c)
{
	ssize_t	 w;
	size_t	 n;
	int	 k;

	/* a few writes per wakeup, so that one stream cannot starve others */
	for (k = 0; k < 4; k++) {
		n = sizeof(srcbuf);
		if (c->mode == 'd') {
			if (c->left == 0)
				return 0;
			if (c->left < n)
				n = (size_t)c->left;
		}
		w = write(c->fd, srcbuf, n);
		if (w < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		if (c->mode == 'd')
			c->left -= (uint64_t)w;
	}
	return 0;
}

/* Input on a connection; -1 ends it. */
static int
conn_input(struct conn *c, unsigned char *rb, size_t rbsize)
{
	ssize_t	 r;
	size_t	 i, n;
	int	 k;

	for (k = 0; k < 16; k++) {
		if (c->mode == 'E') {
			if (c->len > 0)
				return 0;	/* back-pressure */
			if (c->buf == NULL && (c->buf = malloc(65536)) == NULL)
				return -1;
			r = read(c->fd, c->buf, 65536);
		} else
			r = read(c->fd, rb, rbsize);
		if (r == 0)
			return -1;
		if (r < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		n = (size_t)r;
		i = 0;
		if (c->mode == 0) {
			c->mode = rb[0];
			i = 1;
			if (c->mode == 'E') {
				/* the mode byte is echoed too */
				if ((c->buf = malloc(65536)) == NULL)
					return -1;
				memcpy(c->buf, rb, n);
				c->off = 0;
				c->len = n;
				if (echo_flush(c) == -1)
					return -1;
				continue;
			}
			if (c->mode == 'e') {
				/* one byte back, then this side closes */
				(void)write(c->fd, rb, 1);
				return -1;
			}
			if (c->mode != 'U' && c->mode != 'D' &&
			    c->mode != 'u' && c->mode != 'd')
				return -1;
		}
		if ((c->mode == 'u' || c->mode == 'd') && c->hdrlen < 8) {
			while (i < n && c->hdrlen < 8)
				c->hdr[c->hdrlen++] = rb[i++];
			if (c->hdrlen == 8) {
				int	 j;

				c->left = 0;
				for (j = 0; j < 8; j++)
					c->left = c->left << 8 | c->hdr[j];
				if (c->mode == 'd' && source_run(c) == -1)
					return -1;
			}
		}
		switch (c->mode) {
		case 'E':
			c->off = 0;
			c->len = n;
			if (echo_flush(c) == -1)
				return -1;
			break;
		case 'u':
			if (c->hdrlen == 8 && c->left > 0) {
				c->left -= n - i < c->left ? n - i : c->left;
				if (c->left == 0 && write(c->fd, "A", 1) != 1)
					return -1;
			}
			break;
		default:	/* 'U', 'D': discard */
			break;
		}
		if ((size_t)r < rbsize)
			return 0;
	}
	return 0;
}

static void
target_main(int lfd, int ufd, int parentfd)
{
	struct conn	*conns;
	struct pollfd	*pfd;
	int		*pidx;
	int		 nconn = 0, maxconn = 4096, i, n, np, fd;
	unsigned char	*rb;
	unsigned char	 ub[65536];
	struct sockaddr_in from;
	socklen_t	 flen;
	ssize_t		 r;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	conns = calloc((size_t)maxconn, sizeof(*conns));
	pfd = calloc((size_t)maxconn + 3, sizeof(*pfd));
	pidx = calloc((size_t)maxconn + 3, sizeof(*pidx));
	rb = malloc(IOSIZE * 2);
	if (conns == NULL || pfd == NULL || pidx == NULL || rb == NULL)
		_exit(1);
	memset(srcbuf, 'x', sizeof(srcbuf));
	set_nonblock(lfd);
	set_nonblock(ufd);
	for (;;) {
		np = 0;
		pfd[np].fd = parentfd;
		pfd[np++].events = POLLIN;
		pfd[np].fd = lfd;
		pfd[np++].events = nconn < maxconn ? POLLIN : 0;
		pfd[np].fd = ufd;
		pfd[np++].events = POLLIN;
		for (i = 0; i < nconn; i++) {
			struct conn *c = &conns[i];
			short	 ev = POLLIN;

			if (c->mode == 'E' && c->len > 0)
				ev = POLLOUT;
			else if (c->mode == 'D' ||
			    (c->mode == 'd' && c->hdrlen == 8 && c->left > 0))
				ev = POLLIN | POLLOUT;
			pfd[np].fd = c->fd;
			pfd[np].events = ev;
			pidx[np++] = i;
		}
		n = poll(pfd, (nfds_t)np, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (pfd[0].revents)
			_exit(0);	/* the parent is gone */
		if (pfd[2].revents & POLLIN) {
			int	 k;

			for (k = 0; k < 256; k++) {
				flen = sizeof(from);
				r = recvfrom(ufd, ub, sizeof(ub), 0,
				    (struct sockaddr *)&from, &flen);
				if (r < 0)
					break;
				(void)sendto(ufd, ub, (size_t)r, 0,
				    (struct sockaddr *)&from, flen);
			}
		}
		for (i = 3; i < np; i++) {
			struct conn *c = &conns[pidx[i]];
			short	 re = pfd[i].revents;

			if (re == 0 || c->fd < 0)
				continue;
			if ((re & POLLOUT) && c->mode == 'E') {
				if (echo_flush(c) == -1) {
					conn_close(c);
					continue;
				}
			} else if (re & POLLOUT) {
				if (source_run(c) == -1) {
					conn_close(c);
					continue;
				}
			}
			if (re & (POLLIN | POLLHUP | POLLERR)) {
				if (c->mode == 'D' || (c->mode == 'd' &&
				    c->hdrlen == 8)) {
					/* a source: input means EOF or junk */
					r = read(c->fd, rb, IOSIZE);
					if (r == 0 || (r < 0 && errno != EAGAIN
					    && errno != EINTR)) {
						conn_close(c);
						continue;
					}
				} else if (conn_input(c, rb, IOSIZE) == -1) {
					conn_close(c);
					continue;
				}
			}
		}
		if (pfd[1].revents & POLLIN) {
			while (nconn < maxconn &&
			    (fd = accept(lfd, NULL, NULL)) >= 0) {
				set_nonblock(fd);
				set_nodelay(fd);
				memset(&conns[nconn], 0, sizeof(conns[nconn]));
				conns[nconn++].fd = fd;
			}
		}
		/* compact */
		for (i = 0, n = 0; i < nconn; i++)
			if (conns[i].fd >= 0)
				conns[n++] = conns[i];
		nconn = n;
	}
}

static int	 parent_pipe = -1;

static void
target_start(void)
{
	struct sockaddr_in	 a;
	socklen_t		 alen;
	int			 lfd, ufd, one = 1, sz = 4 << 20, p[2];

	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    (ufd = socket(AF_INET, SOCK_DGRAM, 0)) == -1)
		die("socket: %s", strerror(errno));
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(ufd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(ufd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	loopback(&a, 0);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) == -1 ||
	    listen(lfd, 4096) == -1 ||
	    bind(ufd, (struct sockaddr *)&a, sizeof(a)) == -1)
		die("target bind: %s", strerror(errno));
	alen = sizeof(a);
	getsockname(lfd, (struct sockaddr *)&a, &alen);
	target_tcp_port = ntohs(a.sin_port);
	alen = sizeof(a);
	getsockname(ufd, (struct sockaddr *)&a, &alen);
	target_udp_port = ntohs(a.sin_port);
	if (pipe(p) == -1)
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	switch (target_pid = fork()) {
	case -1:
		die("fork: %s", strerror(errno));
		break;
	case 0:
		close(p[1]);
		target_main(lfd, ufd, p[0]);
		_exit(0);
	default:
		close(p[0]);
		close(lfd);
		close(ufd);
		parent_pipe = p[1];
		fcntl(parent_pipe, F_SETFD, FD_CLOEXEC);
	}
}

static void
target_stop(void)
{
	if (target_pid > 0) {
		kill(target_pid, SIGTERM);
		waitpid(target_pid, NULL, 0);
		target_pid = -1;
	}
}

/* ------------------------------------------------------------------ */
/* stream, streams: throughput with one thread per stream.             */

struct stream {
	int			 fd;
	int			 up;
	volatile uint64_t	 bytes;
	char			 pad[64];
};

static volatile int	 streams_stop;

static void *
stream_thread(void *arg)
{
	struct stream	*s = arg;
	unsigned char	*buf;
	ssize_t		 r;

	if ((buf = malloc(IOSIZE)) == NULL)
		return NULL;
	memset(buf, 'y', IOSIZE);
	while (!streams_stop) {
		if (s->up)
			r = write(s->fd, buf, IOSIZE);
		else
			r = read(s->fd, buf, IOSIZE);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		s->bytes += (uint64_t)r;
	}
	free(buf);
	return NULL;
}

/* Run n streams in one direction; print PREFIX_gibps and fairness. */
static int
run_streams(int n, int up, const char *prefix)
{
	struct stream	*s;
	pthread_t	*th;
	uint64_t	*b0, d, total = 0, all = 0, mn = UINT64_MAX, mx = 0;
	double		 t0, t1;
	int		 i, failed = 0;
	unsigned char	 m = up ? 'U' : 'D';

	s = calloc((size_t)n, sizeof(*s));
	th = calloc((size_t)n, sizeof(*th));
	b0 = calloc((size_t)n, sizeof(*b0));
	if (s == NULL || th == NULL || b0 == NULL)
		die("out of memory");
	for (i = 0; i < n; i++) {
		if ((s[i].fd = open_session()) == -1 ||
		    writen(s[i].fd, &m, 1) == -1)
			die("stream %d: cannot open a session", i);
		s[i].up = up;
	}
	streams_stop = 0;
	for (i = 0; i < n; i++)
		if (pthread_create(&th[i], NULL, stream_thread, &s[i]) != 0)
			die("pthread_create");
	sleep_s(warmup);
	t0 = now();
	for (i = 0; i < n; i++)
		b0[i] = s[i].bytes;
	sleep_s(duration);
	t1 = now();
	for (i = 0; i < n; i++) {
		d = s[i].bytes - b0[i];
		total += d;
		if (d < mn)
			mn = d;
		if (d > mx)
			mx = d;
		if (d == 0)
			failed++;
	}
	streams_stop = 1;
	for (i = 0; i < n; i++)
		shutdown(s[i].fd, SHUT_RDWR);
	for (i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		close(s[i].fd);
		all += s[i].bytes;
	}
	printf("%s_gibps=%.4f\n", prefix, (double)total / (t1 - t0) /
	    (1024.0 * 1024 * 1024));
	/* every byte of the run, warm-up included: for CPU per GiB */
	printf("%s_total_bytes=%llu\n", prefix, (unsigned long long)all);
	if (n > 1) {
		printf("%s_fair=%.3f\n", prefix, mx ? (double)mn / mx : 0.0);
		printf("%s_min_mib=%.1f\n%s_max_mib=%.1f\n", prefix,
		    mn / 1048576.0, prefix, mx / 1048576.0);
		printf("%s_stalled=%d\n", prefix, failed);
	}
	fflush(stdout);
	free(s);
	free(th);
	free(b0);
	return 0;
}

/* ------------------------------------------------------------------ */
/* bulk: a fixed transfer, for the CPU-per-GiB row.                    */

static int
run_bulk(uint64_t bytes)
{
	unsigned char	 h[9], *buf, ack;
	uint64_t	 left;
	double		 t0, tu, td;
	ssize_t		 r;
	size_t		 n;
	int		 fd, i;

	if ((buf = malloc(IOSIZE)) == NULL)
		die("out of memory");
	memset(buf, 'z', IOSIZE);

	/* up */
	if ((fd = open_session()) == -1)
		die("bulk: cannot open a session");
	h[0] = 'u';
	for (i = 0; i < 8; i++)
		h[1 + i] = (unsigned char)(bytes >> (56 - 8 * i));
	t0 = now();
	if (writen(fd, h, 9) == -1)
		die("bulk: write");
	for (left = bytes; left > 0; left -= (uint64_t)r) {
		n = left < IOSIZE ? (size_t)left : IOSIZE;
		r = write(fd, buf, n);
		if (r < 0 && errno == EINTR) {
			r = 0;
			continue;
		}
		if (r <= 0)
			die("bulk: write: %s", strerror(errno));
	}
	if (readn(fd, &ack, 1) == -1 || ack != 'A')
		die("bulk: no ack from the target");
	tu = now() - t0;
	close(fd);

	/* down */
	if ((fd = open_session()) == -1)
		die("bulk: cannot open a session");
	h[0] = 'd';
	t0 = now();
	if (writen(fd, h, 9) == -1)
		die("bulk: write");
	for (left = bytes; left > 0; left -= (uint64_t)r) {
		n = left < IOSIZE ? (size_t)left : IOSIZE;
		r = read(fd, buf, n);
		if (r < 0 && errno == EINTR) {
			r = 0;
			continue;
		}
		if (r <= 0)
			die("bulk: read: %s", r == 0 ? "EOF" :
			    strerror(errno));
	}
	td = now() - t0;
	close(fd);
	free(buf);
	printf("bulk_bytes=%llu\nbulk_up_secs=%.3f\nbulk_down_secs=%.3f\n",
	    (unsigned long long)bytes * 2, tu, td);
	return 0;
}

/* ------------------------------------------------------------------ */
/* sessions: greeting + CONNECT + 1-byte echo + close.                 */

struct sess_worker {
	pthread_t		 th;
	volatile uint64_t	 ok;
	volatile uint64_t	 err;
	int			 lasterr;
	char			 pad[64];
};

static volatile int	 sess_stop;

/*
 * The target closes first, and the client closes when that EOF reaches
 * it: TIME_WAIT then stays on the listening sides. Were the client to
 * close first, the proxy would close its outgoing connection first and
 * pile up TIME_WAIT on its ephemeral ports; a proxy that bind()s its
 * outgoing sockets (Dante) cannot reuse those and runs out of ports.
 */
static int
one_session(void)
{
	unsigned char	 b = 'e';
	int		 fd, e;

	if ((fd = open_session()) == -1)
		return -1;
	set_timeout(fd, 10);
	if (writen(fd, &b, 1) == -1 || readn(fd, &b, 1) == -1 || b != 'e' ||
	    read(fd, &b, 1) != 0) {
		e = errno ? errno : EPROTO;
		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

static void *
sess_thread(void *arg)
{
	struct sess_worker	*w = arg;

	while (!sess_stop) {
		if (one_session() == 0)
			w->ok++;
		else {
			w->lasterr = errno;
			w->err++;
			sleep_s(0.001);
		}
	}
	return NULL;
}

static void
run_sessions(int conc, const char *key)
{
	struct sess_worker	*w;
	uint64_t		 ok0 = 0, ok1 = 0, e0 = 0, e1 = 0;
	double			 t0, t1;
	int			 i, lasterr = 0;

	if ((w = calloc((size_t)conc, sizeof(*w))) == NULL)
		die("out of memory");
	sess_stop = 0;
	for (i = 0; i < conc; i++)
		if (pthread_create(&w[i].th, NULL, sess_thread, &w[i]) != 0)
			die("pthread_create");
	sleep_s(warmup);
	t0 = now();
	for (i = 0; i < conc; i++) {
		ok0 += w[i].ok;
		e0 += w[i].err;
	}
	sleep_s(duration);
	t1 = now();
	for (i = 0; i < conc; i++) {
		ok1 += w[i].ok;
		e1 += w[i].err;
	}
	sess_stop = 1;
	for (i = 0; i < conc; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].lasterr)
			lasterr = w[i].lasterr;
	}
	printf("%s_per_s=%.1f\n%s_errors=%llu\n", key,
	    (double)(ok1 - ok0) / (t1 - t0), key,
	    (unsigned long long)(e1 - e0));
	if (e1 - e0 > 0)
		printf("%s_last_error=%s\n", key, strerror(lasterr));
	fflush(stdout);
	free(w);
}

/* ------------------------------------------------------------------ */
/* rtt: 64-byte round trips through one established session.          */

static void
run_rtt(void)
{
	unsigned char	 b[64];
	double		*lat, t, tend, sum = 0;
	int		 fd, i, n = 0, max = 2000000, warm = 2000;

	if ((lat = malloc(sizeof(*lat) * (size_t)max)) == NULL)
		die("out of memory");
	if ((fd = open_session()) == -1)
		die("rtt: cannot open a session");
	b[0] = 'E';
	if (writen(fd, b, 1) == -1 || readn(fd, b, 1) == -1)
		die("rtt: no echo");
	memset(b, 'r', sizeof(b));
	for (i = 0; i < warm; i++)
		if (writen(fd, b, 64) == -1 || readn(fd, b, 64) == -1)
			die("rtt: echo failed");
	tend = now() + duration;
	while (n < max) {
		t = now();
		if (t >= tend)
			break;
		if (writen(fd, b, 64) == -1 || readn(fd, b, 64) == -1)
			die("rtt: echo failed");
		lat[n] = (now() - t) * 1e6;
		sum += lat[n++];
	}
	close(fd);
	if (n == 0)
		die("rtt: no samples");
	qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
	printf("rtt_samples=%d\nrtt_p50_us=%.2f\nrtt_p99_us=%.2f\n"
	    "rtt_mean_us=%.2f\n", n, lat[n / 2], lat[(size_t)(n * 0.99)],
	    sum / n);
	free(lat);
}

/* ------------------------------------------------------------------ */
/* udp: UDP ASSOCIATE, 512-byte datagrams echoed, a window in flight.  */

static void
run_udp(void)
{
	struct sockaddr_in	 me, relay, from;
	socklen_t		 alen;
	unsigned char		 pkt[10 + UDP_PAYLOAD], in[2048];
	uint64_t		 seq = 0, sent = 0, recvd = 0, r0 = 0, bad = 0;
	uint64_t		 stalls = 0;
	int			 ufd, cfd = -1, hlen, sz = 4 << 20, k;
	double			 t0 = 0, tend, tstart;
	struct pollfd		 p;
	ssize_t			 r;

	if ((ufd = socket(AF_INET, SOCK_DGRAM, 0)) == -1)
		die("socket: %s", strerror(errno));
	setsockopt(ufd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(ufd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	loopback(&me, 0);
	if (bind(ufd, (struct sockaddr *)&me, sizeof(me)) == -1)
		die("bind: %s", strerror(errno));
	alen = sizeof(me);
	getsockname(ufd, (struct sockaddr *)&me, &alen);

	if (proxy_port) {
		struct sockaddr_in a;

		if ((cfd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
			die("socket: %s", strerror(errno));
		loopback(&a, (uint16_t)proxy_port);
		set_timeout(cfd, 10);
		if (connect(cfd, (struct sockaddr *)&a, sizeof(a)) == -1 ||
		    socks_greet(cfd) == -1 ||
		    socks_request(cfd, 3, ntohs(me.sin_port), &relay) == -1)
			die("udp: UDP ASSOCIATE failed");
		if (relay.sin_addr.s_addr == htonl(INADDR_ANY))
			relay.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		hlen = 10;
		pkt[0] = 0;
		pkt[1] = 0;
		pkt[2] = 0;
		pkt[3] = 1;
		pkt[4] = 127;
		pkt[5] = 0;
		pkt[6] = 0;
		pkt[7] = 1;
		pkt[8] = (unsigned char)(target_udp_port >> 8);
		pkt[9] = (unsigned char)target_udp_port;
		printf("udp_relay=%s:%d\n", inet_ntoa(relay.sin_addr),
		    ntohs(relay.sin_port));
	} else {
		loopback(&relay, target_udp_port);
		hlen = 0;
	}
	memset(pkt + hlen, 'p', UDP_PAYLOAD);
	set_nonblock(ufd);

#define SEND_ONE() do {							\
		memcpy(pkt + hlen, &seq, sizeof(seq));			\
		seq++;							\
		if (sendto(ufd, pkt, (size_t)hlen + UDP_PAYLOAD, 0,	\
		    (struct sockaddr *)&relay, sizeof(relay)) > 0)	\
			sent++;						\
	} while (0)

	tstart = now();
	tend = tstart + warmup + duration;
	for (k = 0; k < window; k++)
		SEND_ONE();
	p.fd = ufd;
	p.events = POLLIN;
	for (;;) {
		double	 t = now();

		if (t0 == 0 && t >= tstart + warmup) {
			t0 = t;
			r0 = recvd;
		}
		if (t >= tend)
			break;
		k = poll(&p, 1, 100);
		if (k == 0) {
			/* the window is lost: start a new one */
			stalls++;
			for (k = 0; k < window; k++)
				SEND_ONE();
			continue;
		}
		for (;;) {
			alen = sizeof(from);
			r = recvfrom(ufd, in, sizeof(in), 0,
			    (struct sockaddr *)&from, &alen);
			if (r <= 0)
				break;
			if (r != hlen + UDP_PAYLOAD) {
				bad++;
				continue;
			}
			recvd++;
			SEND_ONE();
		}
	}
	{
		double	 t1 = now(), tdrain = t1 + 0.2;
		uint64_t r1 = recvd;

		while (now() < tdrain) {
			if (poll(&p, 1, 20) > 0)
				while ((r = recvfrom(ufd, in, sizeof(in), 0,
				    NULL, NULL)) > 0)
					if (r == hlen + UDP_PAYLOAD)
						recvd++;
		}
		printf("udp_dgram_per_s=%.1f\nudp_sent=%llu\nudp_recv=%llu\n"
		    "udp_lost=%llu\nudp_loss_pct=%.3f\nudp_stalls=%llu\n"
		    "udp_bad=%llu\n",
		    (double)(r1 - r0) / (t1 - t0), (unsigned long long)sent,
		    (unsigned long long)recvd,
		    (unsigned long long)(sent - recvd),
		    sent ? 100.0 * (double)(sent - recvd) / (double)sent : 0,
		    (unsigned long long)stalls, (unsigned long long)bad);
	}
	close(ufd);
	if (cfd != -1)
		close(cfd);
}

/* ------------------------------------------------------------------ */
/* hold: N idle established sessions.                                  */

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void
run_hold(int n)
{
	int		*fds, i, failed = 0;
	unsigned char	 b;
	char		 line[256];
	double		 tend;
	struct pollfd	 p;

	if ((fds = calloc((size_t)n, sizeof(*fds))) == NULL)
		die("out of memory");
	for (i = 0; i < n && !stop_flag; i++) {
		b = 'E';
		if ((fds[i] = open_session()) == -1 ||
		    writen(fds[i], &b, 1) == -1 || readn(fds[i], &b, 1) == -1) {
			if (fds[i] != -1)
				close(fds[i]);
			fds[i] = -1;
			failed++;
		}
	}
	printf("held=%d\nhold_failed=%d\n", n - failed, failed);
	fflush(stdout);
	/* wait: a signal, stdin EOF, or the time limit (-t) */
	tend = now() + duration;
	p.fd = 0;
	p.events = POLLIN;
	while (!stop_flag && now() < tend) {
		int	 k = poll(&p, 1, 200);

		if (k > 0) {
			ssize_t r = read(0, line, sizeof(line));

			if (r <= 0)
				break;
		}
	}
	for (i = 0; i < n; i++)
		if (fds[i] != -1)
			close(fds[i]);
	free(fds);
}

/* ------------------------------------------------------------------ */
/* probe, freeport.                                                    */

static int
run_probe(void)
{
	struct sockaddr_in	 a;
	double			 tend = now() + duration;
	int			 fd;

	while (now() < tend) {
		if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
			die("socket: %s", strerror(errno));
		loopback(&a, (uint16_t)proxy_port);
		set_timeout(fd, 2);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		    socks_greet(fd) == 0) {
			close(fd);
			printf("probe=ok\n");
			return 0;
		}
		close(fd);
		sleep_s(0.05);
	}
	printf("probe=fail\n");
	return 1;
}

static int
run_freeport(void)
{
	struct sockaddr_in	 a;
	socklen_t		 alen = sizeof(a);
	int			 fd;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		die("socket: %s", strerror(errno));
	loopback(&a, 0);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) == -1)
		die("bind: %s", strerror(errno));
	printf("%d\n", ntohs(a.sin_port));
	close(fd);
	return 0;
}

/* ------------------------------------------------------------------ */

static void
usage(void)
{
	fputs("usage: loadgen [-q] [-x proxyport] [-t secs] [-w warmup] "
	    "[-c conc] [-W window]\n"
	    "               stream | streams N | sessions | rtt | udp |\n"
	    "               bulk BYTES | hold N | probe | freeport\n",
	    stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	struct sigaction	 sa;
	const char		*cmd;
	int			 ch, rc = 0, safety;

	while ((ch = getopt(argc, argv, "c:qt:w:W:x:")) != -1) {
		switch (ch) {
		case 'c':
			concurrency = atoi(optarg);
			break;
		case 'q':
			quiet = 1;
			break;
		case 't':
			duration = atof(optarg);
			break;
		case 'w':
			warmup = atof(optarg);
			break;
		case 'W':
			window = atoi(optarg);
			break;
		case 'x':
			proxy_port = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1 || concurrency < 1 || concurrency > MAXTHREADS ||
	    window < 1 || duration <= 0 || warmup < 0)
		usage();
	cmd = argv[0];

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	raise_fd_limit();

	if (strcmp(cmd, "freeport") == 0)
		return run_freeport();
	if (strcmp(cmd, "probe") == 0) {
		if (!proxy_port)
			usage();
		return run_probe();
	}

	/* a hard bound on the run time, whatever happens */
	safety = (int)(2 * (duration + warmup)) + 120;
	if (strcmp(cmd, "hold") == 0)
		safety = (int)duration + 300;
	target_start();
	alarm((unsigned)safety);
	printf("mode=%s\n", proxy_port ? "proxy" : "direct");
	if (strcmp(cmd, "stream") == 0) {
		run_streams(1, 1, "up");
		run_streams(1, 0, "down");
	} else if (strcmp(cmd, "streams") == 0 && argc == 2) {
		int	 n = atoi(argv[1]);

		if (n < 1 || n > MAXTHREADS)
			usage();
		run_streams(n, 1, "up");
		run_streams(n, 0, "down");
	} else if (strcmp(cmd, "sessions") == 0) {
		run_sessions(1, "seq");
		run_sessions(concurrency, "conc");
	} else if (strcmp(cmd, "rtt") == 0) {
		run_rtt();
	} else if (strcmp(cmd, "udp") == 0) {
		run_udp();
	} else if (strcmp(cmd, "bulk") == 0 && argc == 2) {
		unsigned long long b = strtoull(argv[1], NULL, 10);

		if (b == 0)
			usage();
		rc = run_bulk(b);
	} else if (strcmp(cmd, "hold") == 0 && argc == 2) {
		int	 n = atoi(argv[1]);

		if (n < 1)
			usage();
		run_hold(n);
	} else {
		target_stop();
		usage();
	}
	fflush(stdout);
	target_stop();
	(void)quiet;
	return rc;
}
