/*
 * tfjs weight files: the manifest (JSON array of groups {paths, weights}) and its binary shards.
 *
 * Trust: nothing from a model file is used before its sha256 matches models/SHA256SUMS, and even
 * then every size in the manifest is bounded and cross-checked against the shard bytes, so a
 * corrupt pair fails with a named error (the fuzzer feeds nn_weights_parse directly).
 *
 * Layout of the single allocation of an nn_weights:
 *   [struct nn_weights][nn_param x n][names, NUL-terminated][pad to 64][values, 4 bytes each]
 * Values are stored in manifest order; float32 and int32 tensors share the value area.
 */
#include "nn/nn.h"
#include "nn/nn_int.h"

#include "core/core.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

struct nn_weights {
    size_t n;
    size_t bytes;
    nn_param *params;
};

size_t nn_shape_count(nn_shape s)
{
    if (s.n < 0 || s.h < 0 || s.w < 0 || s.c < 0)
        return 0;
    size_t a, b;
    if (vg_mul_size((size_t)s.n, (size_t)s.h, &a) || vg_mul_size(a, (size_t)s.w, &b) ||
        vg_mul_size(b, (size_t)s.c, &a))
        return 0;
    return a;
}

/* What the first pass learns about one manifest tensor. */
typedef struct wdesc {
    const char *name; /* borrowed from the JSON document */
    int rank;
    int dims[NN_MAX_RANK];
    size_t count;
    nn_dtype dtype;
    int qbytes; /* bytes per stored element: 4 (raw), 1 (uint8), 2 (uint16) */
    double scale, min;
    size_t group;
    size_t offset; /* byte offset in the concatenated shards */
} wdesc;

static int parse_tensor(json_t *t, size_t gi, size_t ti, wdesc *d)
{
    json_t *name = json_object_get(t, "name");
    json_t *shape = json_object_get(t, "shape");
    json_t *dtype = json_object_get(t, "dtype");
    if (!json_is_string(name) || !json_is_array(shape) || !json_is_string(dtype))
        return vg_err_set(VG_EFORMAT, "manifest group %zu tensor %zu: needs name, shape, dtype", gi,
                          ti);
    d->name = json_string_value(name);
    if (d->name[0] == '\0' || strlen(d->name) > 256)
        return vg_err_set(VG_EFORMAT, "manifest group %zu tensor %zu: bad name", gi, ti);
    size_t rank = json_array_size(shape);
    if (rank > NN_MAX_RANK)
        return vg_err_set(VG_EFORMAT, "tensor %s: rank %zu > %d", d->name, rank, NN_MAX_RANK);
    d->rank = (int)rank;
    size_t count = 1;
    for (size_t k = 0; k < rank; k++) {
        json_t *v = json_array_get(shape, k);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > (json_int_t)(NN_MAX_WEIGHT_BYTES))
            return vg_err_set(VG_EFORMAT, "tensor %s: bad dimension %zu", d->name, k);
        d->dims[k] = (int)json_integer_value(v);
        if (vg_mul_size(count, (size_t)d->dims[k], &count) || count > NN_MAX_WEIGHT_BYTES)
            return vg_err_set(VG_ETOOBIG, "tensor %s: too many elements", d->name);
    }
    for (size_t k = rank; k < NN_MAX_RANK; k++)
        d->dims[k] = 1;
    d->count = count;
    const char *dt = json_string_value(dtype);
    if (strcmp(dt, "float32") == 0)
        d->dtype = NN_DT_F32;
    else if (strcmp(dt, "int32") == 0)
        d->dtype = NN_DT_I32;
    else
        return vg_err_set(VG_EFORMAT, "tensor %s: unsupported dtype %s", d->name, dt);
    d->qbytes = 4;
    d->scale = 1.0;
    d->min = 0.0;
    json_t *q = json_object_get(t, "quantization");
    if (q) {
        json_t *qd = json_object_get(q, "dtype");
        json_t *sc = json_object_get(q, "scale");
        json_t *mn = json_object_get(q, "min");
        if (!json_is_string(qd) || !json_is_number(sc) || !json_is_number(mn))
            return vg_err_set(VG_EFORMAT, "tensor %s: quantization needs dtype, scale, min",
                              d->name);
        const char *qs = json_string_value(qd);
        if (strcmp(qs, "uint8") == 0)
            d->qbytes = 1;
        else if (strcmp(qs, "uint16") == 0)
            d->qbytes = 2;
        else
            return vg_err_set(VG_EFORMAT, "tensor %s: unsupported quantization %s", d->name, qs);
        d->scale = json_number_value(sc);
        d->min = json_number_value(mn);
        if (!isfinite(d->scale) || !isfinite(d->min))
            return vg_err_set(VG_EFORMAT, "tensor %s: non-finite quantization", d->name);
    }
    return 0;
}

