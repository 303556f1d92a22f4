/* calls: call table and queues (see calls.h). */
#include "compute/calls.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

#define TOMBSTONE ((sky_call *)1)
#define CHUNK_CALLS 256

struct sky_call_chunk {
    struct sky_call_chunk *next;
    sky_call calls[CHUNK_CALLS];
};

sky_call *sky_call_new(sky_call_alloc *a)
{
    if (!a->free_list) {
        struct sky_call_chunk *ch = sky_xmalloc(sizeof *ch);
        ch->next = a->chunks;
        a->chunks = ch;
        for (int i = CHUNK_CALLS - 1; i >= 0; i--) {
            ch->calls[i].next = a->free_list;
            a->free_list = &ch->calls[i];
        }
    }
    sky_call *c = a->free_list;
    a->free_list = c->next;
    memset(c, 0, offsetof(sky_call, inline_values));
    return c;
}

/* Payloads are the user's (up to 256 MiB): NULL when there is no memory. */
static uint8_t *copy_payload(uint8_t *inline_buf, const uint8_t *p, size_t len)
{
    uint8_t *dst = inline_buf;
    if (len > SKY_CALL_INLINE && !(dst = malloc(len)))
        return NULL;
    if (len)
        memcpy(dst, p, len);
    return dst;
}

int sky_call_set_values(sky_call *c, const uint8_t *p, size_t len)
{
    c->values = copy_payload(c->inline_values, p, len);
    c->values_len = c->values ? len : 0;
    return c->values ? 0 : -1;
}

int sky_call_set_results(sky_call *c, const uint8_t *p, size_t len)
{
    c->results = copy_payload(c->inline_results, p, len);
    return c->results ? 0 : -1;
}

void sky_call_recycle(sky_call_alloc *a, sky_call *c)
{
    if (!c)
        return;
    if (c->values && c->values != c->inline_values)
        free(c->values);
    if (c->results && c->results != c->inline_results)
        free(c->results);
    wire_hashes_free(&c->protos);
    free(c->message);
    free(c->traceback);
    c->next = a->free_list;
    a->free_list = c;
}

void sky_call_alloc_free(sky_call_alloc *a)
{
    while (a->chunks) {
        struct sky_call_chunk *next = a->chunks->next;
        free(a->chunks);
        a->chunks = next;
    }
    a->free_list = NULL;
}

void sky_call_table_free(sky_call_table *t, sky_call_alloc *a)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i] && t->slots[i] != TOMBSTONE)
            sky_call_recycle(a, t->slots[i]);
    free(t->slots);
    t->slots = NULL;
    t->cap = t->used = t->live = 0;
}

static size_t slot_of(uint64_t id, size_t cap)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)id & (cap - 1);
}

static void rehash(sky_call_table *t, size_t cap)
{
    sky_call **old = t->slots;
    size_t old_cap = t->cap;
    t->slots = sky_xcalloc(cap, sizeof *t->slots);
    t->cap = cap;
    t->used = t->live = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i] && old[i] != TOMBSTONE)
            sky_call_table_put(t, old[i]);
    free(old);
}

void sky_call_table_put(sky_call_table *t, sky_call *c)
{
    if ((t->used + 1) * 4 >= t->cap * 3)
        rehash(t, t->cap ? (t->live * 4 >= t->cap ? t->cap * 2 : t->cap) : 64);
    size_t i = slot_of(c->id, t->cap);
    while (t->slots[i] && t->slots[i] != TOMBSTONE)
        i = (i + 1) & (t->cap - 1);
    if (!t->slots[i])
        t->used++;
    t->slots[i] = c;
    t->live++;
}

static size_t find(const sky_call_table *t, uint64_t id)
{
    if (!t->cap)
        return SIZE_MAX;
    size_t i = slot_of(id, t->cap);
    while (t->slots[i]) {
        if (t->slots[i] != TOMBSTONE && t->slots[i]->id == id)
            return i;
        i = (i + 1) & (t->cap - 1);
    }
    return SIZE_MAX;
}

sky_call *sky_call_table_get(const sky_call_table *t, uint64_t id)
{
    size_t i = find(t, id);
    return i == SIZE_MAX ? NULL : t->slots[i];
}

sky_call *sky_call_table_remove(sky_call_table *t, uint64_t id)
{
    size_t i = find(t, id);
    if (i == SIZE_MAX)
        return NULL;
    sky_call *c = t->slots[i];
    t->slots[i] = TOMBSTONE;
    t->live--;
    return c;
}

void sky_call_queue_push(sky_call_queue *q, sky_call *c)
{
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->len++;
}

void sky_call_queue_push_front(sky_call_queue *q, sky_call *c)
{
    c->next = q->head;
    q->head = c;
    if (!q->tail)
        q->tail = c;
    q->len++;
}

sky_call *sky_call_queue_pop(sky_call_queue *q)
{
    sky_call *c = q->head;
    if (!c)
        return NULL;
    q->head = c->next;
    if (!q->head)
        q->tail = NULL;
    c->next = NULL;
    q->len--;
    return c;
}
