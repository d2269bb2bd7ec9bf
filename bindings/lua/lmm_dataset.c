/* mmaint Lua binding — mmaint.dataset. */
#include "lmm.h"

static void free_dataset(void *p) { mm_dataset_free(p); }

#define CHECK_DS(arg) ((mm_dataset *)lmm_check(L, (arg), LMM_DATASET))

static lmm_handle *push_dataset(lua_State *L) {
    return lmm_push_handle(L, LMM_DATASET, NULL, free_dataset, 0, 1);
}

/* mm.load_idx(images_path [, labels_path]) */
static int l_load_idx(lua_State *L) {
    const char *img = luaL_checkstring(L, 1);
    const char *lab = luaL_optstring(L, 2, NULL);
    lmm_handle *h = push_dataset(L);
    mm_dataset *ds = NULL;
    mm_status st = mm_dataset_load_idx(&ds, img, lab);
    return lmm_finish_new(L, h, st, ds);
}

/* mm.load_csv(path [, label_column]): label_column "last" (the default, as
 * nil) for labels in the last column, "none" for no labels, else the
 * 1-based column of the labels; a negative one counts from the end (-1 =
 * the last column). The CLI's --label-column and Python's load_csv spell
 * "last" and "none" the same way (their numbers are 0-based). */
static int l_load_csv(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    int c;
    if (lua_isnoneornil(L, 2)) {
        c = MM_CSV_LABEL_LAST;
    } else if (lua_type(L, 2) == LUA_TSTRING && !lua_isnumber(L, 2)) {
        static const char *const names[] = {"last", "none", NULL};
        c = luaL_checkoption(L, 2, NULL, names) == 0 ? MM_CSV_LABEL_LAST : MM_CSV_NO_LABELS;
    } else {
        lua_Integer col = luaL_checkinteger(L, 2);
        luaL_argcheck(L, col != 0, 2, "columns are 1-based (\"none\": no labels)");
        luaL_argcheck(L, col >= -1000000 && col <= 1000000, 2, "label column out of range");
        /* the library's: 0-based, and counting from the end from
         * MM_CSV_LABEL_LAST (-2 is the last column) */
        c = (int)col - 1;
    }
    lmm_handle *h = push_dataset(L);
    mm_dataset *ds = NULL;
    mm_status st = mm_dataset_load_csv(&ds, path, c);
    return lmm_finish_new(L, h, st, ds);
}

/* mm.dataset(x [, labels] [, dim]): copies. dim defaults to the width of a
 * 2-d x (table of rows or 2-d tensor). */
static int l_dataset(lua_State *L) {
    lmm_array x, y = {0};
    lua_settop(L, 3);
    lmm_check_array(L, 1, LMM_F32, &x, "x");
    if (!lua_isnoneornil(L, 2)) lmm_check_labels(L, 2, &y);
    size_t dim;
    if (!lua_isnoneornil(L, 3))
        dim = lmm_checksize(L, 3, 1);
    else if (x.rows)
        dim = x.len / x.rows;
    else
        return luaL_argerror(L, 3, "dim is needed for a flat x");
    if (x.len % dim)
        return lmm_fail_msg(L, MM_E_SHAPE, "x has %I numbers, not a multiple of dim %I",
                            (lua_Integer)x.len, (lua_Integer)dim);
    size_t n = x.len / dim;
    if (y.data && y.len != n)
        return lmm_fail_msg(L, MM_E_SHAPE, "%I labels for %I samples", (lua_Integer)y.len,
                            (lua_Integer)n);
    lmm_handle *h = push_dataset(L);
    mm_dataset *ds = NULL;
    mm_status st = mm_dataset_create(&ds, x.data, y.data, n, dim);
    return lmm_finish_new(L, h, st, ds);
}

static int d_size(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_dataset_size(CHECK_DS(1)));
    return 1;
}

static int d_dim(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_dataset_dim(CHECK_DS(1)));
    return 1;
}

static int d_num_classes(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_dataset_num_classes(CHECK_DS(1)));
    return 1;
}

/* ds:features() -> float32 tensor (size x dim) viewing the dataset's memory
 * (no copy; the dataset stays alive while the view does). */
static int d_features(lua_State *L) {
    mm_dataset *ds = CHECK_DS(1);
    lmm_view_tensor(L, 1, LMM_F32, (void *)mm_dataset_features(ds), 2, mm_dataset_size(ds),
                    mm_dataset_dim(ds));
    return 1;
}

/* ds:labels() -> int32 tensor viewing the labels, or nil without labels. */
static int d_labels(lua_State *L) {
    mm_dataset *ds = CHECK_DS(1);
    const int32_t *y = mm_dataset_labels(ds);
    if (!y) return 0;
    lmm_view_tensor(L, 1, LMM_I32, (void *)y, 1, mm_dataset_size(ds), 0);
    return 1;
}

/* ds:slice(first, count) -> new dataset (copies); first is 1-based. */
static int d_slice(lua_State *L) {
    mm_dataset *ds = CHECK_DS(1);
    size_t first = lmm_checkindex(L, 2);
    size_t count = lmm_checksize(L, 3, 0);
    size_t n = mm_dataset_size(ds);
    if (first > n || count > n - first) /* in the user's 1-based terms */
        return lmm_fail_msg(L, MM_E_OUT_OF_RANGE,
                            "slice of %I samples from %I is outside the dataset's samples 1..%I",
                            (lua_Integer)count, (lua_Integer)first + 1, (lua_Integer)n);
    lmm_handle *h = push_dataset(L);
    mm_dataset *out = NULL;
    mm_status st = mm_dataset_slice(ds, first, count, &out);
    return lmm_finish_new(L, h, st, out);
}

static int normalize(lua_State *L, mm_status (*fn)(mm_dataset *, const mm_dataset *)) {
    mm_dataset *ds = CHECK_DS(1);
    const mm_dataset *ref = lua_isnoneornil(L, 2) ? ds : lmm_check(L, 2, LMM_DATASET);
    return lmm_result(L, fn(ds, ref), 1);
}

static int d_standardize(lua_State *L) { return normalize(L, mm_dataset_standardize); }
static int d_minmax(lua_State *L) { return normalize(L, mm_dataset_minmax); }

static int d_tostring(lua_State *L) {
    lmm_handle *h = luaL_checkudata(L, 1, LMM_DATASET);
    if (h->closed) {
        lua_pushstring(L, "mmaint.dataset (closed)");
        return 1;
    }
    lua_pushfstring(L, "mmaint.dataset: %I samples x %I features, %I classes",
                    (lua_Integer)mm_dataset_size(h->p), (lua_Integer)mm_dataset_dim(h->p),
                    (lua_Integer)mm_dataset_num_classes(h->p));
    return 1;
}

void lmm_open_dataset(lua_State *L) {
    static const luaL_Reg methods[] = {{"size", d_size},
                                       {"__len", d_size},
                                       {"dim", d_dim},
                                       {"num_classes", d_num_classes},
                                       {"features", d_features},
                                       {"labels", d_labels},
                                       {"slice", d_slice},
                                       {"standardize", d_standardize},
                                       {"minmax", d_minmax},
                                       {"__tostring", d_tostring},
                                       {NULL, NULL}};
    lmm_new_class(L, LMM_DATASET, methods);
    static const luaL_Reg fns[] = {
        {"load_idx", l_load_idx}, {"load_csv", l_load_csv}, {"dataset", l_dataset}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
