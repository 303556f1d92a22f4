/*
 * localhost provider: nodes on this machine.
 *
 * Each node is a keeper process (`skyrun-worker --keeper`, see
 * src/worker/keeper.c) started here and talked to over a socket: it gives
 * the node its own mount namespace where the OS allows it (root; or a user
 * namespace for a pool that needs one), holds the node's process group,
 * starts every process of the node as its child — so they share its
 * namespace and its root, inside a chroot too — and hands their streams
 * back. When the pool stops a node, or when this host disappears without
 * doing so (SIGKILL, os.exit), the keeper kills what runs there, unmounts,
 * removes what it was told to and the node's folder, then exits.
 *
 * Layout: $TMPDIR/skyrun-XXXXXX/node-N/{work,private}; work is the workers'
 * folder, private (0700) holds credentials.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/close_range.h>

#include "compute/keeper_client.h"
#include "compute/provider.h"
#include "util/alloc.h"
#include "util/fs.h"
#include "util/interrupt.h"
#include "util/log.h"
#include "wire/control.h"

#define STOP_SECONDS 15.0        /* a keeper's cleanup: kill, unmount, remove */
#define KILL_SECONDS 5.0         /* after SIGKILL, until the keeper reports the exit */

typedef struct lh_node {
    pid_t keeper;
    keeper_client kc;         /* over a unix socket: streams come back as descriptors */
    char *dir;                /* node-N */
} lh_node;

typedef struct localhost {
    sky_provider base;
    char *root;
    int userns;
} localhost;

/* ---- nodes ----------------------------------------------------------------- */

static int make_dir(const char *path, mode_t mode, const sky_node *node, char *err, size_t errlen)
{
    if (mkdir(path, mode) != 0) {
        snprintf(err, errlen, "%s: cannot create %s: %s", node->name, path, strerror(errno));
        return -1;
    }
    return 0;
}

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (!s)
        abort();
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

static void free_lh_node(lh_node *ln)
{
    if (!ln)
        return;
    keeper_client_close(&ln->kc);
    free(ln->dir);
    free(ln);
}

static int start_node(sky_provider *pr, sky_node *node, char *err, size_t errlen)
{
    localhost *lh = (localhost *)pr;
    lh_node *ln = calloc(1, sizeof *ln);
    if (!ln)
        abort();
    keeper_client_init(&ln->kc, -1, -1, 1, node->name);
    node->data = ln;
    char name[32];
    snprintf(name, sizeof name, "node-%d", node->index);
    ln->dir = path_join(lh->root, name);
    node->workdir = path_join(ln->dir, "work");
    node->private_dir = path_join(ln->dir, "private");
    node->host = strdup("localhost");
    if (!node->host)
        abort();
    if (make_dir(ln->dir, 0700, node, err, errlen) || make_dir(node->workdir, 0700, node, err, errlen) ||
        make_dir(node->private_dir, 0700, node, err, errlen))
        return -1;

    int sv[2], report[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, errlen, "%s: socketpair: %s", node->name, strerror(errno));
        return -1;
    }
    if (pipe2(report, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "%s: pipe: %s", node->name, strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    /* The node's environment is ours without the storage secrets: nothing
     * on a node gets keys it was not given on purpose (image.env can). */
    static const char *const secrets[] = { "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=",
                                           "AWS_SECURITY_TOKEN=", "AWS_ACCESS_KEY_ID=", NULL };
    extern char **environ;
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = sky_xcalloc(nenv + 1, sizeof *envp);
    for (size_t i = 0, k = 0; i < nenv; i++) {
        int secret = 0;
        for (size_t j = 0; secrets[j]; j++)
            secret |= strncmp(environ[i], secrets[j], strlen(secrets[j])) == 0;
        if (!secret)
            envp[k++] = environ[i];
    }
    pid_t pid = fork();
    if (pid < 0) {
        free(envp);
        snprintf(err, errlen, "%s: fork: %s", node->name, strerror(errno));
        close(sv[0]);
        close(sv[1]);
        close(report[0]);
        close(report[1]);
        return -1;
    }
    if (pid == 0) {
        /* Between fork and exec: async-signal-safe calls only. */
        setpgid(0, 0);   /* the terminal's Ctrl-C is the host's to handle */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (dup2(sv[1], 0) < 0 || devnull < 0 || dup2(devnull, 1) < 0)
            _exit(127);
        close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        const char *argv[] = { "skyrun-worker", "--keeper", ln->dir, lh->userns ? "--userns" : NULL, NULL };
        execve(pr->worker_path, (char *const *)argv, envp);
        int e = errno;
        if (write(report[1], &e, sizeof e) < 0)
            _exit(127);
        _exit(127);
    }
    free(envp);
    close(sv[1]);
    close(report[1]);
    ln->keeper = pid;
    ln->kc.in_fd = ln->kc.out_fd = sv[0];
    int e = 0;
    ssize_t n;
    do
        n = read(report[0], &e, sizeof e);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof e) {
        snprintf(err, errlen, "%s: cannot start %s --keeper: %s", node->name, pr->worker_path, strerror(e));
        return -1;
    }
    char why[300] = "";
    if (keeper_client_next(&ln->kc, keeper_now() + KEEPER_REPLY_SECONDS, why, sizeof why) != 0 ||
        !control_is(&ln->kc.rec, 0, "ready") || ln->kc.rec.n < 3) {
        /* Say how it ended: its own diagnostics went to our stderr. */
        int status = 0;
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        ln->keeper = 0;
        snprintf(err, errlen, "%s: %s --keeper did not start (%s)", node->name, pr->worker_path,
                 WIFEXITED(status) ? "it exited with an error" : "it did not answer");
        return -1;
    }
    const control_record *r = &ln->kc.rec;
    node->own_mounts = control_is(r, 1, "1");
    node->privileged = control_is(r, 2, "1");
    if (r->n > 3)
        snprintf(node->why_shared, sizeof node->why_shared, "%.*s", (int)r->len[3], r->field[3]);
    node->shares_host_files = 1;
    return 0;
}

