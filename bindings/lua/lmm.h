/* mmaint Lua binding — shared declarations of the module's C files.
 *
 * The binding only translates: Lua values <-> C arrays, handle lifetimes
 * (userdata with __gc/__close), and mm_status -> Lua errors. All work is done
 * by libmmaint.
 *
 * Handles. Every library object lives in a `lmm_handle` userdata whose
 * metatable is the object's class ("mmaint.model", ...). close() or __gc or
 * __close frees the C object once; a closed handle is refused by every
 * method with an argument error. Objects that borrow another (an optimizer
 * its model, a tensor view a dataset's memory) keep the lender's userdata in
 * a user value (so the GC keeps it alive) and count themselves in the
 * lender's `borrowers`: closing a lender that still has borrowers only marks
 * it closed; the C object is freed when the last borrower goes.
 */
#ifndef LMM_H
#define LMM_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/mm.h"

/* Class names (metatable registry keys). */
#define LMM_MODEL "mmaint.model"
#define LMM_OPTIMIZER "mmaint.optimizer"
#define LMM_DATASET "mmaint.dataset"
#define LMM_PRUNER "mmaint.pruner"
#define LMM_QUANTIZER "mmaint.quantizer"
#define LMM_TENSOR "mmaint.tensor"
#define LMM_DRIFT "mmaint.drift"
#define LMM_SERVER "mmaint.server"
#define LMM_MAINTAINER "mmaint.maintainer"
#define LMM_RESERVOIR "mmaint.reservoir"
#define LMM_ERROR "mmaint.error"

typedef void (*lmm_free_fn)(void *);

typedef struct lmm_handle {
    void *p;               /* the library object; NULL once freed */
    lmm_free_fn free_fn;   /* frees p */
    int closed;            /* close() was called (or the GC collected it) */
    int borrowers;         /* live handles/tensors that borrow p */
    struct lmm_handle *lender; /* the handle this one borrows from, or NULL */
} lmm_handle;

/* ---- handles (lmm_core.c) ---------------------------------------------- */

/* Push a new handle of class `cls` owning p (freed with free_fn). When
 * lender_idx != 0 the value at that stack index (a handle) is stored as user
 * value 1 and counted as lent to. `nuv` user values in all (>= 1). */
lmm_handle *lmm_push_handle(lua_State *L, const char *cls, void *p, lmm_free_fn free_fn,
                            int lender_idx, int nuv);
/* The handle at `arg` of class `cls`; argument error if it is something else
 * or closed. */
lmm_handle *lmm_check_handle(lua_State *L, int arg, const char *cls);
/* The library object of an open handle at `arg`. */
void *lmm_check(lua_State *L, int arg, const char *cls);
/* Same, or NULL when the argument is nil/none. */
void *lmm_opt(lua_State *L, int arg, const char *cls);
/* Finish a constructor whose new handle h is on top of the stack and whose
 * C call returned st and obj: store obj, apply the settings table at
 * settings_idx with `set` (when settings_idx != 0 and the argument is not
 * nil), and return 1 (the handle); on any failure drop the handle (freeing
 * obj) and return the error results. */
typedef mm_status (*lmm_setter)(lua_State *L, void *obj, const char *name, int validx);
int lmm_finish_new_with(lua_State *L, lmm_handle *h, mm_status st, void *obj, int settings_idx,
                        lmm_setter set);
#define lmm_finish_new(L, h, st, obj) lmm_finish_new_with((L), (h), (st), (obj), 0, NULL)
/* Push a new, still empty model handle (the model goes in ->p through
 * lmm_finish_new). (lmm_model.c) */
lmm_handle *lmm_push_model(lua_State *L);
/* Mark closed and free when nothing borrows it (idempotent). */
void lmm_handle_close(lmm_handle *h);
/* Count a borrower of h / forget one (frees a closed lender at zero). */
void lmm_lend(lmm_handle *h);
void lmm_unlend(lmm_handle *h);
/* Register a class: metatable with __index = methods, __gc, __close,
 * __tostring (name + state), close(), and the given methods. */
void lmm_new_class(lua_State *L, const char *cls, const luaL_Reg *methods);

/* ---- errors (lmm_core.c) ----------------------------------------------- */

/* If st != MM_OK: return the Lua error convention for the failed call —
 * push nil, message, code name and return 3 — or, when the module is set to
 * raise (mmaint.set_raise(true)), raise an mmaint.error object. Returns 0
 * on MM_OK (nothing pushed). Use as: `if (st) return lmm_fail(L, st);` */
int lmm_fail(lua_State *L, mm_status st);
/* Convenience: return lmm_fail when st != OK, else push the value at idx
 * (or `true` when idx == 0) and return 1. */
