/* pdq pipelines from encoded files: compat is bit-exact with Meta's pdq-photo-hasher on every
 * image of its listing, fast stays within the acceptance tolerances, dihedral hashes, the
 * quality flag, result fields, and errors passed through from img. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "pdq/pdq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATA VG_TEST_DATA_DIR "/pdq/"
#define MAX_ROWS 64

/* One line of a reference listing: hash(es), quality, path relative to DATA. */
typedef struct {
    pdq_hash h[PDQ_NUM_XFORMS];
    int nh;
    int quality;
    char path[256];
} ref_row;

/* Parses "hex[,hex...],quality,./path" lines, skipping '#' comments. */
static int read_listing(const char *name, ref_row *rows, int max)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", DATA, name);
    uint8_t *buf;
    size_t len;
    assert_int_equal(vg_read_file(path, 1 << 20, &buf, &len), VG_OK);
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)buf, "\r\n", &save); line;
         line = strtok_r(NULL, "\r\n", &save)) {
        if (line[0] == '#')
            continue;
        assert_true(n < max);
        ref_row *r = &rows[n];
        memset(r, 0, sizeof *r);
        char *fsave = NULL;
        char *fields[12];
        int nf = 0;
        for (char *f = strtok_r(line, ",", &fsave); f && nf < 12; f = strtok_r(NULL, ",", &fsave))
            fields[nf++] = f;
        assert_true(nf >= 3);
        r->nh = nf - 2;
        for (int i = 0; i < r->nh; i++)
            assert_int_equal(pdq_hash_from_hex(fields[i], &r->h[i]), VG_OK);
        r->quality = atoi(fields[nf - 2]);
        const char *p = fields[nf - 1];
        const char *data = strstr(p, "data/"); /* the dihedral line has a longer prefix */
        p = data ? data + 5 : (strncmp(p, "./", 2) == 0 ? p + 2 : p);
        snprintf(r->path, sizeof r->path, "%s", p);
        n++;
    }
    vg_free(buf);
    return n;
}

static int hash_file(pdq_ctx *ctx, const char *rel, pdq_mode mode, unsigned flags,
                     uint32_t min_side, pdq_image_result *out)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", DATA, rel);
    uint8_t *buf;
    size_t len;
    int rc = vg_read_file(path, 64 << 20, &buf, &len);
    if (rc != VG_OK)
        return rc;
    pdq_image_opts o;
    pdq_image_opts_default(&o);
    o.mode = mode;
    o.flags = flags;
    o.fast_min_side = min_side;
    rc = pdq_hash_image(ctx, buf, len, &o, out);
    vg_free(buf);
    return rc;
}

/* One hashing context for the group, handed to each test through cmocka's state. */
static int setup(void **state)
{
    *state = pdq_ctx_new();
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    pdq_ctx_free(*state);
    return 0;
}

/* compat: every image Meta's reference lists (JPEG baseline and progressive, CMYK, greyscale,
 * PNG with alpha, palette, bilevel, 8 WebP modes), hash and quality bit for bit. */
static void test_compat_matches_reference_listing(void **state)
{
    pdq_ctx *ctx = *state;
    ref_row rows[MAX_ROWS];
    int n = read_listing("cpp_reference_hashes.csv", rows, MAX_ROWS);
    assert_int_equal(n, 49);
    int exact = 0;
    for (int i = 0; i < n; i++) {
        pdq_image_result r;
        assert_int_equal(hash_file(ctx, rows[i].path, PDQ_MODE_COMPAT, 0, 0, &r), VG_OK);
        char got[PDQ_HEX_BYTES], want[PDQ_HEX_BYTES];
        pdq_hash_to_hex(&r.r.hash, got);
        pdq_hash_to_hex(&rows[i].h[0], want);
        if (strcmp(got, want) != 0 || r.r.quality != rows[i].quality)
            print_error("compat %s: got %s,%d want %s,%d (distance %d)\n", rows[i].path, got,
                        r.r.quality, want, rows[i].quality, pdq_distance(&r.r.hash, &rows[i].h[0]));
        else
            exact++;
        assert_true(r.hashed_w <= PDQ_COMPAT_MAX_SIDE_PX && r.hashed_h <= PDQ_COMPAT_MAX_SIDE_PX);
    }
    assert_int_equal(exact, n);
}

