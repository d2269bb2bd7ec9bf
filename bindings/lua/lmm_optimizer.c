/* mmaint Lua binding — mmaint.optimizer.
 *
 * User values of an optimizer handle: 1 = its model (kept alive and counted
 * as a borrower), 2 = the pruner attached to it (kept alive while attached).
 */
#include <math.h>

#include "lmm.h"

static void free_optimizer(void *p) { mm_optimizer_free(p); }

#define CHECK_OPT(arg) ((mm_optimizer *)lmm_check(L, (arg), LMM_OPTIMIZER))

LMM_NAMED_VALUE(opt_value, mm_opt_param, mm_opt_value_from_name)
LMM_SETTINGS(LMM_OPTIMIZER, mm_optimizer, mm_opt_param, mm_opt_param_from_name, mm_optimizer_set,
             mm_optimizer_get, mm_opt_param_bounds, opt_value)

/* Push a new optimizer handle borrowing the model at model_idx. */
static lmm_handle *push_opt(lua_State *L, int model_idx) {
    return lmm_push_handle(L, LMM_OPTIMIZER, NULL, free_optimizer, model_idx, 2);
}

/* mm.optimizer(model, kind [, settings]) */
static int l_optimizer(lua_State *L) {
    lua_settop(L, 3);
    mm_model *m = lmm_check(L, 1, LMM_MODEL);
    mm_optim_kind kind;
    mm_status st = mm_optim_kind_from_name(luaL_checkstring(L, 2), &kind);
    if (st) return lmm_fail(L, st);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    lmm_handle *h = push_opt(L, 1);
    mm_optimizer *o = NULL;
    st = mm_optimizer_create(&o, m, kind);
    return lmm_finish_new_with(L, h, st, o, 3, set_named);
}

/* mm.load_optimizer(model, path) */
static int l_load_optimizer(lua_State *L) {
    mm_model *m = lmm_check(L, 1, LMM_MODEL);
    const char *path = luaL_checkstring(L, 2);
    lmm_handle *h = push_opt(L, 1);
    mm_optimizer *o = NULL;
    mm_status st = mm_optimizer_load(&o, m, path);
    return lmm_finish_new(L, h, st, o);
}

static int o_kind(lua_State *L) {
    lua_pushstring(L, mm_optim_kind_name(mm_optimizer_kind(CHECK_OPT(1))));
    return 1;
}

static int o_model(lua_State *L) {
    CHECK_OPT(1);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int o_steps(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mm_optimizer_steps(CHECK_OPT(1)));
    return 1;
}

static int o_current_lr(lua_State *L) {
    lua_pushnumber(L, mm_optimizer_current_lr(CHECK_OPT(1)));
    return 1;
}

/* o:set_layer_lr_scale(layer, scale) — layer is 1-based */
static int o_set_layer_lr_scale(lua_State *L) {
    mm_optimizer *o = CHECK_OPT(1);
    double scale = luaL_checknumber(L, 3);
    size_t i;
    int nret = lmm_check_layer(L, 2, mm_optimizer_model(o), &i);
    if (nret) return nret;
    return lmm_result(L, mm_optimizer_set_layer_lr_scale(o, i, scale), 1);
}

static int o_layer_lr_scale(lua_State *L) {
    mm_optimizer *o = CHECK_OPT(1);
    size_t i;
    int nret = lmm_check_layer(L, 2, mm_optimizer_model(o), &i);
    if (nret) return nret;
    double s;
    mm_status st = mm_optimizer_get_layer_lr_scale(o, i, &s);
    if (st) return lmm_fail(L, st);
    lua_pushnumber(L, s);
    return 1;
}

/* o:sync(): adopt the model's layers after truncate/replace_head/add_dense */
static int o_sync(lua_State *L) { return lmm_result(L, mm_optimizer_sync(CHECK_OPT(1)), 1); }

/* L2-SP anchor: o:set_anchor(), o:clear_anchor(), o:has_anchor() */
static int o_set_anchor(lua_State *L) {
    return lmm_result(L, mm_optimizer_set_anchor(CHECK_OPT(1)), 1);
}

static int o_clear_anchor(lua_State *L) {
    mm_optimizer_clear_anchor(CHECK_OPT(1));
    lua_settop(L, 1);
    return 1;
}

static int o_has_anchor(lua_State *L) {
    lua_pushboolean(L, mm_optimizer_has_anchor(CHECK_OPT(1)));
    return 1;
}

/* o:step(x, labels [, targets]) or o:step(dataset) -> loss before the update */
static int o_step(lua_State *L) {
    mm_optimizer *o = CHECK_OPT(1);
    lmm_batch b;
    int nret = lmm_check_batch(L, 2, mm_optimizer_model(o), &b);
    if (nret) return nret;
    double loss;
    mm_status st = mm_optimizer_step(o, b.x, b.labels, b.targets, b.n, &loss);
    if (st) return lmm_fail(L, st);
    lua_pushnumber(L, loss);
    return 1;
}

