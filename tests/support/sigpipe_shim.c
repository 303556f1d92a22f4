/*
 * sigpipe_shim: an LD_PRELOAD library that strips MSG_NOSIGNAL from every
 * send(), sendto() and sendmsg() of the process it is loaded into, for the
 * storage reset tests (tests/s3/reset_transfers.sh).
 *
 * libcurl 7.88 sends everything with MSG_NOSIGNAL (TLS included: it feeds
 * OpenSSL through its own BIO), so on this libcurl a server's reset can
 * never raise SIGPIPE by itself, and a test that only watched for SIGPIPE
 * would prove nothing about skyrun's own guard (src/s3/batch.c). Under this
 * shim the process's sends behave like a libcurl or TLS backend that writes
 * without MSG_NOSIGNAL: a write to a reset connection raises SIGPIPE again
 * (a TLS close_notify sent to a server that reset the connection does, every
 * time), and only the host's own protection keeps it alive.
 *
 * It changes nothing else: no signal disposition, no other call.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef ssize_t (*sendto_fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);

static sendto_fn real_sendto(void)
{
    static sendto_fn fn;
    if (!fn)
        fn = (sendto_fn)dlsym(RTLD_NEXT, "sendto");
    return fn;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    return real_sendto()(fd, buf, len, flags & ~MSG_NOSIGNAL, NULL, 0);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
               socklen_t tolen)
{
    return real_sendto()(fd, buf, len, flags & ~MSG_NOSIGNAL, to, tolen);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    static sendmsg_fn fn;
    if (!fn)
        fn = (sendmsg_fn)dlsym(RTLD_NEXT, "sendmsg");
    return fn(fd, msg, flags & ~MSG_NOSIGNAL);
}
