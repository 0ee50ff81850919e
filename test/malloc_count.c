/*
 * malloc_count.c -- LD_PRELOAD shim for test/noalloc.test: counts the heap
 * allocations made by one process.
 *
 *   cc -shared -fPIC -o malloc_count.so malloc_count.c -ldl
 *   env LD_PRELOAD=./malloc_count.so MALLOC_COUNT_FILE=/tmp/count prog ...
 *
 * Every call of malloc, calloc, realloc, reallocarray, posix_memalign,
 * aligned_alloc, memalign, valloc and pvalloc made by the process that
 * loaded the library (getpid() equal to the pid recorded at load time) adds
 * one to the allocation count; free adds one to the free count.  Forked
 * children (such as the server's resolver helpers) have another pid and are
 * not counted.  After every counted call the line
 *
 *     "ALLOCS FREES\n"          (two 20-digit, zero-padded decimals)
 *
 * is written with pwrite at offset 0 of MALLOC_COUNT_FILE (opened once at
 * load time), so the file always holds the current counts and the shim never
 * allocates itself.  The real functions are found with dlsym(RTLD_NEXT);
 * allocations made while dlsym runs (it may call calloc) come from a small
 * static arena and are never freed.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void	*(*malloc_fn)(size_t);
typedef void	*(*calloc_fn)(size_t, size_t);
typedef void	*(*realloc_fn)(void *, size_t);
typedef void	*(*reallocarray_fn)(void *, size_t, size_t);
typedef void	 (*free_fn)(void *);
typedef int	 (*posix_memalign_fn)(void **, size_t, size_t);
typedef void	*(*aligned_alloc_fn)(size_t, size_t);
typedef void	*(*valloc_fn)(size_t);

static malloc_fn		real_malloc;
static calloc_fn		real_calloc;
static realloc_fn		real_realloc;
static reallocarray_fn		real_reallocarray;
static free_fn			real_free;
static posix_memalign_fn	real_posix_memalign;
static aligned_alloc_fn		real_aligned_alloc;
static aligned_alloc_fn		real_memalign;
static valloc_fn		real_valloc;
static valloc_fn		real_pvalloc;

static volatile int		resolving;	/* inside dlsym */
static int			resolved;
static pid_t			owner;		/* pid at load time */
static int			count_fd = -1;
static unsigned long		nallocs, nfrees;

/* Bootstrap arena: each block is preceded by its size (16-byte header). */
static union {
	char		bytes[65536];
	long double	align;
} arena;
static size_t			arena_used;

static int
in_arena(const void *p)
{
	return (const char *)p >= arena.bytes &&
	    (const char *)p < arena.bytes + sizeof(arena.bytes);
}

static void *
arena_alloc(size_t n)
{
	char	*p;

	n = (n + 15) & ~(size_t)15;
	if (n > sizeof(arena.bytes) - 16 - arena_used)
		return NULL;
	p = arena.bytes + arena_used;
	memcpy(p, &n, sizeof(n));
	arena_used += n + 16;
	return p + 16;
}

static size_t
arena_size(const void *p)
{
	size_t	 n;

	memcpy(&n, (const char *)p - 16, sizeof(n));
	return n;
}

static void
resolve(void)
{
	if (resolved || resolving)
		return;
	resolving = 1;
	real_malloc = (malloc_fn)dlsym(RTLD_NEXT, "malloc");
	real_calloc = (calloc_fn)dlsym(RTLD_NEXT, "calloc");
	real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
	real_reallocarray = (reallocarray_fn)dlsym(RTLD_NEXT, "reallocarray");
	real_free = (free_fn)dlsym(RTLD_NEXT, "free");
	real_posix_memalign =
	    (posix_memalign_fn)dlsym(RTLD_NEXT, "posix_memalign");
	real_aligned_alloc = (aligned_alloc_fn)dlsym(RTLD_NEXT, "aligned_alloc");
	real_memalign = (aligned_alloc_fn)dlsym(RTLD_NEXT, "memalign");
	real_valloc = (valloc_fn)dlsym(RTLD_NEXT, "valloc");
	real_pvalloc = (valloc_fn)dlsym(RTLD_NEXT, "pvalloc");
	resolving = 0;
	resolved = 1;
}

