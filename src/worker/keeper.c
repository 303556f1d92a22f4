/*
 * keeper: `skyrun-worker --keeper NODE_DIR [--userns]`, one per node.
 *
 * It is the node's own process, talking to the host over its stdin (a
 * socket; records of wire/control.h). At start it gives the node a mount
 * namespace of its own where it can (root; or, with --userns, a user
 * namespace where the kernel allows unprivileged ones), so that volumes
 * mounted for this node are seen by it alone, and a process group (held by
 * a child that only waits) that every process of the node joins. Then it
 * starts the processes the host asks for — workers, image phases, s3fs —
 * as its own children, so they share its namespace and its root (also
 * inside a chroot, where joining a namespace from outside would reset the
 * root), and hands their three streams back over the socket.
 *
 * With --stdio it talks over its stdin and stdout instead (a remote
 * provider's ssh channel or Slurm step): it cannot hand streams back then,
 * so that provider starts processes itself; with --shared-mounts it keeps
 * the machine's mount namespace (a machine of its own, where the node's
 * mounts are nobody else's).
 *
 * A remote provider starts processes itself (an ssh exec channel each);
 * each writes an empty file NODE_DIR/pids/PID first, and the keeper ends
 * those too (with their process groups) when it cleans up.
 *
 * Its other job is to leave nothing behind. The host tells it, before
 * doing so, what it mounts and which files and folders it creates; when
 * the host asks it to stop — or when the socket ends because the host is
 * gone (SIGKILL, os.exit, a crash) — it kills the node's process group,
 * unmounts, removes those files and folders and NODE_DIR, and exits.
 */
#include "worker/worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/close_range.h>

#include "util/fs.h"
#include "wire/control.h"

#define MAX_TRACKED 256
#define MAX_CHILDREN 4096
#define CHILD_WAIT_SECONDS 3.0

enum track_kind { T_MOUNT, T_FILE, T_DIR };

static struct {
    int in_fd, out_fd;           /* the channel: one unix socket (fd 0), or stdin/stdout (--stdio) */
    int stdio;                   /* a plain byte stream: no descriptors can travel */
    char *node_dir;
    pid_t group;                 /* the holder's pid: the node's process group */
    pid_t children[MAX_CHILDREN];/* processes started for the host, 0 = free */
    struct { enum track_kind kind; char *path; } tracked[MAX_TRACKED];
    int ntracked;
    sky_buf out;                 /* records to the host */
    int host_gone;
} K;

#define say(...) worker_diagnose("skyrun-keeper", __VA_ARGS__)

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- to the host ---------------------------------------------------------- */

static void send_fds(const void *bytes, size_t len, const int *fds, int nfds)
{
    if (K.host_gone)
        return;
    struct iovec iov = { (void *)bytes, len };
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds > 0) {
        memset(&ctl, 0, sizeof ctl);
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    size_t done = 0;
    while (done < len) {
        iov.iov_base = (char *)bytes + done;
        iov.iov_len = len - done;
        ssize_t n = K.stdio ? write(K.out_fd, (const char *)bytes + done, len - done)
                            : sendmsg(K.out_fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            K.host_gone = 1;
            return;
        }
        done += (size_t)n;
        msg.msg_control = NULL;   /* the descriptors went with the first bytes */
        msg.msg_controllen = 0;
    }
}

static void reply(const char *verb, const char *a, const char *b, const char *c)
{
    sky_buf_reset(&K.out);
    control_field_str(&K.out, verb);
    if (a)
        control_field_str(&K.out, a);
    if (b)
        control_field_str(&K.out, b);
    if (c)
        control_field_str(&K.out, c);
    control_end(&K.out);
    send_fds(K.out.data, K.out.len, NULL, 0);
}

/* ---- start-up ------------------------------------------------------------- */

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Mounts made here must not propagate back to the host: every mount of
 * the new namespace becomes private. In a chroot whose folder is not a
 * mount point, "/" cannot be named as one: say so (why). */
static int make_private(char *why, size_t whylen)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
        return 0;
    if (errno == EINVAL)
        snprintf(why, whylen, "its root is not a mount point (a chroot? bind-mount its folder onto "
                              "itself first: mount --bind DIR DIR)");
    else
        snprintf(why, whylen, "making its mounts private failed: %s", strerror(errno));
    return -1;
}

