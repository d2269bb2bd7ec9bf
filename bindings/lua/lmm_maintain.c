/* mmaint Lua binding — maintenance helpers: drift detectors (mmaint.drift),
 * the hot-swap model server (mmaint.server), guarded maintenance
 * (mmaint.maintainer) and the replay reservoir (mmaint.reservoir).
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
 *
 *   mm.maintainer(model, kind [, settings])   copies model; kind "sgd", "adam", ...
 *   mt:set(name, value) / mt:set{...}, mt:get(name)     (mm_maint_param names)
 *   mt:set_optimizer(name, value) / {...}, mt:set_detector(name, value) / {...}
 *   mt:set_holdout(x, labels), mt:set_checkpoint_dir(dir | nil)
 *   mt:attach_server(server | nil)
 *   mt:feed(x, labels) | mt:feed(dataset) -> report; mt:flush(), mt:status() -> report
 *   mt:model(), mt:working_model() -> a new model (a clone)
 *   mt:num_checkpoints(), mt:quarantined() -> {{start=, stop=, reason=, ...}, ...}
 *
 * An attached server is borrowed by the C maintainer: the maintainer's
 * handle keeps the server's userdata in user value 1 (so the GC keeps it)
 * and counts itself as the server handle's borrower (its `lender`), so
 * s:close() while attached frees the C server only after the maintainer.
 *
 *   mm.reservoir(capacity, dim [, seed])
 *   r:offer(x, label) -> slot (1-based) | false (not kept)
 *   r:size() / #r, r:seen(), r:dim(), r:capacity()
 *   r:get(i) -> x (tensor, a copy), label     r:draw(k) -> x (k x dim), labels
 *
 * The reservoir's handle keeps its width and capacity in user values 1, 2
 * (the C object has no getters for them).
 */
#include <math.h>
#include <string.h>

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

/* ---- the maintainer ------------------------------------------------------------ */

static void free_maintainer(void *p) { mm_maintainer_free(p); }

#define CHECK_MT(arg) ((mm_maintainer *)lmm_check(L, (arg), LMM_MAINTAINER))

/* Values are numbers or booleans; the detector may also be named ("adwin",
 * ..., or "none" for 0). */
LMM_NAMED_VALUE(maint_value, mm_maint_param, mm_maint_value_from_name)
LMM_NAMED_VALUE(maint_opt_value, mm_opt_param, mm_opt_value_from_name)

static mm_status maint_set_named(lua_State *L, void *obj, const char *name, int validx) {
    mm_maint_param p;
    double v;
    mm_status st = mm_maint_param_from_name(name, &p);
    if (st == MM_OK) st = maint_value(L, p, validx, &v);
    return st == MM_OK ? mm_maintainer_set(obj, p, v) : st;
}

/* Optimizer settings by the optimizer binding's names (mm_opt_param_from_name)
 * and values (value names as o:set's). */
static mm_status maint_opt_named(lua_State *L, void *obj, const char *name, int validx) {
    mm_opt_param p;
    double v;
    mm_status st = mm_opt_param_from_name(name, &p);
    if (st == MM_OK) st = maint_opt_value(L, p, validx, &v);
    return st == MM_OK ? mm_maintainer_set_optimizer(obj, p, v) : st;
}

static mm_status maint_detector_named(lua_State *L, void *obj, const char *name, int validx) {
    return mm_maintainer_set_detector(obj, name, lmm_check_setting_value(L, validx));
}

