/*
 * node_exec: one command on many nodes at once (see node_exec.h).
 */
#include "compute/node_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/interrupt.h"
#include "util/log.h"
#include "util/sigpipe.h"

#define TAIL_BYTES 2000



void node_step_free(node_step *st)
{
    sky_buf_free(&st->out);
    sky_buf_free(&st->tail);
    for (int i = 0; i < 3; i++)
        sky_buf_free(&st->partial[i]);
}

static void keep_tail(node_step *st, const uint8_t *p, size_t n)
{
    sky_buf_append(&st->tail, p, n);
    if (st->tail.len > TAIL_BYTES)
        sky_buf_consume(&st->tail, st->tail.len - TAIL_BYTES);
}

static void forward(const node_output *o, int node, node_step *st, int stream, const uint8_t *p, size_t n, int flush)
{
    sky_buf *b = &st->partial[stream];
    sky_buf_append(b, p, n);
    size_t start = 0;
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] != '\n')
            continue;
        if (!o->quiet)
            o->fn(o->ud, node, -1, stream, (const char *)b->data + start, i - start);
        start = i + 1;
    }
    sky_buf_consume(b, start);
    if (flush && b->len) {
        if (!o->quiet)
            o->fn(o->ud, node, -1, stream, (const char *)b->data, b->len);
        sky_buf_reset(b);
    }
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs steps[i] on node i (where active) until all ended; timeout 0 = none.
 * Returns 0, or -1 when interrupted (everything killed). Exit statuses,
 * output and spawn errors are left in the steps for the caller to judge. */
int node_steps_run(const node_output *o, sky_provider *pr, sky_node *nodes, int n, node_step *steps,
                   const char *const *env, double timeout)
{
    for (int i = 0; i < n; i++) {
        node_step *st = &steps[i];
        st->proc = (sky_proc)SKY_PROC_INIT;
        st->status = -1;
        if (!st->active)
            continue;
        sky_spawn spec = { .argv = st->argv, .env = env };
        if (pr->spawn(pr, &nodes[i], &spec, &st->proc, st->spawn_err, sizeof st->spawn_err) != 0) {
            st->active = 0;
            continue;
        }
        fcntl(st->proc.to, F_SETFL, fcntl(st->proc.to, F_GETFL) | O_NONBLOCK);
        st->open_streams = 2;
        if (!st->input_len) {
            close(st->proc.to);
            st->proc.to = -1;
        }
    }
    double deadline = timeout > 0 ? mono() + timeout : 0;
    int interrupted = 0, timed_out = 0;
    struct pollfd *pfd = sky_xcalloc((size_t)n * 3, sizeof *pfd);
    int *who = sky_xcalloc((size_t)n * 3, sizeof *who);
    sky_sigpipe_guard guard;
    sky_sigpipe_hold(&guard);
    sky_interrupt_scope_begin();
    for (;;) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            node_step *st = &steps[i];
            if (!st->active || !st->open_streams)
                continue;
            if (st->proc.to >= 0) {
                pfd[k] = (struct pollfd){ .fd = st->proc.to, .events = POLLOUT };
                who[k++] = i;
            }
            if (st->proc.from >= 0) {
                pfd[k] = (struct pollfd){ .fd = st->proc.from, .events = POLLIN };
                who[k++] = i;
            }
            if (st->proc.diag >= 0) {
                pfd[k] = (struct pollfd){ .fd = st->proc.diag, .events = POLLIN };
                who[k++] = i;
            }
        }
        if (k == 0)
            break;
        if (sky_interrupt_pending()) {
            interrupted = 1;
            break;
        }
        if (deadline && mono() > deadline) {
            timed_out = 1;
            break;
        }
        if (poll(pfd, (nfds_t)k, 100) <= 0)
            continue;
        for (int j = 0; j < k; j++) {
            if (!pfd[j].revents)
                continue;
            node_step *st = &steps[who[j]];
            if (pfd[j].fd == st->proc.to) {
                ssize_t w = write(st->proc.to, st->input + st->input_off, st->input_len - st->input_off);
                if (w > 0)
                    st->input_off += (size_t)w;
                if ((w < 0 && errno != EAGAIN && errno != EINTR) || st->input_off == st->input_len) {
                    close(st->proc.to);   /* all sent, or it stopped reading */
                    st->proc.to = -1;
                }
                continue;
            }
            int stream = pfd[j].fd == st->proc.from ? 1 : 2;
            uint8_t buf[8192];
            ssize_t r = read(pfd[j].fd, buf, sizeof buf);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                if (st->show)
                    forward(o, who[j], st, stream, NULL, 0, 1);
                close(pfd[j].fd);
                if (stream == 1)
                    st->proc.from = -1;
                else
                    st->proc.diag = -1;
                st->open_streams--;
                continue;
            }
            if (stream == 1)
                sky_buf_append(&st->out, buf, (size_t)r);
            keep_tail(st, buf, (size_t)r);
            if (st->show)
                forward(o, who[j], st, stream, buf, (size_t)r, 0);
        }
    }
    sky_interrupt_scope_end();
    sky_sigpipe_release(&guard);
    free(pfd);
    free(who);
    for (int i = 0; i < n; i++) {
        node_step *st = &steps[i];
        if (!st->active)
            continue;
        /* Streams closed: it has exited or is about to. Killed if stuck. */
        double until = interrupted || timed_out ? 0 : mono() + 5.0;
        st->status = pr->end(pr, &nodes[i], &st->proc, until, st->how, sizeof st->how);
        if (timed_out && st->open_streams)
            snprintf(st->how, sizeof st->how, "did not finish in %.0f s and was killed", timeout);
    }
    return interrupted ? -1 : 0;
}

/* "node 1: PHASE: WHAT\n  last output:\n    …" */
void node_step_error(const node_step *st, const sky_node *node, const char *phase, const char *what,
                       char *err, size_t errlen)
{
    sky_buf msg = SKY_BUF_INIT;
    sky_buf_printf(&msg, "%s: %s: %s", node->name, phase, what);
    if (st->tail.len) {
        size_t start = 0, lines = 0;
        for (size_t i = st->tail.len; i > 0 && lines < 12; i--)
            if (st->tail.data[i - 1] == '\n' && i != st->tail.len) {
                lines++;
                start = i;
            }
        if (lines < 12)
            start = 0;
        sky_buf_append_str(&msg, "\n  its last output:");
        for (size_t i = start; i < st->tail.len;) {
            size_t e = i;
            while (e < st->tail.len && st->tail.data[e] != '\n')
                e++;
            sky_buf_printf(&msg, "\n    %.*s", (int)(e - i), (const char *)st->tail.data + i);
            i = e + 1;
        }
    }
    snprintf(err, errlen, "%s", sky_buf_cstr(&msg));
    sky_redact(err);
    sky_buf_free(&msg);
}

/* Judges a step that must exit 0; fills err naming node and phase otherwise. */
node_step *node_steps_same(int n, const char *const *argv)
{
    node_step *steps = sky_xcalloc((size_t)n, sizeof *steps);
    for (int i = 0; i < n; i++)
        steps[i] = (node_step){ .active = 1, .argv = argv };
    return steps;
}

int node_step_ok(const node_step *st, const sky_node *node, const char *phase, char *err, size_t errlen)
{
    if (!st->active) {
        snprintf(err, errlen, "%s: %s: %s", node->name, phase, st->spawn_err);
        return 0;
    }
    if (st->status == 0)
        return 1;
    char what[200];
    snprintf(what, sizeof what, "it %s", st->how);
    node_step_error(st, node, phase, what, err, errlen);
    return 0;
}

