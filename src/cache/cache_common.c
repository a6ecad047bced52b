/*
 * cache: the pieces every tier shares: keys, refcounted values, counters, CRC32C and the entry
 * format of L2 files and L3 values (layout in cache_int.h).
 */
#include "cache/cache_int.h"

#include "core/core.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include <nmmintrin.h>

/* ---- keys ----------------------------------------------------------------------------------- */

static const char CACHE_KEY_DOMAIN[] = "vigil.cache.key.v1"; /* hashed with its NUL */
/* A different domain for scoped keys: no scoped preimage can equal an unscoped one. */
static const char CACHE_KEY_SCOPED_DOMAIN[] = "vigil.cache.key.scoped.v1";

static void put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int cache_key_make(const uint8_t image_sha256[32], const char *model_version, uint32_t level,
                   cache_key *out)
{
    return cache_key_make_scoped(image_sha256, NULL, model_version, level, out);
}

int cache_key_make_scoped(const uint8_t image_sha256[32], const char *scope,
                          const char *model_version, uint32_t level, cache_key *out)
{
    if (!image_sha256 || !model_version || !out)
        return vg_err_set(VG_EINVAL, "cache_key_make: NULL argument");
    size_t vlen = strlen(model_version);
    if (vlen > CACHE_MAX_MODEL_VERSION_BYTES)
        return vg_err_set(VG_EINVAL, "model version is %zu bytes, max %d", vlen,
                          CACHE_MAX_MODEL_VERSION_BYTES);
    size_t slen = scope ? strlen(scope) : 0;
    if (slen > CACHE_MAX_SCOPE_BYTES)
        return vg_err_set(VG_EINVAL, "cache scope is %zu bytes, max %d", slen,
                          CACHE_MAX_SCOPE_BYTES);
    /* Bounded above, so a stack buffer holds the whole preimage. */
    uint8_t buf[sizeof CACHE_KEY_SCOPED_DOMAIN + 4 + CACHE_MAX_SCOPE_BYTES + 32 + 4 +
                CACHE_MAX_MODEL_VERSION_BYTES + 4];
    size_t n = 0;
    if (slen == 0) {
        memcpy(buf, CACHE_KEY_DOMAIN, sizeof CACHE_KEY_DOMAIN);
        n += sizeof CACHE_KEY_DOMAIN;
    } else {
        memcpy(buf, CACHE_KEY_SCOPED_DOMAIN, sizeof CACHE_KEY_SCOPED_DOMAIN);
        n += sizeof CACHE_KEY_SCOPED_DOMAIN;
        put_u32le(buf + n, (uint32_t)slen);
        n += 4;
        memcpy(buf + n, scope, slen);
        n += slen;
    }
    memcpy(buf + n, image_sha256, 32);
    n += 32;
    put_u32le(buf + n, (uint32_t)vlen);
    n += 4;
    memcpy(buf + n, model_version, vlen);
    n += vlen;
    put_u32le(buf + n, level);
    n += 4;
    return vg_sha256(buf, n, out->bytes);
}

void cache_key_hex(const cache_key *key, char out[65])
{
    vg_hex_encode(key->bytes, CACHE_KEY_BYTES, out);
}

/* ---- values --------------------------------------------------------------------------------- */

struct cache_val {
    _Atomic size_t refs;
    size_t len;
    _Alignas(16) uint8_t data[];
};

int cache_val_new(const void *data, size_t len, cache_val **out)
{
    if (!out || (len > 0 && !data))
        return vg_err_set(VG_EINVAL, "cache_val_new: NULL argument");
    if (len > CACHE_MAX_VALUE_BYTES)
        return vg_err_set(VG_ETOOBIG, "cache value is %zu bytes, max %u", len,
                          CACHE_MAX_VALUE_BYTES);
    cache_val *v = vg_malloc(sizeof *v + len);
    if (!v)
        return vg_err_set(VG_ENOMEM, "cache value of %zu bytes", len);
    atomic_init(&v->refs, 1);
    v->len = len;
    if (len > 0)
        memcpy(v->data, data, len);
    *out = v;
    return VG_OK;
}

int cache__val_alloc_uninit(size_t len, cache_val **out, uint8_t **data)
{
    if (len > CACHE_MAX_VALUE_BYTES)
        return VG_ETOOBIG;
    cache_val *v = vg_malloc(sizeof *v + len);
    if (!v)
        return vg_err_set(VG_ENOMEM, "cache value of %zu bytes", len);
    atomic_init(&v->refs, 1);
    v->len = len;
    *out = v;
    *data = v->data;
    return VG_OK;
}

const uint8_t *cache_val_data(const cache_val *v)
{
    return v->data;
}
size_t cache_val_len(const cache_val *v)
{
    return v->len;
}

cache_val *cache_val_ref(cache_val *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    return v;
}

void cache_val_unref(cache_val *v)
{
    if (!v)
        return;
    /* acq_rel: the last owner must see every write made through the other references. */
    if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1)
        vg_free(v);
}

