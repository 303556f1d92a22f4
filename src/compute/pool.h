/*
 * pool: a set of nodes, each running W skyrun-worker processes, and the
 * scheduler that feeds them calls.
 *
 * The pool is single-threaded: it makes progress only inside
 * sky_pool_wait*(), which runs its event loop (poll over every worker's
 * pipes) until the awaited calls complete. Calls are encoded by the caller
 * (wire_encode with WIRE_ROOTS_CALL) and handed over as bytes; the pool sends
 * each worker the DEFINE frames it lacks, pipelines calls while they are
 * short, forwards the workers' output live, retries calls whose worker was
 * lost (never a call that raised), enforces timeouts, and tears everything
 * down in sky_pool_free() — which also runs from every exit path of the host.
 */
#ifndef SKY_COMPUTE_POOL_H
#define SKY_COMPUTE_POOL_H

#include <stddef.h>
#include <stdint.h>
#include "compute/node_setup.h"
#include "compute/provider.h"
#include "util/buf.h"
#include "wire/wire.h"

typedef struct sky_pool sky_pool;

#define SKY_POOL_MAX_NODES 1024
#define SKY_POOL_MAX_WORKERS 1024      /* per node */
#define SKY_POOL_DEFAULT_RETRIES 3
#define SKY_POOL_MAX_RETRIES 100
#define SKY_POOL_DEFAULT_START_TIMEOUT 30.0
#define SKY_POOL_DEFAULT_HEARTBEAT 30.0

/* Start from sky_pool_options_init(): it sets every default. */
typedef struct sky_pool_options {
    sky_provider *provider;     /* taken over by the pool (freed with it, also on
                                   failure); NULL: the localhost provider */
    int nodes;                  /* 1 … SKY_POOL_MAX_NODES; default 1 */
    int workers;                /* per node, 1 … SKY_POOL_MAX_WORKERS; default 1 */
    int retries;                /* extra attempts for a call whose worker was lost
                                   (never for a call that raised): 0 … SKY_POOL_MAX_RETRIES;
                                   default SKY_POOL_DEFAULT_RETRIES */
    double timeout;             /* default per-call timeout in seconds; 0 = none */
    double start_timeout;       /* seconds for every worker to say HELLO; default 30 */
    double heartbeat;           /* seconds of silence after which a worker gives its host
                                   up (and exits) and the host gives a worker up (lost);
                                   the host pings every third of it, also while Lua code
                                   runs; 0 = never. Default SKY_POOL_DEFAULT_HEARTBEAT */
    const char *worker_path;    /* NULL: find skyrun-worker (see sky_pool_find_worker) */
    const sky_image *image;     /* set up on every node before workers start; may be NULL */
    const sky_volume *volumes;  /* mounted (or copied) on every node; see node_setup.h */
    size_t nvolumes;
    const char *accelerator;    /* "L4", "H100:8": only nodes with those GPUs are used,
                                   each worker gets its own slice (accelerators.h) */
    const char *name;           /* for messages; default "pool" */
    int quiet;                  /* do not forward worker output */
    /* Where worker output goes (default: stdout/stderr, "[node N] " before each line). */
    void (*on_output)(void *ud, int node, int worker, int stream, const char *line, size_t len);
    void *output_ud;
} sky_pool_options;

enum sky_call_status {
    SKY_CALL_PENDING = 0,
    SKY_CALL_OK,
    SKY_CALL_FAILED,
};

enum sky_call_error_kind {
    SKY_ERR_USER = WIRE_ERR_USER,       /* the function raised */
    SKY_ERR_TIMEOUT = WIRE_ERR_TIMEOUT,
    SKY_ERR_DECODE = WIRE_ERR_DECODE,   /* the worker could not decode the call */
    SKY_ERR_LOST = 10,                  /* the worker died, retries used up */
    SKY_ERR_INTERRUPTED = 11,           /* SIGINT/SIGTERM while waiting */
    SKY_ERR_POOL = 12,                  /* the pool is closed or has no worker left */
};

/* What a finished call produced. Owned by the pool until sky_pool_release(). */
typedef struct sky_call_outcome {
    int status;                 /* enum sky_call_status */
    const uint8_t *values;      /* SKY_CALL_OK: encoded results */
    size_t values_len;
    int error_kind;             /* SKY_CALL_FAILED: enum sky_call_error_kind */
    const char *message;        /* SKY_CALL_FAILED */
    const char *traceback;      /* worker traceback, may be "" */
    int node, worker;           /* where it ran last (-1 if never dispatched) */
    const char *host;           /* that node's hostname */
    int attempts;
} sky_call_outcome;