/* mm.maintainer(model, kind [, settings]) */
static int l_maintainer(lua_State *L) {
    lua_settop(L, 3);
    const mm_model *m = lmm_check(L, 1, LMM_MODEL);
    mm_optim_kind kind;
    mm_status st = mm_optim_kind_from_name(luaL_checkstring(L, 2), &kind);
    if (st) return lmm_fail(L, st);
    if (!lua_isnil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    lmm_handle *h = lmm_push_handle(L, LMM_MAINTAINER, NULL, free_maintainer, 0, 1);
    mm_maintainer *mt = NULL;
    st = mm_maintainer_create(&mt, m, kind);
    return lmm_finish_new_with(L, h, st, mt, 3, maint_set_named);
}

static int mt_set(lua_State *L) { return lmm_set_method(L, CHECK_MT(1), maint_set_named); }

static int mt_get(lua_State *L) {
    mm_maintainer *mt = CHECK_MT(1);
    mm_maint_param p;
    double v;
    mm_status st = mm_maint_param_from_name(luaL_checkstring(L, 2), &p);
    if (st == MM_OK) st = mm_maintainer_get(mt, p, &v);
    if (st) return lmm_fail(L, st);
    lua_pushnumber(L, v);
    return 1;
}

static int mt_set_optimizer(lua_State *L) {
    return lmm_set_method(L, CHECK_MT(1), maint_opt_named);
}

static int mt_set_detector(lua_State *L) {
    return lmm_set_method(L, CHECK_MT(1), maint_detector_named);
}

/* Samples and labels at 2, 3 (or a labelled dataset at 2) for the deployed
 * model's width: 0 with *b filled, or the number of error results pushed. */
static int check_stream(lua_State *L, mm_maintainer *mt, lmm_batch *b) {
    if (!lua_isnoneornil(L, 4)) luaL_argerror(L, 4, "no argument expected (x, labels)");
    int dataset = luaL_testudata(L, 2, LMM_DATASET) != NULL;
    if (!dataset) luaL_checkany(L, 3);
    int nret = lmm_check_batch(L, 2, mm_maintainer_model(mt), b);
    if (nret) return nret;
    if (!b->labels) luaL_argerror(L, 2, "the dataset has no labels");
    return 0;
}

/* mm_maint_report as a table: the C fields by name (not struct_size);
 * events as a set {checkpoint = true, ...}, drift_state as a name, NaN
 * (no value yet) as nil. */
static void push_report(lua_State *L, const mm_maint_report *r) {
    static const char *const events[] = {"checkpoint", "rollback", "drift", "promote", "reject"};
    static const char *const states[] = {"stable", "warning", "drift"};
    lua_createtable(L, 0, 16);
    lua_createtable(L, 0, 2);
    for (unsigned i = 0; i < sizeof events / sizeof *events; i++) {
        if (!(r->events & (1u << i))) continue;
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, events[i]);
    }
    lua_setfield(L, -2, "events");
    lmm_set_int(L, "samples", r->samples);
    lmm_set_int(L, "version", r->version);
    lmm_set_num(L, "rolling_accuracy", r->rolling_accuracy);
    lmm_set_num(L, "rolling_loss", r->rolling_loss);
    lmm_set_num(L, "holdout_accuracy", r->holdout_accuracy);
    lua_pushstring(L, (unsigned)r->drift_state < 3 ? states[r->drift_state] : "unknown");
    lua_setfield(L, -2, "drift_state");
    lmm_set_int(L, "drifts", r->drifts);
    lmm_set_int(L, "rollbacks", r->rollbacks);
    lmm_set_int(L, "promotions", r->promotions);
    lmm_set_int(L, "challengers", r->challengers);
    lmm_set_int(L, "learned", r->learned);
    lmm_set_int(L, "quarantined", r->quarantined);
    lmm_set_int(L, "new_ranges", r->new_ranges);
    lmm_set_int(L, "correct", r->correct);
}

/* mt:set_holdout(x, labels) or mt:set_holdout(dataset) */
static int mt_set_holdout(lua_State *L) {
    mm_maintainer *mt = CHECK_MT(1);
    lmm_batch b;
    int nret = check_stream(L, mt, &b);
    if (nret) return nret;
    return lmm_result(L, mm_maintainer_set_holdout(mt, b.x, b.labels, b.n), 1);
}

/* mt:set_checkpoint_dir(dir | nil) */
static int mt_set_checkpoint_dir(lua_State *L) {
    mm_maintainer *mt = CHECK_MT(1);
    return lmm_result(L, mm_maintainer_set_checkpoint_dir(mt, luaL_optstring(L, 2, NULL)), 1);
}

/* mt:attach_server(server | nil) */
static int mt_attach_server(lua_State *L) {
    lmm_handle *h = lmm_check_handle(L, 1, LMM_MAINTAINER);
    mm_server *s = lmm_opt(L, 2, LMM_SERVER);
    lua_settop(L, 2);
    mm_status st = mm_maintainer_attach_server(h->p, s);
    if (st) return lmm_fail(L, st);
    lmm_handle *old = h->lender;
    h->lender = s ? lua_touserdata(L, 2) : NULL;
    if (h->lender) lmm_lend(h->lender);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, 1, 1);
    if (old) lmm_unlend(old); /* frees a detached server that was closed meanwhile */
    lua_settop(L, 1);
    return 1;
}

/* mt:feed(x, labels) or mt:feed(dataset) -> report */
static int mt_feed(lua_State *L) {
    mm_maintainer *mt = CHECK_MT(1);
    lmm_batch b;
    int nret = check_stream(L, mt, &b);
    if (nret) return nret;
    mm_maint_report r;
    mm_status st = mm_maintainer_feed(mt, b.x, b.labels, b.n, &r);
    if (st) return lmm_fail(L, st);
    push_report(L, &r);
    return 1;
}

