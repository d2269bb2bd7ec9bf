/* In-process C baseline for bench_lua.lua: the online-learning loop of
 * `bench_mmaint online` (mm_optimizer_step with n = 1 over consecutive
 * samples) as a Lua C module, run on the very optimizer and tensors the Lua
 * loop uses. Timing C chunks and Lua chunks alternately in one process pairs
 * each Lua measurement with a C one taken milliseconds apart, so the load of
 * a shared machine hits both alike.
 *
 *   local loop = require "bench_lua_loop"
 *   loop.chunk(optimizer, X, Y, start, count)   -- X: n x dim float32 tensor,
 *                                               -- Y: n int32 tensor; start 1-based
 *
 * It reads the binding's userdata layouts from bindings/lua/lmm.h (the same
 * repository, the same build), not through any binding function. */
#include "lmm.h"

static int chunk(lua_State *L) {
    lmm_handle *h = luaL_checkudata(L, 1, LMM_OPTIMIZER);
    lmm_tensor *x = luaL_checkudata(L, 2, LMM_TENSOR);
    lmm_tensor *y = luaL_checkudata(L, 3, LMM_TENSOR);
    lua_Integer start = luaL_checkinteger(L, 4), count = luaL_checkinteger(L, 5);
    luaL_argcheck(L, !h->closed && h->p, 1, "closed optimizer");
    luaL_argcheck(L, x->dtype == LMM_F32 && x->ndim == 2, 2, "n x dim float32 tensor expected");
    luaL_argcheck(L, y->dtype == LMM_I32 && y->len == x->dims[0], 3, "n int32 labels expected");
    luaL_argcheck(L, start >= 1 && count >= 0, 4, "bad range");
    mm_optimizer *opt = h->p;
    const float *xs = x->data;
    const int32_t *ys = y->data;
    size_t n = x->dims[0], dim = x->dims[1];
    double loss;
    for (lua_Integer k = 0; k < count; k++) {
        size_t i = (size_t)(start - 1 + k) % n;
        mm_status st = mm_optimizer_step(opt, xs + i * dim, ys + i, NULL, 1, &loss);
        if (st != MM_OK) return luaL_error(L, "step %d: %s", (int)k, mm_last_error_message());
    }
    return 0;
}

MM_API int luaopen_bench_lua_loop(lua_State *L);

int luaopen_bench_lua_loop(lua_State *L) {
    lua_newtable(L);
    lua_pushcfunction(L, chunk);
    lua_setfield(L, -2, "chunk");
    return 1;
}
