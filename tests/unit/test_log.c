/*
 * test_log: src/util/log.c — a registered secret never comes out of
 * sky_log (stderr is captured with dup2 onto a temporary file), sky_redact
 * handles repeated, overlapping and nested secrets, levels filter, and lines
 * from several threads stay whole.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/log.h"

/* ---- capturing stderr --------------------------------------------------- */

typedef struct capture {
    int saved_fd;
    FILE *file;
} capture;

static void capture_start(capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(c->saved_fd >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Restores stderr; returns what was written to it (caller frees). */
static char *capture_end(capture *c)
{
    long size;
    char *text;

    fflush(stderr);
    assert_true(dup2(c->saved_fd, STDERR_FILENO) >= 0);
    close(c->saved_fd);
    size = ftell(c->file);
    assert_true(size >= 0);
    text = calloc((size_t)size + 1, 1);
    assert_non_null(text);
    rewind(c->file);
    assert_int_equal(fread(text, 1, (size_t)size, c->file), (size_t)size);
    fclose(c->file);
    return text;
}

static int setup(void **state)
{
    sky_secret_clear();
    sky_log_set_level(SKY_LOG_DEBUG);
    return 0;
}

static int teardown(void **state)
{
    sky_secret_clear();
    return 0;
}

static const char *const SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/* ---- sky_log ------------------------------------------------------------ */

static void test_registered_secret_never_reaches_stderr_at_any_level(void **state)
{
    capture c;
    char *out;

    sky_secret_register(SECRET);
    capture_start(&c);
    sky_log(SKY_LOG_ERROR, "auth failed with secret %s", SECRET);
    sky_log(SKY_LOG_WARN, "%s%s", SECRET, SECRET);
    sky_log(SKY_LOG_INFO, "env: AWS_SECRET_ACCESS_KEY=%s AWS_REGION=us-east-1", SECRET);
    sky_log(SKY_LOG_DEBUG, "echo '%s' > /tmp/passwd-s3fs", SECRET);
    out = capture_end(&c);

    assert_null(strstr(out, SECRET));
    assert_null(strstr(out, "EXAMPLEKEY"));
    assert_non_null(strstr(out, "skyrun: error: auth failed with secret [REDACTED]\n"));
    assert_non_null(strstr(out, "skyrun: warning: [REDACTED]\n"));
    assert_non_null(strstr(out, "AWS_SECRET_ACCESS_KEY=[REDACTED] AWS_REGION=us-east-1\n"));
    assert_non_null(strstr(out, "echo '[REDACTED]' > /tmp/passwd-s3fs\n"));
    free(out);
}

static void test_percent_encoded_secret_in_a_logged_url_is_redacted(void **state)
{
    capture c;
    char *out;

    sky_secret_register(SECRET);
    capture_start(&c);
    sky_log(SKY_LOG_INFO, "GET http://h/b/k?X-Amz-Security-Token=%s&X-Amz-Date=1",
            "wJalrXUtnFEMI%2FK7MDENG%2BbPxRfiCYEXAMPLEKEY");
    out = capture_end(&c);
    assert_null(strstr(out, "EXAMPLEKEY"));
    assert_non_null(strstr(out, "X-Amz-Security-Token=[REDACTED]&X-Amz-Date=1\n"));
    free(out);
}

static void test_messages_above_the_level_are_dropped(void **state)
{
    capture c;
    char *out;

    sky_log_set_level(SKY_LOG_WARN);
    capture_start(&c);
    sky_log(SKY_LOG_INFO, "info line");
    sky_log(SKY_LOG_DEBUG, "debug line");
    sky_log(SKY_LOG_WARN, "warn line\n");
    sky_log(SKY_LOG_ERROR, "error line");
    out = capture_end(&c);
    assert_string_equal(out, "skyrun: warning: warn line\nskyrun: error: error line\n");
    assert_int_equal(sky_log_get_level(), SKY_LOG_WARN);
    free(out);
}

/* The level from SKYRUN_LOG is read once per process, so it is checked in a
 * fresh process: this test binary re-executed with --print-level. */
static int level_in_child(const char *value)
{
    int fds[2], status;
    char buf[16] = { 0 };
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        setenv("SKYRUN_LOG", value, 1);
        execl("/proc/self/exe", "test_log", "--print-level", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    assert_true(read(fds[0], buf, sizeof buf - 1) > 0);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return atoi(buf);
}

static void test_skyrun_log_environment_sets_the_level(void **state)
{
    assert_int_equal(level_in_child("debug"), SKY_LOG_DEBUG);
    assert_int_equal(level_in_child("INFO"), SKY_LOG_INFO);
    assert_int_equal(level_in_child("error"), SKY_LOG_ERROR);
    assert_int_equal(level_in_child("warn"), SKY_LOG_WARN);
    assert_int_equal(level_in_child("nonsense"), SKY_LOG_WARN);
}

/* ---- sky_redact --------------------------------------------------------- */

static void test_every_repetition_of_a_secret_is_redacted(void **state)
{
    char text[] = "k=s3cr3t-value k=s3cr3t-value,s3cr3t-values3cr3t-value";
    sky_secret_register("s3cr3t-value");
    assert_string_equal(sky_redact(text), "k=[REDACTED] k=[REDACTED],[REDACTED]");
}

static void test_overlapping_secrets_leave_no_fragment(void **state)
{
    char text[] = "xx 0123456789abcdef yy";
    sky_secret_register("0123456789ab");
    sky_secret_register("6789abcdef");
    /* Replacing one secret first would leave "cdef" or "012345" behind. */
    assert_string_equal(sky_redact(text), "xx [REDACTED] yy");
}

static void test_self_overlapping_occurrences_are_redacted(void **state)
{
    sky_buf b = SKY_BUF_INIT;
    sky_secret_register("abab");
    sky_buf_append_str(&b, "<ababab>");
    sky_redact_buf(&b);
    assert_string_equal(sky_buf_cstr(&b), "<[REDACTED]>");
    sky_buf_free(&b);
}

static void test_secret_inside_a_longer_secret(void **state)
{
    sky_buf b = SKY_BUF_INIT;
    sky_secret_register("tokenpart");
    sky_secret_register("xx-tokenpart-yy");
    sky_buf_append_str(&b, "a xx-tokenpart-yy b tokenpart c");
    sky_redact_buf(&b);
    assert_string_equal(sky_buf_cstr(&b), "a [REDACTED] b [REDACTED] c");
    sky_buf_free(&b);
}

static void test_short_strings_are_not_treated_as_secrets(void **state)
{
    char text[] = "abc ab a";
    sky_secret_register("abc");
    sky_secret_register("");
    sky_secret_register(NULL);
    assert_string_equal(sky_redact(text), "abc ab a");
}

static void test_in_place_redaction_never_grows_the_text(void **state)
{
    char text[] = "pw=abcd, user=bob";
    size_t before = strlen(text);
    sky_secret_register("abcd");
    sky_redact(text);
    /* "[REDACTED]" is longer than "abcd": the text is cut, never overrun. */
    assert_true(strlen(text) <= before);
    assert_null(strstr(text, "abcd"));
    assert_int_equal(strncmp(text, "pw=[REDACTED]", 13), 0);
}

static void test_buffer_redaction_keeps_the_rest_of_the_text(void **state)
{
    sky_buf b = SKY_BUF_INIT;
    sky_secret_register("abcd");
    sky_buf_append_str(&b, "pw=abcd, user=bob");
    sky_redact_buf(&b);
    assert_string_equal(sky_buf_cstr(&b), "pw=[REDACTED], user=bob");
    sky_buf_free(&b);
}

static void test_clear_forgets_secrets(void **state)
{
    char text[] = "value-1234";
    sky_secret_register("value-1234");
    sky_secret_clear();
    assert_string_equal(sky_redact(text), "value-1234");
}

/* ---- threads ------------------------------------------------------------ */

#define THREADS 4
#define LINES 200

static void *log_lines(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (int i = 0; i < LINES; i++)
        sky_log(SKY_LOG_INFO, "thread %ld line %d secret %s end", id, i, SECRET);
    return NULL;
}

static void test_concurrent_lines_stay_whole_and_redacted(void **state)
{
    pthread_t threads[THREADS];
    capture c;
    char *out, *line, *save = NULL;
    int count = 0;

    sky_secret_register(SECRET);
    capture_start(&c);
    for (long t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, log_lines, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    out = capture_end(&c);

    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        long id;
        int n;
        char tail[32];
        assert_int_equal(sscanf(line, "skyrun: info: thread %ld line %d secret [REDACTED] %31s",
                                &id, &n, tail), 3);
        assert_string_equal(tail, "end");
        count++;
    }
    assert_int_equal(count, THREADS * LINES);
    free(out);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registered_secret_never_reaches_stderr_at_any_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_percent_encoded_secret_in_a_logged_url_is_redacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_above_the_level_are_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skyrun_log_environment_sets_the_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_repetition_of_a_secret_is_redacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlapping_secrets_leave_no_fragment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_overlapping_occurrences_are_redacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_inside_a_longer_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_strings_are_not_treated_as_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_place_redaction_never_grows_the_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_redaction_keeps_the_rest_of_the_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clear_forgets_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_lines_stay_whole_and_redacted, setup, teardown),
    };

    if (argc == 2 && strcmp(argv[1], "--print-level") == 0) {
        /* The unknown-value warning goes to stderr; only the level to stdout. */
        printf("%d\n", sky_log_get_level());
        return 0;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
