/*
 * Fault injection (tests only): inert unless WASM_COW_FAULT_INJECTION=1 was
 * set in the environment when the addon loaded (wasm_cow.c then sets
 * fault_enabled, for the whole process: see wasm_cow.h). setFault(step,
 * skip) arms one step, which then fails once after `skip` successful
 * passes; any thread may be the one that fails.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "wasm_cow.h"

/* ------------------------------------------------------------------ */
/* Fault injection (inert unless enabled by the environment at load). */
/* ------------------------------------------------------------------ */

/* setFault's names, in the order of enum fault_step (wasm_cow.h). */
static const char *const fault_names[] = {
    "none", "memfd_create", "ftruncate", "write", "seal", "mmap", "madvise", "pagemap_scan", "restore", "publish",
};
_Static_assert(sizeof fault_names / sizeof fault_names[0] == FAULT_PUBLISH + 1, "one name per fault step");

/* See wasm_cow.h: 0, or 1 for good once any load saw WASM_COW_FAULT_INJECTION=1. */
_Atomic int fault_enabled = 0;
/* The armed step, or FAULT_NONE: set by setFault (JS thread), cleared by the one caller that fails. */
static _Atomic int fault_armed = FAULT_NONE;
/* Passes of the armed step left before it fails (counts down past 0 while armed). */
static _Atomic long fault_skip = 0;

/* Returns 1 when `step` must fail now (and disarms the fault). */
int fault_fires(enum fault_step step) {
  if (!atomic_load(&fault_enabled) || atomic_load(&fault_armed) != (int)step) return 0;
  if (atomic_fetch_sub(&fault_skip, 1) > 0) return 0;
  int expected = (int)step; /* the reset thread may race us: only one caller fails */
  return atomic_compare_exchange_strong(&fault_armed, &expected, FAULT_NONE);
}

/* setFault(step: string | null, skip = 0). Throws unless enabled at load. */
napi_value set_fault(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_valuetype type;
  char name[32];
  size_t len = 0;
  uint64_t skip = 0;
  if (!atomic_load(&fault_enabled)) {
    return throw_arg(env, 0, "fault injection is off; set WASM_COW_FAULT_INJECTION=1 before loading");
  }
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok) return throw_arg(env, 0, "missing step");
  if (type == napi_null || type == napi_undefined) {
    fault_armed = FAULT_NONE;
    return NULL;
  }
  if (type != napi_string ||
      napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    return throw_arg(env, 0, "step must be a string");
  }
  if (argc >= 2 && !get_size(env, argv[1], "skip", &skip)) return NULL;
  for (int i = 1; i < (int)(sizeof fault_names / sizeof fault_names[0]); i++) {
    if (strcmp(name, fault_names[i]) == 0) {
      fault_skip = (long)skip;
      fault_armed = i;
      return NULL;
    }
  }
  return throw_arg(env, 1, "unknown fault step");
}