/* Stores element k of d (raw bytes at src) into dst as float or int32, as tfjs decodes it:
 * quantised values are computed in double (JavaScript numbers) and then rounded to float32, or
 * Math.round()ed for int32. */
static void decode_values(const wdesc *d, const uint8_t *src, void *dst)
{
    float *f = dst;
    int32_t *iv = dst;
    for (size_t k = 0; k < d->count; k++) {
        double v;
        if (d->qbytes == 1) {
            v = src[k] * d->scale + d->min;
        } else if (d->qbytes == 2) {
            uint16_t q = (uint16_t)(src[2 * k] | (src[2 * k + 1] << 8));
            v = q * d->scale + d->min;
        } else {
            uint32_t u = (uint32_t)src[4 * k] | ((uint32_t)src[4 * k + 1] << 8) |
                         ((uint32_t)src[4 * k + 2] << 16) | ((uint32_t)src[4 * k + 3] << 24);
            if (d->dtype == NN_DT_I32) {
                iv[k] = (int32_t)u;
                continue;
            }
            memcpy(&f[k], &u, 4);
            continue;
        }
        if (d->dtype == NN_DT_I32) {
            double r = floor(v + 0.5);
            iv[k] = r > 2147483647.0 ? INT32_MAX : r < -2147483648.0 ? INT32_MIN : (int32_t)r;
        } else {
            f[k] = (float)v;
        }
    }
}

