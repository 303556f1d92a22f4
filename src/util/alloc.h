/*
 * alloc: the host's one out-of-memory policy for small bookkeeping.
 *
 * A host that cannot allocate a few hundred bytes (a settings copy, a list
 * entry, a curl handle) can do nothing useful, and an out-of-memory path
 * that no test can reach is a path that is wrong. So such allocations go
 * through these helpers, which on failure print
 *     skyrun: out of memory (WHAT)
 * on stderr and abort. No caller checks their result.
 *
 * Memory whose size a user chooses (an object read into memory, a
 * transfer's per-part records, a file's bytes) is not bookkeeping: it is
 * allocated with plain malloc or sky_buf_try_reserve and its failure is
 * reported as an ordinary error ("out of memory: …") by the layer's error
 * carrier (docs/DEVELOPING.md, "Errors and out-of-memory").
 *
 * Depends on libc only (linked into the worker too).
 */
#ifndef SKY_UTIL_ALLOC_H
#define SKY_UTIL_ALLOC_H

#include <stddef.h>

/* Prints "skyrun: out of memory (what)" and aborts. For allocators that
 * are not malloc (curl_easy_init, EVP_MD_CTX_new, lua_newstate). */
_Noreturn void sky_oom(const char *what);

void *sky_xmalloc(size_t n);                 /* n == 0 is one byte */
void *sky_xcalloc(size_t n, size_t size);    /* zeroed; n == 0 is one element */
void *sky_xrealloc(void *p, size_t n);
char *sky_xstrdup(const char *s);            /* NULL gives NULL */
char *sky_xstrndup(const char *s, size_t n); /* at most n bytes of s, NUL-terminated */

#endif
