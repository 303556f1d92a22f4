/*
 * channel: the worker's byte stream to the host, and the capture of
 * everything the worker's code prints.
 *
 * At start the protocol moves off fds 0/1 to private close-on-exec fds;
 * fd 0 becomes /dev/null and fd 1 a pipe, so print, io.write and child
 * processes (os.execute) all write into the pipe. A drain thread forwards
 * what arrives there as OUTPUT frames, whole lines at a time, while the
 * call runs. Output and protocol frames share one ordered `pending`
 * buffer and one mutex; the read end of the pipe is only read under that
 * mutex, so when a call ends the main thread can take every byte the call
 * wrote (nothing is "read but not yet queued" in the other thread) and
 * queue its RESULT after it.
 */
#include "worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* An unbroken line longer than this is sent in pieces. */
#define LINE_MAX_BYTES (64u * 1024u)
/* Reads per drain, so a child that never stops writing cannot hold the lock forever. */
#define DRAIN_MAX_READS 64
#define OUTPUT_STDOUT 1

static int move_fd_high(int fd)
{
    return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

/* SIGPIPE would kill the worker when the host goes away; a handler (unlike
 * SIG_IGN) is reset on exec, so child processes keep the default. */
static void on_sigpipe(int sig) { (void)sig; }

int channel_open(struct channel *ch, char *why, size_t why_len)
{
    memset(ch, 0, sizeof *ch);
    pthread_mutex_init(&ch->mu, NULL);
    int pipefd[2] = { -1, -1 }, devnull = -1;
    ch->in_fd = move_fd_high(0);
    ch->out_fd = move_fd_high(1);
    if (ch->in_fd < 0 || ch->out_fd < 0) {
        snprintf(why, why_len, "stdin and stdout must be open: %s", strerror(errno));
        return -1;
    }
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || dup2(devnull, 0) < 0 || pipe2(pipefd, O_CLOEXEC) < 0 ||
        dup2(pipefd[1], 1) < 0) {
        snprintf(why, why_len, "cannot redirect stdin/stdout: %s", strerror(errno));
        return -1;
    }
    close(devnull);
    close(pipefd[1]);
    ch->capture_fd = pipefd[0];
    fcntl(ch->capture_fd, F_SETFL, fcntl(ch->capture_fd, F_GETFL) | O_NONBLOCK);
    setvbuf(stdout, NULL, _IOLBF, BUFSIZ);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

static void queue_output(struct channel *ch, size_t n)
{
    sky_buf body = SKY_BUF_INIT;
    wire_output_append(&body, OUTPUT_STDOUT, ch->line.data, n);
    wire_frame_append(&ch->pending, WIRE_OUTPUT, body.data, body.len);
    sky_buf_free(&body);
    sky_buf_consume(&ch->line, n);
}

/* Moves what the pipe holds into `line` and queues the whole lines (all of
 * it when `everything`). Called with mu held. */
static void drain_locked(struct channel *ch, int everything)
{
    for (int i = 0; i < DRAIN_MAX_READS; i++) {
        sky_buf_reserve(&ch->line, 4096);
        ssize_t n = read(ch->capture_fd, ch->line.data + ch->line.len, ch->line.cap - ch->line.len);
        if (n > 0) {
            ch->line.len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    size_t whole = ch->line.len;
    if (!everything) {
        while (whole > 0 && ch->line.data[whole - 1] != '\n')
            whole--;
        if (whole == 0 && ch->line.len >= LINE_MAX_BYTES)
            whole = ch->line.len;
    }
    if (whole > 0)
        queue_output(ch, whole);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int flush_locked(struct channel *ch)
{
    if (ch->pending.len && !ch->broken && write_all(ch->out_fd, ch->pending.data, ch->pending.len) < 0)
        ch->broken = 1;
    sky_buf_reset(&ch->pending);
    return ch->broken ? -1 : 0;
}

int channel_flush(struct channel *ch)
{
    pthread_mutex_lock(&ch->mu);
    int rc = flush_locked(ch);
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

void channel_send_now(struct channel *ch, uint8_t type, const void *body, size_t len)
{
    pthread_mutex_lock(&ch->mu);
    wire_frame_append(&ch->pending, type, body, len);
    flush_locked(ch);
    pthread_mutex_unlock(&ch->mu);
}

void channel_send_after_output(struct channel *ch, uint8_t type, const void *body, size_t len)
{
    fflush(stdout);
    pthread_mutex_lock(&ch->mu);
    drain_locked(ch, 1);
    wire_frame_append(&ch->pending, type, body, len);
    pthread_mutex_unlock(&ch->mu);
}

void channel_take_output(struct channel *ch)
{
    fflush(stdout);
    pthread_mutex_lock(&ch->mu);
    drain_locked(ch, 1);
    pthread_mutex_unlock(&ch->mu);
}

/* Forwards output as it comes. It never ends by itself: it lives as long
 * as the process, each wait bounded so it never sleeps unboundedly. */
static void *drain_thread(void *arg)
{
    struct channel *ch = arg;
    for (;;) {
        struct pollfd p = { .fd = ch->capture_fd, .events = POLLIN };
        int rc = poll(&p, 1, 1000);
        if (rc <= 0)
            continue;
        if (p.revents & (POLLERR | POLLNVAL))
            return NULL;
        pthread_mutex_lock(&ch->mu);
        drain_locked(ch, 0);
        flush_locked(ch);
        pthread_mutex_unlock(&ch->mu);
    }
}

int channel_start_drain(struct channel *ch)
{
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, drain_thread, ch);
    pthread_attr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}
