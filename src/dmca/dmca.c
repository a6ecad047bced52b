/*
 * dmca: notice drafting and the status workflow (see dmca.h for the contract).
 *
 * A notice is written once, through an emitter that produces the plain text and the HTML side
 * by side, so the two can never disagree on content. Trusted wording (ours) and untrusted
 * values (everyone else's) go through different calls:
 *   - d_text() and paragraphs: our wording only (still HTML-escaped); plain-text paragraphs are
 *     word-wrapped, which is safe because no untrusted value is ever part of a sentence;
 *   - d_field(): a labelled value. Untrusted values get control characters and Unicode
 *     bidirectional/zero-width controls replaced (a value must not reorder or hide the text
 *     around it), HTML-escaped, and become links only when they are http(s) URLs; in plain
 *     text they start at a fixed column and every line break inside them is followed by the
 *     same indent, so no value can start a line that reads like the notice's own wording.
 * Both outputs are bounded by STORE_NOTICE_MAX_BYTES.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "dmca/dmca.h"

/* ---- workflow ------------------------------------------------------------------------------- */

/* ALLOWED_FROM[to]: the statuses `to` may be reached from. */
static const unsigned ALLOWED_FROM[STORE_NOTICE_STATUS_COUNT] = {
    [STORE_NOTICE_DRAFT] = 0,
    [STORE_NOTICE_SENT] = 1u << STORE_NOTICE_DRAFT,
    [STORE_NOTICE_ACKNOWLEDGED] = 1u << STORE_NOTICE_SENT,
    [STORE_NOTICE_REMOVED] = 1u << STORE_NOTICE_ACKNOWLEDGED,
    [STORE_NOTICE_REJECTED] = 1u << STORE_NOTICE_ACKNOWLEDGED,
    [STORE_NOTICE_COUNTERED] = 1u << STORE_NOTICE_ACKNOWLEDGED,
};

unsigned dmca_allowed_from(store_notice_status to)
{
    return (unsigned)to < STORE_NOTICE_STATUS_COUNT ? ALLOWED_FROM[to] : 0;
}

int dmca_transition_allowed(store_notice_status from, store_notice_status to)
{
    if ((unsigned)from >= STORE_NOTICE_STATUS_COUNT)
        return 0;
    return (dmca_allowed_from(to) >> (unsigned)from) & 1u;
}

int dmca_status_is_final(store_notice_status s)
{
    return s == STORE_NOTICE_REMOVED || s == STORE_NOTICE_REJECTED || s == STORE_NOTICE_COUNTERED;
}

/* ---- string building ------------------------------------------------------------------------ */

typedef struct sb {
    char *p;
    size_t len, cap;
    int err; /* sticky: VG_ENOMEM or VG_ETOOBIG */
} sb;

