/* mmaint Lua binding — mmaint.model. */
#include <stdlib.h>
#include <string.h>

#include "lmm.h"

static void free_model(void *p) { mm_model_free(p); }

#define CHECK_MODEL(arg) ((mm_model *)lmm_check(L, (arg), LMM_MODEL))

lmm_handle *lmm_push_model(lua_State *L) {
    return lmm_push_handle(L, LMM_MODEL, NULL, free_model, 0, 1);
}

static uint64_t check_seed(lua_State *L, int arg) {
    lua_Integer s = luaL_optinteger(L, arg, 0);
    luaL_argcheck(L, s >= 0, arg, "seed must be >= 0");
    return (uint64_t)s;
}

/* mm.model(input_dim | spec [, seed]) */
static int l_model(lua_State *L) {
    uint64_t seed = check_seed(L, 2);
    mm_model *m = NULL;
    mm_status st;
    if (lua_type(L, 1) == LUA_TSTRING) {
        const char *spec = lua_tostring(L, 1);
        lmm_handle *h = lmm_push_model(L);
        st = mm_model_create_from_spec(&m, spec, seed);
        return lmm_finish_new(L, h, st, m);
    }
    size_t dim = lmm_checksize(L, 1, 0);
    lmm_handle *h = lmm_push_model(L);
    st = mm_model_create(&m, dim, seed);
    return lmm_finish_new(L, h, st, m);
}

static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lmm_handle *h = lmm_push_model(L);
    mm_model *m = NULL;
    mm_status st = mm_model_load(&m, path);
    return lmm_finish_new(L, h, st, m);
}

static int l_load_buffer(lua_State *L) {
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    lmm_handle *h = lmm_push_model(L);
    mm_model *m = NULL;
    mm_status st = mm_model_load_buffer(&m, data, len);
    return lmm_finish_new(L, h, st, m);
}

static int m_clone(lua_State *L) {
    mm_model *src = CHECK_MODEL(1);
    lmm_handle *h = lmm_push_model(L);
    mm_model *m = NULL;
    mm_status st = mm_model_clone(src, &m);
    return lmm_finish_new(L, h, st, m);
}

static mm_activation check_activation(lua_State *L, int arg, mm_status *st) {
    mm_activation a = MM_ACT_IDENTITY;
    *st = lua_isnoneornil(L, arg) ? MM_OK : mm_activation_from_name(luaL_checkstring(L, arg), &a);
    return a;
}

/* m:add_dense(units [, activation = "identity" [, init = "auto"]]) */
static int m_add_dense(lua_State *L) {
    static const char *const inits[] = {"auto", "he", "xavier", NULL};
    mm_model *m = CHECK_MODEL(1);
    size_t units = lmm_checksize(L, 2, 0);
    mm_status st;
    mm_activation act = check_activation(L, 3, &st);
    if (st) return lmm_fail(L, st);
    mm_init init = (mm_init)luaL_checkoption(L, 4, "auto", inits);
    return lmm_result(L, mm_model_add_dense_init(m, units, act, init), 1);
}

static int m_set_loss(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    mm_loss loss;
    mm_status st = mm_loss_from_name(luaL_checkstring(L, 2), &loss);
    if (st == MM_OK) st = mm_model_set_loss(m, loss);
    return lmm_result(L, st, 1);
}

static int m_loss(lua_State *L) {
    lua_pushstring(L, mm_loss_name(mm_model_loss(CHECK_MODEL(1))));
    return 1;
}

static int m_set_leaky_slope(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    return lmm_result(L, mm_model_set_leaky_slope(m, (float)luaL_checknumber(L, 2)), 1);
}

#define SIZE_GETTER(fname, call)                         \
    static int fname(lua_State *L) {                     \
        lua_pushinteger(L, (lua_Integer)call(CHECK_MODEL(1))); \
        return 1;                                        \
    }
SIZE_GETTER(m_input_dim, mm_model_input_dim)
SIZE_GETTER(m_output_dim, mm_model_output_dim)
SIZE_GETTER(m_num_layers, mm_model_num_layers)
SIZE_GETTER(m_num_params, mm_model_num_params)
SIZE_GETTER(m_param_bytes, mm_model_param_bytes)
SIZE_GETTER(m_num_nonzero, mm_model_num_nonzero)

/* ---- layer indices ---- */

