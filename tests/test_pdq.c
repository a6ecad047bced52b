/* pdq core: hex text and bit order, the reference's .dat vectors, Hamming distance tiers, the
 * hash of reference pixel arrays (bit-exact), SIMD vs portable equality, edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "pdq/pdq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATA VG_TEST_DATA_DIR "/pdq/"

/* ---- helpers ------------------------------------------------------------------------------ */

/* Reads the 64-hex lines of a .dat file; returns the count (asserting the file is sane). */
static int read_hashes(const char *path, pdq_hash *out, int max)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(vg_read_file(path, 1 << 20, &buf, &len), VG_OK);
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)buf, "\r\n", &save); line;
         line = strtok_r(NULL, "\r\n", &save)) {
        assert_true(n < max);
        assert_int_equal(pdq_hash_from_hex(line, &out[n]), VG_OK);
        char hex[PDQ_HEX_BYTES];
        assert_string_equal(pdq_hash_to_hex(&out[n], hex), line);
        n++;
    }
    vg_free(buf);
    return n;
}

/* Bit-by-bit distance, the yardstick for every popcount tier. */
static int naive_distance(const pdq_hash *a, const pdq_hash *b)
{
    int d = 0;
    for (unsigned k = 0; k < PDQ_HASH_BITS; k++)
        d += pdq_hash_get_bit(a, k) != pdq_hash_get_bit(b, k);
    return d;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A binary PNM (P5 grey or P6 RGB, maxval 255) as written by `convert FILE pnm:-`: the very
 * pixel arrays the C++ reference hashed. Returns owned pixels. */
static uint8_t *read_pnm(const char *path, uint32_t *w, uint32_t *h, int *channels)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(vg_read_file(path, 16 << 20, &buf, &len), VG_OK);
    unsigned W, H, maxval;
    int consumed = 0;
    char magic[3] = {0};
    assert_int_equal(sscanf((char *)buf, "%2s %u %u %u%n", magic, &W, &H, &maxval, &consumed), 4);
    assert_int_equal(maxval, 255);
    *channels = strcmp(magic, "P6") == 0 ? 3 : 1;
    assert_true(strcmp(magic, "P6") == 0 || strcmp(magic, "P5") == 0);
    size_t n = (size_t)W * H * (size_t)*channels;
    assert_true((size_t)consumed + 1 + n <= len);
    uint8_t *px = malloc(n);
    memcpy(px, buf + consumed + 1, n);
    vg_free(buf);
    *w = W;
    *h = H;
    return px;
}

static void assert_hex(const pdq_hash *h, const char *want)
{
    char hex[PDQ_HEX_BYTES];
    assert_string_equal(pdq_hash_to_hex(h, hex), want);
}

/* ---- text and bits ------------------------------------------------------------------------ */

static void test_hex_bit_order(void **state)
{
    (void)state;
    pdq_hash h;
    /* The last hex digit holds bits 3..0: bit 0 is coefficient (0,0). */
    assert_int_equal(pdq_hash_from_hex("00000000000000000000000000000000"
                                       "00000000000000000000000000000001",
                                       &h),
                     VG_OK);
    assert_int_equal(pdq_hash_get_bit(&h, 0), 1);
    assert_int_equal(pdq_hash_norm(&h), 1);
    assert_int_equal(pdq_hash_from_hex("80000000000000000000000000000000"
                                       "00000000000000000000000000000000",
                                       &h),
                     VG_OK);
    assert_int_equal(pdq_hash_get_bit(&h, 255), 1);
    assert_true(h.w[3] == (uint64_t)1 << 63);
    /* Upper-case is accepted, output is lower-case. */
    assert_int_equal(pdq_hash_from_hex("D8F8F0CEE0F4A84F0637022A078F67F0"
                                       "B36E2ED596621E1D33E6339C4E9C9B22",
                                       &h),
                     VG_OK);
    assert_hex(&h, "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22");
}

static void test_hex_rejects(void **state)
{
    (void)state;
    pdq_hash h = {{1, 2, 3, 4}};
    const char *bad[] = {
        "",
        "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b2",   /* 63 */
        "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b221", /* 65 */
        "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9bg2",  /* g */
        " 8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22",  /* space */
        "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b2\n",
        "0xf8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22",
    };
    for (size_t i = 0; i < VG_ARRAY_LEN(bad); i++) {
        assert_int_equal(pdq_hash_from_hex(bad[i], &h), VG_EINVAL);
        assert_true(h.w[0] == 1 && h.w[3] == 4); /* untouched */
    }
    assert_int_equal(pdq_hash_from_hex(NULL, &h), VG_EINVAL);
}

/* short256.dat: pairs one hex digit apart, then all-zeros and all-ones. The norms and adjacent
 * deltas are what the reference's `hashtool256 norms|deltas` prints for this file. */
static void test_short256(void **state)
{
    (void)state;
    pdq_hash h[8];
    int n = read_hashes(DATA "reg-test-input/short256.dat", h, 8);
    assert_int_equal(n, 6);
    const int norms[] = {124, 122, 120, 119, 0, 256};
    const int deltas[] = {4, 124, 3, 119, 256};
    for (int i = 0; i < n; i++)
        assert_int_equal(pdq_hash_norm(&h[i]), norms[i]);
    for (int i = 0; i + 1 < n; i++) {
        assert_int_equal(pdq_distance(&h[i], &h[i + 1]), deltas[i]);
        assert_int_equal(pdq_distance_inline(&h[i], &h[i + 1]), deltas[i]);
        assert_int_equal(naive_distance(&h[i], &h[i + 1]), deltas[i]);
    }
}