static int mt_flush(lua_State *L) {
    mm_maint_report r;
    mm_status st = mm_maintainer_flush(CHECK_MT(1), &r);
    if (st) return lmm_fail(L, st);
    push_report(L, &r);
    return 1;
}

static int mt_status(lua_State *L) {
    mm_maint_report r;
    mm_status st = mm_maintainer_status(CHECK_MT(1), &r);
    if (st) return lmm_fail(L, st);
    push_report(L, &r);
    return 1;
}

/* A new model handle holding a clone of a borrowed model of the maintainer. */
static int push_clone(lua_State *L, const mm_model *src) {
    lmm_handle *h = lmm_push_model(L);
    mm_model *m = NULL;
    mm_status st = mm_model_clone(src, &m);
    return lmm_finish_new(L, h, st, m);
}

static int mt_model(lua_State *L) { return push_clone(L, mm_maintainer_model(CHECK_MT(1))); }

static int mt_working_model(lua_State *L) {
    return push_clone(L, mm_maintainer_working_model(CHECK_MT(1)));
}

static int mt_num_checkpoints(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_maintainer_num_checkpoints(CHECK_MT(1)));
    return 1;
}

/* mt:quarantined() -> {{start =, stop =, reason =, accuracy =, good_accuracy =}, ...}
 * oldest first; start..stop are the 1-based stream positions (inclusive)
 * of C's 0-based [start, end). */
static int mt_quarantined(lua_State *L) {
    mm_maintainer *mt = CHECK_MT(1);
    size_t n = mm_maintainer_num_quarantined(mt);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        mm_maint_range q;
        mm_status st = mm_maintainer_quarantined(mt, i, &q);
        if (st) return lmm_fail(L, st);
        lua_createtable(L, 0, 5);
        lmm_set_int(L, "start", q.start + 1);
        lmm_set_int(L, "stop", q.end);
        lua_pushstring(L, q.reason == MM_MAINT_REASON_NUMERIC ? "numeric" : "metric");
        lua_setfield(L, -2, "reason");
        lmm_set_num(L, "accuracy", q.accuracy);
        lmm_set_num(L, "good_accuracy", q.good_accuracy);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int mt_tostring(lua_State *L) {
    lmm_handle *h = luaL_checkudata(L, 1, LMM_MAINTAINER);
    mm_maint_report r;
    if (h->closed || !h->p || mm_maintainer_status(h->p, &r) != MM_OK) {
        lua_pushstring(L, "mmaint.maintainer (closed)");
        return 1;
    }
    lua_pushfstring(L, "mmaint.maintainer: version %I, %I samples, %I rollbacks",
                    (lua_Integer)r.version, (lua_Integer)r.samples, (lua_Integer)r.rollbacks);
    return 1;
}

/* ---- the reservoir --------------------------------------------------------------- */

static void free_reservoir(void *p) { mm_reservoir_free(p); }

#define CHECK_RES(arg) ((mm_reservoir *)lmm_check(L, (arg), LMM_RESERVOIR))

/* User value `uv` (1: width, 2: capacity) of the reservoir at index 1. */
static size_t res_uv(lua_State *L, int uv) {
    lua_getiuservalue(L, 1, uv);
    size_t v = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

/* mm.reservoir(capacity, dim [, seed = 0]) */
static int l_reservoir(lua_State *L) {
    size_t cap = lmm_checksize(L, 1, 0);
    size_t dim = lmm_checksize(L, 2, 0);
    lua_Integer seed = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, seed >= 0, 3, "seed must be >= 0");
    lmm_handle *h = lmm_push_handle(L, LMM_RESERVOIR, NULL, free_reservoir, 0, 2);
    lua_pushinteger(L, (lua_Integer)dim);
    lua_setiuservalue(L, -2, 1);
    lua_pushinteger(L, (lua_Integer)cap);
    lua_setiuservalue(L, -2, 2);
    mm_reservoir *r = NULL;
    mm_status st = mm_reservoir_create(&r, cap, dim, (uint64_t)seed);
    return lmm_finish_new(L, h, st, r);
}

/* r:offer(x, label) -> 1-based slot, or false when not kept */
static int r_offer(lua_State *L) {
    mm_reservoir *r = CHECK_RES(1);
    lua_settop(L, 3);
    lmm_array x;
    lmm_check_array(L, 2, LMM_F32, &x, "x");
    lua_Integer label = luaL_checkinteger(L, 3);
    luaL_argcheck(L, label >= INT32_MIN && label <= INT32_MAX, 3, "not a 32-bit integer");
    size_t dim = res_uv(L, 1);
    if (x.len != dim)
        return lmm_fail_msg(L, MM_E_SHAPE, "x has %I numbers, the reservoir holds samples of %I",
                            (lua_Integer)x.len, (lua_Integer)dim);
    size_t slot;
    mm_status st = mm_reservoir_offer(r, x.data, (int32_t)label, &slot);
    if (st) return lmm_fail(L, st);
    if (slot == SIZE_MAX)
        lua_pushboolean(L, 0);
    else
        lua_pushinteger(L, (lua_Integer)slot + 1);
    return 1;
}

static int r_size(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_reservoir_size(CHECK_RES(1)));
    return 1;
}

