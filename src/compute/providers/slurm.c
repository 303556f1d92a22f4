/*
 * slurm provider: nodes of one Slurm allocation, from a login node where
 * sbatch, srun, squeue and scancel work (docs/PROVIDERS.md, "slurm").
 *
 * One batch job per pool (`sbatch --no-requeue --no-kill --time T`) whose
 * script is a watchdog: it waits for the pool's first step, then exits as
 * soon as no step of the job is left on a live node, so the allocation ends
 * by itself when the client is gone (SIGKILL included) — never a bare
 * sleep. Once the job runs, every node gets a keeper as a job step
 * (`srun --jobid J -w NODE -N1 -n1 --overlap -u … skyrun-worker --keeper
 * DIR --stdio --shared-mounts`) and every other process (workers, image
 * phases, s3fs) is a step of its own: srun is a child process here and its
 * stdin/stdout are the byte stream (`-u`, or slurmstepd holds partial lines
 * and frames stall). A step writes NODE_DIR/pids/PID first so that the
 * keeper ends it when it cleans up; end() waits for srun, then SIGTERMs it
 * (srun passes it to the step), then SIGKILLs srun alone (its helper
 * cancels the step; killing the helper too would leave the step running).
 * The caller's SLURM_* variables (but SLURM_CONF) never reach srun, nor the
 * storage secrets: a process's environment travels on its stdin.
 *
 * The worker binary is expected on a filesystem the nodes share (its path
 * here is its path there); a node without it is named.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "compute/keeper_client.h"
#include "compute/provider.h"
#include "util/alloc.h"
#include "util/interrupt.h"
#include "util/log.h"
#include "util/sigpipe.h"
#include "wire/control.h"

#define COMMAND_SECONDS 60.0     /* sbatch, squeue, scontrol, scancel: the controller may be busy */
#define STEP_START_SECONDS 60.0  /* a keeper step: until its first line */
#define STOP_SECONDS 15.0        /* the keeper's cleanup: kill, unmount, remove */
#define TERM_SECONDS 5.0         /* after SIGTERM to srun, before SIGKILL */
#define KILL_SECONDS 5.0         /* after SIGKILL, until srun is reaped */
#define POLL_SECONDS 0.5         /* squeue while the job is pending */

/* The watchdog: the job's batch script. It learns that the pool is up from
 * a step it sees or from SIGUSR1 (the client sends it once its keepers run:
 * steps may come and go between two looks); not up within `first` seconds
 * (the client died while the job started), it ends. Then it ends the job
 * when, twice in a row, no step of it is left on a node that is up (a
 * crashed node's step stays listed). A failing squeue (the controller busy)
 * counts as "still there". */
static const char WATCHDOG[] =
    "#!/bin/sh\n"
    "# skyrun's watchdog: ends this job when no skyrun step is left (docs/PROVIDERS.md)\n"
    "first=%d; poll=%d; seen=0; idle=0; waited=0\n"
    "trap 'seen=1' USR1\n"
    "while :; do\n"
    "  sleep \"$poll\"; waited=$((waited + poll))\n"
    "  steps=$(squeue -h -s -j \"$SLURM_JOB_ID\" -o '%%i|%%N' 2>/dev/null) || continue\n"
    "  down=\" $(sinfo -h -N -t down,fail,no_respond -o %%N 2>/dev/null | tr '\\n' ' ') \"\n"
    "  n=0\n"
    "  for s in $steps; do\n"
    "    case $s in *.batch\\|*|*.extern\\|*) continue ;; esac\n"
    "    case $down in *\" ${s#*|} \"*) continue ;; esac\n"
    "    n=$((n + 1))\n"
    "  done\n"
    "  if [ \"$n\" -gt 0 ]; then seen=1; idle=0\n"
    "  elif [ \"$seen\" = 1 ]; then idle=$((idle + 1)); [ \"$idle\" -ge 2 ] && exit 0\n"
    "  elif [ \"$waited\" -ge \"$first\" ]; then exit 0\n"
    "  fi\n"
    "done\n";
#define WATCHDOG_FIRST_SECONDS 60
#define WATCHDOG_POLL_SECONDS 2

typedef struct slurm_proc {
    pid_t pid;                   /* the local srun */
    long remote_pid;             /* its task's pid, where it said it; 0 otherwise */
} slurm_proc;

typedef struct slurm_node {
    char *hostname;              /* the Slurm node */
    pid_t srun;                  /* the keeper's step */
    int diag;                    /* its stderr (srun's own messages) */
    keeper_client kc;
    char *dir;                   /* the node's folder there */
    int lost;                    /* srun reported the node failed */
} slurm_node;

typedef struct slurm_provider {
    sky_provider base;
    sky_slurm_options o;         /* strings owned */
    char **sbatch_extra;
    char **envp;                 /* for Slurm commands: ours without SLURM_* (but SLURM_CONF) and secrets */
    char job[64];                /* the job id, "" before sbatch */
    char job_name[128];
    char gone[700];              /* why the job is no longer running, once known */
} slurm_provider;

/* ---- running Slurm's commands -------------------------------------------------- */

static void build_env(slurm_provider *sp)
{
    static const char *const secrets[] = { "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_SECURITY_TOKEN=",
                                           "AWS_ACCESS_KEY_ID=", NULL };
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    sp->envp = sky_xcalloc(n + 1, sizeof *sp->envp);
    for (size_t i = 0, k = 0; i < n; i++) {
        const char *e = environ[i];
        int drop = strncmp(e, "SLURM_", 6) == 0 && strncmp(e, "SLURM_CONF=", 11) != 0;
        for (size_t j = 0; secrets[j]; j++)
            drop |= strncmp(e, secrets[j], strlen(secrets[j])) == 0;
        if (!drop)
            sp->envp[k++] = sky_xstrdup(e);
    }
}

