/* keeper_client: requests to a node's keeper, answers back (keeper_client.h). */
#include "compute/keeper_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/log.h"

double keeper_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void keeper_client_init(keeper_client *kc, int in_fd, int out_fd, int passes_fds, const char *name)
{
    memset(kc, 0, sizeof *kc);
    kc->in_fd = in_fd;
    kc->out_fd = out_fd;
    kc->passes_fds = passes_fds;
    snprintf(kc->name, sizeof kc->name, "%s", name);
}

static void close_held(keeper_client *kc)
{
    for (int i = 0; i < kc->nheld; i++)
        close(kc->held[i]);
    kc->nheld = 0;
}

void keeper_client_close(keeper_client *kc)
{
    if (kc->in_fd >= 0)
        close(kc->in_fd);
    if (kc->out_fd >= 0 && kc->out_fd != kc->in_fd)
        close(kc->out_fd);
    kc->in_fd = kc->out_fd = -1;
    close_held(kc);
    sky_buf_free(&kc->in);
    sky_buf_free(&kc->last);
    free(kc->exits);
    kc->exits = NULL;
    kc->nexits = kc->capexits = 0;
}

/* Reads what the keeper sent (and descriptors that came with it), waiting
 * until deadline: 1 when bytes came, 0 on timeout, -1 when it is gone. */
