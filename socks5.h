/*
 * socks5.h - embedding interface of the socks5 server (RFC 1928, RFC 1929)
 *
 * Copy socks5.c and socks5.h into your tree, compile socks5.c with
 * -DSOCKS5_NO_MAIN, and run a server from your own program:
 *
 *	struct socks5_config cf;
 *	socks5_config_init(&cf);
 *	cf.port = 1080;
 *	return socks5_serve(&cf);
 *
 * socks5_serve() runs the poll loop until SIGTERM or SIGINT (or until
 * socks5_stop() is called from a signal handler); it installs handlers
 * for SIGTERM, SIGINT, SIGHUP (re-read the user file) and SIGCHLD, and
 * ignores SIGPIPE. socks5_serve_fd() serves one connection that is
 * already accepted, as inetd does, and returns when that session ends.
 * A program with a poll() loop of its own uses socks5_open(),
 * socks5_pollfds(), socks5_dispatch() and socks5_close() instead.
 *
 * Everything here is prefixed socks5_ or SOCKS5_; socks5.c exports nothing
 * else.
 *
 * What a host program must know:
 *  - One server per process. While one is open (socks5_open() until
 *    socks5_close(), or inside socks5_serve() or socks5_serve_fd()), a
 *    second socks5_open(), socks5_serve() or socks5_serve_fd() in the
 *    same process fails with -1 and a log line. In a child forked from a
 *    process with a server open, the child may call socks5_serve_fd():
 *    it first closes every descriptor of the parent's server (listener,
 *    sessions, helper sockets) without disturbing the parent, whose
 *    resolver helpers it leaves alone. After socks5_close() a new server
 *    may be opened.
 *  - Logging: with SOCKS5_LOG_SYSLOG the server calls openlog("socks5",
 *    LOG_PID | LOG_NDELAY, LOG_DAEMON), which is process-wide and
 *    replaces the host's own openlog() settings; with SOCKS5_LOG_STDERR
 *    it writes whole lines to descriptor 2.
 *  - Processes: socks5_open() and socks5_serve() fork up to
 *    SOCKS5_RESOLVERS (4) resolver helpers while the server runs, when
 *    lookups wait and no helper is idle; each closes every descriptor
 *    but its socket and then only calls getaddrinfo(), and exits after a
 *    minute without work. One that dies, or holds a lookup nobody wants
 *    for a second while others wait, is replaced by a new fork. In a threaded host, fork() copies only
 *    the calling thread: drive the server from one thread, and make sure
 *    no other thread holds a lock (malloc's, the resolver library's)
 *    when it forks, or run it in a process of its own. The helpers are
 *    reaped by pid (waitpid on SIGCHLD, and once a second in
 *    socks5_dispatch()); other children are the host's.
 *  - Signals: every entry point sets SIGPIPE to ignored, process-wide.
 *    socks5_serve() also installs handlers for SIGTERM, SIGINT, SIGHUP,
 *    SIGCHLD and SIGUSR1 (SIGINFO where it exists); socks5_serve_fd()
 *    sets SIGHUP to ignored; socks5_open() installs no handler.
 *  - Memory: the tables and buffers are allocated when the server opens
 *    and freed by socks5_close(); nothing is allocated while it runs.
 */
#ifndef SOCKS5_H
#define SOCKS5_H

#include <poll.h>	/* struct pollfd, for the event loop interface */