int nn_weights_parse(const char *manifest, size_t manifest_len, const uint8_t *bin, size_t bin_len,
                     nn_weights **out)
{
    if (!manifest || !out || (!bin && bin_len))
        return vg_err_set(VG_EINVAL, "nn_weights_parse: NULL argument");
    if (manifest_len > NN_MAX_MANIFEST_BYTES)
        return vg_err_set(VG_ETOOBIG, "manifest is %zu bytes, max %zu", manifest_len,
                          NN_MAX_MANIFEST_BYTES);
    if (bin_len > NN_MAX_WEIGHT_BYTES)
        return vg_err_set(VG_ETOOBIG, "weights are %zu bytes, max %zu", bin_len,
                          NN_MAX_WEIGHT_BYTES);
    json_error_t jerr;
    json_t *root = json_loadb(manifest, manifest_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return vg_err_set(VG_EFORMAT, "manifest is not JSON (line %d: %s)", jerr.line, jerr.text);
    int rc = 0;
    wdesc *descs = NULL;
    nn_weights *w = NULL;
    if (!json_is_array(root) || json_array_size(root) == 0) {
        rc = vg_err_set(VG_EFORMAT, "manifest: expected a non-empty array of groups");
        goto done;
    }
    size_t n = 0;
    for (size_t g = 0; g < json_array_size(root); g++) {
        json_t *grp = json_array_get(root, g);
        json_t *ws = json_object_get(grp, "weights");
        json_t *paths = json_object_get(grp, "paths");
        if (!json_is_array(ws) || !json_is_array(paths) || json_array_size(paths) == 0) {
            rc = vg_err_set(VG_EFORMAT, "manifest group %zu: needs paths and weights", g);
            goto done;
        }
        n += json_array_size(ws);
        if (n > NN_MAX_TENSORS) {
            rc = vg_err_set(VG_ETOOBIG, "manifest: more than %d tensors", NN_MAX_TENSORS);
            goto done;
        }
    }
    descs = vg_calloc(n ? n : 1, sizeof *descs);
    if (!descs) {
        rc = vg_err_set(VG_ENOMEM, "manifest: out of memory");
        goto done;
    }
    /* Pass 1: describe every tensor, check the bytes add up, size the single block. */
    size_t off = 0, names_bytes = 0, values = 0, k = 0;
    for (size_t g = 0; g < json_array_size(root); g++) {
        json_t *ws = json_object_get(json_array_get(root, g), "weights");
        for (size_t t = 0; t < json_array_size(ws); t++, k++) {
            json_t *tj = json_array_get(ws, t);
            if (!json_is_object(tj)) {
                rc = vg_err_set(VG_EFORMAT, "manifest group %zu tensor %zu: not an object", g, t);
                goto done;
            }
            if ((rc = parse_tensor(tj, g, t, &descs[k])) != 0)
                goto done;
            for (size_t j = 0; j < k; j++) {
                if (strcmp(descs[j].name, descs[k].name) == 0) {
                    rc = vg_err_set(VG_EFORMAT, "manifest: tensor %s appears twice", descs[k].name);
                    goto done;
                }
            }
            descs[k].group = g;
            descs[k].offset = off;
            size_t nbytes;
            if (vg_mul_size(descs[k].count, (size_t)descs[k].qbytes, &nbytes) ||
                vg_add_size(off, nbytes, &off) || off > bin_len) {
                rc = vg_err_set(VG_ECORRUPT,
                                "weights: tensor %s needs bytes up to %zu, shards hold %zu",
                                descs[k].name, off, bin_len);
                goto done;
            }
            names_bytes += strlen(descs[k].name) + 1;
            values += descs[k].count;
        }
    }
    if (off != bin_len) {
        rc = vg_err_set(VG_ECORRUPT, "weights: manifest describes %zu bytes, shards hold %zu", off,
                        bin_len);
        goto done;
    }
    size_t head = sizeof(nn_weights) + n * sizeof(nn_param) + names_bytes;
    size_t head_al = (head + 63) & ~(size_t)63;
    size_t vbytes, total;
    if (vg_mul_size(values, 4, &vbytes) || vg_add_size(head_al, vbytes, &total)) {
        rc = vg_err_set(VG_ETOOBIG, "weights: too large");
        goto done;
    }
    uint8_t *block = vg_aligned_alloc(64, total ? total : 64);
    if (!block) {
        rc = vg_err_set(VG_ENOMEM, "weights: cannot allocate %zu bytes", total);
        goto done;
    }
    memset(block, 0, head_al);
    w = (nn_weights *)block;
    w->n = n;
    w->bytes = total;
    w->params = (nn_param *)(block + sizeof(nn_weights));
    char *names = (char *)(w->params + n);
    uint8_t *vals = block + head_al;
    /* Pass 2: decode. */
    for (k = 0; k < n; k++) {
        const wdesc *d = &descs[k];
        nn_param *p = &w->params[k];
        size_t len = strlen(d->name) + 1;
        memcpy(names, d->name, len);
        p->name = names;
        names += len;
        p->rank = d->rank;
        memcpy(p->dims, d->dims, sizeof p->dims);
        p->count = d->count;
        p->dtype = d->dtype;
        if (d->dtype == NN_DT_F32)
            p->f = (const float *)vals;
        else
            p->i = (const int32_t *)vals;
        decode_values(d, bin + d->offset, vals);
        vals += d->count * 4;
    }
    *out = w;
done:
    vg_free(descs);
    json_decref(root);
    return rc;
}

void nn_weights_free(nn_weights *w)
{
    vg_free(w);
}

const nn_param *nn_weights_find(const nn_weights *w, const char *name)
{
    if (!w || !name)
        return NULL;
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->params[i].name, name) == 0)
            return &w->params[i];
    return NULL;
}