static double now(void)
{
    return keeper_now();
}

/* Starts argv[0] (looked up in PATH) with sp's environment, in a process
 * group of its own (the terminal's Ctrl-C is the pool's to handle), its
 * stdin/stdout/stderr on pipes whose other ends come back (NULL: /dev/null).
 * The child gets signal `orphaned` (0: none) if this process dies. Returns
 * its pid, or -1 with err ("sbatch: No such file or directory"). */
static pid_t start_child(slurm_provider *sp, const char *const *argv, int *to, int *from, int *diag, int orphaned,
                         char *err, size_t errlen)
{
    int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 }, report[2] = { -1, -1 };
    int ok = pipe2(report, O_CLOEXEC) == 0 && (!to || pipe2(pin, O_CLOEXEC) == 0) &&
             (!from || pipe2(pout, O_CLOEXEC) == 0) && (!diag || pipe2(perr, O_CLOEXEC) == 0);
    pid_t parent = getpid();
    pid_t pid = ok ? fork() : -1;
    if (pid == 0) {
        /* Between fork and exec: async-signal-safe calls only. */
        setpgid(0, 0);
        if (orphaned)
            prctl(PR_SET_PDEATHSIG, orphaned);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0 || dup2(to ? pin[0] : devnull, 0) < 0 || dup2(from ? pout[1] : devnull, 1) < 0 ||
            dup2(diag ? perr[1] : devnull, 2) < 0)
            _exit(127);
        execvpe(argv[0], (char *const *)argv, sp->envp);
        int e = errno;
        if (write(report[1], &e, sizeof e) < 0)
            _exit(127);
        _exit(127);
    }
    int e = errno;
    int *fds[] = { &pin[0], &pout[1], &perr[1], &report[1] };
    for (size_t i = 0; i < 4; i++)
        if (*fds[i] >= 0)
            close(*fds[i]);
    if (pid < 0) {
        int *rest[] = { &pin[1], &pout[0], &perr[0], &report[0] };
        for (size_t i = 0; i < 4; i++)
            if (*rest[i] >= 0)
                close(*rest[i]);
        snprintf(err, errlen, "cannot start %s: %s", argv[0], strerror(e));
        return -1;
    }
    int child_errno = 0;
    ssize_t n;
    do
        n = read(report[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof child_errno) {
        int *rest[] = { &pin[1], &pout[0], &perr[0] };
        for (size_t i = 0; i < 3; i++)
            if (*rest[i] >= 0)
                close(*rest[i]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        snprintf(err, errlen, "cannot run %s: %s%s", argv[0], strerror(child_errno),
                 child_errno == ENOENT ? " (is Slurm's client installed and in PATH on this machine?)" : "");
        return -1;
    }
    if (to)
        *to = pin[1];
    if (from)
        *from = pout[0];
    if (diag)
        *diag = perr[0];
    return pid;
}

/* Waits for pid until deadline: 1 with *status, 0 when it is still running. */
static int wait_until(pid_t pid, double deadline, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        if (r < 0 && errno != EINTR) {
            *status = 0;
            return 1;   /* not ours any more: nothing to wait for */
        }
        if (now() >= deadline)
            return 0;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

/* Ends a local srun: up to deadline for it to exit by itself, then SIGTERM
 * (passed on to its step), then SIGKILL of srun alone. Its status. */
static int end_srun(pid_t pid, double deadline, int *killed)
{
    int status = 0;
    *killed = 0;
    if (wait_until(pid, deadline, &status))
        return status;
    kill(pid, SIGTERM);
    if (wait_until(pid, now() + TERM_SECONDS, &status))
        return status;
    *killed = 1;
    kill(pid, SIGKILL);
    if (!wait_until(pid, now() + KILL_SECONDS, &status))
        status = SIGKILL;
    return status;
}

/* Runs a Slurm command to its end (bounded): its exit status, stdout into
 * out and stderr into eout; -1 with err when it could not run or ran past
 * the bound. */
static int run_slurm(slurm_provider *sp, const char *const *argv, const char *input, sky_buf *out, sky_buf *eout,
                     char *err, size_t errlen)
{
    int to = -1, from = -1, diag = -1;
    pid_t pid = start_child(sp, argv, input ? &to : NULL, &from, &diag, SIGTERM, err, errlen);
    if (pid < 0)
        return -1;
    sky_sigpipe_guard g;
    sky_sigpipe_hold(&g);
    if (input) {
        size_t done = 0, len = strlen(input);
        while (done < len) {
            ssize_t w = write(to, input + done, len - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            done += (size_t)w;
        }
        close(to);
    }
    sky_sigpipe_release(&g);
    double deadline = now() + COMMAND_SECONDS;
    struct pollfd pf[2] = { { from, POLLIN, 0 }, { diag, POLLIN, 0 } };
    sky_buf *dst[2] = { out, eout };
    int open_fds = 2;
    while (open_fds > 0 && now() < deadline) {
        int r = poll(pf, 2, 100);
        if (r < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[4096];
            ssize_t n = read(pf[i].fd, buf, sizeof buf);
            if (n > 0) {
                sky_buf_append(dst[i], buf, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                close(pf[i].fd);
                pf[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    int killed;
    int status = end_srun(pid, deadline, &killed);
    if (killed || open_fds > 0) {
        snprintf(err, errlen, "%s did not finish in %.0f s (is the Slurm controller reachable?)", argv[0],
                 COMMAND_SECONDS);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* The last non-empty line of a command's stderr (Slurm's own message). */
static void last_line(sky_buf *b, char *dst, size_t n)
{
    const char *s = sky_buf_cstr(b);
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
        len--;
    size_t start = len;
    while (start && s[start - 1] != '\n')
        start--;
    snprintf(dst, n, "%.*s", (int)(len - start), s + start);
    if (!dst[0])
        snprintf(dst, n, "no message");
}

/* squeue's "STATE|REASON|NODES" of the job into state/reason/nodes ("" when
 * the job is not in the queue any more). 0, or -1 with err. */
static int job_state(slurm_provider *sp, char *state, size_t sn, char *reason, size_t rn, sky_buf *nodes, char *err,
                     size_t errlen)
{
    const char *argv[] = { "squeue", "-h", "-j", sp->job, "-o", "%T|%r|%N", NULL };
    sky_buf out = SKY_BUF_INIT, eout = SKY_BUF_INIT;
    int rc = run_slurm(sp, argv, NULL, &out, &eout, err, errlen);
    state[0] = reason[0] = 0;
    if (rc > 0) {
        char why[300];
        last_line(&eout, why, sizeof why);
        /* A job that left the queue: "Invalid job id specified". */
        if (strstr(why, "Invalid job id")) {
            rc = 0;
        } else {
            snprintf(err, errlen, "squeue failed: %s", why);
            rc = -1;
        }
    }
    if (rc == 0) {
        char *line = sky_xstrdup(sky_buf_cstr(&out));
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        char *f1 = strchr(line, '|'), *f2 = f1 ? strchr(f1 + 1, '|') : NULL;
        if (f1 && f2) {
            *f1 = *f2 = 0;
            snprintf(state, sn, "%s", line);
            snprintf(reason, rn, "%s", f1 + 1);
            if (nodes)
                sky_buf_append_str(nodes, f2 + 1);
        }
        free(line);
    }
    sky_buf_free(&out);
    sky_buf_free(&eout);
    return rc == 0 ? 0 : -1;
}

static void cancel_job(slurm_provider *sp)
{
    if (!sp->job[0])
        return;
    const char *argv[] = { "scancel", sp->job, NULL };
    sky_buf out = SKY_BUF_INIT, eout = SKY_BUF_INIT;
    char err[300];
    int rc = run_slurm(sp, argv, NULL, &out, &eout, err, sizeof err);
    if (rc != 0) {
        char why[300];
        if (rc > 0)
            last_line(&eout, why, sizeof why);
        sky_log(SKY_LOG_WARN, "slurm: scancel %s failed: %s", sp->job, rc > 0 ? why : err);
    }
    sky_buf_free(&out);
    sky_buf_free(&eout);
    sp->job[0] = 0;
}

/* After a step failed: is the job still running? If not, sp->gone says why
 * ("slurm job 12 (skyrun.h.3): CANCELLED"), 1 is returned. */
static int job_is_gone(slurm_provider *sp)
{
    if (sp->gone[0])
        return 1;
    if (!sp->job[0])
        return 0;
    char state[64], reason[200], err[300];
    if (job_state(sp, state, sizeof state, reason, sizeof reason, NULL, err, sizeof err) != 0)
        return 0;
    if (strcmp(state, "RUNNING") == 0)
        return 0;
    if (!state[0])
        snprintf(sp->gone, sizeof sp->gone, "slurm job %s (%s) is no longer running: it left the queue "
                 "(cancelled, or past its time limit %s)", sp->job, sp->job_name, sp->o.time);
    else
        snprintf(sp->gone, sizeof sp->gone, "slurm job %s (%s) is no longer running: %s (%s)", sp->job,
                 sp->job_name, state,
                 reason[0] && strcmp(reason, "None") ? reason
                 : strcmp(state, "COMPLETING") == 0 || strcmp(state, "CANCELLED") == 0
                     ? "cancelled from outside, or past its time limit"
                     : "ended by Slurm");
    return 1;
}

/* ---- the allocation -------------------------------------------------------------- */

static int submit(slurm_provider *sp, int n, char *err, size_t errlen)
{
    const char *argv[64 + SKY_SLURM_MAX_SBATCH];
    int a = 0;
    char nodes[32], ntasks[32], cpus[32];
    snprintf(nodes, sizeof nodes, "%d", n);
    argv[a++] = "sbatch";
    argv[a++] = "--parsable";
    argv[a++] = "--job-name";
    argv[a++] = sp->job_name;
    argv[a++] = "--nodes";
    argv[a++] = nodes;
    argv[a++] = "--no-requeue";
    argv[a++] = "--no-kill";   /* a lost node leaves the pool with fewer, not without a job */
    argv[a++] = "--time";
    argv[a++] = sp->o.time;
    argv[a++] = "--output";
    argv[a++] = "/dev/null";
    argv[a++] = "--chdir";
    argv[a++] = "/";
    if (sp->o.partition)
        argv[a++] = "--partition", argv[a++] = sp->o.partition;
    if (sp->o.account)
        argv[a++] = "--account", argv[a++] = sp->o.account;
    if (sp->o.qos)
        argv[a++] = "--qos", argv[a++] = sp->o.qos;
    if (sp->o.constraint)
        argv[a++] = "--constraint", argv[a++] = sp->o.constraint;
    if (sp->o.cpus_per_worker > 0) {
        snprintf(ntasks, sizeof ntasks, "%d", sp->o.workers > 0 ? sp->o.workers : 1);
        snprintf(cpus, sizeof cpus, "%d", sp->o.cpus_per_worker);
        argv[a++] = "--ntasks-per-node", argv[a++] = ntasks;
        argv[a++] = "--cpus-per-task", argv[a++] = cpus;
    }
    if (sp->o.gpus_per_node)
        argv[a++] = "--gpus-per-node", argv[a++] = sp->o.gpus_per_node;
    for (size_t i = 0; i < sp->o.nsbatch; i++)
        argv[a++] = sp->sbatch_extra[i];
    argv[a] = NULL;
    char script[2048];
    snprintf(script, sizeof script, WATCHDOG, WATCHDOG_FIRST_SECONDS, WATCHDOG_POLL_SECONDS);
    sky_buf out = SKY_BUF_INIT, eout = SKY_BUF_INIT;
    char why[600];
    int rc = run_slurm(sp, argv, script, &out, &eout, why, sizeof why);
    if (rc == 0) {
        const char *s = sky_buf_cstr(&out);
        size_t k = 0;
        while (s[k] >= '0' && s[k] <= '9' && k < sizeof sp->job - 1) {
            sp->job[k] = s[k];
            k++;
        }
        sp->job[k] = 0;
        if (!k) {
            snprintf(err, errlen, "slurm provider: sbatch gave no job id (it printed '%.200s')", s);
            rc = -1;
        }
    } else if (rc > 0) {
        last_line(&eout, why, sizeof why);
        snprintf(err, errlen, "slurm provider: sbatch refused the pool's job: %s", why);
    } else {
        snprintf(err, errlen, "slurm provider: %s", why);
    }
    sky_buf_free(&out);
    sky_buf_free(&eout);
    return rc == 0 ? 0 : -1;
}

/* Waits until the job runs (the console says while it pends): its node
 * names into hosts. */
static int wait_running(slurm_provider *sp, char ***hosts, int *nhosts, char *err, size_t errlen)
{
    double started = now(), deadline = started + sp->o.start_seconds;
    char state[64] = "", reason[200] = "", shown[300] = "";
    sky_buf nodes = SKY_BUF_INIT;
    int rc = -1;
    for (;;) {
        sky_buf_reset(&nodes);
        char why[600];
        if (job_state(sp, state, sizeof state, reason, sizeof reason, &nodes, why, sizeof why) != 0) {
            snprintf(err, errlen, "slurm provider: job %s: %s", sp->job, why);
            break;
        }
        if (strcmp(state, "RUNNING") == 0) {
            rc = 0;
            break;
        }
        if (!state[0] || (strcmp(state, "PENDING") && strcmp(state, "CONFIGURING") && strcmp(state, "REQUEUED"))) {
            snprintf(err, errlen, "slurm provider: job %s (%s) ended before it started: %s%s%s", sp->job,
                     sp->job_name, state[0] ? state : "it left the queue", reason[0] ? ", " : "", reason);
            break;
        }
        char line[300];
        snprintf(line, sizeof line, "%s (%s)", state, reason);
        /* Said once the job has pended a moment, then at each change. */
        if (strcmp(line, shown) != 0 && now() - started >= 1.0) {
            fprintf(stderr, "slurm: job %s (%s) is %s\n", sp->job, sp->job_name, line);
            snprintf(shown, sizeof shown, "%s", line);
        }
        if (sky_interrupt_pending()) {
            snprintf(err, errlen, "slurm provider: interrupted while job %s was %s; the job is cancelled", sp->job,
                     state);
            break;
        }
        if (now() >= deadline) {
            snprintf(err, errlen, "slurm provider: job %s (%s) did not start in %.0f s (start_timeout): still %s, "
                     "reason: %s; the job is cancelled", sp->job, sp->job_name, sp->o.start_seconds, state, reason);
            break;
        }
        for (int i = 0; i < (int)(POLL_SECONDS / 0.1) && !sky_interrupt_pending(); i++) {
            struct timespec ts = { 0, 100 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    if (rc == 0) {
        /* node[1-3] → node1 node2 node3 */
        const char *argv[] = { "scontrol", "show", "hostnames", sky_buf_cstr(&nodes), NULL };
        sky_buf out = SKY_BUF_INIT, eout = SKY_BUF_INIT;
        char why[600];
        int r = run_slurm(sp, argv, NULL, &out, &eout, why, sizeof why);
        if (r != 0) {
            if (r > 0)
                last_line(&eout, why, sizeof why);
            snprintf(err, errlen, "slurm provider: scontrol show hostnames %s: %s", sky_buf_cstr(&nodes), why);
            rc = -1;
        } else {
            char *list = sky_xstrdup(sky_buf_cstr(&out)), *save = NULL;
            for (char *h = strtok_r(list, " \n", &save); h; h = strtok_r(NULL, " \n", &save)) {
                *hosts = sky_xrealloc(*hosts, (size_t)(*nhosts + 1) * sizeof **hosts);
                (*hosts)[(*nhosts)++] = sky_xstrdup(h);
            }
            free(list);
        }
        sky_buf_free(&out);
        sky_buf_free(&eout);
    }
    sky_buf_free(&nodes);
    return rc;
}

/* ---- steps ------------------------------------------------------------------------ */

/* srun's options for a step on one node. */
static int step_argv(slurm_provider *sp, const char *host, int worker_step, const char **argv, char *cpus,
                     size_t cpuslen)
{
    int a = 0;
    argv[a++] = "srun";
    argv[a++] = "--jobid";
    argv[a++] = sp->job;
    argv[a++] = "--nodelist";
    argv[a++] = host;
    argv[a++] = "--nodes=1";
    argv[a++] = "--ntasks=1";
    argv[a++] = "--unbuffered";       /* else slurmstepd holds output until a newline: frames stall */
    argv[a++] = "--quit-on-interrupt";
    argv[a++] = "--chdir=/";
    argv[a++] = "--job-name";
    argv[a++] = worker_step ? "skyrun-step" : "skyrun-keeper";
    if (worker_step && sp->o.cpus_per_worker > 0) {
        snprintf(cpus, cpuslen, "--cpus-per-task=%d", sp->o.cpus_per_worker);
        argv[a++] = cpus;
        argv[a++] = "--exact";
    } else {
        argv[a++] = "--overlap";      /* else a second step waits for CPUs the first holds */
    }
    return a;
}

/* Reads one line (the header a step prints first) from fd until deadline. */
static int read_header(int fd, double deadline, char *line, size_t n)
{
    size_t len = 0;
    line[0] = 0;
    while (len + 1 < n) {
        int ms = (int)((deadline - now()) * 1000);
        if (ms <= 0)
            return -1;
        struct pollfd pf = { fd, POLLIN, 0 };
        int r = poll(&pf, 1, ms > 100 ? 100 : ms);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r <= 0) {
            if (sky_interrupt_pending())
                return -1;
            continue;
        }
        char c;
        ssize_t k = read(fd, &c, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        if (c == '\n')
            break;
        if (c != '\r')
            line[len++] = c;
        line[len] = 0;
    }
    return 0;
}

/* Whatever a step's stderr holds now (not waiting), its last line. */
static void drain_diag(int fd, char *why, size_t n)
{
    if (fd < 0)
        return;
    sky_buf b = SKY_BUF_INIT;
    char buf[4096];
    for (;;) {
        struct pollfd pf = { fd, POLLIN, 0 };
        if (poll(&pf, 1, 0) <= 0)
            break;
        ssize_t k = read(fd, buf, sizeof buf);
        if (k <= 0)
            break;
        sky_buf_append(&b, buf, (size_t)k);
    }
    if (b.len)
        last_line(&b, why, n);
    sky_buf_free(&b);
}

static void free_slurm_node(slurm_node *sn)
{
    if (!sn)
        return;
    keeper_client_close(&sn->kc);
    if (sn->diag >= 0)
        close(sn->diag);
    free(sn->hostname);
    free(sn->dir);
    free(sn);
}

/* The keeper's step: make the node's folder, say it, become the keeper. */
static const char KEEPER_SCRIPT[] =
    "[ -x \"$0\" ] || { echo \"!$0 is not on $(hostname) (the worker must be on a filesystem the nodes share)\"; "
    "exit 127; }; t=${TMPDIR:-/tmp}; [ -d \"$t\" ] || t=/tmp; "
    "d=$(mktemp -d \"$t/skyrun-XXXXXX\") && mkdir -m 700 \"$d/work\" \"$d/private\" \"$d/pids\" || "
    "{ echo \"!cannot make a node folder in $t on $(hostname)\"; exit 1; }; "
    "echo \"$d\" && exec \"$0\" --keeper \"$d\" --stdio --shared-mounts";

static int launch_keeper(slurm_provider *sp, sky_node *node, char *err, size_t errlen)
{
    slurm_node *sn = node->data;
    const char *argv[40];
    char cpus[32];
    int a = step_argv(sp, sn->hostname, 0, argv, cpus, sizeof cpus);
    argv[a++] = "/bin/sh";
    argv[a++] = "-c";
    argv[a++] = KEEPER_SCRIPT;
    argv[a++] = sp->base.worker_path;
    argv[a] = NULL;
    int to, from;
    char why[400];
    /* Not signalled when this process dies: the end of its input tells the
     * keeper, which then cleans up (a signal would end it first). */
    sn->srun = start_child(sp, argv, &to, &from, &sn->diag, 0, why, sizeof why);
    if (sn->srun < 0) {
        sn->srun = 0;
        snprintf(err, errlen, "slurm provider: %s: %s", node->name, why);
        return -1;
    }
    /* Not among the groups a second Ctrl-C kills: srun killed with its
     * helper would leave the step running; skyrun's exit ends its input. */
    keeper_client_init(&sn->kc, from, to, 0, node->name);
    return 0;
}

static int finish_keeper(slurm_provider *sp, sky_node *node, double deadline, char *err, size_t errlen)
{
    slurm_node *sn = node->data;
    char header[1200] = "";
    if (read_header(sn->kc.in_fd, deadline, header, sizeof header) != 0 || header[0] != '/') {
        char why[600] = "";
        if (header[0] == '!')
            snprintf(why, sizeof why, "%s", header + 1);
        else
            drain_diag(sn->diag, why, sizeof why);
        snprintf(err, errlen, "slurm provider: %s (%s, job %s): its keeper step did not start: %s", node->name,
                 sn->hostname, sp->job, why[0] ? why : sky_interrupt_pending() ? "interrupted" : "no answer");
        return -1;
    }
    sn->dir = sky_xstrdup(header);
    char kwhy[300] = "";
    if (keeper_client_next(&sn->kc, keeper_now() + KEEPER_REPLY_SECONDS, kwhy, sizeof kwhy) != 0 ||
        !control_is(&sn->kc.rec, 0, "ready") || sn->kc.rec.n < 3) {
        snprintf(err, errlen, "slurm provider: %s (%s): its keeper did not start: %s", node->name, sn->hostname,
                 kwhy[0] ? kwhy : "no ready record");
        return -1;
    }
    const control_record *rec = &sn->kc.rec;
    node->own_mounts = control_is(rec, 1, "1");
    node->privileged = control_is(rec, 2, "1");
    if (rec->n > 3)
        snprintf(node->why_shared, sizeof node->why_shared, "%.*s", (int)rec->len[3], rec->field[3]);
    node->shares_host_files = 0;   /* not known in general: mode="copy" is not offered */
    node->installs_packages = 0;   /* compute nodes are the site's: image.apt is not installed there */
    size_t dn = strlen(sn->dir) + 16;
    node->workdir = sky_xmalloc(dn);
    snprintf(node->workdir, dn, "%s/work", sn->dir);
    node->private_dir = sky_xmalloc(dn);
    snprintf(node->private_dir, dn, "%s/private", sn->dir);
    return 0;
}

static int start_node(sky_provider *pr, sky_node *node, char *err, size_t errlen)
{
    return pr->start_nodes(pr, node, 1, err, errlen);
}

static int start_nodes(sky_provider *pr, sky_node *nodes, int n, char *err, size_t errlen)
{
    slurm_provider *sp = (slurm_provider *)pr;
    if (sp->job[0]) {
        snprintf(err, errlen, "slurm provider: its job %s is started already (one allocation per pool)", sp->job);
        return -1;
    }
    if (submit(sp, n, err, errlen) != 0)
        return -1;
    char **hosts = NULL;
    int nhosts = 0, rc = -1;
    if (wait_running(sp, &hosts, &nhosts, err, errlen) != 0)
        goto out;
    if (nhosts < n) {
        snprintf(err, errlen, "slurm provider: job %s runs on %d node(s), the pool needs %d", sp->job, nhosts, n);
        goto out;
    }
    /* Every keeper step starts at once, then each is waited for. */
    for (int i = 0; i < n; i++) {
        slurm_node *sn = sky_xcalloc(1, sizeof *sn);
        keeper_client_init(&sn->kc, -1, -1, 0, nodes[i].name);
        sn->diag = -1;
        sn->hostname = sky_xstrdup(hosts[i]);
        nodes[i].data = sn;
        nodes[i].host = sky_xstrdup(hosts[i]);
        if (launch_keeper(sp, &nodes[i], err, errlen) != 0)
            goto out;
    }
    double deadline = now() + STEP_START_SECONDS;
    for (int i = 0; i < n; i++)
        if (finish_keeper(sp, &nodes[i], deadline, err, errlen) != 0)
            goto out;
    /* The watchdog now knows the pool is up. */
    const char *argv[] = { "scancel", "--batch", "--signal=USR1", sp->job, NULL };
    sky_buf out = SKY_BUF_INIT, eout = SKY_BUF_INIT;
    char why[400];
    int r = run_slurm(sp, argv, NULL, &out, &eout, why, sizeof why);
    if (r != 0) {
        if (r > 0)
            last_line(&eout, why, sizeof why);
        sky_log(SKY_LOG_WARN, "slurm: job %s: cannot tell its watchdog the pool is up (%s); it ends the job "
                "%d s after its start if it sees no step then", sp->job, why, WATCHDOG_FIRST_SECONDS);
    }
    sky_buf_free(&out);
    sky_buf_free(&eout);
    sky_log(SKY_LOG_INFO, "slurm: job %s (%s) runs the pool on %d node(s)", sp->job, sp->job_name, n);
    rc = 0;
out:
    for (int i = 0; i < nhosts; i++)
        free(hosts[i]);
    free(hosts);
    return rc;
}

static int is_shippable(const char *argv0)
{
    if (argv0[0] != '/')
        return 0;
    const char *base = strrchr(argv0, '/') + 1;
    return strncmp(base, "skyrun-worker", 13) == 0 && access(argv0, X_OK) == 0;
}

/* The script of a process's step: $1 its folder, $2 the pids folder, $3 "env"
 * when its environment follows on stdin, then its argv. It leaves its pid
 * for the keeper; a program that is not this build's says its pid (or that
 * it is missing) first, so that spawn reports a missing program. */
static const char STEP_SCRIPT_KNOWN[] =
    "cd \"$1\" || exit 127; : > \"$2/$$\" || exit 127; e=$3; shift 3; "
    "if [ \"$e\" = env ]; then while IFS= read -r skyrun_kv && [ -n \"$skyrun_kv\" ]; do export \"$skyrun_kv\"; done; "
    "unset skyrun_kv; fi; exec \"$@\"";
static const char STEP_SCRIPT_OTHER[] =
    "cd \"$1\" || { echo '!cannot enter its folder'; exit 127; }; : > \"$2/$$\" || exit 127; e=$3; shift 3; "
    "command -v \"$1\" >/dev/null 2>&1 || { echo '!No such file or directory'; exit 127; }; echo $$; "
    "if [ \"$e\" = env ]; then while IFS= read -r skyrun_kv && [ -n \"$skyrun_kv\" ]; do export \"$skyrun_kv\"; done; "
    "unset skyrun_kv; fi; exec \"$@\"";

static int spawn(sky_provider *pr, sky_node *node, const sky_spawn *spec, sky_proc *proc, char *err, size_t errlen)
{
    slurm_provider *sp = (slurm_provider *)pr;
    slurm_node *sn = node->data;
    if (sp->gone[0] || sn->lost) {
        snprintf(err, errlen, "%s (%s): %s", node->name, sn->hostname,
                 sp->gone[0] ? sp->gone : "the node failed (srun: Node failure)");
        return -1;
    }
    size_t nargs = 0;
    while (spec->argv[nargs])
        nargs++;
    int has_env = 0;
    for (size_t i = 0; spec->env && spec->env[i]; i++) {
        if (strchr(spec->env[i], '\n') || !strchr(spec->env[i], '=')) {
            snprintf(err, errlen, "%s: an environment entry holds a newline or no '='", node->name);
            return -1;
        }
        has_env = 1;
    }
    int known = is_shippable(spec->argv[0]);
    const char **argv = sky_xcalloc(nargs + 48, sizeof *argv);
    char cpus[32];
    int a = step_argv(sp, sn->hostname, 1, argv, cpus, sizeof cpus);
    char pids[4200];
    snprintf(pids, sizeof pids, "%s/pids", sn->dir);
    /* A session of its own: the keeper ends it with all it started (a
     * step's task leads none), when asked or when the host is gone. */
    argv[a++] = "setsid";
    argv[a++] = "--wait";
    argv[a++] = "/bin/sh";
    argv[a++] = "-c";
    argv[a++] = known ? STEP_SCRIPT_KNOWN : STEP_SCRIPT_OTHER;
    argv[a++] = "skyrun-step";
    argv[a++] = spec->cwd ? spec->cwd : node->workdir;
    argv[a++] = pids;
    argv[a++] = has_env ? "env" : "-";
    for (size_t i = 0; i < nargs; i++)
        argv[a++] = spec->argv[i];
    argv[a] = NULL;
    int to, from, diag;
    char why[400];
    /* This process gone (SIGKILL): srun killed alone, its helper cancels the
     * step, and Slurm kills every process of it. */
    pid_t pid = start_child(sp, argv, &to, &from, &diag, SIGKILL, why, sizeof why);
    free(argv);
    if (pid < 0) {
        snprintf(err, errlen, "%s (%s): %s", node->name, sn->hostname, why);
        return -1;
    }
    long remote = 0;
    if (!known) {
        char header[300];
        char *end = header;
        if (read_header(from, now() + STEP_START_SECONDS, header, sizeof header) == 0)
            remote = strtol(header, &end, 10);
        if (header[0] == '!' || remote <= 1 || *end) {
            char diagwhy[400] = "";
            close(to);
            close(from);
            int killed;
            end_srun(pid, now() + 2.0, &killed);
            drain_diag(diag, diagwhy, sizeof diagwhy);
            close(diag);
            if (header[0] != '!' && job_is_gone(sp))
                snprintf(err, errlen, "%s: %s", spec->argv[0], sp->gone);
            else
                snprintf(err, errlen, "%s: %s", spec->argv[0],
                         header[0] == '!' ? header + 1 : diagwhy[0] ? diagwhy : "could not start as a step");
            return -1;
        }
    }
    if (has_env) {
        sky_buf input = SKY_BUF_INIT;
        for (size_t i = 0; spec->env[i]; i++)
            sky_buf_printf(&input, "%s\n", spec->env[i]);
        sky_buf_append_byte(&input, '\n');
        size_t done = 0;
        sky_sigpipe_guard g;
        sky_sigpipe_hold(&g);
        while (done < input.len) {
            ssize_t w = write(to, input.data + done, input.len - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            done += (size_t)w;
        }
        sky_sigpipe_release(&g);
        explicit_bzero(input.data, input.len);
        sky_buf_free(&input);
    }
    slurm_proc *spr = sky_xcalloc(1, sizeof *spr);
    spr->pid = pid;
    spr->remote_pid = remote;
    proc->to = to;
    proc->from = from;
    proc->diag = diag;
    proc->id = remote ? remote : pid;
    proc->handle = spr;
    return 0;
}

static void keeper_kill(slurm_node *sn, long pid)
{
    sky_buf req = SKY_BUF_INIT;
    control_field_str(&req, "kill");
    control_field_int(&req, pid);
    control_end(&req);
    keeper_client_send(&sn->kc, &req);
    sky_buf_free(&req);
}

static void describe(int status, char *how, size_t howlen)
{
    if (WIFEXITED(status))
        snprintf(how, howlen, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(how, howlen, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(how, howlen, "ended");
}

static int end_proc(sky_provider *pr, sky_node *node, sky_proc *proc, double deadline, char *how, size_t howlen)
{
    slurm_provider *sp = (slurm_provider *)pr;
    slurm_node *sn = node->data;
    int *fds[] = { &proc->to, &proc->from, &proc->diag };
    for (size_t i = 0; i < 3; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    slurm_proc *spr = proc->handle;
    if (!spr) {
        snprintf(how, howlen, "was never started");
        return -1;
    }
    int status = 0;
    if (!wait_until(spr->pid, deadline, &status)) {
        if (spr->remote_pid > 1 && sn && !sn->lost)
            keeper_kill(sn, spr->remote_pid);
        int killed;
        status = end_srun(spr->pid, now() + 1.0, &killed);
    }
    describe(status, how, howlen);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    if (code != 0 && job_is_gone(sp)) {
        size_t l = strlen(how);
        snprintf(how + l, howlen - l, ": %s", sp->gone);
    }
    free(spr);
    proc->id = 0;
    proc->handle = NULL;
    return code;
}

static int keeper_request(sky_provider *pr, sky_node *node, const sky_buf *record, const control_record **answer,
                          char *err, size_t errlen)
{
    (void)pr;
    slurm_node *sn = node->data;
    if (keeper_client_request(&sn->kc, record, err, errlen) != 0)
        return -1;
    *answer = &sn->kc.rec;
    return 0;
}

static void stop_node(sky_provider *pr, sky_node *node)
{
    slurm_provider *sp = (slurm_provider *)pr;
    slurm_node *sn = node->data;
    if (!sn)
        return;
    if (sn->srun > 0) {
        char why[400] = "";
        drain_diag(sn->diag, why, sizeof why);
        if (strstr(why, "Node failure"))
            sn->lost = 1;
        double until = now() + STOP_SECONDS;
        if (!sn->lost && !sp->gone[0] && sn->dir) {
            keeper_client_stop(&sn->kc, until);
        }
        keeper_client_close(&sn->kc);   /* end of its input: a keeper that did not stop cleans up now */
        int killed;
        end_srun(sn->srun, sn->lost ? now() : now() + TERM_SECONDS, &killed);
        if (sn->lost)
            sky_log(SKY_LOG_WARN, "%s (%s): the node failed; Slurm ends what ran there", node->name, sn->hostname);
        sn->srun = 0;
    }
    free_slurm_node(sn);
    node->data = NULL;
}

static void free_provider(sky_provider *pr)
{
    slurm_provider *sp = (slurm_provider *)pr;
    cancel_job(sp);
    for (size_t i = 0; sp->envp && sp->envp[i]; i++)
        free(sp->envp[i]);
    free(sp->envp);
    for (size_t i = 0; i < sp->o.nsbatch; i++)
        free(sp->sbatch_extra[i]);
    free(sp->sbatch_extra);
    free((char *)sp->o.partition);
    free((char *)sp->o.account);
    free((char *)sp->o.qos);
    free((char *)sp->o.constraint);
    free((char *)sp->o.time);
    free((char *)sp->o.gpus_per_node);
    free(sp);
}

sky_provider *sky_provider_slurm_new(const sky_slurm_options *opts, char *err, size_t errlen)
{
    if (!opts) {
        snprintf(err, errlen, "slurm provider: no options");
        return NULL;
    }
    if (opts->nsbatch > SKY_SLURM_MAX_SBATCH) {
        snprintf(err, errlen, "slurm provider: at most %d extra sbatch flags", SKY_SLURM_MAX_SBATCH);
        return NULL;
    }
    if (opts->cpus_per_worker < 0) {
        snprintf(err, errlen, "slurm provider: cpus_per_worker must be positive");
        return NULL;
    }
    slurm_provider *sp = sky_xcalloc(1, sizeof *sp);
    sp->o = *opts;
    sp->o.partition = sky_xstrdup(opts->partition);
    sp->o.account = sky_xstrdup(opts->account);
    sp->o.qos = sky_xstrdup(opts->qos);
    sp->o.constraint = sky_xstrdup(opts->constraint);
    sp->o.time = sky_xstrdup(opts->time ? opts->time : SKY_SLURM_DEFAULT_TIME);
    sp->o.gpus_per_node = sky_xstrdup(opts->gpus_per_node);
    sp->o.sbatch = NULL;
    sp->sbatch_extra = sky_xcalloc(opts->nsbatch + 1, sizeof *sp->sbatch_extra);
    for (size_t i = 0; i < opts->nsbatch; i++)
        sp->sbatch_extra[i] = sky_xstrdup(opts->sbatch[i]);
    if (sp->o.start_seconds <= 0)
        sp->o.start_seconds = SKY_SLURM_DEFAULT_START_SECONDS;
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    char *dot = strchr(host, '.');
    if (dot)
        *dot = 0;
    /* skyrun.HOST.PID: `skyrun slurm gc` can tell whether its client is gone. */
    snprintf(sp->job_name, sizeof sp->job_name, "skyrun.%s.%ld", host, (long)getpid());
    build_env(sp);
    sp->base.name = "slurm";
    sp->base.start_node = start_node;
    sp->base.start_nodes = start_nodes;
    sp->base.spawn = spawn;
    sp->base.end = end_proc;
    sp->base.request = keeper_request;
    sp->base.stop_node = stop_node;
    sp->base.free = free_provider;
    return &sp->base;
}

/* ---- skyrun slurm gc ---------------------------------------------------------------- */

int sky_slurm_gc(int dry_run, char *err, size_t errlen)
{
    slurm_provider sp;
    memset(&sp, 0, sizeof sp);
    build_env(&sp);
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    char *dot = strchr(host, '.');
    if (dot)
        *dot = 0;
    const char *argv[] = { "squeue", "-h", "--me", "-o", "%i|%j|%T", NULL };
    sky_buf out = SKY_BUF_INIT, eout = SKY_BUF_INIT;
    char why[600];
    int rc = run_slurm(&sp, argv, NULL, &out, &eout, why, sizeof why);
    if (rc != 0) {
        if (rc > 0)
            last_line(&eout, why, sizeof why);
        snprintf(err, errlen, "skyrun slurm gc: squeue: %s", why);
        rc = -1;
    } else {
        char *list = sky_xstrdup(sky_buf_cstr(&out)), *save = NULL;
        int cancelled = 0, kept = 0, elsewhere = 0;
        for (char *line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char *name = strchr(line, '|');
            char *state = name ? strchr(name + 1, '|') : NULL;
            if (!state)
                continue;
            *name++ = 0;
            *state++ = 0;
            /* skyrun.HOST.PID */
            if (strncmp(name, "skyrun.", 7) != 0 || strcmp(state, "COMPLETING") == 0)
                continue;
            char *pid_part = strrchr(name, '.');
            char *end;
            long pid = pid_part ? strtol(pid_part + 1, &end, 10) : 0;
            if (pid <= 1 || *end || pid_part == name + 6)
                continue;
            if ((size_t)(pid_part - (name + 7)) != strlen(host) || strncmp(name + 7, host, strlen(host)) != 0) {
                printf("job %s (%s): its client ran on another machine; run `skyrun slurm gc` there\n", line, name);
                elsewhere++;
                continue;
            }
            if (kill((pid_t)pid, 0) == 0 || errno == EPERM) {
                kept++;
                continue;   /* its client runs */
            }
            printf("job %s (%s, %s): its client (pid %ld) is gone: %s\n", line, name, state, pid,
                   dry_run ? "would cancel" : "cancelling");
            if (!dry_run) {
                snprintf(sp.job, sizeof sp.job, "%s", line);
                cancel_job(&sp);
            }
            cancelled++;
        }
        printf("%d job(s) of gone clients %s, %d with a running client kept, %d of other machines\n", cancelled,
               dry_run ? "found" : "cancelled", kept, elsewhere);
        free(list);
    }
    sky_buf_free(&out);
    sky_buf_free(&eout);
    for (size_t i = 0; sp.envp[i]; i++)
        free(sp.envp[i]);
    free(sp.envp);
    return rc;
}