/* long256.dat: 50 hashes; hashtool256 gives norms summing to 6428 and adjacent deltas summing
 * to 6254. Every pair's distance agrees across tiers and with the bit-by-bit count. */
static void test_long256(void **state)
{
    (void)state;
    pdq_hash h[64];
    int n = read_hashes(DATA "reg-test-input/long256.dat", h, 64);
    assert_int_equal(n, 50);
    int norm_sum = 0, delta_sum = 0;
    for (int i = 0; i < n; i++)
        norm_sum += pdq_hash_norm(&h[i]);
    for (int i = 0; i + 1 < n; i++)
        delta_sum += pdq_distance(&h[i], &h[i + 1]);
    assert_int_equal(norm_sum, 6428);
    assert_int_equal(delta_sum, 6254);
    uint16_t d[3][64];
    for (int i = 0; i < n; i++) {
        for (int t = 0; t < 3; t++) {
            if (!pdq_popcnt_available((pdq_popcnt_impl)t))
                continue;
            assert_int_equal(pdq_distance_many_impl((pdq_popcnt_impl)t, &h[i], h, (size_t)n, d[t]),
                             VG_OK);
            for (int j = 0; j < n; j++)
                assert_int_equal(d[t][j], naive_distance(&h[i], &h[j]));
        }
    }
}

/* order256.dat: as 256-bit numbers the first is larger, but the reference orders by 16-bit
 * words from the last (word 0) up, where 0x0004 < 0x0012. */
static void test_order256(void **state)
{
    (void)state;
    pdq_hash h[2];
    assert_int_equal(read_hashes(DATA "reg-test-input/order256.dat", h, 2), 2);
    assert_true(h[0].w[3] > h[1].w[3]);
    assert_true(pdq_hash_compare(&h[0], &h[1]) < 0);
    assert_true(pdq_hash_compare(&h[1], &h[0]) > 0);
    assert_int_equal(pdq_hash_compare(&h[0], &h[0]), 0);
}

/* Every popcount tier gives the bit-by-bit distance, at every batch length (the AVX-512 kernel
 * works in groups of eight, so lengths around multiples of 8 cover its tail). */
static void test_distance_tiers(void **state)
{
    (void)state;
    enum { N = 67 };
    pdq_hash q, hs[N];
    for (int k = 0; k < 4; k++)
        q.w[k] = rng();
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 4; k++)
            hs[i].w[k] = (i % 5 == 0) ? q.w[k] : rng(); /* some distance 0 */
    hs[1] = q;
    for (int k = 0; k < 4; k++)
        hs[2].w[k] = ~q.w[k]; /* distance 256 */
    for (size_t n = 0; n <= N; n++) {
        uint16_t out[N + 1];
        out[n] = 0xbeef; /* canary after the last element */
        for (int t = 0; t < 3; t++) {
            if (!pdq_popcnt_available((pdq_popcnt_impl)t))
                continue;
            assert_int_equal(pdq_distance_many_impl((pdq_popcnt_impl)t, &q, hs, n, out), VG_OK);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(out[i], naive_distance(&q, &hs[i]));
            assert_int_equal(out[n], 0xbeef);
        }
        pdq_distance_many(&q, hs, n, out);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(out[i], pdq_distance(&q, &hs[i]));
    }
    uint16_t one;
    pdq_distance_many(&q, &hs[2], 1, &one);
    assert_int_equal(one, 256);
    assert_true(pdq_popcnt_available(PDQ_POPCNT_PORTABLE));
}

/* ---- hashing pixels ----------------------------------------------------------------------- */

/* The pixel arrays the C++ reference hashed (ImageMagick's PNM of three test images), and its
 * output for each: `pdq-photo-hasher FILE` and `pdq-photo-hasher --pdqdih FILE`. Exact match on
 * every tier: this is the "byte arrays" half of pdq/README.md's acceptance rule. */
