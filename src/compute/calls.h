/*
 * calls: the pool's table of calls by id (open addressing, ids are never 0),
 * the FIFO queues calls wait in before a worker takes them, and the
 * allocator that recycles call records (a map of 100,000 trivial calls
 * would otherwise spend much of its time in malloc).
 */
#ifndef SKY_COMPUTE_CALLS_H
#define SKY_COMPUTE_CALLS_H

#include <stddef.h>
#include <stdint.h>
#include "compute/pool.h"
#include "wire/wire.h"

#define SKY_CALL_INLINE 48    /* payloads up to this size live inside the record */

typedef struct sky_call {
    uint64_t id;
    uint8_t *values;          /* encoded [function, arguments…], kept for retries */
    size_t values_len;
    wire_hashes protos;
    double timeout;           /* seconds, 0 = none */
    int node_pin;             /* -1: any node */
    int worker;               /* index into pool->workers while in flight, else -1 */
    double started;           /* when it was written to its worker */
    int abandoned;            /* the waiter gave up (interrupt): drop the outcome */
    int moving;               /* CANCEL sent to its worker: it may come back (CANCELLED) */
    uint64_t done_seq;        /* completion order (0 while pending) */
    uint32_t stream;          /* the stream that delivers it when done (0: none) */
    sky_call_outcome outcome;
    uint8_t *results;         /* owned copies behind outcome's pointers */
    char *message, *traceback;
    struct sky_call *next;    /* queue link, or free-list link */
    uint8_t inline_values[SKY_CALL_INLINE];
    uint8_t inline_results[SKY_CALL_INLINE];
} sky_call;

/* Call records come from chunks and go back to a free list; everything is
 * released with the allocator. */
typedef struct sky_call_alloc {
    sky_call *free_list;
    struct sky_call_chunk *chunks;
} sky_call_alloc;

sky_call *sky_call_new(sky_call_alloc *a);                 /* zeroed */
/* Copies of a call's payloads: -1 when there is no memory for them (they
 * are the user's, up to 256 MiB: an error for that call, not an abort). */
int sky_call_set_values(sky_call *c, const uint8_t *p, size_t len);
int sky_call_set_results(sky_call *c, const uint8_t *p, size_t len);
void sky_call_recycle(sky_call_alloc *a, sky_call *c);     /* NULL-safe */
void sky_call_alloc_free(sky_call_alloc *a);

typedef struct sky_call_table {
    sky_call **slots;         /* NULL = empty, TOMBSTONE = deleted */
    size_t cap, used, live;
} sky_call_table;

void sky_call_table_free(sky_call_table *t, sky_call_alloc *a);   /* recycles the calls too */
void sky_call_table_put(sky_call_table *t, sky_call *c);
sky_call *sky_call_table_get(const sky_call_table *t, uint64_t id);
sky_call *sky_call_table_remove(sky_call_table *t, uint64_t id);

typedef struct sky_call_queue {
    sky_call *head, *tail;
    size_t len;
} sky_call_queue;

void sky_call_queue_push(sky_call_queue *q, sky_call *c);
void sky_call_queue_push_front(sky_call_queue *q, sky_call *c);
sky_call *sky_call_queue_pop(sky_call_queue *q);

#endif