/* ---- names and stats ------------------------------------------------------------------------ */

const char *cache_tier_name(cache_tier t)
{
    switch (t) {
    case CACHE_TIER_L1:
        return "l1";
    case CACHE_TIER_L2:
        return "l2";
    case CACHE_TIER_L3:
        return "l3";
    default:
        return "miss";
    }
}

void *cache__zalloc_aligned(size_t n)
{
    void *p = vg_aligned_alloc(64, n);
    if (p)
        memset(p, 0, n);
    return p;
}

unsigned cache__ctr_stripe_of_thread(void)
{
    /* Thread descriptors sit at least a stack apart; a multiplicative hash of the address bits
     * above the page offset spreads them over the stripes. */
    uint64_t id = (uint64_t)(uintptr_t)pthread_self() >> 12;
    return (unsigned)((id * 0x9E3779B97F4A7C15ull) >> 61) & (CACHE_CTR_STRIPES - 1);
}

void cache__ctr_latency(cache_ctr *c, uint64_t ns)
{
    unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
    if (b >= CACHE_LAT_BUCKETS)
        b = CACHE_LAT_BUCKETS - 1;
    cache_ctr_stripe *s = &c->s[cache__ctr_stripe_of_thread()];
    atomic_fetch_add_explicit(&s->lat_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->lat_sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->lat_buckets[b], 1, memory_order_relaxed);
}

void cache__ctr_snapshot(const cache_ctr *c, cache_tier_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int k = 0; k < CACHE_CTR_STRIPES; k++) {
        const cache_ctr_stripe *s = &c->s[k];
#define LOAD(field) atomic_load_explicit(&s->field, memory_order_relaxed)
        out->hits += LOAD(hits);
        out->misses += LOAD(misses);
        out->errors += LOAD(errors);
        out->corrupt += LOAD(corrupt);
        out->puts += LOAD(puts);
        out->evictions += LOAD(evictions);
        out->rejected += LOAD(rejected);
        out->skipped += LOAD(skipped);
        out->dropped += LOAD(dropped);
        out->nospace += LOAD(nospace);
        out->lat_count += LOAD(lat_count);
        out->lat_sum_ns += LOAD(lat_sum_ns);
        for (int i = 0; i < CACHE_LAT_BUCKETS; i++)
            out->lat_buckets[i] += LOAD(lat_buckets[i]);
#undef LOAD
    }
}

