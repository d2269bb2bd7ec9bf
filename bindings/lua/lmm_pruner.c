/* mmaint Lua binding — mmaint.pruner. */
#include "lmm.h"

static void free_pruner(void *p) { mm_pruner_free(p); }

#define CHECK_PRUNER(arg) ((mm_pruner *)lmm_check(L, (arg), LMM_PRUNER))

LMM_NAMED_VALUE(prune_value, mm_prune_param, mm_prune_value_from_name)
LMM_SETTINGS(LMM_PRUNER, mm_pruner, mm_prune_param, mm_prune_param_from_name, mm_pruner_set,
             mm_pruner_get, mm_prune_param_bounds, prune_value)

/* mm.pruner(criterion [, settings]) */
static int l_pruner(lua_State *L) {
    lua_settop(L, 2);
    mm_prune_criterion c;
    mm_status st = mm_prune_criterion_from_name(luaL_checkstring(L, 1), &c);
    if (st) return lmm_fail(L, st);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lmm_handle *h = lmm_push_handle(L, LMM_PRUNER, NULL, free_pruner, 0, 1);
    mm_pruner *p = NULL;
    st = mm_pruner_create(&p, c);
    return lmm_finish_new_with(L, h, st, p, 2, set_named);
}

static int p_criterion(lua_State *L) {
    lua_pushstring(L, mm_prune_criterion_name(mm_pruner_criterion(CHECK_PRUNER(1))));
    return 1;
}

/* p:set_layer_sparsity(layer, sparsity) — layer is 1-based */
static int p_set_layer_sparsity(lua_State *L) {
    mm_pruner *p = CHECK_PRUNER(1);
    size_t i = lmm_checkindex(L, 2);
    return lmm_result(L, mm_pruner_set_layer_sparsity(p, i, luaL_checknumber(L, 3)), 1);
}

/* p:set_scores(layer, scores) */
static int p_set_scores(lua_State *L) {
    mm_pruner *p = CHECK_PRUNER(1);
    size_t i = lmm_checkindex(L, 2);
    lmm_array s;
    lmm_check_array(L, 3, LMM_F32, &s, "scores");
    return lmm_result(L, mm_pruner_set_scores(p, i, s.data, s.len), 1);
}

/* p:calibrate(model, x | dataset) */
static int p_calibrate(lua_State *L) {
    mm_pruner *p = CHECK_PRUNER(1);
    mm_model *m = lmm_check(L, 2, LMM_MODEL);
    lmm_batch b;
    int nret = lmm_check_batch(L, 3, m, &b);
    if (nret) return nret;
    return lmm_result(L, mm_pruner_calibrate(p, m, b.x, b.n), 1);
}

static int p_apply(lua_State *L) {
    mm_pruner *p = CHECK_PRUNER(1);
    return lmm_result(L, mm_pruner_apply(p, lmm_check(L, 2, LMM_MODEL)), 1);
}

/* p:attach(optimizer): gradual pruning during that optimizer's steps. The
 * optimizer keeps the pruner alive while it is attached. */
static int p_attach(lua_State *L) {
    mm_pruner *p = CHECK_PRUNER(1);
    mm_optimizer *o = lmm_check(L, 2, LMM_OPTIMIZER);
    mm_status st = mm_pruner_attach(p, o);
    if (st) return lmm_fail(L, st);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 2, 2);
    lua_settop(L, 1);
    return 1;
}

/* p:detach(optimizer) */
static int p_detach(lua_State *L) {
    CHECK_PRUNER(1);
    mm_optimizer *o = lmm_check(L, 2, LMM_OPTIMIZER);
    lua_getiuservalue(L, 2, 2);
    if (!lua_rawequal(L, -1, 1)) return luaL_argerror(L, 2, "this pruner is not attached to it");
    mm_status st = mm_pruner_attach(NULL, o);
    if (st) return lmm_fail(L, st);
    lua_pushnil(L);
    lua_setiuservalue(L, 2, 2);
    lua_settop(L, 1);
    return 1;
}

static int p_sparsity_at(lua_State *L) {
    mm_pruner *p = CHECK_PRUNER(1);
    double s;
    mm_status st = mm_pruner_sparsity_at(p, (uint64_t)lmm_checksize(L, 2, 0), &s);
    if (st) return lmm_fail(L, st);
    lua_pushnumber(L, s);
    return 1;
}

/* p:finalize(model [, optimizer]) */
static int p_finalize(lua_State *L) {
    mm_pruner *p = CHECK_PRUNER(1);
    mm_model *m = lmm_check(L, 2, LMM_MODEL);
    mm_optimizer *o = lmm_opt(L, 3, LMM_OPTIMIZER);
    mm_status st = mm_pruner_finalize(p, m, o);
    if (st) return lmm_fail(L, st);
    if (o) { /* finalize detaches the pruner */
        lua_getiuservalue(L, 3, 2);
        if (lua_rawequal(L, -1, 1)) {
            lua_pushnil(L);
            lua_setiuservalue(L, 3, 2);
        }
    }
    lua_settop(L, 1);
    return 1;
}

void lmm_open_pruner(lua_State *L) {
    static const luaL_Reg methods[] = {{"set", settings_set},
                                       {"get", settings_get},
                                       {"criterion", p_criterion},
                                       {"set_layer_sparsity", p_set_layer_sparsity},
                                       {"set_scores", p_set_scores},
                                       {"calibrate", p_calibrate},
                                       {"apply", p_apply},
                                       {"attach", p_attach},
                                       {"detach", p_detach},
                                       {"sparsity_at", p_sparsity_at},
                                       {"finalize", p_finalize},
                                       {NULL, NULL}};
    lmm_new_class(L, LMM_PRUNER, methods);
    static const luaL_Reg fns[] = {{"pruner", l_pruner}, {"pruner_bounds", settings_bounds}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