int nn_weights_get_f32(const nn_weights *w, const char *name, int rank, const int *dims,
                       const float **out)
{
    const nn_param *p = nn_weights_find(w, name);
    if (!p)
        return vg_err_set(VG_ENOTFOUND, "model has no tensor %s", name);
    if (p->dtype != NN_DT_F32)
        return vg_err_set(VG_EFORMAT, "tensor %s is not float32", name);
    if (dims) {
        int ok = p->rank == rank;
        for (int i = 0; ok && i < rank; i++)
            ok = p->dims[i] == dims[i];
        if (!ok) {
            char got[64] = "", want[64] = "";
            for (int i = 0; i < p->rank; i++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? "," : "",
                         p->dims[i]);
            for (int i = 0; i < rank; i++)
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "," : "",
                         dims[i]);
            return vg_err_set(VG_EFORMAT, "tensor %s has shape [%s], expected [%s]", name, got,
                              want);
        }
    }
    *out = p->f;
    return 0;
}

size_t nn_weights_count(const nn_weights *w)
{
    return w ? w->n : 0;
}
const nn_param *nn_weights_at(const nn_weights *w, size_t i)
{
    return (w && i < w->n) ? &w->params[i] : NULL;
}
size_t nn_weights_bytes(const nn_weights *w)
{
    return w ? w->bytes : 0;
}

/* ---- SHA256SUMS ---------------------------------------------------------------------------- */

#define NN_MAX_SUMS_BYTES ((size_t)64 << 10)

int nn__sums_load(const char *models_dir, nn_sums *out)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/SHA256SUMS", models_dir) >= sizeof path)
        return vg_err_set(VG_EINVAL, "models directory path too long");
    uint8_t *buf;
    size_t len;
    int rc = vg_read_file(path, NN_MAX_SUMS_BYTES, &buf, &len);
    if (rc)
        return vg_err_set(rc == VG_ETOOBIG ? VG_ETOOBIG : VG_ENOTFOUND,
                          "%s: cannot read the pinned checksums (%s)", path, vg_strerror(rc));
    memset(out, 0, sizeof *out);
    char *save = NULL;
    for (char *line = strtok_r((char *)buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r')
            line[--l] = '\0';
        if (l == 0 || line[0] == '#')
            continue;
        if (out->n == NN_MAX_SUMS || l < 67 || line[64] != ' ' ||
            (line[65] != ' ' && line[65] != '*')) {
            vg_free(buf);
            return vg_err_set(VG_EFORMAT, "%s: malformed line", path);
        }
        nn_sum_entry *e = &out->e[out->n];
        char hex[65];
        memcpy(hex, line, 64);
        hex[64] = '\0';
        if (vg_hex_decode(hex, e->sha, 32) != 0 || l - 66 >= sizeof e->name) {
            vg_free(buf);
            return vg_err_set(VG_EFORMAT, "%s: malformed line", path);
        }
        memcpy(e->name, line + 66, l - 66 + 1);
        out->n++;
    }
    vg_free(buf);
    return 0;
}

const uint8_t *nn__sums_find(const nn_sums *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->e[i].name, name) == 0)
            return s->e[i].sha;
    return NULL;
}