static const struct {
    const char *file;
    int quality;
    const char *dih[PDQ_NUM_XFORMS];
} PIXEL_VECTORS[] = {
    {"pixels/q0122.ppm",
     100,
     {"cfb2009ddd21c6dab0046a7745b5984757a8a4535b3377aea2591d32b33ff940",
      "b94b59ce0c5bd64aa5255d2b94ba5d49c290eab6a6b63b91509ab0ed95769895",
      "9ae7aa37887428e0e551c0dd10f032ed42fd0ef90e66dd04f70cb798f66a52ea",
      "ec1ee364590e7ce0f070e781c1eff7e297c5401cf3e3813b05cf1a47c023323f",
      "cfb2ff62dd2139a5b004958845a567b817a85bac5b338851a259e2cda33f06bf",
      "9ae755c88874d71fe5513f2210f0cd1242fdf1060e6622fbf70c4867f66aad15",
      "b94bb6b10c5b29b7a525b2d494baa2b7d2901549a6b6d66e509a4f129576676a",
      "ec1e0c9b590e831ff070087ec1ef081c97c5bfe3f3e36ec405cfe5b8c023cdc0"}},
    {"pixels/q2821.pgm",
     100,
     {"b150231ffae4710ffcf4f18bb574b109a576f14bb8543189f8743289f174b109",
      "afebc3b5ffff40a02838f57f6006282c2c3d55156a8e355555558d5554c4aaaa",
      "e405c9b5afb1dba5a9a55b25e0211ba3f023dbe1fd819b27ada19823a6215ba3",
      "fabe291eaaaaea0a7d6d5fd5355182827940ffbf3fdb9fff000023ef01910000",
      "b1509cc0fae48ef0fcf00e70b5744ef6a5760eb4a854c672f874cc54f1740e76",
      "e405766aafb1245aa9a5a4dee021e45cf023a41efd816cdcada167fea621e4dc",
      "afeb3c4affffbf7f28280a806004d7d32c14aaea2a8acaaa55557aaa54c05555",
      "fafed6e1aaaa15f57d7da02a35537d79796900407fdf60000000dc100195ffff"}},
    {"pixels/wee.ppm",
     100,
     {"6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d",
      "1d43091e38bdea750e55e2d58e41f01e1daee6a184e19ea57c0701fce1fe18de",
      "3772eab5354a5e66fa9975075e583f7924f761d830f782f861878260c18b4187",
      "6816b7b4ede840df5b00487fdb14dab448fb4c0bd1b4340f2b52ab56b4abb274",
      "6327bfe0e01f4b33afcc60524b0d6a2c71a2348d65a3d7ad34d2d73594de14d2",
      "1772154a354aa199fa998af81e50c08624f79e2730f67d0761877d9fc18bbe78",
      "1d43f2e1b8fd158a0e551d2a8e410fe11dae195e84e1615a7e07fe03e1fee721",
      "48165e4bede8bf205b00b780db14a54b48fbb3f4d1b4cbf02b5254a9b4ab4dab"}},
};

static int impl_available(pdq_ctx *ctx, pdq_impl impl)
{
    pdq_impl keep = pdq_ctx_impl(ctx);
    int ok = pdq_ctx_set_impl(ctx, impl) == VG_OK;
    if (ok)
        pdq_ctx_set_impl(ctx, keep);
    return ok;
}

static void test_reference_pixels(void **state)
{
    (void)state;
    pdq_ctx *ctx = pdq_ctx_new();
    assert_non_null(ctx);
    for (size_t v = 0; v < VG_ARRAY_LEN(PIXEL_VECTORS); v++) {
        char path[512];
        snprintf(path, sizeof path, "%s%s", DATA, PIXEL_VECTORS[v].file);
        uint32_t w, h;
        int ch;
        uint8_t *px = read_pnm(path, &w, &h, &ch);
        for (int impl = PDQ_IMPL_PORTABLE; impl <= PDQ_IMPL_AVX2; impl++) {
            if (!impl_available(ctx, (pdq_impl)impl))
                continue;
            assert_int_equal(pdq_ctx_set_impl(ctx, (pdq_impl)impl), VG_OK);
            pdq_result r;
            int rc = ch == 3 ? pdq_hash_rgb8(ctx, px, w, h, (size_t)w * 3, 0, &r)
                             : pdq_hash_gray8(ctx, px, w, h, w, 0, &r);
            assert_int_equal(rc, VG_OK);
            assert_hex(&r.hash, PIXEL_VECTORS[v].dih[0]);
            assert_int_equal(r.quality, PIXEL_VECTORS[v].quality);
            assert_int_equal(r.unreliable, 0);
            assert_int_equal(r.has_dihedral, 0);
            rc = ch == 3 ? pdq_hash_rgb8(ctx, px, w, h, (size_t)w * 3, PDQ_WANT_DIHEDRAL, &r)
                         : pdq_hash_gray8(ctx, px, w, h, w, PDQ_WANT_DIHEDRAL, &r);
            assert_int_equal(rc, VG_OK);
            assert_int_equal(r.has_dihedral, 1);
            for (int x = 0; x < PDQ_NUM_XFORMS; x++)
                assert_hex(&r.dihedral[x], PIXEL_VECTORS[v].dih[x]);
            assert_true(pdq_hash_equal(&r.hash, &r.dihedral[PDQ_XF_ORIGINAL]));
        }
        free(px);
    }
    pdq_ctx_free(ctx);
}

/* A smooth synthetic scene with detail at several scales (no flat areas, no noise). */
static float scene(uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    double u = (double)x / w, v = (double)y / h;
    double s = 128 + 60 * sin(7.1 * u + 2.3 * v) + 40 * cos(13.7 * u * v + 1.1) +
               20 * sin(31.0 * v - 5.0 * u);
    return (float)s;
}

static uint8_t *scene_gray(uint32_t w, uint32_t h)
{
    uint8_t *g = malloc((size_t)w * h);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            g[(size_t)y * w + x] = (uint8_t)lrintf(scene(x, y, w, h));
    return g;
}

static void assert_same_result(const pdq_result *a, const pdq_result *b)
{
    assert_true(pdq_hash_equal(&a->hash, &b->hash));
    assert_int_equal(a->quality, b->quality);
    assert_int_equal(a->unreliable, b->unreliable);
    assert_int_equal(a->has_dihedral, b->has_dihedral);
    if (a->has_dihedral)
        for (int x = 0; x < PDQ_NUM_XFORMS; x++)
            assert_true(pdq_hash_equal(&a->dihedral[x], &b->dihedral[x]));
}

/* The AVX2 kernels must give the portable kernels' bits exactly, on sizes that exercise every
 * tail (strips of 16 rows, blocks of 32 and 8 columns, 8x8 transposes) and on random floats
 * (whose running sums round differently at every step). */
