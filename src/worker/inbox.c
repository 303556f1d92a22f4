/*
 * inbox: the worker's input thread, so the host can always reach it.
 *
 * It reads the host's byte stream all the time, also while a call runs on
 * the main thread, and:
 *   - answers PING with PONG at once (the host's liveness check works
 *     however long a call takes);
 *   - answers CANCEL for a call that has arrived but not started by giving
 *     it back (CANCELLED): the host moves it to an idle worker. A call that
 *     has started is not cancelled (it would run twice);
 *   - hands every other frame, decompressed, to the main thread in order;
 *   - ends the process when the host has said nothing for longer than the
 *     heartbeat allows (the host is gone but the stream is not closed: a
 *     network cut), and notes the end of input or a malformed frame.
 */
#include "worker/worker.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (64u * 1024u)
#define SETUP_WAIT_MS 60000   /* before SETUP says the heartbeat */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int id_index(const uint64_t *v, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == id)
            return (int)i;
    return -1;
}

static void id_add(uint64_t **v, size_t *n, size_t *cap, uint64_t id)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        *v = sky_xrealloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = id;
}

static void id_remove_at(uint64_t *v, size_t *n, int i)
{
    v[i] = v[--*n];
}

/* Appends a decompressed frame for the main thread. */
static void forward(struct inbox *ib, const wire_frame *f)
{
    uint8_t h[WIRE_HEADER_SIZE];
    uint32_t len = (uint32_t)f->len;
    h[0] = (uint8_t)len;
    h[1] = (uint8_t)(len >> 8);
    h[2] = (uint8_t)(len >> 16);
    h[3] = (uint8_t)(len >> 24);
    h[4] = f->type;
    h[5] = 0;
    sky_buf_append(&ib->ready, h, sizeof h);
    sky_buf_append(&ib->ready, f->body, f->len);
}

static void answer(struct inbox *ib, uint8_t type, uint64_t id)
{
    sky_buf body = SKY_BUF_INIT;
    if (type == WIRE_CANCELLED)
        wire_id_append(&body, id);
    channel_send_now(ib->ch, type, body.data, body.len);
    sky_buf_free(&body);
}

/* Handles what arrived; returns -1 on a malformed frame (ib->why says). */
static int take_frames(struct inbox *ib, sky_buf *in, sky_buf *scratch)
{
    size_t off = 0;
    int rc = 0;
    pthread_mutex_lock(&ib->mu);
    for (;;) {
        wire_frame f;
        size_t used;
        wire_err err;
        int r = wire_frame_next(in->data + off, in->len - off, scratch, &f, &used, &err);
        if (r == WIRE_AGAIN)
            break;
        if (r != WIRE_OK) {
            snprintf(ib->why, sizeof ib->why, "malformed frame from host: %s", err.msg);
            rc = -1;
            break;
        }
        off += used;
        if (f.type == WIRE_PING) {
            answer(ib, WIRE_PONG, 0);
        } else if (f.type == WIRE_CANCEL) {
            uint64_t id;
            if (wire_id_parse(f.body, f.len, &id, &err) != WIRE_OK) {
                snprintf(ib->why, sizeof ib->why, "bad CANCEL frame from host: %s", err.msg);
                rc = -1;
                break;
            }
            int i = id_index(ib->queued, ib->nqueued, id);
            if (i >= 0) {   /* not started: it will be skipped, and the host runs it elsewhere */
                id_remove_at(ib->queued, &ib->nqueued, i);
                id_add(&ib->cancelled, &ib->ncancelled, &ib->capcancelled, id);
                answer(ib, WIRE_CANCELLED, id);
            }
        } else {
            if (f.type == WIRE_CALL && f.len >= 8) {
                uint64_t id = 0;
                for (int b = 7; b >= 0; b--)
                    id = (id << 8) | f.body[b];
                id_add(&ib->queued, &ib->nqueued, &ib->capqueued, id);
            }
            forward(ib, &f);
        }
    }
    pthread_cond_signal(&ib->cv);
    pthread_mutex_unlock(&ib->mu);
    sky_buf_consume(in, off);
    return rc;
}