/* A mount namespace of the node's own: directly as root, else inside a
 * user namespace where this user is root (uid and gid mapped 1:1). why
 * says what stood in the way when there is none. */
static void isolate(int userns, int *own_mounts, int *privileged, char *why, size_t whylen)
{
    *own_mounts = *privileged = 0;
    if (geteuid() == 0) {
        *privileged = 1;
        if (unshare(CLONE_NEWNS) != 0)
            snprintf(why, whylen, "unshare(CLONE_NEWNS): %s", strerror(errno));
        else if (make_private(why, whylen) == 0)
            *own_mounts = 1;
        return;
    }
    if (!userns) {
        snprintf(why, whylen, "not root, and no user namespace was asked for");
        return;
    }
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
        snprintf(why, whylen, "this machine does not allow unprivileged user namespaces (%s)", strerror(errno));
        return;
    }
    char map[64];
    write_file("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
    int ok = write_file("/proc/self/uid_map", map) == 0;
    snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
    ok = ok && write_file("/proc/self/gid_map", map) == 0;
    if (!ok)
        snprintf(why, whylen, "cannot map the user into its namespace (is /proc mounted?)");
    else if (make_private(why, whylen) == 0)
        *own_mounts = *privileged = 1;
}

/* The node's process group lives as long as this child does. */
static pid_t start_group_holder(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        close_range(3, ~0U, 0);
        close(K.in_fd);
        close(K.out_fd);
        for (;;)
            pause();
    }
    if (pid > 0)
        setpgid(pid, pid);
    return pid;
}

/* ---- processes ------------------------------------------------------------ */

static int remember_child(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (!K.children[i]) {
            K.children[i] = pid;
            return 0;
        }
    return -1;
}

static int is_child(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (K.children[i] == pid)
            return 1;
    return 0;
}

static void forget_child(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (K.children[i] == pid)
            K.children[i] = 0;
}

static void describe_status(int status, char *how, size_t len, int *code)
{
    if (WIFSIGNALED(status)) {
        *code = 128 + WTERMSIG(status);
        snprintf(how, len, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else {
        *code = WEXITSTATUS(status);
        snprintf(how, len, "exited with status %d", WEXITSTATUS(status));
    }
}

static void reap_children(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == K.group) {
            K.group = 0;   /* the holder died: nothing new can join the group */
            continue;
        }
        if (!is_child(pid))
            continue;
        forget_child(pid);
        char how[200], id[32], code_s[16];
        int code;
        describe_status(status, how, sizeof how, &code);
        snprintf(id, sizeof id, "%ld", (long)pid);
        snprintf(code_s, sizeof code_s, "%d", code);
        reply("exit", id, code_s, how);
    }
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child_exec(char *const argv[], char *const envp[], const char *cwd,
                       int in, int out, int err, int report)
{
    const char *step = "setpgid";
    int e = 0;
    if (K.group > 0 && setpgid(0, K.group) != 0)
        e = errno;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, NULL);
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!e && cwd && chdir(cwd) != 0)
        e = errno, step = "chdir";
    if (!e && (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0))
        e = errno, step = "dup2";
    if (!e) {
        /* Nothing of the keeper's may leak; the report pipe closes on exec. */
        close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        execvpe(argv[0], argv, envp);
        e = errno;
        step = "exec";
    }
    char msg[160];
    int n = snprintf(msg, sizeof msg, "%s: %s", step, strerror(e));
    if (write(report, msg, (size_t)n) < 0)
        _exit(127);
    _exit(127);
}

extern char **environ;

