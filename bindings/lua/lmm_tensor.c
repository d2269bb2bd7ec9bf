/* mmaint Lua binding — mmaint.tensor: a compact float32/int32 array, and the
 * conversion of array arguments (tensors or Lua tables) to C arrays.
 *
 *   mm.tensor(rows [, cols] [, dtype])   zeros; 1-d without cols
 *   mm.tensor(table [, dtype])           from {1, 2, 3} (1-d) or {{1, 2}, {3, 4}} (2-d)
 *   t[i], t[i] = v, #t                   flat 1-based element access, element count
 *   t:shape() -> rows, cols | n          t:dtype() -> "float32" | "int32"
 *   t:view(first [, count])              rows first..first+count-1 (elements for 1-d),
 *                                        sharing memory (count defaults to 1)
 *   t:totable()                          flat table (1-d) or table of rows (2-d)
 *   t:fill(v)
 */
#include <math.h>
#include <string.h>

#include "lmm.h"

static const char *const dtype_names[] = {"float32", "int32", NULL};
static const size_t dtype_size[] = {sizeof(float), sizeof(int32_t)};

static lmm_tensor *init_tensor(lmm_tensor *t, lmm_dtype dt, int ndim, size_t rows, size_t cols) {
    t->dtype = dt;
    t->ndim = ndim;
    t->dims[0] = rows;
    t->dims[1] = ndim == 2 ? cols : 1;
    t->len = rows * t->dims[1];
    t->lender = NULL;
    return t;
}

static size_t checked_len(lua_State *L, lmm_dtype dt, size_t rows, size_t cols) {
    if (cols && rows > (SIZE_MAX / 2) / cols / dtype_size[dt])
        luaL_error(L, "tensor of %I x %I elements is too large", (lua_Integer)rows,
                   (lua_Integer)cols);
    return rows * cols;
}

lmm_tensor *lmm_new_tensor(lua_State *L, lmm_dtype dt, int ndim, size_t rows, size_t cols) {
    size_t len = checked_len(L, dt, rows, ndim == 2 ? cols : 1);
    lmm_tensor *t = lua_newuserdatauv(L, sizeof *t + len * dtype_size[dt], 1);
    init_tensor(t, dt, ndim, rows, cols);
    t->data = t + 1;
    memset(t->data, 0, len * dtype_size[dt]);
    luaL_setmetatable(L, LMM_TENSOR);
    return t;
}

lmm_tensor *lmm_view_tensor(lua_State *L, int owner_idx, lmm_dtype dt, void *data, int ndim,
                            size_t rows, size_t cols) {
    owner_idx = lua_absindex(L, owner_idx);
    lmm_tensor *t = lua_newuserdatauv(L, sizeof *t, 1);
    init_tensor(t, dt, ndim, rows, cols);
    t->data = data;
    luaL_setmetatable(L, LMM_TENSOR);
    lua_pushvalue(L, owner_idx);
    lua_setiuservalue(L, -2, 1);
    if (!luaL_testudata(L, owner_idx, LMM_TENSOR)) { /* a handle lends its memory */
        t->lender = lua_touserdata(L, owner_idx);
        lmm_lend(t->lender);
    }
    return t;
}

lmm_tensor *lmm_test_tensor(lua_State *L, int arg) { return luaL_testudata(L, arg, LMM_TENSOR); }

static lmm_tensor *check_tensor(lua_State *L, int arg) { return luaL_checkudata(L, arg, LMM_TENSOR); }

/* ---- Lua tables -> C arrays -------------------------------------------------- */

static void read_number(lua_State *L, lmm_dtype dt, void *dst, size_t i, int arg,
                        const char *what, size_t r, size_t c) {
    int ok;
    if (dt == LMM_F32) {
        lua_Number v = lua_tonumberx(L, -1, &ok);
        ((float *)dst)[i] = (float)v;
    } else {
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (ok && (v < INT32_MIN || v > INT32_MAX)) ok = 0;
        ((int32_t *)dst)[i] = (int32_t)v;
    }
    if (!ok) {
        const char *kind = dt == LMM_F32 ? "a number" : "a 32-bit integer";
        if (r)
            luaL_argerror(L, arg, lua_pushfstring(L, "%s[%I][%I] is not %s (%s)", what,
                                                  (lua_Integer)r, (lua_Integer)c, kind,
                                                  luaL_typename(L, -1)));
        luaL_argerror(L, arg, lua_pushfstring(L, "%s[%I] is not %s (%s)", what, (lua_Integer)c,
                                              kind, luaL_typename(L, -1)));
    }
}

