/* Names of the shared vocabulary of vg_types.h. */
#include "core/core.h"

#include <string.h>

static const char *const LEVEL_NAMES[VG_LEVEL_COUNT] = {"speed", "balanced", "accuracy", "memory"};
static const char *const MATCH_KIND_NAMES[VG_MATCH_COUNT] = {"exact", "pdq", "face"};

const char *vg_level_name(vg_level l)
{
    return (unsigned)l < VG_LEVEL_COUNT ? LEVEL_NAMES[l] : "unknown";
}

int vg_level_parse(const char *s, vg_level *out)
{
    for (unsigned i = 0; s && i < VG_LEVEL_COUNT; i++) {
        if (strcmp(s, LEVEL_NAMES[i]) == 0) {
            *out = (vg_level)i;
            return VG_OK;
        }
    }
    return vg_err_set(VG_EINVAL, "unknown level '%s' (speed|balanced|accuracy|memory)", s ? s : "");
}

const char *vg_match_kind_name(vg_match_kind k)
{
    return (unsigned)k < VG_MATCH_COUNT ? MATCH_KIND_NAMES[k] : "unknown";
}

int vg_match_kind_parse(const char *s, vg_match_kind *out)
{
    for (unsigned i = 0; s && i < VG_MATCH_COUNT; i++) {
        if (strcmp(s, MATCH_KIND_NAMES[i]) == 0) {
            *out = (vg_match_kind)i;
            return VG_OK;
        }
    }
    return vg_err_set(VG_EINVAL, "unknown match kind '%.40s'", s ? s : "(null)");
}