/* compat: `pdq-photo-hasher --pdqdih-across` on bridge-1, all 8 hashes and the quality. */
static void test_compat_dihedral_line(void **state)
{
    pdq_ctx *ctx = *state;
    ref_row row;
    assert_int_equal(read_listing("cpp_reference_dihedral_bridge1.txt", &row, 1), 1);
    assert_int_equal(row.nh, PDQ_NUM_XFORMS);
    pdq_image_result r;
    assert_int_equal(hash_file(ctx, row.path, PDQ_MODE_COMPAT, PDQ_WANT_DIHEDRAL, 0, &r), VG_OK);
    assert_int_equal(r.r.has_dihedral, 1);
    assert_int_equal(r.r.quality, row.quality);
    for (int x = 0; x < PDQ_NUM_XFORMS; x++)
        assert_true(pdq_hash_equal(&r.r.dihedral[x], &row.h[x]));
    assert_true(pdq_hash_equal(&r.r.hash, &row.h[0]));
}

/* The 8 dihedral hashes of bridge-1 against the hashes of the 8 transformed files (bridge-1..8
 * are in the dihedral order): each file lands near its own variant (the reference itself is 0..18
 * bits off here) and far from the others, in both modes. */
static void test_dihedral_vs_transformed_files(void **state)
{
    pdq_ctx *ctx = *state;
    static const char *files[PDQ_NUM_XFORMS] = {
        "reg-test-input/dih/bridge-1-original.jpg",
        "reg-test-input/dih/bridge-2-rotate-90.jpg",
        "reg-test-input/dih/bridge-3-rotate-180.jpg",
        "reg-test-input/dih/bridge-4-rotate-270.jpg",
        "reg-test-input/dih/bridge-5-flipx.jpg",
        "reg-test-input/dih/bridge-6-flipy.jpg",
        "reg-test-input/dih/bridge-7-flip-plus-1.jpg",
        "reg-test-input/dih/bridge-8-flip-minus-1.jpg",
    };
    for (int m = 0; m < 2; m++) {
        const pdq_mode mode = m ? PDQ_MODE_COMPAT : PDQ_MODE_FAST;
        pdq_image_result orig;
        assert_int_equal(hash_file(ctx, files[0], mode, PDQ_WANT_DIHEDRAL, 0, &orig), VG_OK);
        for (int x = 0; x < PDQ_NUM_XFORMS; x++) {
            pdq_image_result t;
            assert_int_equal(hash_file(ctx, files[x], mode, 0, 0, &t), VG_OK);
            const int d = pdq_distance(&t.r.hash, &orig.r.dihedral[x]);
            print_message("%s %s: %d bits from dihedral[%d]\n", pdq_mode_name(mode), files[x], d,
                          x);
            assert_true(d <= 20);
            for (int o = 0; o < PDQ_NUM_XFORMS; o++)
                if (o != x)
                    assert_true(pdq_distance(&t.r.hash, &orig.r.dihedral[o]) > 64);
        }
    }
}

/* fast: within 10 bits of the reference on every listed image of quality >= 80 (pdq/README.md's
 * acceptance rule). The reference ignores EXIF and fast applies it, so the rotated exif-rotn
 * files are held against the reference's hash of their displayed pixels instead. */
