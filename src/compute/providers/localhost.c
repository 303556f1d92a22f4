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

#include "compute/provider.h"
#include "util/alloc.h"
#include "util/interrupt.h"
#include "util/log.h"
#include "wire/control.h"

#define REPLY_SECONDS 10.0       /* a keeper answers at once; this is for a stalled machine */
#define STOP_SECONDS 15.0        /* a keeper's cleanup: kill, unmount, remove */
#define KILL_SECONDS 5.0         /* after SIGKILL, until the keeper reports the exit */
#define MAX_HELD_FDS 64

typedef struct exit_note {
    long id;
    int code;
    char how[160];
} exit_note;

typedef struct lh_node {
    pid_t keeper;
    int channel;              /* socket to the keeper, -1 once closed */
    char *dir;                /* node-N */
    sky_buf in;               /* bytes from the keeper not yet parsed */
    int held[MAX_HELD_FDS];   /* descriptors received, not yet claimed */
    int nheld;
    exit_note *exits;         /* processes that ended, not yet asked about */
    size_t nexits, capexits;
    control_record rec;       /* the last record read (fields point into `last`) */
    sky_buf last;
} lh_node;

typedef struct localhost {
    sky_provider base;
    char *root;
    int userns;
} localhost;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the channel to a keeper ----------------------------------------------- */

static void close_held(lh_node *ln)
{
    for (int i = 0; i < ln->nheld; i++)
        close(ln->held[i]);
    ln->nheld = 0;
}

/* Reads what the keeper sent (and the descriptors that came with it),
 * waiting until deadline. Returns 1 when bytes came, 0 on timeout, -1 when
 * the keeper is gone. */
