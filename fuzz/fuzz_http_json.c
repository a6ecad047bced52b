/* Fuzzes request-body JSON handling: parse as an object, then run the field getters the
 * handlers use over every key, and render the error body for the detail message. */
#include "http/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *o = NULL;
    if (http_json_parse_object(data, size, &o) != VG_OK) {
        json_t *e = http_error_body("bad_request", vg_err_msg());
        if (!e)
            abort();
        char *s = json_dumps(e, JSON_COMPACT);
        free(s);
        json_decref(e);
        return 0;
    }
    static const char *const allowed[] = {"name", "legal_name", "contact", "notes", "status", NULL};
    http_json_only(o, allowed);
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        const char *s = NULL;
        int64_t i = 0;
        int b = 0;
        if (http_json_string(o, k, 1, 200, &s) == VG_OK && (!s || strlen(s) > 200))
            abort();
        if (http_json_int(o, k, 0, -5, 5, &i) == VG_OK && (i < -5 || i > 5))
            abort();
        http_json_bool(o, k, 0, &b);
    }
    json_decref(o);
    return 0;
}