static void test_fast_within_10_bits(void **state)
{
    pdq_ctx *ctx = *state;
    ref_row rows[MAX_ROWS], oriented[8];
    int n = read_listing("cpp_reference_hashes.csv", rows, MAX_ROWS);
    int no = read_listing("cpp_reference_exif_oriented.csv", oriented, 8);
    assert_int_equal(no, 4);
    int checked = 0, worst = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i].quality < 80)
            continue;
        const pdq_hash *want = &rows[i].h[0];
        for (int k = 0; k < no; k++)
            if (strcmp(oriented[k].path, rows[i].path) == 0)
                want = &oriented[k].h[0];
        pdq_image_result r;
        assert_int_equal(hash_file(ctx, rows[i].path, PDQ_MODE_FAST, 0, 0, &r), VG_OK);
        const int d = pdq_distance(&r.r.hash, want);
        if (d > 10)
            print_error("fast %s: %d bits from the reference\n", rows[i].path, d);
        assert_true(d <= 10);
        assert_true(r.r.quality >= 80);
        worst = d > worst ? d : worst;
        checked++;
    }
    print_message("fast: %d images, worst distance to the reference %d bits\n", checked, worst);
    assert_int_equal(checked, 46);
}

/* Large photos and artwork from Debian's wallpaper packages (tests/data/pdq-large/README.md),
 * JPEG quality 80-95, 1920x1200 to 2560x1600: fine textures, stars and stripes that the
 * reference's nearest-neighbour 512x512 grid aliases. A DCT-scaled decode averages that detail
 * away and drifted 12-40 bits here (issue 13); fast now samples the full-resolution Y plane. */
static void test_fast_large_photos_within_10_bits(void **state)
{
    pdq_ctx *ctx = *state;
    static const char *const files[] = {
        "../pdq-large/storm-q95.jpg",       "../pdq-large/stripes-q80.jpg",
        "../pdq-large/gulp-q80.jpg",        "../pdq-large/summer-1am-q80.jpg",
        "../pdq-large/cold-ripple-q80.jpg",
    };
    for (size_t i = 0; i < VG_ARRAY_LEN(files); i++) {
        pdq_image_result f, c;
        assert_int_equal(hash_file(ctx, files[i], PDQ_MODE_FAST, 0, 0, &f), VG_OK);
        assert_int_equal(hash_file(ctx, files[i], PDQ_MODE_COMPAT, 0, 0, &c), VG_OK);
        assert_true(c.width >= 1920 && c.height >= 1200);
        assert_true(c.r.quality >= 80);
        const int d = pdq_distance(&f.r.hash, &c.r.hash);
        print_message("fast %s: %d bits from compat\n", files[i], d);
        assert_true(d <= 10);
    }
}

/* EXIF: fast hashes the displayed image, compat the stored one (as the reference does). */
static void test_exif_orientation(void **state)
{
    pdq_ctx *ctx = *state;
    ref_row oriented[8], rows[MAX_ROWS];
    int no = read_listing("cpp_reference_exif_oriented.csv", oriented, 8);
    int n = read_listing("cpp_reference_hashes.csv", rows, MAX_ROWS);
    for (int k = 0; k < no; k++) {
        pdq_image_result f, c;
        assert_int_equal(hash_file(ctx, oriented[k].path, PDQ_MODE_FAST, 0, 0, &f), VG_OK);
        assert_int_equal(hash_file(ctx, oriented[k].path, PDQ_MODE_COMPAT, 0, 0, &c), VG_OK);
        const int rotated =
            strstr(oriented[k].path, "rotn-6") || strstr(oriented[k].path, "rotn-8");
        /* stored 4032x3024; 6 and 8 display as 3024x4032 */
        assert_int_equal(c.width, 4032);
        assert_int_equal(c.height, 3024);
        assert_int_equal(f.width, rotated ? 3024 : 4032);
        assert_int_equal(f.height, rotated ? 4032 : 3024);
        for (int i = 0; i < n; i++) {
            if (strcmp(rows[i].path, oriented[k].path) != 0)
                continue;
            assert_true(pdq_hash_equal(&c.r.hash, &rows[i].h[0]));
            if (strstr(oriented[k].path, "rotn-1") == NULL) /* orientation != 1 */
                assert_true(pdq_distance(&f.r.hash, &rows[i].h[0]) > 64);
        }
    }
}