static void test_impls_identical(void **state)
{
    (void)state;
    pdq_ctx *a = pdq_ctx_new(), *b = pdq_ctx_new();
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(pdq_ctx_set_impl(a, PDQ_IMPL_PORTABLE), VG_OK);
    if (pdq_ctx_set_impl(b, PDQ_IMPL_AVX2) != VG_OK) {
        pdq_ctx_free(a);
        pdq_ctx_free(b);
        skip();
    }
    static const uint32_t sizes[][2] = {{5, 5},     {6, 31},    {64, 64},   {65, 63},   {17, 300},
                                        {300, 17},  {129, 257}, {257, 129}, {512, 512}, {333, 517},
                                        {1000, 23}, {23, 1000}, {480, 270}, {31, 33}};
    for (size_t s = 0; s < VG_ARRAY_LEN(sizes); s++) {
        const uint32_t w = sizes[s][0], h = sizes[s][1];
        uint8_t *g = scene_gray(w, h);
        uint8_t *rgb = malloc((size_t)w * h * 3);
        float *f = malloc((size_t)w * h * sizeof *f);
        for (size_t i = 0; i < (size_t)w * h; i++) {
            rgb[3 * i] = (uint8_t)(g[i] ^ (rng() & 15));
            rgb[3 * i + 1] = g[i];
            rgb[3 * i + 2] = (uint8_t)(rng() & 255);
            f[i] = (float)(rng() % 100000) / 391.0f;
        }
        for (unsigned flags = 0; flags <= PDQ_WANT_DIHEDRAL; flags += PDQ_WANT_DIHEDRAL) {
            pdq_result ra, rb;
            assert_int_equal(pdq_hash_gray8(a, g, w, h, w, flags, &ra), VG_OK);
            assert_int_equal(pdq_hash_gray8(b, g, w, h, w, flags, &rb), VG_OK);
            assert_same_result(&ra, &rb);
            assert_int_equal(pdq_hash_rgb8(a, rgb, w, h, (size_t)w * 3, flags, &ra), VG_OK);
            assert_int_equal(pdq_hash_rgb8(b, rgb, w, h, (size_t)w * 3, flags, &rb), VG_OK);
            assert_same_result(&ra, &rb);
            assert_int_equal(pdq_hash_luma(a, f, w, h, flags, &ra), VG_OK);
            assert_int_equal(pdq_hash_luma(b, f, w, h, flags, &rb), VG_OK);
            assert_same_result(&ra, &rb);
        }
        free(g);
        free(rgb);
        free(f);
    }
    pdq_ctx_free(a);
    pdq_ctx_free(b);
}

/* Grey pixels through gray8, the same values as floats through luma, and a strided view: one
 * hash. */
static void test_inputs_agree(void **state)
{
    (void)state;
    const uint32_t w = 203, h = 157, stride = 211;
    uint8_t *g = scene_gray(w, h);
    uint8_t *padded = calloc((size_t)stride * h, 1);
    float *f = malloc((size_t)w * h * sizeof *f);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            padded[(size_t)y * stride + x] = g[(size_t)y * w + x];
            f[(size_t)y * w + x] = g[(size_t)y * w + x];
        }
    pdq_ctx *ctx = pdq_ctx_new();
    pdq_result a, b, c;
    assert_int_equal(pdq_hash_gray8(ctx, g, w, h, w, PDQ_WANT_DIHEDRAL, &a), VG_OK);
    assert_int_equal(pdq_hash_gray8(ctx, padded, w, h, stride, PDQ_WANT_DIHEDRAL, &b), VG_OK);
    assert_int_equal(pdq_hash_luma(ctx, f, w, h, PDQ_WANT_DIHEDRAL, &c), VG_OK);
    assert_same_result(&a, &b);
    assert_same_result(&a, &c);
    assert_true(a.quality >= PDQ_MIN_RELIABLE_QUALITY);
    /* The scratch grew once and is reused. */
    size_t bytes = pdq_ctx_scratch_bytes(ctx);
    assert_true(bytes >= 2 * (size_t)w * h * sizeof(float));
    assert_int_equal(pdq_hash_gray8(ctx, g, w, h, w, 0, &a), VG_OK);
    assert_int_equal(pdq_ctx_scratch_bytes(ctx), bytes);
    free(g);
    free(padded);
    free(f);
    pdq_ctx_free(ctx);
}

/* The reference hashes images under 5 px on a side to zeros with quality 0; a flat image has
 * no gradient (quality 0) and is flagged unreliable. */
static void test_tiny_and_flat(void **state)
{
    (void)state;
    pdq_ctx *ctx = pdq_ctx_new();
    uint8_t px[4 * 100];
    memset(px, 200, sizeof px);
    pdq_result r;
    assert_int_equal(pdq_hash_gray8(ctx, px, 4, 100, 4, PDQ_WANT_DIHEDRAL, &r), VG_OK);
    assert_int_equal(pdq_hash_norm(&r.hash), 0);
    assert_int_equal(r.quality, 0);
    assert_int_equal(r.unreliable, 1);
    assert_int_equal(r.has_dihedral, 1);
    assert_int_equal(pdq_hash_norm(&r.dihedral[PDQ_XF_ROTATE90]), 0);
    assert_int_equal(pdq_hash_gray8(ctx, px, 100, 4, 100, 0, &r), VG_OK);
    assert_int_equal(pdq_hash_norm(&r.hash), 0);

    uint8_t flat[50 * 40];
    memset(flat, 77, sizeof flat);
    assert_int_equal(pdq_hash_gray8(ctx, flat, 50, 40, 50, 0, &r), VG_OK);
    assert_int_equal(r.quality, 0);
    assert_int_equal(r.unreliable, 1);

    /* A mild gradient: some detail but under the reliability gate. */
    for (int y = 0; y < 40; y++)
        for (int x = 0; x < 50; x++)
            flat[y * 50 + x] = (uint8_t)(100 + x / 2);
    assert_int_equal(pdq_hash_gray8(ctx, flat, 50, 40, 50, 0, &r), VG_OK);
    assert_true(r.quality < PDQ_MIN_RELIABLE_QUALITY);
    assert_int_equal(r.unreliable, 1);
    pdq_ctx_free(ctx);
}

