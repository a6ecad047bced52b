/*
 * dmca: drafting takedown notices from stored evidence, and the notice status workflow.
 *
 * Pure functions over store records (store.h types only; no SQLite, no I/O): the HTTP handler
 * resolves a match with store_notice_source_get, calls dmca_draft, and records the result with
 * store_notice_create. The rendered text and HTML are frozen in the store at draft time.
 *
 * A notice for a `work` reference is a notification under 17 U.S.C. 512(c)(3) and carries each
 * element (A)(i)-(vi) requires: signature, the copyrighted work, the infringing material and
 * where it is (URL, SHA-256, match kind and distance, scan time), the complaining party's
 * contact information, the good-faith statement and the accuracy/authority statement under
 * penalty of perjury. A `likeness` reference is NOT a copyright claim (a person's likeness is
 * not a work of authorship), so its notice says so plainly and is worded as a takedown request
 * under the platform's policies on impersonation / non-consensual use of a person's image and
 * the person's right of publicity, with the same identification, contact, good-faith, accuracy
 * and signature elements.
 *
 * Untrusted text (every field comes from an API caller or the crawled web) is made inert:
 * in HTML every field is escaped (& < > " ') and only http(s) URLs become links; in plain text
 * control characters are replaced, and line breaks inside a field are indented so a field
 * cannot forge a line that looks like part of the notice's own wording.
 *
 * Thread-safety: every function is reentrant.
 */
#ifndef VG_DMCA_H
#define VG_DMCA_H

#include <stdint.h>

#include "core/core.h"
#include "store/store.h"

/* ---- status workflow ------------------------------------------------------------------------ */

/* 1 when a notice may move from `from` to `to`:
 *   draft -> sent -> acknowledged -> removed | rejected | countered
 * Nothing else (no skipping, no going back, nothing out of the three final states, no
 * self-transition). Out-of-range values are never allowed. */
int dmca_transition_allowed(store_notice_status from, store_notice_status to);
/* The bit set (1u << status) of statuses from which `to` may be reached; 0 when none (draft
 * cannot be re-entered). Pass it to store_notice_set_status, which applies the check atomically
 * and answers VG_ECONFLICT for an illegal transition. */
unsigned dmca_allowed_from(store_notice_status to);
/* 1 for removed, rejected and countered. */
int dmca_status_is_final(store_notice_status s);

/* ---- drafting ------------------------------------------------------------------------------- */

/* What the requester adds to the stored evidence. All strings borrowed. */
typedef struct dmca_request {
    const char *infringing_url; /* required: where the material is (http/https URL) */
    store_party recipient;      /* required name: the platform's designated agent, or the host;
                                 * email, address, phone optional */
    const char *signer_name;    /* who signs; NULL = the claimant (profile legal name or name) */
    int64_t now_ms;             /* the notice's date (wall-clock ms); 0 = vg_wall_ms() */
} dmca_request;

/* Drafts a notice for src (from store_notice_source_get) and fills *out for store_notice_create:
 * match_id, infringing_url, recipient, claimant (copied from the profile: legal name or name,
 * email, address, phone), signature ("/s/ <signer>"), text and html. Every string *out points to
 * is allocated from `a` (borrowed) or borrowed from src/req; keep all three alive until the
 * notice is stored.
 * Errors: VG_EINVAL with the field in the detail when infringing_url is missing or not an
 * http(s) URL, the recipient has no name, or the profile has no contact information (an email,
 * address or phone is required by 512(c)(3)(A)(iv)); VG_ETOOBIG if a rendering would exceed
 * STORE_NOTICE_MAX_BYTES; VG_ENOMEM. */
int dmca_draft(const store_notice_source *src, const dmca_request *req, vg_arena *a,
               store_notice_new *out);

/* ---- helpers (exposed for tests and for the HTTP layer's own HTML) -------------------------- */

/* s with & < > " ' replaced by entities; allocated from a (NULL s gives ""). NULL on OOM. */
char *dmca_html_escape(vg_arena *a, const char *s);

#endif /* VG_DMCA_H */
