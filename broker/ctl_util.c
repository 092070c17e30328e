/*
 * ctl_util.c: helpers the hl7ctl commands share (see include/ctl.h).
 */
#include "ctl.h"

#include <errno.h>
#include <string.h>

int ctl_read_input(const char *prog, const char *path, size_t max, struct buf *b)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
        return -1;
    }
    int rc = 0;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b->len + n > max) {
            fprintf(stderr, "%s: %s: larger than the maximum of %zu bytes\n", prog, path, max);
            rc = -1;
            break;
        }
        if (buf_append(b, chunk, n)) {
            fprintf(stderr, "%s: %s: out of memory\n", prog, path);
            rc = -1;
            break;
        }
    }
    if (!rc && ferror(f)) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
        rc = -1;
    }
    if (f != stdin)
        fclose(f);
    return rc;
}

void ctl_put_escaped(FILE *out, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n')
            fputs("\\n", out);
        else if (c == '\r')
            fputs("\\r", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
}
