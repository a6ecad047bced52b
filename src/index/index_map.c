/* index: string -> handle maps for tenants and profiles, and the reference key sets. See
 * index_int.h for the layouts. Not thread-safe: each belongs to one shard and is changed by its
 * writer (the profile map under the write lock, since queries read it). */
#include "index/index_int.h"

#include "core/core.h"

#include <string.h>

#define MAP_MIN_CAP 16

uint32_t index__hash_str(const char *s)
{
    /* FNV-1a: ids are short and the table is bounded by live entries; no attacker gains
     * anything from collisions beyond slowing their own tenant's writes. */
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 16777619u;
    }
    return h;
}

static inline uint32_t slot_hash(uint64_t s)
{
    return (uint32_t)(s >> 32);
}

static inline uint32_t slot_handle(uint64_t s)
{
    return (uint32_t)s - 1;
}

static size_t map_find_slot(const index__map *m, const char *key, uint32_t hash, index__key_fn kf,
                            const void *ctx)
{
    if (!m->cap)
        return SIZE_MAX;
    size_t mask = m->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        uint64_t s = m->slots[i];
        if (!s)
            return SIZE_MAX;
        if (slot_hash(s) == hash && strcmp(kf(ctx, slot_handle(s)), key) == 0)
            return i;
    }
}

uint32_t index__map_find(const index__map *m, const char *key, uint32_t hash, index__key_fn kf,
                         const void *ctx)
{
    size_t i = map_find_slot(m, key, hash, kf, ctx);
    return i == SIZE_MAX ? INDEX__NONE : slot_handle(m->slots[i]);
}

static void map_place(uint64_t *slots, size_t cap, uint64_t s)
{
    size_t mask = cap - 1;
    size_t i = slot_hash(s) & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = s;
}

int index__map_reserve(index__map *m, size_t n_more)
{
    /* At most 3/4 full: a 10M-reference tenant's map is 128 MiB instead of 256 at <= 1/2, and
     * linear probing still averages ~2.5 probes per hit at 3/4 (~1.5 at the typical 3/8..3/4
     * that doubling leaves). */
    size_t need;
    if (vg_add_size(m->n, n_more, &need) || vg_mul_size(need, 4, &need))
        return vg_err_set(VG_ENOMEM, "index map too large");
    need = (need + 2) / 3;
    if (need <= m->cap)
        return VG_OK;
    size_t cap = m->cap ? m->cap : MAP_MIN_CAP;
    while (cap < need) {
        if (cap > SIZE_MAX / 2 / sizeof(uint64_t))
            return vg_err_set(VG_ENOMEM, "index map too large");
        cap *= 2;
    }
    /* Probes land at random: a big map on huge pages spares each lookup a TLB miss (a reference
     * map at 10M references is 128 MiB). */
    uint64_t *slots = index__alloc_big(cap * sizeof *slots);
    if (!slots)
        return vg_err_set(VG_ENOMEM, "index map of %zu slots", cap);
    memset(slots, 0, cap * sizeof *slots);
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i])
            map_place(slots, cap, m->slots[i]);
    vg_free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return VG_OK;
}

void index__map_insert(index__map *m, uint32_t hash, uint32_t handle)
{
    map_place(m->slots, m->cap, ((uint64_t)hash << 32) | ((uint64_t)handle + 1));
    m->n++;
}

uint32_t index__map_remove(index__map *m, const char *key, uint32_t hash, index__key_fn kf,
                           const void *ctx)
{
    size_t i = map_find_slot(m, key, hash, kf, ctx);
    if (i == SIZE_MAX)
        return INDEX__NONE;
    uint32_t handle = slot_handle(m->slots[i]);
    /* Backward-shift deletion: pull later members of the probe run into the hole whenever
     * their home slot does not lie cyclically in (hole, j], so lookups never need tombstones. */
    size_t mask = m->cap - 1;
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
        size_t home = slot_hash(m->slots[j]) & mask;
        int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole] = 0;
    m->n--;
    return handle;
}

void index__map_free(index__map *m)
{
    vg_free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

size_t index__map_bytes(const index__map *m)
{
    return m->cap * sizeof(uint64_t);
}

/* ---- key sets ------------------------------------------------------------------------------- */

/* The store's keys count up from 1, so a multiplicative mix spreads consecutive keys over the
 * table (the high bits: the low bits of a product of consecutive keys repeat). */
static inline size_t key_home(uint64_t key, size_t mask)
{
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & mask;
}

static size_t keyset_find_slot(const index__keyset *s, uint64_t key, const uint64_t *keys)
{
    if (!s->cap)
        return SIZE_MAX;
    size_t mask = s->cap - 1;
    for (size_t i = key_home(key, mask);; i = (i + 1) & mask) {
        uint32_t v = s->slots[i];
        if (!v)
            return SIZE_MAX;
        if (index__ref_key(keys[v - 1]) == key)
            return i;
    }
}

uint32_t index__keyset_find(const index__keyset *s, uint64_t key, const uint64_t *keys)
{
    size_t i = keyset_find_slot(s, key, keys);
    return i == SIZE_MAX ? INDEX__NONE : s->slots[i] - 1;
}

static void keyset_place(uint32_t *slots, size_t cap, uint32_t v, const uint64_t *keys)
{
    size_t mask = cap - 1;
    size_t i = key_home(index__ref_key(keys[v - 1]), mask);
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = v;
}

int index__keyset_reserve(index__keyset *s, size_t n_more, const uint64_t *keys)
{
    size_t need;
    if (vg_add_size(s->n, n_more, &need) || vg_mul_size(need, 4, &need))
        return vg_err_set(VG_ENOMEM, "index key set too large");
    need = (need + 2) / 3;
    if (need <= s->cap)
        return VG_OK;
    size_t cap = s->cap ? s->cap : MAP_MIN_CAP;
    while (cap < need) {
        if (cap > SIZE_MAX / 2 / sizeof(uint32_t))
            return vg_err_set(VG_ENOMEM, "index key set too large");
        cap *= 2;
    }
    uint32_t *slots = index__alloc_big(cap * sizeof *slots);
    if (!slots)
        return vg_err_set(VG_ENOMEM, "index key set of %zu slots", cap);
    memset(slots, 0, cap * sizeof *slots);
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i])
            keyset_place(slots, cap, s->slots[i], keys);
    vg_free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return VG_OK;
}

void index__keyset_insert(index__keyset *s, uint32_t pos, const uint64_t *keys)
{
    keyset_place(s->slots, s->cap, pos + 1, keys);
    s->n++;
}

uint32_t index__keyset_remove(index__keyset *s, uint64_t key, const uint64_t *keys)
{
    size_t i = keyset_find_slot(s, key, keys);
    if (i == SIZE_MAX)
        return INDEX__NONE;
    uint32_t pos = s->slots[i] - 1;
    size_t mask = s->cap - 1, hole = i; /* backward shift, as index__map_remove */
    for (size_t j = (i + 1) & mask; s->slots[j]; j = (j + 1) & mask) {
        size_t home = key_home(index__ref_key(keys[s->slots[j] - 1]), mask);
        int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            s->slots[hole] = s->slots[j];
            hole = j;
        }
    }
    s->slots[hole] = 0;
    s->n--;
    return pos;
}

void index__keyset_free(index__keyset *s)
{
    vg_free(s->slots);
    s->slots = NULL;
    s->cap = s->n = 0;
}

size_t index__keyset_bytes(const index__keyset *s)
{
    return s->cap * sizeof(uint32_t);
}
