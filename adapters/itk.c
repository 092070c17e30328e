/*
 * itk.c: the "itk" adapter type's table. Each entry dispatches on the
 * instance's role to itk_source.c or itk_dest.c (itk_adapter.h).
 */
#include <stddef.h>

#include "http.h"
#include "itk_adapter.h"

#include "adapter.h"

static bool is_src(const struct adapter *a)
{
    return a->role == ADAPTER_SOURCE;
}

static int role_configure(struct adapter *a, char *err, size_t errlen)
{
    return is_src(a) ? itk_src_configure(a, err, errlen) : itk_dst_configure(a, err, errlen);
}

static int role_start(struct adapter *a, char *err, size_t errlen)
{
    return is_src(a) ? http_src_start(a, err, errlen) : itk_dst_start(a, err, errlen);
}

static int role_send(struct adapter *a, const struct delivery *d)
{
    return is_src(a) ? -1 : itk_dst_send(a, d);
}

static void role_drain(struct adapter *a)
{
    if (is_src(a))
        http_src_drain(a);
    else
        itk_dst_drain(a);
}

static bool role_busy(const struct adapter *a)
{
    return is_src(a) ? http_src_busy(a) : itk_dst_busy(a);
}

static void role_stop(struct adapter *a)
{
    if (is_src(a))
        http_src_stop(a);
    else
        itk_dst_stop(a);
}

static void role_stats(const struct adapter *a, struct adapter_stats *out)
{
    if (is_src(a))
        http_src_stats(a, out);
    else
        itk_dst_stats(a, out);
}

const struct adapter_type itk_adapter = {
    .name = "itk",
    .roles = ADAPTER_SOURCE | ADAPTER_DESTINATION,
    .state_size = sizeof(void *),
    .configure = role_configure,
    .start = role_start,
    .send = role_send,
    .drain = role_drain,
    .busy = role_busy,
    .stop = role_stop,
    .stats = role_stats,
};
