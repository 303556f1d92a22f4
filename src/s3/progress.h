/*
 * progress: the transfer progress bar. Drawn on stderr, at most ten times a
 * second, only when enabled — by default only when stderr is a terminal, so
 * logs and pipes never receive carriage returns. Plain text (no colours), so
 * NO_COLOR terminals get the same bar.
 */
#ifndef SKY_S3_PROGRESS_H
#define SKY_S3_PROGRESS_H

#include <stdint.h>

typedef struct s3_progress {
    int enabled;
    char label[96];
    uint64_t total, done;
    double started, last_draw;
    int drawn;
} s3_progress;

/* 1 when a bar should be drawn for the option value (-1 terminal, 0, 1). */
int s3_progress_wanted(int option);

void s3_progress_begin(s3_progress *p, int enabled, const char *label, uint64_t total);
/* Adds n bytes (negative when a retried request's bytes are taken back). */
void s3_progress_add(s3_progress *p, int64_t n);
/* Draws the final state and ends the line (when anything was drawn). */
void s3_progress_end(s3_progress *p);

#endif