/* spawn CWD ARGC ARG... ENVC ENV... */
static void handle_spawn(const control_record *r)
{
    int ok1, ok2;
    char *cwd = control_dup(r, 1);
    long long argc = control_int(r, 2, &ok1);
    long long envc = ok1 && argc >= 1 && 3 + argc < (long long)r->n ? control_int(r, 3 + (size_t)argc, &ok2) : -1;
    if (!cwd || !ok1 || argc < 1 || envc < 0 || (size_t)(4 + argc + envc) != r->n) {
        free(cwd);
        reply("err", "malformed spawn request", NULL, NULL);
        return;
    }
    size_t nenv = 0;
    for (char **e = environ; *e; e++)
        nenv++;
    char **argv = calloc((size_t)argc + 1, sizeof *argv);
    char **envp = calloc(nenv + (size_t)envc + 1, sizeof *envp);
    char **owned = calloc((size_t)(argc + envc) + 1, sizeof *owned);
    if (!argv || !envp || !owned)
        abort();
    size_t nowned = 0, k = 0;
    int bad = 0;
    for (long long i = 0; i < argc; i++)
        if (!(owned[nowned++] = argv[i] = control_dup(r, 3 + (size_t)i)))
            bad = 1;
    /* The node's environment, with the request's variables replacing theirs. */
    for (long long i = 0; i < envc; i++) {
        char *v = control_dup(r, 4 + (size_t)argc + (size_t)i);
        owned[nowned++] = v;
        if (!v || !strchr(v, '='))
            bad = 1;
    }
    for (char **e = environ; *e; e++) {
        size_t name = strcspn(*e, "=");
        int replaced = 0;
        for (long long i = 0; i < envc && !bad; i++) {
            const char *v = owned[argc + i];
            if (strncmp(v, *e, name) == 0 && v[name] == '=')
                replaced = 1;
        }
        if (!replaced)
            envp[k++] = *e;
    }
    for (long long i = 0; i < envc && !bad; i++)
        envp[k++] = owned[argc + i];

    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, rep[2] = { -1, -1 };
    char why[300] = "";
    if (bad)
        snprintf(why, sizeof why, "malformed spawn request");
    else if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(rep, O_CLOEXEC))
        snprintf(why, sizeof why, "pipe: %s", strerror(errno));
    pid_t pid = -1;
    if (!why[0]) {
        pid = fork();
        if (pid == 0)
            child_exec(argv, envp, cwd, in[0], out[1], err[1], rep[1]);
        if (pid < 0)
            snprintf(why, sizeof why, "fork: %s", strerror(errno));
    }
    if (pid > 0) {
        close(rep[1]);
        rep[1] = -1;
        char msg[160];
        ssize_t n;
        do
            n = read(rep[0], msg, sizeof msg - 1);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            msg[n] = 0;
            snprintf(why, sizeof why, "cannot run %.80s: %.110s", argv[0], msg);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            pid = -1;
        } else if (remember_child(pid) != 0) {
            kill(pid, SIGKILL);
            snprintf(why, sizeof why, "too many processes on this node");
        }
    }
    if (pid > 0) {
        char id[32];
        snprintf(id, sizeof id, "%ld", (long)pid);
        sky_buf_reset(&K.out);
        control_field_str(&K.out, "ok");
        control_field_str(&K.out, id);
        control_end(&K.out);
        int fds[3] = { in[1], out[0], err[0] };
        send_fds(K.out.data, K.out.len, fds, 3);
    } else {
        reply("err", why, NULL, NULL);
    }
    int *all[] = { in, out, err, rep };
    for (size_t i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++)
            if (all[i][j] >= 0)
                close(all[i][j]);
    for (size_t i = 0; i < nowned; i++)
        free(owned[i]);
    free(owned);
    free(argv);
    free(envp);
    free(cwd);
}

/* ---- what to undo ------------------------------------------------------- */

static int parse_kind(const control_record *r, size_t i, enum track_kind *kind)
{
    if (control_is(r, i, "mount"))
        *kind = T_MOUNT;
    else if (control_is(r, i, "file"))
        *kind = T_FILE;
    else if (control_is(r, i, "dir"))
        *kind = T_DIR;
    else
        return -1;
    return 0;
}

static int track_path(enum track_kind kind, const char *path)
{
    if (K.ntracked == MAX_TRACKED)
        return -1;
    K.tracked[K.ntracked].kind = kind;
    K.tracked[K.ntracked].path = strdup(path);
    if (!K.tracked[K.ntracked].path)
        abort();
    K.ntracked++;
    return 0;
}

static void untrack_path(enum track_kind kind, const char *path)
{
    for (int i = K.ntracked - 1; i >= 0; i--) {
        if (K.tracked[i].kind == kind && strcmp(K.tracked[i].path, path) == 0) {
            free(K.tracked[i].path);
            memmove(&K.tracked[i], &K.tracked[i + 1], (size_t)(K.ntracked - i - 1) * sizeof K.tracked[0]);
            K.ntracked--;
            return;
        }
    }
}

