/*
 * Pixel operations shared by pdq and face: nearest-neighbour and bilinear resizes, RGB -> luma,
 * EXIF orientation, crops. All work on tightly packed, interleaved 8-bit images (stride =
 * w * channels) and are pure functions of their inputs, so they are reentrant.
 *
 * The formulas are part of the contract (the pdq compat pipeline and the face networks compare
 * against reference implementations bit for bit or nearly), so each one is spelled out in
 * img.h and implemented literally here, without reassociation.
 */
#include "img/img_int.h"

#include "core/core.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

void img__orient_copy(const uint8_t *src, uint32_t sw, uint32_t sh, int channels, int orientation,
                      uint8_t *dst)
{
    /* dst(x, y) = src[base + x*dx + y*dy] in pixels, for dst of size W x H. */
    ptrdiff_t w = sw, h = sh, base, dx, dy;
    uint32_t dw = sw, dh = sh;
    switch (orientation) {
    case 2: /* mirror horizontally */
        base = w - 1, dx = -1, dy = w;
        break;
    case 3: /* rotate 180 */
        base = (h - 1) * w + w - 1, dx = -1, dy = -w;
        break;
    case 4: /* mirror vertically */
        base = (h - 1) * w, dx = 1, dy = -w;
        break;
    case 5: /* transpose */
        base = 0, dx = w, dy = 1;
        break;
    case 6: /* rotate 90 clockwise */
        base = (h - 1) * w, dx = -w, dy = 1;
        break;
    case 7: /* transverse */
        base = (h - 1) * w + w - 1, dx = -w, dy = -1;
        break;
    case 8: /* rotate 90 counter-clockwise */
        base = w - 1, dx = w, dy = -1;
        break;
    default:
        memcpy(dst, src, (size_t)sw * sh * (size_t)channels);
        return;
    }
    if (orientation >= 5) {
        dw = sh;
        dh = sw;
    }
    for (uint32_t y = 0; y < dh; y++) {
        ptrdiff_t s = base + (ptrdiff_t)y * dy;
        uint8_t *d = dst + (size_t)y * dw * (size_t)channels;
        switch (channels) {
        case 1:
            for (uint32_t x = 0; x < dw; x++, s += dx)
                d[x] = src[s];
            break;
        case 3:
            for (uint32_t x = 0; x < dw; x++, s += dx, d += 3) {
                const uint8_t *p = src + s * 3;
                d[0] = p[0];
                d[1] = p[1];
                d[2] = p[2];
            }
            break;
        default:
            for (uint32_t x = 0; x < dw; x++, s += dx, d += channels)
                memcpy(d, src + s * channels, (size_t)channels);
        }
    }
}

int img_apply_orientation(img_image *im, int orientation)
{
    if (!im || !im->px)
        return vg_err_set(VG_EINVAL, "img_apply_orientation: no image");
    if (orientation < 1 || orientation > 8)
        return vg_err_set(VG_EINVAL, "EXIF orientation %d is not in 1..8", orientation);
    if (orientation == 1)
        return VG_OK;
    size_t n;
    int rc = img__image_bytes(im->w, im->h, im->channels, &n);
    if (rc != VG_OK)
        return rc;
    uint8_t *px = vg_malloc(n);
    if (!px)
        return vg_err_set(VG_ENOMEM, "orientation buffer of %zu bytes", n);
    img__orient_copy(im->px, im->w, im->h, im->channels, orientation, px);
    vg_free(im->px);
    im->px = px;
    if (orientation >= 5) {
        uint32_t t = im->w;
        im->w = im->h;
        im->h = t;
    }
    return VG_OK;
}

void img_resize_nearest(const uint8_t *src, uint32_t sw, uint32_t sh, int channels, uint8_t *dst,
                        uint32_t dw, uint32_t dh)
{
    if (!src || !dst || sw == 0 || sh == 0 || dw == 0 || dh == 0 || channels < 1)
        return;
    size_t srow = (size_t)sw * (size_t)channels;
    /* Row and column indices floor(i * s / d), stepped exactly with a quotient and remainder
     * instead of a division per pixel. */
    uint32_t sy = 0, ry = 0;
    const uint32_t qy = sh / dh, my = sh % dh, qx = sw / dw, mx = sw % dw;
    for (uint32_t y = 0; y < dh; y++) {
        const uint8_t *row = src + (size_t)sy * srow;
        uint8_t *d = dst + (size_t)y * dw * (size_t)channels;
        uint32_t sx = 0, rx = 0;
        if (channels == 1) {
            for (uint32_t x = 0; x < dw; x++) {
                d[x] = row[sx];
                sx += qx;
                rx += mx;
                if (rx >= dw) {
                    rx -= dw;
                    sx++;
                }
            }
        } else if (channels == 3) {
            for (uint32_t x = 0; x < dw; x++, d += 3) {
                const uint8_t *p = row + (size_t)sx * 3;
                d[0] = p[0];
                d[1] = p[1];
                d[2] = p[2];
                sx += qx;
                rx += mx;
                if (rx >= dw) {
                    rx -= dw;
                    sx++;
                }
            }
        } else {
            for (uint32_t x = 0; x < dw; x++, d += channels) {
                memcpy(d, row + (size_t)sx * (size_t)channels, (size_t)channels);
                sx += qx;
                rx += mx;
                if (rx >= dw) {
                    rx -= dw;
                    sx++;
                }
            }
        }
        sy += qy;
        ry += my;
        if (ry >= dh) {
            ry -= dh;
            sy++;
        }
    }
}

