/*
 * rlimit_cap.c - for rlimit.test: linked with -Wl,--wrap=setrlimit, it
 * makes setrlimit(RLIMIT_NOFILE) refuse a soft limit above 3000, as
 * macOS refuses one above OPEN_MAX under an infinite hard limit.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <errno.h>

int	__real_setrlimit(int, const struct rlimit *);
int	__wrap_setrlimit(int, const struct rlimit *);

int
__wrap_setrlimit(int resource, const struct rlimit *rl)
{
	if (resource == RLIMIT_NOFILE && rl->rlim_cur > 3000) {
		errno = EINVAL;
		return -1;
	}
	return __real_setrlimit(resource, rl);
}