/* Exactly 64x64: the reference skips the tent filter on its plain path and filters on its
 * dihedral path; both are reproduced, and the two hashes stay within float noise. */
static void test_64x64_paths(void **state)
{
    (void)state;
    uint8_t *g = scene_gray(64, 64);
    pdq_ctx *ctx = pdq_ctx_new();
    pdq_result plain, dih;
    assert_int_equal(pdq_hash_gray8(ctx, g, 64, 64, 64, 0, &plain), VG_OK);
    assert_int_equal(pdq_hash_gray8(ctx, g, 64, 64, 64, PDQ_WANT_DIHEDRAL, &dih), VG_OK);
    assert_true(pdq_hash_equal(&dih.hash, &dih.dihedral[PDQ_XF_ORIGINAL]));
    assert_true(pdq_distance(&plain.hash, &dih.hash) <= 8);
    free(g);
    pdq_ctx_free(ctx);
}

/* Hashing a rotated or flipped copy of the pixels gives (nearly) the matching dihedral hash of
 * the original: the filter's window and the decimation grid are not exactly symmetric, so a few
 * bits may differ, as in the reference's own bridge-1..8 files. */
static void test_dihedral_matches_transformed_pixels(void **state)
{
    (void)state;
    const uint32_t w = 240, h = 160;
    uint8_t *g = scene_gray(w, h);
    uint8_t *t = malloc((size_t)w * h);
    pdq_ctx *ctx = pdq_ctx_new();
    pdq_result orig;
    assert_int_equal(pdq_hash_gray8(ctx, g, w, h, w, PDQ_WANT_DIHEDRAL, &orig), VG_OK);
    for (int xf = 0; xf < PDQ_NUM_XFORMS; xf++) {
        const int swap = xf == PDQ_XF_ROTATE90 || xf == PDQ_XF_ROTATE270 ||
                         xf == PDQ_XF_FLIP_PLUS1 || xf == PDQ_XF_FLIP_MINUS1;
        const uint32_t tw = swap ? h : w, th = swap ? w : h;
        for (uint32_t y = 0; y < th; y++) {
            for (uint32_t x = 0; x < tw; x++) {
                uint32_t sx, sy; /* source pixel of output (x, y) */
                switch (xf) {
                case PDQ_XF_ROTATE90: /* anticlockwise */
                    sx = w - 1 - y, sy = x;
                    break;
                case PDQ_XF_ROTATE180:
                    sx = w - 1 - x, sy = h - 1 - y;
                    break;
                case PDQ_XF_ROTATE270:
                    sx = y, sy = h - 1 - x;
                    break;
                case PDQ_XF_FLIPX:
                    sx = x, sy = h - 1 - y;
                    break;
                case PDQ_XF_FLIPY:
                    sx = w - 1 - x, sy = y;
                    break;
                case PDQ_XF_FLIP_PLUS1:
                    sx = y, sy = x;
                    break;
                case PDQ_XF_FLIP_MINUS1:
                    sx = w - 1 - y, sy = h - 1 - x;
                    break;
                default:
                    sx = x, sy = y;
                    break;
                }
                t[(size_t)y * tw + x] = g[(size_t)sy * w + sx];
            }
        }
        pdq_result r;
        assert_int_equal(pdq_hash_gray8(ctx, t, tw, th, tw, 0, &r), VG_OK);
        int d = pdq_distance(&r.hash, &orig.dihedral[xf]);
        /* and far from every other variant: the transforms are told apart */
        for (int other = 0; other < PDQ_NUM_XFORMS; other++)
            if (other != xf)
                assert_true(pdq_distance(&r.hash, &orig.dihedral[other]) > d + 32);
        assert_true(d <= 31); /* the default match threshold */
    }
    free(g);
    free(t);
    pdq_ctx_free(ctx);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    pdq_ctx *ctx = pdq_ctx_new();
    uint8_t px[64];
    pdq_result r;
    memset(&r, 0x5a, sizeof r);
    pdq_result before = r;
    assert_int_equal(pdq_hash_gray8(NULL, px, 8, 8, 8, 0, &r), VG_EINVAL);
    assert_int_equal(pdq_hash_gray8(ctx, NULL, 8, 8, 8, 0, &r), VG_EINVAL);
    assert_int_equal(pdq_hash_gray8(ctx, px, 8, 8, 7, 0, &r), VG_EINVAL);
    assert_int_equal(pdq_hash_rgb8(ctx, px, 8, 2, 20, 0, &r), VG_EINVAL);
    assert_int_equal(pdq_hash_gray8(ctx, px, 1u << 16, 1u << 16, 1u << 16, 0, &r), VG_EPIXELS);
    float f[36];
    for (int i = 0; i < 36; i++)
        f[i] = (float)i;
    f[7] = NAN;
    assert_int_equal(pdq_hash_luma(ctx, f, 6, 6, 0, &r), VG_EINVAL);
    f[7] = INFINITY;
    assert_int_equal(pdq_hash_luma(ctx, f, 6, 6, 0, &r), VG_EINVAL);
    f[7] = 3e9f;
    assert_int_equal(pdq_hash_luma(ctx, f, 6, 6, 0, &r), VG_EINVAL);
    assert_memory_equal(&r, &before, sizeof r); /* untouched on error */
    f[7] = -1e5f;
    assert_int_equal(pdq_hash_luma(ctx, f, 6, 6, 0, &r), VG_OK);
    assert_int_equal(pdq_ctx_set_impl(ctx, (pdq_impl)7), VG_EINVAL);
    pdq_ctx_free(ctx);
    pdq_ctx_free(NULL);
}

