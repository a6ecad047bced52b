/*
 * The 14 ThreatExchange sample videos of tests/data/vpdq (header-only, like vgt_random.h): their
 * names in the order the vPDQ tests index them, and the families tests/data/vpdq/README.md
 * says match (every edit of a family matches its original; no family matches another).
 */
#ifndef VGT_VPDQ_H
#define VGT_VPDQ_H

#include <string.h>

#define VGT_VPDQ_N 14
#define VGT_VPDQ_CHAIR_ORIG 6   /* chair-orig-22-sd-bar */
#define VGT_VPDQ_PATTERN_ORIG 8 /* pattern-hd-no-bar */

static const char *const vgt_vpdq_names[VGT_VPDQ_N] = {"chair-19-sd-bar",
                                                       "chair-20-sd-bar",
                                                       "chair-22-sd-grey-bar",
                                                       "chair-22-sd-sepia-bar",
                                                       "chair-22-with-large-logo-bar",
                                                       "chair-22-with-small-logo-bar",
                                                       "chair-orig-22-sd-bar",
                                                       "doorknob-hd-no-bar",
                                                       "pattern-hd-no-bar",
                                                       "pattern-longer-no-bar",
                                                       "pattern-sd-grey-bar",
                                                       "pattern-sd-with-large-logo-bar",
                                                       "pattern-sd-with-small-logo-bar",
                                                       "test-padded-dimensions"};

/* 0 chair, 1 pattern, 2 doorknob, 3 padded: the README's families. */
static inline int vgt_vpdq_family(int i)
{
    if (strncmp(vgt_vpdq_names[i], "chair", 5) == 0)
        return 0;
    if (strncmp(vgt_vpdq_names[i], "pattern", 7) == 0)
        return 1;
    return strncmp(vgt_vpdq_names[i], "doorknob", 8) == 0 ? 2 : 3;
}

#endif /* VGT_VPDQ_H */