static int channel_read(lh_node *ln, double deadline)
{
    if (ln->channel < 0)
        return -1;
    for (;;) {
        double left = deadline - mono();
        struct pollfd p = { .fd = ln->channel, .events = POLLIN };
        int r = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        break;
    }
    sky_buf_reserve(&ln->in, 4096);
    union {
        char buf[CMSG_SPACE(8 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { ln->in.data + ln->in.len, ln->in.cap - ln->in.len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                          .msg_controllen = sizeof ctl.buf };
    ssize_t n;
    do
        n = recvmsg(ln->channel, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int fds[8];
        memcpy(fds, CMSG_DATA(c), nfd * sizeof(int));
        for (size_t i = 0; i < nfd; i++) {
            if (ln->nheld < MAX_HELD_FDS)
                ln->held[ln->nheld++] = fds[i];
            else
                close(fds[i]);
        }
    }
    if (n <= 0)
        return -1;
    ln->in.len += (size_t)n;
    return 1;
}

static void note_exit(lh_node *ln, const control_record *r)
{
    int ok1, ok2;
    long id = (long)control_int(r, 1, &ok1);
    int code = (int)control_int(r, 2, &ok2);
    if (!ok1 || !ok2 || r->n < 4)
        return;
    if (ln->nexits == ln->capexits) {
        size_t cap = ln->capexits ? 2 * ln->capexits : 16;
        exit_note *v = realloc(ln->exits, cap * sizeof *v);
        if (!v)
            abort();
        ln->exits = v;
        ln->capexits = cap;
    }
    exit_note *e = &ln->exits[ln->nexits++];
    e->id = id;
    e->code = code;
    snprintf(e->how, sizeof e->how, "%.*s", (int)r->len[3], r->field[3]);
}

/* The next record that answers a request (exits are noted on the way).
 * Returns 0 with ln->rec filled, -1 on timeout or a keeper gone. */
static int next_answer(lh_node *ln, double deadline, char *err, size_t errlen, const char *what)
{
    for (;;) {
        size_t used;
        wire_err we;
        int rc = ln->in.len ? control_next(ln->in.data, ln->in.len, &ln->rec, &used, &we) : WIRE_AGAIN;
        if (rc == WIRE_EBAD) {
            snprintf(err, errlen, "%s: the node's keeper sent a malformed record: %s", what, we.msg);
            return -1;
        }
        if (rc == WIRE_OK) {
            /* Keep the record's bytes where its fields can point to. */
            sky_buf_reset(&ln->last);
            sky_buf_append(&ln->last, ln->in.data, used);
            sky_buf_consume(&ln->in, used);
            control_next(ln->last.data, ln->last.len, &ln->rec, &used, &we);
            if (control_is(&ln->rec, 0, "exit")) {
                note_exit(ln, &ln->rec);
                continue;
            }
            if (control_is(&ln->rec, 0, "warn")) {
                sky_log(SKY_LOG_WARN, "%s: %.*s", what, (int)ln->rec.len[1], ln->rec.field[1]);
                continue;
            }
            return 0;
        }
        int r = channel_read(ln, deadline);
        if (r == 0) {
            snprintf(err, errlen, "%s: the node's keeper did not answer in %.0f s", what, REPLY_SECONDS);
            return -1;
        }
        if (r < 0) {
            snprintf(err, errlen, "%s: the node's keeper is gone", what);
            return -1;
        }
    }
}

static int send_request(lh_node *ln, const sky_buf *req)
{
    size_t done = 0;
    while (done < req->len && ln->channel >= 0) {
        ssize_t n = send(ln->channel, req->data + done, req->len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return done == req->len ? 0 : -1;
}

/* Sends req and waits for its answer: 0 for "ok"/"ready", -1 with err. */
static int request(lh_node *ln, const sky_buf *req, const char *what, char *err, size_t errlen)
{
    if (send_request(ln, req) != 0) {
        snprintf(err, errlen, "%s: the node's keeper is gone", what);
        return -1;
    }
    if (next_answer(ln, mono() + REPLY_SECONDS, err, errlen, what) != 0)
        return -1;
    if (control_is(&ln->rec, 0, "err")) {
        snprintf(err, errlen, "%s: %.*s", what, (int)(ln->rec.n > 1 ? ln->rec.len[1] : 0),
                 ln->rec.n > 1 ? ln->rec.field[1] : "");
        return -1;
    }
    return 0;
}

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
    if (ln->channel >= 0)
        close(ln->channel);
    close_held(ln);
    sky_buf_free(&ln->in);
    sky_buf_free(&ln->last);
    free(ln->exits);
    free(ln->dir);
    free(ln);
}

static int start_node(sky_provider *pr, sky_node *node, char *err, size_t errlen)
{
    localhost *lh = (localhost *)pr;
    lh_node *ln = calloc(1, sizeof *ln);
    if (!ln)
        abort();
    ln->channel = -1;
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
    ln->channel = sv[0];
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
    if (next_answer(ln, mono() + REPLY_SECONDS, why, sizeof why, node->name) != 0 ||
        !control_is(&ln->rec, 0, "ready") || ln->rec.n < 3) {
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
    node->own_mounts = control_is(&ln->rec, 1, "1");
    node->privileged = control_is(&ln->rec, 2, "1");
    if (ln->rec.n > 3)
        snprintf(node->why_shared, sizeof node->why_shared, "%.*s", (int)ln->rec.len[3], ln->rec.field[3]);
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
    close_held(ln);   /* nothing may be left over from an earlier answer */
    int rc = request(ln, &req, node->name, err, errlen);
    sky_buf_free(&req);
    if (rc != 0)
        return -1;
    int ok;
    long id = (long)control_int(&ln->rec, 1, &ok);
    /* The descriptors travel with the answer's first bytes. */
    for (int tries = 0; ln->nheld < 3 && tries < 10; tries++)
        if (channel_read(ln, mono() + 0.1) < 0)
            break;
    if (!ok || ln->nheld < 3) {
        close_held(ln);
        snprintf(err, errlen, "%s: the node's keeper started a process but sent no streams", node->name);
        return -1;
    }
    proc->to = ln->held[0];
    proc->from = ln->held[1];
    proc->diag = ln->held[2];
    proc->id = id;
    proc->handle = NULL;
    ln->nheld = 0;
    return 0;
}

static int take_exit(lh_node *ln, long id, char *how, size_t howlen)
{
    for (size_t i = 0; i < ln->nexits; i++) {
        if (ln->exits[i].id != id)
            continue;
        int code = ln->exits[i].code;
        snprintf(how, howlen, "%s", ln->exits[i].how);
        ln->exits[i] = ln->exits[--ln->nexits];
        return code;
    }
    return -2;
}

/* Notes the exits among the records already read (nothing else is
 * expected while no request is pending; a warning is logged). */
static void drain_records(lh_node *ln, const sky_node *node)
{
    size_t used;
    wire_err we;
    while (ln->in.len && control_next(ln->in.data, ln->in.len, &ln->rec, &used, &we) == WIRE_OK) {
        if (control_is(&ln->rec, 0, "exit"))
            note_exit(ln, &ln->rec);
        else if (control_is(&ln->rec, 0, "warn") && ln->rec.n > 1)
            sky_log(SKY_LOG_WARN, "%s: %.*s", node->name, (int)ln->rec.len[1], ln->rec.field[1]);
        sky_buf_consume(&ln->in, used);
    }
}

/* Waits until deadline for the exit of id to be reported; -2 if it was not. */
static int wait_exit(lh_node *ln, const sky_node *node, long id, double deadline, char *how, size_t howlen)
{
    for (;;) {
        drain_records(ln, node);
        int code = take_exit(ln, id, how, howlen);
        if (code != -2)
            return code;
        if (channel_read(ln, deadline) <= 0) {
            drain_records(ln, node);
            return take_exit(ln, id, how, howlen);
        }
    }
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
    int code = wait_exit(ln, node, proc->id, deadline, how, howlen);
    if (code == -2) {
        sky_buf req = SKY_BUF_INIT;
        control_field_str(&req, "kill");
        control_field_int(&req, proc->id);
        control_end(&req);
        send_request(ln, &req);
        sky_buf_free(&req);
        code = wait_exit(ln, node, proc->id, mono() + KILL_SECONDS, how, howlen);
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
    if (request(ln, record, node->name, err, errlen) != 0)
        return -1;
    *answer = &ln->rec;
    return 0;
}

static void stop_node(sky_provider *pr, sky_node *node)
{
    (void)pr;
    lh_node *ln = node->data;
    if (!ln)
        return;
    if (ln->keeper > 0) {
        sky_buf req = SKY_BUF_INIT;
        control_field_str(&req, "stop");
        control_end(&req);
        char err[300] = "";
        double until = mono() + STOP_SECONDS;
        if (send_request(ln, &req) == 0) {
            /* Warnings are logged as they come; "stopped" ends it. */
            while (next_answer(ln, until, err, sizeof err, node->name) == 0 &&
                   !control_is(&ln->rec, 0, "stopped"))
                ;
        }
        sky_buf_free(&req);
        close(ln->channel);
        ln->channel = -1;
        int status;
        pid_t r;
        while ((r = waitpid(ln->keeper, &status, WNOHANG)) == 0 && mono() < until) {
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

static void free_provider(sky_provider *pr)
{
    localhost *lh = (localhost *)pr;
    if (lh->root) {
        /* Keepers removed their nodes; what is left is from nodes that never started. */
        nftw(lh->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
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