int lmm_check_layer(lua_State *L, int arg, const mm_model *m, size_t *index) {
    return lmm_check_item(L, arg, mm_model_num_layers(m), "layer", "model has", index);
}

/* Declares `size_t i` from the 1-based layer argument at `arg` of model m,
 * returning the error results when it is out of range. */
#define CHECK_LAYER_ARG(i, arg, m)                        \
    size_t i;                                             \
    do {                                                  \
        int nret_ = lmm_check_layer(L, (arg), (m), &i);   \
        if (nret_) return nret_;                          \
    } while (0)

/* ---- transfer learning ---- */

/* m:set_trainable(i, trainable) */
static int m_set_trainable(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    luaL_checktype(L, 3, LUA_TBOOLEAN);
    CHECK_LAYER_ARG(i, 2, m);
    return lmm_result(L, mm_model_set_trainable(m, i, lua_toboolean(L, 3)), 1);
}

/* m:trainable(i) -> boolean */
static int m_trainable(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    CHECK_LAYER_ARG(i, 2, m);
    int t = mm_model_layer_trainable(m, i);
    if (t < 0) return lmm_fail(L, mm_last_error() != MM_OK ? mm_last_error() : MM_E_OUT_OF_RANGE);
    lua_pushboolean(L, t);
    return 1;
}

/* m:truncate(n_layers) */
static int m_truncate(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    return lmm_result(L, mm_model_truncate(m, lmm_checksize(L, 2, 0)), 1);
}

/* m:replace_head(units [, activation = "identity" [, seed = 0]]) */
static int m_replace_head(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    size_t units = lmm_checksize(L, 2, 0);
    mm_status st;
    mm_activation act = check_activation(L, 3, &st);
    if (st) return lmm_fail(L, st);
    return lmm_result(L, mm_model_replace_head(m, units, act, check_seed(L, 4)), 1);
}

/* m:layer(i) -> {kind=, inputs=, outputs=, activation=, sparsity=, trainable=} */
static int m_layer(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    CHECK_LAYER_ARG(i, 2, m);
    const char *kind;
    size_t in, out;
    mm_activation act;
    double sp;
    mm_status st = mm_model_layer_info(m, i, &kind, &in, &out, &act);
    if (st == MM_OK) st = mm_model_layer_sparsity(m, i, &sp);
    if (st) return lmm_fail(L, st);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, (lua_Integer)in);
    lua_setfield(L, -2, "inputs");
    lua_pushinteger(L, (lua_Integer)out);
    lua_setfield(L, -2, "outputs");
    lua_pushstring(L, mm_activation_name(act));
    lua_setfield(L, -2, "activation");
    lua_pushnumber(L, sp);
    lua_setfield(L, -2, "sparsity");
    lua_pushboolean(L, mm_model_layer_trainable(m, i) == 1);
    lua_setfield(L, -2, "trainable");
    return 1;
}

typedef mm_status (*params_get_fn)(const mm_model *, size_t, float *, size_t, float *, size_t);

/* Weights or gradients of layer i as two tensors: W (outputs x inputs), b. */
static int get_params(lua_State *L, params_get_fn get) {
    mm_model *m = CHECK_MODEL(1);
    CHECK_LAYER_ARG(i, 2, m);
    size_t in, out;
    mm_status st = mm_model_layer_info(m, i, NULL, &in, &out, NULL);
    if (st) return lmm_fail(L, st);
    lmm_tensor *w = lmm_new_tensor(L, LMM_F32, 2, out, in);
    lmm_tensor *b = lmm_new_tensor(L, LMM_F32, 1, out, 0);
    st = get(m, i, w->data, w->len, b->data, b->len);
    if (st) return lmm_fail(L, st);
    return 2;
}

static int m_weights(lua_State *L) { return get_params(L, mm_model_get_weights); }
static int m_gradients(lua_State *L) { return get_params(L, mm_model_get_gradients); }

/* m:set_weights(i, W, b): W and/or b (nil keeps it), tensors or tables. */
static int m_set_weights(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    lua_settop(L, 4);
    CHECK_LAYER_ARG(i, 2, m);
    lmm_array w = {0}, b = {0};
    if (!lua_isnoneornil(L, 3)) lmm_check_array(L, 3, LMM_F32, &w, "weights");
    if (!lua_isnoneornil(L, 4)) lmm_check_array(L, 4, LMM_F32, &b, "bias");
    return lmm_result(L, mm_model_set_weights(m, i, w.data, w.len, b.data, b.len), 1);
}

