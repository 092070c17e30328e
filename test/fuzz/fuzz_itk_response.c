/*
 * fuzz_itk_response.c: libFuzzer target for the ITK response reader. Any
 * input: itk_response_parse classifies it as OK, a fault or something
 * else, with NUL-terminated code and text and no control bytes in them;
 * a fault always has a text, anything else says what it was.
 */
#include "fuzz.h"

#include "itk.h"

/* As fuzz_itk.c: `make fuzz` links the codec sources only, so the reader
 * and the parser (whose hardened XML reading it uses) come in here. */
#include "../../broker/itk_envelope.c"
#include "../../broker/itk_soap.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct itk_response r;
    memset(&r, 0x55, sizeof r);
    itk_response_parse((const char *)data, size, 1u << 20, &r);
    CHECK(r.kind == ITK_RESPONSE_OK || r.kind == ITK_RESPONSE_FAULT ||
          r.kind == ITK_RESPONSE_OTHER);
    CHECK(memchr(r.code, '\0', sizeof r.code) != NULL);
    CHECK(memchr(r.text, '\0', sizeof r.text) != NULL);
    CHECK(fuzz_clean(r.code, strlen(r.code)));
    CHECK(fuzz_clean(r.text, strlen(r.text)));
    if (r.kind != ITK_RESPONSE_OK)
        CHECK(r.text[0] != '\0');
    return 0;
}
