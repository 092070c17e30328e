/* itk_source.c: placeholder until the itk source role is built (issue 6). */
#include <stdio.h>

#include "itk_adapter.h"

#include "adapter.h"

int itk_src_configure(struct adapter *a, char *err, size_t errlen)
{
    (void)a;
    snprintf(err, errlen, "the itk source role is not built yet");
    return -1;
}
int itk_src_start(struct adapter *a, char *err, size_t errlen)
{
    (void)a;
    snprintf(err, errlen, "the itk source role is not built yet");
    return -1;
}
void itk_src_drain(struct adapter *a) { (void)a; }
bool itk_src_busy(const struct adapter *a) { (void)a; return false; }
void itk_src_stop(struct adapter *a) { (void)a; }
void itk_src_stats(const struct adapter *a, struct adapter_stats *out) { (void)a; (void)out; }