static void sb_put(sb *b, const char *s, size_t n)
{
    if (b->err)
        return;
    if (b->len + n + 1 > STORE_NOTICE_MAX_BYTES) {
        b->err = VG_ETOOBIG;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = vg_realloc(b->p, ncap);
        if (!np) {
            b->err = VG_ENOMEM;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Length of a Unicode bidirectional control or zero-width formatting character at s (UTF-8), or
 * 0: U+200B..U+200F, U+202A..U+202E, U+2066..U+2069. */
static size_t bidi_len(const unsigned char *s)
{
    if (s[0] != 0xe2)
        return 0;
    if (s[1] == 0x80 && ((s[2] >= 0x8b && s[2] <= 0x8f) || (s[2] >= 0xaa && s[2] <= 0xae)))
        return 3;
    if (s[1] == 0x81 && s[2] >= 0xa6 && s[2] <= 0xa9)
        return 3;
    return 0;
}

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/* Escapes one untrusted string for HTML: & < > " ' as entities, control characters as spaces,
 * bidi controls as U+FFFD; with `breaks`, a newline becomes <br>. */
static void sb_html(sb *b, const char *s, int breaks)
{
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    while (*u) {
        size_t run = 0; /* bytes that need no change */
        while (u[run] && u[run] >= 0x20 && u[run] != 0x7f && !strchr("&<>\"'", u[run]) &&
               !bidi_len(u + run))
            run++;
        sb_put(b, (const char *)u, run);
        u += run;
        if (!*u)
            break;
        size_t bl = bidi_len(u);
        if (bl) {
            sb_puts(b, REPLACEMENT);
            u += bl;
            continue;
        }
        switch (*u) {
        case '&':
            sb_puts(b, "&amp;");
            break;
        case '<':
            sb_puts(b, "&lt;");
            break;
        case '>':
            sb_puts(b, "&gt;");
            break;
        case '"':
            sb_puts(b, "&quot;");
            break;
        case '\'':
            sb_puts(b, "&#39;");
            break;
        case '\n':
            sb_puts(b, breaks ? "<br>" : " ");
            break;
        case '\r':
            break;
        default:
            sb_puts(b, " ");
            break;
        }
        u++;
    }
}

/* One untrusted string for plain text: control characters become spaces, bidi controls U+FFFD;
 * with `indent` non-NULL a newline is kept and followed by indent, else it becomes a space. */
static void sb_plain(sb *b, const char *s, const char *indent)
{
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    while (*u) {
        size_t run = 0;
        while (u[run] && u[run] >= 0x20 && u[run] != 0x7f && !bidi_len(u + run))
            run++;
        sb_put(b, (const char *)u, run);
        u += run;
        if (!*u)
            break;
        size_t bl = bidi_len(u);
        if (bl) {
            sb_puts(b, REPLACEMENT);
            u += bl;
            continue;
        }
        if (*u == '\n' && indent) {
            sb_puts(b, "\n");
            sb_puts(b, indent);
        } else if (*u != '\r') {
            sb_puts(b, " ");
        }
        u++;
    }
}

char *dmca_html_escape(vg_arena *a, const char *s)
{
    sb b = {0};
    sb_html(&b, s ? s : "", 0);
    sb_put(&b, "", 0); /* an empty input still yields "" */
    char *out = NULL;
    if (!b.err) {
        out = vg_arena_alloc(a, b.len + 1);
        if (out)
            memcpy(out, b.p, b.len + 1);
    }
    vg_free(b.p);
    return out;
}

/* ---- the two-output emitter ----------------------------------------------------------------- */

typedef struct doc {
    sb text, html;
    sb para; /* plain text of the paragraph being written, wrapped at its end */
    int in_para;
} doc;

#define FIELD_INDENT "                          " /* a field value's column (26 spaces) */
#define TEXT_WRAP_COLUMNS 78

/* Appends s (no line breaks) word-wrapped at TEXT_WRAP_COLUMNS, the first line starting at
 * column `col`, later lines starting with `indent`. A word longer than a line is not split. */
static void sb_wrap(sb *b, const char *s, size_t col, const char *indent)
{
    size_t start = col;
    while (*s) {
        size_t w = strcspn(s, " ");
        if (col > start && col + 1 + w > TEXT_WRAP_COLUMNS) {
            sb_puts(b, "\n");
            sb_puts(b, indent);
            col = start = strlen(indent);
        } else if (col > start) {
            sb_puts(b, " ");
            col++;
        }
        sb_put(b, s, w);
        col += w;
        s += w;
        while (*s == ' ')
            s++;
    }
}

/* The plain-text sink: the open paragraph, else the document. */
static sb *d_plain(doc *d)
{
    return d->in_para ? &d->para : &d->text;
}

/* Our own wording, to both outputs. */
static void d_text(doc *d, const char *s)
{
    sb_puts(d_plain(d), s);
    sb_html(&d->html, s, 0);
}

static int is_http_url(const char *s)
{
    return s && (strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0);
}

static void d_h1(doc *d, const char *title)
{
    sb_puts(&d->text, title);
    sb_puts(&d->text, "\n\n");
    sb_puts(&d->html, "<h1>");
    sb_html(&d->html, title, 0);
    sb_puts(&d->html, "</h1>\n");
}

static void d_section(doc *d, const char *title)
{
    sb_puts(&d->text, "\n");
    sb_puts(&d->text, title);
    sb_puts(&d->text, "\n");
    sb_puts(&d->html, "<h2>");
    sb_html(&d->html, title, 0);
    sb_puts(&d->html, "</h2>\n");
}

static void d_para_begin(doc *d)
{
    d->para.len = 0;
    if (d->para.p)
        d->para.p[0] = '\0';
    d->in_para = 1;
    sb_puts(&d->html, "<p>");
}

/* Emits the paragraph word-wrapped at TEXT_WRAP_COLUMNS, after a blank line. Paragraph text
 * holds no line breaks (fields in it went through sb_plain without an indent). */
static void d_para_end(doc *d)
{
    d->in_para = 0;
    if (d->para.err && !d->text.err)
        d->text.err = d->para.err;
    sb_puts(&d->text, "\n");
    sb_wrap(&d->text, d->para.p ? d->para.p : "", 0, "");
    sb_puts(&d->text, "\n");
    sb_puts(&d->html, "</p>\n");
}

static void d_fields_begin(doc *d)
{
    sb_puts(&d->html, "<dl>\n");
}

static void d_fields_end(doc *d)
{
    sb_puts(&d->html, "</dl>\n");
}

/* "  Label:            value" in text; <dt>/<dd> in HTML. kind: 0 single line, 1 multi-line,
 * 2 URL (a link when http(s)), 3 our own wording. Absent (NULL or "") values are skipped. */
enum { F_LINE = 0, F_LINES = 1, F_URL = 2, F_OURS = 3 };

static void d_field(doc *d, const char *label, const char *value, int kind)
{
    if (!value || !*value)
        return;
    char lab[64];
    snprintf(lab, sizeof lab, "  %s: ", label);
    sb_puts(&d->text, lab);
    for (size_t n = strlen(lab); n < sizeof FIELD_INDENT - 1; n++)
        sb_puts(&d->text, " ");
    sb_puts(&d->html, "<dt>");
    sb_html(&d->html, label, 0);
    sb_puts(&d->html, "</dt><dd>");
    if (kind == F_OURS) {
        sb_wrap(&d->text, value, sizeof FIELD_INDENT - 1, FIELD_INDENT);
        sb_html(&d->html, value, 1);
    } else {
        sb_plain(&d->text, value, kind == F_LINES ? FIELD_INDENT : NULL);
        if (kind == F_URL && is_http_url(value)) {
            sb_puts(&d->html, "<a href=\"");
            sb_html(&d->html, value, 0);
            sb_puts(&d->html, "\" rel=\"nofollow noopener noreferrer\">");
            sb_html(&d->html, value, 0);
            sb_puts(&d->html, "</a>");
        } else {
            sb_html(&d->html, value, kind == F_LINES);
        }
    }
    sb_puts(&d->text, "\n");
    sb_puts(&d->html, "</dd>\n");
}

/* ---- wording -------------------------------------------------------------------------------- */

/* PDQ's dihedral order (facebook/ThreatExchange pdq: original, rotate 90, 180, 270, flip X,
 * flip Y, flip about the main diagonal, flip about the anti-diagonal). */
static const char *const DIHEDRAL_NAMES[8] = {
    "as is",
    "rotated 90 degrees",
    "rotated 180 degrees",
    "rotated 270 degrees",
    "mirrored left-right",
    "mirrored top-bottom",
    "mirrored about the main diagonal",
    "mirrored about the anti-diagonal",
};

/* How a PDQ match was found (store_match.mechanism), in plain words; "" for the whole image
 * and for evidence recorded before mechanisms were. */
static const char *describe_mechanism(const store_match *m)
{
    if (!strcmp(m->mechanism, "trimmed"))
        return ". The infringing image is a framed copy: it matches the protected work once the "
               "borders, letterbox bars or caption strip around the picture are left out";
    if (!strcmp(m->mechanism, "flip"))
        return ". The infringing image is a mirrored copy: its left-right mirror image matches "
               "the protected work";
    if (!strcmp(m->mechanism, "region") && !strcmp(m->region, "centre90"))
        return ". The infringing image is a cropped copy: it matches the central 90% of the "
               "protected work";
    if (!strcmp(m->mechanism, "region") && !strcmp(m->region, "centre80"))
        return ". The infringing image is a cropped copy: it matches the central 80% of the "
               "protected work";
    if (!strcmp(m->mechanism, "region") && !strcmp(m->region, "top"))
        return ". The infringing image is an altered copy: its top half matches the top half of "
               "the protected work (a logo, watermark or caption was added to the bottom half)";
    if (!strcmp(m->mechanism, "region") && !strcmp(m->region, "bottom"))
        return ". The infringing image is an altered copy: its bottom half matches the bottom "
               "half of the protected work (a logo, watermark or caption was added to the top "
               "half)";
    if (!strcmp(m->mechanism, "region"))
        return ". The infringing image is a cropped copy: it matches a part of the protected "
               "work";
    return "";
}

/* "m:ss" (or "h:mm:ss") of a time in seconds, rounded to the second: frames are sampled once a
 * second, so finer would claim a precision the evidence does not have. */
static void clock_time(double s, char *buf, size_t n)
{
    long t = s > 0 && s < 1e9 ? lround(s) : 0;
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* A video match (store_match.video_json, the catalog's encoding): both percentages and each
 * matched time range in plain words. 0 when the details are unreadable (then the match is
 * described as a PDQ match). */
static int describe_video(const store_match *m, char *buf, size_t n)
{
    json_t *v = json_loads(m->video_json, 0, NULL);
    json_t *segs = json_object_get(v, "segments");
    if (!json_is_object(v) || !json_is_array(segs)) {
        json_decref(v);
        return 0;
    }
    const char *rm = json_string_value(json_object_get(v, "reference_media"));
    if (rm && !strcmp(rm, "image")) { /* a protected photo, or person, in the infringing video */
        int len = m->kind == VG_MATCH_FACE
                      ? snprintf(buf, n,
                                 "face match in video: the person in the reference photo appears "
                                 "in the infringing video (face descriptors of sampled frames; "
                                 "the nearest is at distance %.3f, below about 0.6 indicates the "
                                 "same person; confidence %.2f). The person is shown from",
                                 m->distance, m->confidence)
                      : snprintf(buf, n,
                                 "the protected image is shown in the infringing video "
                                 "(perceptual hashes (PDQ) of frames sampled once a second; the "
                                 "nearest is %.0f of 256 bits from the image). It is shown from",
                                 m->distance);
        size_t i;
        json_t *g;
        json_array_foreach(segs, i, g)
        {
            char qs[32], qe[32];
            clock_time(json_number_value(json_object_get(g, "query_start")), qs, sizeof qs);
            clock_time(json_number_value(json_object_get(g, "query_end")), qe, sizeof qe);
            if (len < 0 || (size_t)len >= n)
                break;
            len +=
                snprintf(buf + len, n - (size_t)len, "%s %s to %s", i ? "; and from" : "", qs, qe);
        }
        if (len >= 0 && (size_t)len < n)
            snprintf(buf + len, n - (size_t)len, "%s", json_array_size(segs) ? "." : " nowhere.");
        json_decref(v);
        return 1;
    }
    int len = snprintf(buf, n,
                       "video match by vPDQ (perceptual hashes of frames sampled once a second; "
                       "a frame matches within 31 of 256 bits): %.0f%% of the protected video's "
                       "frames and %.0f%% of the infringing video's frames have a match. Matching "
                       "time ranges:",
                       json_number_value(json_object_get(v, "compared_match_percent")),
                       json_number_value(json_object_get(v, "query_match_percent")));
    size_t i;
    json_t *g;
    json_array_foreach(segs, i, g)
    {
        char qs[32], qe[32], cs[32], ce[32];
        clock_time(json_number_value(json_object_get(g, "query_start")), qs, sizeof qs);
        clock_time(json_number_value(json_object_get(g, "query_end")), qe, sizeof qe);
        clock_time(json_number_value(json_object_get(g, "reference_start")), cs, sizeof cs);
        clock_time(json_number_value(json_object_get(g, "reference_end")), ce, sizeof ce);
        if (len < 0 || (size_t)len >= n)
            break;
        len += snprintf(buf + len, n - (size_t)len,
                        "%s %s to %s of the infringing video shows %s to %s of the protected "
                        "video",
                        i ? ";" : "", qs, qe, cs, ce);
    }
    if (len >= 0 && (size_t)len < n)
        snprintf(buf + len, n - (size_t)len, "%s", json_array_size(segs) ? "." : " none.");
    json_decref(v);
    return 1;
}

/* A photo that is a frame of the protected video (its video details carry "video_frames",
 * catalog_video_frame_json): the distance and the times in the video of the nearest matching
 * frames. 0 for any other match, or when the details are unreadable. */
static int describe_video_frame(const store_match *m, char *buf, size_t n)
{
    json_t *v = json_loads(m->video_json, 0, NULL);
    json_t *fr = json_object_get(v, "video_frames");
    if (!json_is_array(fr) || !json_array_size(fr)) {
        json_decref(v);
        return 0;
    }
    int len = snprintf(buf, n,
                       "visual match by perceptual hash (PDQ): the infringing image is a frame of "
                       "the protected video (Hamming distance %.0f of 256 bits, image %s; "
                       "confidence %.2f). It shows the protected video at",
                       m->distance,
                       m->dihedral >= 0 && m->dihedral < 8 ? DIHEDRAL_NAMES[m->dihedral] : "as is",
                       m->confidence);
    size_t i;
    json_t *f;
    json_array_foreach(fr, i, f)
    {
        char t[32];
        clock_time(json_number_value(json_object_get(f, "timestamp")), t, sizeof t);
        if (len < 0 || (size_t)len >= n)
            break;
        len += snprintf(buf + len, n - (size_t)len, "%s %s", i ? "," : "", t);
    }
    if (len >= 0 && (size_t)len < n)
        snprintf(buf + len, n - (size_t)len, ".");
    json_decref(v);
    return 1;
}

static void describe_match(const store_match *m, char *buf, size_t n)
{
    if (m->video_json && describe_video_frame(m, buf, n))
        return;
    if (m->video_json && describe_video(m, buf, n))
        return;
    switch (m->kind) {
    case VG_MATCH_EXACT:
        snprintf(buf, n,
                 "exact copy: the file is byte-for-byte identical to the original (same SHA-256)");
        break;
    case VG_MATCH_PDQ:
        snprintf(buf, n,
                 "visual match by perceptual hash (PDQ): Hamming distance %.0f of 256 bits "
                 "(0 means visually identical), image %s; confidence %.2f%s",
                 m->distance,
                 m->dihedral >= 0 && m->dihedral < 8 ? DIHEDRAL_NAMES[m->dihedral] : "as is",
                 m->confidence, describe_mechanism(m));
        break;
    case VG_MATCH_FACE:
    default:
        snprintf(buf, n,
                 "face match: face #%d in the image has a face-descriptor distance of %.3f to "
                 "the reference photo (0 means identical; below about 0.6 indicates the same "
                 "person); confidence %.2f",
                 m->face_index + 1, m->distance, m->confidence);
        break;
    }
}

static void format_date(int64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%d %B %Y", &tm);
}

/* The notice body. claimant/signer/person are already resolved. */
static void render(doc *d, const store_notice_source *src, const dmca_request *req,
                   const store_party *claimant, const char *signer, const char *signature,
                   int64_t now_ms)
{
    const store_reference *ref = &src->reference;
    const store_profile *prof = &src->profile;
    const int likeness = ref->kind == STORE_REF_LIKENESS;
    const char *person =
        prof->f.legal_name && *prof->f.legal_name ? prof->f.legal_name : prof->f.name;
    const char *owner =
        ref->copyright_holder && *ref->copyright_holder ? ref->copyright_holder : claimant->name;
    char date[64], when[32], hex[VG_SHA256_HEX_BYTES], refhex[VG_SHA256_HEX_BYTES], how[4096];
    format_date(now_ms, date, sizeof date);
    vg_format_time(src->scan.created_ms, when, sizeof when);
    vg_hex_encode(src->scan.sha256, 32, hex);
    vg_hex_encode(ref->sha256, 32, refhex);
    describe_match(&src->match, how, sizeof how);

    sb_puts(&d->html, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                      "<title>");
    sb_html(&d->html,
            likeness ? "Takedown request: unauthorised use of a person's likeness"
                     : "DMCA notification of claimed infringement",
            0);
    sb_puts(&d->html, "</title>\n</head>\n<body>\n");

    if (!likeness)
        d_h1(d, "DMCA Notification of Claimed Copyright Infringement (17 U.S.C. 512(c)(3))");
    else
        d_h1(d, "Takedown Request: Unauthorised Use of a Person's Likeness");

    d_fields_begin(d);
    d_field(d, "Date", date, F_OURS);
    d_field(d, "To", req->recipient.name, F_LINE);
    d_field(d, "Email", req->recipient.email, F_LINE);
    d_field(d, "Address", req->recipient.address, F_LINES);
    d_field(d, "Phone", req->recipient.phone, F_LINE);
    d_field(d, "From", claimant->name, F_LINE);
    d_fields_end(d);

    d_para_begin(d);
    if (!likeness) {
        d_text(d, "This is a notification of claimed copyright infringement under the Digital "
                  "Millennium Copyright Act, 17 U.S.C. 512(c)(3). The material identified in "
                  "section 2 infringes the copyright in the work identified in section 1. I ask "
                  "that you expeditiously remove or disable access to it.");
    } else {
        d_text(d, "This is NOT a notification of copyright infringement under 17 U.S.C. 512, and "
                  "it makes no copyright claim: a person's likeness is not a work of authorship. "
                  "It is a request to remove the material identified in section 2, which uses "
                  "the likeness of the person named in section 1 without authorisation, under "
                  "your service's policies on impersonation and non-consensual use of a "
                  "person's image, and under that person's right of publicity. It sets out the "
                  "same information a 512(c)(3) notification would, so that you can identify "
                  "and act on it.");
    }
    d_para_end(d);

    if (!likeness) {
        d_section(d, "1. The copyrighted work (512(c)(3)(A)(ii))");
        d_fields_begin(d);
        d_field(d, "Title",
                ref->title      ? ref->title
                : ref->is_video ? "(untitled video)"
                                : "(untitled image)",
                F_LINE);
        d_field(d, "Description", ref->description, F_LINES);
        d_field(d, "Original location", ref->original_url, F_URL);
        d_field(d, "Copyright owner", owner, F_LINE);
        d_field(d, "Original SHA-256", refhex, F_OURS);
        d_field(d, "Vigil reference", ref->id, F_LINE);
        d_fields_end(d);
    } else {
        d_section(d, "1. The person whose likeness is used");
        d_fields_begin(d);
        d_field(d, "Name", person, F_LINE);
        if (prof->f.legal_name && *prof->f.legal_name && strcmp(prof->f.name, person) != 0)
            d_field(d, "Also known as", prof->f.name, F_LINE);
        d_field(d, "Photo SHA-256", refhex, F_OURS);
        d_field(d, "Vigil reference", ref->id, F_LINE);
        d_fields_end(d);
    }

    d_section(d, likeness ? "2. The material and where it is"
                          : "2. The infringing material and where it is (512(c)(3)(A)(iii))");
    d_fields_begin(d);
    d_field(d, "URL", req->infringing_url, F_URL);
    if (src->scan.source_url && strcmp(src->scan.source_url, req->infringing_url) != 0)
        d_field(d, "Found at", src->scan.source_url, F_URL);
    d_field(d, "File SHA-256", hex, F_OURS);
    d_field(d, "Identified", when, F_OURS);
    d_field(d, "How it matches", how, F_OURS);
    d_field(d, "Evidence record", src->match.id, F_LINE);
    d_fields_end(d);

    d_section(d, likeness ? "3. Contact information of the requesting party"
                          : "3. Contact information of the complaining party (512(c)(3)(A)(iv))");
    d_fields_begin(d);
    d_field(d, "Name", claimant->name, F_LINE);
    d_field(d, "Address", claimant->address, F_LINES);
    d_field(d, "Email", claimant->email, F_LINE);
    d_field(d, "Phone", claimant->phone, F_LINE);
    d_fields_end(d);

    d_section(d, likeness ? "4. Statements" : "4. Statements (512(c)(3)(A)(v) and (vi))");
    d_para_begin(d);
    if (!likeness) {
        d_text(d, "I have a good faith belief that use of the copyrighted material described "
                  "above in the manner complained of is not authorized by the copyright owner, "
                  "its agent, or the law.");
    } else {
        d_text(d, "I have a good faith belief that the use of the likeness of the person named "
                  "in section 1 in the material described above is not authorized by that "
                  "person, their agent, or the law.");
    }
    d_para_end(d);
    d_para_begin(d);
    if (!likeness) {
        d_text(d, "The information in this notification is accurate, and under penalty of "
                  "perjury, I am authorized to act on behalf of the owner of an exclusive right "
                  "that is allegedly infringed.");
    } else {
        d_text(d, "The information in this request is accurate, and under penalty of perjury, I "
                  "am the person named above or authorized to act on their behalf.");
    }
    d_para_end(d);

    d_section(d, likeness ? "5. Signature" : "5. Signature (512(c)(3)(A)(i))");
    d_fields_begin(d);
    d_field(d, "Signed", signature, F_LINE);
    d_field(d, "Name", signer, F_LINE);
    if (strcmp(signer, claimant->name) != 0)
        d_field(d, "On behalf of", claimant->name, F_LINE);
    d_field(d, "Date", date, F_OURS);
    d_fields_end(d);

    sb_puts(&d->html, "</body>\n</html>\n");
}

/* ---- drafting ------------------------------------------------------------------------------- */

static char *arena_copy(vg_arena *a, const sb *b)
{
    char *p = vg_arena_alloc(a, b->len + 1);
    if (p) {
        memcpy(p, b->p ? b->p : "", b->len);
        p[b->len] = '\0';
    }
    return p;
}

static int has_control(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    }
    return 0;
}

int dmca_draft(const store_notice_source *src, const dmca_request *req, vg_arena *a,
               store_notice_new *out)
{
    if (!src || !req || !a || !out)
        return vg_err_set(VG_EINVAL, "dmca_draft: missing argument");
    const char *url = req->infringing_url;
    if (!url || !*url)
        return vg_err_set(VG_EINVAL, "infringing_url is required");
    if (!is_http_url(url) || has_control(url) ||
        strnlen(url, STORE_URL_MAX_BYTES) >= STORE_URL_MAX_BYTES)
        return vg_err_set(VG_EINVAL,
                          "infringing_url must be an http(s) URL shorter than %d "
                          "bytes",
                          STORE_URL_MAX_BYTES);
    if (!req->recipient.name || !*req->recipient.name)
        return vg_err_set(VG_EINVAL, "recipient.name is required");
    const store_profile *prof = &src->profile;
    if (!prof->f.name || !*prof->f.name)
        return vg_err_set(VG_EINVAL, "the profile has no name");

    store_party claimant = {
        .name = prof->f.legal_name && *prof->f.legal_name ? prof->f.legal_name : prof->f.name,
        .email = prof->f.email,
        .address = prof->f.address,
        .phone = prof->f.phone,
    };
    if (!(claimant.email && *claimant.email) && !(claimant.address && *claimant.address) &&
        !(claimant.phone && *claimant.phone))
        return vg_err_set(VG_EINVAL, "the profile has no contact information (email, address or "
                                     "phone), which a notice must give (512(c)(3)(A)(iv))");
    const char *signer = req->signer_name && *req->signer_name ? req->signer_name : claimant.name;
    int64_t now = req->now_ms ? req->now_ms : vg_wall_ms();

    /* "/s/ Name": the customary form of an electronic signature. */
    sb sig = {0};
    sb_puts(&sig, "/s/ ");
    sb_plain(&sig, signer, NULL);
    doc d;
    memset(&d, 0, sizeof d);
    if (!sig.err)
        render(&d, src, req, &claimant, signer, sig.p, now);

    int err = sig.err ? sig.err : d.text.err ? d.text.err : d.html.err;
    store_notice_new n;
    memset(&n, 0, sizeof n);
    if (!err) {
        n.match_id = src->match.id;
        n.infringing_url = url;
        n.recipient = req->recipient;
        n.claimant = claimant;
        n.signature = arena_copy(a, &sig);
        n.text = arena_copy(a, &d.text);
        n.html = arena_copy(a, &d.html);
        if (!n.signature || !n.text || !n.html)
            err = VG_ENOMEM;
    }
    vg_free(sig.p);
    vg_free(d.para.p);
    vg_free(d.text.p);
    vg_free(d.html.p);
    if (err == VG_ETOOBIG)
        return vg_err_set(err, "the notice would exceed %u bytes", STORE_NOTICE_MAX_BYTES);
    if (err)
        return vg_err_set(err, "dmca: out of memory");
    *out = n;
    return 0;
}