int nn__read_verified(const char *models_dir, const nn_sums *sums, const char *name, uint8_t **out,
                      size_t *out_len)
{
    if (strchr(name, '/') || strcmp(name, "..") == 0 || name[0] == '\0')
        return vg_err_set(VG_EFORMAT, "model file name '%s' is not a plain file name", name);
    const uint8_t *want = nn__sums_find(sums, name);
    if (!want)
        return vg_err_set(VG_ENOTFOUND, "%s/%s: not listed in SHA256SUMS, refusing it", models_dir,
                          name);
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", models_dir, name) >= sizeof path)
        return vg_err_set(VG_EINVAL, "model path too long");
    uint8_t *buf;
    size_t len;
    int rc = vg_read_file(path, NN_MAX_WEIGHT_BYTES, &buf, &len);
    if (rc == VG_ETOOBIG)
        return vg_err_set(VG_ETOOBIG, "%s: larger than %zu bytes", path, NN_MAX_WEIGHT_BYTES);
    if (rc)
        return vg_err_set(VG_ENOTFOUND, "%s: missing or unreadable (run scripts/fetch-models.sh)",
                          path);
    uint8_t got[32];
    if ((rc = vg_sha256(buf, len, got)) != 0) {
        vg_free(buf);
        return rc;
    }
    if (memcmp(got, want, 32) != 0) {
        char hex[65];
        vg_hex_encode(got, 32, hex);
        vg_free(buf);
        return vg_err_set(VG_ECHECKSUM,
                          "%s: sha256 %.16s... does not match SHA256SUMS (truncated or altered, "
                          "%zu bytes); refusing it",
                          path, hex, len);
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int nn_weights_open(const char *models_dir, const char *name, nn_weights **out)
{
    if (!models_dir || !name || !out)
        return vg_err_set(VG_EINVAL, "nn_weights_open: NULL argument");
    nn_sums *sums = vg_malloc(sizeof *sums);
    if (!sums)
        return vg_err_set(VG_ENOMEM, "out of memory");
    int rc = nn__sums_load(models_dir, sums);
    uint8_t *man = NULL, *bin = NULL;
    size_t man_len = 0, bin_len = 0;
    json_t *root = NULL;
    if (rc)
        goto done;
    char mname[512];
    if ((size_t)snprintf(mname, sizeof mname, "%s-weights_manifest.json", name) >= sizeof mname) {
        rc = vg_err_set(VG_EINVAL, "model name too long");
        goto done;
    }
    if ((rc = nn__read_verified(models_dir, sums, mname, &man, &man_len)) != 0)
        goto done;
    /* The manifest is verified, so it is trusted to name the shards; the names are still checked
     * to be plain file names listed in SHA256SUMS. */
    json_error_t jerr;
    root = json_loadb((const char *)man, man_len, 0, &jerr);
    if (!root || !json_is_array(root)) {
        rc = vg_err_set(VG_EFORMAT, "%s/%s: not a JSON array", models_dir, mname);
        goto done;
    }
    for (size_t g = 0; g < json_array_size(root); g++) {
        json_t *paths = json_object_get(json_array_get(root, g), "paths");
        for (size_t k = 0; k < json_array_size(paths); k++) {
            json_t *pj = json_array_get(paths, k);
            if (!json_is_string(pj)) {
                rc = vg_err_set(VG_EFORMAT, "%s/%s: shard path is not a string", models_dir, mname);
                goto done;
            }
            uint8_t *shard;
            size_t slen;
            if ((rc = nn__read_verified(models_dir, sums, json_string_value(pj), &shard, &slen)))
                goto done;
            size_t nl;
            uint8_t *nb = NULL;
            if (vg_add_size(bin_len, slen, &nl) || nl > NN_MAX_WEIGHT_BYTES ||
                !(nb = vg_realloc(bin, nl ? nl : 1))) {
                vg_free(shard);
                rc = vg_err_set(nb ? VG_ETOOBIG : VG_ENOMEM, "%s: shards too large", mname);
                goto done;
            }
            bin = nb;
            memcpy(bin + bin_len, shard, slen);
            bin_len = nl;
            vg_free(shard);
        }
    }
    rc = nn_weights_parse((const char *)man, man_len, bin, bin_len, out);
    if (rc)
        rc = vg_err_set(rc, "%s/%s: %s", models_dir, mname, vg_err_msg());
done:
    json_decref(root);
    vg_free(man);
    vg_free(bin);
    vg_free(sums);
    return rc;
}

int nn_models_verify(const char *models_dir,
                     void (*report)(void *ctx, const char *file, int status), void *ctx)
{
    nn_sums *sums = vg_malloc(sizeof *sums);
    if (!sums)
        return vg_err_set(VG_ENOMEM, "out of memory");
    int rc = nn__sums_load(models_dir, sums);
    if (rc) {
        vg_free(sums);
        return rc;
    }
    int first = 0;
    for (int i = 0; i < sums->n; i++) {
        uint8_t *buf;
        size_t len;
        int st = nn__read_verified(models_dir, sums, sums->e[i].name, &buf, &len);
        if (st == 0)
            vg_free(buf);
        if (report)
            report(ctx, sums->e[i].name, st);
        if (st && !first)
            first = st;
    }
    vg_free(sums);
    return first;
}
