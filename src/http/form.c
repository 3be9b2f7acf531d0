#include "http/form.h"

#include <microhttpd.h>
#include <string.h>

#include "core/utf8.h"

bool form_field(const char *body, const char *name, char *out, size_t out_size)
{
    size_t name_len = strlen(name);
    out[0] = '\0';
    for (const char *p = body; p && *p;) {
        const char *end = strchr(p, '&');
        size_t pair_len = end ? (size_t)(end - p) : strlen(p);
        if (pair_len > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
            size_t value_len = pair_len - name_len - 1;
            if (value_len >= out_size)
                return false;
            memcpy(out, p + name_len + 1, value_len);
            out[value_len] = '\0';
            for (char *c = out; *c; c++) /* '+' means space in forms; MHD_http_unescape handles %XX */
                if (*c == '+')
                    *c = ' ';
            /* A %00 would cut the value short unseen, and %FF spells no user, password
             * or path: such a value is refused, not shortened. */
            size_t decoded = MHD_http_unescape(out);
            if (decoded != strlen(out) || !utf8_is_valid(out, decoded)) {
                out[0] = '\0';
                return false;
            }
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}