/* Decimal, zero-padded to 20 digits, into p. */
static void
put_num(char *p, unsigned long v)
{
	int	 i;

	for (i = 19; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

static void
publish(void)
{
	char	 line[42];
	int	 saved = errno;

	if (count_fd < 0)
		return;
	put_num(line, nallocs);
	line[20] = ' ';
	put_num(line + 21, nfrees);
	line[41] = '\n';
	(void)pwrite(count_fd, line, sizeof(line), 0);
	errno = saved;
}

static int
counted(void)
{
	return owner != 0 && getpid() == owner;
}

static void
count_alloc(void)
{
	if (counted()) {
		__sync_fetch_and_add(&nallocs, 1UL);
		publish();
	}
}

static void
count_free(void)
{
	if (counted()) {
		__sync_fetch_and_add(&nfrees, 1UL);
		publish();
	}
}

__attribute__((constructor)) static void
malloc_count_init(void)
{
	const char	*path;
	int		 saved = errno;

	resolve();
	owner = getpid();
	nallocs = nfrees = 0;
	path = getenv("MALLOC_COUNT_FILE");
	if (path != NULL && *path != '\0') {
		count_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0644);
		publish();
	}
	errno = saved;
}

void *
malloc(size_t n)
{
	if (!resolved) {
		if (resolving)
			return arena_alloc(n);
		resolve();
	}
	count_alloc();
	return real_malloc(n);
}

void *
calloc(size_t n, size_t size)
{
	void	*p;

	if (!resolved) {
		if (resolving) {
			if (size != 0 && n > (size_t)-1 / size)
				return NULL;
			p = arena_alloc(n * size);
			if (p != NULL)
				memset(p, 0, n * size);
			return p;
		}
		resolve();
	}
	count_alloc();
	return real_calloc(n, size);
}

void *
realloc(void *old, size_t n)
{
	void	*p;
	size_t	 on;

	if (!resolved) {
		if (resolving) {
			p = arena_alloc(n);
			if (p != NULL && old != NULL) {
				on = in_arena(old) ? arena_size(old) : 0;
				memcpy(p, old, on < n ? on : n);
			}
			return p;
		}
		resolve();
	}
	count_alloc();
	if (old != NULL && in_arena(old)) {
		p = real_malloc(n);
		if (p != NULL) {
			on = arena_size(old);
			memcpy(p, old, on < n ? on : n);
		}
		return p;
	}
	return real_realloc(old, n);
}

void *
reallocarray(void *old, size_t n, size_t size)
{
	if (size != 0 && n > (size_t)-1 / size) {
		errno = ENOMEM;
		return NULL;
	}
	if (!resolved || (old != NULL && in_arena(old)) ||
	    real_reallocarray == NULL)
		return realloc(old, n * size);
	count_alloc();
	return real_reallocarray(old, n, size);
}

void
free(void *p)
{
	if (p == NULL || in_arena(p))
		return;
	if (!resolved)
		resolve();
	count_free();
	real_free(p);
}

int
posix_memalign(void **out, size_t align, size_t n)
{
	if (!resolved)
		resolve();
	count_alloc();
	return real_posix_memalign(out, align, n);
}

void *
aligned_alloc(size_t align, size_t n)
{
	if (!resolved)
		resolve();
	count_alloc();
	return real_aligned_alloc(align, n);
}

void *
memalign(size_t align, size_t n)
{
	if (!resolved)
		resolve();
	count_alloc();
	return real_memalign(align, n);
}

void *
valloc(size_t n)
{
	if (!resolved)
		resolve();
	count_alloc();
	return real_valloc(n);
}

void *
pvalloc(size_t n)
{
	if (!resolved)
		resolve();
	count_alloc();
	return real_pvalloc(n);
}
