/*
 * oneDNN backend (being written: step 3 of the nn task). Until it lands, plans for
 * NN_BACKEND_DNNL are refused with VG_EUNSUPPORTED so callers fall back to the reference
 * backend explicitly.
 */
#include "nn/nn_int.h"

#include "core/core.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>

int nn_dnnl_plan_new(nn_plan *p)
{
    return vg_err_set(VG_EUNSUPPORTED, "%s: the oneDNN backend is not built yet", p->g->name);
}
void nn_dnnl_plan_free(nn_dnnl_plan *d)
{
    VG_UNUSED(d);
}
int nn_dnnl_plan_run(nn_plan *p, const float *in, int n, float *const *outs)
{
    VG_UNUSED(in);
    VG_UNUSED(n);
    VG_UNUSED(outs);
    return vg_err_set(VG_EUNSUPPORTED, "%s: the oneDNN backend is not built yet", p->g->name);
}
size_t nn_dnnl_plan_scratch_bytes(const nn_dnnl_plan *d)
{
    VG_UNUSED(d);
    return 0;
}
size_t nn_dnnl_plan_weight_bytes(const nn_dnnl_plan *d)
{
    VG_UNUSED(d);
    return 0;
}

struct nn_wcache {
    size_t bytes;
};
int nn_wcache_new(nn_wcache **out)
{
    *out = vg_calloc(1, sizeof **out);
    return *out ? 0 : vg_err_set(VG_ENOMEM, "out of memory");
}
void nn_wcache_free(nn_wcache *c)
{
    vg_free(c);
}
size_t nn_wcache_bytes(const nn_wcache *c)
{
    return c ? c->bytes : 0;
}

const char *nn_dnnl_describe(void)
{
    const dnnl_version_t *v = dnnl_version();
    static const char *names[] = {"", "sse41", "avx", "avx2", "avx512_core"};
    (void)names;
    static __thread char buf[128];
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d (%s), cpu isa %s", v->major, v->minor, v->patch,
             v->hash, "auto");
    return buf;
}

void nn_set_dnnl_verbose(int level)
{
    dnnl_set_verbose(level);
}