/* Every bridge-mods edit matches its original at the default threshold, in both modes, against
 * our own hash of the original and against the reference's. */
static void test_bridge_mods_within_31_bits(void **state)
{
    pdq_ctx *ctx = *state;
    ref_row rows[MAX_ROWS];
    int n = read_listing("cpp_reference_hashes.csv", rows, MAX_ROWS);
    const pdq_hash *ref_orig = NULL;
    for (int i = 0; i < n; i++)
        if (strcmp(rows[i].path, "bridge-mods/aaa-orig.jpg") == 0)
            ref_orig = &rows[i].h[0];
    assert_non_null(ref_orig);
    for (int m = 0; m < 2; m++) {
        const pdq_mode mode = m ? PDQ_MODE_COMPAT : PDQ_MODE_FAST;
        pdq_image_result orig;
        assert_int_equal(hash_file(ctx, "bridge-mods/aaa-orig.jpg", mode, 0, 0, &orig), VG_OK);
        int edits = 0;
        for (int i = 0; i < n; i++) {
            if (strncmp(rows[i].path, "bridge-mods/", 12) != 0)
                continue;
            pdq_image_result r;
            assert_int_equal(hash_file(ctx, rows[i].path, mode, 0, 0, &r), VG_OK);
            const int d = pdq_distance(&r.r.hash, &orig.r.hash);
            const int dref = pdq_distance(&r.r.hash, ref_orig);
            print_message("%s %s: %d bits from our original, %d from the reference's\n",
                          pdq_mode_name(mode), rows[i].path, d, dref);
            assert_true(d <= 31);
            assert_true(dref <= 31);
            edits++;
        }
        assert_int_equal(edits, 12);
    }
}

/* Quality under 50 is reported and flagged in both modes. */
static void test_quality_flag(void **state)
{
    pdq_ctx *ctx = *state;
    static const struct {
        const char *file;
        int unreliable;
    } cases[] = {
        {"misc-images/small.jpg", 1},
        {"reg-test-input/labelme-subset/q0003.jpg", 1},
        {"reg-test-input/labelme-subset/q0004.jpg", 1},
        {"bridge-mods/aaa-orig.jpg", 0},
        {"misc-images/wee.jpg", 0},
    };
    for (size_t i = 0; i < VG_ARRAY_LEN(cases); i++) {
        for (int m = 0; m < 2; m++) {
            pdq_image_result r;
            assert_int_equal(
                hash_file(ctx, cases[i].file, m ? PDQ_MODE_COMPAT : PDQ_MODE_FAST, 0, 0, &r),
                VG_OK);
            assert_int_equal(r.r.unreliable, cases[i].unreliable);
            assert_int_equal(r.r.unreliable, r.r.quality < PDQ_MIN_RELIABLE_QUALITY);
        }
    }
    pdq_image_result r;
    assert_int_equal(hash_file(ctx, "misc-images/small.jpg", PDQ_MODE_FAST, 0, 0, &r), VG_OK);
    assert_int_equal(r.r.quality, 0);
}

/* The fast pipeline's decode size is a knob: coarser and finer decodes stay within tolerance
 * on the bridge photo, and the hashed grid is the reference's 512x512 either way. */
