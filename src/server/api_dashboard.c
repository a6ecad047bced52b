/* GET /dashboard: the operations page (dashboard.html, compiled in).
 *
 * The page itself is public and static: it holds no data and no secret. It asks the operator for
 * the admin key (or takes it from the URL fragment, which browsers never send), keeps it in the
 * tab's sessionStorage and sends it as a Bearer header to the admin JSON routes it polls, so the
 * data stays behind the same auth as for curl. Because the key lives in the page's JavaScript, the
 * page is served under a strict policy: scripts and styles only from its own inline blocks, pinned
 * by the SHA-256 embed.cmake computed from the served bytes (no 'unsafe-inline', no other origin),
 * fetches only to this origin, never framed (clickjacking on the ack buttons), never cached, and
 * no Referer leaving it. */
#include "server/server_int.h"

#include <stdio.h>

/* "'sha256-" + 44 base64 characters + "'" twice, plus the fixed directives. */
#define SERVER_DASHBOARD_CSP_BYTES 512

void server__api_dashboard(http_req *req, void *ud)
{
    (void)ud;
    char csp[SERVER_DASHBOARD_CSP_BYTES];
    int n = snprintf(csp, sizeof csp,
                     "default-src 'none'; script-src 'sha256-%s'; style-src 'sha256-%s'; "
                     "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                     "form-action 'none'; frame-ancestors 'none'",
                     server_dashboard_html_script_sha256(), server_dashboard_html_style_sha256());
    if (n < 0 || (size_t)n >= sizeof csp) {
        http_reply_error(req, 500, NULL, "dashboard policy does not fit");
        return;
    }
    http_reply_header(req, "Content-Security-Policy", csp);
    http_reply_header(req, "X-Content-Type-Options", "nosniff");
    http_reply_header(req, "X-Frame-Options", "DENY");
    http_reply_header(req, "Referrer-Policy", "no-referrer");
    http_reply_header(req, "Cache-Control", "no-store");
    http_reply_header(req, "Cross-Origin-Opener-Policy", "same-origin");
    size_t len;
    const char *page = server_dashboard_html(&len);
    http_reply_static(req, 200, "text/html; charset=utf-8", page, len);
}
