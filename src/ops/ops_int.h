/* ops internals shared by ops.c and ops_sla.c. */
#ifndef VG_OPS_INT_H
#define VG_OPS_INT_H

#include <jansson.h>
#include <stdint.h>

/* RFC 3339 string for a wall-clock ms, JSON null for <= 0. New reference. */
json_t *ops__time(int64_t ms);
/* A JSON number, or null for NAN / infinities. New reference. */
json_t *ops__num(double v);

#endif /* VG_OPS_INT_H */
