/* mmaint Lua binding — migration formats: ONNX and plain safetensors files.
 *
 *   mm.onnx_available() -> boolean
 *   mm.import_onnx(path), mm.import_onnx_buffer(bytes) -> model
 *   m:export_onnx(path)
 *   mm.import_safetensors(path [, opts]), mm.import_safetensors_buffer(bytes [, opts])
 *       opts = {arch = "784-256-10:relu", names = "net.{seq}",
 *               allow_extra = true, round_f64 = true}      (all optional)
 *   m:export_safetensors(path [, names])
 */
#include <string.h>

#include "lmm.h"

static int l_onnx_available(lua_State *L) {
    lua_pushboolean(L, mm_onnx_available());
    return 1;
}

static int l_import_onnx(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lmm_handle *h = lmm_push_model(L);
    mm_model *m = NULL;
    mm_status st = mm_onnx_import(&m, path);
    return lmm_finish_new(L, h, st, m);
}

static int l_import_onnx_buffer(lua_State *L) {
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    lmm_handle *h = lmm_push_model(L);
    mm_model *m = NULL;
    mm_status st = mm_onnx_import_buffer(&m, data, len);
    return lmm_finish_new(L, h, st, m);
}

static int m_export_onnx(lua_State *L) {
    mm_model *m = lmm_check(L, 1, LMM_MODEL);
    return lmm_result(L, mm_onnx_export(m, luaL_checkstring(L, 2)), 1);
}

typedef struct st_opts {
    const char *arch, *names;
    unsigned flags;
} st_opts;

static const char *opt_string(lua_State *L, int tbl, const char *key) {
    lua_getfield(L, tbl, key);
    const char *s = NULL;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, tbl, lua_pushfstring(L, "option '%s' must be a string", key));
        s = lua_tostring(L, -1); /* the string stays referenced by the table */
    }
    lua_pop(L, 1);
    return s;
}

static unsigned opt_flag(lua_State *L, int tbl, const char *key, unsigned flag) {
    lua_getfield(L, tbl, key);
    int on = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return on ? flag : 0;
}

static st_opts check_opts(lua_State *L, int arg) {
    st_opts o = {NULL, NULL, MM_SAFETENSORS_DEFAULT};
    if (lua_isnoneornil(L, arg)) return o;
    luaL_checktype(L, arg, LUA_TTABLE);
    static const char *const known[] = {"arch", "names", "allow_extra", "round_f64", NULL};
    lua_pushnil(L);
    while (lua_next(L, arg)) { /* refuse misspelt options */
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int i = 0;
        while (k && known[i] && strcmp(k, known[i]) != 0) i++;
        if (!k || !known[i])
            luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'",
                                                  k ? k : luaL_typename(L, -1)));
    }
    o.arch = opt_string(L, arg, "arch");
    o.names = opt_string(L, arg, "names");
    o.flags = opt_flag(L, arg, "allow_extra", MM_SAFETENSORS_ALLOW_EXTRA) |
              opt_flag(L, arg, "round_f64", MM_SAFETENSORS_ROUND_F64);
    return o;
}

static int l_import_safetensors(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_settop(L, 2);
    st_opts o = check_opts(L, 2);
    lmm_handle *h = lmm_push_model(L);
    mm_model *m = NULL;
    mm_status st = mm_safetensors_import(&m, path, o.arch, o.names, o.flags);
    return lmm_finish_new(L, h, st, m);
}

static int l_import_safetensors_buffer(lua_State *L) {
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    lua_settop(L, 2);
    st_opts o = check_opts(L, 2);
    lmm_handle *h = lmm_push_model(L);
    mm_model *m = NULL;
    mm_status st = mm_safetensors_import_buffer(&m, data, len, o.arch, o.names, o.flags);
    return lmm_finish_new(L, h, st, m);
}

static int m_export_safetensors(lua_State *L) {
    mm_model *m = lmm_check(L, 1, LMM_MODEL);
    const char *path = luaL_checkstring(L, 2);
    return lmm_result(L, mm_safetensors_export(m, path, luaL_optstring(L, 3, NULL)), 1);
}

void lmm_open_migrate(lua_State *L) {
    static const luaL_Reg methods[] = {{"export_onnx", m_export_onnx},
                                       {"export_safetensors", m_export_safetensors},
                                       {NULL, NULL}};
    luaL_getmetatable(L, LMM_MODEL);
    lua_getfield(L, -1, "__index");
    luaL_setfuncs(L, methods, 0);
    lua_pop(L, 2);
    static const luaL_Reg fns[] = {{"onnx_available", l_onnx_available},
                                   {"import_onnx", l_import_onnx},
                                   {"import_onnx_buffer", l_import_onnx_buffer},
                                   {"import_safetensors", l_import_safetensors},
                                   {"import_safetensors_buffer", l_import_safetensors_buffer},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