/* Number of samples in an input array for this model, or 0 after pushing
 * the error results (*nret). */
static size_t samples_of(lua_State *L, const mm_model *m, const lmm_array *x, int *nret) {
    size_t dim = mm_model_input_dim(m);
    if (dim == 0 || x->len % dim != 0) {
        *nret = lmm_fail_msg(L, MM_E_SHAPE,
                             "x has %I numbers, not a multiple of the model's %I inputs",
                             (lua_Integer)x->len, (lua_Integer)dim);
        return 0;
    }
    return x->len / dim;
}

typedef mm_status (*rows_fn)(const mm_model *, const float *, size_t, float *);

static int forward_like(lua_State *L, rows_fn fn) {
    mm_model *m = CHECK_MODEL(1);
    lmm_array x;
    lmm_check_array(L, 2, LMM_F32, &x, "x");
    int nret = 0;
    size_t n = samples_of(L, m, &x, &nret);
    if (!n) return nret;
    size_t od = mm_model_output_dim(m);
    if (!x.is_table) { /* write straight into the result tensor */
        lmm_tensor *t = lmm_new_tensor(L, LMM_F32, 2, n, od);
        mm_status st = fn(m, x.data, n, t->data);
        return st ? lmm_fail(L, st) : 1;
    }
    float *out = lua_newuserdatauv(L, n * od * sizeof(float), 0);
    mm_status st = fn(m, x.data, n, out);
    if (st) return lmm_fail(L, st);
    lmm_push_result(L, &x, LMM_F32, out, n * od, od);
    return 1;
}

static int m_forward(lua_State *L) { return forward_like(L, mm_model_forward); }
static int m_predict_proba(lua_State *L) { return forward_like(L, mm_model_predict_proba); }

static int m_predict(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    lmm_array x;
    lmm_check_array(L, 2, LMM_F32, &x, "x");
    int nret = 0;
    size_t n = samples_of(L, m, &x, &nret);
    if (!n) return nret;
    int32_t *out = lua_newuserdatauv(L, n * sizeof(int32_t), 0);
    mm_status st = mm_model_predict(m, x.data, n, out);
    if (st) return lmm_fail(L, st);
    lmm_push_result(L, &x, LMM_I32, out, n, 0);
    return 1;
}

int lmm_check_batch(lua_State *L, int arg, const mm_model *m, lmm_batch *b) {
    b->labels = NULL;
    b->targets = NULL;
    lua_settop(L, arg + 2);
    if (luaL_testudata(L, arg, LMM_DATASET)) {
        const mm_dataset *ds = lmm_check(L, arg, LMM_DATASET);
        b->x = mm_dataset_features(ds);
        b->labels = mm_dataset_labels(ds);
        b->n = mm_dataset_size(ds);
        if (mm_dataset_dim(ds) != mm_model_input_dim(m))
            return lmm_fail_msg(L, MM_E_SHAPE, "dataset has %I features, the model takes %I",
                                (lua_Integer)mm_dataset_dim(ds),
                                (lua_Integer)mm_model_input_dim(m));
        return 0;
    }
    lmm_array xa;
    lmm_check_array(L, arg, LMM_F32, &xa, "x");
    int nret = 0;
    b->n = samples_of(L, m, &xa, &nret);
    if (!b->n) return nret;
    b->x = xa.data;
    if (!lua_isnoneornil(L, arg + 1)) {
        lmm_check_labels(L, arg + 1, &b->la);
        if (b->la.len != b->n)
            return lmm_fail_msg(L, MM_E_SHAPE, "%I labels for %I samples",
                                (lua_Integer)b->la.len, (lua_Integer)b->n);
        b->labels = b->la.data;
    }
    if (!lua_isnoneornil(L, arg + 2)) {
        lmm_array ta;
        lmm_check_array(L, arg + 2, LMM_F32, &ta, "targets");
        size_t od = mm_model_output_dim(m);
        if (ta.len != b->n * od)
            return lmm_fail_msg(L, MM_E_SHAPE, "targets have %I numbers, expected %I x %I",
                                (lua_Integer)ta.len, (lua_Integer)b->n, (lua_Integer)od);
        b->targets = ta.data;
    }
    return 0;
}