/* Out of memory at every allocation: a clean error, nothing leaked (ASan), and the context still
 * works afterwards. */
/* A photo whose own edge rows are mostly canvas-coloured (a night sky on a dark screenshot
 * canvas) ends the canvas bar at the photo's edge: the bar ends only on a flat line. Before,
 * the bar ran on through the photo's dark rows (85% canvas colour passed the 60% line share)
 * and the content lost its top 20 rows. */
static void test_bars_stop_at_dark_photo_edge(void **state)
{
    (void)state;
    enum { W = 200, H = 160 };
    static uint8_t g[W * H];
    memset(g, 18, sizeof g);
    for (uint32_t y = 40; y < 120; y++)
        for (uint32_t x = 50; x < 150; x++) {
            if (y < 60 || y >= 100) /* dark sky with a few bright spots: 70% near the canvas */
                g[y * W + x] = x % 10 < 7 ? 22 : 120;
            else
                g[y * W + x] = (uint8_t)((x * 7 + y * 13) % 256);
        }
    uint32_t t[4];
    assert_int_equal(pdq_copy_find_bars(g, W, H, W, t), 1);
    assert_int_equal(t[0], 50);
    assert_int_equal(t[1], 40);
    assert_int_equal(t[2], 50);
    assert_int_equal(t[3], 40);
}

/* A caption bar with two lines of text ends at its plain margin above the text. */
static void test_bars_caption_with_text(void **state)
{
    (void)state;
    enum { W = 200, H = 200, CAP = 40 };
    static uint8_t g[W * H];
    for (uint32_t y = 0; y < H - CAP; y++)
        for (uint32_t x = 0; x < W; x++)
            g[y * W + x] = (uint8_t)((x * 7 + y * 13) % 256);
    memset(g + (H - CAP) * W, 250, (size_t)CAP * W);
    for (uint32_t y = H - CAP + 6; y < H - 6; y++) /* text rows: every 4th pixel of 3 ink */
        if ((y - (H - CAP + 6)) % 10 < 7)
            for (uint32_t x = 10; x < W - 10; x++)
                if (x % 4 == 0)
                    g[y * W + x] = 10;
    uint32_t t[4];
    assert_int_equal(pdq_copy_find_bars(g, W, H, W, t), 1);
    assert_int_equal(t[3], CAP);
    assert_int_equal(t[0] + t[1] + t[2], 0);
}

/* A cut-out on a white background: the strict content is the object's box on the original and
 * on copies framed in white or black (docs/MATCHING.md, "Why framed copies are missed": the
 * lenient bars ran further into the white margin of the framed copy, whose lines are longer). */
static void test_content_same_with_frame(void **state)
{
    (void)state;
    enum { W = 200, H = 160, F = 24 };
    static uint8_t o[W * H], c[(W + 2 * F) * (H + 2 * F)];
    memset(o, 250, sizeof o);
    for (uint32_t y = 40; y < 120; y++) /* the object, with a sparse rim the bars must stop at */
        for (uint32_t x = 60; x < 140; x++)
            o[y * W + x] =
                (y < 44 || x < 64) ? ((x + y) % 4 ? 250 : 40) : (uint8_t)((x * 7 + y * 13) % 256);
    uint32_t t[4], u[4];
    assert_int_equal(pdq_copy_find_content(o, W, H, W, 0, t), 1);
    assert_int_equal(t[0], 60);
    assert_int_equal(t[1], 40);
    assert_int_equal(t[2], 60);
    assert_int_equal(t[3], 40);
    for (int frame = 0; frame < 2; frame++) {
        const uint32_t cw = W + 2 * F, ch = H + 2 * F;
        memset(c, frame ? 0 : 255, sizeof c);
        for (uint32_t y = 0; y < H; y++)
            memcpy(c + (y + F) * cw + F, o + y * W, W);
        assert_int_equal(pdq_copy_find_content(c, cw, ch, cw, 0, u), 1);
        for (int k = 0; k < 4; k++)
            assert_int_equal(u[k], t[k] + F);
    }
}

/* A portrait picture in a wide dark canvas under a title bar: its columns are found once the
 * rows above and below it are gone (measured on the whole canvas, the rows through it are
 * mostly canvas and the side bars ran to the far side). */
static void test_content_portrait_in_canvas(void **state)
{
    (void)state;
    enum { W = 320, H = 180, BAR = 8 };
    static uint8_t g[W * H];
    memset(g, 18, sizeof g);
    memset(g, 60, (size_t)BAR * W);
    for (uint32_t y = 30; y < 170; y++)
        for (uint32_t x = 130; x < 190; x++)
            g[y * W + x] = (uint8_t)((x * 7 + y * 13) % 256);
    uint32_t t[4];
    assert_int_equal(pdq_copy_find_content(g, W, H, W, 0, t), 1);
    assert_int_equal(t[0], 130);
    assert_int_equal(t[1], 30);
    assert_int_equal(t[2], W - 190);
    assert_int_equal(t[3], H - 170);
}

