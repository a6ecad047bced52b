/*
 * core vocabulary: the few value types that several modules exchange (an id, a face descriptor,
 * an analysis level, a match kind, a PDQ hash in bytes). They live here once so that analyze,
 * face, index, store, catalog and the server pass them along without redefining look-alikes or
 * casting between them. Plain values only; nothing here allocates or fails.
 */
#ifndef VG_TYPES_H
#define VG_TYPES_H

#include <stdint.h>

/* Bytes for an id string including its NUL (tenant, key, profile, reference, scan, match ids).
 * Ids the store generates are shorter (STORE_ID_MAX) and fit. */
#define VG_ID_MAX 48
/* Floats in a face descriptor (the recogniser's embedding). */
#define VG_DESCRIPTOR_DIM 128
/* Bytes in a PDQ hash (256 bits), in the pdq module's byte order (pdq_hash_to_bytes). */
#define VG_PDQ_BYTES 32

/* A PDQ hash as bytes: the form stored, indexed and compared across modules. An array type, so
 * a struct field `vg_pdq_hash pdq;` is 32 bytes in place and memcpy/sizeof work on it as on
 * `uint8_t pdq[32]`; as a function parameter it decays to a pointer like any array. */
typedef uint8_t vg_pdq_hash[VG_PDQ_BYTES];

/* Speed/accuracy trade-off of one analysis, chosen per request (../docs/API.md). The order is
 * the order of the `default_level` setting's choices. */
typedef enum {
    VG_LEVEL_SPEED = 0,
    VG_LEVEL_BALANCED, /* default */
    VG_LEVEL_ACCURACY,
    VG_LEVEL_MEMORY,
    VG_LEVEL_COUNT
} vg_level;

/* "speed" | "balanced" | "accuracy" | "memory"; "unknown" for anything else. Static text. */
const char *vg_level_name(vg_level l);
/* The level named s; VG_EINVAL (with a message listing the choices) for anything else or NULL. */
int vg_level_parse(const char *s, vg_level *out);

/* How an image matched a reference. The store keeps the name, the API masks kinds by value. */
typedef enum {
    VG_MATCH_EXACT = 0,
    VG_MATCH_PDQ = 1,
    VG_MATCH_FACE = 2,
    VG_MATCH_COUNT
} vg_match_kind;

/* "exact" | "pdq" | "face"; "unknown" for anything else. Static text. */
const char *vg_match_kind_name(vg_match_kind k);
/* The kind named s; VG_EINVAL (with a message) for anything else or NULL. */
int vg_match_kind_parse(const char *s, vg_match_kind *out);

#endif
