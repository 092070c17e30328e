/*
 * itk_adapter.h: the "itk" adapter type's two roles. The type's table
 * (itk.c) dispatches on a->role to the source (itk_source.c: ITK 2 SOAP
 * requests received over HTTPS) or the destination (itk_dest.c: the same
 * sent on). Each role keeps its state in memory of its own: a->state
 * holds a pointer to it.
 */
#ifndef HL7BROKER_ADAPTERS_ITK_ADAPTER_H
#define HL7BROKER_ADAPTERS_ITK_ADAPTER_H

#include <stdbool.h>

struct adapter;
struct adapter_stats;
struct delivery;

/* The source role's lifecycle after configure is http_src_* (http.h). */
int  itk_src_configure(struct adapter *a, char *err, size_t errlen);

int  itk_dst_configure(struct adapter *a, char *err, size_t errlen);
int  itk_dst_start(struct adapter *a, char *err, size_t errlen);
int  itk_dst_send(struct adapter *a, const struct delivery *d);
void itk_dst_drain(struct adapter *a);
bool itk_dst_busy(const struct adapter *a);
void itk_dst_stop(struct adapter *a);
void itk_dst_stats(const struct adapter *a, struct adapter_stats *out);

#endif
