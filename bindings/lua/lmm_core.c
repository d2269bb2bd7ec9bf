/* mmaint Lua binding — the module: handles, errors, library-wide functions. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "lmm.h"

/* Registry key of the "raise errors" flag (its address is unique). */
static const char raise_key = 'r';

/* ---- handles -------------------------------------------------------------- */

static void release(lmm_handle *h) {
    if (!h->closed || h->borrowers > 0) return;
    if (h->p) {
        h->free_fn(h->p);
        h->p = NULL;
    }
    if (h->lender) {
        lmm_handle *l = h->lender;
        h->lender = NULL;
        lmm_unlend(l);
    }
}

void lmm_lend(lmm_handle *h) { h->borrowers++; }

void lmm_unlend(lmm_handle *h) {
    h->borrowers--;
    release(h);
}

void lmm_handle_close(lmm_handle *h) {
    if (h->closed) return;
    h->closed = 1;
    release(h);
}

lmm_handle *lmm_push_handle(lua_State *L, const char *cls, void *p, lmm_free_fn free_fn,
                            int lender_idx, int nuv) {
    if (lender_idx) lender_idx = lua_absindex(L, lender_idx);
    lmm_handle *h = lua_newuserdatauv(L, sizeof *h, nuv < 1 ? 1 : nuv);
    h->p = p;
    h->free_fn = free_fn;
    h->closed = 0;
    h->borrowers = 0;
    h->lender = NULL;
    luaL_setmetatable(L, cls);
    if (lender_idx) {
        lua_pushvalue(L, lender_idx);
        lua_setiuservalue(L, -2, 1);
        h->lender = lua_touserdata(L, lender_idx);
        lmm_lend(h->lender);
    }
    return h;
}

lmm_handle *lmm_check_handle(lua_State *L, int arg, const char *cls) {
    lmm_handle *h = luaL_checkudata(L, arg, cls);
    if (h->closed || !h->p) {
        luaL_argerror(L, arg, lua_pushfstring(L, "%s is closed", cls));
    }
    return h;
}

void *lmm_check(lua_State *L, int arg, const char *cls) { return lmm_check_handle(L, arg, cls)->p; }

void *lmm_opt(lua_State *L, int arg, const char *cls) {
    return lua_isnoneornil(L, arg) ? NULL : lmm_check(L, arg, cls);
}

int lmm_finish_new_with(lua_State *L, lmm_handle *h, mm_status st, void *obj, int settings_idx,
                        lmm_setter set) {
    h->p = obj;
    if (st == MM_OK && settings_idx && !lua_isnoneornil(L, settings_idx))
        st = lmm_apply_settings(L, settings_idx, obj, set);
    if (st == MM_OK) return 1;
    lmm_handle_close(h);
    lua_pop(L, 1);
    return lmm_fail(L, st);
}

static int handle_close(lua_State *L) {
    /* close() on any class: metatable checked by name in upvalue 1. */
    lmm_handle *h = luaL_checkudata(L, 1, lua_tostring(L, lua_upvalueindex(1)));
    lmm_handle_close(h);
    return 0;
}

static int handle_is_closed(lua_State *L) {
    lmm_handle *h = luaL_checkudata(L, 1, lua_tostring(L, lua_upvalueindex(1)));
    lua_pushboolean(L, h->closed);
    return 1;
}

static int handle_tostring(lua_State *L) {
    lmm_handle *h = luaL_checkudata(L, 1, lua_tostring(L, lua_upvalueindex(1)));
    if (h->closed)
        lua_pushfstring(L, "%s (closed)", lua_tostring(L, lua_upvalueindex(1)));
    else
        lua_pushfstring(L, "%s: %p", lua_tostring(L, lua_upvalueindex(1)), h->p);
    return 1;
}

