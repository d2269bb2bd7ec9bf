/* mmaint Lua binding — mmaint.quantizer. */
#include "lmm.h"

static void free_quantizer(void *p) { mm_quantizer_free(p); }

#define CHECK_Q(arg) ((mm_quantizer *)lmm_check(L, (arg), LMM_QUANTIZER))

/* Values are numbers or booleans; the observer may also be named ("entropy"). */
LMM_NAMED_VALUE(quant_value, mm_quant_param, mm_quant_value_from_name)

LMM_SETTINGS(LMM_QUANTIZER, mm_quantizer, mm_quant_param, mm_quant_param_from_name, mm_quantizer_set,
             mm_quantizer_get, mm_quant_param_bounds, quant_value)

/* mm.quantizer(scheme [, settings]) */
static int l_quantizer(lua_State *L) {
    lua_settop(L, 2);
    mm_quant_scheme s;
    mm_status st = mm_quant_scheme_from_name(luaL_checkstring(L, 1), &s);
    if (st) return lmm_fail(L, st);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lmm_handle *h = lmm_push_handle(L, LMM_QUANTIZER, NULL, free_quantizer, 0, 1);
    mm_quantizer *q = NULL;
    st = mm_quantizer_create(&q, s);
    return lmm_finish_new_with(L, h, st, q, 2, set_named);
}

static int q_scheme(lua_State *L) {
    lua_pushstring(L, mm_quant_scheme_name(mm_quantizer_scheme(CHECK_Q(1))));
    return 1;
}

/* q:set_layer(layer, enabled) — layer is 1-based */
static int q_set_layer(lua_State *L) {
    mm_quantizer *q = CHECK_Q(1);
    size_t i = lmm_checkindex(L, 2);
    luaL_checktype(L, 3, LUA_TBOOLEAN);
    return lmm_result(L, mm_quantizer_set_layer(q, i, lua_toboolean(L, 3)), 1);
}

/* q:calibrate(model, x | dataset) */
static int q_calibrate(lua_State *L) {
    mm_quantizer *q = CHECK_Q(1);
    mm_model *m = lmm_check(L, 2, LMM_MODEL);
    lmm_batch b;
    int nret = lmm_check_batch(L, 3, m, &b);
    if (nret) return nret;
    return lmm_result(L, mm_quantizer_calibrate(q, m, b.x, b.n), 1);
}

static int q_apply(lua_State *L) {
    mm_quantizer *q = CHECK_Q(1);
    return lmm_result(L, mm_quantizer_apply(q, lmm_check(L, 2, LMM_MODEL)), 1);
}

/* q:apply_with_tolerance(model, x, labels | dataset) -> final accuracy */
static int q_apply_with_tolerance(lua_State *L) {
    mm_quantizer *q = CHECK_Q(1);
    mm_model *m = lmm_check(L, 2, LMM_MODEL);
    lmm_batch b;
    int nret = lmm_check_batch(L, 3, m, &b);
    if (nret) return nret;
    double acc;
    mm_status st = mm_quantizer_apply_with_tolerance(q, m, b.x, b.labels, b.n, &acc);
    if (st) return lmm_fail(L, st);
    lua_pushnumber(L, acc);
    return 1;
}

static int q_prepare_qat(lua_State *L) {
    mm_quantizer *q = CHECK_Q(1);
    return lmm_result(L, mm_quantizer_prepare_qat(q, lmm_check(L, 2, LMM_MODEL)), 1);
}

static int q_report(lua_State *L) {
    lua_pushstring(L, mm_quantizer_report(CHECK_Q(1)));
    return 1;
}

void lmm_open_quantizer(lua_State *L) {
    static const luaL_Reg methods[] = {{"set", settings_set},
                                       {"get", settings_get},
                                       {"scheme", q_scheme},
                                       {"set_layer", q_set_layer},
                                       {"calibrate", q_calibrate},
                                       {"apply", q_apply},
                                       {"apply_with_tolerance", q_apply_with_tolerance},
                                       {"prepare_qat", q_prepare_qat},
                                       {"report", q_report},
                                       {NULL, NULL}};
    lmm_new_class(L, LMM_QUANTIZER, methods);
    static const luaL_Reg fns[] = {
        {"quantizer", l_quantizer}, {"quantizer_bounds", settings_bounds}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
