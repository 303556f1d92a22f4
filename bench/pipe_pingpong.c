/*
 * pipe_pingpong: the floor for a remote call on localhost — two processes
 * bouncing an 8-byte message over a pair of pipes. Prints p50 and p99 of
 * the round trip in microseconds.
 *   pipe_pingpong [rounds]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 20000;
    int ping[2], pong[2];
    if (pipe(ping) || pipe(pong))
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        close(ping[1]);   /* so that the parent's close() is our EOF */
        close(pong[0]);
        char m[8];
        while (read(ping[0], m, sizeof m) == (ssize_t)sizeof m)
            if (write(pong[1], m, sizeof m) != (ssize_t)sizeof m)
                break;
        _exit(0);
    }
    close(ping[0]);
    close(pong[1]);
    double *t = malloc(sizeof *t * (size_t)rounds);
    char m[8] = "pingpong";
    for (int i = -1000; i < rounds; i++) {   /* 1000 warm-up rounds */
        double t0 = now_us();
        if (write(ping[1], m, sizeof m) != (ssize_t)sizeof m || read(pong[0], m, sizeof m) != (ssize_t)sizeof m)
            return 1;
        if (i >= 0)
            t[i] = now_us() - t0;
    }
    close(ping[1]);
    waitpid(pid, NULL, 0);
    qsort(t, (size_t)rounds, sizeof *t, cmp_double);
    printf("pipe ping-pong: rounds=%d p50=%.1f us p99=%.1f us\n", rounds, t[rounds / 2], t[rounds * 99 / 100]);
    free(t);
    return 0;
}
