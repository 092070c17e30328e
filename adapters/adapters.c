/*
 * adapters.c: the registry of adapter types. A new type adds its schema
 * (and, once adapters run, its struct adapter_type) here.
 */
#include "adapter_config.h"

const struct config_adapter_schema *const config_adapter_schemas[] = {
    &mllp_config_schema,
    &file_config_schema,
    NULL,
};