int lmm_result(lua_State *L, mm_status st, int idx);
/* Fail with a message made here (for problems the binding detects itself,
 * such as an array whose length is not a multiple of the model's inputs). */
int lmm_fail_msg(lua_State *L, mm_status st, const char *fmt, ...);

/* Set field k of the table on top of the stack: a number (NaN, "no value
 * yet", leaves the field nil) or an integer. */
void lmm_set_num(lua_State *L, const char *k, double v);
void lmm_set_int(lua_State *L, const char *k, uint64_t v);

/* Lua integer argument >= lo as size_t (argument error otherwise). */
size_t lmm_checksize(lua_State *L, int arg, lua_Integer lo);
/* 1-based index argument -> 0-based size_t. */
size_t lmm_checkindex(lua_State *L, int arg);
/* A 1-based index argument of one of `count` items: *index receives it
 * 0-based. Below 1 is an argument error (raised); above count pushes the
 * error results with MM_E_OUT_OF_RANGE and a message in the user's 1-based
 * terms ("layer 3 out of range (model has 2 layers: 1..2)": `what` =
 * "layer", `holder` = "model has") and returns their number; else 0. Use
 * this, not the library's message, whose indices are 0-based. */
int lmm_check_item(lua_State *L, int arg, size_t count, const char *what, const char *holder,
                   size_t *index);
/* lmm_check_item for the layers of a model. (lmm_model.c) */
int lmm_check_layer(lua_State *L, int arg, const mm_model *m, size_t *index);

/* ---- arrays (lmm_tensor.c) ------------------------------------------------
 * Arguments that are arrays accept a tensor of the right dtype, or a Lua
 * table: flat ({1, 2, 3}) or a table of rows ({{1, 2}, {3, 4}}). */
typedef enum lmm_dtype { LMM_F32 = 0, LMM_I32 = 1 } lmm_dtype;

typedef struct lmm_array {
    void *data;   /* float* or int32_t* */
    size_t len;   /* elements */
    size_t rows;  /* rows of a 2-d argument (table of rows or 2-d tensor), else 0 */
    int is_table; /* 1 if converted from a Lua table (results mirror it) */
    int32_t one;  /* storage of a single integer label */
} lmm_array;

/* Convert the argument at `arg` (the converted copy, if any, is anchored on
 * the Lua stack as a userdata so errors cannot leak it: fix the argument
 * count with lua_settop first, so later optional arguments are not mistaken
 * for the anchor). `what` names the argument in messages. */
void lmm_check_array(lua_State *L, int arg, lmm_dtype dt, lmm_array *a, const char *what);
/* Labels: an integer (one label), a table of integers, or an int32 tensor. */
void lmm_check_labels(lua_State *L, int arg, lmm_array *a);

typedef struct lmm_tensor {
    void *data;
    size_t len;        /* elements */
    size_t dims[2];    /* shape: dims[0] x dims[1] (2-d) or dims[0] (1-d) */
    int ndim;          /* 1 or 2 */
    lmm_dtype dtype;
    lmm_handle *lender;/* a handle whose memory this views (dataset), or NULL */
    /* owned storage follows when the tensor owns its data */
} lmm_tensor;

/* New owning tensor (zeroed) of shape rows x cols (ndim 2) or rows (ndim 1). */
lmm_tensor *lmm_new_tensor(lua_State *L, lmm_dtype dt, int ndim, size_t rows, size_t cols);
/* New tensor viewing `data`, owned by the handle at stack index owner_idx
 * (kept alive through a user value and counted as a borrower). */
lmm_tensor *lmm_view_tensor(lua_State *L, int owner_idx, lmm_dtype dt, void *data, int ndim,
                            size_t rows, size_t cols);
lmm_tensor *lmm_test_tensor(lua_State *L, int arg);
/* Push a result array of len elements (rows of width `cols` when the input
 * was a table of rows) in the same kind as the input `like`: a Lua table
 * when `like` came from a table, else a tensor. */
void lmm_push_result(lua_State *L, const lmm_array *like, lmm_dtype dt, const void *data,
                     size_t len, size_t cols);

/* Inputs of evaluate/backward/step/calibrate at arg..arg+2: (x [, labels
 * [, targets]]) or (dataset). Returns 0 with *b filled (labels/targets NULL
 * when absent), or the number of error results pushed (shape problems the
 * binding detects). Converted copies are anchored on the stack. (lmm_model.c) */
typedef struct lmm_batch {
    const float *x;
    const int32_t *labels;
    const float *targets;
    size_t n;
    lmm_array la; /* storage of the labels argument */
} lmm_batch;
int lmm_check_batch(lua_State *L, int arg, const mm_model *m, lmm_batch *b);

