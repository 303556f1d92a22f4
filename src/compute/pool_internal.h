/*
 * pool_internal: what the files of the pool share (private to src/compute).
 *
 *   pool.c       bring-up: options and their defaults, provider, nodes,
 *                workers, handshake; accessors and counters
 *   scheduler.c  where calls are dispatched, retries and respawns decided,
 *                deadlines enforced; the event loop (pool_pump) and the
 *                submit / wait / poll / release entry points
 *   worker_io.c  where worker processes are started, read and written:
 *                frames in and out, HELLO/SETUP, output lines, diagnostics
 *   streams.c    completion-order streams (sky_pool_stream_*)
 *   teardown.c   where everything stops: BYE, reaping, nodes, memory
 *
 * Everything runs on the host's one thread.
 */
#ifndef SKY_COMPUTE_POOL_INTERNAL_H
#define SKY_COMPUTE_POOL_INTERNAL_H

#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "compute/accelerators.h"
#include "compute/calls.h"
#include "compute/pool.h"
#include "compute/provider.h"
#include "util/buf.h"
#include "wire/wire.h"

#define POOL_MAX_DEPTH 64          /* calls in flight per worker while calls are short */
#define POOL_TIMEOUT_GRACE 2.0     /* after a call's timeout, the worker's own hook has this long */
#define POOL_STOP_GRACE 1.0        /* workers get this long to exit after BYE */
#define POOL_EXIT_GRACE 0.2        /* a worker whose pipes closed gets this long to become reapable */
#define POOL_MAX_RESPAWNS 16       /* per worker slot without a successful call in between */

enum worker_state { W_STARTING, W_READY, W_DEAD };

/* Prototypes a worker already has (DEFINE sent), an open-addressing set. */
typedef struct protoset {
    wire_hash *v;
    unsigned char *used;
    size_t cap, n;
} protoset;

int protoset_has(const protoset *s, const wire_hash *h);
void protoset_add(protoset *s, const wire_hash *h);
void protoset_free(protoset *s);

/* A stream: ids of finished calls, in the order they finished, waiting to
 * be handed out by sky_pool_stream_next(). */
typedef struct call_stream {
    uint32_t id;                /* 0: slot free */
    uint64_t *ready;            /* room for every id of the stream: each is added once */
    size_t head, tail, cap;     /* handed out: [0, head); waiting: [head, tail) */
    size_t pending;             /* calls tagged with this stream, not finished yet */
} call_stream;

typedef struct worker {
    int node, index;            /* index: within its node */
    sky_proc proc;
    enum worker_state state;
    double started_at;
    int respawns;
    sky_buf in, out, scratch;
    size_t out_off;             /* out[0, out_off) is written already: a big argument
                                   drains without moving the rest after each write */
    sky_buf partial[3];         /* unfinished output line per stream (1, 2) */
    sky_buf diag;               /* unfinished stderr line */
    unsigned generation;        /* bumped at every spawn: frames of a lost process are dropped */
    protoset known;
    sky_call **inflight;        /* FIFO ring of POOL_MAX_DEPTH */
    size_t head, count;
    double last_done;
    double last_heard;          /* when bytes last came from it */
    double last_sent;           /* when bytes last went to it (heartbeat.c) */
} worker;

struct sky_pool {
    sky_pool_options opts;
    char *worker_path;          /* what workers run */
    char *keeper_path;          /* this build's skyrun-worker (node keepers) */
    char *dynamic_path;         /* skyrun-worker-dynamic beside worker_path, when there */
    const char **node_worker;   /* per node: worker_path or dynamic_path */
    wire_codec *codec;
    lua_State *T;               /* private Lua thread for SETUP tables and HELLO facts */
    int T_ref;
    sky_provider *provider;
    sky_node *nodes;
    int nnodes, per_node;
    sky_node_setup *setup;      /* image and volumes (node_setup.h) */
    sky_gpu **gpus;             /* per node, with an accelerator: its GPUs */
    int **gpu_chosen, *ngpu_chosen; /* per node: positions in gpus[n] the pool uses */
    worker *workers;
    int nworkers;
    sky_call_table calls;
    sky_call_alloc call_alloc;
    sky_call_queue queue;       /* unpinned calls not yet dispatched */
    sky_call_queue *pinned;     /* per node */
    uint64_t next_id;
    uint64_t done_counter;      /* completion order */
    call_stream *streams;       /* open streams (few: one per running pool:stream loop) */
    size_t nstreams;
    uint32_t next_stream;
    sky_pool_stats stats;
    double avg_call;            /* moving average of call service time (s) */
    int rr;                     /* round-robin start for dispatch */
    sky_buf frame;              /* scratch for building frame bodies */
    uint8_t **facts;            /* per node: encoded facts from the first HELLO */
    size_t *facts_len;
    char **hosts;               /* per node: its hostname (from the facts), for errors */
    struct pollfd *pfd;
    int *pfd_worker;
    char last_error[1200];
    int closing;
    int creating;               /* in sky_pool_new: a failed worker fails the pool, no respawn */
    /* heartbeat.c: a thread pings idle workers while the host runs Lua code.
     * io_mu is held by the host's thread whenever it touches workers. */
    pthread_mutex_t io_mu;
    pthread_t beat_thread;
    int beat_running;
    volatile int beat_stop;
};

double pool_now(void);

/* scheduler.c */
void pool_pump(sky_pool *p, int block);
/* flags: LOSE_KILL — kill it now (it is alive but must go: a timeout, a
 * malformed frame); otherwise it gets POOL_EXIT_GRACE to finish exiting.
 * LOSE_INNOCENT — the call that caused the loss has its own outcome, the
 * calls pipelined behind it are requeued without being charged. */
enum { LOSE_KILL = 1, LOSE_INNOCENT = 2 };
void pool_lose_worker(sky_pool *p, worker *w, const char *why, int flags);
sky_call *pool_take_answered(sky_pool *p, worker *w, uint64_t id);
/* The worker gave call id back (CANCELLED): it runs elsewhere, uncharged. */
void pool_call_given_back(sky_pool *p, worker *w, uint64_t id);
void pool_finish_call(sky_pool *p, sky_call *c);
void pool_fail_call(sky_pool *p, sky_call *c, int kind, const char *msg, const char *tb);

/* worker_io.c */
int pool_spawn(sky_pool *p, worker *w, char *err, size_t errlen);
void pool_send_call(sky_pool *p, worker *w, sky_call *c);
void pool_send_cancel(sky_pool *p, worker *w, sky_call *c);
void pool_read_frames(sky_pool *p, worker *w);
void pool_read_diagnostics(sky_pool *p, worker *w);
void pool_flush_writes(sky_pool *p, worker *w);
void pool_flush_lines(sky_pool *p, worker *w);
/* Ends the worker's process (killed once deadline, a pool_now() time, has
 * passed; 0 = at once), reaps it, closes its streams, describes how it
 * ended into how and forwards its last words (stderr, partial lines). */
void pool_end_worker(sky_pool *p, worker *w, double deadline, char *how, size_t howlen);
void pool_default_output(void *ud, int node, int worker, int stream, const char *line, size_t len);

/* heartbeat.c */
int pool_heartbeat_start(sky_pool *p);
void pool_heartbeat_stop(sky_pool *p);
/* A PING to each ready worker that has been sent nothing for a third of
 * the heartbeat (called with io_mu held). */
void pool_send_pings(sky_pool *p, double now);

/* streams.c */
void pool_stream_settle(sky_pool *p, sky_call *c, int ready);

/* teardown.c */
void pool_stop_workers(sky_pool *p);

#endif