static void test_fast_min_side(void **state)
{
    pdq_ctx *ctx = *state;
    ref_row rows[MAX_ROWS];
    int n = read_listing("cpp_reference_hashes.csv", rows, MAX_ROWS);
    const pdq_hash *want = NULL;
    for (int i = 0; i < n; i++)
        if (strcmp(rows[i].path, "reg-test-input/dih/bridge-1-original.jpg") == 0)
            want = &rows[i].h[0];
    assert_non_null(want);
    static const uint32_t sides[] = {1, 64, 128, 256, 512, 4096};
    for (size_t i = 0; i < VG_ARRAY_LEN(sides); i++) {
        pdq_image_result r;
        assert_int_equal(hash_file(ctx, "reg-test-input/dih/bridge-1-original.jpg", PDQ_MODE_FAST,
                                   0, sides[i], &r),
                         VG_OK);
        assert_int_equal(r.hashed_w, 512);
        assert_int_equal(r.hashed_h, 512);
        assert_int_equal(r.width, 1600);
        assert_int_equal(r.height, 1004);
        assert_int_equal(r.format, IMG_FMT_JPEG);
        assert_true(pdq_distance(&r.r.hash, want) <= 10);
    }
    /* Images the reference hashes at their own size keep it. */
    pdq_image_result r;
    assert_int_equal(hash_file(ctx, "misc-images/small.jpg", PDQ_MODE_FAST, 0, 0, &r), VG_OK);
    assert_int_equal(r.hashed_w, 224);
    assert_int_equal(r.hashed_h, 399);
    assert_int_equal(hash_file(ctx, "bridge-mods/square-512x512.jpg", PDQ_MODE_FAST, 0, 0, &r),
                     VG_OK);
    assert_int_equal(r.hashed_w, 512);
}

/* The portable kernels give the same bits as the SIMD ones through both pipelines (grid
 * sampling, filter, DCT), on a JPEG, a PNG and a WebP. */
static void test_pipelines_same_on_every_tier(void **state)
{
    pdq_ctx *simd = *state, *portable = pdq_ctx_new();
    assert_non_null(portable);
    assert_int_equal(pdq_ctx_set_impl(portable, PDQ_IMPL_PORTABLE), VG_OK);
    static const char *files[] = {"reg-test-input/dih/bridge-2-rotate-90.jpg",
                                  "reg-test-input/pen-and-coaster.png",
                                  "misc-images/modes/LAB.webp", "misc-images/small.jpg"};
    for (size_t i = 0; i < VG_ARRAY_LEN(files); i++) {
        /* m = 2: fast with a DCT-scaled decode, so the grid sampling interpolates */
        for (int m = 0; m < 3; m++) {
            pdq_image_result a, b;
            const pdq_mode mode = m == 1 ? PDQ_MODE_COMPAT : PDQ_MODE_FAST;
            const uint32_t min_side = m == 2 ? 64 : 0;
            assert_int_equal(hash_file(simd, files[i], mode, PDQ_WANT_DIHEDRAL, min_side, &a),
                             VG_OK);
            assert_int_equal(hash_file(portable, files[i], mode, PDQ_WANT_DIHEDRAL, min_side, &b),
                             VG_OK);
            assert_int_equal(a.r.quality, b.r.quality);
            for (int x = 0; x < PDQ_NUM_XFORMS; x++)
                assert_true(pdq_hash_equal(&a.r.dihedral[x], &b.r.dihedral[x]));
        }
    }
    pdq_ctx_free(portable);
}

