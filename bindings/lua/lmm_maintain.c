/* mmaint Lua binding — maintenance helpers: drift detectors (mmaint.drift)
 * and the hot-swap model server (mmaint.server).
 *
 *   mm.drift(kind [, settings])  kind: "adwin", "page_hinkley", "ddm", "eddm"
 *   d:update(value) -> "stable" | "warning" | "drift"
 *   d:set(name, value) / d:set{...}, d:get(name), d:reset(), d:kind(),
 *   d:samples(), d:estimate(), d:count()
 *
 *   mm.server(model)             serves a clone of model as version 1
 *   s:publish(model) -> version  (clones it)
 *   s:predict(x) -> labels, version     s:forward(x) -> outputs, version
 *   s:version(), s:outstanding(), s:live_snapshots()
 *
 * The server's snapshots are only used inside predict/forward (acquire,
 * compute, release in one call), so a Lua state never holds one and closing
 * the server is always safe.
 */
#include "lmm.h"

/* ---- drift detectors ------------------------------------------------------- */

static void free_drift(void *p) { mm_drift_free(p); }

#define CHECK_DRIFT(arg) ((mm_drift *)lmm_check(L, (arg), LMM_DRIFT))

static mm_status drift_set_named(lua_State *L, void *obj, const char *name, int validx) {
    return mm_drift_set(obj, name, lmm_check_setting_value(L, validx));
}

static int l_drift(lua_State *L) {
    lua_settop(L, 2);
    mm_drift_kind kind;
    mm_status st = mm_drift_kind_from_name(luaL_checkstring(L, 1), &kind);
    if (st) return lmm_fail(L, st);
    if (!lua_isnil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lmm_handle *h = lmm_push_handle(L, LMM_DRIFT, NULL, free_drift, 0, 1);
    mm_drift *d = NULL;
    st = mm_drift_create(&d, kind);
    return lmm_finish_new_with(L, h, st, d, 2, drift_set_named);
}

static int d_update(lua_State *L) {
    static const char *const states[] = {"stable", "warning", "drift"};
    mm_drift *d = CHECK_DRIFT(1);
    mm_drift_state s;
    mm_status st = mm_drift_update(d, luaL_checknumber(L, 2), &s);
    if (st) return lmm_fail(L, st);
    lua_pushstring(L, (unsigned)s < 3 ? states[s] : "unknown");
    return 1;
}

static int d_set(lua_State *L) { return lmm_set_method(L, CHECK_DRIFT(1), drift_set_named); }

static int d_get(lua_State *L) {
    mm_drift *d = CHECK_DRIFT(1);
    double v;
    mm_status st = mm_drift_get(d, luaL_checkstring(L, 2), &v);
    if (st) return lmm_fail(L, st);
    lua_pushnumber(L, v);
    return 1;
}

static int d_reset(lua_State *L) { return lmm_result(L, mm_drift_reset(CHECK_DRIFT(1)), 1); }

static int d_kind(lua_State *L) {
    lua_pushstring(L, mm_drift_kind_name(mm_drift_get_kind(CHECK_DRIFT(1))));
    return 1;
}

static int d_samples(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_drift_samples(CHECK_DRIFT(1)));
    return 1;
}

static int d_estimate(lua_State *L) {
    lua_pushnumber(L, mm_drift_estimate(CHECK_DRIFT(1)));
    return 1;
}

static int d_count(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_drift_count(CHECK_DRIFT(1)));
    return 1;
}

/* ---- the model server -------------------------------------------------------- */

static void free_server(void *p) { mm_server_free(p); }

#define CHECK_SERVER(arg) ((mm_server *)lmm_check(L, (arg), LMM_SERVER))

static int l_server(lua_State *L) {
    const mm_model *m = lmm_check(L, 1, LMM_MODEL);
    lmm_handle *h = lmm_push_handle(L, LMM_SERVER, NULL, free_server, 0, 1);
    mm_server *s = NULL;
    mm_status st = mm_server_create(&s, m);
    return lmm_finish_new(L, h, st, s);
}

static int s_publish(lua_State *L) {
    mm_server *s = CHECK_SERVER(1);
    uint64_t v;
    mm_status st = mm_server_publish(s, lmm_check(L, 2, LMM_MODEL), &v);
    if (st) return lmm_fail(L, st);
    lua_pushinteger(L, (lua_Integer)v);
    return 1;
}

/* Inputs as for model methods: the sample count from the served width. */
static int serve(lua_State *L, int labels) {
    mm_server *s = CHECK_SERVER(1);
    lmm_array x;
    lmm_check_array(L, 2, LMM_F32, &x, "x");
    /* the served widths: from a snapshot (acquire/release is lock-free) */
    const mm_model *m;
    mm_status st = mm_server_acquire(s, &m, NULL);
    if (st) return lmm_fail(L, st);
    size_t in = mm_model_input_dim(m), out = mm_model_output_dim(m);
    mm_server_release(s, m);
    if (in == 0 || x.len % in != 0)
        return lmm_fail_msg(L, MM_E_SHAPE, "x has %I numbers, not a multiple of the model's %I inputs",
                            (lua_Integer)x.len, (lua_Integer)in);
    size_t n = x.len / in;
    uint64_t version;
    if (labels) {
        int32_t *y = lua_newuserdatauv(L, n * sizeof *y, 0);
        st = mm_server_predict(s, x.data, n, y, &version);
        if (st) return lmm_fail(L, st);
        lmm_push_result(L, &x, LMM_I32, y, n, 0);
    } else {
        float *o = lua_newuserdatauv(L, n * out * sizeof *o, 0);
        st = mm_server_forward(s, x.data, n, o, &version);
        if (st) return lmm_fail(L, st);
        lmm_push_result(L, &x, LMM_F32, o, n * out, out);
    }
    lua_pushinteger(L, (lua_Integer)version);
    return 2;
}

static int s_predict(lua_State *L) { return serve(L, 1); }
static int s_forward(lua_State *L) { return serve(L, 0); }

static int s_version(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_server_version(CHECK_SERVER(1)));
    return 1;
}

static int s_outstanding(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_server_outstanding(CHECK_SERVER(1)));
    return 1;
}

static int s_live_snapshots(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_server_live_snapshots(CHECK_SERVER(1)));
    return 1;
}

void lmm_open_maintain(lua_State *L) {
    static const luaL_Reg drift_methods[] = {
        {"update", d_update}, {"set", d_set},         {"get", d_get},     {"reset", d_reset},
        {"kind", d_kind},     {"samples", d_samples}, {"estimate", d_estimate},
        {"count", d_count},   {NULL, NULL}};
    lmm_new_class(L, LMM_DRIFT, drift_methods);
    static const luaL_Reg server_methods[] = {{"publish", s_publish},
                                              {"predict", s_predict},
                                              {"forward", s_forward},
                                              {"version", s_version},
                                              {"outstanding", s_outstanding},
                                              {"live_snapshots", s_live_snapshots},
                                              {NULL, NULL}};
    lmm_new_class(L, LMM_SERVER, server_methods);
    static const luaL_Reg fns[] = {{"drift", l_drift}, {"server", l_server}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