static void table_to_array(lua_State *L, int arg, lmm_dtype dt, lmm_array *a, const char *what) {
    size_t n = (size_t)lua_rawlen(L, arg);
    if (n == 0) luaL_argerror(L, arg, lua_pushfstring(L, "%s is an empty table", what));
    lua_rawgeti(L, arg, 1);
    int nested = lua_istable(L, -1);
    size_t cols = nested ? (size_t)lua_rawlen(L, -1) : 1;
    lua_pop(L, 1);
    if (nested && cols == 0) luaL_argerror(L, arg, lua_pushfstring(L, "%s[1] is empty", what));
    size_t len = checked_len(L, dt, n, cols);
    void *dst = lua_newuserdatauv(L, len * dtype_size[dt], 0); /* anchored on the stack */
    for (size_t r = 0; r < n; r++) {
        lua_rawgeti(L, arg, (lua_Integer)r + 1);
        if (!nested) {
            read_number(L, dt, dst, r, arg, what, 0, r + 1);
        } else {
            if (!lua_istable(L, -1) || (size_t)lua_rawlen(L, -1) != cols)
                luaL_argerror(L, arg, lua_pushfstring(L, "%s[%I] is not a row of %I numbers",
                                                      what, (lua_Integer)r + 1,
                                                      (lua_Integer)cols));
            for (size_t c = 0; c < cols; c++) {
                lua_rawgeti(L, -1, (lua_Integer)c + 1);
                read_number(L, dt, dst, r * cols + c, arg, what, r + 1, c + 1);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    a->data = dst;
    a->len = len;
    a->rows = nested ? n : 0;
    a->is_table = 1;
}

void lmm_check_array(lua_State *L, int arg, lmm_dtype dt, lmm_array *a, const char *what) {
    lmm_tensor *t = lmm_test_tensor(L, arg);
    if (t) {
        if (t->dtype != dt)
            luaL_argerror(L, arg, lua_pushfstring(L, "%s must be a %s tensor, got %s", what,
                                                  dtype_names[dt], dtype_names[t->dtype]));
        if (t->len == 0) luaL_argerror(L, arg, lua_pushfstring(L, "%s is empty", what));
        a->data = t->data;
        a->len = t->len;
        a->rows = t->ndim == 2 ? t->dims[0] : 0;
        a->is_table = 0;
        return;
    }
    if (lua_istable(L, arg)) {
        table_to_array(L, arg, dt, a, what);
        return;
    }
    luaL_typeerror(L, arg, "table or mmaint.tensor");
}

void lmm_check_labels(lua_State *L, int arg, lmm_array *a) {
    if (lua_type(L, arg) == LUA_TNUMBER) {
        int ok;
        lua_Integer v = lua_tointegerx(L, arg, &ok);
        if (!ok || v < INT32_MIN || v > INT32_MAX)
            luaL_argerror(L, arg, "label is not a 32-bit integer");
        a->one = (int32_t)v;
        a->data = &a->one;
        a->len = 1;
        a->rows = 0;
        a->is_table = 1;
        return;
    }
    lmm_check_array(L, arg, LMM_I32, a, "labels");
}

void lmm_push_result(lua_State *L, const lmm_array *like, lmm_dtype dt, const void *data,
                     size_t len, size_t cols) {
    if (!like->is_table) {
        lmm_tensor *t = lmm_new_tensor(L, dt, cols ? 2 : 1, cols ? len / cols : len, cols);
        memcpy(t->data, data, len * dtype_size[dt]);
        return;
    }
    int nested = like->rows > 0 && cols > 0;
    size_t rows = nested ? len / cols : len, width = nested ? cols : 1;
    lua_createtable(L, (int)rows, 0);
    for (size_t r = 0; r < rows; r++) {
        if (nested) lua_createtable(L, (int)width, 0);
        for (size_t c = 0; c < width; c++) {
            size_t i = r * width + c;
            if (dt == LMM_F32)
                lua_pushnumber(L, ((const float *)data)[i]);
            else
                lua_pushinteger(L, ((const int32_t *)data)[i]);
            lua_rawseti(L, -2, (lua_Integer)(nested ? c : r) + 1);
        }
        if (nested) lua_rawseti(L, -2, (lua_Integer)r + 1);
    }
}

/* ---- the tensor class ------------------------------------------------------- */

static int l_tensor(lua_State *L) {
    if (lua_istable(L, 1)) {
        lmm_dtype dt = (lmm_dtype)luaL_checkoption(L, 2, "float32", dtype_names);
        lmm_array a;
        table_to_array(L, 1, dt, &a, "data");
        lmm_tensor *t = lmm_new_tensor(L, dt, a.rows ? 2 : 1, a.rows ? a.rows : a.len,
                                       a.rows ? a.len / a.rows : 0);
        memcpy(t->data, a.data, a.len * dtype_size[dt]);
        return 1;
    }
    /* mm.tensor(rows [, cols] [, dtype]): the dtype follows cols, or takes
     * its place; a nil cols (mm.tensor(5, nil, "int32")) is a 1-d tensor */
    size_t rows = lmm_checksize(L, 1, 0);
    int ndim = lua_type(L, 2) == LUA_TNUMBER ? 2 : 1;
    size_t cols = ndim == 2 ? lmm_checksize(L, 2, 0) : 0;
    int dtype_arg = ndim == 2 || lua_isnoneornil(L, 2) ? 3 : 2;
    lmm_dtype dt = (lmm_dtype)luaL_checkoption(L, dtype_arg, "float32", dtype_names);
    lmm_new_tensor(L, dt, ndim, rows, cols);
    return 1;
}

static int t_shape(lua_State *L) {
    lmm_tensor *t = check_tensor(L, 1);
    for (int i = 0; i < t->ndim; i++) lua_pushinteger(L, (lua_Integer)t->dims[i]);
    return t->ndim;
}

static int t_dtype(lua_State *L) {
    lua_pushstring(L, dtype_names[check_tensor(L, 1)->dtype]);
    return 1;
}

static int t_len(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)check_tensor(L, 1)->len);
    return 1;
}

static int t_view(lua_State *L) {
    lmm_tensor *t = check_tensor(L, 1);
    size_t first = lmm_checkindex(L, 2);
    size_t count = lua_isnoneornil(L, 3) ? 1 : lmm_checksize(L, 3, 0);
    if (first > t->dims[0] || count > t->dims[0] - first)
        return luaL_argerror(L, 3, lua_pushfstring(L, "view %I..%I is outside 1..%I",
                                                   (lua_Integer)first + 1,
                                                   (lua_Integer)(first + count),
                                                   (lua_Integer)t->dims[0]));
    size_t width = t->dims[1];
    char *base = (char *)t->data + first * width * dtype_size[t->dtype];
    lmm_tensor *v = lmm_view_tensor(L, 1, t->dtype, base, t->ndim, count, width);
    (void)v;
    return 1;
}

static int t_totable(lua_State *L) {
    lmm_tensor *t = check_tensor(L, 1);
    lmm_array like = {0};
    like.is_table = 1;
    like.rows = t->ndim == 2 ? t->dims[0] : 0;
    lmm_push_result(L, &like, t->dtype, t->data, t->len, t->ndim == 2 ? t->dims[1] : 0);
    return 1;
}

static int t_fill(lua_State *L) {
    lmm_tensor *t = check_tensor(L, 1);
    if (t->dtype == LMM_F32) {
        float v = (float)luaL_checknumber(L, 2);
        for (size_t i = 0; i < t->len; i++) ((float *)t->data)[i] = v;
    } else {
        lua_Integer v = luaL_checkinteger(L, 2);
        luaL_argcheck(L, v >= INT32_MIN && v <= INT32_MAX, 2, "not a 32-bit integer");
        for (size_t i = 0; i < t->len; i++) ((int32_t *)t->data)[i] = (int32_t)v;
    }
    lua_settop(L, 1);
    return 1;
}

static size_t element_index(lua_State *L, lmm_tensor *t) {
    lua_Integer i = lua_tointeger(L, 2);
    if (i < 1 || (lua_Unsigned)i > t->len)
        luaL_error(L, "tensor index %I is outside 1..%I", i, (lua_Integer)t->len);
    return (size_t)i - 1;
}

static int t_index(lua_State *L) {
    lmm_tensor *t = check_tensor(L, 1);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        size_t i = element_index(L, t);
        if (t->dtype == LMM_F32)
            lua_pushnumber(L, ((float *)t->data)[i]);
        else
            lua_pushinteger(L, ((int32_t *)t->data)[i]);
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1)); /* the methods */
    return 1;
}

