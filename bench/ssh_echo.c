/*
 * ssh_echo: the floor for a call over SSH — 8 bytes bounced through a
 * command that echoes its stdin (e.g. `ssh HOST cat`), one round at a time,
 * over a pair of pipes to that command. Prints p50 and p99 of the round trip
 * in microseconds. The first rounds (connection, login) are not counted.
 *   ssh_echo ROUNDS WARMUP COMMAND [ARG...]
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
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

/* Reads exactly n bytes (a pipe from ssh may hand them over in pieces). */
static int read_full(int fd, char *p, size_t n)
{
    while (n > 0) {
        ssize_t got = read(fd, p, n);
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: ssh_echo ROUNDS WARMUP COMMAND [ARG...]\n");
        return 2;
    }
    int rounds = atoi(argv[1]), warmup = atoi(argv[2]);
    if (rounds <= 0 || warmup < 0) {
        fprintf(stderr, "ssh_echo: ROUNDS must be > 0 and WARMUP >= 0\n");
        return 2;
    }
    int to_cmd[2], from_cmd[2];
    if (pipe(to_cmd) || pipe(from_cmd)) {
        perror("ssh_echo: pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("ssh_echo: fork");
        return 1;
    }
    if (pid == 0) {
        dup2(to_cmd[0], 0);
        dup2(from_cmd[1], 1);
        close(to_cmd[0]);
        close(to_cmd[1]);
        close(from_cmd[0]);
        close(from_cmd[1]);
        execvp(argv[3], argv + 3);
        perror("ssh_echo: exec");
        _exit(127);
    }
    close(to_cmd[0]);
    close(from_cmd[1]);
    signal(SIGPIPE, SIG_IGN);
    double *t = malloc(sizeof *t * (size_t)rounds);
    if (!t) {
        fprintf(stderr, "ssh_echo: out of memory\n");
        return 1;
    }
    char m[8] = "pingpong";
    int status = 0;
    for (int i = -warmup; i < rounds; i++) {
        double t0 = now_us();
        if (write(to_cmd[1], m, sizeof m) != (ssize_t)sizeof m || read_full(from_cmd[0], m, sizeof m) != 0) {
            fprintf(stderr, "ssh_echo: the command stopped echoing at round %d\n", i);
            status = 1;
            break;
        }
        if (i >= 0)
            t[i] = now_us() - t0;
    }
    close(to_cmd[1]);   /* EOF: cat exits, ssh with it */
    waitpid(pid, NULL, 0);
    if (status == 0) {
        qsort(t, (size_t)rounds, sizeof *t, cmp_double);
        printf("ssh channel echo: rounds=%d p50=%.1f us p99=%.1f us\n", rounds, t[rounds / 2],
               t[rounds * 99 / 100]);
    }
    free(t);
    return status;
}