static void *input_thread(void *arg)
{
    struct inbox *ib = arg;
    sky_buf in = SKY_BUF_INIT, scratch = SKY_BUF_INIT;
    double last = now_ms();
    for (;;) {
        pthread_mutex_lock(&ib->mu);
        double hb = ib->heartbeat_ms;
        pthread_mutex_unlock(&ib->mu);
        double limit = hb > 0 ? hb : hb < 0 ? SETUP_WAIT_MS : -1;
        /* At most 250 ms at a time: SETUP may change the limit meanwhile. */
        int wait = limit < 0 ? 250 : (int)(limit - (now_ms() - last)) + 1;
        if (wait < 0)
            wait = 0;
        if (wait > 250)
            wait = 250;
        struct pollfd p = { .fd = ib->ch->in_fd, .events = POLLIN };
        int r = poll(&p, 1, wait);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            if (limit >= 0 && now_ms() - last >= limit) {
                fprintf(stderr, "skyrun-worker[%ld]: no word from the host for %.1f s; exiting\n",
                        (long)getpid(), limit / 1000.0);
                _exit(WORKER_EXIT_HEARTBEAT);
            }
            continue;
        }
        sky_buf_reserve(&in, READ_CHUNK);
        ssize_t n = read(ib->ch->in_fd, in.data + in.len, in.cap - in.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            pthread_mutex_lock(&ib->mu);
            if (in.len)
                snprintf(ib->why, sizeof ib->why, "input ended inside a frame (%zu bytes left over)", in.len);
            ib->ended = 1;
            pthread_cond_signal(&ib->cv);
            pthread_mutex_unlock(&ib->mu);
            break;
        }
        last = now_ms();
        in.len += (size_t)n;
        if (take_frames(ib, &in, &scratch) != 0) {
            pthread_mutex_lock(&ib->mu);
            ib->bad = 1;
            pthread_cond_signal(&ib->cv);
            pthread_mutex_unlock(&ib->mu);
            break;
        }
    }
    sky_buf_free(&in);
    sky_buf_free(&scratch);
    return NULL;
}

int inbox_start(struct inbox *ib, struct channel *ch)
{
    memset(ib, 0, sizeof *ib);
    ib->ch = ch;
    ib->heartbeat_ms = -1;   /* until SETUP */
    pthread_mutex_init(&ib->mu, NULL);
    pthread_cond_init(&ib->cv, NULL);
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, input_thread, ib);
    pthread_attr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

int inbox_wait(struct inbox *ib, sky_buf *out)
{
    pthread_mutex_lock(&ib->mu);
    while (!ib->ready.len && !ib->ended && !ib->bad)
        pthread_cond_wait(&ib->cv, &ib->mu);
    int rc = 0;
    if (ib->ready.len) {
        sky_buf t = *out;
        *out = ib->ready;
        ib->ready = t;
        sky_buf_reset(&ib->ready);
    } else {
        rc = ib->bad ? -1 : 1;
    }
    pthread_mutex_unlock(&ib->mu);
    return rc;
}

int inbox_start_call(struct inbox *ib, uint64_t id)
{
    pthread_mutex_lock(&ib->mu);
    int i = id_index(ib->cancelled, ib->ncancelled, id);
    int run = i < 0;
    if (!run)
        id_remove_at(ib->cancelled, &ib->ncancelled, i);
    else if ((i = id_index(ib->queued, ib->nqueued, id)) >= 0)
        id_remove_at(ib->queued, &ib->nqueued, i);
    pthread_mutex_unlock(&ib->mu);
    return run;
}

void inbox_set_heartbeat(struct inbox *ib, double seconds)
{
    pthread_mutex_lock(&ib->mu);
    ib->heartbeat_ms = seconds > 0 ? seconds * 1000.0 : 0;
    pthread_mutex_unlock(&ib->mu);
}