/* ---- the classes (one file each) --------------------------------------- */
void lmm_open_tensor(lua_State *L);    /* adds mmaint.tensor */
void lmm_open_model(lua_State *L);     /* mmaint.model, mmaint.load, ... */
void lmm_open_dataset(lua_State *L);
void lmm_open_optimizer(lua_State *L);
void lmm_open_pruner(lua_State *L);
void lmm_open_quantizer(lua_State *L);
void lmm_open_maintain(lua_State *L); /* drift detectors, model server, maintainer, reservoir */
void lmm_open_migrate(lua_State *L);  /* after lmm_open_model: adds model methods */

/* Shared by several classes. */
/* Value of an enum-keyed setting: a number, or a boolean (1/0). */
double lmm_check_setting_value(lua_State *L, int arg);
/* (lmm_setter: the setter of one named setting whose value is at stack
 * index validx.) */
/* Apply a table {name = value, ...} of settings (string keys; anything else
 * is an argument error); stops at the first failure and returns its status. */
mm_status lmm_apply_settings(lua_State *L, int tbl, void *obj, lmm_setter set);
/* obj:set(name, value) or obj:set{name = value, ...}: the shared method body
 * (object at 1); returns the Lua results. */
int lmm_set_method(lua_State *L, void *obj, lmm_setter set);


/* The settings functions of a class whose settings are an enum `param_t`
 * with C functions from_name(name, &param), set(obj, param, value),
 * get(obj, param, &value) and bounds(param, &lo, &hi). `value_of(L, obj,
 * param, validx, &value)` reads a Lua value (lmm_setting_value, or a
 * class-specific one accepting names). Defines:
 *   static mm_status set_named(...)   the lmm_setter
 *   static int settings_set(L)        obj:set(name, value) / obj:set{...}
 *   static int settings_get(L)        obj:get(name) -> value
 *   static int settings_bounds(L)     mm.<class>_bounds(name) -> lo, hi */
#define LMM_SETTINGS(cls, obj_t, param_t, from_name, set, get, bounds, value_of)          \
    static mm_status set_named(lua_State *L, void *obj, const char *name, int validx) {    \
        param_t p;                                                                         \
        double v;                                                                          \
        mm_status st = from_name(name, &p);                                                \
        if (st == MM_OK) st = value_of(L, p, validx, &v);                                  \
        return st == MM_OK ? set((obj_t *)obj, p, v) : st;                                 \
    }                                                                                      \
    static int settings_set(lua_State *L) {                                                \
        return lmm_set_method(L, lmm_check(L, 1, cls), set_named);                         \
    }                                                                                      \
    static int settings_get(lua_State *L) {                                                \
        obj_t *o = lmm_check(L, 1, cls);                                                   \
        param_t p;                                                                         \
        double v;                                                                          \
        mm_status st = from_name(luaL_checkstring(L, 2), &p);                              \
        if (st == MM_OK) st = get(o, p, &v);                                               \
        if (st) return lmm_fail(L, st);                                                    \
        lua_pushnumber(L, v);                                                              \
        return 1;                                                                          \
    }                                                                                      \
    static int settings_bounds(lua_State *L) {                                             \
        param_t p;                                                                         \
        double lo, hi;                                                                     \
        mm_status st = from_name(luaL_checkstring(L, 1), &p);                              \
        if (st == MM_OK) st = bounds(p, &lo, &hi);                                         \
        if (st) return lmm_fail(L, st);                                                    \
        lua_pushnumber(L, lo);                                                             \
        lua_pushnumber(L, hi);                                                             \
        return 2;                                                                          \
    }

/* The plain value reader for LMM_SETTINGS: a number, or a boolean (1/0). */
#define lmm_setting_value(L, p, validx, v) (*(v) = lmm_check_setting_value((L), (validx)), MM_OK)

/* Defines `static mm_status fname(L, param, validx, &value)`, the value
 * reader for LMM_SETTINGS of a class whose library has the value-name
 * lookup value_from_name(param, name, &value) (mm_opt_value_from_name,
 * ...): a number, a boolean (1/0), or a string naming one of an
 * enum-valued setting's values ("cosine"; an unknown name fails with the
 * library's message listing the valid ones). A string given to a setting
 * that takes numbers is read as a number (an argument error unless it is
 * numeric, as before). */
#define LMM_NAMED_VALUE(fname, param_t, value_from_name)                                    \
    static mm_status fname(lua_State *L, param_t p, int validx, double *v) {                \
        if (lua_type(L, validx) == LUA_TSTRING && !lua_isnumber(L, validx)) {              \
            mm_status st = value_from_name(p, lua_tostring(L, validx), v);                  \
            if (st != MM_E_UNSUPPORTED) return st;                                          \
            mm_clear_error();                                                               \
        }                                                                                   \
        *v = lmm_check_setting_value(L, validx);                                            \
        return MM_OK;                                                                       \
    }

#endif