static int channel_read(keeper_client *kc, double deadline)
{
    if (kc->in_fd < 0)
        return -1;
    for (;;) {
        double left = deadline - keeper_now();
        struct pollfd p = { .fd = kc->in_fd, .events = POLLIN };
        int r = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        break;
    }
    sky_buf_reserve(&kc->in, 4096);
    ssize_t n;
    if (!kc->passes_fds) {
        do
            n = read(kc->in_fd, kc->in.data + kc->in.len, kc->in.cap - kc->in.len);
        while (n < 0 && errno == EINTR);
    } else {
        union {
            char buf[CMSG_SPACE(8 * sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = { kc->in.data + kc->in.len, kc->in.cap - kc->in.len };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                              .msg_controllen = sizeof ctl.buf };
        do
            n = recvmsg(kc->in_fd, &msg, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); n >= 0 && c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int fds[8];
            memcpy(fds, CMSG_DATA(c), nfd * sizeof(int));
            for (size_t i = 0; i < nfd; i++) {
                if (kc->nheld < KEEPER_MAX_HELD_FDS)
                    kc->held[kc->nheld++] = fds[i];
                else
                    close(fds[i]);
            }
        }
    }
    if (n <= 0)
        return -1;
    kc->in.len += (size_t)n;
    return 1;
}

static void note_exit(keeper_client *kc, const control_record *r)
{
    int ok1, ok2;
    long id = (long)control_int(r, 1, &ok1);
    int code = (int)control_int(r, 2, &ok2);
    if (!ok1 || !ok2 || r->n < 4)
        return;
    if (kc->nexits == kc->capexits) {
        kc->capexits = kc->capexits ? 2 * kc->capexits : 16;
        kc->exits = sky_xrealloc(kc->exits, kc->capexits * sizeof *kc->exits);
    }
    keeper_exit *e = &kc->exits[kc->nexits++];
    e->id = id;
    e->code = code;
    snprintf(e->how, sizeof e->how, "%.*s", (int)r->len[3], r->field[3]);
}

int keeper_client_next(keeper_client *kc, double deadline, char *err, size_t errlen)
{
    for (;;) {
        size_t used;
        wire_err we;
        int rc = kc->in.len ? control_next(kc->in.data, kc->in.len, &kc->rec, &used, &we) : WIRE_AGAIN;
        if (rc == WIRE_EBAD) {
            snprintf(err, errlen, "%s: the node's keeper sent a malformed record: %s", kc->name, we.msg);
            return -1;
        }
        if (rc == WIRE_OK) {
            /* Keep the record's bytes where its fields can point to. */
            sky_buf_reset(&kc->last);
            sky_buf_append(&kc->last, kc->in.data, used);
            sky_buf_consume(&kc->in, used);
            control_next(kc->last.data, kc->last.len, &kc->rec, &used, &we);
            if (control_is(&kc->rec, 0, "exit")) {
                note_exit(kc, &kc->rec);
                continue;
            }
            if (control_is(&kc->rec, 0, "warn")) {
                sky_log(SKY_LOG_WARN, "%s: %.*s", kc->name, (int)kc->rec.len[1], kc->rec.field[1]);
                continue;
            }
            return 0;
        }
        int r = channel_read(kc, deadline);
        if (r == 0) {
            snprintf(err, errlen, "%s: the node's keeper did not answer in %.0f s", kc->name, KEEPER_REPLY_SECONDS);
            return -1;
        }
        if (r < 0) {
            snprintf(err, errlen, "%s: the node's keeper is gone", kc->name);
            return -1;
        }
    }
}

int keeper_client_send(keeper_client *kc, const sky_buf *req)
{
    size_t done = 0;
    while (done < req->len && kc->out_fd >= 0) {
        ssize_t n = kc->passes_fds ? send(kc->out_fd, req->data + done, req->len - done, MSG_NOSIGNAL)
                                   : write(kc->out_fd, req->data + done, req->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return done == req->len ? 0 : -1;
}

int keeper_client_request(keeper_client *kc, const sky_buf *req, char *err, size_t errlen)
{
    if (kc->passes_fds)
        close_held(kc);   /* nothing may be left over from an earlier answer */
    if (keeper_client_send(kc, req) != 0) {
        snprintf(err, errlen, "%s: the node's keeper is gone", kc->name);
        return -1;
    }
    if (keeper_client_next(kc, keeper_now() + KEEPER_REPLY_SECONDS, err, errlen) != 0)
        return -1;
    if (control_is(&kc->rec, 0, "err")) {
        snprintf(err, errlen, "%s: %.*s", kc->name, (int)(kc->rec.n > 1 ? kc->rec.len[1] : 0),
                 kc->rec.n > 1 ? kc->rec.field[1] : "");
        return -1;
    }
    return 0;
}

int keeper_client_take_fds(keeper_client *kc, int *fds, int n)
{
    /* The descriptors travel with the answer's first bytes. */
    for (int tries = 0; kc->nheld < n && tries < 10; tries++)
        if (channel_read(kc, keeper_now() + 0.1) < 0)
            break;
    if (kc->nheld < n) {
        close_held(kc);
        return -1;
    }
    memcpy(fds, kc->held, (size_t)n * sizeof *fds);
    memmove(kc->held, kc->held + n, (size_t)(kc->nheld - n) * sizeof *kc->held);
    kc->nheld -= n;
    close_held(kc);
    return 0;
}

static int take_exit(keeper_client *kc, long id, char *how, size_t howlen)
{
    for (size_t i = 0; i < kc->nexits; i++) {
        if (kc->exits[i].id != id)
            continue;
        int code = kc->exits[i].code;
        snprintf(how, howlen, "%s", kc->exits[i].how);
        kc->exits[i] = kc->exits[--kc->nexits];
        return code;
    }
    return -2;
}

/* Notes the exits among the records already read (nothing else is
 * expected while no request is pending; a warning is logged). */
static void drain_records(keeper_client *kc)
{
    size_t used;
    wire_err we;
    while (kc->in.len && control_next(kc->in.data, kc->in.len, &kc->rec, &used, &we) == WIRE_OK) {
        if (control_is(&kc->rec, 0, "exit"))
            note_exit(kc, &kc->rec);
        else if (control_is(&kc->rec, 0, "warn") && kc->rec.n > 1)
            sky_log(SKY_LOG_WARN, "%s: %.*s", kc->name, (int)kc->rec.len[1], kc->rec.field[1]);
        sky_buf_consume(&kc->in, used);
    }
}

int keeper_client_wait_exit(keeper_client *kc, long id, double deadline, char *how, size_t howlen)
{
    for (;;) {
        drain_records(kc);
        int code = take_exit(kc, id, how, howlen);
        if (code != -2)
            return code;
        if (channel_read(kc, deadline) <= 0) {
            drain_records(kc);
            return take_exit(kc, id, how, howlen);
        }
    }
}

int keeper_client_stop(keeper_client *kc, double deadline)
{
    sky_buf req = SKY_BUF_INIT;
    control_field_str(&req, "stop");
    control_end(&req);
    char err[300] = "";
    int rc = -1;
    if (keeper_client_send(kc, &req) == 0) {
        while (keeper_client_next(kc, deadline, err, sizeof err) == 0)
            if (control_is(&kc->rec, 0, "stopped")) {
                rc = 0;
                break;
            }
    }
    sky_buf_free(&req);
    return rc;
}
