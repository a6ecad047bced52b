/* dmca: the status rule table (alone and applied through the store), the 512(c)(3) elements of a
 * drafted notice, the honest wording of a likeness request, and hostile input in every field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dmca/dmca.h"
#include "store/store.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S(x) STORE_NOTICE_##x

/* ---- the rule table ------------------------------------------------------------------------- */

static int legal(store_notice_status from, store_notice_status to)
{
    return (from == S(DRAFT) && to == S(SENT)) || (from == S(SENT) && to == S(ACKNOWLEDGED)) ||
           (from == S(ACKNOWLEDGED) &&
            (to == S(REMOVED) || to == S(REJECTED) || to == S(COUNTERED)));
}

static void test_transition_table(void **state)
{
    (void)state;
    int n_legal = 0;
    for (int from = 0; from < STORE_NOTICE_STATUS_COUNT; from++) {
        for (int to = 0; to < STORE_NOTICE_STATUS_COUNT; to++) {
            int ok = dmca_transition_allowed((store_notice_status)from, (store_notice_status)to);
            assert_int_equal(ok, legal((store_notice_status)from, (store_notice_status)to));
            assert_int_equal(ok, (int)((dmca_allowed_from((store_notice_status)to) >> from) & 1u));
            n_legal += ok;
        }
    }
    assert_int_equal(n_legal, 5);
    assert_false(dmca_transition_allowed((store_notice_status)-1, S(SENT)));
    assert_false(dmca_transition_allowed(S(DRAFT), (store_notice_status)6));
    assert_false(dmca_transition_allowed((store_notice_status)99, (store_notice_status)99));
    assert_int_equal(dmca_allowed_from(S(DRAFT)), 0);
    assert_int_equal(dmca_allowed_from((store_notice_status)42), 0);
    assert_true(dmca_status_is_final(S(REMOVED)));
    assert_true(dmca_status_is_final(S(REJECTED)));
    assert_true(dmca_status_is_final(S(COUNTERED)));
    assert_false(dmca_status_is_final(S(ACKNOWLEDGED)));
    assert_false(dmca_status_is_final(S(DRAFT)));
}

/* ---- a store with one match to draft from --------------------------------------------------- */

typedef struct fx {
    char dir[64], path[96];
    store *st;
    vg_arena *a;
    char tenant[STORE_ID_MAX], profile[STORE_ID_MAX], work[STORE_ID_MAX], like[STORE_ID_MAX];
    char scan[STORE_ID_MAX], m_pdq[STORE_ID_MAX], m_exact[STORE_ID_MAX], m_face[STORE_ID_MAX];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/vigil-test-dmca-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/vigil.db", f->dir);
    store_config c;
    store_config_default(&c);
    c.path = f->path;
    c.synchronous = STORE_SYNC_NORMAL;
    if (store_open(&c, &f->st))
        return -1;
    f->a = vg_arena_new(0);
    store_profile_fields pf = {.name = "Jane Doe",
                               .legal_name = "Jane Q. Doe",
                               .email = "jane@example.com",
                               .address = "1 Main Street\nSpringfield, IL 62701",
                               .phone = "+1 555 0100"};
    uint8_t sha_w[32], sha_l[32], pdq[32], sha_s[32];
    memset(sha_w, 0x11, 32);
    memset(sha_l, 0x22, 32);
    memset(pdq, 0x33, 32);
    memset(sha_s, 0xab, 32);
    float desc[VG_DESCRIPTOR_DIM] = {0.25f};
    store_reference_new w = {.kind = STORE_REF_WORK,
                             .title = "Sunset over the bay",
                             .description = "Photograph, 2024",
                             .original_url = "https://jane.example/sunset.jpg",
                             .copyright_holder = "Jane Q. Doe",
                             .sha256 = sha_w,
                             .pdq = pdq,
                             .pdq_quality = 95};
    store_reference_new l = {
        .kind = STORE_REF_LIKENESS, .sha256 = sha_l, .n_faces = 1, .descriptors = desc};
    if (store_tenant_create(f->st, "Agency", STORE_TENANT_AGENCY, f->tenant) ||
        store_profile_create(f->st, f->tenant, &pf, f->profile))
        return -1;
    w.profile_id = l.profile_id = f->profile;
    if (store_reference_create(f->st, f->tenant, &w, f->work, NULL) ||
        store_reference_create(f->st, f->tenant, &l, f->like, NULL))
        return -1;
    store_match_new m[3] = {
        {f->profile, f->work, VG_MATCH_PDQ, 14, 0.82, 1, -1, NULL, NULL, NULL},
        {f->profile, f->work, VG_MATCH_EXACT, 0, 1, -1, -1, NULL, NULL, NULL},
        {f->profile, f->like, VG_MATCH_FACE, 0.412, 0.7, -1, 0, NULL, NULL, NULL}};
    store_scan_new s = {.sha256 = sha_s,
                        .source_url = "https://crawler.example/page",
                        .pdq = pdq,
                        .pdq_quality = 90,
                        .n_matches = 3,
                        .matches = m};
    char ids[3][STORE_ID_MAX];
    if (store_scan_insert(f->st, f->tenant, &s, f->scan, ids))
        return -1;
    strcpy(f->m_pdq, ids[0]);
    strcpy(f->m_exact, ids[1]);
    strcpy(f->m_face, ids[2]);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    store_close(f->st);
    vg_arena_free(f->a);
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d))) {
        snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

static dmca_request request(void)
{
    dmca_request r = {
        .infringing_url = "https://bad.example/stolen.jpg",
        .recipient = {.name = "Designated Agent, Bad Example Inc.", .email = "dmca@bad.example"},
        .now_ms = 1764201600000}; /* 2025-11-27 00:00:00 UTC */
    return r;
}

static void contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("missing \"%s\" in:\n%s", needle, hay);
}

