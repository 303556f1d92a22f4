/*
 * fuzz_wire_seeds: writes a seed corpus for fuzz_wire from real encodings
 * (usage: fuzz_wire_seeds DIR). Each file is a selector byte (see
 * fuzz_wire.c) followed by a genuine frame stream, message or value list.
 */
#include "fuzz_protos.h"

#include <stdio.h>
#include <sys/stat.h>

static int write_seed(const char *dir, const char *name, int i, uint8_t selector, const sky_buf *b)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s-%d", dir, name, i);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fputc(selector, f);
    fwrite(b->data, 1, b->len, f);
    return fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_wire_seeds DIR\n");
        return 2;
    }
    mkdir(argv[1], 0755);
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    wire_codec *c = wire_codec_new(L, 0);
    int rc = 0;
    for (int i = 0; fuzz_chunks[i]; i++) {
        sky_buf values = SKY_BUF_INIT, msg = SKY_BUF_INIT, frames = SKY_BUF_INIT;
        if (fuzz_encode_chunk(L, c, i, &values, NULL) != 0) {
            fprintf(stderr, "chunk %d does not encode\n", i);
            rc = 1;
        }
        rc |= write_seed(argv[1], "values", i, 7, &values);
        wire_call_header(&msg, (uint64_t)i, 1.5);
        sky_buf_append(&msg, values.data, values.len);
        rc |= write_seed(argv[1], "call", i, 3, &msg);
        wire_frame_append(&frames, WIRE_CALL, msg.data, msg.len);
        sky_buf_reset(&msg);
        wire_result_header(&msg, (uint64_t)i);
        sky_buf_append(&msg, values.data, values.len);
        rc |= write_seed(argv[1], "result", i, 4, &msg);
        wire_frame_append(&frames, WIRE_RESULT, msg.data, msg.len);
        sky_buf_reset(&msg);
        wire_hello_append(&msg, values.data, values.len);
        rc |= write_seed(argv[1], "hello", i, 1, &msg);
        sky_buf_reset(&msg);
        wire_error_append(&msg, (uint64_t)i, WIRE_ERR_USER, "boom", 4, "stack traceback:", 16);
        rc |= write_seed(argv[1], "error", i, 5, &msg);
        sky_buf_reset(&msg);
        wire_output_append(&msg, 1, "line\n", 5);
        rc |= write_seed(argv[1], "output", i, 6, &msg);
        /* A large repetitive body so the stream has a compressed frame. */
        sky_buf_reset(&msg);
        for (int k = 0; k < 300; k++)
            sky_buf_append(&msg, values.data, values.len);
        wire_frame_append(&frames, WIRE_RESULT, msg.data, msg.len);
        wire_frame_append(&frames, WIRE_PING, NULL, 0);
        rc |= write_seed(argv[1], "frames", i, 0, &frames);
        sky_buf_free(&values);
        sky_buf_free(&msg);
        sky_buf_free(&frames);
    }
    wire_codec_free(c);
    lua_close(L);
    return rc ? 1 : 0;
}