static int r_seen(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_reservoir_seen(CHECK_RES(1)));
    return 1;
}

static int r_dim(lua_State *L) {
    CHECK_RES(1);
    lua_pushinteger(L, (lua_Integer)res_uv(L, 1));
    return 1;
}

static int r_capacity(lua_State *L) {
    CHECK_RES(1);
    lua_pushinteger(L, (lua_Integer)res_uv(L, 2));
    return 1;
}

/* r:get(i) -> x (a 1-d tensor: a copy), label */
static int r_get(lua_State *L) {
    mm_reservoir *r = CHECK_RES(1);
    size_t i;
    int nret = lmm_check_item(L, 2, mm_reservoir_size(r), "sample", "reservoir holds", &i);
    if (nret) return nret;
    const float *x;
    int32_t label;
    mm_status st = mm_reservoir_get(r, i, &x, &label);
    if (st) return lmm_fail(L, st);
    size_t dim = res_uv(L, 1);
    lmm_tensor *t = lmm_new_tensor(L, LMM_F32, 1, dim, 0);
    memcpy(t->data, x, dim * sizeof *x);
    lua_pushinteger(L, label);
    return 2;
}

/* r:draw(k) -> x (k x dim tensor), labels (int32 tensor of k) */
static int r_draw(lua_State *L) {
    mm_reservoir *r = CHECK_RES(1);
    size_t k = lmm_checksize(L, 2, 0);
    size_t dim = res_uv(L, 1);
    lmm_tensor *x = lmm_new_tensor(L, LMM_F32, 2, k, dim);
    lmm_tensor *y = lmm_new_tensor(L, LMM_I32, 1, k, 0);
    mm_status st = mm_reservoir_draw(r, k, x->data, y->data);
    if (st) return lmm_fail(L, st);
    return 2;
}

static int r_tostring(lua_State *L) {
    lmm_handle *h = luaL_checkudata(L, 1, LMM_RESERVOIR);
    if (h->closed || !h->p) {
        lua_pushstring(L, "mmaint.reservoir (closed)");
        return 1;
    }
    lua_pushfstring(L, "mmaint.reservoir: %I/%I samples of %I, %I seen",
                    (lua_Integer)mm_reservoir_size(h->p), (lua_Integer)res_uv(L, 2),
                    (lua_Integer)res_uv(L, 1), (lua_Integer)mm_reservoir_seen(h->p));
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
    static const luaL_Reg maintainer_methods[] = {{"set", mt_set},
                                                  {"get", mt_get},
                                                  {"set_optimizer", mt_set_optimizer},
                                                  {"set_detector", mt_set_detector},
                                                  {"set_holdout", mt_set_holdout},
                                                  {"set_checkpoint_dir", mt_set_checkpoint_dir},
                                                  {"attach_server", mt_attach_server},
                                                  {"feed", mt_feed},
                                                  {"flush", mt_flush},
                                                  {"status", mt_status},
                                                  {"model", mt_model},
                                                  {"working_model", mt_working_model},
                                                  {"num_checkpoints", mt_num_checkpoints},
                                                  {"quarantined", mt_quarantined},
                                                  {"__tostring", mt_tostring},
                                                  {NULL, NULL}};
    lmm_new_class(L, LMM_MAINTAINER, maintainer_methods);
    static const luaL_Reg reservoir_methods[] = {
        {"offer", r_offer}, {"size", r_size},         {"seen", r_seen},
        {"dim", r_dim},     {"capacity", r_capacity}, {"get", r_get},
        {"draw", r_draw},   {"__len", r_size},        {"__tostring", r_tostring},
        {NULL, NULL}};
    lmm_new_class(L, LMM_RESERVOIR, reservoir_methods);
    static const luaL_Reg fns[] = {{"drift", l_drift},
                                   {"server", l_server},
                                   {"maintainer", l_maintainer},
                                   {"reservoir", l_reservoir},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