static void lacks(const char *hay, const char *needle)
{
    if (strstr(hay, needle))
        fail_msg("unexpected \"%s\" in:\n%s", needle, hay);
}

/* The text with every run of whitespace collapsed to one space, so phrases can be found across
 * the plain-text word wrap. Returned from the arena. */
static const char *flat(vg_arena *a, const char *s)
{
    char *out = vg_arena_alloc(a, strlen(s) + 1), *o = out;
    int space = 0;
    for (; *s; s++) {
        if (*s == ' ' || *s == '\n') {
            space = 1;
            continue;
        }
        if (space && o != out)
            *o++ = ' ';
        space = 0;
        *o++ = *s;
    }
    *o = 0;
    return out;
}

/* ---- drafting ------------------------------------------------------------------------------- */

static void test_work_notice_has_every_element(void **state)
{
    fx *f = *state;
    store_notice_source src;
    assert_int_equal(store_notice_source_get(f->st, f->tenant, f->m_pdq, f->a, &src), 0);
    dmca_request req = request();
    store_notice_new n;
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), 0);
    assert_string_equal(n.match_id, f->m_pdq);
    assert_string_equal(n.claimant.name, "Jane Q. Doe");
    assert_string_equal(n.claimant.email, "jane@example.com");
    assert_string_equal(n.signature, "/s/ Jane Q. Doe");
    const char *t = flat(f->a, n.text);
    contains(t, "17 U.S.C. 512(c)(3)");
    /* (i) signature */
    contains(t, "5. Signature (512(c)(3)(A)(i))");
    contains(t, "/s/ Jane Q. Doe");
    contains(t, "27 November 2025");
    /* (ii) the work */
    contains(t, "(512(c)(3)(A)(ii))");
    contains(t, "Sunset over the bay");
    contains(t, "https://jane.example/sunset.jpg");
    contains(t, "Copyright owner:");
    contains(t, "1111111111111111111111111111111111111111111111111111111111111111");
    /* (iii) the material and how to find it */
    contains(t, "(512(c)(3)(A)(iii))");
    contains(t, "https://bad.example/stolen.jpg");
    contains(t, "https://crawler.example/page");
    contains(t, "abababababababababababababababababababababababababababababababab");
    contains(t, "Hamming distance 14 of 256 bits");
    contains(t, "rotated 90 degrees");
    contains(t, f->m_pdq);
    char when[32];
    vg_format_time(src.scan.created_ms, when, sizeof when);
    contains(t, when);
    /* (iv) contact */
    contains(t, "(512(c)(3)(A)(iv))");
    contains(t, "jane@example.com");
    contains(n.text, "1 Main Street\n");
    contains(t, "Springfield, IL 62701");
    contains(t, "+1 555 0100");
    /* (v) good faith, (vi) accuracy under penalty of perjury */
    contains(t, "good faith belief that use of the copyrighted material");
    contains(t, "not authorized by the copyright owner, its agent, or the law");
    contains(t, "under penalty of perjury, I am authorized to act on behalf of the owner of an "
                "exclusive right");
    lacks(t, "NOT a notification");

    /* The HTML carries the same content as a document, links only for http(s). */
    const char *h = n.html;
    contains(h, "<!DOCTYPE html>");
    contains(h, "<meta charset=\"utf-8\">");
    contains(h, "Sunset over the bay");
    contains(h, "<a href=\"https://bad.example/stolen.jpg\"");
    contains(h, "<a href=\"https://jane.example/sunset.jpg\"");
    contains(h, "under penalty of perjury");
    contains(h, "1 Main Street<br>Springfield, IL 62701");
    contains(h, "</html>");

    /* It stores and reads back unchanged (frozen). */
    char id[STORE_ID_MAX];
    assert_int_equal(store_notice_create(f->st, f->tenant, &n, id), 0);
    store_notice got;
    assert_int_equal(store_notice_get(f->st, f->tenant, id, f->a, &got), 0);
    assert_string_equal(got.text, n.text);
    assert_string_equal(got.html, n.html);
    assert_string_equal(got.signature, "/s/ Jane Q. Doe");
}

