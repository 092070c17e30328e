/* itk_dest.c: placeholder until the itk dest role is built (issue 6). */
#include <stdio.h>

#include "itk_adapter.h"

#include "adapter.h"

int itk_dst_configure(struct adapter *a, char *err, size_t errlen)
{
    (void)a;
    snprintf(err, errlen, "the itk dest role is not built yet");
    return -1;
}
int itk_dst_start(struct adapter *a, char *err, size_t errlen)
{
    (void)a;
    snprintf(err, errlen, "the itk dest role is not built yet");
    return -1;
}
void itk_dst_drain(struct adapter *a) { (void)a; }
bool itk_dst_busy(const struct adapter *a) { (void)a; return false; }
void itk_dst_stop(struct adapter *a) { (void)a; }
void itk_dst_stats(const struct adapter *a, struct adapter_stats *out) { (void)a; (void)out; }
int itk_dst_send(struct adapter *a, const struct delivery *d) { (void)a; (void)d; return -1; }