/* A caption whose text, at the decode's scale, is a grey blur across most of each text row:
 * no line share passes it, so the lenient bars stop at the bottom margin; the caption candidate
 * cuts the strip from its edge to its plain margin above the text. */
static void test_content_caption_candidate(void **state)
{
    (void)state;
    enum { W = 160, H = 180, CAP = 27 };
    static uint8_t g[W * H];
    for (uint32_t y = 0; y < H - CAP; y++)
        for (uint32_t x = 0; x < W; x++)
            g[y * W + x] = (uint8_t)((x * 7 + y * 13) % 256);
    memset(g + (H - CAP) * W, 255, (size_t)CAP * W);
    for (uint32_t y = H - CAP + 3; y < H - 7; y++) /* blurred text: grey over 90% of the row */
        for (uint32_t x = 8; x < W - 8; x++)
            g[y * W + x] = (uint8_t)(150 + (x % 5) * 10);
    uint32_t t[4];
    pdq_copy_find_bars(g, W, H, W, t);
    assert_true(t[3] < CAP);
    assert_int_equal(pdq_copy_find_content(g, W, H, W, 1, t), 1);
    assert_int_equal(t[3], CAP);
    assert_int_equal(t[0] + t[1] + t[2], 0);
}

/* A caption under a picture with a white stripe of its own 20 rows above its bottom edge: the
 * caption candidate ends at the strip's plain gap above its text, where the picture starts (a
 * run of lines none of which is flat), not at the farthest flat line within the caption band,
 * the picture's own stripe (docs/MATCHING.md, "Caption strips"); the picture alone is not cut. */
static void test_content_caption_stops_at_picture(void **state)
{
    (void)state;
    enum { W = 160, H = 180, CAP = 24, STRIPE = CAP + 20 };
    static uint8_t g[W * H];
    for (uint32_t y = 0; y < H - CAP; y++)
        for (uint32_t x = 0; x < W; x++)
            g[y * W + x] = (uint8_t)((x * 7 + y * 13) % 256);
    memset(g + (H - STRIPE - 2) * W, 255, (size_t)2 * W);
    memset(g + (H - CAP) * W, 255, (size_t)CAP * W);
    for (uint32_t y = H - CAP + 4; y < H - 10; y++) /* blurred text: grey over 90% of the row */
        for (uint32_t x = 8; x < W - 8; x++)
            g[y * W + x] = (uint8_t)(150 + (x % 5) * 10);
    uint32_t t[4];
    assert_int_equal(pdq_copy_find_content(g, W, H, W, 1, t), 1);
    assert_int_equal(t[3], CAP);
    assert_int_equal(t[0] + t[1] + t[2], 0);
    pdq_copy_find_content(g, W, H - CAP, W, 1, t);
    assert_int_equal(t[0] + t[1] + t[2] + t[3], 0);
}

/* A picture on a nearly white margin with a few dark specks above its object (12 of each
 * 200 px row: 94% white). The strict content stops at the specks on the original, but on the
 * copy in a white frame the frame's pixels lift those rows to 95% white and its bar ran on to
 * the object. Peeled (docs/MATCHING.md, "Peeled content"), the frame goes and the rest is
 * peeled as the original is: the same content on the original and on copies framed in white
 * or black, and pdq_copy_hashes hashes it as one of the copy's trimmed sets. */
static void test_peel_same_with_frame(void **state)
{
    (void)state;
    enum { W = 200, H = 160, F = 24, CW = W + 2 * F, CH = H + 2 * F };
    static uint8_t o[W * H], c[CW * CH];
    memset(o, 250, sizeof o);
    for (uint32_t y = 40; y < 120; y++)
        for (uint32_t x = 60; x < 140; x++)
            o[y * W + x] = (uint8_t)((x * 7 + y * 13) % 256);
    for (uint32_t y = 30; y < 40; y++) /* the specks */
        for (uint32_t x = 64; x < 136; x += 6)
            o[y * W + x] = 40;
    uint32_t t[4], u[4];
    assert_int_equal(pdq_copy_peel(o, W, H, W, t), 1);
    const uint32_t want[4] = {60, 30, 60, 40};
    for (int k = 0; k < 4; k++)
        assert_int_equal(t[k], want[k]);
    for (int frame = 0; frame < 2; frame++) {
        memset(c, frame ? 0 : 255, sizeof c);
        for (uint32_t y = 0; y < H; y++)
            memcpy(c + (y + F) * CW + F, o + y * W, W);
        assert_int_equal(pdq_copy_peel(c, CW, CH, CW, u), 1);
        for (int k = 0; k < 4; k++)
            assert_int_equal(u[k], want[k] + F);
        if (frame)
            continue;
        /* the white frame: the strict content runs past the specks, the peel does not */
        assert_int_equal(pdq_copy_find_content(c, CW, CH, CW, 0, u), 1);
        assert_true(u[1] > want[1] + F);
        pdq_ctx *ctx = pdq_ctx_new();
        assert_non_null(ctx);
        img_image im;
        memset(&im, 0, sizeof im);
        im.px = c;
        im.w = im.src_w = CW;
        im.h = im.src_h = CH;
        im.channels = 1;
        im.orientation = 1;
        im.scale_denom = 1;
        pdq_copy_set set;
        assert_int_equal(pdq_copy_hashes(ctx, &im, PDQ_COPY_TRIM, &set), VG_OK);
        int found = 0;
        for (size_t k = 0; k < set.n; k++)
            found |= set.h[k].region == PDQ_REGION_TRIMMED && set.h[k].rect[0] == 60 + F &&
                     set.h[k].rect[1] == 30 + F && set.h[k].rect[2] == 80 && set.h[k].rect[3] == 90;
        assert_true(found);
        pdq_ctx_free(ctx);
    }
    /* flat from edge to edge: nothing to tell content from frame */
    memset(c, 128, sizeof c);
    assert_int_equal(pdq_copy_peel(c, CW, CH, CW, u), 0);
}