static int spawn(sky_provider *pr, sky_node *node, const sky_spawn *spec, sky_proc *proc,
                 char *err, size_t errlen)
{
    (void)pr;
    lh_node *ln = node->data;
    sky_buf req = SKY_BUF_INIT;
    size_t argc = 0, envc = 0;
    while (spec->argv[argc])
        argc++;
    while (spec->env && spec->env[envc])
        envc++;
    control_field_str(&req, "spawn");
    control_field_str(&req, spec->cwd ? spec->cwd : node->workdir);
    control_field_int(&req, (long long)argc);
    for (size_t i = 0; i < argc; i++)
        control_field_str(&req, spec->argv[i]);
    control_field_int(&req, (long long)envc);
    for (size_t i = 0; i < envc; i++)
        control_field_str(&req, spec->env[i]);
    control_end(&req);
    int rc = keeper_client_request(&ln->kc, &req, err, errlen);
    sky_buf_free(&req);
    if (rc != 0)
        return -1;
    int ok, fds[3];
    long id = (long)control_int(&ln->kc.rec, 1, &ok);
    if (!ok || keeper_client_take_fds(&ln->kc, fds, 3) != 0) {
        snprintf(err, errlen, "%s: the node's keeper started a process but sent no streams", node->name);
        return -1;
    }
    proc->to = fds[0];
    proc->from = fds[1];
    proc->diag = fds[2];
    proc->id = id;
    proc->handle = NULL;
    return 0;
}

static int end_proc(sky_provider *pr, sky_node *node, sky_proc *proc, double deadline,
                    char *how, size_t howlen)
{
    (void)pr;
    lh_node *ln = node->data;
    int *fds[] = { &proc->to, &proc->from, &proc->diag };
    for (size_t i = 0; i < 3; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    if (proc->id <= 0) {
        snprintf(how, howlen, "was never started");
        return -1;
    }
    int code = keeper_client_wait_exit(&ln->kc, proc->id, deadline, how, howlen);
    if (code == -2) {
        sky_buf req = SKY_BUF_INIT;
        control_field_str(&req, "kill");
        control_field_int(&req, proc->id);
        control_end(&req);
        keeper_client_send(&ln->kc, &req);
        sky_buf_free(&req);
        code = keeper_client_wait_exit(&ln->kc, proc->id, keeper_now() + KILL_SECONDS, how, howlen);
        if (code == -2) {
            snprintf(how, howlen, "was lost");
            code = -1;
        }
    }
    proc->id = 0;
    return code;
}

static int keeper_request(sky_provider *pr, sky_node *node, const sky_buf *record,
                          const control_record **answer, char *err, size_t errlen)
{
    (void)pr;
    lh_node *ln = node->data;
    if (keeper_client_request(&ln->kc, record, err, errlen) != 0)
        return -1;
    *answer = &ln->kc.rec;
    return 0;
}

static void stop_node(sky_provider *pr, sky_node *node)
{
    (void)pr;
    lh_node *ln = node->data;
    if (!ln)
        return;
    if (ln->keeper > 0) {
        double until = keeper_now() + STOP_SECONDS;
        keeper_client_stop(&ln->kc, until);   /* warnings are logged as they come */
        keeper_client_close(&ln->kc);
        int status;
        pid_t r;
        while ((r = waitpid(ln->keeper, &status, WNOHANG)) == 0 && keeper_now() < until) {
            struct timespec ms = { 0, 5000000 };
            nanosleep(&ms, NULL);
        }
        if (r == 0) {
            sky_log(SKY_LOG_WARN, "%s: its keeper did not finish cleaning up in %.0f s; killed",
                    node->name, STOP_SECONDS);
            kill(ln->keeper, SIGKILL);
            while (waitpid(ln->keeper, NULL, 0) < 0 && errno == EINTR)
                ;
        }
        ln->keeper = 0;
    }
    free_lh_node(ln);
    node->data = NULL;
}

static void free_provider(sky_provider *pr)
{
    localhost *lh = (localhost *)pr;
    if (lh->root) {
        /* Keepers removed their nodes; what is left is from nodes that never started. */
        sky_remove_tree(lh->root);
        sky_interrupt_untrack_dir(lh->root);
        free(lh->root);
    }
    free(lh);
}

sky_provider *sky_provider_localhost_new(const sky_localhost_options *opts, char *err, size_t errlen)
{
    localhost *lh = calloc(1, sizeof *lh);
    if (!lh)
        abort();
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/skyrun-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(path)) {
        snprintf(err, errlen, "localhost provider: cannot create %s: %s", path, strerror(errno));
        free(lh);
        return NULL;
    }
    lh->root = strdup(path);
    if (!lh->root)
        abort();
    lh->userns = opts && opts->user_namespace;
    sky_interrupt_track_dir(lh->root);   /* removed even if a second Ctrl-C ends the host */
    lh->base.name = "localhost";
    lh->base.start_node = start_node;
    lh->base.spawn = spawn;
    lh->base.end = end_proc;
    lh->base.request = keeper_request;
    lh->base.stop_node = stop_node;
    lh->base.free = free_provider;
    return &lh->base;
}