static void reply_errno(const char *what, const char *path)
{
    char msg[600];
    snprintf(msg, sizeof msg, "%s %s: %s", what, path, strerror(errno));
    reply("err", msg, NULL, NULL);
}

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    return empty;
}

/* mkdirs PATH -> ok CREATED EMPTY: the folder and its missing parents are
 * made (each tracked, so the cleanup removes what this node created and
 * nothing else); CREATED counts them, EMPTY says whether it is empty. */
static void handle_mkdirs(const control_record *r)
{
    char *path = control_dup(r, 1);
    if (r->n != 2 || !path || path[0] != '/') {
        free(path);
        reply("err", "malformed mkdirs request", NULL, NULL);
        return;
    }
    int created = 0;
    for (char *slash = path + 1;; slash++) {
        int last = *slash == 0;
        if (*slash != '/' && !last)
            continue;
        char keep = *slash;
        *slash = 0;
        struct stat st;
        if (path[0] && stat(path, &st) != 0) {
            if (track_path(T_DIR, path) != 0 || mkdir(path, 0755) != 0) {
                reply_errno("cannot create the folder", path);
                free(path);
                return;
            }
            created++;
        } else if (path[0] && !S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            reply_errno("cannot use", path);
            free(path);
            return;
        }
        *slash = keep;
        if (last)
            break;
    }
    char c[16];
    snprintf(c, sizeof c, "%d", created);
    reply("ok", c, dir_is_empty(path) ? "1" : "0", NULL);
    free(path);
}

/* write PATH DATA: a file only this user can read (credentials), tracked. */
static void handle_write(const control_record *r)
{
    char *path = control_dup(r, 1);
    if (r->n != 3 || !path || path[0] != '/') {
        free(path);
        reply("err", "malformed write request", NULL, NULL);
        return;
    }
    track_path(T_FILE, path);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    ssize_t n = fd >= 0 ? write(fd, r->field[2], r->len[2]) : -1;
    if (fd < 0 || n != (ssize_t)r->len[2] || close(fd) != 0)
        reply_errno("cannot write", path);
    else
        reply("ok", "0", NULL, NULL);
    free(path);
}

/* bind SRC DST RO: DST shows SRC (read-only when RO is 1), tracked. */
static void handle_bind(const control_record *r)
{
    char *src = control_dup(r, 1), *dst = control_dup(r, 2);
    if (r->n != 4 || !src || !dst || dst[0] != '/') {
        reply("err", "malformed bind request", NULL, NULL);
    } else if (track_path(T_MOUNT, dst) != 0) {
        reply("err", "too many things to track on this node", NULL, NULL);
    } else if (mount(src, dst, NULL, MS_BIND, NULL) != 0) {
        untrack_path(T_MOUNT, dst);
        reply_errno("cannot bind-mount a copy at", dst);
    } else if (control_is(r, 3, "1") &&
               mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) {
        reply_errno("cannot make read-only", dst);
    } else {
        reply("ok", "0", NULL, NULL);
    }
    free(src);
    free(dst);
}

/* umount PATH: unmounts (then it is no longer tracked) or says why not. */
static void handle_umount(const control_record *r)
{
    char *path = control_dup(r, 1);
    if (r->n != 2 || !path) {
        reply("err", "malformed umount request", NULL, NULL);
    } else if (umount2(path, 0) != 0 && errno != EINVAL) {
        reply_errno("cannot unmount", path);
    } else {
        untrack_path(T_MOUNT, path);
        reply("ok", "0", NULL, NULL);
    }
    free(path);
}

/* remove PATH: a tracked file goes now. */
static void handle_remove(const control_record *r)
{
    char *path = control_dup(r, 1);
    if (r->n != 2 || !path) {
        reply("err", "malformed remove request", NULL, NULL);
    } else if (unlink(path) != 0 && errno != ENOENT) {
        reply_errno("cannot remove", path);
    } else {
        untrack_path(T_FILE, path);
        reply("ok", "0", NULL, NULL);
    }
    free(path);
}

/* probe -> ok EUID FUSE: who the node's processes run as, and whether
 * /dev/fuse can be opened ("ok", or why not). */
