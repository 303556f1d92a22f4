/* alloc: allocation that aborts on failure, for bookkeeping (see alloc.h). */
#include "util/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sky_oom(const char *what)
{
    /* stderr is unbuffered: nothing here allocates. */
    fputs("skyrun: out of memory (", stderr);
    fputs(what ? what : "allocation", stderr);
    fputs(")\n", stderr);
    abort();
}

void *sky_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        sky_oom("malloc");
    return p;
}

void *sky_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        sky_oom("calloc");
    return p;
}

void *sky_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        sky_oom("realloc");
    return q;
}

char *sky_xstrdup(const char *s)
{
    return s ? sky_xstrndup(s, strlen(s)) : NULL;
}

char *sky_xstrndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (!d)
        sky_oom("strdup");
    return d;
}
