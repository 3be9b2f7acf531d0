#include "web/assets.h"

#include <string.h>

const web_asset *web_asset_find(const char *name)
{
    size_t low = 0, high = web_asset_count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int cmp = strcmp(name, web_assets[mid].name);
        if (cmp == 0)
            return &web_assets[mid];
        if (cmp < 0)
            high = mid;
        else
            low = mid + 1;
    }
    return NULL;
}