/* Decoder errors come through with their codes; the result is untouched. */
static void test_errors(void **state)
{
    pdq_ctx *ctx = *state;
    char path[512];
    snprintf(path, sizeof path, "%sbridge-mods/aaa-orig.jpg", DATA);
    uint8_t *buf;
    size_t len;
    assert_int_equal(vg_read_file(path, 64 << 20, &buf, &len), VG_OK);
    pdq_image_result r, before;
    memset(&r, 0x5a, sizeof r);
    before = r;
    for (int m = 0; m < 2; m++) {
        pdq_image_opts o;
        pdq_image_opts_default(&o);
        o.mode = m ? PDQ_MODE_COMPAT : PDQ_MODE_FAST;
        int rc = pdq_hash_image(ctx, buf, len / 3, &o, &r); /* truncated */
        assert_true(rc == VG_ETRUNC || rc == VG_ECORRUPT);
        static const uint8_t junk[] = "GIF89a this is not an image we decode";
        assert_int_equal(pdq_hash_image(ctx, junk, sizeof junk, &o, &r), VG_EFORMAT);
        assert_int_not_equal(pdq_hash_image(ctx, buf, 0, &o, &r), VG_OK);
        o.limits.max_pixels = 1000;
        assert_int_equal(pdq_hash_image(ctx, buf, len, &o, &r), VG_EPIXELS);
        assert_non_null(strstr(vg_err_msg(), "max_pixels"));
        o.limits.max_pixels = IMG_DEFAULT_MAX_PIXELS;
        o.limits.max_input_bytes = 100;
        assert_int_equal(pdq_hash_image(ctx, buf, len, &o, &r), VG_ETOOBIG);
        assert_memory_equal(&r, &before, sizeof r);
    }
    pdq_image_opts o;
    pdq_image_opts_default(&o);
    o.mode = (pdq_mode)9;
    assert_int_equal(pdq_hash_image(ctx, buf, len, &o, &r), VG_EINVAL);
    assert_int_equal(pdq_hash_image(NULL, buf, len, NULL, &r), VG_EINVAL);
    assert_int_equal(pdq_hash_image(ctx, NULL, len, NULL, &r), VG_EINVAL);
    assert_int_equal(pdq_hash_image(ctx, buf, len, NULL, NULL), VG_EINVAL);
    assert_int_equal(pdq_hash_image(ctx, buf, len, NULL, &r), VG_OK); /* NULL opts: fast */
    assert_true(r.decode_ns > 0 && r.hash_ns > 0);
    vg_free(buf);
}

static void test_mode_names(void **state)
{
    (void)state;
    pdq_mode m = PDQ_MODE_COMPAT;
    assert_int_equal(pdq_mode_parse("fast", &m), VG_OK);
    assert_int_equal(m, PDQ_MODE_FAST);
    assert_int_equal(pdq_mode_parse("compat", &m), VG_OK);
    assert_int_equal(m, PDQ_MODE_COMPAT);
    assert_int_equal(pdq_mode_parse("Fast", &m), VG_EINVAL);
    assert_int_equal(pdq_mode_parse(NULL, &m), VG_EINVAL);
    assert_string_equal(pdq_mode_name(PDQ_MODE_FAST), "fast");
    assert_string_equal(pdq_mode_name(PDQ_MODE_COMPAT), "compat");
}

/* Out of memory at each allocation of a whole decode + hash: an error or the right hash, and
 * no leak (ASan checks the latter). */
static void test_alloc_failures(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%sbridge-mods/shrink-a-little.jpg", DATA);
    uint8_t *buf;
    size_t len;
    assert_int_equal(vg_read_file(path, 64 << 20, &buf, &len), VG_OK);
    for (int m = 0; m < 2; m++) {
        pdq_image_opts o;
        pdq_image_opts_default(&o);
        o.mode = m ? PDQ_MODE_COMPAT : PDQ_MODE_FAST;
        pdq_image_result want, r;
        pdq_ctx *ctx = pdq_ctx_new();
        assert_int_equal(pdq_hash_image(ctx, buf, len, &o, &want), VG_OK);
        pdq_ctx_free(ctx);
        for (long n = 1; n < 12; n++) {
            vg_alloc_fail_after(n);
            ctx = pdq_ctx_new();
            int rc = ctx ? pdq_hash_image(ctx, buf, len, &o, &r) : VG_ENOMEM;
            vg_alloc_fail_after(0);
            if (rc == VG_OK)
                assert_true(pdq_hash_equal(&r.r.hash, &want.r.hash));
            else
                assert_int_equal(rc, VG_ENOMEM);
            pdq_ctx_free(ctx);
        }
    }
    vg_free(buf);
}

/* pdq_hash_decoded on an RGB decode at another DCT scale (what analyze does: one decode shared
 * with the face detector) stays within a few bits of the fast pipeline (at most 4 measured) and
 * within 10 of the reference (at most 6 measured), for every listed image of quality >= 80. */
