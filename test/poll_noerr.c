/*
 * poll_noerr.c - for waitreset.test: linked with -Wl,--wrap=poll, it
 * gives socks5 the poll() of macOS and FreeBSD, which register nothing
 * for a descriptor polled for no events: such an entry never reports
 * POLLERR or POLLHUP (Linux reports them anyway).
 */
#include <poll.h>

int	__real_poll(struct pollfd *, nfds_t, int);
int	__wrap_poll(struct pollfd *, nfds_t, int);

int
__wrap_poll(struct pollfd *fds, nfds_t n, int timeout)
{
	nfds_t	 i;
	int	 r, ready = 0;

	if ((r = __real_poll(fds, n, timeout)) <= 0)
		return r;
	for (i = 0; i < n; i++) {
		if (!(fds[i].events & (POLLIN | POLLOUT)) &&
		    !(fds[i].revents & POLLNVAL))
			fds[i].revents = 0;
		if (fds[i].revents != 0)
			ready++;
	}
	return ready;
}
