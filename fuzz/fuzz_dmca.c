/* fuzz_dmca: dmca_draft and dmca_html_escape over arbitrary field values.
 *
 * Input: 4 flag bytes (reference kind, match kind, dihedral/face index, distance), then up to 16
 * field values separated by NUL bytes. Invariants checked on every successful draft:
 *   - HTML: every '<' opens one of our own tags; every href is an http(s) URL (scheme in any
 *     case); no control
 *     character other than '\n';
 *   - text: no control character other than '\n'; and the "skeleton" of the text (each line
 *     that does not start with the value indent, cut at the value column) is the same as for
 *     a draft whose values are all replaced by "x": no value can add, remove or reshape a line
 *     of the notice's own wording.
 * A violation traps. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dmca/dmca.h"

#define VALUE_COL 26 /* dmca.c's FIELD_INDENT */

static const char *const OUR_TAGS[] = {
    "<!DOCTYPE", "<html", "</html", "<head", "</head", "<meta", "<title", "</title", "<body",
    "</body",    "<h1",   "</h1",   "<h2",   "</h2",   "<p>",   "</p>",   "<dl>",    "</dl>",
    "<dt>",      "</dt>", "<dd>",   "</dd>", "<br>",   "<a ",   "</a>"};

static void check_html(const char *h)
{
    for (const char *p = h; *p; p++) {
        if ((unsigned char)*p < 0x20 && *p != '\n')
            __builtin_trap();
        if (*p == '<') {
            int known = 0;
            for (size_t i = 0; i < sizeof OUR_TAGS / sizeof OUR_TAGS[0]; i++)
                known |= strncmp(p, OUR_TAGS[i], strlen(OUR_TAGS[i])) == 0;
            if (!known)
                __builtin_trap();
        }
    }
    /* Our links are exactly `<a href="...`; a URL may itself contain the text `href=` (then
     * followed by our closing quote), which is not an attribute. */
    for (const char *p = strstr(h, "<a href=\""); p; p = strstr(p + 1, "<a href=\"")) {
        if (strncasecmp(p + 9, "http://", 7) != 0 && strncasecmp(p + 9, "https://", 8) != 0)
            __builtin_trap();
    }
}

/* Lines of t that are not value continuations, each cut at the value column, joined. */
static char *skeleton(const char *t)
{
    size_t n = strlen(t);
    char *out = malloc(n + 2), *o = out;
    static const char indent[VALUE_COL + 1] = "                          ";
    while (*t) {
        const char *eol = strchr(t, '\n');
        size_t len = eol ? (size_t)(eol - t) : strlen(t);
        if (!(len >= VALUE_COL && memcmp(t, indent, VALUE_COL) == 0)) {
            size_t keep = len < VALUE_COL ? len : VALUE_COL;
            memcpy(o, t, keep);
            o += keep;
            *o++ = '\n';
        }
        t += len + (eol ? 1 : 0);
    }
    *o = 0;
    return out;
}

static void check_text(const char *t)
{
    for (const char *p = t; *p; p++) {
        if (((unsigned char)*p < 0x20 && *p != '\n') || *p == 0x7f)
            __builtin_trap();
    }
}

enum { NF = 16 };

static void fill(store_notice_source *src, dmca_request *req, const uint8_t *flags,
                 const char *const *v)
{
    memset(src, 0, sizeof *src);
    memset(req, 0, sizeof *req);
    strcpy(src->match.id, "mat_01jdq0000000000000000000");
    strcpy(src->reference.id, "ref_01jdq0000000000000000000");
    src->reference.kind = flags[0] & 1 ? STORE_REF_LIKENESS : STORE_REF_WORK;
    src->match.kind = (vg_match_kind)(flags[1] % 3);
    src->match.dihedral = flags[2] % 9 - 1;
    src->match.face_index = flags[2] % 5 - 1;
    src->match.distance = flags[3];
    src->match.confidence = flags[3] / 255.0;
    src->scan.created_ms = 1764201600000 + flags[3];
    src->profile.f.name = v[0];
    src->profile.f.legal_name = v[1];
    src->profile.f.email = v[2];
    src->profile.f.address = v[3];
    src->profile.f.phone = v[4];
    src->reference.title = v[5];
    src->reference.description = v[6];
    src->reference.original_url = v[7];
    src->reference.copyright_holder = v[8];
    src->scan.source_url = v[9];
    req->infringing_url = v[10];
    req->recipient.name = v[11];
    req->recipient.email = v[12];
    req->recipient.address = v[13];
    req->recipient.phone = v[14];
    req->signer_name = v[15];
    req->now_ms = 1764201600000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || size > 64 * 1024)
        return 0;
    char *buf = malloc(size - 4 + 1);
    memcpy(buf, data + 4, size - 4);
    buf[size - 4] = 0;
    const char *v[NF] = {0}, *benign[NF] = {0};
    char *p = buf, *end = buf + (size - 4);
    for (int i = 0; i < NF && p <= end; i++) {
        v[i] = p;
        p += strlen(p) + 1;
    }
    /* The infringing URL must pass validation for the renderer to run on most inputs. */
    char url[4096];
    if (v[10] && strncmp(v[10], "http", 4) != 0) {
        snprintf(url, sizeof url, "https://%s", v[10]);
        v[10] = url;
    }
    /* Benign values with the same pattern: absent stays absent, empty stays empty, and two
     * fields get the same benign value exactly when their real values are equal (the renderer
     * omits "Found at", "Also known as", "On behalf of" on equality). */
    char names[NF][16];
    for (int i = 0; i < NF; i++) {
        snprintf(names[i], sizeof names[i], "https://x%d", i);
        benign[i] = v[i] ? (*v[i] ? names[i] : "") : NULL;
        for (int j = 0; j < i && v[i] && *v[i]; j++) {
            if (v[j] && strcmp(v[i], v[j]) == 0) {
                benign[i] = benign[j];
                break;
            }
        }
    }

    vg_arena *a = vg_arena_new(0);
    store_notice_source src, bsrc;
    dmca_request req, breq;
    fill(&src, &req, data, v);
    fill(&bsrc, &breq, data, benign);
    store_notice_new n, bn;
    int rc = dmca_draft(&src, &req, a, &n);
    if (rc == 0) {
        check_html(n.html);
        check_text(n.text);
        if (dmca_draft(&bsrc, &breq, a, &bn) == 0) {
            char *s1 = skeleton(n.text), *s2 = skeleton(bn.text);
            if (strcmp(s1, s2) != 0)
                __builtin_trap();
            free(s1);
            free(s2);
        }
    }
    const char *esc = dmca_html_escape(a, buf);
    if (esc && strpbrk(esc, "<>\"'"))
        __builtin_trap();
    vg_arena_free(a);
    free(buf);
    return 0;
}