double cache_stats_latency_ns(const cache_tier_stats *t, double q)
{
    uint64_t total = 0;
    for (int i = 0; i < CACHE_LAT_BUCKETS; i++)
        total += t->lat_buckets[i];
    if (total == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    /* Smallest bucket whose cumulative count reaches ceil(q * total) (at least the first). */
    uint64_t want = (uint64_t)ceil(q * (double)total);
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (int i = 0; i < CACHE_LAT_BUCKETS; i++) {
        seen += t->lat_buckets[i];
        if (seen >= want)
            return i == 0 ? 1.0 : ldexp(1.0, i) * 1.41421356237;
    }
    return ldexp(1.0, CACHE_LAT_BUCKETS);
}

/* ---- CRC32C --------------------------------------------------------------------------------- */

/* Reflected CRC32C table (polynomial 0x82F63B78), generated by the usual bitwise loop; the test
 * recomputes it bit by bit. */
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu, 0x26a1e7e8u,
    0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu, 0x4d43cfd0u, 0xbf284cd3u,
    0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu, 0xf165b798u, 0x030e349bu, 0xd7c45070u,
    0x25afd373u, 0x36ff2087u, 0xc494a384u, 0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u,
    0x5d1d08bfu, 0xaf768bbcu, 0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u,
    0x33ed7d2au, 0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau, 0x30e349b1u,
    0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu, 0x1642ae59u, 0xe4292d5au,
    0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au, 0x7da08661u, 0x8fcb0562u, 0x9c9bf696u,
    0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu, 0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u,
    0x67dafa54u, 0x95b17957u, 0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu,
    0xfe53516fu, 0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu, 0x3ac7f2ebu,
    0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u, 0x61c69362u, 0x93ad1061u,
    0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu, 0x4767748au, 0xb50cf789u, 0xeb1fcbadu,
    0x197448aeu, 0x0a24bb5au, 0xf84f3859u, 0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u,
    0x7198540du, 0x83f3d70eu, 0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u,
    0xa55230e6u, 0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu, 0x456cac67u,
    0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u, 0xe9141340u, 0x1b7f9043u,
    0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu, 0x92a8fc17u, 0x60c37f14u, 0x73938ce0u,
    0x81f80fe3u, 0x55326b08u, 0xa759e80bu, 0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu,
    0xf94ad42fu, 0x0b21572cu, 0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u,
    0x502036a5u, 0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u, 0x0e330a81u,
    0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du, 0x758fe5d6u, 0x87e466d5u,
    0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u, 0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u,
    0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu, 0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u,
    0x0417b1dbu, 0xf67c32d8u, 0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu,
    0x5a048dffu, 0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u, 0x590ab964u,
    0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u, 0x7fab5e8cu, 0x8dc0dd8fu,
    0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu, 0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u,
    0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u, 0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u,
    0x4f48173du, 0xbd23943eu, 0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au,
    0xc69f7b69u, 0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t cache__crc32c_portable(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    crc = ~crc;
    while (len--)
        crc = crc32c_table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *data,
                                                               size_t len)
{
    const uint8_t *p = data;
    uint64_t c = ~crc;
    while (len > 0 && ((uintptr_t)p & 7u)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

uint32_t cache__crc32c(uint32_t crc, const void *data, size_t len)
{
    if (vg_cpu_features() & VG_CPU_SSE42)
        return crc32c_sse42(crc, data, len);
    return cache__crc32c_portable(crc, data, len);
}

/* ---- entry format --------------------------------------------------------------------------- */

void cache__entry_header_encode(const cache_key *key, const void *value, size_t len,
                                uint8_t out[CACHE_ENTRY_HEADER_BYTES])
{
    memcpy(out, CACHE_ENTRY_MAGIC, 4);
    out[4] = CACHE_ENTRY_VERSION;
    out[5] = 0;
    out[6] = CACHE_ENTRY_HEADER_BYTES;
    out[7] = 0;
    put_u32le(out + 8, 0);
    memcpy(out + 12, key->bytes, CACHE_KEY_BYTES);
    put_u32le(out + 44, (uint32_t)len);
    put_u32le(out + 48, cache__crc32c(0, value, len));
    put_u32le(out + 52, cache__crc32c(0, out, 52));
}

int cache__entry_header_parse(const uint8_t *hdr, size_t len, cache_entry_header *out)
{
    if (len < CACHE_ENTRY_HEADER_BYTES)
        return vg_err_set(VG_ETRUNC, "cache entry: %zu bytes, header needs %d", len,
                          CACHE_ENTRY_HEADER_BYTES);
    if (memcmp(hdr, CACHE_ENTRY_MAGIC, 4) != 0)
        return vg_err_set(VG_EFORMAT, "cache entry: bad magic");
    if (cache__crc32c(0, hdr, 52) != get_u32le(hdr + 52))
        return vg_err_set(VG_ECHECKSUM, "cache entry: header checksum mismatch");
    unsigned version = (unsigned)hdr[4] | (unsigned)hdr[5] << 8;
    unsigned hbytes = (unsigned)hdr[6] | (unsigned)hdr[7] << 8;
    uint32_t flags = get_u32le(hdr + 8);
    if (version != CACHE_ENTRY_VERSION || hbytes != CACHE_ENTRY_HEADER_BYTES || flags != 0)
        return vg_err_set(VG_EUNSUPPORTED, "cache entry: version %u, header %u, flags %u", version,
                          hbytes, (unsigned)flags);
    uint32_t vlen = get_u32le(hdr + 44);
    if (vlen > CACHE_MAX_VALUE_BYTES)
        return vg_err_set(VG_ETOOBIG, "cache entry: value length %u > max %u", (unsigned)vlen,
                          CACHE_MAX_VALUE_BYTES);
    memcpy(out->key.bytes, hdr + 12, CACHE_KEY_BYTES);
    out->value_len = vlen;
    out->value_crc = get_u32le(hdr + 48);
    return VG_OK;
}

int cache__entry_check(const cache_entry_header *h, const cache_key *expect_key,
                       const uint8_t *value, size_t len)
{
    if (len != h->value_len)
        return vg_err_set(VG_ETRUNC, "cache entry: value is %zu bytes, header says %u", len,
                          (unsigned)h->value_len);
    if (expect_key && memcmp(expect_key->bytes, h->key.bytes, CACHE_KEY_BYTES) != 0)
        return vg_err_set(VG_ECORRUPT, "cache entry: stored under another key");
    if (cache__crc32c(0, value, len) != h->value_crc)
        return vg_err_set(VG_ECHECKSUM, "cache entry: value checksum mismatch");
    return VG_OK;
}

int cache__entry_parse(const uint8_t *buf, size_t len, const cache_key *expect_key,
                       cache_key *key_out, const uint8_t **value, size_t *value_len)
{
    cache_entry_header h;
    int rc = cache__entry_header_parse(buf, len, &h);
    if (rc != VG_OK)
        return rc;
    const uint8_t *v = buf + CACHE_ENTRY_HEADER_BYTES;
    size_t vlen = len - CACHE_ENTRY_HEADER_BYTES;
    rc = cache__entry_check(&h, expect_key, v, vlen);
    if (rc != VG_OK)
        return rc;
    if (key_out)
        *key_out = h.key;
    *value = v;
    *value_len = vlen;
    return VG_OK;
}