/* A PDQ match found beyond the whole image says how, in plain words; the first notice (a match
 * without a mechanism, as recorded before there were any) says none of it. */
static void test_mechanism_in_words(void **state)
{
    fx *f = *state;
    static const struct {
        const char *mechanism, *region, *words;
    } cases[] = {
        {"trimmed", NULL, "framed copy: it matches the protected work once the borders"},
        {"flip", NULL, "mirrored copy: its left-right mirror image matches the protected work"},
        {"region", "centre80", "cropped copy: it matches the central 80% of the protected work"},
        {"region", "centre90", "cropped copy: it matches the central 90% of the protected work"},
        {"region", "top", "altered copy: its top half matches the top half of the protected work"},
        {"region", "bottom",
         "altered copy: its bottom half matches the bottom half of the "
         "protected work"},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    store_match_new m[N];
    for (size_t i = 0; i < N; i++)
        m[i] = (store_match_new){f->profile,         f->work,         VG_MATCH_PDQ, 20, 0.7, 0, -1,
                                 cases[i].mechanism, cases[i].region, NULL};
    uint8_t sha[32] = {7};
    store_scan_new s = {.sha256 = sha, .n_matches = N, .matches = m};
    char scan[STORE_ID_MAX], ids[N][STORE_ID_MAX];
    assert_int_equal(store_scan_insert(f->st, f->tenant, &s, scan, ids), 0);
    dmca_request req = request();
    for (size_t i = 0; i < N; i++) {
        store_notice_source src;
        assert_int_equal(store_notice_source_get(f->st, f->tenant, ids[i], f->a, &src), 0);
        assert_string_equal(src.match.mechanism, cases[i].mechanism);
        store_notice_new n;
        assert_int_equal(dmca_draft(&src, &req, f->a, &n), 0);
        contains(flat(f->a, n.text), cases[i].words);
        contains(n.html, cases[i].words);
    }
    store_notice_source src;
    assert_int_equal(store_notice_source_get(f->st, f->tenant, f->m_pdq, f->a, &src), 0);
    assert_string_equal(src.match.mechanism, "");
    store_notice_new n;
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), 0);
    lacks(flat(f->a, n.text), "The infringing image is a");
}

/* A video match (its details stored with it) is described with both percentages and each
 * matched time range, in minutes and seconds; damaged details fall back to the PDQ wording. */