static void handle_probe(void)
{
    char euid[16], fuse[200] = "ok";
    snprintf(euid, sizeof euid, "%u", (unsigned)geteuid());
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        snprintf(fuse, sizeof fuse, "/dev/fuse: %s", strerror(errno));
    else
        close(fd);
    reply("ok", euid, fuse, NULL);
}

/* Processes a remote provider started itself (an ssh exec channel each):
 * each writes an empty file NODE_DIR/pids/PID before it runs, so that the
 * keeper can end them, with what they started, when the host goes or asks.
 * Such a process leads its own session (sshd makes it so): a pid that
 * does not is not one of them (it ended, and the number was reused). */
static int is_remote_process(pid_t pid)
{
    if (pid <= 1 || !K.node_dir || getsid(pid) != pid)
        return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/pids/%ld", K.node_dir, (long)pid);
    return access(path, F_OK) == 0;
}

static void kill_remote_processes(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/pids", K.node_dir ? K.node_dir : "");
    DIR *d = K.node_dir ? opendir(path) : NULL;
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end == 0 && pid > 1 && is_remote_process((pid_t)pid))
            kill(-(pid_t)pid, SIGKILL);
    }
    closedir(d);
}

static void handle_track(const control_record *r, int add)
{
    enum track_kind kind;
    char *path = control_dup(r, 2);
    if (r->n != 3 || parse_kind(r, 1, &kind) != 0 || !path || path[0] != '/') {
        reply("err", "malformed track request", NULL, NULL);
    } else if (add && track_path(kind, path) != 0) {
        reply("err", "too many things to track on this node", NULL, NULL);
    } else {
        if (!add)
            untrack_path(kind, path);
        reply("ok", "0", NULL, NULL);
    }
    free(path);
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (K.host_gone)
        say("%s", msg);
    else
        reply("warn", msg, NULL, NULL);
}

static int under_node_dir(const char *path)
{
    size_t n = K.node_dir ? strlen(K.node_dir) : 0;
    return n && strncmp(path, K.node_dir, n) == 0 && path[n] == '/';
}

/* Kills everything of the node, undoes what was tracked, removes NODE_DIR. */
static void clean_up(void)
{
    if (K.group > 0)
        kill(-K.group, SIGKILL);
    kill_remote_processes();
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (K.children[i])
            kill(K.children[i], SIGKILL);
    double until = mono() + CHILD_WAIT_SECONDS;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            forget_child(pid);
            continue;
        }
        if (pid < 0 || mono() > until)
            break;   /* ECHILD: none left */
        struct timespec ms = { 0, 5000000 };
        nanosleep(&ms, NULL);
    }
    for (int i = K.ntracked - 1; i >= 0; i--) {
        const char *path = K.tracked[i].path;
        switch (K.tracked[i].kind) {
        case T_MOUNT:
            if (umount2(path, 0) != 0 && errno != EINVAL && errno != ENOENT &&
                umount2(path, MNT_DETACH) != 0 && errno != EINVAL)
                warn("cannot unmount %s: %s", path, strerror(errno));
            break;
        case T_FILE:
            if (unlink(path) != 0 && errno != ENOENT)
                warn("cannot remove %s: %s", path, strerror(errno));
            break;
        case T_DIR:
            if (under_node_dir(path))
                break;   /* goes with the node's folder below */
            if (rmdir(path) != 0 && errno != ENOENT)
                warn("cannot remove the folder %s: %s", path, strerror(errno));
            break;
        }
        free(K.tracked[i].path);
    }
    K.ntracked = 0;
    if (K.node_dir) {
        if (sky_remove_tree(K.node_dir) != 0)
            warn("cannot remove %s completely", K.node_dir);
        /* The pool's folder goes with its last node. */
        char *copy = strdup(K.node_dir);
        if (copy) {
            rmdir(dirname(copy));
            free(copy);
        }
    }
}

/* ---- the loop ------------------------------------------------------------- */