/* Each part is the hash of that half of the pixels; a part under the minimum side is left
 * out (quality 0); bad images are refused. */
static void test_copy_parts(void **state)
{
    (void)state;
    enum { W = 120, H = 90 };
    static uint8_t g[W * H];
    for (uint32_t y = 0; y < H; y++)
        for (uint32_t x = 0; x < W; x++)
            g[y * W + x] = (uint8_t)((x * x + 3 * y * x + 7 * y) % 251);
    img_image im = {.px = g, .w = W, .h = H, .channels = 1, .src_w = W, .src_h = H};
    pdq_ctx *ctx = pdq_ctx_new();
    assert_non_null(ctx);
    pdq_part_set ps;
    assert_int_equal(pdq_copy_parts(ctx, &im, &ps), VG_OK);
    pdq_result top, right;
    assert_int_equal(pdq_hash_gray8(ctx, g, W, H / 2, W, 0, &top), VG_OK);
    assert_int_equal(pdq_hash_gray8(ctx, g + W / 2, W / 2, H, W, 0, &right), VG_OK);
    assert_int_equal(pdq_distance(&ps.h[PDQ_PART_TOP], &top.hash), 0);
    assert_int_equal(pdq_distance(&ps.h[PDQ_PART_RIGHT], &right.hash), 0);
    for (int k = 0; k < PDQ_PART_COUNT; k++)
        assert_true(ps.quality[k] > 0);
    assert_string_equal(pdq_part_name(PDQ_PART_BOTTOM), "bottom");
    img_image thin = {.px = g, .w = W, .h = 8, .channels = 1, .src_w = W, .src_h = 8};
    assert_int_equal(pdq_copy_parts(ctx, &thin, &ps), VG_OK);
    assert_int_equal(ps.quality[PDQ_PART_TOP], 0); /* 4 rows: under PDQ_MIN_SIDE_PX */
    assert_true(ps.quality[PDQ_PART_LEFT] > 0);
    img_image bad = {.px = g, .w = W, .h = H, .channels = 2};
    assert_int_equal(pdq_copy_parts(ctx, &bad, &ps), VG_EINVAL);
    assert_int_equal(pdq_copy_parts(ctx, NULL, &ps), VG_EINVAL);
    pdq_ctx_free(ctx);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    const uint32_t w = 100, h = 90;
    uint8_t *g = scene_gray(w, h);
    pdq_result want, r;
    pdq_ctx *ref = pdq_ctx_new();
    assert_int_equal(pdq_hash_gray8(ref, g, w, h, w, 0, &want), VG_OK);
    pdq_ctx_free(ref);
    for (long n = 1; n < 10; n++) {
        vg_alloc_fail_after(n);
        pdq_ctx *ctx = pdq_ctx_new();
        int rc = ctx ? pdq_hash_gray8(ctx, g, w, h, w, 0, &r) : VG_ENOMEM;
        vg_alloc_fail_after(0);
        if (rc == VG_OK) {
            assert_same_result(&r, &want);
        } else {
            assert_int_equal(rc, VG_ENOMEM);
            if (ctx) {
                assert_int_equal(pdq_hash_gray8(ctx, g, w, h, w, 0, &r), VG_OK);
                assert_same_result(&r, &want);
            }
        }
        pdq_ctx_free(ctx);
    }
    free(g);
}

const struct CMUnitTest pdq_core_tests[] = {
    cmocka_unit_test(test_hex_bit_order),
    cmocka_unit_test(test_hex_rejects),
    cmocka_unit_test(test_short256),
    cmocka_unit_test(test_long256),
    cmocka_unit_test(test_order256),
    cmocka_unit_test(test_distance_tiers),
    cmocka_unit_test(test_reference_pixels),
    cmocka_unit_test(test_impls_identical),
    cmocka_unit_test(test_inputs_agree),
    cmocka_unit_test(test_tiny_and_flat),
    cmocka_unit_test(test_64x64_paths),
    cmocka_unit_test(test_dihedral_matches_transformed_pixels),
    cmocka_unit_test(test_bad_arguments),
    cmocka_unit_test(test_bars_stop_at_dark_photo_edge),
    cmocka_unit_test(test_bars_caption_with_text),
    cmocka_unit_test(test_content_same_with_frame),
    cmocka_unit_test(test_content_portrait_in_canvas),
    cmocka_unit_test(test_content_caption_candidate),
    cmocka_unit_test(test_content_caption_stops_at_picture),
    cmocka_unit_test(test_peel_same_with_frame),
    cmocka_unit_test(test_copy_parts),
    cmocka_unit_test(test_alloc_failures),
};

int main(void)
{
    return cmocka_run_group_tests(pdq_core_tests, NULL, NULL);
}
