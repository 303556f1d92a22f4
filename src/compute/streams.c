/*
 * streams: the calls of a set handed out in completion order, at O(1) per
 * call (sky_pool_stream_*, see pool.h). A call belongs to at most one
 * stream; when it finishes, the scheduler appends its id to that stream's
 * ready list (pool_stream_settle).
 */
#include "compute/pool_internal.h"

#include <stdlib.h>

#include "util/alloc.h"
#include "util/interrupt.h"

static call_stream *find_stream(sky_pool *p, uint32_t id)
{
    for (size_t i = 0; id && i < p->nstreams; i++)
        if (p->streams[i].id == id)
            return &p->streams[i];
    return NULL;
}

/* A tagged call left its stream's pending set: finished (ready = 1) or released. */
void pool_stream_settle(sky_pool *p, sky_call *c, int ready)
{
    call_stream *s = find_stream(p, c->stream);
    c->stream = 0;
    if (!s)
        return;
    s->pending--;
    if (ready && s->tail < s->cap)   /* room for every id was made when it opened */
        s->ready[s->tail++] = c->id;
}

static int by_done_seq(const void *a, const void *b)
{
    const sky_call *x = *(sky_call *const *)a, *y = *(sky_call *const *)b;
    return x->done_seq < y->done_seq ? -1 : x->done_seq > y->done_seq;
}

uint32_t sky_pool_stream_open(sky_pool *p, const uint64_t *ids, size_t n)
{
    call_stream *s = NULL;
    for (size_t i = 0; i < p->nstreams && !s; i++)
        if (!p->streams[i].id)
            s = &p->streams[i];
    if (!s) {
        p->streams = sky_xrealloc(p->streams, (p->nstreams + 1) * sizeof *p->streams);
        s = &p->streams[p->nstreams++];
        *s = (call_stream){ 0 };
    }
    /* Sized by the user's list: failure is an error for the caller, not an abort. */
    sky_call **done = malloc((n ? n : 1) * sizeof *done);
    uint64_t *ready = malloc((n ? n : 1) * sizeof *ready);
    if (!done || !ready) {
        free(done);
        free(ready);
        return 0;
    }
    *s = (call_stream){ .ready = ready, .cap = n };
    if (++p->next_stream == 0)
        p->next_stream = 1;
    s->id = p->next_stream;
    size_t ndone = 0;
    for (size_t i = 0; i < n; i++) {
        sky_call *c = sky_call_table_get(&p->calls, ids[i]);
        if (!c)
            s->ready[s->tail++] = ids[i];   /* unknown: its waiter reports it */
        else if (c->outcome.status != SKY_CALL_PENDING)
            done[ndone++] = c;
        else {
            if (c->stream)
                pool_stream_settle(p, c, 0);   /* a call belongs to one stream: the newest */
            c->stream = s->id;
            s->pending++;
        }
    }
    /* Those already finished come first, in the order they finished. */
    qsort(done, ndone, sizeof *done, by_done_seq);
    for (size_t i = 0; i < ndone; i++)
        s->ready[s->tail++] = done[i]->id;
    free(done);
    return s->id;
}

int sky_pool_stream_next(sky_pool *p, uint32_t id, uint64_t *call_id)
{
    int scoped = 0, r;
    for (;;) {
        call_stream *s = find_stream(p, id);   /* each turn: the array may have grown meanwhile */
        if (!s) {
            r = 0;
            break;
        }
        if (s->head < s->tail) {
            *call_id = s->ready[s->head++];
            r = 1;
            break;
        }
        if (!s->pending) {
            r = 0;
            break;
        }
        if (!scoped) {
            sky_interrupt_scope_begin();   /* only once it has to wait */
            scoped = 1;
        }
        if (sky_interrupt_pending()) {
            r = -1;
            break;
        }
        pool_pump(p, 1);
    }
    if (scoped)
        sky_interrupt_scope_end();
    return r;
}

void sky_pool_stream_close(sky_pool *p, uint32_t id)
{
    call_stream *s = find_stream(p, id);
    if (!s)
        return;
    /* Calls still tagged keep a dangling tag; find_stream() ignores it since
     * stream ids are not reused (until 2^32 streams later). */
    free(s->ready);
    *s = (call_stream){ 0 };
}