static void test_video_match_in_words(void **state)
{
    fx *f = *state;
    store_match_new m[2] = {
        {f->profile, f->work, VG_MATCH_PDQ, 10, 0.9, -1, -1, NULL, NULL,
         "{\"media\":\"video\",\"query_match_percent\":95.2,\"compared_match_percent\":90,"
         "\"segments\":[{\"query_start\":0,\"query_end\":20,\"reference_start\":2,"
         "\"reference_end\":22,\"frames\":21},{\"query_start\":65,\"query_end\":3700.4,"
         "\"reference_start\":30,\"reference_end\":40,\"frames\":3}]}"},
        {f->profile, f->work, VG_MATCH_PDQ, 10, 0.9, -1, -1, NULL, NULL, "{not json"},
    };
    uint8_t sha[32] = {8};
    store_scan_new s = {.sha256 = sha, .n_matches = 2, .matches = m};
    char scan[STORE_ID_MAX], ids[2][STORE_ID_MAX];
    assert_int_equal(store_scan_insert(f->st, f->tenant, &s, scan, ids), 0);
    dmca_request req = request();
    store_notice_source src;
    assert_int_equal(store_notice_source_get(f->st, f->tenant, ids[0], f->a, &src), 0);
    store_notice_new n;
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), 0);
    const char *t = flat(f->a, n.text);
    contains(t, "90% of the protected video's frames and 95% of the infringing video's frames");
    contains(t, "0:00 to 0:20 of the infringing video shows 0:02 to 0:22 of the protected video");
    contains(t, "1:05 to 1:01:40 of the infringing video shows 0:30 to 0:40");
    contains(n.html, "of the infringing video shows 0:02 to 0:22");
    assert_int_equal(store_notice_source_get(f->st, f->tenant, ids[1], f->a, &src), 0);
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), 0);
    t = flat(f->a, n.text);
    lacks(t, "vPDQ");
    contains(t, "perceptual hash (PDQ)");
}

static void test_exact_and_agent_signer(void **state)
{
    fx *f = *state;
    store_notice_source src;
    assert_int_equal(store_notice_source_get(f->st, f->tenant, f->m_exact, f->a, &src), 0);
    dmca_request req = request();
    req.signer_name = "Alex Agent, Agency LLC";
    store_notice_new n;
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), 0);
    contains(flat(f->a, n.text), "byte-for-byte identical");
    contains(n.text, "/s/ Alex Agent, Agency LLC");
    contains(n.text, "On behalf of:");
    assert_string_equal(n.signature, "/s/ Alex Agent, Agency LLC");
}

static void test_likeness_notice_is_not_a_copyright_claim(void **state)
{
    fx *f = *state;
    store_notice_source src;
    assert_int_equal(store_notice_source_get(f->st, f->tenant, f->m_face, f->a, &src), 0);
    dmca_request req = request();
    store_notice_new n;
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), 0);
    const char *t = flat(f->a, n.text);
    contains(t, "Takedown Request: Unauthorised Use of a Person's Likeness");
    contains(t, "NOT a notification of copyright infringement");
    contains(t, "no copyright claim");
    contains(t, "that person's right of publicity");
    contains(t, "Jane Q. Doe");
    contains(t, "face #1");
    contains(t, "0.412");
    contains(t, "https://bad.example/stolen.jpg");
    contains(t, "good faith belief that the use of the likeness of the person named in section 1");
    contains(t, "Name: Jane Q. Doe");
    contains(t, "under penalty of perjury");
    contains(t, "/s/ Jane Q. Doe");
    contains(t, "jane@example.com");
    lacks(t, "Copyright owner");
    lacks(t, "512(c)(3)(A)(ii)");
    lacks(t, "infringes the copyright");
    contains(n.html, "Person&#39;s Likeness");
}

static void test_deleted_reference_still_renders(void **state)
{
    fx *f = *state;
    assert_int_equal(store_profile_delete(f->st, f->tenant, f->profile, NULL, NULL, NULL), 0);
    store_notice_source src;
    assert_int_equal(store_notice_source_get(f->st, f->tenant, f->m_pdq, f->a, &src), 0);
    dmca_request req = request();
    store_notice_new n;
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), 0);
    contains(n.text, "Sunset over the bay");
    char id[STORE_ID_MAX];
    assert_int_equal(store_notice_create(f->st, f->tenant, &n, id), 0);
}