/* m:evaluate(x, labels [, targets]) or m:evaluate(dataset) -> loss, accuracy */
static int m_evaluate(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    lmm_batch b;
    int nret = lmm_check_batch(L, 2, m, &b);
    if (nret) return nret;
    double loss, acc;
    mm_status st = mm_model_evaluate(m, b.x, b.labels, b.targets, b.n, &loss, &acc);
    if (st) return lmm_fail(L, st);
    lua_pushnumber(L, loss);
    lua_pushnumber(L, acc);
    return 2;
}

static int m_backward(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    lmm_batch b;
    int nret = lmm_check_batch(L, 2, m, &b);
    if (nret) return nret;
    double loss;
    mm_status st = mm_model_backward(m, b.x, b.labels, b.targets, b.n, &loss);
    if (st) return lmm_fail(L, st);
    lua_pushnumber(L, loss);
    return 1;
}

static int m_describe(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    size_t need = 0;
    mm_status st = mm_model_describe(m, NULL, 0, &need);
    if (st) return lmm_fail(L, st);
    luaL_Buffer b;
    char *buf = luaL_buffinitsize(L, &b, need + 1);
    st = mm_model_describe(m, buf, need + 1, NULL);
    if (st) return lmm_fail(L, st);
    luaL_pushresultsize(&b, need);
    return 1;
}

static int m_lineage(lua_State *L) {
    lua_pushstring(L, mm_model_lineage(CHECK_MODEL(1)));
    return 1;
}

static int m_add_lineage(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    const char *op = luaL_checkstring(L, 2);
    const char *detail = luaL_optstring(L, 3, NULL);
    return lmm_result(L, mm_model_add_lineage(m, op, detail), 1);
}

static int m_save(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    return lmm_result(L, mm_model_save(m, luaL_checkstring(L, 2)), 1);
}

static int m_layer_sparsity(lua_State *L) {
    mm_model *m = CHECK_MODEL(1);
    CHECK_LAYER_ARG(i, 2, m);
    double s;
    mm_status st = mm_model_layer_sparsity(m, i, &s);
    if (st) return lmm_fail(L, st);
    lua_pushnumber(L, s);
    return 1;
}

static int m_tostring(lua_State *L) {
    lmm_handle *h = luaL_checkudata(L, 1, LMM_MODEL);
    if (h->closed) {
        lua_pushstring(L, "mmaint.model (closed)");
        return 1;
    }
    mm_model *m = h->p;
    lua_pushfstring(L, "mmaint.model: %I inputs, %I layers, %I outputs, %I parameters",
                    (lua_Integer)mm_model_input_dim(m), (lua_Integer)mm_model_num_layers(m),
                    (lua_Integer)mm_model_output_dim(m), (lua_Integer)mm_model_num_params(m));
    return 1;
}

void lmm_open_model(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"clone", m_clone},
        {"add_dense", m_add_dense},
        {"set_loss", m_set_loss},
        {"loss", m_loss},
        {"set_leaky_slope", m_set_leaky_slope},
        {"input_dim", m_input_dim},
        {"output_dim", m_output_dim},
        {"num_layers", m_num_layers},
        {"num_params", m_num_params},
        {"param_bytes", m_param_bytes},
        {"num_nonzero", m_num_nonzero},
        {"layer", m_layer},
        {"layer_sparsity", m_layer_sparsity},
        {"weights", m_weights},
        {"set_weights", m_set_weights},
        {"gradients", m_gradients},
        {"forward", m_forward},
        {"predict_proba", m_predict_proba},
        {"predict", m_predict},
        {"evaluate", m_evaluate},
        {"backward", m_backward},
        {"describe", m_describe},
        {"lineage", m_lineage},
        {"add_lineage", m_add_lineage},
        {"save", m_save},
        {"set_trainable", m_set_trainable},
        {"trainable", m_trainable},
        {"truncate", m_truncate},
        {"replace_head", m_replace_head},
        {"__tostring", m_tostring},
        {NULL, NULL}};
    lmm_new_class(L, LMM_MODEL, methods);
    static const luaL_Reg fns[] = {
        {"model", l_model}, {"load", l_load}, {"load_buffer", l_load_buffer}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
