/*
 * localhost provider: nodes are process groups on this machine.
 *
 * Each node has a leader process that only exists to hold the node's
 * process group and, where permitted, a private mount namespace (so that a
 * volume mounted for node 0 is invisible to node 1 and to the host). Workers
 * are forked into the leader's group and namespace. Every process gets
 * PR_SET_PDEATHSIG, so a host killed with SIGKILL still leaves nothing
 * running; the pool's teardown kills the group explicitly on every other path.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compute/provider.h"
#include "util/interrupt.h"

typedef struct localhost {
    sky_provider base;
    char *root;           /* /tmp/skyrun-XXXXXX: one folder per node under it */
} localhost;

/* In a forked child: die with the host, even if the host is SIGKILLed. */
static void die_with_parent(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
}

static void reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
}

static int start_node(sky_provider *pr, sky_node *node, char *err, size_t errlen)
{
    localhost *lh = (localhost *)pr;
    char path[4096];
    snprintf(path, sizeof path, "%s/node-%d", lh->root, node->index);
    if (mkdir(path, 0700) != 0) {
        snprintf(err, errlen, "%s: cannot create working directory %s: %s", node->name, path, strerror(errno));
        return -1;
    }
    node->workdir = strdup(path);

    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "%s: pipe: %s", node->name, strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "%s: fork: %s", node->name, strerror(errno));
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    if (pid == 0) {
        close(ready[0]);
        setpgid(0, 0);
        die_with_parent(parent);
        reset_signals();
        char own_ns = 0;
        if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
            own_ns = 1;
        if (write(ready[1], &own_ns, 1) != 1)
            _exit(127);
        /* Hold nothing of the host's: its files, other pools' pipes. */
        close_range(3, ~0U, 0);
        for (;;)
            pause();
    }
    close(ready[1]);
    setpgid(pid, pid);   /* also from the parent: no race with the first worker */
    node->leader = pid;
    node->pgid = pid;
    sky_interrupt_track_pgid(pid);

    char own_ns = 0;
    ssize_t n;
    do
        n = read(ready[0], &own_ns, 1);
    while (n < 0 && errno == EINTR);
    close(ready[0]);
    if (n != 1) {
        snprintf(err, errlen, "%s: the node's leader process died while starting", node->name);
        return -1;
    }
    node->mntns_fd = -1;
    if (own_ns) {
        snprintf(path, sizeof path, "/proc/%d/ns/mnt", (int)pid);
        node->mntns_fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    return 0;
}

static int spawn_worker(sky_provider *pr, sky_node *node, const char *worker_path,
                        sky_worker_proc *proc, char *err, size_t errlen)
{
    (void)pr;
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, dia[2] = { -1, -1 }, exec_err[2] = { -1, -1 };
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(dia, O_CLOEXEC) || pipe2(exec_err, O_CLOEXEC)) {
        snprintf(err, errlen, "%s: pipe: %s", node->name, strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "%s: fork: %s", node->name, strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        int e = 0;
        const char *step = "setpgid";
        if (setpgid(0, node->pgid) != 0)
            e = errno;
        if (!e && node->mntns_fd >= 0 && setns(node->mntns_fd, CLONE_NEWNS) != 0)
            e = errno, step = "setns";
        if (!e && chdir(node->workdir) != 0)
            e = errno, step = "chdir";
        if (!e) {
            die_with_parent(parent);
            reset_signals();
            if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(dia[1], 2) < 0)
                e = errno, step = "dup2";
            /* Files the host opened without O_CLOEXEC (Lua's io.open does
             * that) must not leak into the worker; exec_err stays usable. */
            close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        }
        if (!e) {
            execl(worker_path, "skyrun-worker", (char *)NULL);
            e = errno;
            step = "exec";
        }
        char msg[128];
        int len = snprintf(msg, sizeof msg, "%s: %s", step, strerror(e));
        if (write(exec_err[1], msg, (size_t)len) < 0)
            _exit(127);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(dia[1]);
    close(exec_err[1]);
    char msg[128];
    ssize_t n;
    do
        n = read(exec_err[0], msg, sizeof msg - 1);
    while (n < 0 && errno == EINTR);
    close(exec_err[0]);
    if (n > 0) {
        msg[n] = 0;
        snprintf(err, errlen, "%s: cannot start worker %s: %s", node->name, worker_path, msg);
        waitpid(pid, NULL, 0);
        close(in[1]);
        close(out[0]);
        close(dia[0]);
        return -1;
    }
    proc->pid = pid;
    proc->to_worker = in[1];
    proc->from_worker = out[0];
    proc->diagnostics = dia[0];
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0) close(in[i]);
        if (out[i] >= 0) close(out[i]);
        if (dia[i] >= 0) close(dia[i]);
        if (exec_err[i] >= 0) close(exec_err[i]);
    }
    return -1;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void stop_node(sky_provider *pr, sky_node *node)
{
    (void)pr;
    if (node->pgid > 0) {
        kill(-node->pgid, SIGKILL);
        if (node->leader > 0)
            while (waitpid(node->leader, NULL, 0) < 0 && errno == EINTR)
                ;
        sky_interrupt_untrack_pgid(node->pgid);
        node->pgid = node->leader = 0;
    }
    if (node->mntns_fd >= 0) {
        close(node->mntns_fd);
        node->mntns_fd = -1;
    }
    if (node->workdir) {
        remove_tree(node->workdir);
        free(node->workdir);
        node->workdir = NULL;
    }
}

static void free_provider(sky_provider *pr)
{
    localhost *lh = (localhost *)pr;
    if (lh->root) {
        remove_tree(lh->root);
        sky_interrupt_untrack_dir(lh->root);
        free(lh->root);
    }
    free(lh);
}

sky_provider *sky_provider_localhost_new(char *err, size_t errlen)
{
    localhost *lh = calloc(1, sizeof *lh);
    if (!lh) {
        snprintf(err, errlen, "localhost provider: out of memory");
        return NULL;
    }
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/skyrun-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(path)) {
        snprintf(err, errlen, "localhost provider: cannot create %s: %s", path, strerror(errno));
        free(lh);
        return NULL;
    }
    lh->root = strdup(path);
    sky_interrupt_track_dir(lh->root);   /* removed even if a second Ctrl-C ends the host */
    lh->base.name = "localhost";
    lh->base.start_node = start_node;
    lh->base.spawn_worker = spawn_worker;
    lh->base.stop_node = stop_node;
    lh->base.free = free_provider;
    return &lh->base;
}
