#include "sync/connector.h"

#include <string.h>

static const connector_ops *const builtin[] = {&postgres_connector, &keboola_connector};

const connector_ops *connector_find(const char *type)
{
    for (size_t i = 0; type != NULL && i < sizeof builtin / sizeof builtin[0]; i++)
        if (strcmp(builtin[i]->type, type) == 0)
            return builtin[i];
    return NULL;
}
