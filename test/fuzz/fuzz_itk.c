/*
 * fuzz_itk.c: libFuzzer target for the ITK envelope parser. Any input:
 * itk_parse must succeed or fail cleanly with a code and a sentence; a
 * parsed envelope has every required field, payload ids as the manifest
 * listed them, and NUL-terminated payload bytes.
 */
#include "fuzz.h"

#include "itk.h"

/* `make fuzz` links the codec sources only (FUZZ_LIB_SRC in the Makefile):
 * the parser comes in with this target. The replay build links the
 * library, whose copy is then not pulled in. */
#include "../../broker/itk_envelope.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct itk_limits lim = { .max_bytes = 1u << 20, .max_depth = 64 };
    struct itk_envelope *e = (void *)1;
    struct itk_error err;
    int rc = itk_parse((const char *)data, size, &lim, &e, &err);
    if (rc) {
        CHECK(rc < 0 && e == NULL && err.rc == rc);
        CHECK(err.itk_code[0] != '\0' && err.msg[0] != '\0');
        CHECK(strlen(err.msg) < sizeof err.msg);
        return 0;
    }
    CHECK(e && e->service && *e->service && e->tracking_id && *e->tracking_id);
    CHECK(e->sender && *e->sender && e->audit_identity && *e->audit_identity);
    CHECK(e->n_payloads > 0);
    for (size_t i = 0; i < e->n_addresses; i++)
        CHECK(e->addresses[i] && *e->addresses[i]);
    for (size_t i = 0; i < e->n_payloads; i++) {
        const struct itk_payload *p = &e->payloads[i];
        CHECK(p->id && *p->id && p->mimetype && p->data);
        CHECK(p->data[p->len] == '\0');
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(e->payloads[j].id, p->id) != 0);
    }
    itk_free(e);
    return 0;
}
