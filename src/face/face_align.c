/*
 * Crops: the landmark net's input box and the "alignment" recognition uses.
 *
 * face-api's dlib alignment (FaceLandmarks.alignDlib) is only a square crop, with no rotation:
 * from the eye centres (points 36-41, 42-47) and the mouth centre (48-67),
 *   size = floor(mean distance eye->mouth / 0.45), c = centroid of the three,
 *   x = floor(max(0, c.x - 0.5 size)), y = floor(max(0, c.y - 0.43 size)),
 * then the square is clipped to the image and floored like every other crop.
 */
#include "face/face_int.h"

#include "core/core.h"

#include <math.h>

/* Box.clipAtImageBorders followed by floor(); 0 if something is left. */
static int clip_floor(double x, double y, double w, double h, uint32_t iw, uint32_t ih, int *ox,
                      int *oy, int *ow, int *oh)
{
    double right = x + w, bottom = y + h;
    double cx = fmax(x, 0.0), cy = fmax(y, 0.0);
    double cw = fmin(right - cx, (double)iw - cx), ch = fmin(bottom - cy, (double)ih - cy);
    if (!isfinite(cx) || !isfinite(cy) || !isfinite(cw) || !isfinite(ch))
        return -1;
    cx = floor(cx), cy = floor(cy), cw = floor(cw), ch = floor(ch);
    if (cw <= 0 || ch <= 0 || cx >= iw || cy >= ih)
        return -1;
    *ox = (int)cx, *oy = (int)cy, *ow = (int)cw, *oh = (int)ch;
    if ((uint32_t)(*ox + *ow) > iw)
        *ow = (int)iw - *ox;
    if ((uint32_t)(*oy + *oh) > ih)
        *oh = (int)ih - *oy;
    return 0;
}

static const float k_mean_face[3] = {122.782f, 117.001f, 104.298f};

int face_prepare_landmarks(const face_image *img, const face_box *box, float *dst, face_crop *crop)
{
    if (!img || !img->rgb || !box || !dst || !crop || img->w == 0 || img->h == 0)
        return vg_err_set(VG_EINVAL, "face_prepare_landmarks: bad argument");
    face_crop c;
    if (clip_floor(box->x, box->y, box->w, box->h, img->w, img->h, &c.x, &c.y, &c.w, &c.h))
        return vg_err_set(VG_ENOFACE, "face box lies outside the image");
    c.box_x = box->x;
    c.box_y = box->y;
    face__to_square_tensor(img, c.x, c.y, c.w, c.h, FACE_LANDMARK_SIZE, 1, k_mean_face, 255.0f,
                           0.0f, dst);
    *crop = c;
    return 0;
}

int face_prepare_recognition(const face_image *img, const float lm[FACE_LANDMARKS][2], float *dst,
                             face_box *out_crop)
{
    if (!img || !img->rgb || !lm || !dst || img->w == 0 || img->h == 0)
        return vg_err_set(VG_EINVAL, "face_prepare_recognition: bad argument");
    double c[3][2] = {{0}};
    static const int ranges[3][2] = {{36, 42}, {42, 48}, {48, 68}};
    for (int k = 0; k < 3; k++) {
        for (int i = ranges[k][0]; i < ranges[k][1]; i++)
            c[k][0] += lm[i][0], c[k][1] += lm[i][1];
        c[k][0] /= ranges[k][1] - ranges[k][0];
        c[k][1] /= ranges[k][1] - ranges[k][0];
    }
    double dl = hypot(c[2][0] - c[0][0], c[2][1] - c[0][1]);
    double dr = hypot(c[2][0] - c[1][0], c[2][1] - c[1][1]);
    double size = floor((dl + dr) / 2 / 0.45);
    double rx = (c[0][0] + c[1][0] + c[2][0]) / 3, ry = (c[0][1] + c[1][1] + c[2][1]) / 3;
    double x = floor(fmax(0.0, rx - 0.5 * size)), y = floor(fmax(0.0, ry - 0.43 * size));
    int cx, cy, cw, ch;
    if (!(size > 0) || clip_floor(x, y, size, size, img->w, img->h, &cx, &cy, &cw, &ch))
        return vg_err_set(VG_ENOFACE, "aligned face crop lies outside the image");
    face__to_square_tensor(img, cx, cy, cw, ch, FACE_RECOG_SIZE, 1, k_mean_face, 255.0f, 0.0f, dst);
    if (out_crop)
        *out_crop = (face_box){(float)cx, (float)cy, (float)cw, (float)ch};
    return 0;
}
