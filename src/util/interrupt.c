/* interrupt: signal flag and last-resort process-group cleanup (see interrupt.h). */
#include "util/interrupt.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TRACKED 1100   /* more than the 1024 nodes a pool may have */

static volatile sig_atomic_t pending_signal;
static volatile pid_t tracked[MAX_TRACKED];   /* 0 = free slot */

#define MAX_DIRS 64
#define DIR_LEN 512
static char tracked_dirs[MAX_DIRS][DIR_LEN];   /* "" = free slot */
static int installed;
static int observed;   /* sky_interrupt_pending() has returned the pending signal */
static void (*volatile on_interrupt)(int sig);

void sky_interrupt_kill_tracked(void)
{
    for (int i = 0; i < MAX_TRACKED; i++) {
        pid_t g = tracked[i];
        if (g > 0)
            kill(-g, SIGKILL);
    }
    for (int i = 0; i < MAX_DIRS; i++) {
        if (!tracked_dirs[i][0])
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            char *argv[] = { "rm", "-rf", "--", tracked_dirs[i], NULL };
            char *envp[] = { NULL };
            execve("/bin/rm", argv, envp);
            _exit(127);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
    }
}

void sky_interrupt_track_dir(const char *path)
{
    if (strlen(path) >= DIR_LEN)
        return;
    for (int i = 0; i < MAX_DIRS; i++)
        if (!tracked_dirs[i][0]) {
            memcpy(tracked_dirs[i], path, strlen(path) + 1);
            return;
        }
}

void sky_interrupt_untrack_dir(const char *path)
{
    for (int i = 0; i < MAX_DIRS; i++)
        if (strcmp(tracked_dirs[i], path) == 0)
            tracked_dirs[i][0] = 0;
}

static void on_signal(int sig)
{
    if (pending_signal) {
        /* Second signal: the host did not stop in time. Leave nothing behind. */
        sky_interrupt_kill_tracked();
        signal(sig, SIG_DFL);
        raise(sig);
        _exit(128 + sig);
    }
    pending_signal = sig;
    if (on_interrupt)
        on_interrupt(sig);
}

void sky_interrupt_set_callback(void (*fn)(int sig)) { on_interrupt = fn; }

static void set_handlers(struct sigaction *old_int, struct sigaction *old_term)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;   /* no SA_RESTART: blocking calls return EINTR and loops notice */
    sigaction(SIGINT, &sa, old_int);
    sigaction(SIGTERM, &sa, old_term);
}

void sky_interrupt_install(void)
{
    if (installed)
        return;
    installed = 1;
    set_handlers(NULL, NULL);
}

static int scope_depth;
static struct sigaction scope_old_int, scope_old_term;

void sky_interrupt_scope_begin(void)
{
    if (installed || scope_depth++ > 0)
        return;
    observed = 0;
    sigaction(SIGINT, NULL, &scope_old_int);
    sigaction(SIGTERM, NULL, &scope_old_term);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* A signal the program ignores stays ignored. */
    if (scope_old_int.sa_handler != SIG_IGN)
        sigaction(SIGINT, &sa, NULL);
    if (scope_old_term.sa_handler != SIG_IGN)
        sigaction(SIGTERM, &sa, NULL);
}

void sky_interrupt_scope_end(void)
{
    if (installed || scope_depth == 0 || --scope_depth > 0)
        return;
    sigaction(SIGINT, &scope_old_int, NULL);
    sigaction(SIGTERM, &scope_old_term, NULL);
    int sig = pending_signal;
    pending_signal = 0;
    /* Nothing inside reported it (it came as the wait ended): the
     * program's own handler, or its default action, gets it after all.
     * The default action ends the process: stop the nodes first. */
    if (sig && !observed) {
        struct sigaction *old = sig == SIGINT ? &scope_old_int : &scope_old_term;
        if (old->sa_handler == SIG_DFL)
            sky_interrupt_kill_tracked();
        raise(sig);
    }
    observed = 0;
}

int sky_interrupt_pending(void)
{
    int sig = pending_signal;
    if (sig)
        observed = 1;   /* whoever asks acts on it: stops and reports "interrupted" */
    return sig;
}
void sky_interrupt_clear(void) { pending_signal = 0; }
void sky_interrupt_raise(int sig) { pending_signal = sig; }

void sky_interrupt_track_pgid(pid_t pgid)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked[i] == 0) {
            tracked[i] = pgid;
            return;
        }
}

void sky_interrupt_untrack_pgid(pid_t pgid)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked[i] == pgid)
            tracked[i] = 0;
}