int keeper_main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: skyrun-worker --keeper NODE_DIR [--userns] [--stdio] [--shared-mounts]\n"
                        "  (started by skyrun on each node; talks on its stdin)\n");
        return WORKER_EXIT_USAGE;
    }
    K.node_dir = argv[2];
    int userns = 0, isolate_mounts = 1;
    K.in_fd = K.out_fd = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--userns") == 0) {
            userns = 1;
        } else if (strcmp(argv[i], "--stdio") == 0) {
            /* stdin and stdout are the channel (an ssh channel, a Slurm step) */
            K.stdio = 1;
            K.out_fd = 1;
        } else if (strcmp(argv[i], "--shared-mounts") == 0) {
            isolate_mounts = 0;   /* a machine of its own: its mounts are the node's already */
        } else {
            fprintf(stderr, "skyrun-worker --keeper: unknown option %s\n", argv[i]);
            return WORKER_EXIT_USAGE;
        }
    }
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL);   /* a host gone is EPIPE; children get SIG_DFL back */
    sigaction(SIGINT, &ign, NULL);    /* Ctrl-C is the host's to handle; we follow it */
    sigaction(SIGHUP, &ign, NULL);

    int own_mounts = 1, privileged = geteuid() == 0;
    char why[300] = "";
    if (isolate_mounts)
        isolate(userns, &own_mounts, &privileged, why, sizeof why);
    K.group = start_group_holder();
    if (K.group < 0) {
        say("cannot start the node's process group: %s", strerror(errno));
        return WORKER_EXIT_PROTOCOL;
    }
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (K.stdio)
        sigaddset(&chld, SIGTERM);   /* a Slurm step cancelled (scancel, time limit): clean up first */
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0) {
        say("signalfd: %s", strerror(errno));
        return WORKER_EXIT_PROTOCOL;
    }
    reply("ready", own_mounts ? "1" : "0", privileged ? "1" : "0", own_mounts ? "" : why);

    sky_buf in = SKY_BUF_INIT;
    int stop = 0;
    while (!stop && !K.host_gone) {
        struct pollfd p[2] = { { .fd = K.in_fd, .events = POLLIN }, { .fd = sigfd, .events = POLLIN } };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            int term = 0;
            while (read(sigfd, &si, sizeof si) > 0)
                term |= si.ssi_signo == SIGTERM;
            reap_children();
            if (term) {
                say("terminated (the job or step was cancelled): cleaning up");
                K.host_gone = 1;
                break;
            }
        }
        if (!p[0].revents)
            continue;
        sky_buf_reserve(&in, 65536);
        ssize_t n = read(K.in_fd, in.data + in.len, in.cap - in.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            K.host_gone = 1;   /* the host is gone: undo everything */
            break;
        }
        in.len += (size_t)n;
        size_t off = 0;
        for (;;) {
            control_record r;
            size_t used;
            wire_err we;
            int rc = control_next(in.data + off, in.len - off, &r, &used, &we);
            if (rc == WIRE_AGAIN)
                break;
            if (rc != WIRE_OK) {
                say("malformed request from the host: %s", we.msg);
                stop = 1;
                break;
            }
            off += used;
            if (control_is(&r, 0, "spawn") && K.stdio) {
                reply("err", "this keeper talks over a byte stream: start processes through the provider", NULL, NULL);
            } else if (control_is(&r, 0, "spawn")) {
                handle_spawn(&r);
            } else if (control_is(&r, 0, "kill") && r.n == 2) {
                int ok;
                long long pid = control_int(&r, 1, &ok);
                if (ok && pid > 0 && is_child((pid_t)pid))
                    kill((pid_t)pid, SIGKILL);
                else if (ok && is_remote_process((pid_t)pid))
                    kill(-(pid_t)pid, SIGKILL);
            } else if (control_is(&r, 0, "track")) {
                handle_track(&r, 1);
            } else if (control_is(&r, 0, "untrack")) {
                handle_track(&r, 0);
            } else if (control_is(&r, 0, "mkdirs")) {
                handle_mkdirs(&r);
            } else if (control_is(&r, 0, "write")) {
                handle_write(&r);
            } else if (control_is(&r, 0, "bind")) {
                handle_bind(&r);
            } else if (control_is(&r, 0, "umount")) {
                handle_umount(&r);
            } else if (control_is(&r, 0, "remove")) {
                handle_remove(&r);
            } else if (control_is(&r, 0, "probe")) {
                handle_probe();
            } else if (control_is(&r, 0, "stop")) {
                stop = 1;
                break;
            } else {
                reply("err", "unknown request", NULL, NULL);
            }
        }
        sky_buf_consume(&in, off);
    }
    clean_up();
    reply("stopped", NULL, NULL, NULL);
    sky_buf_free(&in);
    sky_buf_free(&K.out);
    return 0;
}