#ifdef __cplusplus
extern "C" {
#endif

/*
 * This release of socks5 (socks5 -V prints it), and the same as a number
 * to compare in #if: 0xMMmmpp for release MM.mm.pp.
 */
#define SOCKS5_RELEASE		"1.1.0"
#define SOCKS5_RELEASE_NUM	0x010100L

/* Protocol versions (RFC 1928 section 3, RFC 1929 section 2). */
#define SOCKS5_VERSION		0x05
#define SOCKS5_AUTH_VERSION	0x01

/* Authentication methods. */
#define SOCKS5_METHOD_NONE	0x00
#define SOCKS5_METHOD_GSSAPI	0x01
#define SOCKS5_METHOD_USERPASS	0x02
#define SOCKS5_METHOD_REJECT	0xff

/* Commands. */
#define SOCKS5_CMD_CONNECT	0x01
#define SOCKS5_CMD_BIND		0x02
#define SOCKS5_CMD_UDP		0x03

/* Address types. */
#define SOCKS5_ATYP_IPV4	0x01
#define SOCKS5_ATYP_DOMAIN	0x03
#define SOCKS5_ATYP_IPV6	0x04

/* Reply codes (RFC 1928 section 6). */
#define SOCKS5_REP_SUCCEEDED		0x00
#define SOCKS5_REP_FAILURE		0x01
#define SOCKS5_REP_NOT_ALLOWED		0x02
#define SOCKS5_REP_NET_UNREACHABLE	0x03
#define SOCKS5_REP_HOST_UNREACHABLE	0x04
#define SOCKS5_REP_REFUSED		0x05
#define SOCKS5_REP_TTL_EXPIRED		0x06
#define SOCKS5_REP_CMD_UNSUPPORTED	0x07
#define SOCKS5_REP_ATYP_UNSUPPORTED	0x08

/* Log destinations for socks5_config.log. */
#define SOCKS5_LOG_STDERR	0
#define SOCKS5_LOG_SYSLOG	1

/*
 * Server configuration. Fill it with socks5_config_init(), then change
 * what you need. Strings are borrowed, not copied: keep them alive while
 * the server runs.
 */
struct socks5_config {
	const char	*listen_addr;	/* IPv4/IPv6 literal, default 127.0.0.1 */
	int		 port;		/* listening port, default 1080, 0 = any */
	const char *const *listen;	/* several listeners instead of
					   listen_addr: each "ADDR",
					   "ADDR:PORT" or "[ADDR]:PORT" (no
					   port: port); or NULL */
	int		 nlisten;	/* how many, at most 8 */
	const int	*listen_fds;	/* sockets already listening (socket
					   activation): used instead of
					   opening any, closed by
					   socks5_close(); or NULL */
	int		 nlisten_fds;	/* how many, at most 8 */
	const char	*bind_addr;	/* local address for outgoing, or NULL */
	const char	*external_addr;	/* address announced in BIND and UDP
					   replies instead of our own, or NULL;
					   both IPv4 or IPv6 literals: another
					   string fails the open (logged) */
	const char	*user_file;	/* user:password file, or NULL: no auth
					   (a build with SOCKS5_NO_AUTH fails
					   the open on one; likewise rules
					   with SOCKS5_NO_RULES, and
					   external_addr without both BIND
					   and UDP) */
	int		 max_sessions;	/* session table size, default 1024 */
	int		 spill_buffers;	/* 64 KiB spill buffers; 0: sessions/16,
					   at least 8 */
	int		 idle_timeout;	/* seconds, default 3600 */
	int		 frag_timeout;	/* UDP reassembly timer, seconds, >= 5 */
	const char *const *rules;	/* access rules, as for -a, or NULL */
	int		 nrules;	/* how many */
	int		 family;	/* outgoing family: 0 any, 4 or 6 */
	int		 verbose;	/* 0 quiet, 1 a line per session, 2 more */
	int		 log;		/* SOCKS5_LOG_STDERR or SOCKS5_LOG_SYSLOG */
};

/* Set every field of cf to its default. */
void	socks5_config_init(struct socks5_config *cf);

/*
 * Open the listener and serve clients until stopped. Returns 0 after
 * SIGTERM, SIGINT or socks5_stop(), -1 on a startup error (logged).
 */
int	socks5_serve(const struct socks5_config *cf);

/*
 * Serve the one client connection already open on fd (read and write).
 * Name lookups block. Returns 0 when the session ends, -1 on a startup
 * error. The descriptor is closed on return.
 */
int	socks5_serve_fd(const struct socks5_config *cf, int fd);

/* Ask a running socks5_serve() to return; safe in a signal handler. */
void	socks5_stop(void);

/*
 * Driving the server from your own poll() loop, with no second thread:
 *
 *	struct pollfd *fds = malloc(sizeof(*fds) * socks5_pollfds_max());
 *	socks5_open(&cf);
 *	for (;;) {
 *		n = socks5_pollfds(fds, max, &timeout);
 *		... add your own descriptors after fds[n-1], poll them all ...
 *		socks5_dispatch(fds, n);
 *	}
 *	socks5_close();
 *
 * socks5_open() opens the listeners (helpers are forked later, when
 * names are looked up); it sets SIGPIPE to ignored and installs no other signal handler. Returns
 * 0, or -1 on an error (logged).
 */
int	socks5_open(const struct socks5_config *cf);

/* The port socks5_open() listens on (useful with port 0), or -1. */
int	socks5_port(void);

/* How many pollfd entries socks5_pollfds() may need (after open). */
int	socks5_pollfds_max(void);

/*
 * Copy the server's descriptors and events into fds (room for max) and
 * set *timeout to the poll timeout in ms (-1: none). Returns how many
 * entries it wrote, or -1 if max is too small.
 */
int	socks5_pollfds(struct pollfd *fds, int max, int *timeout);

/* After poll(): hand back the first n entries with revents filled. */
void	socks5_dispatch(const struct pollfd *fds, int n);

/* Close the listener, every session and the resolver helpers. */
void	socks5_close(void);

#ifdef __cplusplus
}
#endif

#endif /* SOCKS5_H */