void img_rgb_to_luma_f32(const uint8_t *rgb, size_t n, float *dst)
{
    /* float arithmetic, left to right, as the PDQ reference computes it. */
    const float kr = 0.299f, kg = 0.587f, kb = 0.114f;
    for (size_t i = 0; i < n; i++, rgb += 3) {
        float y = kr * (float)rgb[0];
        y = y + kg * (float)rgb[1];
        dst[i] = y + kb * (float)rgb[2];
    }
}

int img_crop(const img_image *src, uint32_t x, uint32_t y, uint32_t w, uint32_t h, img_image *out)
{
    if (!src || !src->px || !out)
        return vg_err_set(VG_EINVAL, "img_crop: no image");
    if (w == 0 || h == 0 || x > src->w || y > src->h || w > src->w - x || h > src->h - y)
        return vg_err_set(VG_EINVAL, "crop %ux%u at (%u,%u) is empty or outside the %ux%u image", w,
                          h, x, y, src->w, src->h);
    size_t n;
    int rc = img__image_bytes(w, h, src->channels, &n);
    if (rc != VG_OK)
        return rc;
    uint8_t *px = vg_malloc(n);
    if (!px)
        return vg_err_set(VG_ENOMEM, "crop buffer of %zu bytes", n);
    size_t ch = (size_t)src->channels, srow = (size_t)src->w * ch, drow = (size_t)w * ch;
    for (uint32_t r = 0; r < h; r++)
        memcpy(px + r * drow, src->px + (size_t)(y + r) * srow + (size_t)x * ch, drow);
    img_image o = *src;
    o.px = px;
    o.w = w;
    o.h = h;
    *out = o;
    return VG_OK;
}

/* Source coordinate of destination index i, and the two taps and weight, as TensorFlow's CPU
 * resize_bilinear kernel computes them (float scale = in/out). */
typedef struct img_tap {
    uint32_t lo, hi;
    float frac;
} img_tap;

static img_tap img_bilinear_tap(uint32_t i, float scale, uint32_t in, int half_pixel)
{
    float s = half_pixel ? ((float)i + 0.5f) * scale - 0.5f : (float)i * scale;
    float f = floorf(s);
    img_tap t;
    t.lo = f > 0.0f ? (uint32_t)f : 0;
    if (t.lo > in - 1)
        t.lo = in - 1;
    float c = ceilf(s);
    t.hi = c > 0.0f ? (uint32_t)c : 0;
    if (t.hi > in - 1)
        t.hi = in - 1;
    t.frac = s - f;
    return t;
}

int img_resize_bilinear_f32(const uint8_t *src, uint32_t sw, uint32_t sh, int channels, float *dst,
                            uint32_t dw, uint32_t dh, int half_pixel_centers)
{
    if (!src || !dst || sw == 0 || sh == 0 || dw == 0 || dh == 0 || channels < 1 || channels > 4)
        return vg_err_set(VG_EINVAL, "img_resize_bilinear_f32: bad arguments");
    img_tap *xt = vg_malloc((size_t)dw * sizeof(*xt));
    if (!xt)
        return vg_err_set(VG_ENOMEM, "bilinear tap table of %u entries", dw);
    const float xs = (float)sw / (float)dw, ys = (float)sh / (float)dh;
    for (uint32_t x = 0; x < dw; x++)
        xt[x] = img_bilinear_tap(x, xs, sw, half_pixel_centers);
    size_t ch = (size_t)channels, srow = (size_t)sw * ch;
    for (uint32_t y = 0; y < dh; y++) {
        img_tap yt = img_bilinear_tap(y, ys, sh, half_pixel_centers);
        const uint8_t *r0 = src + (size_t)yt.lo * srow, *r1 = src + (size_t)yt.hi * srow;
        float *d = dst + (size_t)y * dw * ch;
        for (uint32_t x = 0; x < dw; x++) {
            const uint8_t *a = r0 + xt[x].lo * ch, *b = r0 + xt[x].hi * ch;
            const uint8_t *c = r1 + xt[x].lo * ch, *e = r1 + xt[x].hi * ch;
            float fx = xt[x].frac;
            for (size_t k = 0; k < ch; k++) {
                float top = (float)a[k] + ((float)b[k] - (float)a[k]) * fx;
                float bot = (float)c[k] + ((float)e[k] - (float)c[k]) * fx;
                *d++ = top + (bot - top) * yt.frac;
            }
        }
    }
    vg_free(xt);
    return VG_OK;
}
