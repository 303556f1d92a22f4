/*
 * provider: how a pool gets nodes and runs processes on them.
 *
 * A provider answers a few questions: which nodes exist (start_node), how
 * to run a program on one (spawn: a process speaking on three byte
 * streams), how to end such a process and learn how it ended (end), how to
 * reach the node's keeper — the node's own process that makes folders,
 * writes credentials, mounts, and undoes all of it by itself if the host
 * disappears (request; src/worker/keeper.c) — how to stop a node and
 * everything on it (stop_node), and how to release the provider (free).
 * The pool owns the protocol; node setup (images, volumes) is written once
 * against spawn and request; providers only move processes and bytes.
 * Nothing here is specific to one provider: a provider keeps what it needs
 * per node behind sky_node.data.
 */
#ifndef SKY_COMPUTE_PROVIDER_H
#define SKY_COMPUTE_PROVIDER_H

#include <stddef.h>

#include "util/buf.h"
#include "wire/control.h"

typedef struct sky_node {
    int index;
    char name[64];        /* "node 0" */
    char *host;           /* where it runs, for messages ("localhost", an address) */
    char *workdir;        /* the node's working directory (workers start there) */
    char *private_dir;    /* a folder of the pool on the node, outside workdir,
                             readable by the pool's user only (credentials) */
    int own_mounts;       /* mounts made by processes of this node are seen by
                             this node alone (it has its own mount namespace) */
    int shares_host_files;/* a path on the node names the same file on the host */
    int privileged;       /* processes of the node may mount (root, or root of a
                             user namespace) */
    int installs_packages;/* a machine of its own: missing image.apt packages (and s3fs
                             for volumes) are installed there, never on the user's machine */
    char why_shared[300]; /* when !own_mounts: what stood in the way */
    void *data;           /* the provider's own */
} sky_node;

/* A process on a node: three byte streams (-1 when closed) and the
 * provider's handle for it. */
typedef struct sky_proc {
    int to;               /* its stdin */
    int from;             /* its stdout */
    int diag;             /* its stderr */
    long id;              /* a number for messages (a pid on localhost), 0 = none */
    void *handle;         /* the provider's */
} sky_proc;

#define SKY_PROC_INIT { -1, -1, -1, 0, NULL }

/* What to run. argv[0] containing '/' is a path on the node; otherwise it
 * is looked up in the node's PATH. */
typedef struct sky_spawn {
    const char *const *argv;
    const char *const *env;   /* "NAME=value" set on top of the node's environment; may be NULL */
    const char *cwd;          /* NULL: the node's workdir */
} sky_spawn;

typedef struct sky_provider sky_provider;
struct sky_provider {
    const char *name;
    const char *worker_path;  /* the skyrun-worker binary on this machine; set by
                                 the pool before any node starts */
    int (*start_node)(sky_provider *pr, sky_node *node, char *err, size_t errlen);
    /* Optional: starts n nodes at once (remote hosts come up in parallel);
     * on failure some may have started: the pool stops every node that
     * has data. NULL: start_node for each in turn. */
    int (*start_nodes)(sky_provider *pr, sky_node *nodes, int n, char *err, size_t errlen);
    int (*spawn)(sky_provider *pr, sky_node *node, const sky_spawn *spec, sky_proc *proc,
                 char *err, size_t errlen);
    /* Waits for proc to exit until deadline (a pool_now() time; already past:
     * no wait), then kills it; reaps it, closes its streams, and describes
     * how it ended into how ("exited with status 3", "was killed by signal
     * 9 (Killed)"). Returns the exit status, 128 + signal, or -1 if unknown. */
    int (*end)(sky_provider *pr, sky_node *node, sky_proc *proc, double deadline,
               char *how, size_t howlen);
    /* Sends one request record (wire/control.h: track, mkdirs, write, bind,
     * umount, remove, probe) to the node's keeper and waits for its answer:
     * 0 with *answer (valid until the next call for this node) when it is
     * "ok", -1 with err (naming the node) otherwise. */
    int (*request)(sky_provider *pr, sky_node *node, const sky_buf *record,
                   const control_record **answer, char *err, size_t errlen);
    void (*stop_node)(sky_provider *pr, sky_node *node);
    void (*free)(sky_provider *pr);
};

/* Nodes on this machine (providers/localhost.c); each in its own mount
 * namespace where the OS allows it: as root always, otherwise in a user
 * namespace when user_namespace is set and the kernel allows one. */
typedef struct sky_localhost_options {
    int user_namespace;
} sky_localhost_options;
sky_provider *sky_provider_localhost_new(const sky_localhost_options *opts, char *err, size_t errlen);

/* Nodes on hosts over SSH, one node per host (providers/ssh.c). A host is
 * "[user@]name[:port]"; name may be a ~/.ssh/config alias (HostName, User,
 * Port, IdentityFile are followed). NULL or 0 options take ~/.ssh/config's
 * value, then OpenSSH's default. */
typedef struct sky_ssh_options {
    const char *const *hosts;
    size_t nhosts;
    const char *user;
    const char *identity;         /* a private key file; the agent is tried first */
    int port;
    const char *known_hosts;      /* default ~/.ssh/known_hosts */
    const char *host_key_policy;  /* "strict" (default): unknown hosts refused; "accept-new": recorded.
                                     A changed key is always refused. */
    const char *ssh_config;       /* default ~/.ssh/config */
    double connect_seconds;       /* default 15 */
    int workers;                  /* workers per node the pool will start (a hint: that many
                                     shells are opened ahead, so workers start at once) */
} sky_ssh_options;
sky_provider *sky_provider_ssh_new(const sky_ssh_options *opts, char *err, size_t errlen);

/* Nodes of one Slurm allocation (providers/slurm.c, docs/PROVIDERS.md):
 * one batch job per pool, a keeper and every process a job step. Strings
 * are copied; NULL/0 leave Slurm's default (time: SKY_SLURM_DEFAULT_TIME). */
#define SKY_SLURM_DEFAULT_TIME "60"            /* minutes: never unlimited */
#define SKY_SLURM_DEFAULT_START_SECONDS 600.0  /* pending longer: the job is cancelled */
#define SKY_SLURM_MAX_SBATCH 32
typedef struct sky_slurm_options {
    int workers;                  /* per node (with cpus_per_worker: --ntasks-per-node) */
    const char *partition, *account, *qos, *constraint;
    const char *time;             /* sbatch --time, e.g. "30" or "2:00:00" */
    int cpus_per_worker;          /* 0: steps share the node's CPUs (--overlap) */
    const char *gpus_per_node;    /* sbatch --gpus-per-node, e.g. "h100:2" */
    const char *const *sbatch;    /* extra sbatch flags, verbatim */
    size_t nsbatch;
    double start_seconds;         /* how long the job may pend */
} sky_slurm_options;
sky_provider *sky_provider_slurm_new(const sky_slurm_options *opts, char *err, size_t errlen);
/* `skyrun slurm gc`: cancels this user's pool jobs (skyrun.HOST.PID) whose
 * client, a process of this machine, is gone; says each on stdout. 0, or -1
 * with err (Slurm's message). */
int sky_slurm_gc(int dry_run, char *err, size_t errlen);

#endif
