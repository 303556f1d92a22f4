/*
 * batch: runs many S3 requests through the client's curl multi handle —
 * at most `parallel` in flight, each retried on its own with backoff, the
 * interrupt flag polled at least every 100 ms, and everything in flight
 * cancelled at the first failure that retries cannot fix (see request.h).
 *
 * SIGPIPE: a server that resets a connection makes the next write to it
 * fail with EPIPE, and a write without MSG_NOSIGNAL then raises SIGPIPE,
 * whose default action ends the process — skyrun, a stock lua5.4, or any C
 * program embedding us. CURLOPT_NOSIGNAL (request.c) stops libcurl from
 * ignoring SIGPIPE process-wide for us, and libcurl 7.88 happens to send
 * with MSG_NOSIGNAL on every path (plain and OpenSSL, through its own BIO),
 * but that is libcurl's business: other versions and TLS backends have
 * written with plain write()/SSL_write on the socket. So the whole run is
 * bracketed with sky_sigpipe_hold/release (util/sigpipe.h): SIGPIPE is
 * blocked in this thread only, a SIGPIPE our writes raise meanwhile is
 * consumed (sigtimedwait), and the thread's mask is restored; the
 * program's own disposition is never changed. The failed write is then an
 * ordinary send error, retried like any reset (tests/s3/reset_transfers.sh).
 */
#include "s3/request.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "s3/retry.h"
#include "util/alloc.h"
#include "util/interrupt.h"
#include "util/sigpipe.h"

enum slot_state { SLOT_FREE, SLOT_RUNNING, SLOT_WAITING };

typedef struct slot {
    enum slot_state state;
    size_t index;
    int attempts;
    long long wake_at_ms;
    CURL *easy;
    s3_request req;
} slot;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static CURL *easy_take(s3_client *c)
{
    if (c->nidle)
        return c->idle[--c->nidle];
    CURL *e = curl_easy_init();
    if (!e)
        sky_oom("curl handle");
    return e;
}

/* Easy handles go back to the pool reset; their connections stay in the
 * multi handle's cache, which is what keeps them alive between requests. */
static void easy_give_back(s3_client *c, CURL *e)
{
    curl_easy_reset(e);
    if (c->nidle == c->idle_cap) {
        size_t ncap = c->idle_cap ? c->idle_cap * 2 : 16;
        c->idle = sky_xrealloc(c->idle, ncap * sizeof *c->idle);
        c->idle_cap = ncap;
    }
    c->idle[c->nidle++] = e;
}

static int slot_launch(s3_batch *b, slot *s, s3_error *err)
{
    s3_client *c = b->client;
    if (!s->easy)
        s->easy = easy_take(c);
    if (s3_request_start(c, &s->req, s->easy, err) != 0)
        return -1;
    s->attempts++;
    if (curl_multi_add_handle(c->multi, s->easy) != CURLM_OK) {
        s3_request_end(&s->req, CURLE_FAILED_INIT);
        s3_error_local(err, s->req.op, s->req.bucket, s->req.key, "cannot start the request (curl)");
        return -1;
    }
    s->state = SLOT_RUNNING;
    return 0;
}

static void slot_release(s3_batch *b, slot *s)
{
    if (s->state == SLOT_RUNNING) {
        curl_multi_remove_handle(b->client->multi, s->easy);
        s3_request_end(&s->req, CURLE_ABORTED_BY_CALLBACK);
        sky_buf_free(&s->req.errbody);
    }
    if (s->easy)
        easy_give_back(b->client, s->easy);
    s->easy = NULL;
    s->state = SLOT_FREE;
}

/* Takes back what a failed attempt counted, so the bar does not run ahead. */
static void uncount_attempt(s3_request *r)
{
    s3_progress_add(r->progress, -(int64_t)(r->sent + r->received));
}

/* A request of slot s ended with rc: done, scheduled again, or failed. */
static int slot_complete(s3_batch *b, slot *s, CURLcode rc, s3_error *err)
{
    s3_client *c = b->client;
    curl_multi_remove_handle(c->multi, s->easy);
    s3_request_end(&s->req, rc);
    int verdict = s3_request_outcome(c, &s->req, err);
    if (verdict == 0) {
        verdict = b->finish ? b->finish(b->ud, s->index, &s->req, err) : 0;
        if (verdict == 1 && !err->text[0])
            s3_error_local(err, s->req.op, s->req.bucket, s->req.key, "the answer failed verification");
    }
    if (verdict == 0) {
        s->state = SLOT_FREE;
        return 0;
    }
    int limit = b->max_attempts > 0 ? b->max_attempts : c->attempts;
    if (verdict == 1 && s->attempts < limit) {
        uncount_attempt(&s->req);
        s->state = SLOT_WAITING;
        s->wake_at_ms = now_ms() + s3_retry_delay_ms(s->attempts, &c->rng);
        return 0;
    }
    if (verdict == 1) {
        /* Out of attempts: say so, keeping the last failure's details. */
        err->attempts = s->attempts;
        s3_error_finish(err, s->req.op, s->req.bucket, s->req.key);
    }
    s->state = SLOT_FREE;
    return -1;
}