static int t_newindex(lua_State *L) {
    lmm_tensor *t = check_tensor(L, 1);
    if (lua_type(L, 2) != LUA_TNUMBER) return luaL_error(L, "tensor keys are element indices");
    size_t i = element_index(L, t);
    if (t->dtype == LMM_F32) {
        ((float *)t->data)[i] = (float)luaL_checknumber(L, 3);
    } else {
        lua_Integer v = luaL_checkinteger(L, 3);
        luaL_argcheck(L, v >= INT32_MIN && v <= INT32_MAX, 3, "not a 32-bit integer");
        ((int32_t *)t->data)[i] = (int32_t)v;
    }
    return 0;
}

static int t_tostring(lua_State *L) {
    lmm_tensor *t = check_tensor(L, 1);
    if (t->ndim == 2)
        lua_pushfstring(L, "mmaint.tensor %s [%I x %I]", dtype_names[t->dtype],
                        (lua_Integer)t->dims[0], (lua_Integer)t->dims[1]);
    else
        lua_pushfstring(L, "mmaint.tensor %s [%I]", dtype_names[t->dtype],
                        (lua_Integer)t->dims[0]);
    return 1;
}

static int t_gc(lua_State *L) {
    lmm_tensor *t = check_tensor(L, 1);
    if (t->lender) {
        lmm_handle *l = t->lender;
        t->lender = NULL;
        lmm_unlend(l);
    }
    return 0;
}

void lmm_open_tensor(lua_State *L) {
    static const luaL_Reg methods[] = {{"shape", t_shape},     {"dtype", t_dtype},
                                       {"size", t_len},        {"view", t_view},
                                       {"totable", t_totable}, {"fill", t_fill},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__newindex", t_newindex}, {"__len", t_len},
                                    {"__tostring", t_tostring}, {"__gc", t_gc},
                                    {NULL, NULL}};
    luaL_newmetatable(L, LMM_TENSOR);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_pushcclosure(L, t_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_tensor);
    lua_setfield(L, -2, "tensor");
}
