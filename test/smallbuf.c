/*
 * smallbuf.c -- LD_PRELOAD shim for test/slowreader.test: gives every TCP
 * socket the process makes or accepts a small, fixed send buffer, as on a
 * small router, so that a slow peer makes the server write what it spilled
 * in many partial writes (on Linux loopback the autotuned buffers are so
 * large that a 64 KiB spill always leaves in one write).
 *
 *   cc -shared -fPIC -o smallbuf.so smallbuf.c -ldl
 *   env LD_PRELOAD=./smallbuf.so SMALLBUF_BYTES=8192 prog ...
 *
 * socket() (SOCK_STREAM), accept() and accept4() are wrapped; the new
 * descriptor gets setsockopt(SO_SNDBUF, SMALLBUF_BYTES, default 8192),
 * which also turns the kernel's autotuning off for it.  The real functions
 * are found with dlsym(RTLD_NEXT).
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>

static void
shrink(int fd)
{
	const char	*e = getenv("SMALLBUF_BYTES");
	int		 n = e != NULL ? atoi(e) : 8192;

	if (fd >= 0 && n > 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n));
}

int
socket(int domain, int type, int protocol)
{
	static int	(*real)(int, int, int);
	int		 fd;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "socket");
	fd = real(domain, type, protocol);
	if ((type & 0xf) == SOCK_STREAM)
		shrink(fd);
	return fd;
}

int
accept(int s, struct sockaddr *a, socklen_t *alen)
{
	static int	(*real)(int, struct sockaddr *, socklen_t *);
	int		 fd;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "accept");
	fd = real(s, a, alen);
	shrink(fd);
	return fd;
}

int
accept4(int s, struct sockaddr *a, socklen_t *alen, int flags)
{
	static int	(*real)(int, struct sockaddr *, socklen_t *, int);
	int		 fd;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "accept4");
	fd = real(s, a, alen, flags);
	shrink(fd);
	return fd;
}
