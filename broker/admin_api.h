/*
 * admin_api.h (broker/ only): the JSON API handlers of broker/admin_api.c
 * (queues, dead letters, pause and resume, message search, detail and
 * replay, reload, the audit log), rows of admin.c's endpoint table.
 */
#ifndef HL7BROKER_ADMIN_API_H
#define HL7BROKER_ADMIN_API_H

#include "admin.h"

extern const char *const admin_api_seq_params[];
extern const char *const admin_api_search_params[];
extern const char *const admin_api_replay_params[];
extern const char *const admin_api_audit_params[];

void admin_api_queue(struct admin_request *r);
void admin_api_dead(struct admin_request *r);
void admin_api_pause(struct admin_request *r);
void admin_api_resume(struct admin_request *r);
void admin_api_requeue(struct admin_request *r);
void admin_api_purge(struct admin_request *r);
void admin_api_search(struct admin_request *r);
void admin_api_message(struct admin_request *r);
void admin_api_replay(struct admin_request *r);
void admin_api_reload(struct admin_request *r);
void admin_api_audit(struct admin_request *r);

extern const char *const admin_api_objection_params[];
extern const char *const admin_api_objection_list_params[];
void admin_api_objections(struct admin_request *r);
void admin_api_objection_add(struct admin_request *r);
void admin_api_objection_remove(struct admin_request *r);

#endif