/* ---- fit with a Lua progress callback --------------------------------------
 * The callback runs under lua_pcall inside the C trampoline, so a Lua error
 * never unwinds through libmmaint's frames: the trampoline cancels the fit,
 * keeps the error value on the stack, and o:fit re-raises it after
 * mm_optimizer_fit has returned. */

typedef struct fit_ctx {
    lua_State *L;
    int fn;        /* stack index of the callback */
    int err;       /* stack index of a caught error, or 0 */
} fit_ctx;

static void push_progress(lua_State *L, const mm_fit_progress *p) {
    lua_createtable(L, 0, 14);
    lua_pushstring(L, p->event == MM_FIT_EPOCH_END ? "epoch_end" : "batch");
    lua_setfield(L, -2, "event");
    lmm_set_int(L, "epoch", (uint64_t)p->epoch + 1);
    lmm_set_int(L, "epochs", p->epochs);
    lmm_set_int(L, "batch", p->batch);
    lmm_set_int(L, "batches", p->batches);
    lmm_set_int(L, "step", p->step);
    lmm_set_num(L, "train_loss", p->train_loss);
    lmm_set_num(L, "train_accuracy", p->train_accuracy);
    lmm_set_num(L, "val_loss", p->val_loss);
    lmm_set_num(L, "val_accuracy", p->val_accuracy);
    lmm_set_num(L, "learning_rate", p->learning_rate);
    lmm_set_num(L, "elapsed_seconds", p->elapsed_seconds);
    lmm_set_num(L, "samples_per_second", p->samples_per_second);
}

/* Runs protected: (fn, progress lightuserdata) -> stop? */
static int call_callback(lua_State *L) {
    const mm_fit_progress *p = lua_touserdata(L, 2);
    lua_settop(L, 1);
    push_progress(L, p);
    lua_call(L, 1, 1);
    return 1;
}

static int fit_trampoline(const mm_fit_progress *p, void *user) {
    fit_ctx *c = user;
    lua_State *L = c->L;
    lua_pushcfunction(L, call_callback); /* none of these pushes allocate */
    lua_pushvalue(L, c->fn);
    lua_pushlightuserdata(L, (void *)p);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        c->err = lua_gettop(L); /* keep the error value; stop fitting */
        return 1;
    }
    int stop = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return stop;
}

/* o:fit(train [, val [, callback]]) -> result (the last progress report) */
static int o_fit(lua_State *L) {
    mm_optimizer *o = CHECK_OPT(1);
    const mm_dataset *train = lmm_check(L, 2, LMM_DATASET);
    const mm_dataset *val = lmm_opt(L, 3, LMM_DATASET);
    fit_ctx c = {L, 0, 0};
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TFUNCTION);
        c.fn = 4;
    }
    lua_settop(L, 4);
    luaL_checkstack(L, 8, "fit callback");
    mm_fit_progress res;
    mm_status st = mm_optimizer_fit(o, train, val, c.fn ? fit_trampoline : NULL, &c, &res);
    if (c.err) {
        lua_pushvalue(L, c.err);
        return lua_error(L);
    }
    if (st) return lmm_fail(L, st);
    push_progress(L, &res);
    return 1;
}

static int o_save(lua_State *L) {
    mm_optimizer *o = CHECK_OPT(1);
    return lmm_result(L, mm_optimizer_save(o, luaL_checkstring(L, 2)), 1);
}

static int o_tostring(lua_State *L) {
    lmm_handle *h = luaL_checkudata(L, 1, LMM_OPTIMIZER);
    if (h->closed) {
        lua_pushstring(L, "mmaint.optimizer (closed)");
        return 1;
    }
    lua_pushfstring(L, "mmaint.optimizer: %s, %I steps, lr %f",
                    mm_optim_kind_name(mm_optimizer_kind(h->p)),
                    (lua_Integer)mm_optimizer_steps(h->p), mm_optimizer_current_lr(h->p));
    return 1;
}

void lmm_open_optimizer(lua_State *L) {
    static const luaL_Reg methods[] = {{"set", settings_set},
                                       {"get", settings_get},
                                       {"kind", o_kind},
                                       {"model", o_model},
                                       {"steps", o_steps},
                                       {"current_lr", o_current_lr},
                                       {"step", o_step},
                                       {"fit", o_fit},
                                       {"save", o_save},
                                       {"set_layer_lr_scale", o_set_layer_lr_scale},
                                       {"layer_lr_scale", o_layer_lr_scale},
                                       {"sync", o_sync},
                                       {"set_anchor", o_set_anchor},
                                       {"clear_anchor", o_clear_anchor},
                                       {"has_anchor", o_has_anchor},
                                       {"__tostring", o_tostring},
                                       {NULL, NULL}};
    lmm_new_class(L, LMM_OPTIMIZER, methods);
    static const luaL_Reg fns[] = {{"optimizer", l_optimizer},
                                   {"load_optimizer", l_load_optimizer},
                                   {"optimizer_bounds", settings_bounds},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