static void test_hash_decoded_rgb(void **state)
{
    (void)state;
    ref_row rows[MAX_ROWS];
    int n = read_listing("cpp_reference_hashes.csv", rows, MAX_ROWS);
    pdq_ctx *ctx = pdq_ctx_new();
    assert_non_null(ctx);
    int checked = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i].quality < 80 || strstr(rows[i].path, "exif-rotn"))
            continue; /* the reference ignores EXIF; fast mode applies it */
        char path[512];
        snprintf(path, sizeof path, "%s%s", DATA, rows[i].path);
        uint8_t *buf;
        size_t len;
        assert_int_equal(vg_read_file(path, 64 << 20, &buf, &len), VG_OK);
        img_decode_opts o;
        img_decode_opts_default(&o);
        o.min_w = o.min_h = 832; /* analyze's target for a 416 detector: 1/2 for 1600 px */
        img_image im;
        if (img_decode(buf, len, &o, &im) != VG_OK) {
            vg_free(buf);
            continue; /* formats img does not decode are covered elsewhere */
        }
        pdq_image_result a, b;
        assert_int_equal(pdq_hash_decoded(ctx, &im, PDQ_WANT_DIHEDRAL, &a), VG_OK);
        pdq_image_opts po;
        pdq_image_opts_default(&po);
        assert_int_equal(pdq_hash_image(ctx, buf, len, &po, &b), VG_OK);
        assert_int_equal(a.width, b.width);
        assert_int_equal(a.height, b.height);
        assert_true(pdq_distance(&a.r.hash, &b.r.hash) <= 6);
        assert_true(pdq_distance(&a.r.hash, &rows[i].h[0]) <= 10);
        assert_true(a.r.has_dihedral);
        img_image_free(&im);
        vg_free(buf);
        checked++;
    }
    assert_true(checked >= 30);
    img_image im = {0};
    pdq_image_result r;
    assert_int_equal(pdq_hash_decoded(ctx, &im, 0, &r), VG_EINVAL);
    pdq_ctx_free(ctx);
}

/* The luma plane: pdq_rgb_to_luma8 (AVX2 where the CPU has it) gives, byte for byte, the
 * integers of the portable formula, at every length (the vector loop's tail) and value. */
static void test_rgb_to_luma8_exact(void **state)
{
    (void)state;
    enum { MAXN = 67 };
    uint8_t rgb[3 * MAXN], got[MAXN + 1];
    uint32_t x = 12345;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof rgb; i++) {
            x = x * 1103515245u + 12345u;
            rgb[i] = round == 0 ? 255 : round == 1 ? 0 : (uint8_t)(x >> 16);
        }
        for (size_t n = 0; n <= MAXN; n++) {
            got[n] = 0xA5; /* one past the end: never written */
            pdq_rgb_to_luma8(rgb, n, got);
            for (size_t i = 0; i < n; i++) {
                const uint8_t *p = rgb + 3 * i;
                assert_int_equal(got[i],
                                 (19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 32768u) >> 16);
            }
            assert_int_equal(got[n], 0xA5);
        }
    }
}

/* The whole-image hash and every copy hash of an RGB decode equal those of its 1-channel luma
 * view (what analyze hashes since issue 13: one plane for all regions) on every listed image
 * and the copy-evaluation photos, at analyze's decode size, and on a letterboxed variant (the
 * trimmed region) and a small one (the flip). */