static void test_draft_errors(void **state)
{
    fx *f = *state;
    store_notice_source src;
    assert_int_equal(store_notice_source_get(f->st, f->tenant, f->m_pdq, f->a, &src), 0);
    store_notice_new n;
    dmca_request req = request();
    req.infringing_url = NULL;
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), VG_EINVAL);
    assert_non_null(strstr(vg_err_msg(), "infringing_url"));
    req.infringing_url = "javascript:alert(1)";
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), VG_EINVAL);
    req.infringing_url = "https://x.example/a\nb";
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), VG_EINVAL);
    req = request();
    req.recipient.name = "";
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), VG_EINVAL);
    assert_non_null(strstr(vg_err_msg(), "recipient.name"));
    req = request();
    store_notice_source nocontact = src;
    nocontact.profile.f.email = NULL;
    nocontact.profile.f.address = "";
    nocontact.profile.f.phone = NULL;
    assert_int_equal(dmca_draft(&nocontact, &req, f->a, &n), VG_EINVAL);
    assert_non_null(strstr(vg_err_msg(), "contact"));
    /* A notice past the size bound is refused, not truncated. */
    size_t big = STORE_NOTICE_MAX_BYTES;
    char *desc = malloc(big);
    memset(desc, 'd', big - 1);
    desc[big - 1] = 0;
    store_notice_source huge = src;
    huge.reference.description = desc;
    assert_int_equal(dmca_draft(&huge, &req, f->a, &n), VG_ETOOBIG);
    free(desc);
    assert_int_equal(dmca_draft(NULL, &req, f->a, &n), VG_EINVAL);
}

/* ---- hostile input -------------------------------------------------------------------------- */