void sky_pool_options_init(sky_pool_options *o);

/* Checks the options (a message naming the bad one, e.g. "nodes must be
 * between 1 and 1024 (got 0)"), starts every node and worker and completes
 * the handshake with each. On failure returns NULL with a message naming
 * node, worker and cause; nothing is left running. codec supplies bytecode
 * for DEFINE frames and must outlive the pool. */
sky_pool *sky_pool_new(const sky_pool_options *opts, wire_codec *codec, lua_State *L,
                       char *err, size_t errlen);

/* Stops every worker (BYE, then SIGKILL after a short grace), reaps them,
 * stops every node (its keeper undoes what was set up there and removes its
 * folders). NULL-safe. */
void sky_pool_free(sky_pool *p);

/* The most a call's encoded function and arguments may take: a CALL frame
 * body is an 8-byte id, an 8-byte timeout and those values. */
#define SKY_POOL_MAX_CALL_BYTES ((size_t)WIRE_MAX_BODY - 16u)

/* Queues a call. values: encoded [function, arguments…]; protos: the
 * prototypes they refer to. node >= 0 pins it to that node (broadcast).
 * timeout <= 0 uses the pool's default. Returns the call id (> 0), or 0 if
 * the pool is closed. Values over SKY_POOL_MAX_CALL_BYTES make a call that
 * fails at once (callers should refuse them before). */
uint64_t sky_pool_submit(sky_pool *p, const uint8_t *values, size_t len,
                         const wire_hashes *protos, double timeout, int node);

/* Runs the event loop until call id completes (or an interrupt). Returns
 * the outcome (also for interrupts: SKY_ERR_INTERRUPTED; the call is then
 * abandoned). */
const sky_call_outcome *sky_pool_wait(sky_pool *p, uint64_t id);

/* Streams hand out the calls of a set as they complete, in completion
 * order, at O(1) per call. open: the set is ids[0..n) (calls already
 * complete come first, oldest first); returns the stream's id, 0 when out
 * of memory. next: runs the event loop until a call of the set completes
 * and stores its id; returns 1, 0 when every call has been handed out (or
 * released), -1 when interrupted. A call leaves the set when handed out or
 * released. close: forgets the stream (its calls stay in the pool). */
uint32_t sky_pool_stream_open(sky_pool *p, const uint64_t *ids, size_t n);
int sky_pool_stream_next(sky_pool *p, uint32_t stream, uint64_t *id);
void sky_pool_stream_close(sky_pool *p, uint32_t stream);

/* Does one non-blocking turn of the event loop; returns the outcome of id
 * if it has completed, else NULL. */
const sky_call_outcome *sky_pool_poll(sky_pool *p, uint64_t id);

/* Forgets a completed (or abandoned) call and frees its outcome. */
void sky_pool_release(sky_pool *p, uint64_t id);

int sky_pool_nodes(const sky_pool *p);
int sky_pool_workers_per_node(const sky_pool *p);
/* Encoded facts table a node's first worker sent in HELLO (hostname, cores, …). */
const uint8_t *sky_pool_node_facts(const sky_pool *p, int node, size_t *len);
const char *sky_pool_node_host(const sky_pool *p, int node);
/* Counters since the pool started (diagnostics, tests, benchmarks). */
typedef struct sky_pool_stats {
    uint64_t calls_sent;        /* CALL frames written, retries included */
    uint64_t defines_sent;      /* DEFINE frames: once per prototype per worker */
    uint64_t bytes_sent, bytes_received;
    uint64_t retries;           /* calls requeued after their worker was lost */
    uint64_t workers_lost;      /* worker processes that died or were killed */
    uint64_t calls_moved;       /* calls given back by a worker busy with a slow call
                                   and run on an idle one */
    uint64_t calls_held;        /* calls the pool holds now: queued, running, or done
                                   and not yet collected (released) */
} sky_pool_stats;
void sky_pool_get_stats(const sky_pool *p, sky_pool_stats *out);

/* Process ids of all live worker processes (tests, diagnostics; 0 where a
 * provider has none to give). Returns count. */
size_t sky_pool_worker_pids(const sky_pool *p, int *pids, size_t max);

/* The worker binary to run: $SKYRUN_WORKER, else skyrun-worker next to the
 * running executable, else the build tree's, else the installed one.
 * Returns a malloc'd path or NULL. */
char *sky_pool_find_worker(void);

#endif