void lmm_new_class(lua_State *L, const char *cls, const luaL_Reg *methods) {
    luaL_newmetatable(L, cls);
    lua_newtable(L); /* methods */
    static const char *generic[] = {"close", "is_closed", "__gc", "__close", "__tostring"};
    static const lua_CFunction fns[] = {handle_close, handle_is_closed, handle_close, handle_close,
                                        handle_tostring};
    for (int i = 0; i < 5; i++) {
        lua_pushstring(L, cls);
        lua_pushcclosure(L, fns[i], 1);
        lua_setfield(L, generic[i][0] == '_' ? -3 : -2, generic[i]);
    }
    for (const luaL_Reg *r = methods; r->name; r++) {
        lua_pushcfunction(L, r->func);
        /* metamethods go in the metatable, the rest in __index */
        lua_setfield(L, strncmp(r->name, "__", 2) == 0 ? -3 : -2, r->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, cls);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
}

/* ---- errors ------------------------------------------------------------- */

static int raising(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &raise_key);
    int r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

/* The message is on top of the stack. */
static int fail_with_top(lua_State *L, mm_status st) {
    if (raising(L)) {
        lua_createtable(L, 0, 4);
        lua_insert(L, -2);
        lua_setfield(L, -2, "message");
        lua_pushstring(L, mm_status_name(st));
        lua_setfield(L, -2, "code");
        lua_pushinteger(L, st);
        lua_setfield(L, -2, "status");
        luaL_where(L, 1);
        lua_setfield(L, -2, "where");
        luaL_setmetatable(L, LMM_ERROR);
        return lua_error(L);
    }
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushstring(L, mm_status_name(st));
    return 3;
}

void lmm_set_num(lua_State *L, const char *k, double v) {
    if (isnan(v)) return; /* absent values stay nil */
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

void lmm_set_int(lua_State *L, const char *k, uint64_t v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

int lmm_fail(lua_State *L, mm_status st) {
    if (st == MM_OK) return 0;
    const char *msg = mm_last_error_message();
    if (!msg || !*msg || mm_last_error() != st) msg = mm_status_string(st);
    lua_pushstring(L, msg);
    return fail_with_top(L, st);
}

int lmm_fail_msg(lua_State *L, mm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return fail_with_top(L, st);
}

int lmm_result(lua_State *L, mm_status st, int idx) {
    if (st != MM_OK) return lmm_fail(L, st);
    if (idx)
        lua_pushvalue(L, idx);
    else
        lua_pushboolean(L, 1);
    return 1;
}

static int error_tostring(lua_State *L) {
    lua_getfield(L, 1, "where");
    lua_getfield(L, 1, "message");
    lua_getfield(L, 1, "code");
    lua_pushfstring(L, "%s%s (%s)", luaL_optstring(L, -3, ""), luaL_optstring(L, -2, "?"),
                    luaL_optstring(L, -1, "?"));
    return 1;
}

size_t lmm_checksize(lua_State *L, int arg, lua_Integer lo) {
    lua_Integer v = luaL_checkinteger(L, arg);
    if (v < lo) luaL_argerror(L, arg, lua_pushfstring(L, "must be >= %I, got %I", lo, v));
    return (size_t)v;
}

size_t lmm_checkindex(lua_State *L, int arg) { return lmm_checksize(L, arg, 1) - 1; }

int lmm_check_item(lua_State *L, int arg, size_t count, const char *what, const char *holder,
                   size_t *index) {
    *index = lmm_checkindex(L, arg);
    if (*index < count) return 0;
    if (count == 0)
        return lmm_fail_msg(L, MM_E_OUT_OF_RANGE, "%s %I out of range (%s no %ss)", what,
                            (lua_Integer)*index + 1, holder, what);
    return lmm_fail_msg(L, MM_E_OUT_OF_RANGE, "%s %I out of range (%s %I %s%s: 1..%I)", what,
                        (lua_Integer)*index + 1, holder, (lua_Integer)count, what,
                        count == 1 ? "" : "s", (lua_Integer)count);
}

/* ---- settings ------------------------------------------------------------ */

double lmm_check_setting_value(lua_State *L, int arg) {
    if (lua_isboolean(L, arg)) return lua_toboolean(L, arg) ? 1.0 : 0.0;
    return luaL_checknumber(L, arg);
}

mm_status lmm_apply_settings(lua_State *L, int tbl, void *obj, lmm_setter set) {
    tbl = lua_absindex(L, tbl);
    luaL_checktype(L, tbl, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_argerror(L, tbl, "setting names must be strings");
        mm_status st = set(L, obj, lua_tostring(L, -2), lua_gettop(L));
        lua_pop(L, 1);
        if (st != MM_OK) {
            lua_pop(L, 1);
            return st;
        }
    }
    return MM_OK;
}

int lmm_set_method(lua_State *L, void *obj, lmm_setter set) {
    mm_status st;
    if (lua_istable(L, 2))
        st = lmm_apply_settings(L, 2, obj, set);
    else {
        const char *name = luaL_checkstring(L, 2);
        luaL_checkany(L, 3);
        st = set(L, obj, name, 3);
    }
    return lmm_result(L, st, 1);
}

/* ---- module functions ------------------------------------------------------ */

static int l_set_raise(lua_State *L) {
    int prev = raising(L);
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    lua_pushboolean(L, lua_toboolean(L, 1));
    lua_rawsetp(L, LUA_REGISTRYINDEX, &raise_key);
    lua_pushboolean(L, prev);
    return 1;
}

static int l_status_name(lua_State *L) {
    lua_pushstring(L, mm_status_name((mm_status)luaL_checkinteger(L, 1)));
    return 1;
}

static int l_status_string(lua_State *L) {
    lua_pushstring(L, mm_status_string((mm_status)luaL_checkinteger(L, 1)));
    return 1;
}

static int l_last_error(lua_State *L) {
    mm_status st = mm_last_error();
    if (st == MM_OK) return 0;
    lua_pushstring(L, mm_last_error_message());
    lua_pushstring(L, mm_status_name(st));
    return 2;
}

static int l_backend(lua_State *L) {
    lua_pushstring(L, mm_backend_name());
    return 1;
}

static int l_set_backend(lua_State *L) {
    static const char *const names[] = {"reference", "blis", NULL};
    static const mm_backend values[] = {MM_BACKEND_REFERENCE, MM_BACKEND_BLIS};
    int i = luaL_checkoption(L, 1, NULL, names);
    return lmm_result(L, mm_backend_select(values[i]), 0);
}

static int l_set_num_threads(lua_State *L) {
    return lmm_result(L, mm_set_num_threads((int)luaL_checkinteger(L, 1)), 0);
}

static const luaL_Reg module_fns[] = {
    {"set_raise", l_set_raise},       {"status_name", l_status_name},
    {"status_string", l_status_string}, {"last_error", l_last_error},
    {"backend", l_backend},           {"set_backend", l_set_backend},
    {"set_num_threads", l_set_num_threads}, {NULL, NULL}};

MM_API int luaopen_mmaint(lua_State *L);

int luaopen_mmaint(lua_State *L) {
    luaL_newmetatable(L, LMM_ERROR);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newlib(L, module_fns);
    lua_pushstring(L, mm_version_string());
    lua_setfield(L, -2, "version");
    lua_pushinteger(L, (lua_Integer)mm_version_number());
    lua_setfield(L, -2, "version_number");
    lua_newtable(L);
#define LMM_STATUS_FIELD_(name, value, msg) \
    lua_pushinteger(L, value);              \
    lua_setfield(L, -2, #name);
    MM_STATUS_LIST(LMM_STATUS_FIELD_)
#undef LMM_STATUS_FIELD_
    lua_setfield(L, -2, "status");

    lmm_open_tensor(L);
    lmm_open_model(L);
    lmm_open_dataset(L);
    lmm_open_optimizer(L);
    lmm_open_pruner(L);
    lmm_open_quantizer(L);
    lmm_open_migrate(L);
    lmm_open_maintain(L);
    return 1;
}
