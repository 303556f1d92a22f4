/*
 * provider: how a pool gets nodes and runs workers on them.
 *
 * A provider answers four questions: which nodes exist (start_node), how to
 * run a worker on one (spawn_worker: a process speaking frames on three
 * byte streams), how to stop a node and everything on it (stop_node), and
 * how to release the provider itself (free). The pool owns the protocol;
 * providers only move processes and bytes.
 */
#ifndef SKY_COMPUTE_PROVIDER_H
#define SKY_COMPUTE_PROVIDER_H

#include <stddef.h>
#include <sys/types.h>

typedef struct sky_node {
    int index;
    char name[64];        /* "node 0" */
    char *workdir;        /* the node's working directory (workers start there) */
    pid_t leader;         /* localhost: process holding the node's namespace and process group */
    pid_t pgid;           /* every process of the node is in this group */
    int mntns_fd;         /* the node's mount namespace, or -1 when it shares the host's */
} sky_node;

typedef struct sky_worker_proc {
    pid_t pid;
    int to_worker;        /* worker's stdin: frames from the host */
    int from_worker;      /* worker's stdout: frames to the host */
    int diagnostics;      /* worker's stderr */
} sky_worker_proc;

typedef struct sky_provider sky_provider;
struct sky_provider {
    const char *name;
    int (*start_node)(sky_provider *pr, sky_node *node, char *err, size_t errlen);
    int (*spawn_worker)(sky_provider *pr, sky_node *node, const char *worker_path,
                        sky_worker_proc *proc, char *err, size_t errlen);
    void (*stop_node)(sky_provider *pr, sky_node *node);
    void (*free)(sky_provider *pr);
};

/* Local process groups; each node in its own mount namespace where the OS
 * allows it (root or CAP_SYS_ADMIN), in the host's otherwise. */
sky_provider *sky_provider_localhost_new(char *err, size_t errlen);

#endif