static void test_html_escape(void **state)
{
    fx *f = *state;
    assert_string_equal(dmca_html_escape(f->a, "<a href=\"x\">Tom & 'Jerry'</a>"),
                        "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
    assert_string_equal(dmca_html_escape(f->a, ""), "");
    assert_string_equal(dmca_html_escape(f->a, NULL), "");
    assert_string_equal(dmca_html_escape(f->a, "a\x01"
                                               "b\x7f"
                                               "c"),
                        "a b c");
    /* U+202E RIGHT-TO-LEFT OVERRIDE is neutralised. */
    assert_string_equal(dmca_html_escape(f->a, "ab\xe2\x80\xae"
                                               "cd"),
                        "ab\xef\xbf\xbd"
                        "cd");
    assert_string_equal(dmca_html_escape(f->a, "caf\xc3\xa9"), "caf\xc3\xa9"); /* UTF-8 kept */
}

static void test_hostile_fields(void **state)
{
    fx *f = *state;
    store_notice_source src;
    assert_int_equal(store_notice_source_get(f->st, f->tenant, f->m_pdq, f->a, &src), 0);
    const char *xss = "<script>alert(1)</script>";
    src.profile.f.name = xss;
    src.profile.f.legal_name = "\"><img src=x onerror=alert(1)>";
    src.profile.f.address = "1 Main St\n\nI hereby withdraw this notice.\r\n<b>bold</b>";
    src.profile.f.email = "a@b.c\x1b[2J\x07";
    src.profile.f.phone = "+1\xe2\x80\xae"
                          "0010 555";
    src.reference.title = "</dd></dl><iframe src=//evil>";
    src.reference.description = "line1\nSignature: /s/ Someone Else";
    src.reference.original_url = "javascript:alert(document.cookie)";
    src.reference.copyright_holder = "' onmouseover='alert(1)";
    src.scan.source_url = "https://x.example/\"><svg onload=alert(1)>";
    dmca_request req = request();
    req.infringing_url = "https://bad.example/a?b=<c>&d=\"e\"'";
    req.recipient.name = "<marquee>Agent</marquee>";
    req.recipient.address = "x\ny";
    req.signer_name = "Evil\nSigner <b>";
    store_notice_new n;
    assert_int_equal(dmca_draft(&src, &req, f->a, &n), 0);

    const char *h = n.html;
    lacks(h, "<script");
    lacks(h, "<img");
    lacks(h, "<iframe");
    lacks(h, "<svg");
    lacks(h, "<marquee");
    lacks(h, "<b>");
    lacks(h, "javascript:alert(document.cookie)\"");
    lacks(h, "href=\"javascript");
    lacks(h, "' onmouseover='");
    lacks(h, "\x1b");
    lacks(h, "\x07");
    lacks(h, "\xe2\x80\xae");
    contains(h, "&lt;/dd&gt;&lt;/dl&gt;&lt;iframe src=//evil&gt;");
    contains(h, "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;");
    contains(h, "href=\"https://bad.example/a?b=&lt;c&gt;&amp;d=&quot;e&quot;&#39;\"");
    contains(h, "javascript:alert(document.cookie)"); /* shown as text, not as a link */
    /* Every tag in the HTML is one of ours. */
    static const char *const ours[] = {
        "<!DOCTYPE", "<html", "</html", "<head", "</head", "<meta", "<title", "</title", "<body",
        "</body",    "<h1",   "</h1",   "<h2",   "</h2",   "<p>",   "</p>",   "<dl>",    "</dl>",
        "<dt>",      "</dt>", "<dd>",   "</dd>", "<br>",   "<a ",   "</a>"};
    for (const char *p = strchr(h, '<'); p; p = strchr(p + 1, '<')) {
        int known = 0;
        for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
            known |= strncmp(p, ours[i], strlen(ours[i])) == 0;
        if (!known)
            fail_msg("foreign tag at: %.40s", p);
    }

    /* Plain text: no control characters, and no field starts a line of its own. */
    const char *t = n.text;
    for (const char *p = t; *p; p++)
        assert_true((unsigned char)*p >= 0x20 || *p == '\n');
    lacks(t, "\nI hereby withdraw");
    lacks(t, "\nSignature: /s/ Someone Else");
    lacks(t, "\nSigner");
    contains(flat(f->a, t), "I hereby withdraw this notice."); /* kept, indented in its field */
    lacks(t, "\xe2\x80\xae");
    assert_string_equal(n.signature, "/s/ Evil Signer <b>");
}

/* ---- the workflow applied through the store ------------------------------------------------- */

/* Walks a fresh notice to `at` along the legal path. */
static void walk_to(fx *f, const char *id, store_notice_status at)
{
    static const store_notice_status path[] = {S(DRAFT), S(SENT), S(ACKNOWLEDGED)};
    store_notice_status cur = S(DRAFT);
    for (size_t i = 1; i < 3 && cur != at; i++) {
        if (at == S(DRAFT))
            break;
        assert_int_equal(store_notice_set_status(f->st, f->tenant, id, path[i],
                                                 dmca_allowed_from(path[i]), NULL, NULL),
                         0);
        cur = path[i];
    }
    if (cur != at) { /* a final state */
        assert_int_equal(
            store_notice_set_status(f->st, f->tenant, id, at, dmca_allowed_from(at), "end", NULL),
            0);
    }
}

static void test_every_transition_through_the_store(void **state)
{
    fx *f = *state;
    store_notice_source src;
    vg_arena *keep = vg_arena_new(0); /* the draft outlives the per-iteration resets of f->a */
    assert_int_equal(store_notice_source_get(f->st, f->tenant, f->m_pdq, keep, &src), 0);
    dmca_request req = request();
    store_notice_new n;
    assert_int_equal(dmca_draft(&src, &req, keep, &n), 0);
    for (int from = 0; from < STORE_NOTICE_STATUS_COUNT; from++) {
        for (int to = 0; to < STORE_NOTICE_STATUS_COUNT; to++) {
            char id[STORE_ID_MAX];
            assert_int_equal(store_notice_create(f->st, f->tenant, &n, id), 0);
            walk_to(f, id, (store_notice_status)from);
            store_notice before;
            assert_int_equal(store_notice_get(f->st, f->tenant, id, f->a, &before), 0);
            assert_int_equal(before.status, from);
            store_notice_status left = S(COUNTERED);
            int rc =
                store_notice_set_status(f->st, f->tenant, id, (store_notice_status)to,
                                        dmca_allowed_from((store_notice_status)to), "try", &left);
            store_notice after;
            assert_int_equal(store_notice_get(f->st, f->tenant, id, f->a, &after), 0);
            if (legal((store_notice_status)from, (store_notice_status)to)) {
                assert_int_equal(rc, 0);
                assert_int_equal(left, from);
                assert_int_equal(after.status, to);
                assert_int_equal(after.n_events, before.n_events + 1);
                assert_int_equal(after.events[after.n_events - 1].from, from);
                assert_int_equal(after.events[after.n_events - 1].to, to);
            } else {
                assert_int_equal(rc, VG_ECONFLICT);
                assert_int_equal(after.status, from);
                assert_int_equal(after.n_events, before.n_events);
            }
            vg_arena_reset(f->a);
        }
    }
    vg_arena_free(keep);
}

int main(void)
{
    vg_log_set_level(VG_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transition_table),
        cmocka_unit_test_setup_teardown(test_work_notice_has_every_element, setup, teardown),
        cmocka_unit_test_setup_teardown(test_video_match_in_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_and_agent_signer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mechanism_in_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_likeness_notice_is_not_a_copyright_claim, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deleted_reference_still_renders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draft_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_html_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_transition_through_the_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