static int drain_messages(s3_batch *b, slot *slots, int nslots, s3_error *err)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(b->client->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        for (int i = 0; i < nslots; i++) {
            if (slots[i].state == SLOT_RUNNING && slots[i].easy == msg->easy_handle) {
                if (slot_complete(b, &slots[i], msg->data.result, err) != 0)
                    return -1;
                break;
            }
        }
    }
    return 0;
}

/* Starts new items in free slots and wakes retries whose delay is over. */
static int fill_slots(s3_batch *b, slot *slots, int nslots, size_t *next, s3_error *err)
{
    long long now = now_ms();
    for (int i = 0; i < nslots; i++) {
        slot *s = &slots[i];
        if (s->state == SLOT_WAITING && s->wake_at_ms <= now) {
            if (slot_launch(b, s, err) != 0)
                return -1;
        } else if (s->state == SLOT_FREE && *next < b->n) {
            s3_request_init(&s->req, "request", "GET", NULL, NULL);
            s->index = (*next)++;
            s->attempts = 0;
            if (b->prepare(b->ud, s->index, &s->req, err) != 0)
                return -1;
            if (slot_launch(b, s, err) != 0)
                return -1;
        }
    }
    return 0;
}

/* How long to wait for network activity: ≤ 100 ms so interrupts are seen,
 * less when a retry is due sooner. */
static int poll_timeout_ms(const slot *slots, int nslots, int *busy)
{
    long long now = now_ms(), wait = 100;
    *busy = 0;
    for (int i = 0; i < nslots; i++) {
        if (slots[i].state == SLOT_FREE)
            continue;
        *busy = 1;
        if (slots[i].state == SLOT_WAITING && slots[i].wake_at_ms - now < wait)
            wait = slots[i].wake_at_ms - now;
    }
    return wait < 0 ? 0 : (int)wait;
}

int s3_batch_run(s3_batch *b, s3_error *err)
{
    s3_client *c = b->client;
    int nslots = b->parallel > 0 ? b->parallel : c->parallel;
    if ((size_t)nslots > b->n)
        nslots = (int)(b->n ? b->n : 1);
    slot *slots = sky_xcalloc((size_t)nslots, sizeof *slots);
    size_t next = 0;
    int rc = -1;
    memset(err, 0, sizeof *err);
    sky_sigpipe_guard guard;     /* every write to a server happens inside (see the top) */
    sky_sigpipe_hold(&guard);
    for (;;) {
        if (!b->uninterruptible && sky_interrupt_pending()) {
            s3_error_local(err, b->op, b->bucket, b->key, "interrupted");
            goto done;
        }
        if (fill_slots(b, slots, nslots, &next, err) != 0)
            goto done;
        int running = 0, busy = 0;
        curl_multi_perform(c->multi, &running);
        if (drain_messages(b, slots, nslots, err) != 0)
            goto done;
        int timeout = poll_timeout_ms(slots, nslots, &busy);
        if (!busy && next >= b->n)
            break;
        if (busy)
            curl_multi_poll(c->multi, NULL, 0, timeout, NULL);
    }
    rc = 0;
done:
    for (int i = 0; i < nslots; i++)
        slot_release(b, &slots[i]);
    sky_sigpipe_release(&guard);
    free(slots);
    return rc;
}

/* ---- one request ---- */

typedef struct single {
    s3_request *req;
} single;

static int single_prepare(void *ud, size_t i, s3_request *req, s3_error *err)
{
    *req = *((single *)ud)->req;
    return 0;
}

static int single_finish(void *ud, size_t i, s3_request *req, s3_error *err)
{
    /* The attempt state is released by now; only results are copied back. */
    *((single *)ud)->req = *req;
    return 0;
}

int s3_request_perform(s3_client *c, s3_request *req, s3_error *err)
{
    single one = { req };
    s3_batch b = { c, 1, 1, single_prepare, single_finish, &one, req->op, req->bucket, req->key, 0, 0 };
    return s3_batch_run(&b, err);
}

int s3_request_perform_cleanup(s3_client *c, s3_request *req, s3_error *err)
{
    single one = { req };
    s3_batch b = { c, 1, 1, single_prepare, single_finish, &one, req->op, req->bucket, req->key,
                   1, S3_CLEANUP_ATTEMPTS };
    return s3_batch_run(&b, err);
}
