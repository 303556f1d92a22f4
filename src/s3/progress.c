/* progress: a one-line transfer progress bar on stderr (see progress.h). */
#include "s3/progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int s3_progress_wanted(int option)
{
    if (option >= 0)
        return option != 0;
    return isatty(STDERR_FILENO);
}

static void human_bytes(char *out, size_t cap, double v)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void draw(s3_progress *p, double now)
{
    char done[32], total[32], rate[32];
    double elapsed = now - p->started;
    human_bytes(done, sizeof done, (double)p->done);
    human_bytes(total, sizeof total, (double)p->total);
    human_bytes(rate, sizeof rate, elapsed > 0 ? (double)p->done / elapsed : 0);
    int pct = p->total ? (int)(p->done * 100 / p->total) : 100;
    int filled = pct * 20 / 100;
    char bar[21];
    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '.', (size_t)(20 - filled));
    bar[20] = '\0';
    fprintf(stderr, "\r%-40.40s [%s] %3d%% %s / %s  %s/s  ", p->label, bar, pct, done, total, rate);
    fflush(stderr);
    p->last_draw = now;
    p->drawn = 1;
}

void s3_progress_begin(s3_progress *p, int enabled, const char *label, uint64_t total)
{
    memset(p, 0, sizeof *p);
    p->enabled = enabled;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->started = now_seconds();
}

void s3_progress_add(s3_progress *p, int64_t n)
{
    if (!p)
        return;
    if (n < 0 && (uint64_t)-n > p->done)
        p->done = 0;
    else
        p->done += (uint64_t)n;
    if (!p->enabled)
        return;
    double now = now_seconds();
    if (now - p->last_draw >= 0.1)
        draw(p, now);
}

void s3_progress_end(s3_progress *p)
{
    if (!p || !p->enabled)
        return;
    draw(p, now_seconds());
    fputc('\n', stderr);
    fflush(stderr);
}
