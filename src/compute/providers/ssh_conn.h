/*
 * ssh_conn: one SSH connection to one host (libssh2), and the commands run
 * over it, each in its own exec channel whose three streams become local
 * sockets — so the pool, the keeper client and node setup read and write
 * plain descriptors and never learn about libssh2 (the provider seam stays
 * a byte-stream seam).
 *
 * libssh2 sessions are not thread-safe, so after the connection is made
 * (connect, host key check, authentication: in the caller's thread, with a
 * bound) every libssh2 call happens in one thread per connection, the pump:
 * it opens channels asked for by other threads, moves bytes between each
 * channel and its local sockets (with backpressure: a channel is read only
 * while its local reader keeps up), sends keepalives, and records how each
 * command ended. When the connection dies (host gone, network cut: TCP's
 * user timeout bounds the wait), every channel's local streams end, so the
 * pool sees its workers on that host lost at once.
 *
 * A command that wants to be known by its remote pid prints "$$" as the
 * first line of its stdout (`echo $$; exec …`); the pump takes that line
 * off the stream and hands it to ssh_conn_exec's caller.
 */
#ifndef SKY_COMPUTE_SSH_CONN_H
#define SKY_COMPUTE_SSH_CONN_H

#include <stddef.h>

#include "util/buf.h"

/* Where and how to connect: what ~/.ssh/config and the provider's options
 * resolved to. */
typedef struct ssh_target {
    const char *alias;            /* what the user named (for messages) */
    const char *hostname;         /* address or DNS name to connect to */
    int port;
    const char *user;
    const char *const *identities;/* key files to try after the agent; NULL-terminated, may be NULL */
    const char *known_hosts;      /* OpenSSH known_hosts file */
    int accept_new;               /* host_key_policy = "accept-new": record unknown hosts */
    double connect_seconds;       /* bound on connect + handshake + authentication */
} ssh_target;

typedef struct ssh_conn ssh_conn;

/* Connects, verifies the host key against known_hosts, authenticates (agent
 * first, then the identity files), starts the pump. NULL with err naming
 * the host and the reason. */
ssh_conn *ssh_conn_open(const ssh_target *t, char *err, size_t errlen);

/* Runs command (by the user's login shell) in a new channel. *to, *from and
 * *diag are its stdin, stdout and stderr as local sockets (the caller owns
 * them; bytes written to *to before the channel runs wait in the socket).
 * With SSH_EXEC_HEADER the first line of stdout is taken off the stream:
 * the call waits for it (into header) unless SSH_EXEC_NOWAIT, when it
 * returns at once and ssh_conn_header gives it later. Returns a channel id
 * (> 0) for the calls below, or -1 with err. */
#define SSH_EXEC_HEADER 1
#define SSH_EXEC_NOWAIT 2
int ssh_conn_exec(ssh_conn *c, const char *command, int flags, int *to, int *from, int *diag,
                  char *header, size_t headerlen, double deadline, char *err, size_t errlen);

/* Waits until deadline for channel id's header line: 0, or -1 when the
 * command ended without one or it did not come in time. */
int ssh_conn_header(ssh_conn *c, int id, double deadline, char *header, size_t headerlen);

/* Waits until deadline (keeper_now() time) for channel id's command to end:
 * its exit status (128 + signal when killed), how filled ("exited with
 * status 3", "was killed by signal KILL", "was lost: …"); -2 when it has not
 * ended yet. */
int ssh_conn_wait_exit(ssh_conn *c, int id, double deadline, char *how, size_t howlen);

/* 1 when channel id's command has ended (or never started). */
int ssh_conn_ended(ssh_conn *c, int id);

/* Forgets channel id: closes it if still open. */
void ssh_conn_release(ssh_conn *c, int id);

/* Runs command to its end: input on its stdin, its stdout and stderr
 * collected (each at most 1 MiB kept). Returns its exit status, or -1 with
 * err when it could not run or did not end before deadline. */
int ssh_conn_run(ssh_conn *c, const char *command, const void *input, size_t inlen, sky_buf *out,
                 sky_buf *errout, double deadline, char *err, size_t errlen);

/* Why the connection is down ("" while it is up). */
const char *ssh_conn_lost(ssh_conn *c);

/* Disconnects (remote commands see their channels close) and frees. */
void ssh_conn_close(ssh_conn *c);

/* The SHA256 fingerprint of a host key as OpenSSH prints it ("SHA256:…",
 * base64 without padding) into out (at least 60 bytes). */
void ssh_fingerprint(const unsigned char sha256[32], char *out, size_t outlen);

/* Appends s to b quoted for a POSIX shell ('…', with ' as '\''). */
void ssh_shell_quote(sky_buf *b, const char *s);

#endif