static void check_luma_view(pdq_ctx *ctx, const img_image *im)
{
    const size_t npix = (size_t)im->w * im->h;
    uint8_t *luma = malloc(npix);
    assert_non_null(luma);
    pdq_rgb_to_luma8(im->px, npix, luma);
    img_image g = *im;
    g.px = luma;
    g.channels = 1;
    const unsigned what = PDQ_COPY_TRIM | PDQ_COPY_FLIP | PDQ_COPY_REGIONS | PDQ_COPY_HALVES;
    pdq_image_result a, b;
    pdq_copy_set ca, cb;
    assert_int_equal(pdq_hash_decoded(ctx, im, PDQ_WANT_DIHEDRAL, &a), VG_OK);
    assert_int_equal(pdq_hash_decoded(ctx, &g, PDQ_WANT_DIHEDRAL, &b), VG_OK);
    assert_memory_equal(&a.r, &b.r, sizeof a.r);
    assert_int_equal(pdq_copy_hashes(ctx, im, what, &ca), VG_OK);
    assert_int_equal(pdq_copy_hashes(ctx, &g, what, &cb), VG_OK);
    assert_int_equal(ca.n, cb.n);
    assert_memory_equal(ca.trim, cb.trim, sizeof ca.trim);
    assert_memory_equal(ca.h, cb.h, ca.n * sizeof ca.h[0]);
    free(luma);
}

static void test_luma_view_same_hashes(void **state)
{
    (void)state;
    pdq_ctx *ctx = pdq_ctx_new();
    assert_non_null(ctx);
    ref_row rows[MAX_ROWS];
    int n = read_listing("cpp_reference_hashes.csv", rows, MAX_ROWS);
    int checked = 0, trimmed = 0, flipped = 0;
    for (int i = 0; i < n + 40; i++) {
        char path[512];
        if (i < n)
            snprintf(path, sizeof path, "%s%s", DATA, rows[i].path);
        else
            snprintf(path, sizeof path, "%s/copy/%03d.jpg", VG_TEST_DATA_DIR, i - n);
        uint8_t *buf;
        size_t len;
        assert_int_equal(vg_read_file(path, 64 << 20, &buf, &len), VG_OK);
        img_decode_opts o;
        img_decode_opts_default(&o);
        o.min_w = o.min_h = 832;
        img_image im;
        if (img_decode(buf, len, &o, &im) != VG_OK) {
            vg_free(buf);
            continue;
        }
        check_luma_view(ctx, &im);
        if (VG_MAX(im.src_w, im.src_h) <= PDQ_COPY_FLIP_MAX_SIDE_PX)
            flipped++;
        if (i % 4 == 0) {
            /* letterboxed: black bars of a sixth of the height above and below */
            const uint32_t bar = im.h / 6, h2 = im.h + 2 * bar;
            const size_t row = (size_t)im.w * 3;
            img_image lb = im;
            lb.h = h2;
            lb.src_h = h2 * (uint32_t)(im.scale_denom > 0 ? im.scale_denom : 1);
            lb.px = calloc(row * h2, 1);
            assert_non_null(lb.px);
            memcpy(lb.px + row * bar, im.px, row * im.h);
            pdq_copy_set cs;
            assert_int_equal(pdq_copy_hashes(ctx, &lb, PDQ_COPY_TRIM, &cs), VG_OK);
            trimmed += cs.n == 1;
            check_luma_view(ctx, &lb);
            free(lb.px);
        }
        img_image_free(&im);
        vg_free(buf);
        checked++;
    }
    assert_true(checked >= 70);
    assert_true(trimmed >= 10);
    assert_true(flipped >= 1);
    pdq_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compat_matches_reference_listing),
        cmocka_unit_test(test_compat_dihedral_line),
        cmocka_unit_test(test_dihedral_vs_transformed_files),
        cmocka_unit_test(test_fast_within_10_bits),
        cmocka_unit_test(test_fast_large_photos_within_10_bits),
        cmocka_unit_test(test_exif_orientation),
        cmocka_unit_test(test_bridge_mods_within_31_bits),
        cmocka_unit_test(test_quality_flag),
        cmocka_unit_test(test_fast_min_side),
        cmocka_unit_test(test_pipelines_same_on_every_tier),
        cmocka_unit_test(test_hash_decoded_rgb),
        cmocka_unit_test(test_rgb_to_luma8_exact),
        cmocka_unit_test(test_luma_view_same_hashes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_mode_names),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
